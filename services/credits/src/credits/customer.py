"""One customer's credit position as the credits service keeps it: plain frozen records,
one row each when stored, and the figures derived from them.

`seq` is one counter per customer, taken by every grant, lot and invoice when it is
recorded: it is the "oldest first" order, and it is stored so a replay keeps it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from tally_contracts import Money

GrantStatus = Literal["active", "deleted"]
LotOrigin = Literal["manual", "overpayment", "negative_invoice", "released_payment", "shortfall"]
LotStatus = Literal["active", "deleted", "withdrawn"]
InvoiceStatus = Literal["open", "paid", "voided"]
PaymentStatus = Literal["parked", "applied", "reversed"]
SourceType = Literal["promotional", "credit_balance", "payment"]
ApplicationStatus = Literal["active", "released"]
RefundStatus = Literal["refunded", "declined"]

PAYMENT_ORIGINS: tuple[LotOrigin, ...] = ("overpayment", "released_payment")


LOWEST_PRIORITY = 50
"""A grant without a priority is spent as the last priority."""


@dataclass(frozen=True, slots=True)
class GrantScope:
    """The invoice lines a grant may pay: of `line_kind`, of `service`, or both (None: any)."""

    line_kind: str | None = None
    service: str | None = None

    def covers(self, line: InvoiceLine) -> bool:
        return (self.line_kind is None or line.kind == self.line_kind) and (
            self.service is None or line.service == self.service
        )


@dataclass(frozen=True, slots=True)
class PromotionalGrant:
    """Promotional credit. `amount` = remaining + applied + expired + deducted, always."""

    grant_id: str
    granted: Money  # as the GrantCredit asked, before any currency change
    amount: Money  # as granted, or as converted by ChangeCreditCurrency
    remaining: Money
    expired: Money
    deducted: Money
    expires_at: dt.date | None  # last day it can be used; None: never expires
    seq: int
    source: str
    reason: str | None = None
    first_eligible_seq: int = 0  # invoices recorded before it are not paid from it automatically
    status: GrantStatus = "active"
    priority: int | None = None  # 1 is spent first; None is spent as LOWEST_PRIORITY
    scope: GrantScope | None = None  # None: any line

    @property
    def currency(self) -> str:
        return self.amount.currency

    def usable_on(self, day: dt.date) -> bool:
        """True when an invoice issued on `day` (or a message of that day) may use it."""
        return self.expires_at is None or self.expires_at >= day

    @property
    def burn_order(self) -> tuple[int, bool, dt.date, int]:
        """Spent in this order: priority, then nearest last day (never-expiring last), then oldest."""
        priority = LOWEST_PRIORITY if self.priority is None else self.priority
        return (priority, self.expires_at is None, self.expires_at or dt.date.max, self.seq)


@dataclass(frozen=True, slots=True)
class CreditLot:
    """One piece of the credit balance, spent oldest first.

    A manual entry's lot is `manual:<grant_id>`; an overpayment's `payment:<payment_id>`;
    a negative invoice's `invoice:<invoice_id>`; a payment released from a voided invoice
    `release:<application_id>`; what a reversal could not take back
    `shortfall:payment:<payment_id>` (or `shortfall:invoice:<invoice_id>`).
    """

    lot_id: str
    origin: LotOrigin
    origin_id: str  # the grant, payment or invoice it came from
    amount: Money  # signed: a negative manual entry or a shortfall is below zero
    remaining: Money
    seq: int
    status: LotStatus = "active"
    first_eligible_seq: int = 0
    source: str | None = None  # manual entries: as granted
    reason: str | None = None

    @property
    def currency(self) -> str:
        return self.amount.currency


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    """A line a scoped grant may pay (usage, subscription, one_time; adjustments are never
    in a scope), its amount rounded to the minor unit."""

    line_id: str
    kind: str
    service: str | None
    amount: Money


@dataclass(frozen=True, slots=True)
class Invoice:
    """A posted invoice. `order` is its place in "oldest first": its own `seq`, or for a
    regenerated invoice the place of the invoice it replaces."""

    invoice_id: str
    total: Money
    issued_on: dt.date
    seq: int
    order: int
    status: InvoiceStatus
    regenerated_from: str | None = None
    lines: tuple[InvoiceLine, ...] = ()

    @property
    def currency(self) -> str:
        return self.total.currency


@dataclass(frozen=True, slots=True)
class Payment:
    """An offline payment. `parked`: it names an invoice credits has not seen yet."""

    payment_id: str
    invoice_id: str | None
    amount: Money
    received_on: dt.date
    status: PaymentStatus


@dataclass(frozen=True, slots=True)
class LinePart:
    """The part of a scoped grant's application that pays one invoice line."""

    line_id: str
    amount: Money


