"""Settle latency: one-invoice flows offered at a steady rate through the running services.

Each flow is a fresh customer with a promotional grant (set up first, not timed) and one
one-time charge (`AddCharge`, invoice_now): invoicing closes the invoice (InvoiceClosed),
rules adjusts it (InvoiceAdjusted), invoicing finalizes it (InvoiceFinalized), credits
applies the grant (InvoiceBalanceChanged). Timed from the command's send to the
customer's first InvoiceBalanceChanged on `credits.events`; p50 / p95 / p99 printed.

Invoicing, rules and credits run as their own processes (as `make up` runs them), on
their own databases and a fresh topic prefix; their peak RSS is printed too.

Beside it, the raw baseline, measured in the same run at the same rate: five hops of
plain aiokafka, each consuming a record, inserting one row into PostgreSQL (committed)
and producing it to the next topic (idempotent, acks=all), chained across six topics.

Settings: BENCH_SETTLE_RATE (flows per second, default 100), BENCH_SETTLE_SECONDS (how
long they are offered, default 60, as issue 16 asks), and those of `bench.scratch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.scratch import BOOTSTRAP, INFRA, KAFKA_OPTIONS
from tally_contracts import Envelope, Money, message_key, topics
from tally_contracts.credits import GrantCredit
from tally_contracts.invoicing import AddCharge, UpsertCustomer
from tally_messaging.consumed_offsets import records_handled
from tally_messaging.logs import configure_logging
from tally_messaging.topic_admin import ensure_topics
from tally_testing import ServiceProcess, free_port, service_env, service_settings

RATE = float(os.environ.get("BENCH_SETTLE_RATE", "100"))
SECONDS = float(os.environ.get("BENCH_SETTLE_SECONDS", "60"))
HOPS = 5
SERVICES = ("invoicing", "rules", "credits")
DRAIN_SECONDS = 120.0
"""How long to wait, after the last send, for the flows still in the pipeline."""


FLOW_EVENTS = ("InvoiceClosed", "InvoiceAdjusted", "InvoiceFinalized", "InvoiceBalanceChanged")
"""A flow's events in order, each caused by the one before."""


def percentiles(latencies: list[float]) -> str:
    if len(latencies) < 2:
        return "too few settled to say"
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return f"p50 {cuts[49] * 1e3:,.0f} ms, p95 {cuts[94] * 1e3:,.0f} ms, p99 {cuts[98] * 1e3:,.0f} ms"


async def offer(count: int, send: Callable[[int], Awaitable[None]]) -> None:
    """Call `send(i)` for i in 0..count-1 at RATE per second, on schedule (no coordinated
    omission: a late send does not push the later ones back)."""
    begun = time.perf_counter()
    for i in range(count):
        delay = begun + i / RATE - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(i)


# -- the raw chain ---------------------------------------------------------------------


async def raw_chain(prefix: str, dsn: str, count: int) -> list[float]:
    """Seconds from send to the end of the fifth hop, per record."""
    names = tuple(f"raw{n}" for n in range(HOPS + 1))
    await ensure_topics(BOOTSTRAP, prefix, names, credentials=INFRA.kafka_admin)
    setup = await asyncpg.connect(dsn)
    await setup.execute("create table raw_hops (hop int, n int, primary key (hop, n))")
    await setup.close()
    latencies: list[float] = []
    done = asyncio.Event()
    ready = [asyncio.Event() for _ in range(HOPS + 1)]

    async def hop(n: int) -> None:
        conn = await asyncpg.connect(dsn)
        consumer = await _consumer(prefix + names[n], f"{prefix}raw-hop{n}")
        producer = AIOKafkaProducer(
            bootstrap_servers=BOOTSTRAP, enable_idempotence=True, acks="all", **KAFKA_OPTIONS
        )
        await producer.start()
        ready[n].set()
        try:
            while not done.is_set():
                batches = await consumer.getmany(timeout_ms=100)
                for records in batches.values():
                    for record in records:
                        body = json.loads(record.value)
                        await conn.execute("insert into raw_hops (hop, n) values ($1, $2)", n, body["n"])
                        await producer.send_and_wait(prefix + names[n + 1], record.value, key=record.key)
                if batches:
                    await consumer.commit()
        finally:
            await producer.stop()
            await consumer.stop()
            await conn.close()

    async def sink() -> None:
        consumer = await _consumer(prefix + names[HOPS], f"{prefix}raw-sink")
        ready[HOPS].set()
        try:
            while len(latencies) < count:
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    now = time.perf_counter()
                    latencies.extend(now - json.loads(r.value)["sent"] for r in records)
        finally:
            await consumer.stop()

    tasks = [asyncio.create_task(hop(n)) for n in range(HOPS)]
    sinking = asyncio.create_task(sink())
    for event in ready:
        await event.wait()
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True, **KAFKA_OPTIONS)
    await producer.start()
    try:

        async def send(i: int) -> None:
            value = json.dumps({"n": i, "sent": time.perf_counter()}).encode()
            await producer.send(prefix + names[0], value, key=str(i).encode())

        await offer(count, send)
        await producer.flush()
        await asyncio.wait_for(sinking, SECONDS + DRAIN_SECONDS)
    finally:
        done.set()
        await producer.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        sinking.cancel()
    return latencies


