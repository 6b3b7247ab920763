"""A change in the making: a working copy of one customer's ledger that an operation edits,
collecting the events and ledger entries it causes, then frozen into an `Outcome`.

Every id a change makes (applications, entries) is `<cause message id>/<n>` with `n`
counting from 1 inside the change, so replaying a message gives identical results.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from credits.customer import (
    Application,
    CreditLot,
    CustomerLedger,
    Deduction,
    Invoice,
    InvoiceStatus,
    Payment,
    PromotionalGrant,
    Refund,
    SourceType,
    invoice_balance,
    total_of,
)
from credits.ledger import LedgerEntry, Posting
from tally_contracts import DomainError, MessageData, Money
from tally_contracts.credits import CreditBalanceChanged, InvoiceBalanceChanged
from tally_contracts.money import MAX_ABS_TOTAL, within_total_limit


@dataclass(frozen=True, slots=True)
class Cause:
    """The message an operation answers: its id seeds every id the operation makes, and its
    date (the envelope's `occurred_at` day) decides which grants are past their last day."""

    message_id: str
    on: dt.date


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an operation decided: the next state, the events to publish, the entries to append."""

    state: CustomerLedger
    events: tuple[MessageData, ...]
    entries: tuple[LedgerEntry, ...]

    @classmethod
    def unchanged(cls, state: CustomerLedger) -> Outcome:
        return cls(state, (), ())


class Change:
    def __init__(self, state: CustomerLedger, cause: Cause) -> None:
        self.cause = cause
        self.customer_id = state.customer_id
        self.grants = {g.grant_id: g for g in state.grants}
        self.lots = {lot.lot_id: lot for lot in state.lots}
        self.invoices = {i.invoice_id: i for i in state.invoices}
        self.payments = {p.payment_id: p for p in state.payments}
        self.applications = {a.application_id: a for a in state.applications}
        self.refunds = {r.refund_id: r for r in state.refunds}
        self.deductions = {d.deduction_id: d for d in state.deductions}
        self.next_seq = state.next_seq
        self.events: list[MessageData] = []
        self.entries: list[LedgerEntry] = []
        self.touched_invoices: dict[str, None] = {}
        self.touched_currencies: dict[str, None] = {}
        self._counter = 0
        self._applied: dict[str, Money] = {}
        for application in state.applications:
            if application.status == "active":
                self._add_applied(application.invoice_id, application.amount)

    # -- ids, entries, events --------------------------------------------------------

    def new_id(self) -> str:
        self._counter += 1
        return f"{self.cause.message_id}/{self._counter}"

    def take_seq(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def post(self, memo: str, *postings: tuple[str, Money]) -> None:
        """Append one balanced entry; postings of zero are left out, an empty entry is not made."""
        kept = tuple(Posting(account, amount) for account, amount in postings if not amount.is_zero)
        if kept:
            self.entries.append(LedgerEntry(self.new_id(), self.cause.message_id, memo, kept))

    def publish(self, event: MessageData) -> None:
        self.events.append(event)

    def touch_invoice(self, invoice_id: str) -> None:
        self.touched_invoices[invoice_id] = None

    def touch_currency(self, currency: str) -> None:
        self.touched_currencies[currency] = None

    # -- records ---------------------------------------------------------------------

    def put_grant(self, grant: PromotionalGrant) -> None:
        self.grants[grant.grant_id] = grant
        self.touch_currency(grant.currency)

    def put_lot(self, lot: CreditLot) -> None:
        self.lots[lot.lot_id] = lot
        self.touch_currency(lot.currency)

    def put_invoice(self, invoice: Invoice) -> None:
        self.invoices[invoice.invoice_id] = invoice
        self.touch_invoice(invoice.invoice_id)

    def put_payment(self, payment: Payment) -> None:
        self.payments[payment.payment_id] = payment

    def add_application(self, application: Application) -> None:
        self.applications[application.application_id] = application
        self._add_applied(application.invoice_id, application.amount)
        self.touch_invoice(application.invoice_id)

    def release_application(self, application: Application) -> None:
        self.applications[application.application_id] = replace(application, status="released")
        self._add_applied(application.invoice_id, -application.amount)
        self.touch_invoice(application.invoice_id)

    def put_refund(self, refund: Refund) -> None:
        self.refunds[refund.refund_id] = refund

    def put_deduction(self, deduction: Deduction) -> None:
        self.deductions[deduction.deduction_id] = deduction

    def _add_applied(self, invoice_id: str, amount: Money) -> None:
        current = self._applied.get(invoice_id)
        self._applied[invoice_id] = amount if current is None else current + amount

    # -- figures ---------------------------------------------------------------------

    def amount_due(self, invoice: Invoice) -> Money:
        """What the invoice still needs; zero for a voided, paid or negative invoice."""
        if invoice.status == "voided" or not invoice.total.is_positive:
            return Money.zero(invoice.currency)
        applied = self._applied.get(invoice.invoice_id)
        return invoice.total if applied is None else invoice.total - applied

    def active_applications(
        self,
        *,
        invoice_id: str | None = None,
        source_type: SourceType | None = None,
        source_id: str | None = None,
    ) -> list[Application]:
        return [
            a
            for a in self.applications.values()
            if a.status == "active"
            and (invoice_id is None or a.invoice_id == invoice_id)
            and (source_type is None or a.source_type == source_type)
            and (source_id is None or a.source_id == source_id)
        ]

    def balance_available(self, currency: str) -> Money:
        return total_of(
            (
                lot.remaining
                for lot in self.lots.values()
                if lot.status == "active" and lot.currency == currency
            ),
            currency,
        )

    def currencies_to_settle(self) -> list[str]:
        """Where credit or an invoice changed: the only places new applications can arise."""
        currencies = dict(self.touched_currencies)
        for invoice_id in self.touched_invoices:
            currencies[self.invoices[invoice_id].currency] = None
        return list(currencies)

    # -- the end -----------------------------------------------------------------------

    def outcome(self) -> Outcome:
        """Freeze the state; announce each touched invoice's balance and each touched currency.

        A promotional credit or credit balance that would reach MAX_ABS_TOTAL raises
        `total_over_limit` instead: no event carries a sum its consumers would refuse.
        """
        for invoice_id in self.touched_invoices:
            invoice = self.invoices[invoice_id]
            if invoice.status != "voided":
                status: InvoiceStatus = "paid" if self.amount_due(invoice).is_zero else "open"
                invoice = self.invoices[invoice_id] = replace(invoice, status=status)
            balance = invoice_balance(invoice, self.active_applications(invoice_id=invoice_id))
            self.publish(
                InvoiceBalanceChanged(
                    invoice_id=invoice_id,
                    total=balance.total,
                    credits_applied=balance.credits_applied,
                    payments_applied=balance.payments_applied,
                    amount_due=balance.amount_due,
                    status=invoice.status,
                )
            )
        state = CustomerLedger(
            customer_id=self.customer_id,
            grants=tuple(self.grants.values()),
            lots=tuple(self.lots.values()),
            invoices=tuple(self.invoices.values()),
            payments=tuple(self.payments.values()),
            applications=tuple(self.applications.values()),
            refunds=tuple(self.refunds.values()),
            deductions=tuple(self.deductions.values()),
            next_seq=self.next_seq,
        )
        for currency in self.touched_currencies:
            _check_total(state.promotional_available(currency), "promotional credit")
            _check_total(state.balance_available(currency), "credit balance")
            self.publish(
                CreditBalanceChanged(
                    currency=currency,
                    promotional_available=state.promotional_available(currency),
                    balance_available=state.balance_available(currency),
                )
            )
        return Outcome(state, tuple(self.events), tuple(self.entries))


def _check_total(total: Money, what: str) -> None:
    if not within_total_limit(total.amount):
        raise DomainError(
            "total_over_limit",
            f"this would take the customer's {what} in {total.currency} to {total}, past the limit of "
            f"{MAX_ABS_TOTAL:,}; refund or apply part of it first",
        )
