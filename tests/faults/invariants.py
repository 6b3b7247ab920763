"""The invariants checked after a fault run. Each check returns its violations as sentences."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from tally_contracts.topics import dlq

from .runner import RunResult, Snapshot
from .stack import CONSUMES, EVENTS
from .workload import Workload


def _dec(value: Any) -> Decimal:
    if value is None:
        return Decimal(0)
    if isinstance(value, dict):
        value = value.get("amount", 0)
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return Decimal("NaN")


def _events(snapshot: Snapshot) -> list[dict[str, Any]]:
    """Every envelope on the four events topics, once per message id (a re-send is one message)."""
    seen: dict[str, dict[str, Any]] = {}
    for topic in EVENTS.values():
        for record in snapshot.records.get(topic, []):
            body = record.json()
            if isinstance(body, dict) and isinstance(body.get("id"), str):
                seen.setdefault(body["id"], {**body, "_topic": topic})
    return list(seen.values())


def _by_cause(snapshot: Snapshot) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for event in _events(snapshot):
        cause = event.get("causation_id")
        if isinstance(cause, str):
            found.setdefault(cause, []).append(event)
    return found


def outcome(events: list[dict[str, Any]]) -> str:
    """A command's outcome, comparable across runs: the success types, or the rejection code."""
    rejected = sorted(e["data"].get("code", "?") for e in events if e["type"] == "CommandRejected")
    if rejected:
        return "rejected:" + ",".join(rejected)
    if not events:
        return "no event"
    return ",".join(sorted({e["type"] for e in events}))


# -- 1. exactly one effect -----------------------------------------------------------------


def exactly_one_effect(result: RunResult) -> list[str]:
    assert result.snapshot is not None
    violations: list[str] = []
    by_cause = _by_cause(result.snapshot)
    for m in {m.id: m for m in result.sent if m.is_command}.values():
        events = by_cause.get(m.id, [])
        rejections = [e for e in events if e["type"] == "CommandRejected"]
        successes = [e for e in events if e["type"] != "CommandRejected"]
        if rejections and successes:
            violations.append(
                f"{m.envelope.type} {m.id} ({m.envelope.customer_id}) was both rejected "
                f"({rejections[0]['data'].get('code')}) and applied ({sorted({e['type'] for e in successes})})"
            )
        if len(rejections) > 1:
            violations.append(f"{m.envelope.type} {m.id} was rejected {len(rejections)} times")
    # The same effect published twice under different message ids: a double application.
    groups: dict[tuple[str, str, str], set[str]] = {}
    for event in _events(result.snapshot):
        key = (event["type"], str(event.get("causation_id")), json.dumps(event.get("data"), sort_keys=True))
        groups.setdefault(key, set()).add(event["id"])
    for (type_, cause, data), ids in sorted(groups.items()):
        if len(ids) > 1:
            violations.append(
                f"{type_} caused by {cause} published {len(ids)} times with distinct ids: {data[:300]}"
            )
    return violations


# -- 2. hostile messages dead-lettered or rejected; services still consuming ----------------


def _dead_letters(snapshot: Snapshot, topic: str) -> list[dict[str, Any]]:
    found = []
    for record in snapshot.records.get(dlq(topic), []):
        body = record.json()
        if isinstance(body, dict):
            found.append(body)
    return found


def hostile_handled(result: RunResult) -> list[str]:
    assert result.snapshot is not None
    violations: list[str] = []
    by_cause = _by_cause(result.snapshot)
    rejected_ids = {
        e["data"].get("command_id") for e in _events(result.snapshot) if e["type"] == "CommandRejected"
    }
    dl_cache: dict[str, list[tuple[str, str]]] = {}
    for h in result.hostile:
        if h.topic not in dl_cache:
            dl_cache[h.topic] = [
                (json.dumps(d.get("raw")), str(d.get("consumer")))
                for d in _dead_letters(result.snapshot, h.topic)
            ]
        hex_marker = h.marker.encode().hex()
        consumers = {c for raw, c in dl_cache[h.topic] if h.marker in raw or hex_marker in raw}
        rejected = h.message_id is not None and h.message_id in rejected_ids
        applied = [e for e in by_cause.get(h.message_id or "", []) if e["type"] != "CommandRejected"]
        what = f"hostile {h.kind} on {h.topic} ({h.marker})"
        if applied:
            violations.append(f"{what} was applied: {sorted({e['type'] for e in applied})}")
        if h.expect == "rejected":
            if not rejected and not consumers:
                violations.append(f"{what}: neither CommandRejected nor dead-lettered")
        else:
            wanted = {f"{s}:{h.topic}" for s, topics in CONSUMES.items() if h.topic in topics}
            if not consumers and not rejected:
                violations.append(f"{what}: not in {dlq(h.topic)} (expected from {sorted(wanted)})")
            elif consumers and not wanted <= consumers:
                violations.append(
                    f"{what}: dead-lettered by {sorted(consumers)}, not by {sorted(wanted - consumers)}"
                )
    return violations


