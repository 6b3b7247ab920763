"""Money in and out: offline payments, their reversal, and refunds of the credit
balance. Rules: `credits.domain`."""

from __future__ import annotations

from dataclasses import replace

from credits.allocation import (
    allocate_payment,
    finish,
    record_shortfall,
    release,
    spend_credit_balance,
    withdraw_lot,
)
from credits.change import Cause, Change, Outcome
from credits.customer import PAYMENT_ORIGINS, CustomerLedger, Payment, Refund
from credits.ledger import PAYMENTS_RECEIVED, REFUNDS_PAID, payment_account
from tally_contracts import DomainError, Money
from tally_contracts.credits import CreditRefunded, RefundDeclined
from tally_contracts.payments import PaymentRecorded, PaymentReversed, RefundRequested


def record_payment(state: CustomerLedger, event: PaymentRecorded, cause: Cause) -> Outcome:
    """Pay the named invoice, the excess to credit balance; park it if the invoice is not posted yet."""
    amount = event.amount.rounded()
    existing = state.payment(event.payment_id)
    if existing is not None:
        if (existing.amount, existing.invoice_id) == (amount, event.invoice_id):
            return Outcome.unchanged(state)
        raise DomainError("payment_conflict", f"payment {event.payment_id} was recorded with other content")
    if not amount.is_positive:
        raise DomainError("amount_not_positive", f"payment {event.payment_id} must be positive, not {amount}")
    change = Change(state, cause)
    parked = event.invoice_id is not None and event.invoice_id not in change.invoices
    payment = Payment(
        event.payment_id, event.invoice_id, amount, event.received_on, "parked" if parked else "applied"
    )
    change.put_payment(payment)
    change.post(
        f"payment {payment.payment_id} received",
        (PAYMENTS_RECEIVED, -amount),
        (payment_account(payment.payment_id), amount),
    )
    if not parked:
        allocate_payment(change, payment)
    return finish(change)


def reverse_payment(state: CustomerLedger, event: PaymentReversed, cause: Cause) -> Outcome:
    """Take the payment back from wherever it went; what was refunded becomes a shortfall."""
    payment = state.payment(event.payment_id)
    if payment is None:
        raise DomainError(
            "unknown_payment", f"payment {event.payment_id!r} was never recorded for this customer"
        )
    if payment.status == "reversed":
        return Outcome.unchanged(state)
    change = Change(state, cause)
    account = payment_account(payment.payment_id)
    for application in change.active_applications(source_type="payment", source_id=payment.payment_id):
        release(change, application, payment_goes_to="payment_reversed")
    shortfall = Money.zero(payment.amount.currency)
    for lot in state.lots:
        if lot.origin in PAYMENT_ORIGINS and lot.origin_id == payment.payment_id and lot.status == "active":
            shortfall = shortfall + withdraw_lot(change, lot, account)
    if shortfall.is_positive:
        record_shortfall(
            change, f"shortfall:payment:{payment.payment_id}", payment.payment_id, shortfall, account
        )
    change.put_payment(replace(payment, status="reversed"))
    change.post(
        f"payment {payment.payment_id} reversed",
        (account, -payment.amount),
        (PAYMENTS_RECEIVED, payment.amount),
    )
    return finish(change)


def refund(state: CustomerLedger, event: RefundRequested, cause: Cause) -> Outcome:
    """Pay credit balance back out, oldest lot first, if it covers the amount; otherwise
    decline it with the reason. Either answer is recorded: a refund id is answered once."""
    if any(r.refund_id == event.refund_id for r in state.refunds):
        return Outcome.unchanged(state)
    amount = event.amount.rounded()
    change = Change(state, cause)
    available = change.balance_available(amount.currency)
    reason = None
    if not amount.is_positive:
        reason = f"a refund must be positive, not {amount}"
    elif available < amount:
        reason = (
            f"the credit balance is {available}, less than the {amount} asked; refund at most the balance"
        )
    if reason is not None:
        change.put_refund(Refund(event.refund_id, amount, "declined"))
        change.publish(RefundDeclined(refund_id=event.refund_id, amount=amount, reason=reason))
        return finish(change)
    spend_credit_balance(change, amount.currency, amount, REFUNDS_PAID, f"refund {event.refund_id}")
    change.put_refund(Refund(event.refund_id, amount, "refunded"))
    change.publish(CreditRefunded(refund_id=event.refund_id, amount=amount))
    return finish(change)
