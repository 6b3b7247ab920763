"""Commands about customers, prices, subscriptions and charges, and the answers from the
rules and credits services. One function per message type: load → decide (domain) → save
→ publish. Usage is in `ingest`, bill runs and CloseInvoice in `billing`."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from invoicing import domain
from invoicing.domain import InvoiceState, Subscription
from invoicing.lifecycle import (
    close_with,
    known_customer,
    open_invoice,
    open_period,
    owned_invoice,
    rule_breaks_rejected,
    status_changed,
)
from invoicing.store import Customer, InvoicingStore
from tally_contracts import Envelope, Money
from tally_contracts.credits import InvoiceBalanceChanged
from tally_contracts.invoicing import (
    AddCharge,
    CancelSubscription,
    ChargeAdded,
    CreateSubscription,
    CustomerUpserted,
    InvoiceFinalized,
    InvoiceStatus,
    InvoiceVoided,
    PriceListChanged,
    PutPriceList,
    RegenerateInvoice,
    SubscriptionCancelled,
    SubscriptionCreated,
    UpsertCustomer,
    VoidInvoice,
)
from tally_contracts.rules import InvoiceAdjusted
from tally_messaging import Rejected, Transaction

# -- customers, prices, subscriptions, charges -------------------------------------


@rule_breaks_rejected
async def upsert_customer(message: Envelope[Any], tx: Transaction) -> None:
    data: UpsertCustomer = message.data
    store = InvoicingStore(tx.conn)
    if not message.customer_id:
        raise Rejected("customer_id_missing", "UpsertCustomer needs the envelope's customer_id")
    existing = await store.customer(message.customer_id)
    if existing is not None and existing.currency != data.currency:
        invoices = await store.customer_invoices(message.customer_id)
        open_invoices = sum(1 for i in invoices if i.status in ("pending", "closed"))
        domain.check_currency_change(existing.currency, data.currency, open_invoices)
    customer = Customer(message.customer_id, data.currency, data.name, data.billing_day, data.price_list_id)
    await store.upsert_customer(customer)
    tx.publish(message, CustomerUpserted(**data.model_dump()))


async def put_price_list(message: Envelope[Any], tx: Transaction) -> None:
    data: PutPriceList = message.data
    await InvoicingStore(tx.conn).put_price_list(data.price_list_id, data.prices)
    tx.publish(message, PriceListChanged(price_list_id=data.price_list_id, prices=len(data.prices)))


async def _check_open_invoices_take(
    store: InvoicingStore, customer: Customer, amount: Money, field_name: str
) -> None:
    """Refuse (total_over_cap, naming `field_name`) an amount that would take one of the
    customer's open invoices past the sum cap."""
    open_invoices = [i for i in await store.period_invoices([customer.customer_id]) if i.status == "pending"]
    if not open_invoices:
        return
    usage = await store.usage_of([i.invoice_id for i in open_invoices])
    subscriptions = await store.subscriptions(customer.customer_id)
    charges = (await store.pending_charge_amounts([customer.customer_id])).get(customer.customer_id, [])
    for invoice in open_invoices:
        sums = domain.open_invoice_sums(
            invoice.state(), usage.get(invoice.invoice_id, ()), subscriptions, charges
        )
        sums.add_amount(amount.amount, field_name)


@rule_breaks_rejected
async def create_subscription(message: Envelope[Any], tx: Transaction) -> None:
    data: CreateSubscription = message.data
    store = InvoicingStore(tx.conn)
    customer = await known_customer(store, message)
    domain.check_same_currency("fee", data.fee, customer.currency)
    start, end = domain.period_of(data.starts_on, customer.billing_day)
    await _check_open_invoices_take(store, customer, data.fee, "fee")
    sub = Subscription(data.subscription_id, data.name, data.fee, data.starts_on)
    if not await store.add_subscription(customer.customer_id, sub):
        raise Rejected("duplicate_subscription", f"subscription {data.subscription_id!r} already exists")
    if not any(i.period_start == start for i in await store.period_invoices([customer.customer_id])):
        await open_period(store, tx, message, customer, start, end)
    tx.publish(message, SubscriptionCreated(**data.model_dump()))


@rule_breaks_rejected
async def cancel_subscription(message: Envelope[Any], tx: Transaction) -> None:
    data: CancelSubscription = message.data
    store = InvoicingStore(tx.conn)
    customer = await known_customer(store, message)
    sub = await store.subscription(customer.customer_id, data.subscription_id)
    if sub is None:
        raise Rejected(
            "unknown_subscription", f"subscription {data.subscription_id!r} is not known for this customer"
        )
    ended = domain.cancelled(sub, data.ends_on)
    await store.cancel_subscription(customer.customer_id, ended.subscription_id, data.ends_on)
    tx.publish(message, SubscriptionCancelled(**data.model_dump()))


