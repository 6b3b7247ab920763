"""The invariants checked after a fault run. Each check returns a `Verdict`: its violations
as sentences, and how many records it looked at. A check that looked at nothing fails (a run
that checks 0 of something proves nothing about it)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from tally_contracts.topics import dlq

from .faults import BROKER_KILLS, HOSTILE_KINDS, INSTANCE_KILLS, PROCESS_KINDS, SKIPPED, FaultPlan
from .runner import RunResult, Snapshot
from .stack import CONSUMES, EVENTS
from .workload import Expectation, Workload


@dataclass
class Verdict:
    """What one invariant found: its violations, and how many `unit` it checked."""

    name: str
    violations: list[str] = field(default_factory=list)
    checked: int = 0
    unit: str = "records"
    may_be_empty: bool = False  # a comparison that is legitimately empty (nothing to compare)

    def __bool__(self) -> bool:  # truthy when it found something (as the old lists were)
        return bool(self.violations)

    @property
    def all_violations(self) -> list[str]:
        if self.checked == 0 and not self.may_be_empty:
            return [*self.violations, f"checked 0 {self.unit}: the run did not exercise it"]
        return self.violations


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


def _raw_bytes(raw: Any) -> bytes:
    """The original bytes a dead letter kept: text, `{"base64": ...}`, `{"hex": ...}`; a
    truncated original gives b"" (it cannot be parsed anyway)."""
    if isinstance(raw, str):
        return raw.encode()
    if isinstance(raw, dict):
        try:
            if isinstance(raw.get("base64"), str):
                return base64.b64decode(raw["base64"])
            if isinstance(raw.get("hex"), str):
                return bytes.fromhex(raw["hex"])
        except ValueError:
            return b""
    return b""


def _dead_lettered_ids(snapshot: Snapshot) -> dict[str, str]:
    """Message id -> the reason, for every dead letter whose original parses as an envelope."""
    found: dict[str, str] = {}
    for topic in [*EVENTS.values(), *{t for topics_ in CONSUMES.values() for t in topics_}]:
        for letter in _dead_letters(snapshot, topic):
            try:
                body = json.loads(_raw_bytes(letter.get("raw")))
            except ValueError:
                body = None
            if isinstance(body, dict) and isinstance(body.get("id"), str):
                found.setdefault(body["id"], str(letter.get("error") or ""))
    return found


def exactly_one_effect(result: RunResult) -> Verdict:
    """Every command answered once: events, or one CommandRejected, or a dead letter with a
    reason ("no event" is a violation); no effect published twice under different ids."""
    assert result.snapshot is not None
    verdict = Verdict("exactly one answer per command, one effect per event", unit="commands")
    violations = verdict.violations
    by_cause = _by_cause(result.snapshot)
    dead = _dead_lettered_ids(result.snapshot)
    for m in {m.id: m for m in result.sent if m.is_command}.values():
        verdict.checked += 1
        events = by_cause.get(m.id, [])
        rejections = [e for e in events if e["type"] == "CommandRejected"]
        successes = [e for e in events if e["type"] != "CommandRejected"]
        what = f"{m.envelope.type} {m.id} ({m.envelope.customer_id})"
        if rejections and successes:
            violations.append(
                f"{what} was both rejected "
                f"({rejections[0]['data'].get('code')}) and applied ({sorted({e['type'] for e in successes})})"
            )
        if len(rejections) > 1:
            violations.append(f"{m.envelope.type} {m.id} was rejected {len(rejections)} times")
        if not events:
            if m.id not in dead:
                violations.append(f"{what}: no answer (no event, no CommandRejected, no dead letter)")
            elif not dead[m.id].strip():
                violations.append(f"{what}: dead-lettered without a reason")
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
    return verdict


# -- 2. hostile messages dead-lettered or rejected; services still consuming ----------------


def _dead_letters(snapshot: Snapshot, topic: str) -> list[dict[str, Any]]:
    found = []
    for record in snapshot.records.get(dlq(topic), []):
        body = record.json()
        if isinstance(body, dict):
            found.append(body)
    return found


def hostile_handled(result: RunResult) -> Verdict:
    """Each hostile message is never applied, and is dead-lettered with a reason by every
    consumer of its topic (expect "dlq"), or answered by CommandRejected or dead-lettered
    (expect "rejected"). Dead letters are found by where the message landed (partition and
    offset), whatever the dead letter keeps of its bytes; by its marker otherwise."""
    assert result.snapshot is not None
    verdict = Verdict("hostile messages dead-lettered or rejected, never applied", unit="hostile messages")
    violations = verdict.violations
    by_cause = _by_cause(result.snapshot)
    rejected_ids = {
        e["data"].get("command_id") for e in _events(result.snapshot) if e["type"] == "CommandRejected"
    }
    letters: dict[str, list[dict[str, Any]]] = {}
    for h in result.hostile:
        verdict.checked += 1
        if h.topic not in letters:
            letters[h.topic] = _dead_letters(result.snapshot, h.topic)
        at = result.hostile_at.get(h.marker)
        hex_marker = h.marker.encode().hex()
        mine = [
            d
            for d in letters[h.topic]
            if (at is not None and (d.get("partition"), d.get("offset")) == at)
            or (
                at is None
                and (h.marker in json.dumps(d.get("raw")) or hex_marker in json.dumps(d.get("raw")))
            )
        ]
        consumers = {str(d.get("consumer")) for d in mine}
        rejected = h.message_id is not None and h.message_id in rejected_ids and not h.reuses_id
        applied = (
            []
            if h.reuses_id
            else [e for e in by_cause.get(h.message_id or "", []) if e["type"] != "CommandRejected"]
        )
        what = f"hostile {h.kind} on {h.topic} ({h.marker})"
        if applied:
            violations.append(f"{what} was applied: {sorted({e['type'] for e in applied})}")
        if any(not str(d.get("error") or "").strip() for d in mine):
            violations.append(f"{what}: dead-lettered without a reason")
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
    return verdict


def still_consuming(result: RunResult) -> Verdict:
    assert result.snapshot is not None
    health = result.snapshot.health
    return Verdict(
        "every service still consuming and healthy",
        [
            f"{name} /health answers {code} after the run"
            for name, code in sorted(health.items())
            if code != 200
        ],
        len(health),
        "services",
    )


def came_back(result: RunResult, services: int) -> Verdict:
    """Every service restarted after a fault came back (a failed start is retried, and
    counted as a fault); one that never did is a violation, with its log tail."""
    return Verdict(
        "every service came back after each fault (failed starts retried)",
        [
            f"{name} never came back; its log ends:\n{tail[-2500:]}"
            for name, tail in sorted(result.never_back.items())
        ]
        + list(result.unexpected_exits),
        services,
        "services",
    )


def read_apis_answer(snapshot: Snapshot) -> Verdict:
    """A read API that does not know a customer it was told about answers 404: that is a
    violation, not an empty list. A NUL (%00) in a path answers 400 or 404, never 500 (D9)."""
    verdict = Verdict("read APIs answer (no 404 for a known customer; %00 is 400/404)", unit="routes")
    verdict.violations.extend(snapshot.missing)
    for route, status in sorted(snapshot.bad_paths.items()):
        verdict.checked += 1
        if status not in (400, 404, 422):
            verdict.violations.append(f"{route} answered {status} (expected 400 or 404)")
    return verdict


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


def ledger_balances(snapshot: Snapshot) -> Verdict:
    """Every ledger entry balances per currency; no source, lot or parked payment below zero;
    each invoice account matches what credits' read model *and invoicing* say is owed."""
    verdict = Verdict("credits ledger balances and matches both read models", unit="ledger entries")
    violations = verdict.violations
    for customer, ledger in sorted(snapshot.ledger.items()):
        entries = _entries(ledger)
        verdict.checked += len(entries)
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
        owed = {
            account[8:]: -value for (account, _c), value in accounts.items() if account.startswith("invoice:")
        }
        due = {i["invoice_id"]: _dec(i.get("amount_due")) for i in snapshot.credit_invoices.get(customer, [])}
        for iid, value in sorted(owed.items()):
            if iid in due and value != due[iid]:
                violations.append(
                    f"{customer}: ledger says {iid} owes {value}, credits' read model {due[iid]}"
                )
        # Invoicing's own view, which credits does not write: posted and paid invoices.
        for inv in snapshot.invoicing.get(customer, []):
            invoice_id, status = str(inv.get("invoice_id")), inv.get("status")
            if (
                status not in ("posted", "paid")
                or inv.get("amount_due") is None
                or _dec(inv.get("total")) <= 0  # a zero or negative invoice is never owed
            ):
                continue
            if invoice_id not in owed:
                violations.append(
                    f"{customer}: {invoice_id} is {status} in invoicing, absent from the credits ledger"
                )
            elif owed[invoice_id] != _dec(inv["amount_due"]):
                violations.append(
                    f"{customer}: ledger says {invoice_id} owes {owed[invoice_id]}, invoicing {inv['amount_due']}"
                )
        if not entries and ledger is None:
            violations.append(f"{customer}: credits has no ledger read API answer")
    return verdict


