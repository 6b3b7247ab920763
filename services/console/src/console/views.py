"""What the pages show, put together from read-API answers and topic messages (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from console.topic_reading import Message

INVOICE_EVENTS = {
    "InvoiceCreated": "created",
    "InvoiceClosed": "closed",
    "InvoiceAdjusted": "adjusted by the rules",
    "InvoiceFinalized": "posted",
    "InvoiceStatusChanged": "status changed",
    "InvoiceVoided": "voided",
    "InvoiceCloseFailed": "could not close",
    "InvoiceBalanceChanged": "balance changed",
    "CreditApplied": "credit applied",
    "CreditReleased": "credit released",
    "NegativeInvoiceTransferred": "moved to the credit balance",
    "PaymentRecorded": "payment recorded",
    "PaymentReversed": "payment reversed",
}


@dataclass(frozen=True)
class CustomerFound:
    customer_id: str
    name: str | None
    currency: str
    upserted_at: str | None


def matching_customers(upserts: list[Message], query: str) -> list[CustomerFound]:
    """The customers whose id or name contains `query` (any case), latest upsert of each."""
    latest: dict[str, CustomerFound] = {}
    for m in upserts:
        if m.customer_id is None:
            continue
        latest[m.customer_id] = CustomerFound(
            m.customer_id, m.data.get("name"), str(m.data.get("currency", "")), m.occurred_at
        )
    wanted = query.strip().lower()
    found = [
        c for c in latest.values() if wanted in c.customer_id.lower() or wanted in (c.name or "").lower()
    ]
    return sorted(found, key=lambda c: c.customer_id)


@dataclass(frozen=True)
class TimelineStep:
    message: Message
    what: str
    detail: str


def invoice_timeline(messages: list[Message], invoice_id: str) -> list[TimelineStep]:
    """The invoice's life, in the order its events were written: every event of any service
    whose data names the invoice (payments name it too), and the command that started it."""
    steps: list[TimelineStep] = []
    for m in messages:
        if m.data.get("invoice_id") != invoice_id or not (m.topic.endswith(".events")):
            continue
        steps.append(TimelineStep(m, INVOICE_EVENTS.get(m.type, m.type), _detail(m)))
    return steps


def _detail(m: Message) -> str:
    d = m.data
    if m.type in ("InvoiceStatusChanged", "InvoiceBalanceChanged", "InvoiceCreated"):
        return f"status {d.get('status')}"
    if m.type == "InvoiceAdjusted":
        if d.get("rule_set_id") is None:
            return "no rule set applies"
        return (
            f"rule set {d.get('rule_set_id')} v{d.get('rule_set_version')}, {len(d.get('lines', []))} line(s)"
        )
    if m.type in ("InvoiceVoided",):
        return str(d.get("reason", ""))
    if m.type == "InvoiceCloseFailed":
        return f"{d.get('code')}: {d.get('reason')}"
    if m.type == "CreditApplied":
        return f"{d.get('source_type')} {d.get('source_id')}"
    if m.type == "CreditReleased":
        return f"returned to {d.get('returned_to')}"
    return ""


@dataclass(frozen=True)
class GrantView:
    grant_id: str
    granted: Message | None
    history: list[Message]
    """Every event naming the grant: applications, releases, expiry, deletion, conversion."""


def grant_view(messages: list[Message], grant_id: str) -> GrantView:
    granted = next(
        (m for m in messages if m.type == "CreditGranted" and m.data.get("grant_id") == grant_id), None
    )
    history = [
        m
        for m in messages
        if m.topic.endswith(".events")
        and m is not granted
        and (m.data.get("grant_id") == grant_id or m.data.get("source_id") == grant_id)
    ]
    return GrantView(grant_id, granted, history)


@dataclass(frozen=True)
class LedgerRow:
    entry: dict[str, Any]
    cause: Message | None
    """The message the entry was made for, when it is still on its topic."""


def ledger_rows(entries: list[dict[str, Any]], messages: list[Message]) -> list[LedgerRow]:
    by_id = {m.id: m for m in messages}
    return [LedgerRow(e, by_id.get(str(e.get("cause", {}).get("message_id")))) for e in entries]


def credit_view_of(credit_view: list[dict[str, Any]], invoice_id: str) -> dict[str, Any]:
    return next((i for i in credit_view if i["invoice_id"] == invoice_id), {})