@dataclass(frozen=True, slots=True)
class Application:
    application_id: str
    invoice_id: str
    source_type: SourceType
    source_id: str  # grant id, lot id or payment id
    amount: Money
    status: ApplicationStatus = "active"
    lines: tuple[LinePart, ...] = ()  # a scoped grant's: the lines it pays, in line order


@dataclass(frozen=True, slots=True)
class Refund:
    refund_id: str
    amount: Money
    status: RefundStatus


@dataclass(frozen=True, slots=True)
class Deduction:
    deduction_id: str
    amount: Money


@dataclass(frozen=True, slots=True)
class InvoiceBalance:
    total: Money
    credits_applied: Money
    payments_applied: Money
    amount_due: Money


@dataclass(frozen=True, slots=True)
class CustomerLedger:
    """Everything credits knows about one customer; records keep the order they were made in."""

    customer_id: str
    grants: tuple[PromotionalGrant, ...] = ()
    lots: tuple[CreditLot, ...] = ()
    invoices: tuple[Invoice, ...] = ()
    payments: tuple[Payment, ...] = ()
    applications: tuple[Application, ...] = ()
    refunds: tuple[Refund, ...] = ()
    deductions: tuple[Deduction, ...] = ()
    next_seq: int = 1

    def grant(self, grant_id: str) -> PromotionalGrant | None:
        return next((g for g in self.grants if g.grant_id == grant_id), None)

    def lot(self, lot_id: str) -> CreditLot | None:
        return next((lot for lot in self.lots if lot.lot_id == lot_id), None)

    def invoice(self, invoice_id: str) -> Invoice | None:
        return next((i for i in self.invoices if i.invoice_id == invoice_id), None)

    def payment(self, payment_id: str) -> Payment | None:
        return next((p for p in self.payments if p.payment_id == payment_id), None)

    @property
    def parked_payments(self) -> tuple[Payment, ...]:
        return tuple(p for p in self.payments if p.status == "parked")

    def invoice_balance(self, invoice_id: str) -> InvoiceBalance:
        invoice = self.invoice(invoice_id)
        if invoice is None:
            raise KeyError(invoice_id)
        return invoice_balance(invoice, (a for a in self.applications if a.invoice_id == invoice_id))

    def promotional_available(self, currency: str) -> Money:
        return total_of(
            (g.remaining for g in self.grants if g.status == "active" and g.currency == currency), currency
        )

    def balance_available(self, currency: str) -> Money:
        """The credit balance: below zero only while a reversal's shortfall is owed."""
        return total_of(
            (lot.remaining for lot in self.lots if lot.status == "active" and lot.currency == currency),
            currency,
        )


def manual_lot_id(grant_id: str) -> str:
    return f"manual:{grant_id}"


def total_of(amounts: Iterable[Money], currency: str) -> Money:
    total = Money.zero(currency)
    for amount in amounts:
        total = total + amount
    return total


def invoice_balance(invoice: Invoice, applications: Iterable[Application]) -> InvoiceBalance:
    """amount_due = total − credits_applied − payments_applied (the contract's formula).

    A negative invoice's total moved to the credit balance counts as credit applied (a
    negative amount), so its amount due is zero; once voided that transfer is undone.
    A voided invoice is owed by no one: its amount due is zero (as its ledger account
    `invoice:<id>` is), and nothing is applied to it any more.
    """
    currency = invoice.currency
    active = [a for a in applications if a.status == "active"]
    credits = total_of((a.amount for a in active if a.source_type != "payment"), currency)
    payments = total_of((a.amount for a in active if a.source_type == "payment"), currency)
    if invoice.status == "voided":
        return InvoiceBalance(invoice.total, credits, payments, Money.zero(currency))
    if invoice.total.is_negative:
        credits = credits + invoice.total
    return InvoiceBalance(invoice.total, credits, payments, invoice.total - credits - payments)