def no_negative_sources(snapshot: Snapshot) -> Verdict:
    verdict = Verdict("no credit source or balance below zero", unit="balance rows")
    for customer, rows in sorted(snapshot.balances.items()):
        shortfall = any(
            "shortfall" in account and amount < 0
            for entry in _entries(snapshot.ledger.get(customer))
            for account, amount, _ in _postings(entry)
        )
        for row in rows:
            verdict.checked += 1
            if _dec(row.get("promotional")) < 0:
                verdict.violations.append(
                    f"{customer}: promotional {row['promotional']} {row.get('currency')}"
                )
            if _dec(row.get("credit_balance")) < 0 and not shortfall:
                verdict.violations.append(
                    f"{customer}: credit balance {row['credit_balance']} {row.get('currency')}"
                )
    return verdict


def invoice_amounts(snapshot: Snapshot) -> Verdict:
    verdict = Verdict("per invoice: applied <= total, amount due = total - applied", unit="invoices")
    violations = verdict.violations
    for customer in sorted(snapshot.credit_invoices):
        by_id = {i["invoice_id"]: i for i in snapshot.invoicing.get(customer, [])}
        for inv in snapshot.credit_invoices[customer]:
            verdict.checked += 1
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
    return verdict


def payments_and_credits_agree(
    snapshot: Snapshot, sent_ids: frozenset[str] = frozenset(), hostile_ids: frozenset[str] = frozenset()
) -> Verdict:
    """Every refund answered once, the same way in both services; payments received and
    refunds paid in the credits ledger equal what payments published, both ways (a ledger
    amount no event explains is a violation); every ledger entry is caused by a message that
    exists (an event on the topics, or a command sent), never by a hostile one."""
    verdict = Verdict(
        "payments and credits agree (refunds once, money received = ledger, every entry explained)",
        unit="events and ledger entries",
    )
    violations = verdict.violations
    events = _events(snapshot)
    by_id = {e["id"]: e for e in events}
    answers: dict[str, set[str]] = {}
    settled: dict[str, set[str]] = {}
    requested: set[str] = set()
    received: dict[tuple[str, str], Decimal] = {}
    refunded: dict[tuple[str, str], Decimal] = {}
    for e in events:
        data, who = e.get("data") or {}, str(e.get("customer_id"))
        if e["type"] == "RefundRequested":
            verdict.checked += 1
            requested.add(data["refund_id"])
        elif e["type"] in ("CreditRefunded", "RefundDeclined"):
            answers.setdefault(data["refund_id"], set()).add(e["type"])
            if e["type"] == "CreditRefunded":
                key = (who, data["amount"]["currency"])
                refunded[key] = refunded.get(key, Decimal(0)) + _dec(data["amount"])
        elif e["type"] in ("RefundRecorded", "RefundFailed"):
            settled.setdefault(data["refund_id"], set()).add(e["type"])
        elif e["type"] in ("PaymentRecorded", "PaymentReversed"):
            verdict.checked += 1
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
            verdict.checked += 1
            cause = entry.get("cause") or {}
            cause_id, cause_type = str(cause.get("message_id")), str(cause.get("type"))
            accounts = {account for account, _, _ in _postings(entry)}
            if cause_id in hostile_ids:
                violations.append(
                    f"{customer}: ledger entry {entry.get('entry_id')} caused by hostile {cause_id}"
                )
            elif cause and cause_id not in by_id and cause_id not in sent_ids:
                violations.append(
                    f"{customer}: ledger entry {entry.get('entry_id')} ({cause_type} {cause_id}) "
                    "explained by no message on the topics"
                )
            if accounts & {"payments_received", "refunds_paid"}:
                source = by_id.get(cause_id)
                if source is None or source.get("_topic") != EVENTS["payments"]:
                    violations.append(
                        f"{customer}: ledger entry {entry.get('entry_id')} moves payments_received/refunds_paid "
                        f"but its cause {cause_type} {cause_id} is no payments event"
                    )
            for account, amount, currency in _postings(entry):
                if account in ("payments_received", "refunds_paid"):
                    key3 = (account, customer, currency)
                    ledger[key3] = ledger.get(key3, Decimal(0)) + amount
    for who, currency in sorted(set(received) | {(w, c) for a, w, c in ledger if a == "payments_received"}):
        amount = received.get((who, currency), Decimal(0))
        found = -ledger.get(("payments_received", who, currency), Decimal(0))
        if found != amount:
            violations.append(f"{who}: payments received net {amount} {currency}, credits ledger {found}")
    for who, currency in sorted(set(refunded) | {(w, c) for a, w, c in ledger if a == "refunds_paid"}):
        amount = refunded.get((who, currency), Decimal(0))
        found = ledger.get(("refunds_paid", who, currency), Decimal(0))
        if found != amount:
            violations.append(f"{who}: refunds paid {amount} {currency}, credits ledger {found}")
    return verdict