@rule_breaks_rejected
async def add_charge(message: Envelope[Any], tx: Transaction) -> None:
    data: AddCharge = message.data
    store = InvoicingStore(tx.conn)
    customer = await known_customer(store, message)
    domain.check_same_currency("charge", data.amount, customer.currency)
    if not await store.record_charge_id(customer.customer_id, data.charge_id):
        raise Rejected(
            "duplicate_charge",
            f"charge {data.charge_id!r} was already added for this customer; use a new charge_id",
        )
    if not data.invoice_now:
        await _check_open_invoices_take(store, customer, data.amount, "amount")
        await store.add_pending_charge(customer.customer_id, data.charge_id, data.description, data.amount)
        tx.publish(message, ChargeAdded(charge_id=data.charge_id, amount=data.amount, invoice_id=None))
        return
    day = message.occurred_at.astimezone(dt.UTC).date()
    invoice_id = domain.one_time_invoice_id(customer.customer_id, data.charge_id)
    state = InvoiceState(invoice_id, customer.customer_id, customer.currency, "closed", day, day)
    if not await open_invoice(store, tx, message, state, "one_time"):
        raise RuntimeError(f"invoice {invoice_id} already exists for a charge id never seen")
    lines = [domain.one_time_line(data.charge_id, data.description, data.amount)]
    await close_with(store, tx, message, state, lines)
    tx.publish(message, ChargeAdded(charge_id=data.charge_id, amount=data.amount, invoice_id=invoice_id))


# -- finalisation, void, regenerate, status ----------------------------------------


@rule_breaks_rejected
async def finalize(message: Envelope[Any], tx: Transaction) -> None:
    """The rules service answered for a closed invoice: append adjustments and post it."""
    data: InvoiceAdjusted = message.data
    store = InvoicingStore(tx.conn)
    invoice = await store.invoice(data.invoice_id, for_update=True)
    if invoice is None:
        raise Rejected(
            "unknown_invoice",
            f"rules answered for invoice {data.invoice_id!r}, which invoicing does not know",
        )
    if invoice.status != "closed":
        return  # already finalised: a repeated answer changes nothing
    charges = await store.lines(invoice.invoice_id, invoice.currency)
    adjustments = [ln for ln in data.lines if ln.amount.currency == invoice.currency]
    if len(adjustments) != len(data.lines):
        raise Rejected(
            "currency_mismatch", f"adjustments for {invoice.invoice_id} are not all in {invoice.currency}"
        )
    total = domain.finalized_total(charges, adjustments, invoice.currency)
    issued_on = message.occurred_at.astimezone(dt.UTC).date()
    await store.save_lines(invoice.invoice_id, adjustments)
    await store.post(invoice.invoice_id, total, issued_on, data.rule_set_id, data.rule_set_version)
    tx.publish(
        message,
        InvoiceFinalized(
            invoice_id=invoice.invoice_id,
            currency=invoice.currency,
            issued_on=issued_on,
            lines=[*charges, *adjustments],
            total=total,
            rule_set_id=data.rule_set_id,
            rule_set_version=data.rule_set_version,
            regenerated_from=invoice.regenerated_from,
        ),
        customer_id=invoice.customer_id,
    )
    status_changed(tx, message, invoice, "posted")


@rule_breaks_rejected
async def void_invoice(message: Envelope[Any], tx: Transaction) -> None:
    data: VoidInvoice = message.data
    store = InvoicingStore(tx.conn)
    invoice = await owned_invoice(store, data.invoice_id, message)
    domain.require_status(invoice.state(), ("posted", "paid"), "voided")
    await store.set_status(invoice.invoice_id, "voided", Decimal(0))  # nothing is owed on it any more
    tx.publish(
        message,
        InvoiceVoided(invoice_id=invoice.invoice_id, reason=data.reason),
        customer_id=invoice.customer_id,
    )
    status_changed(tx, message, invoice, "voided")


@rule_breaks_rejected
async def regenerate_invoice(message: Envelope[Any], tx: Transaction) -> None:
    data: RegenerateInvoice = message.data
    store = InvoicingStore(tx.conn)
    old = await owned_invoice(store, data.invoice_id, message)
    domain.require_status(old.state(), ("voided",), "regenerated")
    if (existing := await store.regeneration_of(old.invoice_id)) is not None:
        raise Rejected(
            "already_regenerated", f"invoice {old.invoice_id} was already regenerated as {existing}"
        )
    lines = domain.regenerated_lines(await store.lines(old.invoice_id, old.currency))
    state = InvoiceState(
        domain.regenerated_invoice_id(old.customer_id, old.invoice_id),
        old.customer_id,
        old.currency,
        "closed",
        old.period_start,
        old.period_end,
        old.invoice_id,
    )
    if not await open_invoice(store, tx, message, state, "regenerated"):
        raise RuntimeError(f"invoice {state.invoice_id} already exists for a first regeneration")
    await close_with(store, tx, message, state, lines)
    await store.move_usage(old.invoice_id, state.invoice_id)  # the usage is billed by the new lines now


async def balance_changed(message: Envelope[Any], tx: Transaction) -> None:
    """The credits service's view of an invoice: mark it paid, or open again."""
    data: InvoiceBalanceChanged = message.data
    store = InvoicingStore(tx.conn)
    invoice = await store.invoice(data.invoice_id, for_update=True)
    if invoice is None or invoice.status in ("voided", "pending", "closed"):
        return
    status: InvoiceStatus = "paid" if data.status == "paid" else "posted"
    await store.set_status(invoice.invoice_id, status, data.amount_due.amount)
    if status != invoice.status:
        status_changed(tx, message, invoice, status)
