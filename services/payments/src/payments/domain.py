"""The payments domain: offline payments, their reversal, deductions of promotional
credit, refunds of the credit balance, and what payments knows of invoices. Pure: a state
and a message in, an `Outcome` out (the next state, the events to publish, the record to
save); no I/O.

A handler loads the customer's `PaymentsState` (at least the records the message names),
calls one function, saves `outcome.saved` if it is not None and publishes
`outcome.events`. A broken business rule raises `DomainError(code, reason)` and changes
nothing; the handler answers the command with CommandRejected(code, reason).

Rules decided here (for billing teams):

- **Amounts.** Every amount a command carries must be above zero and have no more digits
  than its currency's minor unit (12.345 USD is refused, not rounded: money received or
  paid out is counted in cents). The currency is a real ISO 4217 code: `Money` refuses
  any other. Events carry the amount written to the minor unit ("25" → "25.00"). Each
  amount is below `MAX_ABS_AMOUNT` (10^15) by contract; payments adds no amounts up
  (what a payment pays and what is left as credit balance are summed in credits, which
  checks `MAX_ABS_TOTAL`), and an invoice total past 10^15 (a sum, up to 10^18) is taken
  in like any other.
- **Offline payments.** A payment naming an invoice payments has heard of must be in the
  invoice's currency, and the invoice must not be voided (record it against the
  regenerated invoice, or name no invoice). A payment naming an invoice payments has NOT
  heard of yet is accepted and published: invoicing's events and payments' commands
  travel on different topics, so the invoice may simply not have arrived; the credits
  service parks the payment until the invoice is posted. A pending, closed, posted or
  paid invoice takes payments; what exceeds the amount due becomes credit balance (in
  credits).
- **Duplicates.** A payment, deduction or refund id seen before with the same content
  changes nothing and publishes nothing (whatever its status now); with other content it
  is refused (`duplicate_payment_id`, `duplicate_deduction_id`, `duplicate_refund_id`).
  A new attempt needs a new id.
- **Reversal** (a bounced check) applies to a recorded payment and publishes
  PaymentReversed with the payment's amount; reversing it again changes nothing; an
  unknown payment is refused. Credits takes the money back from wherever it went.
- **Deduction** of promotional credit is recorded and published; the credits service
  decides whether the customer has that much and answers.
- **Refunds** are a saga: RefundCreditBalance records the refund as `requested` and
  publishes RefundRequested; credits answers CreditRefunded (the refund becomes
  `recorded`, RefundRecorded carries the amount credits debited) or RefundDeclined (the
  refund becomes `failed`, RefundFailed carries credits' reason). An answer for a refund
  payments does not know, or one already finished, is ignored.
- **Invoices** are known from invoicing.events: their currency and latest status. A
  voided invoice stays voided (a regenerated invoice has a new id).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from tally_contracts import DomainError, MessageData, Money
from tally_contracts.credits import CreditRefunded, RefundDeclined
from tally_contracts.currencies import minor_unit
from tally_contracts.invoicing import (
    InvoiceClosed,
    InvoiceCreated,
    InvoiceFinalized,
    InvoiceStatus,
    InvoiceStatusChanged,
    InvoiceVoided,
)
from tally_contracts.payments import (
    DeductPromotionalCredits,
    PaymentMethod,
    PaymentRecorded,
    PaymentReversed,
    PromotionalCreditsDeducted,
    RecordOfflinePayment,
    RefundCreditBalance,
    RefundFailed,
    RefundRecorded,
    RefundRequested,
    ReversePayment,
)

ErrorCode = Literal[
    "amount_not_positive",
    "amount_too_precise",
    "currency_mismatch",
    "invoice_voided",
    "duplicate_payment_id",
    "duplicate_deduction_id",
    "duplicate_refund_id",
    "unknown_payment",
]
PaymentStatus = Literal["recorded", "reversed"]
DeductionStatus = Literal["recorded"]
RefundStatus = Literal["requested", "recorded", "failed"]
InvoiceEvent = InvoiceCreated | InvoiceClosed | InvoiceFinalized | InvoiceVoided | InvoiceStatusChanged
RefundAnswer = CreditRefunded | RefundDeclined


@dataclass(frozen=True, slots=True)
class Payment:
    payment_id: str
    invoice_id: str | None
    amount: Money
    method: PaymentMethod
    reference: str | None
    received_on: dt.date
    status: PaymentStatus = "recorded"
    reversal_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Deduction:
    """A deduction payments recorded; whether credits could take it is credits' answer."""

    deduction_id: str
    amount: Money
    reason: str
    grant_id: str | None
    status: DeductionStatus = "recorded"


@dataclass(frozen=True, slots=True)
class Refund:
    """A refund of credit balance; `paid_out` is what credits debited, once recorded."""

    refund_id: str
    amount: Money
    method: PaymentMethod
    reference: str | None
    status: RefundStatus = "requested"
    paid_out: Money | None = None
    failure_reason: str | None = None