# -- 4. same results as the fault-free run, and as a replay -------------------------------


def _balances(rows: list[dict[str, Any]]) -> dict[str, tuple[Decimal, Decimal]]:
    return {
        r["currency"]: (_dec(r.get("promotional")), _dec(r.get("credit_balance")))
        for r in rows
        if _dec(r.get("promotional")) != 0 or _dec(r.get("credit_balance")) != 0
    }


def same_balances(
    expected: dict[str, list[dict[str, Any]]], found: dict[str, list[dict[str, Any]]], what: str
) -> Verdict:
    verdict = Verdict(f"same balances {what}", unit="customers")
    for customer in sorted(set(expected) | set(found)):
        verdict.checked += 1
        a, b = _balances(expected.get(customer, [])), _balances(found.get(customer, []))
        if a != b:
            verdict.violations.append(f"{customer}: balances {b} {what}, expected {a}")
    return verdict


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


def same_as_baseline(baseline: RunResult, faulty: RunResult) -> Verdict:
    assert baseline.snapshot is not None and faulty.snapshot is not None
    verdict = same_balances(baseline.snapshot.balances, faulty.snapshot.balances, "with faults")
    verdict.name = "same balances, invoices, payments, outcomes as the fault-free run"
    verdict.unit = "customers, invoices, payments and commands"
    a, b = _invoice_state(baseline.snapshot), _invoice_state(faulty.snapshot)
    for key in sorted(set(a) | set(b)):
        verdict.checked += 1
        if a.get(key) != b.get(key):
            verdict.violations.append(f"{key}: {b.get(key)} with faults, {a.get(key)} without")
    base_cause, fault_cause = _by_cause(baseline.snapshot), _by_cause(faulty.snapshot)
    base_dead, fault_dead = _dead_lettered_ids(baseline.snapshot), _dead_lettered_ids(faulty.snapshot)

    def answer(events: list[dict[str, Any]], dead: dict[str, str], message_id: str) -> str:
        found = outcome(events)
        return "dead-lettered" if found == "no event" and message_id in dead else found

    for m in {m.id: m for m in baseline.sent if m.is_command}.values():
        verdict.checked += 1
        x = answer(base_cause.get(m.id, []), base_dead, m.id)
        y = answer(fault_cause.get(m.id, []), fault_dead, m.id)
        if x != y:
            verdict.violations.append(
                f"{m.envelope.type} {m.id} ({m.envelope.customer_id}): {y} with faults, {x} without"
            )
    return verdict


