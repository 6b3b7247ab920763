"""One function per message type: load → decide (domain) → save → publish."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from payments import domain
from payments.domain import InvoiceEvent, Outcome, PaymentsState, RefundAnswer
from payments.store import PaymentsStore
from tally_contracts import DomainError, Envelope
from tally_contracts.payments import (
    DeductPromotionalCredits,
    RecordOfflinePayment,
    RefundCreditBalance,
    ReversePayment,
)
from tally_messaging import Transaction


def _customer_id(message: Envelope[Any]) -> str:
    if not message.customer_id:
        raise DomainError("customer_id_missing", f"{message.type} needs the envelope's customer_id")
    return message.customer_id


async def _apply(
    tx: Transaction,
    message: Envelope[Any],
    customer_id: str,
    state: PaymentsState,
    decide: Callable[[PaymentsState], Outcome],
) -> None:
    """Run one domain function; save and publish what it decided. A broken rule raises
    `DomainError`, which the runtime answers (CommandRejected) after undoing everything."""
    outcome = decide(state)
    if outcome.saved is not None:
        await PaymentsStore(tx.conn).save(customer_id, outcome.saved)
    for event in outcome.events:
        tx.publish(message, event)


# -- commands --------------------------------------------------------------------------


async def record_offline_payment(message: Envelope[RecordOfflinePayment], tx: Transaction) -> None:
    data = message.data
    customer_id = _customer_id(message)
    state = await PaymentsStore(tx.conn).state(
        customer_id, payments=[data.payment_id], invoices=[data.invoice_id]
    )
    await _apply(tx, message, customer_id, state, lambda s: domain.record_offline_payment(s, data))


async def reverse_payment(message: Envelope[ReversePayment], tx: Transaction) -> None:
    data = message.data
    customer_id = _customer_id(message)
    state = await PaymentsStore(tx.conn).state(customer_id, payments=[data.payment_id])
    await _apply(tx, message, customer_id, state, lambda s: domain.reverse_payment(s, data))


async def deduct_promotional_credits(message: Envelope[DeductPromotionalCredits], tx: Transaction) -> None:
    data = message.data
    customer_id = _customer_id(message)
    state = await PaymentsStore(tx.conn).state(customer_id, deductions=[data.deduction_id])
    await _apply(tx, message, customer_id, state, lambda s: domain.deduct_promotional_credits(s, data))


async def refund_credit_balance(message: Envelope[RefundCreditBalance], tx: Transaction) -> None:
    data = message.data
    customer_id = _customer_id(message)
    state = await PaymentsStore(tx.conn).state(customer_id, refunds=[data.refund_id])
    await _apply(tx, message, customer_id, state, lambda s: domain.refund_credit_balance(s, data))


# -- credits' answers and invoicing's facts --------------------------------------------


async def settle_refund(message: Envelope[RefundAnswer], tx: Transaction) -> None:
    """Credits answered a RefundRequested: finish the refund (an unknown refund is ignored)."""
    data = message.data
    if not message.customer_id:
        return  # refunds are the customer's: an answer naming none cannot be one of ours
    state = await PaymentsStore(tx.conn).state(message.customer_id, refunds=[data.refund_id])
    await _apply(tx, message, message.customer_id, state, lambda s: domain.settle_refund(s, data))


async def track_invoice(message: Envelope[InvoiceEvent], tx: Transaction) -> None:
    """Remember an invoice's currency and status; publishes nothing."""
    data = message.data
    if not message.customer_id:
        return  # invoices are the customer's: a fact naming none cannot be checked against
    state = await PaymentsStore(tx.conn).state(message.customer_id, invoices=[data.invoice_id])
    await _apply(tx, message, message.customer_id, state, lambda s: domain.track_invoice(s, data))
