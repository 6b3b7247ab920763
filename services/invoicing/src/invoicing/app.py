"""The invoicing service: subscriptions wired to handlers, and its read API."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from invoicing import billing, handlers, ingest
from invoicing.store import InvoiceRow, InvoicingStore
from invoicing.usage_decoder import parse_usage_message
from tally_contracts import Line, credits, invoicing, rules, topics, usage
from tally_contracts.read_apis import DEFAULT_READ_API_PORTS
from tally_messaging import Service, ServiceSettings


def build(settings: ServiceSettings | None = None) -> Service:
    service = Service(
        "invoicing",
        events_topic=topics.INVOICING_EVENTS,
        default_http_port=DEFAULT_READ_API_PORTS["invoicing"],
        settings=settings,
    )
    service.consumes(topics.USAGE, topics.INVOICING_COMMANDS, topics.RULES_EVENTS, topics.CREDITS_EVENTS)
    service.handles_batch(topics.USAGE, usage.UsageRecorded, decode=parse_usage_message)(ingest.record_usage)
    commands = topics.INVOICING_COMMANDS
    service.handles(commands, invoicing.UpsertCustomer)(handlers.upsert_customer)
    service.handles(commands, invoicing.PutPriceList)(handlers.put_price_list)
    service.handles(commands, invoicing.CreateSubscription)(handlers.create_subscription)
    service.handles(commands, invoicing.CancelSubscription)(handlers.cancel_subscription)
    service.handles(commands, invoicing.AddCharge)(handlers.add_charge)
    service.handles(commands, invoicing.RunBilling)(billing.run_billing)
    service.handles(commands, invoicing.CloseInvoice)(billing.close_invoice)
    service.handles(commands, invoicing.VoidInvoice)(handlers.void_invoice)
    service.handles(commands, invoicing.RegenerateInvoice)(handlers.regenerate_invoice)
    service.handles(topics.RULES_EVENTS, rules.InvoiceAdjusted)(handlers.finalize)
    service.handles(topics.CREDITS_EVENTS, credits.InvoiceBalanceChanged)(handlers.balance_changed)

    @service.get("/invoices/{invoice_id}")
    async def get_invoice(request: Request) -> Response:
        async with service.pool.acquire() as conn:
            store = InvoicingStore(conn)
            invoice = await store.invoice(request.path_params["invoice_id"])
            if invoice is None:
                return JSONResponse({"error": "unknown invoice"}, status_code=404)
            lines = await store.lines(invoice.invoice_id, invoice.currency)
            usage_ids = await store.usage_ids_by_line(invoice.invoice_id)
        return JSONResponse({**_invoice_json(invoice), "lines": [_line_json(ln, usage_ids) for ln in lines]})

    @service.get("/customers/{customer_id}/invoices")
    async def customer_invoices(request: Request) -> Response:
        async with service.pool.acquire() as conn:
            invoices = await InvoicingStore(conn).customer_invoices(request.path_params["customer_id"])
        return JSONResponse({"invoices": [_invoice_json(i) for i in invoices]})

    return service


def _line_json(line: Line, usage_ids: dict[str, list[str]]) -> dict[str, Any]:
    """A line as on the wire; a usage line also lists the ids of the usage events it bills
    (read API only: the wire `Line` stays small)."""
    found = line.model_dump(mode="json")
    if line.kind == "usage":
        found["usage_ids"] = usage_ids.get(line.line_id, [])
    return found


def _invoice_json(invoice: InvoiceRow) -> dict[str, Any]:
    def amount(value: Any) -> str | None:
        return None if value is None else format(value, "f")

    return {
        "invoice_id": invoice.invoice_id,
        "customer_id": invoice.customer_id,
        "kind": invoice.kind,
        "currency": invoice.currency,
        "status": invoice.status,
        "period_start": invoice.period_start.isoformat(),
        "period_end": invoice.period_end.isoformat(),
        "issued_on": invoice.issued_on.isoformat() if invoice.issued_on else None,
        "subtotal": amount(invoice.subtotal),
        "total": amount(invoice.total),
        "amount_due": amount(invoice.amount_due),
        "rule_set_id": invoice.rule_set_id,
        "rule_set_version": invoice.rule_set_version,
        "regenerated_from": invoice.regenerated_from,
    }