def still_consuming(result: RunResult) -> list[str]:
    assert result.snapshot is not None
    return [
        f"{name} /health answers {code} after the run"
        for name, code in sorted(result.snapshot.health.items())
        if code != 200
    ]


# -- 3. the ledger, sources, invoices -----------------------------------------------------


def _entries(ledger: Any) -> list[dict[str, Any]]:
    if isinstance(ledger, dict):
        for key in ("entries", "ledger"):
            if isinstance(ledger.get(key), list):
                return list(ledger[key])
    if isinstance(ledger, list):
        return ledger
    return []


def _postings(entry: dict[str, Any]) -> list[tuple[str, Decimal, str]]:
    found = []
    for p in entry.get("postings", []):
        amount = p.get("amount")
        currency = p.get("currency") or (amount.get("currency") if isinstance(amount, dict) else None)
        found.append((str(p.get("account")), _dec(amount), str(currency)))
    return found


def ledger_balances(snapshot: Snapshot) -> list[str]:
    violations: list[str] = []
    for customer, ledger in sorted(snapshot.ledger.items()):
        entries = _entries(ledger)
        accounts: dict[tuple[str, str], Decimal] = {}
        for entry in entries:
            sums: dict[str, Decimal] = {}
            for account, amount, currency in _postings(entry):
                sums[currency] = sums.get(currency, Decimal(0)) + amount
                accounts[(account, currency)] = accounts.get((account, currency), Decimal(0)) + amount
            for currency, total in sums.items():
                if total != 0:
                    violations.append(
                        f"{customer}: ledger entry {entry.get('entry_id')} is off by {total} {currency}"
                    )
        for (account, currency), value in sorted(accounts.items()):
            if account.startswith("promo:") and value < 0:
                violations.append(f"{customer}: promotional source {account} is {value} {currency}")
            if account.startswith("balance:") and "shortfall" not in account and value < 0:
                violations.append(f"{customer}: credit balance lot {account} is {value} {currency}")
            if account.startswith("invoice:") and value > 0:
                violations.append(f"{customer}: {account} holds {value} {currency} (over-applied)")
            if account.startswith("payment:") and value < 0:
                violations.append(f"{customer}: parked {account} is {value} {currency}")
        due = {i["invoice_id"]: _dec(i.get("amount_due")) for i in snapshot.credit_invoices.get(customer, [])}
        for (account, _currency), value in accounts.items():
            if account.startswith("invoice:") and account[8:] in due and -value != due[account[8:]]:
                violations.append(
                    f"{customer}: ledger says {account[8:]} owes {-value}, the read model {due[account[8:]]}"
                )
        if not entries and ledger is None:
            violations.append(f"{customer}: credits has no ledger read API answer")
    return violations


def no_negative_sources(snapshot: Snapshot) -> list[str]:
    violations: list[str] = []
    for customer, rows in sorted(snapshot.balances.items()):
        shortfall = any(
            "shortfall" in account and amount < 0
            for entry in _entries(snapshot.ledger.get(customer))
            for account, amount, _ in _postings(entry)
        )
        for row in rows:
            if _dec(row.get("promotional")) < 0:
                violations.append(f"{customer}: promotional {row['promotional']} {row.get('currency')}")
            if _dec(row.get("credit_balance")) < 0 and not shortfall:
                violations.append(f"{customer}: credit balance {row['credit_balance']} {row.get('currency')}")
    return violations


