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
  amounts, unknown currencies, unknown types, oversized payloads, NUL and control bytes in
  keys, values and ids, far dates, a type header or a key that lies, a message id reused
  with another body...). Every kind of `HOSTILE_KINDS` is sent at least once per run.
- `kafka_restart`, `pg_restart`: stop the broker / the database server a moment into the step
  (graceful: SIGTERM, `pg_ctl stop -m fast`), keep it down a few seconds, start it again.
- `kafka_kill`, `pg_crash`: the same without grace: SIGKILL of the broker, `pg_ctl stop -m
  immediate` (no checkpoint: PostgreSQL recovers from its WAL at start).
  The four infrastructure kinds run only with the run's own Kafka and PostgreSQL
  (`--private-infra`): never on the shared ones, where they are reported as skipped.

Cluster mode (`--cluster`: three brokers, `--instances` processes per service sharing its
database and consumer groups) targets one process among the instances for `kill`,
`crash_point` and `pause` (a paused instance's partitions go to the others once its session
times out), and `kafka_restart` / `kafka_kill` stop one broker of three (`nth` is the node)
while the other two go on; and adds:

- `leader_kill`: SIGKILL of the broker that leads a partition of `usage` at that moment,
  mid-batch, then restart it (the partition's leadership moves to an in-sync follower: with
  replication factor 3 and min.insync.replicas=2 no acknowledged message may be lost).
- `rebalance_kill`: stop one instance of a service cleanly (it leaves its consumer groups: a
  rebalance starts at once) and SIGKILL another instance of the same service a moment later,
  inside that rebalance; both are started again.

The plan of a cluster run has at least `Cluster.broker_kills` broker SIGKILLs (`kafka_kill` +
`leader_kill`) and `Cluster.instance_kills` instance SIGKILLs (`kill` + `rebalance_kill`).

Every step's messages (its commands and the usage in proportion to them) are sent as a
steady stream over the window of the step's faults, so the faults land under load.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from tally_contracts import parse_message, topics
from tally_contracts.topics import TOPIC_MESSAGES

from .workload import Outgoing, Workload

SKIPPED = ("kafka_restart", "kafka_kill", "pg_restart", "pg_crash")
PROCESS_KINDS = ("kill", "crash_point", "pause", "duplicate", "delay_topic", "hostile")
CLUSTER_INFRA_KINDS = ("leader_kill",)
CLUSTER_PROCESS_KINDS = ("rebalance_kill",)
INFRA_KINDS = (*SKIPPED, *CLUSTER_INFRA_KINDS)
"""At most one of these per step: the cluster loses at most one broker at a time."""
BROKER_KILLS = ("kafka_kill", "leader_kill")
INSTANCE_KILLS = ("kill", "rebalance_kill")
SERVICES = ("invoicing", "rules", "credits", "payments")


def instance_name(service: str, n: int) -> str:
    """The process key of instance `n` (1-based) of `service`: "invoicing", "invoicing.2", ..."""
    return service if n == 1 else f"{service}.{n}"


def service_of(process: str) -> str:
    """ "invoicing.2" -> "invoicing"."""
    return process.partition(".")[0]


@dataclass(frozen=True)
class Cluster:
    """Cluster mode: how many brokers and processes per service, and the minimum kills."""

    brokers: int = 3
    instances: int = 2
    broker_kills: int = 5
    instance_kills: int = 10


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
    expect: str  # "dlq" (dead-lettered by every consumer of its topic) or "rejected" (or dlq)
    message_id: str | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    reuses_id: bool = False  # the id of a message already applied: its events are not this one's