# -- 5. every usage event on exactly one invoice line ----------------------------------------


def _live_invoices(snapshot: Snapshot) -> dict[str, tuple[str, dict[str, Any]]]:
    """invoice id -> (customer, invoice) for invoices that count: not replaced by a
    regenerated one (a voided invoice's lines move to its regeneration)."""
    invoices = {str(i["invoice_id"]): (c, i) for c, rows in snapshot.invoicing.items() for i in rows}
    replaced = {str(i.get("regenerated_from")) for _, i in invoices.values() if i.get("regenerated_from")}
    return {iid: ci for iid, ci in invoices.items() if iid not in replaced}


def usage_on_one_line(workload: Workload, result: RunResult) -> Verdict:
    """Every usage event the workload sent is on exactly one invoice line of its own customer,
    by id.

    Invoicing's read API lists, on each usage line, the ids of the usage events it bills
    (`usage_ids`). Over every invoice read (voided and replaced ones included), each usage id
    sent must be listed exactly once, on an invoice of its customer that no regeneration
    replaced (a regeneration takes the voided invoice's usage with it; a voided invoice not
    regenerated still holds its usage, unbilled). A usage line without `usage_ids` is a
    violation: a read API that lists nothing must not pass."""
    assert result.snapshot is not None
    snap = result.snapshot
    verdict = Verdict("each usage event on exactly one invoice line of its customer", unit="usage events")
    usage = {m.id: m for m in result.sent if m.envelope.type == "UsageRecorded"}
    verdict.checked = len(usage)
    live = _live_invoices(snap)
    where: dict[str, list[tuple[str, str, str]]] = {}  # usage id -> (customer, invoice, line)
    for listed_for, invoices in sorted(snap.invoicing.items()):
        for inv in invoices:
            iid, customer = str(inv["invoice_id"]), str(inv.get("customer_id", listed_for))
            for line in snap.lines.get(iid, []):
                if line.get("kind") != "usage":
                    continue
                if not isinstance(line.get("usage_ids"), list):
                    verdict.violations.append(f"usage line {line.get('line_id')} of {iid} lists no usage_ids")
                    continue
                for uid in line["usage_ids"]:
                    where.setdefault(str(uid), []).append((customer, iid, str(line.get("line_id"))))
    for uid, m in sorted(usage.items()):
        found = where.get(uid, [])
        if len(found) != 1:
            verdict.violations.append(
                f"usage {uid} ({m.envelope.customer_id}) is on {len(found)} lines: {found}"
            )
            continue
        customer, iid, line_id = found[0]
        if customer != m.envelope.customer_id:
            verdict.violations.append(f"usage {uid} of {m.envelope.customer_id} is on {iid} of {customer}")
        elif iid not in live:
            verdict.violations.append(
                f"usage {uid} of {customer} is on line {line_id} of {iid}, which a regeneration replaced"
            )
    return verdict


