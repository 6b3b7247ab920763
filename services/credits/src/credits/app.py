"""The credits service: subscriptions wired to handlers, and its read API."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from credits import handlers
from credits.customer import Application
from credits.store import CreditsStore, EntryRow, InvoiceRow, amount_text
from tally_contracts import credits, invoicing, payments, topics
from tally_contracts.read_apis import DEFAULT_READ_API_PORTS
from tally_messaging import Service, ServiceSettings


def build(settings: ServiceSettings | None = None) -> Service:
    service = Service(
        "credits",
        events_topic=topics.CREDITS_EVENTS,
        default_http_port=DEFAULT_READ_API_PORTS["credits"],
        settings=settings,
    )
    service.consumes(topics.CREDITS_COMMANDS, topics.INVOICING_EVENTS, topics.PAYMENTS_EVENTS)
    commands = topics.CREDITS_COMMANDS
    service.handles(commands, credits.GrantCredit)(handlers.grant_credit)
    service.handles(commands, credits.DeleteCreditEntry)(handlers.delete_credit_entry)
    service.handles(commands, credits.ChangeCreditCurrency)(handlers.change_credit_currency)
    service.handles(commands, credits.ApplyCredits)(handlers.apply_credits)
    service.handles(commands, credits.ExpireCredits)(handlers.expire_credits)
    service.handles_batch(topics.INVOICING_EVENTS, invoicing.InvoiceFinalized)(handlers.finalize_invoices)
    service.handles(topics.INVOICING_EVENTS, invoicing.InvoiceVoided)(handlers.void_invoice)
    paid = topics.PAYMENTS_EVENTS
    service.handles(paid, payments.PaymentRecorded)(handlers.record_payment)
    service.handles(paid, payments.PaymentReversed)(handlers.reverse_payment)
    service.handles(paid, payments.PromotionalCreditsDeducted)(handlers.deduct_promotional)
    service.handles(paid, payments.RefundRequested)(handlers.refund)

    @service.get("/customers/{customer_id}/balances")
    async def customer_balances(request: Request) -> Response:
        customer_id = request.path_params["customer_id"]
        async with service.pool.acquire() as conn:
            rows = await CreditsStore(conn).balances(customer_id)
        balances = [
            {
                "currency": r.currency,
                "promotional": amount_text(r.promotional, r.currency),
                "credit_balance": amount_text(r.credit_balance, r.currency),
            }
            for r in rows
        ]
        return JSONResponse({"customer_id": customer_id, "balances": balances})

    @service.get("/customers/{customer_id}/invoices")
    async def customer_invoices(request: Request) -> Response:
        customer_id = request.path_params["customer_id"]
        async with service.pool.acquire() as conn:
            store = CreditsStore(conn)
            rows = await store.invoices(customer_id)
            applications = await store.active_applications(customer_id)
        paying: dict[str, list[dict[str, str]]] = {}
        for a in applications:
            paying.setdefault(a.invoice_id, []).append(_application_json(a))
        invoices = [_invoice_json(r, paying.get(r.invoice_id, [])) for r in rows]
        return JSONResponse({"customer_id": customer_id, "invoices": invoices})

    @service.get("/customers/{customer_id}/ledger")
    async def customer_ledger(request: Request) -> Response:
        customer_id = request.path_params["customer_id"]
        async with service.pool.acquire() as conn:
            entries = await CreditsStore(conn).entries(customer_id)
        return JSONResponse({"customer_id": customer_id, "entries": [_entry_json(e) for e in entries]})

    return service


def _application_json(application: Application) -> dict[str, str]:
    return {
        "application_id": application.application_id,
        "source_type": application.source_type,
        "source_id": application.source_id,
        "amount": amount_text(application.amount.amount, application.amount.currency),
    }


def _invoice_json(invoice: InvoiceRow, applications: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "invoice_id": invoice.invoice_id,
        "currency": invoice.currency,
        "status": invoice.status,
        "issued_on": invoice.issued_on.isoformat() if invoice.issued_on else None,
        "regenerated_from": invoice.regenerated_from,
        "total": amount_text(invoice.total, invoice.currency),
        "credits_applied": amount_text(invoice.credits_applied, invoice.currency),
        "payments_applied": amount_text(invoice.payments_applied, invoice.currency),
        "applied": amount_text(invoice.credits_applied + invoice.payments_applied, invoice.currency),
        "amount_due": amount_text(invoice.amount_due, invoice.currency),
        "applications": applications,
    }


def _entry_json(entry: EntryRow) -> dict[str, Any]:
    return {
        "entry_id": entry.entry_id,
        "memo": entry.memo,
        "cause": {
            "message_id": entry.cause_id,
            "type": entry.cause_type,
            "day": entry.cause_day.isoformat(),
        },
        "recorded_at": entry.recorded_at.isoformat(),
        "postings": [
            {"account": p.account, "amount": amount_text(p.amount, p.currency), "currency": p.currency}
            for p in entry.postings
        ],
    }
