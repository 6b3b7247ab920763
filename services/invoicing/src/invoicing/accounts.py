"""Decisions about a customer's account: its currency, subscriptions and one-time charges.
Pure: the customer's open items and a command in, what to save out; a broken rule raises
DomainError and changes nothing.

The state is the customer's *open* items only: its pending period invoices, the usage on
them, the subscriptions that can still bill one of them, and the charges waiting for the
next close. Posted history is never loaded, so a command costs the same on the customer's
first day and after ten thousand invoices."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from invoicing.closing import Closing, PendingCharge, closing
from invoicing.invoices import (
    InvoiceState,
    check_currency_change,
    check_same_currency,
    one_time_invoice_id,
    one_time_line,
    open_invoice_sums,
)
from invoicing.periods import period_of
from invoicing.rating import UsageDelta
from invoicing.subscriptions import Subscription, cancelled
from tally_contracts import DomainError, Money
from tally_contracts.invoicing import AddCharge, CancelSubscription, CreateSubscription, UpsertCustomer


@dataclass(frozen=True, slots=True)
class Customer:
    customer_id: str
    currency: str
    name: str | None
    billing_day: int
    price_list_id: str | None


@dataclass(frozen=True, slots=True)
class OpenInvoices:
    """What a customer's pending period invoices would add up to if they closed now: the
    state a new fee or pending charge is checked against (each must stay below the sum cap)."""

    pending: Sequence[InvoiceState] = ()
    usage: Mapping[str, Sequence[UsageDelta]] = field(default_factory=dict)
    subscriptions: Sequence[Subscription] = ()
    pending_charges: Sequence[Money] = ()

    def check_takes(self, amount: Money, field_name: str) -> None:
        """Refuse (total_over_cap, naming `field_name`) an amount that would take one of the
        pending invoices past the sum cap; a pending charge counts on each of them, as it goes
        on whichever closes first."""
        for invoice in self.pending:
            sums = open_invoice_sums(
                invoice, self.usage.get(invoice.invoice_id, ()), self.subscriptions, self.pending_charges
            )
            sums.add_amount(amount.amount, field_name)


# -- customers -----------------------------------------------------------------------


def upsert_customer(
    existing: Customer | None, open_invoice_count: int, customer_id: str, cmd: UpsertCustomer
) -> Customer:
    """The customer as the command sets it; its currency changes only when no pending or
    closed invoice is in the old one."""
    if existing is not None:
        check_currency_change(existing.currency, cmd.currency, open_invoice_count)
    return Customer(customer_id, cmd.currency, cmd.name, cmd.billing_day, cmd.price_list_id)


# -- subscriptions -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewSubscription:
    """A subscription to save, and the period invoice to open for its first day (None: the
    customer already has one)."""

    subscription: Subscription
    open_period: tuple[dt.date, dt.date] | None


def create_subscription(
    customer: Customer,
    open_invoices: OpenInvoices,
    existing: Subscription | None,
    first_period_invoiced: bool,
    cmd: CreateSubscription,
) -> NewSubscription:
    """Checked in this order: the fee's currency, its first day's period, the sum cap of each
    pending invoice, a subscription id used before (`duplicate_subscription`)."""
    check_same_currency("fee", cmd.fee, customer.currency)
    period = period_of(cmd.starts_on, customer.billing_day)
    open_invoices.check_takes(cmd.fee, "fee")
    if existing is not None:
        raise DomainError("duplicate_subscription", f"subscription {cmd.subscription_id!r} already exists")
    subscription = Subscription(cmd.subscription_id, cmd.name, cmd.fee, cmd.starts_on)
    return NewSubscription(subscription, None if first_period_invoiced else period)


def cancel_subscription(existing: Subscription | None, cmd: CancelSubscription) -> Subscription:
    """The subscription ending on `cmd.ends_on` (its last day billed)."""
    if existing is None:
        raise DomainError(
            "unknown_subscription", f"subscription {cmd.subscription_id!r} is not known for this customer"
        )
    return cancelled(existing, cmd.ends_on)


# -- one-time charges ----------------------------------------------------------------


def _check_new_charge(customer: Customer, charge_id_used: bool, cmd: AddCharge) -> None:
    check_same_currency("charge", cmd.amount, customer.currency)
    if charge_id_used:
        raise DomainError(
            "duplicate_charge",
            f"charge {cmd.charge_id!r} was already added for this customer; use a new charge_id",
        )


def charge_later(
    customer: Customer, open_invoices: OpenInvoices, charge_id_used: bool, cmd: AddCharge
) -> PendingCharge:
    """A charge for the next invoice that closes: refused if it would take a pending invoice
    past the sum cap. A charge id is used once per customer, pending or billed."""
    _check_new_charge(customer, charge_id_used, cmd)
    open_invoices.check_takes(cmd.amount, "amount")
    return PendingCharge(cmd.charge_id, cmd.description, cmd.amount)


def charge_now(customer: Customer, charge_id_used: bool, cmd: AddCharge, day: dt.date) -> Closing:
    """A charge invoiced at once, on `day` (the message's date): its own invoice, closed as it
    is made with the charge as its one line; its id follows from the charge id."""
    _check_new_charge(customer, charge_id_used, cmd)
    invoice = InvoiceState(
        one_time_invoice_id(customer.customer_id, cmd.charge_id),
        customer.customer_id,
        customer.currency,
        "closed",
        day,
        day,
    )
    return closing(invoice, [one_time_line(cmd.charge_id, cmd.description, cmd.amount)])
