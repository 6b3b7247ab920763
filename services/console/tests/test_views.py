"""The pure parts of the pages: search, the invoice timeline, a grant's history, ledger
causes and the dry run (no Kafka, no services)."""

from __future__ import annotations

from typing import Any

import pytest

from console.dry_run import DryRunRefused, as_closed, version_of
from console.topic_reading import Message
from console.views import grant_view, invoice_timeline, ledger_rows, matching_customers


def message(topic: str, type_name: str, offset: int, customer: str = "c1", **data: Any) -> Message:
    return Message(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=1_796_112_000_000 + offset,
        id=f"m{offset}",
        type=type_name,
        customer_id=customer,
        correlation_id=f"corr{offset // 10}",
        causation_id=None,
        occurred_at="2026-12-01T09:00:00Z",
        data=data,
    )


def test_search_matches_id_or_name_in_any_case_and_keeps_the_latest_upsert() -> None:
    upserts = [
        message("invoicing.events", "CustomerUpserted", 1, "acme-1", name="Acme", currency="USD"),
        message("invoicing.events", "CustomerUpserted", 2, "globex-1", name="Globex", currency="EUR"),
        message("invoicing.events", "CustomerUpserted", 3, "acme-1", name="Acme Corp", currency="USD"),
    ]

    assert [(c.customer_id, c.name) for c in matching_customers(upserts, "CORP")] == [("acme-1", "Acme Corp")]
    assert [c.customer_id for c in matching_customers(upserts, "globex-")] == ["globex-1"]
    assert [c.customer_id for c in matching_customers(upserts, "")] == ["acme-1", "globex-1"]


def test_timeline_keeps_only_events_naming_the_invoice_in_order() -> None:
    messages = [
        message("invoicing.commands", "CloseInvoice", 1, invoice_id="inv-1"),
        message("invoicing.events", "InvoiceClosed", 2, invoice_id="inv-1"),
        message("invoicing.events", "InvoiceClosed", 3, invoice_id="inv-2"),
        message(
            "rules.events",
            "InvoiceAdjusted",
            4,
            invoice_id="inv-1",
            rule_set_id="std",
            rule_set_version=2,
            lines=[{}],
        ),
        message(
            "credits.events",
            "CreditApplied",
            5,
            invoice_id="inv-1",
            source_type="promotional",
            source_id="g1",
        ),
    ]

    steps = invoice_timeline(messages, "inv-1")

    assert [s.message.type for s in steps] == ["InvoiceClosed", "InvoiceAdjusted", "CreditApplied"]
    assert steps[1].detail == "rule set std v2, 1 line(s)"
    assert steps[2].detail == "promotional g1"


def test_a_grants_history_is_every_event_naming_it_after_the_grant() -> None:
    messages = [
        message("credits.commands", "GrantCredit", 1, grant_id="g1"),
        message("credits.events", "CreditGranted", 2, grant_id="g1"),
        message("credits.events", "CreditApplied", 3, source_id="g1", invoice_id="inv-1"),
        message("credits.events", "CreditApplied", 4, source_id="g2", invoice_id="inv-1"),
        message("credits.events", "CreditExpired", 5, grant_id="g1"),
    ]

    found = grant_view(messages, "g1")

    assert found.granted is not None and found.granted.offset == 2
    assert [m.offset for m in found.history] == [3, 5]


def test_a_ledger_entry_is_linked_to_its_cause_when_the_cause_is_on_a_topic() -> None:
    cause = message("invoicing.events", "InvoiceFinalized", 7)
    entries = [
        {"entry_id": "e1", "cause": {"message_id": "m7"}},
        {"entry_id": "e2", "cause": {"message_id": "gone"}},
    ]

    rows = ledger_rows(entries, [cause])

    assert [r.cause for r in rows] == [cause, None]


RULE_SET: dict[str, Any] = {
    "rule_set_id": "std",
    "current": {"version": 2},
    "versions": [
        {
            "rule_set_id": "std",
            "version": v,
            "name": "Standard",
            "is_default": False,
            "destination_groups": {},
            "rules": [
                {
                    "rule_id": "monthly-minimum",
                    "type": "minimum_amount",
                    "title": "Monthly minimum",
                    "tax_code": "MIN",
                    "analyze": {"scope": "total"},
                    "conditions": [{"threshold": threshold}],
                }
            ],
            "created_at": "2026-11-01T00:00:00+00:00",
        }
        for v, threshold in ((1, "25"), (2, "40"))
    ],
}


def invoice(status: str) -> dict[str, Any]:
    return {
        "invoice_id": "inv-1",
        "currency": "USD",
        "status": status,
        "rule_set_id": "std",
        "rule_set_version": 1,
        "lines": [
            {
                "line_id": "c1",
                "kind": "one_time",
                "description": "Setup",
                "amount": {"amount": "10.00", "currency": "USD"},
            },
            {
                "line_id": "adj-monthly-minimum",
                "kind": "adjustment",
                "description": "Monthly minimum",
                "amount": {"amount": "15.00", "currency": "USD"},
                "rule_id": "monthly-minimum",
            },
        ],
    }


@pytest.mark.parametrize(("version", "chosen"), [(None, 2), (1, 1), (2, 2)])
def test_a_dry_run_picks_the_chosen_version_or_the_current_one(version: int | None, chosen: int) -> None:
    assert version_of(RULE_SET, version) == chosen


def test_a_dry_run_sends_the_lines_as_closed_and_keeps_the_adjustments_apart() -> None:
    closed = as_closed(invoice("posted"))

    assert [ln["line_id"] for ln in closed.lines] == ["c1"]
    assert [ln["rule_id"] for ln in closed.applied] == ["monthly-minimum"]


def test_dry_run_refuses_a_pending_invoice_and_an_unknown_version() -> None:
    with pytest.raises(DryRunRefused, match="still pending"):
        as_closed(invoice("pending"))
    with pytest.raises(DryRunRefused, match="no version 9"):
        version_of(RULE_SET, 9)