def invoice_amounts(snapshot: Snapshot) -> list[str]:
    violations: list[str] = []
    for customer in sorted(snapshot.credit_invoices):
        by_id = {i["invoice_id"]: i for i in snapshot.invoicing.get(customer, [])}
        for inv in snapshot.credit_invoices[customer]:
            iid = inv["invoice_id"]
            total, due = _dec(inv.get("total")), _dec(inv.get("amount_due"))
            credits, paid = _dec(inv.get("credits_applied")), _dec(inv.get("payments_applied"))
            applied = credits + paid
            if total < 0:
                # A negative invoice: its total moves to the credit balance (recorded as applied).
                if due != 0 or paid != 0 or credits not in (total, Decimal(0)):
                    violations.append(
                        f"{iid}: negative total {total} with credits {credits}, payments {paid}, due {due}"
                    )
            elif credits < 0 or paid < 0:
                violations.append(f"{iid}: negative application (credits {credits}, payments {paid})")
            if inv.get("status") == "voided":
                if applied != 0 and not (total < 0 and paid == 0 and credits == total):
                    violations.append(f"{iid}: voided but {applied} still applied")
                if due != 0:
                    violations.append(f"{iid}: voided but amount due {due} (nobody owes a voided invoice)")
                continue
            if applied > max(total, Decimal(0)) and total >= 0:
                violations.append(
                    f"{iid}: applied {applied} (credits {credits} + payments {paid}) > total {total}"
                )
            if due != total - applied:
                violations.append(f"{iid}: amount due {due} != total {total} - applied {applied}")
            if (inv.get("status") == "paid") != (due == 0):
                violations.append(f"{iid}: status {inv.get('status')} with amount due {due}")
            mine = by_id.get(iid)
            if mine is None:
                violations.append(f"{iid}: credits knows it, invoicing does not")
                continue
            if mine.get("total") is not None and _dec(mine["total"]) != total:
                violations.append(f"{iid}: total {mine['total']} in invoicing, {total} in credits")
            if mine.get("status") in ("posted", "paid"):
                if (mine["status"] == "paid") != (due == 0):
                    violations.append(f"{iid}: invoicing says {mine['status']}, credits amount due {due}")
                if mine.get("amount_due") is not None and _dec(mine["amount_due"]) != due:
                    violations.append(
                        f"{iid}: amount due {mine['amount_due']} in invoicing, {due} in credits"
                    )
        known = {i["invoice_id"] for i in snapshot.credit_invoices[customer]}
        for iid, inv in by_id.items():
            if inv.get("status") in ("posted", "paid") and iid not in known:
                violations.append(f"{iid}: {inv['status']} in invoicing, unknown to credits")
    return violations


def payments_and_credits_agree(snapshot: Snapshot) -> list[str]:
    """Every refund answered once, the same way in both services; payments received and
    refunds paid in the credits ledger equal what payments published."""
    violations: list[str] = []
    events = _events(snapshot)
    answers: dict[str, set[str]] = {}
    settled: dict[str, set[str]] = {}
    requested: set[str] = set()
    received: dict[tuple[str, str], Decimal] = {}
    refunded: dict[tuple[str, str], Decimal] = {}
    for e in events:
        data, who = e.get("data") or {}, str(e.get("customer_id"))
        if e["type"] == "RefundRequested":
            requested.add(data["refund_id"])
        elif e["type"] in ("CreditRefunded", "RefundDeclined"):
            answers.setdefault(data["refund_id"], set()).add(e["type"])
            if e["type"] == "CreditRefunded":
                key = (who, data["amount"]["currency"])
                refunded[key] = refunded.get(key, Decimal(0)) + _dec(data["amount"])
        elif e["type"] in ("RefundRecorded", "RefundFailed"):
            settled.setdefault(data["refund_id"], set()).add(e["type"])
        elif e["type"] in ("PaymentRecorded", "PaymentReversed"):
            key = (who, data["amount"]["currency"])
            sign = 1 if e["type"] == "PaymentRecorded" else -1
            received[key] = received.get(key, Decimal(0)) + sign * _dec(data["amount"])
    for refund in sorted(requested):
        a, b = answers.get(refund, set()), settled.get(refund, set())
        if len(a) != 1:
            violations.append(f"refund {refund}: credits answered {sorted(a) or 'nothing'}")
        if len(b) != 1:
            violations.append(f"refund {refund}: payments settled it as {sorted(b) or 'nothing'}")
        mismatch = (a == {"CreditRefunded"} and b != {"RefundRecorded"}) or (
            a == {"RefundDeclined"} and b != {"RefundFailed"}
        )
        if mismatch:
            violations.append(f"refund {refund}: credits said {sorted(a)}, payments {sorted(b)}")
    ledger: dict[tuple[str, str, str], Decimal] = {}
    for customer, answer in snapshot.ledger.items():
        for entry in _entries(answer):
            for account, amount, currency in _postings(entry):
                if account in ("payments_received", "refunds_paid"):
                    key3 = (account, customer, currency)
                    ledger[key3] = ledger.get(key3, Decimal(0)) + amount
    for (who, currency), amount in sorted(received.items()):
        found = -ledger.get(("payments_received", who, currency), Decimal(0))
        if found != amount:
            violations.append(f"{who}: payments received net {amount} {currency}, credits ledger {found}")
    for (who, currency), amount in sorted(refunded.items()):
        found = ledger.get(("refunds_paid", who, currency), Decimal(0))
        if found != amount:
            violations.append(f"{who}: refunds paid {amount} {currency}, credits ledger {found}")
    return violations


# -- 4. same results as the fault-free run, and as a replay -------------------------------


