"""The fault harness: its pure parts (workload, schedule, invariants) and a short seeded run
of the whole system under faults (part of `make test`; `make faults SEED=n` runs a longer one)."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tally_testing import Infra, ServiceProcess, free_port

from . import invariants
from .faults import (
    BROKER_KILLS,
    HOSTILE_KINDS,
    INFRA_KINDS,
    INSTANCE_KILLS,
    PROCESS_KINDS,
    SKIPPED,
    Cluster,
    plan,
    service_of,
)
from .run import run
from .runner import RunResult, Snapshot, _note_restarts
from .stack import Record, Stack
from .workload import generate


def test_the_workload_is_a_function_of_the_seed() -> None:
    one, two = generate(7, 10, 150), generate(7, 10, 150)
    assert [m.envelope.to_json() for m in one.messages] == [m.envelope.to_json() for m in two.messages]
    assert [m.envelope.to_json() for m in generate(8, 10, 150).messages] != [
        m.envelope.to_json() for m in one.messages
    ]
    assert set(one.customers.values()) == {"USD", "EUR"}


def test_the_workload_sends_the_commands_asked_and_usage_in_proportion() -> None:
    workload = generate(777, 30, 10_000)
    commands = sum(1 for m in workload.messages if m.is_command)
    usage = sum(1 for m in workload.messages if not m.is_command)
    assert commands >= 10_000
    assert usage >= 50_000
    assert abs(usage / commands - 5) < 0.5
    small = generate(1, 20, 300, usage_per_command=1)
    assert 250 <= sum(1 for m in small.messages if m.is_command) <= 350


def test_the_workload_holds_every_odd_case_with_its_expected_outcome() -> None:
    workload = generate(7, 10, 150)
    by_id = {m.id: m for m in workload.messages}
    cases = {e.case: e for e in workload.expectations}
    assert {e.outcome for e in workload.expectations} == {
        "applied",
        "rejected",
        "billed",
        "charges_billed",
        "bills_everyone",
    }
    for e in workload.expectations:
        assert e.message_id in by_id, e.case
    prerated = by_id[cases["pre-rated usage 3 x 1.00"].message_id].envelope
    assert prerated.data.quantity == 3 and prerated.data.amount.amount == Decimal("1.00")
    assert by_id[cases["global RunBilling"].message_id].envelope.customer_id is None
    capped = [by_id[e.message_id].envelope for e in workload.expectations if "9 x 10^14" in e.case]
    assert [c.data.amount.amount for c in capped] == [Decimal("9E+14")] * 2  # each below 10^15, both applied
    assert [e.outcome for e in workload.expectations if "9 x 10^14" in e.case] == [
        "applied",
        "charges_billed",
    ]
    [closing] = [e for e in workload.expectations if e.outcome == "charges_billed"]
    assert closing.line_ids == tuple(f"charge:{c.data.charge_id}" for c in capped)
    charge = by_id[cases["colliding invoice id (charge side)"].message_id].envelope
    assert f"inv-{charge.customer_id}-charge-{charge.data.charge_id}" == "inv-cus-7-col-charge-x-2026-11-01"
    assert "cus-7-col-charge-x" in workload.customers


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
        "kafka_kill",
        "pg_restart",
        "pg_crash",
    }
    assert not set(plan(workload).planned()) & set(SKIPPED)
    # One step overlaps a service kill with a PostgreSQL crash: the restart meets a dead database.
    assert any(
        {f.kind for f in faults} >= {"kill", "pg_crash"} and min(f.delay for f in faults) < 1
        for faults in a.by_step.values()
    )
    # Every hostile kind is in every run's corpus (the short run's too), but excluded ones.
    assert {h.kind for hs in a.hostile.values() for h in hs} == set(HOSTILE_KINDS)
    short = plan(workload, exclude_hostile=frozenset({"bad_json"}))
    assert {h.kind for hs in short.hostile.values() for h in hs} == set(HOSTILE_KINDS) - {"bad_json"}


@pytest.mark.parametrize("seed", [1, 2, 3, 11, 2027])
def test_a_cluster_schedule_has_the_minimum_kills_and_one_broker_down_at_a_time(seed: int) -> None:
    workload = generate(seed, 20, 300, usage_per_command=2)
    cluster = Cluster(instances=2, broker_kills=5, instance_kills=10)
    schedule = plan(workload, restarts=True, cluster=cluster)
    planned = schedule.planned()
    assert set(planned) == set(schedule.kinds) == {*PROCESS_KINDS, *INFRA_KINDS, "rebalance_kill"}
    assert sum(planned.get(k, 0) for k in BROKER_KILLS) >= 5
    assert sum(planned.get(k, 0) for k in INSTANCE_KILLS) >= 10
    for faults in schedule.by_step.values():
        assert sum(1 for f in faults if f.kind in INFRA_KINDS) <= 1  # min ISR 2 of 3: one down at most
        services = [service_of(f.service) for f in faults if f.service]
        assert len(services) == len(set(services))  # one process fault per service (its instances)
        for f in faults:
            if f.kind in ("kafka_kill", "kafka_restart"):
                assert 1 <= f.nth <= 3
    targets = {f.service for faults in schedule.by_step.values() for f in faults if f.kind == "kill"}
    assert any(t is not None and "." in t for t in targets)  # second instances are killed too
    # Without --cluster the schedule is the one it always was.
    assert plan(workload, restarts=True).by_step == plan(workload, restarts=True).by_step
    assert not set(plan(workload, restarts=True).planned()) & {"leader_kill", "rebalance_kill"}


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
    assert len(invariants.ledger_balances(broken).violations) == 2  # unbalanced entry, negative source
    assert invariants.no_negative_sources(broken)
    assert any("> total" in v for v in invariants.invoice_amounts(broken).violations)
    a = {"c1": [{"currency": "USD", "promotional": "1.00", "credit_balance": "0"}]}
    b = {"c1": [{"currency": "USD", "promotional": "1", "credit_balance": "0.00"}]}
    assert not invariants.same_balances(a, b, "x")
    assert invariants.same_balances(a, {"c1": []}, "x")
    assert invariants._dec("1.10") == Decimal("1.1")


SHORT_RUN_COMMANDS = 300
SHORT_RUN_USAGE = 2.0  # usage events per command in the short run (5 in `make faults`)


@pytest.mark.e2e
@pytest.mark.timeout(900)
@pytest.mark.asyncio(loop_scope="session")
async def test_a_short_seeded_fault_run_breaks_no_invariant(infra: Infra) -> None:
    # Every hostile kind and the payment/invoice race are in: both once broke an invariant
    # (an oversized dead letter blocked the outbox; the race changed the credit/payment split).
    report = await run(
        seed=1, customers=20, commands=SHORT_RUN_COMMANDS, infra=infra, usage_per_command=SHORT_RUN_USAGE
    )
    print(report.summary())
    # The minimums: the short run covers every process fault kind (the Kafka and PostgreSQL
    # restarts need --private-infra: `make faults`), every hostile kind, and every check
    # looked at something.
    assert set(report.faulty.injected) >= set(PROCESS_KINDS), report.faulty.injected
    assert {h.kind for h in report.faulty.hostile} == set(HOSTILE_KINDS)
    assert all(v.checked > 0 for v in report.results if not v.may_be_empty), report.summary()
    assert report.violations == 0, report.summary()


def _flaky_stack(tmp_path: Path, failures: int, timeout: float) -> Stack:
    port = free_port()
    env = {
        **os.environ,
        "FLAKY_COUNTER": str(tmp_path / "starts"),
        "FLAKY_FAILURES": str(failures),
        "TALLY_HTTP_PORT": str(port),
    }
    stack = Stack(Infra("127.0.0.1:1", "postgresql://nobody@127.0.0.1:1/x"), "t", services=("payments",))
    stack.processes["payments"] = ServiceProcess("tests.faults.flaky_service", env, port)
    stack.restart_timeout = timeout
    return stack


@pytest.mark.timeout(60)
async def test_a_restart_that_fails_is_retried_and_counted(tmp_path: Path) -> None:
    stack = _flaky_stack(tmp_path, failures=2, timeout=30)
    try:
        assert await stack.restart("payments")
        assert len(stack.failed_restarts) == 2
        assert "start attempt 1 failed" in stack.failed_restarts[0]
        assert not stack.gave_up
    finally:
        stack.processes["payments"].stop()


@pytest.mark.timeout(60)
async def test_a_service_that_never_comes_back_is_given_up_with_its_log_tail(tmp_path: Path) -> None:
    stack = _flaky_stack(tmp_path, failures=1000, timeout=4)
    assert not await stack.restart("payments")
    assert "ConnectionRefusedError" in stack.gave_up["payments"]
    assert len(stack.failed_restarts) >= 2
    result = RunResult("t")
    _note_restarts(stack, result)
    assert result.injected["restart_retried"] == len(result.failed_restarts)
    assert invariants.came_back(result, 1).violations
