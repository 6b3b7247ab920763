"""Every checker of invariants.py fed broken data, seen to fail (and fed sound data, seen to
pass): a checker that cannot fail proves nothing."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from tally_contracts import Envelope, Money, topics
from tally_contracts.credits import GrantCredit
from tally_contracts.usage import UsageRecorded

from . import invariants
from .faults import HOSTILE_KINDS, PROCESS_KINDS, FaultPlan, Hostile
from .runner import RunResult, Snapshot
from .stack import Record
from .workload import Expectation, Outgoing, Workload

DAY = dt.date(2026, 11, 5)


def _record(topic: str, body: dict[str, Any], partition: int = 0, offset: int = 0) -> Record:
    return Record(topic, partition, offset, 0, b"c1", json.dumps(body).encode(), [])


def _event(id_: str, type_: str, cause: str, data: dict[str, Any], topic: str = "credits.events") -> Record:
    body = {"id": id_, "type": type_, "causation_id": cause, "customer_id": "c1", "data": data}
    return _record(topic, body)


def _snapshot(records: dict[str, list[Record]] | None = None, **parts: Any) -> Snapshot:
    return Snapshot(
        "t",
        records or {},
        parts.get("invoicing", {}),
        parts.get("credit_invoices", {}),
        parts.get("balances", {}),
        parts.get("ledger", {}),
        parts.get("payments", {}),
        parts.get("health", {"credits": 200}),
        parts.get("lines", {}),
        parts.get("missing", []),
        parts.get("bad_paths", {}),
    )


def _grant(customer: str = "c1") -> Outgoing:
    data = GrantCredit(grant_id="g1", kind="manual", amount=Money.of(Decimal(5), "USD"), source="manual")
    return Outgoing(topics.CREDITS_COMMANDS, Envelope.new(data, customer_id=customer), "grant_manual")


def _usage(customer: str = "c1", quantity: int = 10) -> Outgoing:
    data = UsageRecorded(service="voice", quantity=Decimal(quantity), unit="minute")
    return Outgoing(topics.USAGE, Envelope.new(data, customer_id=customer), "usage")


def _dead_letter(
    topic: str, raw: Any, consumer: str, error: str, partition: int = 0, offset: int = 0
) -> Record:
    body = {"partition": partition, "offset": offset, "consumer": consumer, "error": error, "raw": raw}
    return _record(f"{topic}.dlq", body)


# -- exactly one answer per command ----------------------------------------------------------


def test_a_command_with_no_answer_is_a_violation() -> None:
    grant = _grant()
    found = invariants.exactly_one_effect(RunResult("t", sent=[grant], snapshot=_snapshot()))
    assert any("no answer" in v for v in found.violations)
    assert found.checked == 1


def test_a_command_answered_by_an_event_a_rejection_or_a_reasoned_dead_letter_passes() -> None:
    grant = _grant()
    applied = _snapshot({"credits.events": [_event("e1", "CreditGranted", grant.id, {})]})
    assert not invariants.exactly_one_effect(RunResult("t", sent=[grant], snapshot=applied))
    rejected = _snapshot({"credits.events": [_event("e1", "CommandRejected", grant.id, {"code": "x"})]})
    assert not invariants.exactly_one_effect(RunResult("t", sent=[grant], snapshot=rejected))
    raw = grant.envelope.to_json().decode()
    letter = _dead_letter(topics.CREDITS_COMMANDS, raw, "credits:credits.commands", "bad amount")
    dead = _snapshot({dlq_name(topics.CREDITS_COMMANDS): [letter]})
    assert not invariants.exactly_one_effect(RunResult("t", sent=[grant], snapshot=dead))
    silent = _dead_letter(topics.CREDITS_COMMANDS, raw, "credits:credits.commands", " ")
    no_reason = _snapshot({dlq_name(topics.CREDITS_COMMANDS): [silent]})
    found = invariants.exactly_one_effect(RunResult("t", sent=[grant], snapshot=no_reason))
    assert any("without a reason" in v for v in found.violations)


def dlq_name(topic: str) -> str:
    return f"{topic}.dlq"


def test_a_command_both_rejected_and_applied_or_an_effect_twice_is_a_violation() -> None:
    grant = _grant()
    both = _snapshot(
        {
            "credits.events": [
                _event("e1", "CreditGranted", grant.id, {}),
                _event("e2", "CommandRejected", grant.id, {"code": "x"}),
                _event("e3", "CommandRejected", grant.id, {"code": "x"}),
            ]
        }
    )
    found = invariants.exactly_one_effect(RunResult("t", sent=[grant], snapshot=both))
    assert any("was both rejected" in v for v in found.violations)
    assert any("rejected 2 times" in v for v in found.violations)
    applied = {"application_id": "a1", "amount": {"amount": "5", "currency": "USD"}}
    twice = _snapshot(
        {
            "credits.events": [
                _event("e1", "CreditApplied", "x", applied),
                _event("e2", "CreditApplied", "x", applied),
            ]
        }
    )
    assert invariants.exactly_one_effect(RunResult("t", snapshot=twice))


# -- hostile messages -----------------------------------------------------------------------


def _hostile(topic: str, expect: str, message_id: str | None = None) -> Hostile:
    return Hostile("bad_json", topic, b"c1", b"{", "hostile-1", expect, message_id)


def test_a_hostile_message_must_be_dead_lettered_by_every_consumer_of_its_topic() -> None:
    h = _hostile(topics.USAGE, "dlq")
    result = RunResult("t", hostile=[h], hostile_at={h.marker: (2, 7)}, snapshot=_snapshot())
    assert any("not in" in v for v in invariants.hostile_handled(result).violations)
    # Dead-lettered at another offset: not this message.
    other = _dead_letter(topics.USAGE, "{", "invoicing:usage", "bad json", partition=2, offset=8)
    result.snapshot = _snapshot({dlq_name(topics.USAGE): [other]})
    assert invariants.hostile_handled(result)
    mine = _dead_letter(
        topics.USAGE, {"base64": "ew=="}, "invoicing:usage", "bad json", partition=2, offset=7
    )
    result.snapshot = _snapshot({dlq_name(topics.USAGE): [mine]})
    assert not invariants.hostile_handled(result)
    # A command topic with two consumers: one dead letter is not enough.
    h2 = _hostile(topics.INVOICING_EVENTS, "dlq")
    one = _dead_letter(topics.INVOICING_EVENTS, "{", "credits:invoicing.events", "bad", 0, 3)
    result = RunResult(
        "t",
        hostile=[h2],
        hostile_at={h2.marker: (0, 3)},
        snapshot=_snapshot({dlq_name(topics.INVOICING_EVENTS): [one]}),
    )
    assert any("not by" in v for v in invariants.hostile_handled(result).violations)


def test_a_hostile_message_that_was_applied_or_dead_lettered_without_reason_is_a_violation() -> None:
    h = _hostile(topics.CREDITS_COMMANDS, "rejected", message_id="m1")
    applied = _snapshot({"credits.events": [_event("e1", "CreditGranted", "m1", {})]})
    result = RunResult("t", hostile=[h], hostile_at={h.marker: (0, 1)}, snapshot=applied)
    assert any("was applied" in v for v in invariants.hostile_handled(result).violations)
    rejected = _snapshot({"credits.events": [_event("e1", "CommandRejected", "m1", {"command_id": "m1"})]})
    result.snapshot = rejected
    assert not invariants.hostile_handled(result)
    silent = _dead_letter(topics.CREDITS_COMMANDS, "{", "credits:credits.commands", "", 0, 1)
    result.snapshot = _snapshot({dlq_name(topics.CREDITS_COMMANDS): [silent]})
    assert any("without a reason" in v for v in invariants.hostile_handled(result).violations)


# -- services --------------------------------------------------------------------------------


def test_an_unhealthy_service_or_one_that_never_came_back_is_a_violation() -> None:
    result = RunResult("t", snapshot=_snapshot(health={"credits": 503, "rules": 200}))
    assert invariants.still_consuming(result).violations == ["credits /health answers 503 after the run"]
    gone = RunResult("t", never_back={"payments": "ConnectionRefusedError 127.0.0.1:15432"})
    found = invariants.came_back(gone, 4)
    assert any("payments never came back" in v and "15432" in v for v in found.violations)
    assert not invariants.came_back(RunResult("t"), 4)


def test_a_read_api_answering_404_or_500_is_a_violation() -> None:
    ok = _snapshot(bad_paths={"credits /customers/x%00y/ledger": 404})
    assert not invariants.read_apis_answer(ok)
    broken = _snapshot(
        missing=["credits GET /customers/c1/balances answered 404"],
        bad_paths={"credits /customers/x%00y/ledger": 500},
    )
    assert len(invariants.read_apis_answer(broken).violations) == 2


# -- the ledger, sources, invoices -----------------------------------------------------------


def _entry(entry_id: str, cause: str, *postings: tuple[str, str]) -> dict[str, Any]:
    return {
        "entry_id": entry_id,
        "cause": {"message_id": cause, "type": "X", "day": "2026-11-05"},
        "postings": [{"account": a, "amount": amount, "currency": "USD"} for a, amount in postings],
    }


def test_the_ledger_check_catches_an_unbalanced_entry_and_a_negative_source() -> None:
    entry = _entry("n1", "x", ("promo:g1", "-1"))
    found = invariants.ledger_balances(_snapshot(ledger={"c1": {"entries": [entry]}}))
    assert len(found.violations) == 2
    assert found.checked == 1


def test_the_ledger_is_compared_with_invoicing_not_only_with_credits_own_read_model() -> None:
    owes = _entry("n1", "x", ("invoice:i1", "-10"), ("receivable", "10"))
    invoicing = {"c1": [{"invoice_id": "i1", "status": "posted", "total": "10", "amount_due": "4"}]}
    credit_view = {"c1": [{"invoice_id": "i1", "amount_due": "10"}]}
    found = invariants.ledger_balances(
        _snapshot(ledger={"c1": {"entries": [owes]}}, invoicing=invoicing, credit_invoices=credit_view)
    )
    assert found.violations == ["c1: ledger says i1 owes 10, invoicing 4"]
    missing = {"c1": [{"invoice_id": "i2", "status": "paid", "total": "3", "amount_due": "0"}]}
    found = invariants.ledger_balances(_snapshot(ledger={"c1": {"entries": [owes]}}, invoicing=missing))
    assert any("absent from the credits ledger" in v for v in found.violations)
    nothing_owed = {"c1": [{"invoice_id": "i3", "status": "paid", "total": "0.00", "amount_due": "0.00"}]}
    assert not invariants.ledger_balances(_snapshot(ledger={"c1": {"entries": []}}, invoicing=nothing_owed))


def test_a_negative_balance_row_is_a_violation() -> None:
    rows = {"c1": [{"currency": "USD", "promotional": "-1", "credit_balance": "-2"}]}
    assert len(invariants.no_negative_sources(_snapshot(balances=rows)).violations) == 2
    fine = {"c1": [{"currency": "USD", "promotional": "1", "credit_balance": "0"}]}
    assert not invariants.no_negative_sources(_snapshot(balances=fine))


def test_invoice_amounts_that_do_not_add_up_are_violations() -> None:
    over = {
        "invoice_id": "i1",
        "total": "10",
        "credits_applied": "8",
        "payments_applied": "4",
        "amount_due": "0",
        "status": "paid",
    }
    found = invariants.invoice_amounts(_snapshot(credit_invoices={"c1": [over]}, invoicing={"c1": []}))
    assert any("> total" in v for v in found.violations)
    assert any("invoicing does not" in v for v in found.violations)
    sound = {**over, "credits_applied": "6", "payments_applied": "4"}
    mine = {"c1": [{"invoice_id": "i1", "total": "10", "status": "paid", "amount_due": "0"}]}
    assert not invariants.invoice_amounts(_snapshot(credit_invoices={"c1": [sound]}, invoicing=mine))


# -- payments and credits --------------------------------------------------------------------


def _payment_event(id_: str, amount: str) -> Record:
    data = {"payment_id": "p1", "amount": {"amount": amount, "currency": "USD"}}
    return _event(id_, "PaymentRecorded", "cmd", data, topic="payments.events")


def test_payments_received_must_equal_the_ledger_both_ways() -> None:
    paid = _entry("n1", "e1", ("payments_received", "-25"), ("balance:c1", "25"))
    good = _snapshot({"payments.events": [_payment_event("e1", "25")]}, ledger={"c1": {"entries": [paid]}})
    assert not invariants.payments_and_credits_agree(good)
    short = _snapshot({"payments.events": [_payment_event("e1", "30")]}, ledger={"c1": {"entries": [paid]}})
    assert any(
        "payments received net 30" in v for v in invariants.payments_and_credits_agree(short).violations
    )


def test_a_ledger_entry_no_event_explains_is_a_violation() -> None:
    # Money received in the ledger with no payment event at all: the old check never looked.
    ghost = _entry("n1", "nobody", ("payments_received", "-25"), ("balance:c1", "25"))
    found = invariants.payments_and_credits_agree(_snapshot(ledger={"c1": {"entries": [ghost]}}))
    assert any("explained by no message" in v for v in found.violations)
    assert any("is no payments event" in v for v in found.violations)
    assert any("payments received net 0" in v for v in found.violations)
    caused_by_hostile = _entry("n2", "h1", ("promo:g", "5"), ("granted", "-5"))
    found = invariants.payments_and_credits_agree(
        _snapshot(ledger={"c1": {"entries": [caused_by_hostile]}}), hostile_ids=frozenset({"h1"})
    )
    assert any("caused by hostile" in v for v in found.violations)


def test_a_refund_answered_twice_or_differently_is_a_violation() -> None:
    requested = _event("e1", "RefundRequested", "c", {"refund_id": "r1"}, topic="payments.events")
    refunded = _event(
        "e2", "CreditRefunded", "e1", {"refund_id": "r1", "amount": {"amount": "5", "currency": "USD"}}
    )
    declined = _event("e3", "RefundDeclined", "e1", {"refund_id": "r1"})
    failed = _event("e4", "RefundFailed", "e2", {"refund_id": "r1"}, topic="payments.events")
    found = invariants.payments_and_credits_agree(
        _snapshot({"payments.events": [requested, failed], "credits.events": [refunded, declined]})
    )
    assert any("credits answered" in v for v in found.violations)


# -- comparisons -----------------------------------------------------------------------------


def test_balances_compare_by_value_not_by_digits() -> None:
    a = {"c1": [{"currency": "USD", "promotional": "1.00", "credit_balance": "0"}]}
    b = {"c1": [{"currency": "USD", "promotional": "1", "credit_balance": "0.00"}]}
    assert not invariants.same_balances(a, b, "x")
    assert invariants.same_balances(a, {"c1": []}, "x")


def test_a_different_outcome_or_invoice_with_faults_is_a_violation() -> None:
    grant = _grant()
    base = RunResult(
        "a",
        sent=[grant],
        snapshot=_snapshot(
            {"credits.events": [_event("e1", "CreditGranted", grant.id, {})]},
            invoicing={"c1": [{"invoice_id": "i1", "status": "posted", "total": "5", "amount_due": "5"}]},
        ),
    )
    faulty = RunResult(
        "b",
        sent=[grant],
        snapshot=_snapshot(
            invoicing={"c1": [{"invoice_id": "i1", "status": "paid", "total": "5", "amount_due": "0"}]}
        ),
    )
    found = invariants.same_as_baseline(base, faulty).violations
    assert any("invoicing i1" in v for v in found)
    assert any("no event with faults, CreditGranted without" in v for v in found)
    assert not invariants.same_as_baseline(base, base)
    # Dead-lettered with faults, answered by nothing without: not the same outcome.
    raw = grant.envelope.to_json().decode()
    letter = _dead_letter(topics.CREDITS_COMMANDS, raw, "credits:credits.commands", "handler failed")
    quiet = RunResult("a", sent=[grant], snapshot=_snapshot())
    dead = RunResult("b", sent=[grant], snapshot=_snapshot({dlq_name(topics.CREDITS_COMMANDS): [letter]}))
    assert any("dead-lettered with faults" in v for v in invariants.same_as_baseline(quiet, dead).violations)


# -- usage on exactly one line ---------------------------------------------------------------


def _usage_run(lines: dict[str, list[dict[str, Any]]], *usage: Outgoing) -> RunResult:
    invoicing = {
        "c1": [
            {"invoice_id": "i1", "customer_id": "c1", "status": "pending"},
            {"invoice_id": "i3", "customer_id": "c1", "status": "voided"},
            {"invoice_id": "i4", "customer_id": "c1", "status": "posted", "regenerated_from": "i3"},
        ],
        "c2": [{"invoice_id": "i2", "customer_id": "c2", "status": "pending"}],
    }
    return RunResult("t", sent=list(usage), snapshot=_snapshot(invoicing=invoicing, lines=lines))


def _usage_line(*usage: Outgoing, line_id: str = "usage:voice:minute:*") -> dict[str, Any]:
    return {"line_id": line_id, "kind": "usage", "usage_ids": [u.id for u in usage]}


def test_a_usage_id_on_two_lines_on_none_or_on_another_customers_line_is_a_violation() -> None:
    u1, u2, u3 = _usage("c1"), _usage("c1"), _usage("c1")
    w = Workload(1, {"c1": "USD", "c2": "USD"}, [])
    lines = {
        "i1": [_usage_line(u1), _usage_line(u1, line_id="usage:voice:minute:44")],
        "i2": [_usage_line(u3)],
    }
    found = invariants.usage_on_one_line(w, _usage_run(lines, u1, u2, u3))
    assert found.checked == 3
    assert any(u1.id in v and "2 lines" in v for v in found.violations)
    assert any(u2.id in v and "0 lines" in v for v in found.violations)
    assert any(u3.id in v and "of c2" in v for v in found.violations)
    assert len(found.violations) == 3
    sound = {"i1": [_usage_line(u1, u2), _usage_line(u3, line_id="usage:data:GB:*")]}
    assert not invariants.usage_on_one_line(w, _usage_run(sound, u1, u2, u3))


def test_a_usage_id_left_on_a_regenerated_invoices_voided_original_is_a_violation() -> None:
    w = Workload(1, {"c1": "USD"}, [])
    u1 = _usage("c1")
    on_both = {"i3": [_usage_line(u1)], "i4": [_usage_line(u1)]}
    left_behind = {"i3": [_usage_line(u1)], "i4": [_usage_line()]}
    moved = {"i3": [_usage_line()], "i4": [_usage_line(u1)]}

    assert any("2 lines" in v for v in invariants.usage_on_one_line(w, _usage_run(on_both, u1)).violations)
    assert any(
        "which a regeneration replaced" in v
        for v in invariants.usage_on_one_line(w, _usage_run(left_behind, u1)).violations
    )
    assert not invariants.usage_on_one_line(w, _usage_run(moved, u1))


def test_a_usage_line_that_lists_no_usage_ids_is_a_violation_not_a_pass() -> None:
    w = Workload(1, {"c1": "USD"}, [])
    u1 = _usage("c1", 10)
    by_quantity_only = {"i1": [{"line_id": "usage:voice:minute:*", "kind": "usage", "quantity": "10"}]}

    found = invariants.usage_on_one_line(w, _usage_run(by_quantity_only, u1))

    assert any("lists no usage_ids" in v for v in found.violations)
    assert any(u1.id in v and "0 lines" in v for v in found.violations)


# -- odd cases and coverage ------------------------------------------------------------------


def test_an_odd_case_without_its_expected_outcome_is_a_violation() -> None:
    w = Workload(
        1,
        {"c1": "USD"},
        [],
        [
            Expectation("second charge over the cap", "m1", "rejected"),
            Expectation("first charge", "m2", "applied"),
            Expectation("pre-rated", "m3", "billed", amount=Decimal("1.00"), customer="c1"),
            Expectation("global bill run", "m4", "bills_everyone", period=dt.date(2026, 11, 1)),
        ],
    )
    snap = _snapshot(
        {"invoicing.events": [_event("e1", "ChargeAdded", "m1", {}, "invoicing.events")]},
        invoicing={
            "c1": [
                {"invoice_id": "i1", "kind": "period", "period_start": "2026-11-01", "status": "pending"},
            ]
        },
        lines={
            "i1": [
                {
                    "kind": "usage",
                    "service": "sms",
                    "usage_ids": ["m3"],
                    "amount": {"amount": "0.99", "currency": "USD"},
                }
            ]
        },
    )
    found = invariants.expectations_met(w, RunResult("t", snapshot=snap)).violations
    assert any("over the cap" in v and "expected CommandRejected" in v for v in found)
    assert any("first charge" in v and "expected applied" in v for v in found)
    assert any("pre-rated" in v and "pending" in v for v in found)
    assert any("still pending" in v for v in found)


def test_a_prerated_usage_is_found_by_its_id_not_by_its_service() -> None:
    w = Workload(
        1, {"c1": "USD"}, [], [Expectation("pre-rated", "m3", "billed", amount=Decimal("1"), customer="c1")]
    )
    invoicing = {"c1": [{"invoice_id": "i1", "kind": "period", "status": "posted"}]}
    sms = {"kind": "usage", "service": "sms", "amount": {"amount": "1.00", "currency": "USD"}}

    other_id = _snapshot(invoicing=invoicing, lines={"i1": [{**sms, "usage_ids": ["m9"]}]})
    its_id = _snapshot(invoicing=invoicing, lines={"i1": [{**sms, "usage_ids": ["m9", "m3"]}]})

    assert any(
        "on no invoice line" in v
        for v in invariants.expectations_met(w, RunResult("t", snapshot=other_id)).violations
    )
    assert not invariants.expectations_met(w, RunResult("t", snapshot=its_id))


def _charges_run(status: str, amounts: tuple[str, str], *, split: bool = False) -> RunResult:
    line = {"kind": "one_time", "amount": {"amount": amounts[0], "currency": "EUR"}}
    lines = {
        "i1": [{**line, "line_id": "charge:cap-0"}]
        + ([] if split else [{**line, "line_id": "charge:cap-1", "amount": {"amount": amounts[1]}}]),
        "i2": [{**line, "line_id": "charge:cap-1"}] if split else [],
    }
    invoicing = {"c1": [{"invoice_id": "i1", "status": status}, {"invoice_id": "i2", "status": "posted"}]}
    answer = _event("e1", "ChargeAdded", "m2", {}, "invoicing.events")
    return RunResult(
        "t", snapshot=_snapshot({"invoicing.events": [answer]}, invoicing=invoicing, lines=lines)
    )


def test_two_charges_of_nine_tenths_of_the_cap_must_close_together_and_be_posted() -> None:
    half = Decimal("900000000000000")
    w = Workload(
        1,
        {"c1": "EUR"},
        [],
        [
            Expectation(
                "both",
                "m2",
                "charges_billed",
                amount=half,
                customer="c1",
                line_ids=("charge:cap-0", "charge:cap-1"),
            )
        ],
    )

    def violations(run: RunResult) -> list[str]:
        return invariants.expectations_met(w, run).violations

    assert any("i1 is closed" in v for v in violations(_charges_run("closed", ("900000000000000.00",) * 2)))
    assert any("i1 is pending" in v for v in violations(_charges_run("pending", ("900000000000000.00",) * 2)))
    assert any(
        "charge:cap-1 on i1" in v for v in violations(_charges_run("posted", ("900000000000000.00", "1")))
    )
    assert any(
        "on 2 invoices" in v
        for v in violations(_charges_run("posted", ("900000000000000.00",) * 2, split=True))
    )
    assert not violations(_charges_run("posted", ("900000000000000.00",) * 2))
    assert not violations(_charges_run("paid", ("9E+14", "900000000000000")))


def test_a_global_bill_run_that_could_not_close_an_invoice_names_it_and_its_reason() -> None:
    w = Workload(
        1, {"c1": "USD"}, [], [Expectation("global", "m4", "bills_everyone", period=dt.date(2026, 11, 1))]
    )
    failed = _event(
        "e2",
        "InvoiceCloseFailed",
        "m4",
        {"invoice_id": "i1", "code": "total_over_cap", "reason": "too big"},
        "invoicing.events",
    )
    closed = _event("e3", "InvoiceClosed", "m4", {"invoice_id": "i2"}, "invoicing.events")
    invoicing = {
        "c1": [{"invoice_id": "i1", "kind": "period", "period_start": "2026-11-01", "status": "pending"}]
    }

    found = invariants.expectations_met(
        w, RunResult("t", snapshot=_snapshot({"invoicing.events": [failed, closed]}, invoicing=invoicing))
    ).violations

    assert any("i1 was not closed (total_over_cap: too big)" in v for v in found)
    assert any("still pending" in v for v in found)
    assert not any("expected invoices closed" in v for v in found)  # answered: not a rejection


def test_a_run_that_skipped_a_fault_kind_or_a_hostile_kind_fails_its_coverage() -> None:
    plan = FaultPlan(1)
    empty = invariants.coverage(RunResult("t"), plan, private=False, excluded=frozenset())
    assert all(any(f"no {k} injected" in v for v in empty.violations) for k in PROCESS_KINDS)
    assert any("no command sent" in v for v in empty.violations)
    assert any(f"no hostile {HOSTILE_KINDS[0]} sent" in v for v in empty.violations)
    private = invariants.coverage(RunResult("t"), plan, private=True, excluded=frozenset())
    assert any("no kafka_kill injected" in v for v in private.violations)
    assert any("no pg_crash injected" in v for v in private.violations)


def test_a_check_that_looked_at_nothing_fails() -> None:
    assert invariants.Verdict("x").all_violations == ["checked 0 records: the run did not exercise it"]
    assert not invariants.Verdict("x", may_be_empty=True).all_violations
    assert not invariants.Verdict("x", checked=3).all_violations


def test_a_checker_that_crashes_is_reported_as_a_violation_not_a_traceback() -> None:
    broken_event = _event("e1", "RefundRequested", "c", {}, topic="payments.events")  # no refund_id
    result = RunResult("t", snapshot=_snapshot({"payments.events": [broken_event]}))
    found = invariants.checks(Workload(1, {}, []), result, None, None)
    crashed = [v for v in found if any("the check crashed" in line for line in v.violations)]
    assert [v.name for v in crashed] == ["payments and credits"]