def _balances(rows: list[dict[str, Any]]) -> dict[str, tuple[Decimal, Decimal]]:
    return {
        r["currency"]: (_dec(r.get("promotional")), _dec(r.get("credit_balance")))
        for r in rows
        if _dec(r.get("promotional")) != 0 or _dec(r.get("credit_balance")) != 0
    }


def same_balances(
    expected: dict[str, list[dict[str, Any]]], found: dict[str, list[dict[str, Any]]], what: str
) -> list[str]:
    violations = []
    for customer in sorted(set(expected) | set(found)):
        a, b = _balances(expected.get(customer, [])), _balances(found.get(customer, []))
        if a != b:
            violations.append(f"{customer}: balances {b} {what}, expected {a}")
    return violations


def _invoice_state(snapshot: Snapshot) -> dict[str, tuple[Any, ...]]:
    state: dict[str, tuple[Any, ...]] = {}
    for customer, invoices in snapshot.invoicing.items():
        for i in invoices:
            state[f"invoicing {i['invoice_id']}"] = (
                i.get("status"),
                _dec(i.get("total")),
                _dec(i.get("amount_due")),
                customer,
            )
    for customer, invoices in snapshot.credit_invoices.items():
        for i in invoices:
            state[f"credits {i['invoice_id']}"] = (
                i.get("status"),
                _dec(i.get("total")),
                _dec(i.get("credits_applied")),
                _dec(i.get("payments_applied")),
                _dec(i.get("amount_due")),
                customer,
            )
    for customer, answer in snapshot.payments.items():
        for part in ("payments", "deductions", "refunds"):
            for p in (answer or {}).get(part, []):
                pid = p.get("payment_id") or p.get("deduction_id") or p.get("refund_id")
                state[f"{part} {pid}"] = (p.get("status"), _dec(p.get("amount")), customer)
    return state


def same_as_baseline(baseline: RunResult, faulty: RunResult) -> list[str]:
    assert baseline.snapshot is not None and faulty.snapshot is not None
    violations = same_balances(baseline.snapshot.balances, faulty.snapshot.balances, "with faults")
    a, b = _invoice_state(baseline.snapshot), _invoice_state(faulty.snapshot)
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            violations.append(f"{key}: {b.get(key)} with faults, {a.get(key)} without")
    base_cause, fault_cause = _by_cause(baseline.snapshot), _by_cause(faulty.snapshot)
    for m in {m.id: m for m in baseline.sent if m.is_command}.values():
        x, y = outcome(base_cause.get(m.id, [])), outcome(fault_cause.get(m.id, []))
        if x != y:
            violations.append(
                f"{m.envelope.type} {m.id} ({m.envelope.customer_id}): {y} with faults, {x} without"
            )
    return violations


# -- the whole list -----------------------------------------------------------------------


def checks(
    workload: Workload,
    faulty: RunResult,
    baseline: RunResult | None,
    replay: dict[str, list[dict[str, Any]]] | None,
) -> list[tuple[str, list[str]]]:
    assert faulty.snapshot is not None
    snap = faulty.snapshot
    found: list[tuple[str, list[str]]] = [
        ("the system became idle after every step", list(faulty.errors)),
        ("exactly one effect per command and event", exactly_one_effect(faulty)),
        ("malformed messages dead-lettered or rejected", hostile_handled(faulty)),
        ("every service still consuming and healthy", still_consuming(faulty)),
        ("no service exited on its own", list(faulty.unexpected_exits)),
        ("credits ledger balances (and matches the read model)", ledger_balances(snap)),
        ("no credit source or balance below zero", no_negative_sources(snap)),
        ("per invoice: applied <= total, amount due = total - applied", invoice_amounts(snap)),
        (
            "payments and credits agree (refunds answered once, money received = ledger)",
            payments_and_credits_agree(snap),
        ),
    ]
    if baseline is not None:
        assert baseline.snapshot is not None
        if faulty.errors:  # stopped early: comparing would only list the steps not run
            found.append(
                ("same results as the fault-free run (not compared: the faulty run stopped early)", [])
            )
        else:
            found.append(
                (
                    "same balances, invoices, payments, outcomes as the fault-free run",
                    same_as_baseline(baseline, faulty),
                )
            )
        found.append(("fault-free run: idle after every step", list(baseline.errors)))
        found.append(("fault-free run: per invoice amounts", invoice_amounts(baseline.snapshot)))
        found.append(("fault-free run: ledger balances", ledger_balances(baseline.snapshot)))
    if replay is not None:
        found.append(
            (
                "credits rebuilt from the topics: same balances",
                same_balances(snap.balances, replay, "on replay"),
            )
        )
    return found
