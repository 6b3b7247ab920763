"""The fault harness: its pure parts (workload, schedule, invariants) and a short seeded run
of the whole system under faults (part of `make test`; `make faults SEED=n` runs a longer one)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from tally_messaging.testing import Infra

from . import invariants
from .faults import plan
from .run import run
from .runner import RunResult, Snapshot
from .stack import Record
from .workload import generate


def test_the_workload_is_a_function_of_the_seed() -> None:
    one, two = generate(7, 10, 150), generate(7, 10, 150)
    assert [m.envelope.to_json() for m in one.messages] == [m.envelope.to_json() for m in two.messages]
    assert [m.envelope.to_json() for m in generate(8, 10, 150).messages] != [
        m.envelope.to_json() for m in one.messages
    ]
    assert set(one.customers.values()) == {"USD", "EUR"}


def test_the_fault_schedule_is_a_function_of_the_seed_and_covers_every_kind() -> None:
    workload = generate(7, 10, 150)
    a, b = plan(workload, restarts=True), plan(workload, restarts=True)
    assert a.by_step == b.by_step
    assert [h.value for hs in a.hostile.values() for h in hs] == [
        h.value for hs in b.hostile.values() for h in hs
    ]
    assert set(a.planned()) == {
        "kill",
        "crash_point",
        "pause",
        "duplicate",
        "delay_topic",
        "hostile",
        "kafka_restart",
        "pg_restart",
    }
    assert "kafka_restart" not in plan(workload).planned()


def _event(id_: str, type_: str, cause: str, data: dict[str, Any]) -> Record:
    body = {"id": id_, "type": type_, "causation_id": cause, "customer_id": "c1", "data": data}
    return Record("credits.events", 0, 0, 0, b"c1", json.dumps(body).encode(), [])


def _snapshot(records: dict[str, list[Record]], **parts: Any) -> Snapshot:
    return Snapshot(
        "t",
        records,
        parts.get("invoicing", {}),
        parts.get("credit_invoices", {}),
        parts.get("balances", {}),
        parts.get("ledger", {}),
        parts.get("payments", {}),
        parts.get("health", {"credits": 200}),
    )


def test_the_invariants_catch_what_they_are_for() -> None:
    applied = {"application_id": "a1", "invoice_id": "i1", "amount": {"amount": "5", "currency": "USD"}}
    twice = _snapshot(
        {
            "credits.events": [
                _event("e1", "CreditApplied", "x", applied),
                _event("e2", "CreditApplied", "x", applied),
            ]
        }
    )
    result = RunResult("t", snapshot=twice)
    assert invariants.exactly_one_effect(result)
    once = _snapshot(
        {
            "credits.events": [
                _event("e1", "CreditApplied", "x", applied),
                _event("e1", "CreditApplied", "x", applied),
            ]
        }
    )
    assert not invariants.exactly_one_effect(RunResult("t", snapshot=once))

    entry = {"entry_id": "n1", "postings": [{"account": "promo:g1", "amount": "-1", "currency": "USD"}]}
    broken = _snapshot(
        {},
        ledger={"c1": {"entries": [entry]}},
        balances={"c1": [{"currency": "USD", "promotional": "-1", "credit_balance": "0"}]},
        credit_invoices={
            "c1": [
                {
                    "invoice_id": "i1",
                    "total": "10",
                    "credits_applied": "8",
                    "payments_applied": "4",
                    "amount_due": "0",
                    "status": "paid",
                }
            ]
        },
    )
    assert len(invariants.ledger_balances(broken)) == 2  # unbalanced entry, negative source
    assert invariants.no_negative_sources(broken)
    assert any("> total" in v for v in invariants.invoice_amounts(broken))
    a = {"c1": [{"currency": "USD", "promotional": "1.00", "credit_balance": "0"}]}
    b = {"c1": [{"currency": "USD", "promotional": "1", "credit_balance": "0.00"}]}
    assert not invariants.same_balances(a, b, "x")
    assert invariants.same_balances(a, {"c1": []}, "x")
    assert invariants._dec("1.10") == Decimal("1.1")


@pytest.mark.e2e
@pytest.mark.timeout(900)
@pytest.mark.asyncio(loop_scope="session")
async def test_a_short_seeded_fault_run_breaks_no_invariant(infra: Infra) -> None:
    # Every hostile kind and the payment/invoice race are in: both once broke an invariant
    # (an oversized dead letter blocked the outbox; the race changed the credit/payment split).
    report = await run(seed=1, customers=20, commands=300, infra=infra)
    print(report.summary())
    assert report.violations == 0, report.summary()
