"""Usage ingestion with 1, 2 and 3 instances of invoicing (issue 20): events/s per instance
count, beside the raw rates of the same run, and the CPU seconds each process spent.

Each count gets a topic prefix, consumer groups and database of its own: customers and the
price list are applied first (not timed), the same N usage events are pre-loaded on `usage`
(6 partitions), then that many `python -m invoicing` processes are started, sharing the
database and the consumer groups, and timed from their start until every event is on an
invoice (the handled offsets, as in `bench.ingest`). Kafka gives each instance 6/N partitions
of `usage`; a customer's events are keyed by customer, so they stay on one partition and one
instance, and the per-customer order holds.

On one machine the instances share its cores with PostgreSQL and Kafka, so the figure says
what the extra processes cost more than what separate machines would gain: the CPU seconds
per process show where the time went. The rate is printed twice: from the processes' start,
and from the first event handled (Python's start-up left out; the rebalances as the other
instances join, a real cost of several instances, stay in).

Settings: BENCH_EVENTS (as `bench.ingest`: default 200000; `make bench-instances` uses 50000),
BENCH_CUSTOMERS (1000), BENCH_INSTANCES (1,2,3), and those of `bench.scratch`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench.ingest import (
    CUSTOMERS,
    EVENTS,
    config_messages,
    raw_copy_rate,
    raw_kafka_rate,
    run_invoicing_until,
    usage_events,
)
from bench.scratch import BOOTSTRAP, INFRA, consumer_group, produce, scratch_run
from tally_contracts import Envelope, topics
from tally_contracts.usage import UsageRecorded
from tally_messaging.consumed_offsets import records_handled
from tally_messaging.settings import ServiceSettings
from tally_messaging.topic_admin import ensure_topics
from tally_testing import REPO, free_port, service_env

COUNTS = tuple(int(n) for n in os.environ.get("BENCH_INSTANCES", "1,2,3").split(","))


@dataclass
class Outcome:
    instances: int
    events_per_second: float  # from the processes' start until every event is on an invoice
    seconds: float
    working_events_per_second: float  # from the first event handled (start-up left out)
    startup_seconds: float  # until the first event was handled
    cpu_per_instance: list[float]  # user + system seconds of each invoicing process
    postgres_cpu: float
    kafka_cpu: float


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one running process, from /proc (0 where it is absent)."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        text = stat.read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_process(command: str) -> dict[int, tuple[float, int]]:
    """CPU seconds (with reaped children) and start time (clock ticks after boot) of each
    process named `command`, by pid."""
    found: dict[int, tuple[float, int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        if text[text.index("(") + 1 : text.rindex(")")] == command:
            fields = text[text.rindex(")") + 2 :].split()
            seconds = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
            found[int(stat.parent.name)] = (seconds, int(fields[19]))
    return found


def spent(before: dict[int, tuple[float, int]], after: dict[int, tuple[float, int]]) -> float:
    """CPU seconds spent between two readings: by the processes present in both, and all of a
    process started since (PostgreSQL's backend for each new connection). A process that ended
    meanwhile is left out (a backend's time goes to the postmaster when it is reaped)."""
    since = max((start for _, start in before.values()), default=0)
    total = 0.0
    for pid, (seconds, start) in after.items():
        if pid in before and before[pid][1] == start:
            total += seconds - before[pid][0]
        elif start >= since:
            total += seconds
    return total


async def one_count(
    base: ServiceSettings, dsn: str, events: list[Envelope[UsageRecorded]], n: int
) -> Outcome:
    """`n` invoicing processes on a fresh prefix and database, timed over the pre-loaded usage."""
    prefix = f"{base.topic_prefix.rstrip('.')}-{n}x{uuid.uuid4().hex[:4]}."
    await ensure_topics(BOOTSTRAP, prefix, credentials=INFRA.kafka_admin)
    settings = base.model_copy(update={"topic_prefix": prefix, "group_prefix": prefix, "database_url": dsn})
    config = config_messages()
    await produce(prefix, topics.INVOICING_COMMANDS, config)
    await run_invoicing_until(settings, "invoicing:invoicing.commands", len(config))
    await produce(prefix, topics.USAGE, events)
    group = consumer_group(settings, "invoicing:usage")
    conn = await asyncpg.connect(dsn)
    processes: list[asyncio.subprocess.Process] = []
    ports = [free_port() for _ in range(n)]
    try:
        cpu_before = (cpu_by_process("postgres"), cpu_by_process("java"))
        started = time.perf_counter()
        for port in ports:
            env = service_env(settings.model_copy(update={"http_port": port}), TALLY_LOG_LEVEL="WARNING")
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "invoicing",
                    env=env,
                    cwd=REPO,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
            )
        first: tuple[float, int] | None = None
        while (handled := await records_handled(conn, group)) < EVENTS:
            dead = [p.returncode for p in processes if p.returncode is not None]
            if dead:
                raise RuntimeError(f"an invoicing process exited with {dead[0]} during the run")
            if first is None and handled > 0:
                first = (time.perf_counter(), handled)
            await asyncio.sleep(0.05)
        seconds = time.perf_counter() - started
        cpu = [process_cpu_seconds(p.pid) for p in processes]
        cpu_after = (cpu_by_process("postgres"), cpu_by_process("java"))
    finally:
        await conn.close()
        for p in processes:
            if p.returncode is None:
                p.terminate()
        for p in processes:
            try:
                await asyncio.wait_for(p.wait(), 30)
            except TimeoutError:
                p.kill()
                await p.wait()
    first_time, first_count = first or (started, 0)
    working = (EVENTS - first_count) / (started + seconds - first_time)
    return Outcome(
        n,
        EVENTS / seconds,
        seconds,
        working,
        first_time - started,
        cpu,
        spent(cpu_before[0], cpu_after[0]),
        spent(cpu_before[1], cpu_after[1]),
    )


async def main() -> None:
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # a fresh topic's first sends retry
    async with scratch_run(databases=1 + len(COUNTS), http_port=18182) as (settings, dsns):
        raw_dsn, *count_dsns = dsns
        events = usage_events()
        await produce(settings.topic_prefix, topics.USAGE, events)
        kafka = await raw_kafka_rate(settings.topic_prefix)
        copy = await raw_copy_rate(raw_dsn, events)
        outcomes = [
            await one_count(settings, dsn, events, n) for n, dsn in zip(COUNTS, count_dsns, strict=True)
        ]
    cores = os.cpu_count()
    print(
        f"ingest with N instances of invoicing ({EVENTS:,} events, {CUSTOMERS:,} customers, {cores} cores):"
    )
    print(f"raw aiokafka read: {kafka:,.0f} events/s; raw asyncpg COPY: {copy:,.0f} rows/s")
    for o in outcomes:
        per = ", ".join(f"{c:.1f}" for c in o.cpu_per_instance)
        print(
            f"  {o.instances} instance(s): {o.events_per_second:,.0f} events/s ({o.seconds:.1f} s from start;"
            f" {o.working_events_per_second:,.0f} events/s from the first event handled, after"
            f" {o.startup_seconds:.1f} s); CPU s: invoicing {per} (total {sum(o.cpu_per_instance):.1f}),"
            f" postgres {o.postgres_cpu:.1f}, kafka {o.kafka_cpu:.1f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
