"""The fault schedule (chosen by the seed) and the hostile messages mixed into the workload.

Faults are attached to workload steps. Kinds:

- `kill`: SIGKILL a random service a moment after the step's messages start flowing
  (mid-batch), keep it down a little, restart it.
- `crash_point`: restart a service with `TALLY_FAULT=<point>:<n>` so that it SIGKILLs itself
  at an exact point of the exactly-once path (after commit, before publish, before delete);
  the runner restarts it once it died.
- `pause`: SIGSTOP a service longer than the consumer session timeout (its consumer groups
  rebalance), then SIGCONT.
- `duplicate`: re-publish a slice of already-sent commands and of already-published events,
  with the same ids.
- `delay_topic`: publish one topic's share of the step several seconds after the others
  (reordering across topics).
- `hostile`: malformed and hostile messages (bad JSON, wrong types, huge numbers, negative
  amounts, unknown currencies, unknown types, oversized payloads...).
- `kafka_restart`, `pg_restart`: stop the broker / the database server a moment into the step,
  keep it down a few seconds, start it again. Only with the run's own Kafka and PostgreSQL
  (`--private-infra`): never on the shared ones, where they are reported as skipped.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from tally_contracts import parse_message, topics
from tally_contracts.topics import TOPIC_MESSAGES

from .workload import Workload

SKIPPED = ("kafka_restart", "pg_restart")
CRASH_POINTS = ("after_commit", "relay_before_publish", "relay_before_delete")
DELAYABLE = (topics.USAGE, topics.INVOICING_COMMANDS, topics.CREDITS_COMMANDS, topics.PAYMENTS_COMMANDS)


@dataclass(frozen=True)
class Fault:
    kind: str
    service: str | None = None
    delay: float = 0.0  # seconds after the step starts
    duration: float = 0.0  # down / paused / topic delay, seconds
    point: str | None = None  # crash_point: TALLY_FAULT point
    nth: int = 1
    topic: str | None = None
    count: int = 0  # duplicate: how many messages; hostile: how many

    def describe(self) -> str:
        parts = [self.kind]
        if self.service:
            parts.append(self.service)
        if self.point:
            parts.append(f"{self.point}:{self.nth}")
        if self.topic:
            parts.append(self.topic)
        if self.duration:
            parts.append(f"{self.duration:.1f}s")
        if self.count:
            parts.append(f"x{self.count}")
        return " ".join(parts)


@dataclass
class Hostile:
    """A malformed or hostile message and what must become of it."""

    kind: str
    topic: str
    key: bytes
    value: bytes
    marker: str
    expect: str  # "dlq" or "rejected"
    message_id: str | None = None


@dataclass
class FaultPlan:
    seed: int
    by_step: dict[int, list[Fault]] = field(default_factory=dict)
    hostile: dict[int, list[Hostile]] = field(default_factory=dict)

    def faults(self, step: int) -> list[Fault]:
        return self.by_step.get(step, [])

    def planned(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for faults in self.by_step.values():
            for f in faults:
                counts[f.kind] = counts.get(f.kind, 0) + 1
        return counts


def plan(
    workload: Workload,
    *,
    pause_seconds: float = 14.0,
    intensity: float = 1.0,
    restarts: bool = False,
    exclude_hostile: frozenset[str] = frozenset(),
) -> FaultPlan:
    """The fault schedule of `workload.seed`: every kind at least once, more at random."""
    rng = random.Random(workload.seed * 7919 + 17)
    result = FaultPlan(workload.seed)
    eligible = [s.index for s in workload.steps if s.kind != "setup" and s.messages]
    services = ("invoicing", "rules", "credits", "payments")
    kinds = ["kill", "crash_point", "pause", "duplicate", "delay_topic", "hostile"]
    if restarts:
        kinds += list(SKIPPED)

    def make(kind: str) -> Fault:
        if kind == "kill":
            return Fault(kind, rng.choice(services), delay=rng.uniform(0.05, 1.5), duration=rng.uniform(0, 2))
        if kind == "crash_point":
            return Fault(kind, rng.choice(services), point=rng.choice(CRASH_POINTS), nth=rng.randrange(1, 4))
        if kind == "pause":
            return Fault(kind, rng.choice(services), delay=rng.uniform(0, 1), duration=pause_seconds)
        if kind == "duplicate":
            return Fault(kind, count=rng.randrange(5, 25))
        if kind == "delay_topic":
            return Fault(kind, topic=rng.choice(DELAYABLE), duration=rng.uniform(1, 4))
        if kind in SKIPPED:
            return Fault(kind, delay=rng.uniform(0.1, 1.5), duration=rng.uniform(1, 5))
        return Fault("hostile", count=rng.randrange(3, 8))

    # Coverage first: each kind on some step (pause only once per ~12 steps: it costs time).
    for kind in kinds:
        fault = make(kind)
        pool = eligible[:-2] if kind == "crash_point" and len(eligible) > 4 else eligible
        for _ in range(50):  # a step where it does not collide with another fault of the kind
            step = rng.choice(pool)
            taken = {f.service or f.kind for f in result.by_step.get(step, [])}
            if (fault.service or fault.kind) not in taken and not (kind in SKIPPED and taken & set(SKIPPED)):
                break
        result.by_step.setdefault(step, []).append(fault)
    extra_kinds = ["kill", "kill", "crash_point", "duplicate", "delay_topic", "hostile", "hostile"]
    extra_pauses = max(0, len(eligible) // 12 - 1)
    for step in eligible:
        if rng.random() < 0.45 * intensity:
            result.by_step.setdefault(step, []).append(make(rng.choice(extra_kinds)))
    for _ in range(extra_pauses):
        result.by_step.setdefault(rng.choice(eligible), []).append(make("pause"))
    if restarts:
        for _ in range(extra_pauses):
            result.by_step.setdefault(rng.choice(eligible), []).append(make(rng.choice(SKIPPED)))
    for step in list(result.by_step):
        # At most one process fault (kill, crash_point or pause) per service and step, and
        # one infrastructure restart per step.
        seen: set[str] = set()
        kept = []
        for f in result.by_step[step]:
            key = f.service or (f.kind if f.kind in SKIPPED else None)
            if key is not None:
                if key in seen or (f.kind in SKIPPED and seen & set(SKIPPED)):
                    continue
                seen.add(key)
            kept.append(f)
        result.by_step[step] = kept
    customers = sorted(workload.customers)
    for step, faults in result.by_step.items():
        for f in faults:
            if f.kind == "hostile":
                result.hostile.setdefault(step, []).extend(
                    hostile_messages(rng, customers, workload.customers, f.count, exclude_hostile)
                )
    return result


# -- hostile messages --------------------------------------------------------------------


def _envelope(rng: random.Random, type_: str, data: Any, customer: str | None) -> dict[str, Any]:
    mid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return {
        "id": mid,
        "type": type_,
        "version": 1,
        "occurred_at": "2026-11-15T12:00:00Z",
        "customer_id": customer,
        "correlation_id": mid,
        "causation_id": None,
        "data": data,
    }


def _expect(topic: str, value: bytes) -> tuple[str, str | None]:
    """What the contracts say must happen to `value` on `topic`: "dlq" or "rejected"."""
    try:
        envelope = parse_message(value)
    except (ValidationError, ValueError):
        return "dlq", None
    if envelope.type not in TOPIC_MESSAGES[topic]:
        return "dlq", str(envelope.id)
    if envelope.data.is_command:
        return "rejected", str(envelope.id)
    return "dlq", str(envelope.id)


HOSTILE_KINDS = (
    "bad_json",
    "binary",
    "not_an_object",
    "wrong_types",
    "float_amount",
    "huge_number",
    "negative_payment",
    "negative_refund",
    "negative_deduction",
    "negative_promo_grant",
    "unknown_currency",
    "unknown_type",
    "wrong_topic",
    "missing_fields",
    "oversized",
    "oversized_escaped",
    "unknown_customer_usage",
    "unknown_invoice",
    "no_customer_payment",
    "overlong_id",
)


def hostile_messages(
    rng: random.Random,
    customers: list[str],
    currency: dict[str, str],
    count: int,
    exclude: frozenset[str] = frozenset(),
) -> list[Hostile]:
    made: list[Hostile] = []
    kinds = [k for k in HOSTILE_KINDS if k not in exclude]
    for _ in range(count):
        marker = f"hostile-{rng.getrandbits(40):010x}"
        who = rng.choice(customers)
        cur = currency[who]
        kind = rng.choice(kinds)
        topic = topics.PAYMENTS_COMMANDS
        value: bytes
        if kind == "bad_json":
            topic = rng.choice([topics.CREDITS_COMMANDS, topics.INVOICING_COMMANDS, topics.USAGE])
            value = f'{{"id": "{marker}", "type": "GrantCredit", "data": {{"amount": '.encode()
        elif kind == "binary":
            topic = rng.choice([topics.PAYMENTS_COMMANDS, topics.RULES_COMMANDS])
            value = b"\xff\xfe\x00" + marker.encode() + bytes(rng.getrandbits(8) for _ in range(64))
        elif kind == "not_an_object":
            topic = topics.CREDITS_COMMANDS
            value = json.dumps([marker, 1, 2, None]).encode()
        elif kind == "wrong_types":
            topic = topics.INVOICING_COMMANDS
            data = {"charge_id": marker, "description": 42, "amount": "lots", "invoice_now": "maybe"}
            value = json.dumps(_envelope(rng, "AddCharge", data, who)).encode()
        elif kind == "float_amount":
            data = {
                "payment_id": marker,
                "amount": {"amount": 12.5, "currency": cur},
                "method": "cash",
                "received_on": "2026-11-15",
            }
            value = json.dumps(_envelope(rng, "RecordOfflinePayment", data, who)).encode()
        elif kind == "huge_number":
            topic = topics.CREDITS_COMMANDS
            data = {
                "grant_id": marker,
                "kind": "promotional",
                "amount": {"amount": "1" + "0" * 40, "currency": cur},
                "source": "promo_code",
            }
            value = json.dumps(_envelope(rng, "GrantCredit", data, who)).encode()
        elif kind == "negative_payment":
            data = {
                "payment_id": marker,
                "amount": {"amount": "-25.00", "currency": cur},
                "method": "cash",
                "received_on": "2026-11-15",
            }
            value = json.dumps(_envelope(rng, "RecordOfflinePayment", data, who)).encode()
        elif kind == "negative_refund":
            data = {"refund_id": marker, "amount": {"amount": "-40.00", "currency": cur}, "method": "cash"}
            value = json.dumps(_envelope(rng, "RefundCreditBalance", data, who)).encode()
        elif kind == "negative_deduction":
            data = {"deduction_id": marker, "amount": {"amount": "-15.00", "currency": cur}, "reason": marker}
            value = json.dumps(_envelope(rng, "DeductPromotionalCredits", data, who)).encode()
        elif kind == "negative_promo_grant":
            topic = topics.CREDITS_COMMANDS
            data = {
                "grant_id": marker,
                "kind": "promotional",
                "amount": {"amount": "-30.00", "currency": cur},
                "source": "promo_code",
            }
            value = json.dumps(_envelope(rng, "GrantCredit", data, who)).encode()
        elif kind == "unknown_currency":
            topic = topics.CREDITS_COMMANDS
            data = {
                "grant_id": marker,
                "kind": "manual",
                "amount": {"amount": "10.00", "currency": "ZZZ"},
                "source": "manual",
            }
            value = json.dumps(_envelope(rng, "GrantCredit", data, who)).encode()
        elif kind == "unknown_type":
            topic = rng.choice([topics.CREDITS_COMMANDS, topics.PAYMENTS_COMMANDS, topics.INVOICING_COMMANDS])
            value = json.dumps(_envelope(rng, "TransferEverything", {"to": marker}, who)).encode()
        elif kind == "wrong_topic":
            data = {
                "grant_id": marker,
                "kind": "manual",
                "amount": {"amount": "500.00", "currency": cur},
                "source": "manual",
            }
            value = json.dumps(_envelope(rng, "GrantCredit", data, who)).encode()
        elif kind == "missing_fields":
            topic = topics.RULES_COMMANDS
            value = json.dumps(_envelope(rng, "PutRuleSet", {"name": marker}, None)).encode()
        elif kind == "oversized":
            topic = topics.CREDITS_COMMANDS
            data = {
                "grant_id": marker,
                "kind": "manual",
                "amount": {"amount": "1.00", "currency": cur},
                "source": "manual",
                "reason": "x" * 1_010_000,
            }
            value = json.dumps(_envelope(rng, "GrantCredit", data, who)).encode()
        elif kind == "oversized_escaped":
            # Just over the 1 MB contract limit (and under the broker's): characters that JSON
            # escapes, so a dead letter quoting it is several times larger.
            topic = rng.choice([topics.CREDITS_COMMANDS, topics.PAYMENTS_COMMANDS])
            data = {
                "grant_id": marker,
                "kind": "manual",
                "amount": {"amount": "1.00", "currency": cur},
                "source": "manual",
                "reason": "€" * 336_000,
            }
            value = json.dumps(_envelope(rng, "GrantCredit", data, who), ensure_ascii=False).encode()
        elif kind == "unknown_customer_usage":
            topic = topics.USAGE
            data = {"service": "voice", "quantity": "10", "unit": "minute", "destination": "44"}
            value = json.dumps(_envelope(rng, "UsageRecorded", data, f"nobody-{marker}")).encode()
        elif kind == "unknown_invoice":
            topic = topics.INVOICING_COMMANDS
            value = json.dumps(
                _envelope(rng, "VoidInvoice", {"invoice_id": marker, "reason": "x"}, who)
            ).encode()
        elif kind == "no_customer_payment":
            data = {
                "payment_id": marker,
                "amount": {"amount": "10.00", "currency": cur},
                "method": "cash",
                "received_on": "2026-11-15",
            }
            value = json.dumps(_envelope(rng, "RecordOfflinePayment", data, None)).encode()
        else:  # overlong_id
            topic = topics.CREDITS_COMMANDS
            data = {
                "grant_id": marker + "g" * 5000,
                "kind": "manual",
                "amount": {"amount": "1.00", "currency": cur},
                "source": "manual",
            }
            value = json.dumps(_envelope(rng, "GrantCredit", data, who)).encode()
        expect, message_id = _expect(topic, value)
        key = (who if kind != "no_customer_payment" else marker).encode()
        made.append(Hostile(kind, topic, key, value, marker, expect, message_id))
    return made