# -- 6. odd-but-valid input has its expected outcome -----------------------------------------


def expectations_met(workload: Workload, result: RunResult) -> Verdict:
    """The workload's odd cases (issue 13): each has the outcome it expects."""
    assert result.snapshot is not None
    snap = result.snapshot
    verdict = Verdict("odd but valid input has its expected outcome", unit="odd cases")
    by_cause = _by_cause(snap)
    dead = _dead_lettered_ids(snap)
    for e in workload.expectations:
        verdict.checked += 1
        found = outcome(by_cause.get(e.message_id, []))
        where = f"{e.case} ({e.message_id})"
        if e.message_id in dead:
            verdict.violations.append(
                f"{where}: dead-lettered ({dead[e.message_id][:200]}), expected {e.outcome}"
            )
        elif e.outcome == "applied" and (found == "no event" or found.startswith("rejected")):
            verdict.violations.append(f"{where}: {found}, expected applied")
        elif e.outcome == "rejected" and not found.startswith("rejected"):
            verdict.violations.append(f"{where}: {found}, expected CommandRejected")
        elif e.outcome == "billed":
            verdict.violations.extend(_billed(e, snap, where))
        elif e.outcome == "charges_billed":
            if found == "no event" or found.startswith("rejected"):
                verdict.violations.append(f"{where}: {found}, expected applied")
            verdict.violations.extend(_charges_billed(e, snap, where))
        elif e.outcome == "bills_everyone":
            if found == "no event" or found.startswith("rejected"):
                verdict.violations.append(f"{where}: {found}, expected invoices closed")
            verdict.violations.extend(
                f"{where}: {f.get('customer_id')}'s {f['data'].get('invoice_id')} was not closed"
                f" ({f['data'].get('code')}: {str(f['data'].get('reason'))[:200]})"
                for f in by_cause.get(e.message_id, [])
                if f["type"] == "InvoiceCloseFailed"
            )
            verdict.violations.extend(_billed_everyone(e, workload, snap, where))
    return verdict


