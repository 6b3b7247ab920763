"""Drives one stack through a workload, step by step, injecting the planned faults, then
collects everything the invariants need (topics, read APIs)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from tally_contracts import topics
from tally_contracts.topics import TOPIC_MESSAGES, dlq
from tally_testing import Infra

from .faults import DELAYABLE, SKIPPED, Fault, FaultPlan, Hostile, service_of
from .infra import PrivateInfra
from .stack import EVENTS, Record, Stack
from .workload import Outgoing, Step, Workload

INPUTS_OF_CREDITS = ("credits.commands", "invoicing.events", "payments.events")
LOAD_WINDOW_MAX = 6.0  # seconds a faulty step's messages are spread over, at most
# Every read route, with a path parameter holding NUL (%00): 400 or 404, never 500 (D9).
NUL_ROUTES = (
    ("invoicing", "/invoices/x%00y"),
    ("invoicing", "/customers/x%00y/invoices"),
    ("credits", "/customers/x%00y/balances"),
    ("credits", "/customers/x%00y/invoices"),
    ("credits", "/customers/x%00y/ledger"),
    ("payments", "/customers/x%00y/payments"),
    ("rules", "/rule-sets/x%00y"),
    ("rules", "/customers/x%00y/rule-set"),
)


@dataclass
class Snapshot:
    """What a run left behind."""

    label: str
    records: dict[str, list[Record]]
    invoicing: dict[str, list[dict[str, Any]]]  # customer -> invoices (invoicing's view)
    credit_invoices: dict[str, list[dict[str, Any]]]  # customer -> invoices (credits' view)
    balances: dict[str, list[dict[str, Any]]]  # customer -> balances rows
    ledger: dict[str, Any]  # customer -> ledger answer
    payments: dict[str, Any]
    health: dict[str, int]
    lines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # invoice id -> its lines
    missing: list[str] = field(default_factory=list)  # read-API answers that were not there
    bad_paths: dict[str, int] = field(default_factory=dict)  # route probed with %00 -> status


@dataclass
class RunResult:
    label: str
    sent: list[Outgoing] = field(default_factory=list)
    hostile: list[Hostile] = field(default_factory=list)
    injected: dict[str, int] = field(default_factory=dict)
    fault_log: list[str] = field(default_factory=list)
    step_ends_ms: list[int] = field(default_factory=list)
    duplicates_sent: int = 0
    seconds: float = 0.0
    snapshot: Snapshot | None = None
    errors: list[str] = field(default_factory=list)
    unexpected_exits: list[str] = field(default_factory=list)
    hostile_at: dict[str, tuple[int, int]] = field(default_factory=dict)  # marker -> partition, offset
    failed_restarts: list[str] = field(default_factory=list)  # attempts that failed (then retried)
    never_back: dict[str, str] = field(default_factory=dict)  # service -> log tail

    def count(self, kind: str) -> None:
        self.injected[kind] = self.injected.get(kind, 0) + 1


def _log(label: str, text: str) -> None:
    print(f"  [{label}] {text}", flush=True)


async def run_workload(
    infra: Infra,
    workload: Workload,
    fault_plan: FaultPlan | None,
    label: str,
    *,
    keep: bool = False,
    drain_timeout: float = 90,
    private: PrivateInfra | None = None,
    instances: int = 1,
) -> tuple[RunResult, Stack]:
    """Runs `workload` on a fresh stack; returns the result and the (still running) stack.

    Never raises for what a fault can cause: a stack that does not start, a send that fails
    for minutes, a service that does not come back are recorded in `result.errors` (or
    `never_back`) and the run goes on to its report."""
    result = RunResult(label)
    stack = Stack(infra, label, instances=instances)
    started = time.monotonic()
    _log(label, f"starting stack (prefix {stack.prefix})")
    try:
        await stack.start()
    except Exception as exc:
        result.errors.append(f"the stack did not start: {_short(exc)}")
        result.seconds = time.monotonic() - started
        return result, stack
    rng = random.Random(workload.seed * 31 + 7)
    armed: dict[str, str] = {}
    try:
        for step in workload.steps:
            faults = fault_plan.faults(step.index) if fault_plan else []
            hostile = fault_plan.hostile.get(step.index, []) if fault_plan else []
            if faults:
                _log(
                    label,
                    f"step {step.index} ({step.day}, {len(step.messages)} msgs): "
                    + ", ".join(f.describe() for f in faults),
                )
            try:
                await _run_step(stack, step, faults, hostile, result, rng, armed, private)
                await stack.drain(drain_timeout)
            except Exception as exc:
                # Stuck: the rest of the workload would only pile up behind it. Report and stop.
                result.errors.append(f"step {step.index}: {_short(exc)}")
                _log(label, f"step {step.index}: NOT IDLE: {str(exc)[:2000]}")
                break
            finally:
                _note_restarts(stack, result)
            _note_crashes(stack, armed, result)
            result.step_ends_ms.append(int(time.time() * 1000))
        # Anything still armed is disarmed: the run ends with clean processes.
        for name in list(armed):
            proc = stack.processes[name].proc
            if proc is not None and proc.poll() is None:
                stack.kill(name)
                await stack.restart(name)
            armed.pop(name)
        if not result.errors:
            try:
                await stack.drain(drain_timeout)
            except Exception as exc:
                result.errors.append(f"final drain: {_short(exc)}")
        _note_restarts(stack, result)
        _note_crashes(stack, armed, result)
        result.step_ends_ms.append(int(time.time() * 1000))
        result.snapshot = await collect(stack, workload, label)
    except Exception as exc:  # the report must still be written
        result.errors.append(f"run aborted: {_short(exc)}")
        _log(label, f"run aborted: {exc!r}")
    except BaseException:  # interrupted: leave no service running (unless asked to keep it)
        if not keep:
            with contextlib.suppress(Exception):
                await stack.stop(drop=False)
        raise
    result.seconds = time.monotonic() - started
    return result, stack


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:1500]}"


def _note_restarts(stack: Stack, result: RunResult) -> None:
    """Failed start attempts (retried) are counted as faults; a service given up is reported."""
    for line in stack.failed_restarts:
        result.count("restart_retried")
        result.failed_restarts.append(line)
        result.fault_log.append(line)
    stack.failed_restarts.clear()
    result.never_back.update(stack.gave_up)


def _note_crashes(stack: Stack, armed: dict[str, str], result: RunResult) -> None:
    for name, code, tail in stack.deaths:
        if name in armed:
            result.count("crash_point")
            result.fault_log.append(f"{name} died at {armed.pop(name)} and was restarted")
        else:
            result.unexpected_exits.append(f"{name} exited on its own with {code}: {tail[-1500:]}")
    stack.deaths.clear()


async def _run_step(
    stack: Stack,
    step: Step,
    faults: list[Fault],
    hostile: list[Hostile],
    result: RunResult,
    rng: random.Random,
    armed: dict[str, str],
    private: PrivateInfra | None,
) -> None:
    messages: list[Outgoing | Hostile] = list(step.messages)
    for h in hostile:  # mixed in at random places
        messages.insert(rng.randrange(len(messages) + 1), h)
    delayed_topic: str | None = None
    delay = 0.0
    tasks: list[asyncio.Task[None]] = []
    for fault in faults:
        if fault.kind == "crash_point":
            assert fault.service is not None and fault.point is not None
            # With several instances, every instance of the service is armed: only the one
            # holding the outbox relay's lock reaches a relay point, and only one with records
            # on its partitions reaches after_commit.
            for target in [p for p in stack.processes if service_of(p) == service_of(fault.service)]:
                if target in armed:
                    continue
                stack.kill(target)
                await stack.restart(target, TALLY_FAULT=f"{fault.point}:{fault.nth}")
                armed[target] = f"{fault.point}:{fault.nth}"
                result.fault_log.append(f"step {step.index}: armed {target} with {fault.point}:{fault.nth}")
        elif fault.kind == "kill":
            tasks.append(asyncio.create_task(_kill(stack, fault, result, step.index, armed)))
        elif fault.kind == "pause":
            tasks.append(asyncio.create_task(_pause(stack, fault, result, step.index)))
        elif fault.kind == "delay_topic":
            delayed_topic, delay = fault.topic, fault.duration
            present = sorted({m.topic for m in step.messages} & set(DELAYABLE))
            if delayed_topic not in present and present:
                delayed_topic = present[0]  # the planned topic has nothing in this step
        elif fault.kind == "duplicate":
            tasks.append(asyncio.create_task(_duplicate(stack, fault, result, rng)))
        elif fault.kind == "hostile" and hostile:
            result.count("hostile")
        elif fault.kind == "rebalance_kill":
            tasks.append(asyncio.create_task(_rebalance_kill(stack, fault, result, step.index, armed, rng)))
        elif fault.kind == "leader_kill" and private is not None:
            tasks.append(asyncio.create_task(_leader_kill(stack, private, fault, result, step.index, rng)))
        elif fault.kind in SKIPPED and private is not None:
            tasks.append(asyncio.create_task(_restart_infra(private, fault, result, step.index)))
    now: list[Outgoing | Hostile] = [m for m in messages if delayed_topic is None or m.topic != delayed_topic]
    later: list[Outgoing | Hostile] = [
        m for m in messages if delayed_topic is not None and m.topic == delayed_topic
    ]
    try:
        # Steady load: with faults in the step, its messages flow evenly over the faults'
        # window (a kill, a pause or a broker restart lands while commands and usage keep coming).
        window = min(LOAD_WINDOW_MAX, max((f.delay + f.duration for f in faults), default=0.0))
        gap = window / len(now) if now and window > 0 else 0.0
        for m in now:
            await _send(stack, m, result)
            if gap:
                await asyncio.sleep(gap)
        if delayed_topic is not None:
            if later:
                result.count("delay_topic")
                result.fault_log.append(
                    f"step {step.index}: {len(later)} message(s) on {delayed_topic} {delay:.1f}s late"
                )
            await asyncio.sleep(delay)
            for m in later:
                await _send(stack, m, result)
    finally:  # the faults finish (processes restarted, broker up) before anything else
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            result.fault_log.append(f"step {step.index}: a fault task failed: {_short(outcome)}")
            raise outcome


async def _send(stack: Stack, message: Outgoing | Hostile, result: RunResult) -> None:
    """Publish, retrying while the broker restarts (a repeat has the same id: harmless)."""
    if isinstance(message, Hostile):
        hostile = message
        at = await _retry(
            stack.label,
            lambda: stack.send_raw(hostile.topic, hostile.value, hostile.key, list(hostile.headers)),
        )
        result.hostile.append(message)
        result.hostile_at[hostile.marker] = at
    else:
        outgoing = message
        await _retry(stack.label, lambda: stack.send(outgoing))
        result.sent.append(message)


async def _retry(label: str, send: Callable[[], Awaitable[tuple[int, int]]]) -> tuple[int, int]:
    deadline = time.monotonic() + 180
    while True:
        try:
            return await send()
        except Exception as exc:
            if time.monotonic() > deadline:
                raise
            _log(label, f"send failed ({exc!r}); retrying")
            await asyncio.sleep(1)


async def _restart_infra(private: PrivateInfra, fault: Fault, result: RunResult, step: int) -> None:
    await asyncio.sleep(fault.delay)
    what = ""
    if fault.kind in ("kafka_restart", "kafka_kill") and private.brokers > 1:
        # One broker of the cluster; the other two keep the partitions writable (min ISR 2).
        await private.restart_broker(fault.nth, fault.duration, hard=fault.kind == "kafka_kill")
        what = f" broker {fault.nth}"
    elif fault.kind in ("kafka_restart", "kafka_kill"):
        await private.restart_kafka(fault.duration, hard=fault.kind == "kafka_kill")
    else:
        await private.restart_postgres(fault.duration, immediate=fault.kind == "pg_crash")
    result.count(fault.kind)
    result.fault_log.append(f"step {step}: {fault.kind}{what}, down {fault.duration:.1f}s")


async def _leader_kill(
    stack: Stack, private: PrivateInfra, fault: Fault, result: RunResult, step: int, rng: random.Random
) -> None:
    """SIGKILL the broker leading a partition of `usage` now (mid-batch), then start it again."""
    await asyncio.sleep(fault.delay)
    leaders = await stack.leaders(topics.USAGE)
    partition = rng.choice(sorted(leaders))
    node = leaders[partition]
    if node not in private.nodes:  # no leader this instant (an election): any broker will do
        node = rng.choice(private.nodes)
    await private.restart_broker(node, fault.duration, hard=True)
    result.count("leader_kill")
    result.fault_log.append(
        f"step {step}: SIGKILL broker {node} (leader of usage/{partition}), down {fault.duration:.1f}s"
    )


async def _rebalance_kill(
    stack: Stack, fault: Fault, result: RunResult, step: int, armed: dict[str, str], rng: random.Random
) -> None:
    """One instance of the service leaves cleanly (a rebalance of its groups starts at once);
    `fault.duration` later, inside that rebalance, another instance is SIGKILLed. Both are
    started again (their joins rebalance once more)."""
    assert fault.service is not None
    await asyncio.sleep(fault.delay)
    running = [
        name
        for name, p in stack.processes.items()
        if service_of(name) == fault.service and p.proc is not None and p.proc.poll() is None
    ]
    if len(running) < 2:
        return
    leaving, victim = rng.sample(running, 2)
    stack.leave(leaving)
    await asyncio.sleep(fault.duration)
    stack.kill(victim)
    armed.pop(victim, None)
    armed.pop(leaving, None)
    result.count("rebalance_kill")
    result.fault_log.append(
        f"step {step}: {leaving} left its groups, SIGKILL {victim} {fault.duration:.2f}s later"
    )
    await stack.wait_stopped(leaving, 30)
    await stack.restart(leaving)
    await stack.restart(victim)


async def _kill(stack: Stack, fault: Fault, result: RunResult, step: int, armed: dict[str, str]) -> None:
    assert fault.service is not None
    await asyncio.sleep(fault.delay)
    process = stack.processes[fault.service]
    if process.proc is None or process.proc.poll() is not None:
        return  # already down (an armed crash point fired): nothing to kill
    stack.kill(fault.service)
    armed.pop(fault.service, None)
    result.count("kill")
    result.fault_log.append(f"step {step}: SIGKILL {fault.service} after {fault.delay:.2f}s")
    await asyncio.sleep(fault.duration)
    await stack.restart(fault.service)


async def _pause(stack: Stack, fault: Fault, result: RunResult, step: int) -> None:
    assert fault.service is not None
    await asyncio.sleep(fault.delay)
    process = stack.processes[fault.service]
    if process.proc is None or process.proc.poll() is not None:
        return
    stack.pause(fault.service)
    result.count("pause")
    result.fault_log.append(f"step {step}: SIGSTOP {fault.service} for {fault.duration:.0f}s")
    try:
        await asyncio.sleep(fault.duration)
    finally:
        stack.resume(fault.service)


async def _duplicate(stack: Stack, fault: Fault, result: RunResult, rng: random.Random) -> None:
    """Re-publish a slice of sent commands and a slice of published events, same ids."""
    sent = list(result.sent)
    copies = 0
    if sent:
        start = rng.randrange(len(sent))
        for m in sent[start : start + fault.count]:
            await _retry(stack.label, lambda m=m: stack.send(m))  # type: ignore[misc]
            copies += 1
    events_topic = rng.choice(sorted(EVENTS.values()))
    records = (await stack.read_topics([events_topic]))[events_topic]
    if records:
        start = rng.randrange(len(records))
        for r in records[start : start + fault.count]:
            await _retry(
                stack.label,
                lambda r=r: stack.send_raw(r.topic, r.value, r.key, r.headers, partition=r.partition),  # type: ignore[misc]
            )
            copies += 1
    if copies:
        result.count("duplicate")
        result.duplicates_sent += copies
        result.fault_log.append(f"re-published {copies} message(s) (commands + {events_topic})")


async def collect(stack: Stack, workload: Workload, label: str) -> Snapshot:
    names = list(TOPIC_MESSAGES) + [dlq(t) for t in TOPIC_MESSAGES]
    stack.missing.clear()
    records = await stack.read_topics(names)
    inv: dict[str, list[dict[str, Any]]] = {}
    cinv: dict[str, list[dict[str, Any]]] = {}
    bal: dict[str, list[dict[str, Any]]] = {}
    ledger: dict[str, Any] = {}
    pays: dict[str, Any] = {}
    lines: dict[str, list[dict[str, Any]]] = {}
    for c in workload.customers:
        inv[c] = ((await stack.get("invoicing", f"/customers/{c}/invoices")) or {}).get("invoices", [])
        cinv[c] = ((await stack.get("credits", f"/customers/{c}/invoices")) or {}).get("invoices", [])
        bal[c] = ((await stack.get("credits", f"/customers/{c}/balances")) or {}).get("balances", [])
        ledger[c] = await stack.get("credits", f"/customers/{c}/ledger")
        pays[c] = await stack.get("payments", f"/customers/{c}/payments")
        for invoice in inv[c]:
            iid = str(invoice.get("invoice_id"))
            detail = await stack.get("invoicing", f"/invoices/{quote(iid, safe='')}")
            lines[iid] = list((detail or {}).get("lines", []))
    bad_paths = {f"{service} {path}": await stack.status_of(service, path) for service, path in NUL_ROUTES}
    return Snapshot(
        label,
        records,
        inv,
        cinv,
        bal,
        ledger,
        pays,
        await stack.health(),
        lines,
        list(stack.missing),
        bad_paths,
    )


async def replay_credits(
    infra: Infra,
    original: Stack,
    result: RunResult,
    workload: Workload,
    drain_timeout: float = 60,
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """A fresh credits service and database fed the original run's input topics, step by step
    (each step's records, then idle), so it sees them in the same order; returns its balances
    and what went wrong (it never became idle)."""
    replay = Stack(infra, "replay", services=("credits",))
    await replay.start()
    errors: list[str] = []
    try:
        records = await original.read_topics(INPUTS_OF_CREDITS)
        ends = result.step_ends_ms
        buckets: list[list[Record]] = [[] for _ in ends]
        for topic in INPUTS_OF_CREDITS:
            for r in records[topic]:
                k = next((i for i, end in enumerate(ends) if r.timestamp <= end), len(ends) - 1)
                buckets[k].append(r)
        for n, bucket in enumerate(buckets):
            if not bucket:
                continue
            for r in bucket:  # per topic and partition in offset order (the read order)
                await replay.send_raw(r.topic, r.value, r.key, r.headers, partition=r.partition)
            try:
                await replay.drain(drain_timeout, services=["credits"])
            except TimeoutError as exc:
                errors.append(f"replay of step {n}: {str(exc)[:1500]}")
                break
        balances: dict[str, list[dict[str, Any]]] = {}
        for c in workload.customers:
            balances[c] = ((await replay.get("credits", f"/customers/{c}/balances")) or {}).get(
                "balances", []
            )
        return balances, errors
    finally:
        await replay.stop(drop=True)
