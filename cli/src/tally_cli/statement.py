"""A customer's statement, gathered from the services' read APIs and printed as tables.

Each service answers for what it owns: invoicing for invoices and their lines, credits
for what was applied and the balances, payments for payments, deductions and refunds.
The URLs come from TALLY_INVOICING_URL, TALLY_CREDITS_URL and TALLY_PAYMENTS_URL
(defaults: the local stack's ports).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tally_contracts.currencies import MINOR_UNITS
from tally_contracts.money import at_minor_unit
from tally_contracts.read_apis import default_read_api_url


def service_url(service: str) -> str:
    return os.environ.get(f"TALLY_{service.upper()}_URL", default_read_api_url(service)).rstrip("/")


@dataclass
class Statement:
    customer_id: str
    invoices: list[dict[str, Any]] = field(default_factory=list)
    """Invoicing's invoices, each with its `lines`, newest last."""
    balances_by_invoice: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Credits' view of each invoice: applied credit (each application) and payments, amount due."""
    balances: list[dict[str, Any]] = field(default_factory=list)
    payments: dict[str, Any] = field(default_factory=dict)


async def _get(client: httpx.AsyncClient, url: str) -> Any:
    response = await client.get(url)
    response.raise_for_status()
    return response.json()


async def fetch_statement(customer_id: str, client: httpx.AsyncClient | None = None) -> Statement:
    """Everything the statement shows; raises httpx errors when a service does not answer."""
    own = client is None
    http = client or httpx.AsyncClient(timeout=10)
    try:
        invoicing, credits, payments = (
            service_url("invoicing"),
            service_url("credits"),
            service_url("payments"),
        )
        summary = await _get(http, f"{invoicing}/customers/{customer_id}/invoices")
        invoices = [await _get(http, f"{invoicing}/invoices/{i['invoice_id']}") for i in summary["invoices"]]
        credit_invoices = await _get(http, f"{credits}/customers/{customer_id}/invoices")
        balances = await _get(http, f"{credits}/customers/{customer_id}/balances")
        paid = await _get(http, f"{payments}/customers/{customer_id}/payments")
    finally:
        if own:
            await http.aclose()
    return Statement(
        customer_id=customer_id,
        invoices=invoices,
        balances_by_invoice={i["invoice_id"]: i for i in credit_invoices.get("invoices", [])},
        balances=balances.get("balances", []),
        payments=paid,
    )


def _money(value: Any, currency: str = "") -> str:
    """An amount and its currency, at least at the currency's minor unit ("0" → "0.00 USD")."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        value, currency = value.get("amount"), str(value.get("currency", ""))
    return f"{_at_minor_unit(value, currency)} {currency}".strip()


def _at_minor_unit(value: Any, currency: str) -> str:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    if currency not in MINOR_UNITS or not amount.is_finite():
        return str(value)
    return format(at_minor_unit(amount, currency), "f")


_CREDIT_SOURCES = {"promotional": "promotional credit", "credit_balance": "credit balance"}
"""Application sources that are credit (a payment is listed under payments applied)."""


def render(statement: Statement) -> Group:
    """The statement as rich renderables: one table per invoice, then balances and payments."""
    parts: list[Any] = [Text(f"Statement for {statement.customer_id}", style="bold underline")]
    for invoice in statement.invoices:
        if invoice["status"] == "pending" and not invoice.get("lines"):
            continue  # an opened period with nothing on it yet
        currency = invoice["currency"]
        credit_view = statement.balances_by_invoice.get(invoice["invoice_id"], {})
        title = (
            f"{invoice['invoice_id']}  {invoice['period_start']} – {invoice['period_end']}  "
            f"[{invoice['status']}]"
            + (f"  regenerated from {invoice['regenerated_from']}" if invoice.get("regenerated_from") else "")
        )
        table = Table(title=escape(title), title_justify="left", show_footer=True)
        table.add_column("kind")
        table.add_column("description", footer="total")
        table.add_column("quantity", justify="right")
        table.add_column("amount", justify="right", footer=_money(invoice.get("total"), currency))
        for line in invoice.get("lines", []):
            description = line.get("description") or line.get("service") or ""
            if line.get("late"):
                description += " (late)"
            quantity = line.get("quantity")
            table.add_row(
                line.get("kind", ""),
                description,
                f"{quantity} {line.get('unit') or ''}".strip() if quantity is not None else "",
                _money(line.get("amount")),
            )
        if credit_view:
            table.add_row("", "credits applied", "", _money(credit_view.get("credits_applied"), currency))
            for application in credit_view.get("applications", []):
                source = _CREDIT_SOURCES.get(application.get("source_type", ""))
                if source is not None:
                    text = escape(f"  {source} {application.get('source_id', '')}")
                    table.add_row("", text, "", _money(application.get("amount"), currency))
            table.add_row("", "payments applied", "", _money(credit_view.get("payments_applied"), currency))
        due = credit_view.get("amount_due", invoice.get("amount_due"))
        table.add_row("", Text("amount due", style="bold"), "", Text(_money(due, currency), style="bold"))
        parts.append(table)
    balances = Table(title="Balances", title_justify="left")
    for column in ("currency", "promotional credit", "credit balance"):
        balances.add_column(column, justify="right" if column != "currency" else "left")
    for row in statement.balances:
        currency = row["currency"]
        balances.add_row(
            currency, _money(row.get("promotional"), currency), _money(row.get("credit_balance"), currency)
        )
    parts.append(balances)
    money = Table(title="Payments, deductions and refunds", title_justify="left")
    for column in ("kind", "id", "invoice", "amount", "status"):
        money.add_column(column)
    for kind, key, id_field in (
        ("payment", "payments", "payment_id"),
        ("deduction", "deductions", "deduction_id"),
        ("refund", "refunds", "refund_id"),
    ):
        for item in statement.payments.get(key, []):
            money.add_row(
                kind,
                str(item.get(id_field, "")),
                str(item.get("invoice_id") or "-"),
                _money(item.get("amount"), str(item.get("currency", ""))),
                str(item.get("status", "recorded")),
            )
    parts.append(money)
    return Group(*parts)