@dataclass
class FaultPlan:
    seed: int
    by_step: dict[int, list[Fault]] = field(default_factory=dict)
    hostile: dict[int, list[Hostile]] = field(default_factory=dict)
    kinds: tuple[str, ...] = PROCESS_KINDS
    """Every kind the run must inject at least once."""
    cluster: Cluster | None = None

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
    cluster: Cluster | None = None,
) -> FaultPlan:
    """The fault schedule of `workload.seed`: every kind at least once, more at random (and in
    cluster mode at least the cluster's minimum broker and instance kills)."""
    rng = random.Random(workload.seed * 7919 + 17)
    eligible = [s.index for s in workload.steps if s.kind != "setup" and s.messages]
    instances = cluster.instances if cluster else 1
    services = tuple(instance_name(s, n) for s in SERVICES for n in range(1, instances + 1))
    kinds = list(PROCESS_KINDS)
    if cluster is not None:
        kinds += list(CLUSTER_PROCESS_KINDS)
    if restarts:
        kinds += list(SKIPPED)
        if cluster is not None:
            kinds += list(CLUSTER_INFRA_KINDS)
    result = FaultPlan(workload.seed, kinds=tuple(kinds), cluster=cluster)
    infra_kinds = set(INFRA_KINDS)

    def make(kind: str) -> Fault:
        if kind == "rebalance_kill":
            return Fault(
                kind, rng.choice(SERVICES), delay=rng.uniform(0.1, 1.5), duration=rng.uniform(0.3, 1.5)
            )
        if kind == "leader_kill":
            return Fault(kind, delay=rng.uniform(0.2, 1.5), duration=rng.uniform(1, 5))
        if kind in ("kafka_restart", "kafka_kill") and cluster is not None:
            node = rng.randrange(1, cluster.brokers + 1)
            return Fault(kind, delay=rng.uniform(0.1, 1.5), duration=rng.uniform(1, 5), nth=node)
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
        if kind == "crash_point":  # the first crash of a service: sure to be reached
            fault = Fault(kind, fault.service, point=fault.point, nth=1)
        pool = eligible[:-2] if kind == "crash_point" and len(eligible) > 4 else eligible
        for _ in range(50):  # a step where it does not collide with another fault of the kind
            step = rng.choice(pool)
            taken = {_slot(f) for f in result.by_step.get(step, [])}
            if _slot(fault) not in taken and not (kind in infra_kinds and taken & infra_kinds):
                break
        result.by_step.setdefault(step, []).append(fault)
    extra_kinds = ["kill", "kill", "crash_point", "duplicate", "delay_topic", "hostile", "hostile"]
    if cluster is not None:
        extra_kinds += ["rebalance_kill"]
    extra_pauses = max(0, len(eligible) // 12 - 1)
    for step in eligible:
        if rng.random() < 0.45 * intensity:
            result.by_step.setdefault(step, []).append(make(rng.choice(extra_kinds)))
    for _ in range(extra_pauses):
        result.by_step.setdefault(rng.choice(eligible), []).append(make("pause"))
    if restarts:
        for _ in range(extra_pauses):
            result.by_step.setdefault(rng.choice(eligible), []).append(make(rng.choice(SKIPPED)))
        # Overlapping faults (issue 22): a service killed and started again while PostgreSQL
        # is down (`kill payments 0.9s, pg_restart 1.3s` once ended a run with a traceback).
        quiet = [s for s in eligible if not result.by_step.get(s)] or eligible
        step = rng.choice(quiet)
        result.by_step[step] = [
            Fault("kill", rng.choice(services), delay=0.2, duration=1.0),
            Fault("pg_crash", delay=0.4, duration=6.0),
        ] + [f for f in result.by_step.get(step, []) if f.service is None and f.kind not in INFRA_KINDS]
    for step in list(result.by_step):
        # At most one process fault (kill, crash_point, pause, rebalance_kill) per service (all
        # its instances) and step, and one infrastructure restart per step.
        seen: set[str] = set()
        kept = []
        for f in result.by_step[step]:
            key = _slot(f) if f.service or f.kind in infra_kinds else None
            if key is not None:
                if key in seen or (f.kind in infra_kinds and seen & infra_kinds):
                    continue
                seen.add(key)
            kept.append(f)
        result.by_step[step] = kept
    if cluster is not None:
        _top_up(result, cluster, eligible, rng, make, restarts)
    # The hostile corpus: every kind at least once (in a random order), then random kinds.
    hostile_steps = sorted(
        (step, f.count) for step, faults in result.by_step.items() for f in faults if f.kind == "hostile"
    )
    wanted = [k for k in HOSTILE_KINDS if k not in exclude_hostile]
    rng.shuffle(wanted)
    total = max(sum(n for _, n in hostile_steps), len(wanted))
    wanted += [rng.choice(wanted) for _ in range(total - len(wanted))] if wanted else []
    share = -(-len(wanted) // max(1, len(hostile_steps)))
    customers = sorted(workload.customers)
    for n, (step, _) in enumerate(hostile_steps):
        earlier = [
            m for s in workload.steps[1:step] for m in s.messages if m.is_command and m.envelope.customer_id
        ]
        result.hostile.setdefault(step, []).extend(
            hostile_message(rng, kind, customers, workload.customers, earlier)
            for kind in wanted[n * share : (n + 1) * share]
        )
    return result


def _slot(fault: Fault) -> str:
    """What two faults of one step must not share: a service (any of its instances), or the
    infrastructure (one broker or the database down at a time)."""
    if fault.service:
        return service_of(fault.service)
    return "infra" if fault.kind in INFRA_KINDS else fault.kind


def _top_up(
    result: FaultPlan,
    cluster: Cluster,
    eligible: list[int],
    rng: random.Random,
    make: Callable[[str], Fault],
    restarts: bool,
) -> None:
    """Add broker kills (on steps with no infrastructure fault) and instance kills (on steps
    where that service has no fault) until the cluster's minimums are planned, with a margin
    of one broker kill and two instance kills: a kill planned on an instance that an earlier
    fault of its step already took down is skipped at run time."""

    def planned(kinds: tuple[str, ...]) -> int:
        return sum(1 for faults in result.by_step.values() for f in faults if f.kind in kinds)

    order = list(eligible)
    rng.shuffle(order)
    if restarts:
        kinds = ["leader_kill", "kafka_kill"]
        free = [s for s in order if not any(_slot(f) == "infra" for f in result.by_step.get(s, []))]
        while planned(BROKER_KILLS) < cluster.broker_kills + 1 and free:
            step = free.pop()
            result.by_step.setdefault(step, []).append(make(kinds[planned(BROKER_KILLS) % 2]))
    tries = 0
    while planned(INSTANCE_KILLS) < cluster.instance_kills + 2 and tries < 20 * len(order):
        tries += 1
        step = rng.choice(order)
        fault = make("kill" if rng.random() < 0.7 else "rebalance_kill")
        if _slot(fault) not in {_slot(f) for f in result.by_step.get(step, [])}:
            result.by_step.setdefault(step, []).append(fault)


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


_ISSUE_13_KINDS = (
    "nul_in_customer_id",
    "nul_in_key",
    "nul_in_value",
    "nul_in_id",
    "control_bytes_in_id",
    "control_bytes_in_key",
    "control_bytes_180k",
    "control_bytes_180k_command",
    "over_cap_charge",
    "negative_prerated_usage",
    "far_date_subscription",
    "far_date_usage_9999",
    "far_date_usage_2999",
    "far_date_usage_0001",
    "type_header_mismatch",
    "key_not_customer_usage",
    "key_not_customer_command",
    "same_id_other_body",
    "overlong_payment_invoice_id",
)
"""The hostile cases of issue 13 (the odd-but-valid ones are in the workload, see workload.py)."""

HOSTILE_KINDS = (
    *_ISSUE_13_KINDS,
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


def hostile_message(
    rng: random.Random,
    kind: str,
    customers: list[str],
    currency: dict[str, str],
    earlier: list[Outgoing],
) -> Hostile:
    """One hostile message of `kind` (`earlier`: commands already sent, for a reused id)."""
    marker = f"hostile-{rng.getrandbits(40):010x}"
    who = rng.choice(customers)
    cur = currency[who]
    topic = topics.PAYMENTS_COMMANDS
    value: bytes
    key = who.encode()
    headers: tuple[tuple[str, bytes], ...] = ()
    expect: str | None = None
    reuses_id = False
    if kind in _ISSUE_13_KINDS:
        made = _issue_13_case(rng, kind, marker, who, cur, customers, earlier)
        topic, key, value, headers, expect = made
        reuses_id = kind == "same_id_other_body"
    elif kind == "bad_json":
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
        value = json.dumps(_envelope(rng, "VoidInvoice", {"invoice_id": marker, "reason": "x"}, who)).encode()
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
    if kind == "no_customer_payment":
        key = marker.encode()
    expected, message_id = _expect(topic, value)
    if reuses_id:
        message_id = json.loads(value)["id"]
    return Hostile(kind, topic, key, value, marker, expect or expected, message_id, headers, reuses_id)


def _issue_13_case(
    rng: random.Random,
    kind: str,
    marker: str,
    who: str,
    cur: str,
    customers: list[str],
    earlier: list[Outgoing],
) -> tuple[str, bytes, bytes, tuple[tuple[str, bytes], ...], str | None]:
    """topic, key, value, headers and (when the contracts alone cannot tell) the expected
    outcome of one hostile case of issue 13. None: what `_expect` derives from the contracts
    (a command that parses is answered by CommandRejected or dead-lettered; anything else is
    dead-lettered by every consumer of its topic)."""

    def grant(customer: str | None, **over: Any) -> dict[str, Any]:
        data = {"grant_id": marker, "kind": "manual", "amount": {"amount": "1.00", "currency": cur}}
        data |= {"source": "manual", **over}
        return _envelope(rng, "GrantCredit", data, customer)

    def usage(customer: str, occurred_at: str | None = None, **over: Any) -> dict[str, Any]:
        data = {"service": "voice", "quantity": "10", "unit": "minute", "destination": "44", **over}
        body = _envelope(rng, "UsageRecorded", data, customer)
        if occurred_at is not None:
            body["occurred_at"] = occurred_at
        return body

    def dumps(body: Any) -> bytes:
        return json.dumps(body).encode()

    key = who.encode()
    if kind == "nul_in_customer_id":  # D1: a NUL in the customer id of a grant
        return topics.CREDITS_COMMANDS, marker.encode(), dumps(grant(f"{who}\x00{marker}")), (), None
    if kind == "nul_in_key":  # D1: not JSON, and a NUL in the Kafka key
        return topics.USAGE, b"k\x00" + marker.encode(), b"\x00" + marker.encode() + b"{not json", (), "dlq"
    if kind == "nul_in_value":  # a NUL inside a string value of a usage event
        return topics.USAGE, key, dumps(usage(who, service=f"voice\x00{marker}")), (), "dlq"
    if kind == "nul_in_id":  # a NUL inside a command's own id (grant_id)
        return topics.CREDITS_COMMANDS, key, dumps(grant(who, grant_id=f"{marker}\x00g")), (), None
    if kind == "control_bytes_in_id":
        payment: dict[str, Any] = {
            "payment_id": f"{marker}\x01\x02\x1b[31m",
            "amount": {"amount": "10.00", "currency": cur},
            "method": "cash",
            "received_on": "2026-11-15",
        }
        return (
            topics.PAYMENTS_COMMANDS,
            key,
            dumps(_envelope(rng, "RecordOfflinePayment", payment, who)),
            (),
            None,
        )
    if kind == "control_bytes_in_key":  # a valid usage whose key holds control bytes (not its customer)
        return (
            topics.USAGE,
            who.encode() + b"\x01\x07",
            dumps(usage(who, service=f"voice-{marker}")),
            (),
            "dlq",
        )
    if kind in ("control_bytes_180k", "control_bytes_180k_command"):  # D2: ~6x larger once escaped
        topic = topics.USAGE if kind == "control_bytes_180k" else topics.CREDITS_COMMANDS
        return topic, key, marker.encode() + b"\x01" * 180_000, (), "dlq"
    if kind == "over_cap_charge":  # D4: one amount over 10^15
        data: dict[str, Any] = {
            "charge_id": marker,
            "description": "over the cap",
            "amount": {"amount": "1000000000000000.01", "currency": cur},
            "invoice_now": False,
        }
        return topics.INVOICING_COMMANDS, key, dumps(_envelope(rng, "AddCharge", data, who)), (), None
    if kind == "negative_prerated_usage":  # pre-rated with a negative amount: refused
        body = usage(
            who, service=f"sms-{marker}", unit="message", amount={"amount": "-5.00", "currency": cur}
        )
        return topics.USAGE, key, dumps(body), (), "dlq"
    if kind == "far_date_subscription":  # D7: year 10000 once a period is added
        data = {
            "subscription_id": marker,
            "name": "Plan",
            "fee": {"amount": "10.00", "currency": cur},
            "starts_on": "9999-12-15",
        }
        return (
            topics.INVOICING_COMMANDS,
            key,
            dumps(_envelope(rng, "CreateSubscription", data, who)),
            (),
            None,
        )
    if kind.startswith("far_date_usage_"):  # D7: usage outside the accepted window of dates
        when = {
            "9999": "9999-12-31T12:00:00Z",
            "2999": "2999-06-01T12:00:00Z",
            "0001": "0001-01-01T12:00:00Z",
        }
        body = usage(who, when[kind[-4:]], service=f"voice-{marker}")
        return topics.USAGE, key, dumps(body), (), "dlq"
    if kind == "type_header_mismatch":  # a valid grant whose `type` header says something else
        headers = (("type", b"RecordOfflinePayment"),)
        return topics.CREDITS_COMMANDS, key, dumps(grant(who)), headers, "dlq"
    if kind == "key_not_customer_usage":  # a valid usage on another customer's key
        other = next((c for c in customers if c != who), f"other-{marker}")
        return topics.USAGE, other.encode(), dumps(usage(who, service=f"voice-{marker}")), (), "dlq"
    if kind == "key_not_customer_command":
        other = next((c for c in customers if c != who), f"other-{marker}")
        return topics.CREDITS_COMMANDS, other.encode(), dumps(grant(who)), (), "dlq"
    if kind == "same_id_other_body":  # an id already applied, another body: flagged, not dropped
        grants = [m for m in earlier if m.topic == topics.CREDITS_COMMANDS] or earlier
        if not grants:
            return topics.CREDITS_COMMANDS, key, dumps(grant(who)), (), None
        original = rng.choice(grants)
        body = json.loads(original.envelope.to_json())
        body["data"] = {**grant(None)["data"], "reason": marker}
        body["type"] = "GrantCredit"
        customer = str(original.envelope.customer_id)
        return original.topic, customer.encode(), dumps(body), (("type", b"GrantCredit"),), "dlq"
    # overlong_payment_invoice_id: RecordOfflinePayment.invoice_id of 5,000 characters
    data = {
        "payment_id": marker,
        "invoice_id": "i" * 5000,
        "amount": {"amount": "10.00", "currency": cur},
        "method": "cash",
        "received_on": "2026-11-15",
    }
    return topics.PAYMENTS_COMMANDS, key, dumps(_envelope(rng, "RecordOfflinePayment", data, who)), (), None