async def _consumer(topic: str, group: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **KAFKA_OPTIONS,
    )
    await consumer.start()
    while not consumer.assignment():  # joined: nothing sent before this is missed
        await asyncio.sleep(0.05)
    return consumer


# -- the services ----------------------------------------------------------------------


@asynccontextmanager
async def running_services(prefix: str) -> AsyncIterator[dict[str, ServiceProcess]]:
    """Invoicing, rules and credits as their own processes, each on a fresh database."""
    tag = uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(INFRA.admin_dsn)
    names = {service: f"bench_{tag}_{service}" for service in SERVICES}
    processes: dict[str, ServiceProcess] = {}
    try:
        for name in names.values():
            await admin.execute(f'create database "{name}"')
        for service in SERVICES:
            port = free_port()
            settings = service_settings(
                INFRA, prefix, INFRA.dsn(names[service]), http_port=port, dedupe_window_days=70
            )
            processes[service] = ServiceProcess(service, service_env(settings), port)
            processes[service].start()
        for process in processes.values():
            await process.wait_healthy()
        yield processes
    finally:
        for process in processes.values():
            process.stop()
        for name in names.values():
            await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.close()


def peak_rss_mib(process: ServiceProcess) -> float | None:
    """The process's peak resident set (VmHWM), from /proc; None where there is no /proc."""
    assert process.proc is not None
    status = Path(f"/proc/{process.proc.pid}/status")
    with contextlib.suppress(OSError):
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