def _charges_billed(e: Expectation, snap: Snapshot, where: str) -> list[str]:
    """Pending charges (`line_ids`): together on one invoice of their customer, whose close went
    through (posted, paid, or voided after), each line for `amount`."""
    live = _live_invoices(snap)
    holders = {
        iid: inv
        for iid, (customer, inv) in live.items()
        if customer == e.customer
        and any(line.get("line_id") in e.line_ids for line in snap.lines.get(iid, []))
    }
    if len(holders) != 1:
        return [
            f"{where}: lines {list(e.line_ids)} are on {len(holders)} invoices of {e.customer}: {sorted(holders)}"
        ]
    [(iid, inv)] = holders.items()
    lines = {line.get("line_id"): line for line in snap.lines.get(iid, [])}
    found = []
    if inv.get("status") not in ("posted", "paid", "voided"):
        found.append(f"{where}: {iid} is {inv.get('status')} (expected closed and posted)")
    for line_id in e.line_ids:
        amount = (lines.get(line_id) or {}).get("amount")
        if line_id not in lines or _dec(amount) != e.amount:
            found.append(f"{where}: {line_id} on {iid} is {amount}, expected {e.amount}")
    return found


def _billed(e: Expectation, snap: Snapshot, where: str) -> list[str]:
    """A pre-rated usage: on a closed invoice of its customer, a line for its amount. A voided
    invoice counts, as for the charges above: only a posted or paid invoice can be voided, and
    the workload voids some (the usage stays on it until a regeneration takes it)."""
    live = _live_invoices(snap)
    for iid, (customer, inv) in live.items():
        if customer != e.customer:
            continue
        for line in snap.lines.get(iid, []):
            if e.message_id in (line.get("usage_ids") or []):
                if inv.get("status") not in ("posted", "paid", "voided"):
                    return [f"{where}: on {iid}, which is {inv.get('status')} (expected posted)"]
                if line.get("amount") is None or _dec(line.get("amount")) != e.amount:
                    return [f"{where}: billed {line.get('amount')} on {iid}, expected {e.amount}"]
                return []
    return [f"{where}: on no invoice line of {e.customer}"]


def _billed_everyone(e: Expectation, workload: Workload, snap: Snapshot, where: str) -> list[str]:
    """After a global RunBilling, no period invoice of its period is left pending."""
    found = []
    for customer, invoices in sorted(snap.invoicing.items()):
        for inv in invoices:
            if (
                inv.get("kind") == "period"
                and e.period is not None
                and inv.get("period_start") == e.period.isoformat()
                and inv.get("status") in ("pending", "closed")
            ):
                found.append(f"{where}: {customer}'s {inv['invoice_id']} is still {inv['status']}")
    return found


# -- 7. the run covered what it claims ---------------------------------------------------------


def coverage(result: RunResult, plan: FaultPlan | None, private: bool, excluded: frozenset[str]) -> Verdict:
    """Minimums: every fault kind injected at least once (the infrastructure kinds only with
    private infrastructure), every hostile kind sent, commands and usage sent."""
    verdict = Verdict("the run injected every fault kind and sent every hostile kind", unit="faults")
    verdict.checked = sum(result.injected.values())
    if plan is None:
        return verdict
    kinds = [*PROCESS_KINDS, *(SKIPPED if private else ())]
    kinds += [k for k in plan.kinds if k not in kinds]  # cluster mode's own kinds
    for kind in kinds:
        if result.injected.get(kind, 0) < 1:
            verdict.violations.append(
                f"no {kind} injected (planned {plan.planned().get(kind, 0)}): the run did not test it"
            )
    if plan.cluster is not None:  # the minimum broker and instance SIGKILLs were injected
        for what, group, minimum in (
            ("broker", BROKER_KILLS, plan.cluster.broker_kills),
            ("instance", INSTANCE_KILLS, plan.cluster.instance_kills),
        ):
            done = sum(result.injected.get(k, 0) for k in group)
            if private and done < minimum:
                verdict.violations.append(f"{done} {what} kills injected, fewer than the minimum {minimum}")
    sent_kinds = {h.kind for h in result.hostile}
    for kind in HOSTILE_KINDS:
        if kind not in excluded and kind not in sent_kinds:
            verdict.violations.append(f"no hostile {kind} sent")
    if not any(m.is_command for m in result.sent):
        verdict.violations.append("no command sent")
    if not any(not m.is_command for m in result.sent):
        verdict.violations.append("no usage event sent")
    return verdict