@dataclass(frozen=True, slots=True)
class KnownInvoice:
    """An invoice heard of on invoicing.events; `currency` is None until an event names it."""

    invoice_id: str
    currency: str | None
    status: InvoiceStatus


Record = Payment | Deduction | Refund | KnownInvoice


@dataclass(frozen=True, slots=True)
class PaymentsState:
    """What payments knows about one customer, by id."""

    payments: Mapping[str, Payment] = field(default_factory=dict)
    deductions: Mapping[str, Deduction] = field(default_factory=dict)
    refunds: Mapping[str, Refund] = field(default_factory=dict)
    invoices: Mapping[str, KnownInvoice] = field(default_factory=dict)

    def put(self, record: Record) -> PaymentsState:
        """This state with `record` added or replaced."""
        match record:
            case Payment():
                return replace(self, payments={**self.payments, record.payment_id: record})
            case Deduction():
                return replace(self, deductions={**self.deductions, record.deduction_id: record})
            case Refund():
                return replace(self, refunds={**self.refunds, record.refund_id: record})
            case KnownInvoice():
                return replace(self, invoices={**self.invoices, record.invoice_id: record})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a function decided: the next state, the events to publish, and the one record
    to save (None: nothing changed, nothing to publish)."""

    state: PaymentsState
    events: tuple[MessageData, ...] = ()
    saved: Record | None = None

    @classmethod
    def unchanged(cls, state: PaymentsState) -> Outcome:
        return cls(state)

    @classmethod
    def of(cls, state: PaymentsState, record: Record, *events: MessageData) -> Outcome:
        return cls(state.put(record), events, record)


# -- commands ------------------------------------------------------------------------


def record_offline_payment(state: PaymentsState, cmd: RecordOfflinePayment) -> Outcome:
    """Record a payment received outside Tally. An invoice not heard of yet is accepted
    (credits parks the payment until it is posted); a known one must be in the payment's
    currency and not voided. See the module's rules."""
    existing = state.payments.get(cmd.payment_id)
    if existing is not None:
        if _payment_details(existing) == (
            cmd.invoice_id,
            cmd.amount,
            cmd.method,
            cmd.reference,
            cmd.received_on,
        ):
            return Outcome.unchanged(state)
        raise DomainError(
            "duplicate_payment_id",
            f"payment {cmd.payment_id} was already recorded with other details "
            f"({_describe_payment(existing)}); record a new payment under a new payment_id",
        )
    amount = _payable(cmd.amount, f"payment {cmd.payment_id}")
    invoice = state.invoices.get(cmd.invoice_id) if cmd.invoice_id is not None else None
    if invoice is not None and invoice.status == "voided":
        raise DomainError(
            "invoice_voided",
            f"invoice {invoice.invoice_id} is voided; record payment {cmd.payment_id} against the "
            f"invoice that replaced it, or name no invoice to keep it as credit balance",
        )
    if invoice is not None and invoice.currency is not None and invoice.currency != cmd.amount.currency:
        raise DomainError(
            "currency_mismatch",
            f"invoice {invoice.invoice_id} is in {invoice.currency}, payment {cmd.payment_id} in "
            f"{cmd.amount.currency}; record it in {invoice.currency}, or name no invoice to keep it "
            f"as credit balance in {cmd.amount.currency}",
        )
    payment = Payment(
        payment_id=cmd.payment_id,
        invoice_id=cmd.invoice_id,
        amount=amount,
        method=cmd.method,
        reference=cmd.reference,
        received_on=cmd.received_on,
    )
    return Outcome.of(
        state,
        payment,
        PaymentRecorded(
            payment_id=payment.payment_id,
            invoice_id=payment.invoice_id,
            amount=payment.amount,
            method=payment.method,
            reference=payment.reference,
            received_on=payment.received_on,
        ),
    )


def reverse_payment(state: PaymentsState, cmd: ReversePayment) -> Outcome:
    """Reverse a recorded payment (a bounced check); a reversed one stays as it is."""
    payment = state.payments.get(cmd.payment_id)
    if payment is None:
        raise DomainError(
            "unknown_payment",
            f"payment {cmd.payment_id} was never recorded for this customer; check the payment_id",
        )
    if payment.status == "reversed":
        return Outcome.unchanged(state)
    return Outcome.of(
        state,
        replace(payment, status="reversed", reversal_reason=cmd.reason),
        PaymentReversed(payment_id=payment.payment_id, amount=payment.amount, reason=cmd.reason),
    )


