"""The payments service: subscriptions wired to handlers, and its read API."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from payments import handlers
from payments.domain import Deduction, Payment, Refund
from payments.store import PaymentsStore
from tally_contracts import Money, credits, invoicing, payments, topics
from tally_contracts.read_apis import DEFAULT_READ_API_PORTS
from tally_messaging import Service, ServiceSettings


def build(settings: ServiceSettings | None = None) -> Service:
    service = Service(
        "payments",
        events_topic=topics.PAYMENTS_EVENTS,
        default_http_port=DEFAULT_READ_API_PORTS["payments"],
        settings=settings,
    )
    service.consumes(topics.PAYMENTS_COMMANDS, topics.INVOICING_EVENTS, topics.CREDITS_EVENTS)
    commands = topics.PAYMENTS_COMMANDS
    service.handles(commands, payments.RecordOfflinePayment)(handlers.record_offline_payment)
    service.handles(commands, payments.ReversePayment)(handlers.reverse_payment)
    service.handles(commands, payments.DeductPromotionalCredits)(handlers.deduct_promotional_credits)
    service.handles(commands, payments.RefundCreditBalance)(handlers.refund_credit_balance)
    service.handles(topics.CREDITS_EVENTS, credits.CreditRefunded, credits.RefundDeclined)(
        handlers.settle_refund
    )
    service.handles(
        topics.INVOICING_EVENTS,
        invoicing.InvoiceCreated,
        invoicing.InvoiceClosed,
        invoicing.InvoiceFinalized,
        invoicing.InvoiceVoided,
        invoicing.InvoiceStatusChanged,
    )(handlers.track_invoice)

    @service.get("/customers/{customer_id}/payments")
    async def customer_payments(request: Request) -> Response:
        customer_id = request.path_params["customer_id"]
        async with service.pool.acquire() as conn:
            store = PaymentsStore(conn)
            paid, deducted, refunded = (
                await store.payments(customer_id),
                await store.deductions(customer_id),
                await store.refunds(customer_id),
            )
        return JSONResponse(
            {
                "customer_id": customer_id,
                "payments": [_payment_json(p) for p in paid],
                "deductions": [_deduction_json(d) for d in deducted],
                "refunds": [_refund_json(r) for r in refunded],
            }
        )

    return service


def _amount(money: Money | None) -> str | None:
    return None if money is None else format(money.amount, "f")


def _payment_json(payment: Payment) -> dict[str, Any]:
    return {
        "payment_id": payment.payment_id,
        "invoice_id": payment.invoice_id,
        "amount": _amount(payment.amount),
        "currency": payment.amount.currency,
        "method": payment.method,
        "reference": payment.reference,
        "received_on": payment.received_on.isoformat(),
        "status": payment.status,
        "reason": payment.reversal_reason,
    }


def _deduction_json(deduction: Deduction) -> dict[str, Any]:
    return {
        "deduction_id": deduction.deduction_id,
        "amount": _amount(deduction.amount),
        "currency": deduction.amount.currency,
        "reason": deduction.reason,
        "grant_id": deduction.grant_id,
        "status": deduction.status,
    }


def _refund_json(refund: Refund) -> dict[str, Any]:
    return {
        "refund_id": refund.refund_id,
        "amount": _amount(refund.amount),
        "currency": refund.amount.currency,
        "method": refund.method,
        "reference": refund.reference,
        "status": refund.status,
        "paid_out": _amount(refund.paid_out),
        "reason": refund.failure_reason,
    }