# -- the whole list -----------------------------------------------------------------------


def _safely(name: str, check: Callable[[], Verdict]) -> Verdict:
    """A checker that crashes on data it did not expect is a violation, not the end of the run."""
    try:
        return check()
    except Exception as exc:
        return Verdict(name, [f"the check crashed: {type(exc).__name__}: {str(exc)[:500]}"])


def checks(
    workload: Workload,
    faulty: RunResult,
    baseline: RunResult | None,
    replay: dict[str, list[dict[str, Any]]] | None,
    plan: FaultPlan | None = None,
    private: bool = False,
    excluded: frozenset[str] = frozenset(),
) -> list[Verdict]:
    if faulty.snapshot is None:  # the run never got to collect: only what it recorded
        return [
            Verdict("the faulty run ran to its end", list(faulty.errors), len(faulty.step_ends_ms), "steps"),
            came_back(faulty, 4),
        ]
    snap = faulty.snapshot
    sent_ids = frozenset(m.id for m in faulty.sent)
    hostile_ids = frozenset(h.message_id for h in faulty.hostile if h.message_id and not h.reuses_id)
    found: list[Verdict] = [
        Verdict(
            "the system became idle after every step", list(faulty.errors), len(faulty.step_ends_ms), "steps"
        ),
        _safely("coverage", lambda: coverage(faulty, plan, private, excluded)),
        _safely("exactly one answer", lambda: exactly_one_effect(faulty)),
        _safely("hostile messages", lambda: hostile_handled(faulty)),
        _safely("healthy", lambda: still_consuming(faulty)),
        _safely("came back", lambda: came_back(faulty, len(snap.health))),
        _safely("read APIs", lambda: read_apis_answer(snap)),
        _safely("ledger", lambda: ledger_balances(snap)),
        _safely("no negative sources", lambda: no_negative_sources(snap)),
        _safely("invoice amounts", lambda: invoice_amounts(snap)),
        _safely("payments and credits", lambda: payments_and_credits_agree(snap, sent_ids, hostile_ids)),
        _safely("usage on one line", lambda: usage_on_one_line(workload, faulty)),
        _safely("odd cases", lambda: expectations_met(workload, faulty)),
    ]
    if baseline is not None and baseline.snapshot is not None:
        if faulty.errors:  # stopped early: comparing would only list the steps not run
            found.append(
                Verdict(
                    "same results as the fault-free run (not compared: the faulty run stopped early)",
                    may_be_empty=True,
                )
            )
        else:
            found.append(_safely("same as the fault-free run", lambda: same_as_baseline(baseline, faulty)))
        base = baseline.snapshot
        for v in (
            Verdict("idle after every step", list(baseline.errors), len(baseline.step_ends_ms), "steps"),
            _safely("exactly one answer", lambda: exactly_one_effect(baseline)),
            _safely("invoice amounts", lambda: invoice_amounts(base)),
            _safely("ledger", lambda: ledger_balances(base)),
            _safely("usage on one line", lambda: usage_on_one_line(workload, baseline)),
            _safely("odd cases", lambda: expectations_met(workload, baseline)),
        ):
            v.name = "fault-free run: " + v.name
            found.append(v)
    elif baseline is not None:
        found.append(Verdict("fault-free run: ran to its end", list(baseline.errors), 0, "steps"))
    if replay is not None:
        v = same_balances(snap.balances, replay, "on replay")
        v.name = "credits rebuilt from the topics: same balances"
        found.append(v)
    return found