def deduct_promotional_credits(state: PaymentsState, cmd: DeductPromotionalCredits) -> Outcome:
    """Record a deduction of promotional credit; credits decides whether there is enough."""
    existing = state.deductions.get(cmd.deduction_id)
    if existing is not None:
        if (existing.amount, existing.reason, existing.grant_id) == (cmd.amount, cmd.reason, cmd.grant_id):
            return Outcome.unchanged(state)
        raise DomainError(
            "duplicate_deduction_id",
            f"deduction {cmd.deduction_id} was already recorded with other details ({existing.amount}"
            f"{f' from grant {existing.grant_id}' if existing.grant_id else ''}, reason {existing.reason!r}); "
            f"deduct again under a new deduction_id",
        )
    deduction = Deduction(
        deduction_id=cmd.deduction_id,
        amount=_payable(cmd.amount, f"deduction {cmd.deduction_id}"),
        reason=cmd.reason,
        grant_id=cmd.grant_id,
    )
    return Outcome.of(
        state,
        deduction,
        PromotionalCreditsDeducted(
            deduction_id=deduction.deduction_id,
            amount=deduction.amount,
            reason=deduction.reason,
            grant_id=deduction.grant_id,
        ),
    )


def refund_credit_balance(state: PaymentsState, cmd: RefundCreditBalance) -> Outcome:
    """Start a refund: record it as requested and ask credits to debit the credit balance."""
    existing = state.refunds.get(cmd.refund_id)
    if existing is not None:
        if (existing.amount, existing.method, existing.reference) == (cmd.amount, cmd.method, cmd.reference):
            return Outcome.unchanged(state)
        raise DomainError(
            "duplicate_refund_id",
            f"refund {cmd.refund_id} was already requested with other details ({existing.amount} by "
            f"{existing.method}, now {existing.status}); request a new refund under a new refund_id",
        )
    refund = Refund(
        refund_id=cmd.refund_id,
        amount=_payable(cmd.amount, f"refund {cmd.refund_id}"),
        method=cmd.method,
        reference=cmd.reference,
    )
    return Outcome.of(
        state,
        refund,
        RefundRequested(
            refund_id=refund.refund_id, amount=refund.amount, method=refund.method, reference=refund.reference
        ),
    )


# -- answers and facts from other services -------------------------------------------


def settle_refund(state: PaymentsState, answer: RefundAnswer) -> Outcome:
    """Finish a requested refund with credits' answer; any other answer is ignored."""
    refund = state.refunds.get(answer.refund_id)
    if refund is None or refund.status != "requested":
        return Outcome.unchanged(state)
    match answer:
        case CreditRefunded():
            return Outcome.of(
                state,
                replace(refund, status="recorded", paid_out=answer.amount),
                RefundRecorded(
                    refund_id=refund.refund_id,
                    amount=answer.amount,
                    method=refund.method,
                    reference=refund.reference,
                ),
            )
        case RefundDeclined():
            return Outcome.of(
                state,
                replace(refund, status="failed", failure_reason=answer.reason),
                RefundFailed(refund_id=refund.refund_id, amount=refund.amount, reason=answer.reason),
            )


def track_invoice(state: PaymentsState, event: InvoiceEvent) -> Outcome:
    """Update what payments knows of an invoice; publishes nothing."""
    known = state.invoices.get(event.invoice_id)
    currency = known.currency if known is not None else None
    status: InvoiceStatus
    match event:
        case InvoiceCreated():
            currency, status = event.currency, event.status
        case InvoiceClosed():
            currency, status = event.currency, "closed"
        case InvoiceFinalized():
            currency, status = event.currency, "posted"
        case InvoiceVoided():
            status = "voided"
        case InvoiceStatusChanged():
            status = event.status
    if known is not None and known.status == "voided":
        status = "voided"
    invoice = KnownInvoice(event.invoice_id, currency, status)
    if invoice == known:
        return Outcome.unchanged(state)
    return Outcome.of(state, invoice)


# -- rules ---------------------------------------------------------------------------


def _payable(amount: Money, what: str) -> Money:
    """`amount` written to its currency's minor unit, if it is a payable amount."""
    if not amount.is_positive:
        raise DomainError("amount_not_positive", f"{what} must be above zero, not {amount}")
    if amount.rounded() != amount:
        digits = minor_unit(amount.currency)
        raise DomainError(
            "amount_too_precise",
            f"{what} of {amount} has more decimal places than {amount.currency}'s {digits}; "
            f"send the amount in whole minor units, e.g. {amount.rounded()}",
        )
    return amount.rounded()


def _payment_details(payment: Payment) -> tuple[object, ...]:
    return (payment.invoice_id, payment.amount, payment.method, payment.reference, payment.received_on)


def _describe_payment(payment: Payment) -> str:
    invoice = f"for invoice {payment.invoice_id}" if payment.invoice_id else "for no invoice"
    return f"{payment.amount} by {payment.method} {invoice}, received on {payment.received_on}"