async def until_handled(dsn: str, group: str, count: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        while await records_handled(conn, group) < count:
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def tally_flows(prefix: str, count: int) -> tuple[list[float], dict[str, float | None]]:
    """Seconds from each AddCharge's send to its customer's first InvoiceBalanceChanged,
    and each service's peak RSS in MiB."""
    await ensure_topics(BOOTSTRAP, prefix, credentials=INFRA.kafka_admin)
    customers = [f"settle-{i}" for i in range(count)]
    async with running_services(prefix) as services:
        producer = AIOKafkaProducer(
            bootstrap_servers=BOOTSTRAP, enable_idempotence=True, linger_ms=5, **KAFKA_OPTIONS
        )
        await producer.start()
        try:

            async def send(topic: str, message: Envelope[Any]) -> None:
                await producer.send(prefix + topic, message.to_json(), key=message_key(message).encode())

            # Not timed: the customers and their grants.
            for c in customers:
                await send(
                    topics.INVOICING_COMMANDS, Envelope.new(UpsertCustomer(currency="USD"), customer_id=c)
                )
                grant = GrantCredit(
                    grant_id=f"g-{c}", kind="promotional", amount=Money.of("5.00", "USD"), source="promo_code"
                )
                await send(topics.CREDITS_COMMANDS, Envelope.new(grant, customer_id=c))
            await producer.flush()
            await until_handled(
                _dsn_of(services, "invoicing"), f"{prefix}invoicing.invoicing.commands", count
            )
            await until_handled(_dsn_of(services, "credits"), f"{prefix}credits.credits.commands", count)

            settled: dict[str, float] = {}
            sent: dict[str, float] = {}
            hops: dict[str, dict[str, float]] = {}
            consumer = AIOKafkaConsumer(
                bootstrap_servers=BOOTSTRAP, enable_auto_commit=False, **KAFKA_OPTIONS
            )
            await consumer.start()
            partitions = [
                TopicPartition(prefix + topic, p)
                for topic in (topics.INVOICING_EVENTS, topics.RULES_EVENTS, topics.CREDITS_EVENTS)
                for p in range(topics.PARTITIONS)
            ]
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for tp in partitions:
                await consumer.position(tp)  # resolved now: only what follows is read

            async def watch() -> None:
                while len(settled) < count:
                    for records in (await consumer.getmany(timeout_ms=100)).values():
                        now = time.perf_counter()
                        for record in records:
                            body = json.loads(record.value)
                            who, kind = body.get("customer_id"), body.get("type")
                            if who not in sent or kind not in FLOW_EVENTS:
                                continue
                            hops.setdefault(who, {}).setdefault(kind, record.timestamp / 1000)
                            if kind == "InvoiceBalanceChanged" and who not in settled:
                                settled[who] = now

            watching = asyncio.create_task(watch())

            async def charge(i: int) -> None:
                c = customers[i]
                command = AddCharge(
                    charge_id=f"chg-{c}",
                    description="settle",
                    amount=Money.of("12.34", "USD"),
                    invoice_now=True,
                )
                message = Envelope.new(command, customer_id=c)
                sent[c] = time.perf_counter()
                hops.setdefault(c, {})["AddCharge"] = time.time()
                await send(topics.INVOICING_COMMANDS, message)

            try:
                await offer(count, charge)
                await producer.flush()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(watching), DRAIN_SECONDS)
            finally:
                watching.cancel()
                await consumer.stop()
        finally:
            await producer.stop()
        rss = {name: peak_rss_mib(process) for name, process in services.items()}
    print_hops(hops)
    return [settled[c] - sent[c] for c in customers if c in settled], rss


def print_hops(hops: dict[str, dict[str, float]]) -> None:
    """Where a flow's time goes: each hop from its cause's send to the event's Kafka
    timestamp (set by the relay's producer when it sends the event)."""
    steps = ("AddCharge", *FLOW_EVENTS)
    for cause, event in itertools.pairwise(steps):
        spans = [seen[event] - seen[cause] for seen in hops.values() if cause in seen and event in seen]
        if len(spans) > 1:
            print(f"  hop {cause} -> {event}: {percentiles(spans)}")


def _dsn_of(services: dict[str, ServiceProcess], service: str) -> str:
    return services[service].env["TALLY_DATABASE_URL"]


async def main() -> None:
    configure_logging("bench", "WARNING")
    count = int(RATE * SECONDS)
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    admin = await asyncpg.connect(INFRA.admin_dsn)
    raw_db = f"bench_{uuid.uuid4().hex[:8]}_raw"
    await admin.execute(f'create database "{raw_db}"')
    try:
        raw = await raw_chain(prefix, INFRA.dsn(raw_db), count)
    finally:
        await admin.execute(f'drop database if exists "{raw_db}" with (force)')
        await admin.close()
    flows, rss = await tally_flows(prefix, count)
    offered = f"{RATE:,.0f}/s for {SECONDS:,.0f} s"
    print(f"settle: {len(flows):,} of {count:,} one-invoice flows settled ({offered}): {percentiles(flows)}")
    print(f"raw chain of {HOPS} hops (consume, insert + commit, produce), same rate: {percentiles(raw)}")
    if len(raw) > 1 and len(flows) > 1:
        raw_p99 = statistics.quantiles(raw, n=100, method="inclusive")[98]
        flows_p99 = statistics.quantiles(flows, n=100, method="inclusive")[98]
        print(
            f"settle p99 / raw chain p99 (target: at most 3x, and under 250 ms): {flows_p99 / raw_p99:.1f}x"
        )
    print("settle peak RSS (MiB): " + ", ".join(f"{k} {v:,.0f}" for k, v in rss.items() if v is not None))


if __name__ == "__main__":
    asyncio.run(main())
