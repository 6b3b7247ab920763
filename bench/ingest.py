"""Usage ingestion: N usage events pre-loaded on `usage`, time until all are on invoices.

Printed next to two raw rates measured in the same run on the same machine: how fast
aiokafka alone reads the same topic, and how fast asyncpg COPY writes the same rows.
An event is "on an invoice" when its partition's handled offset is past it: the offset and
the invoice line are written in one transaction, so the count cannot run ahead.

Settings: BENCH_EVENTS (default 200000), BENCH_CUSTOMERS (1000), and those of
`bench.scratch`.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import random
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.scratch import (
    BOOTSTRAP,
    KAFKA_OPTIONS,
    consumer_group,
    peak_rss_mib,
    produce,
    reset_peak_rss,
    scratch_run,
    until_handled,
)
from invoicing.usage_decoder import parse_usage_message
from tally_contracts import Envelope, parse_message, topics
from tally_contracts.invoicing import Price, PutPriceList, UpsertCustomer
from tally_contracts.usage import UsageRecorded
from tally_messaging.settings import ServiceSettings

EVENTS = int(os.environ.get("BENCH_EVENTS", "200000"))
CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "1000"))
# The first day of last month: inside the services' dedupe window (70 days) whenever it runs.
PERIOD_START = (
    dt.datetime.now(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
).replace(day=1)


def usage_events(start: dt.datetime = PERIOD_START, days: int = 20) -> list[Envelope[UsageRecorded]]:
    """`EVENTS` voice usage events of `CUSTOMERS` customers (the same ones every run), dated
    over the `days` days from `start`."""
    rng = random.Random(7)
    destinations = ["1", "1212", "44", "4420", "33", "49", None]
    return [
        Envelope.new(
            UsageRecorded(
                service="voice",
                quantity=Decimal(rng.randint(1, 600)) / 10,
                unit="minute",
                destination=rng.choice(destinations),
            ),
            customer_id=f"bench-{rng.randrange(CUSTOMERS)}",
            occurred_at=start + dt.timedelta(seconds=rng.randrange(days * 86400)),
        )
        for _ in range(EVENTS)
    ]


async def raw_kafka_rate(prefix: str) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=BOOTSTRAP, enable_auto_commit=False, max_poll_records=5000, **KAFKA_OPTIONS
    )
    await consumer.start()
    try:
        tps = [TopicPartition(prefix + topics.USAGE, p) for p in range(topics.PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        started, seen = time.perf_counter(), 0
        while seen < EVENTS:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                seen += len(records)
        return EVENTS / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def raw_copy_rate(dsn: str, events: list[Envelope[UsageRecorded]]) -> float:
    rows = [
        (e.id, e.customer_id, e.data.service, e.data.unit, e.data.destination, e.data.quantity, e.occurred_at)
        for e in events
    ]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "create table raw_usage (id uuid, customer_id text, service text, unit text,"
            " destination text, quantity numeric, occurred_at timestamptz)"
        )
        started = time.perf_counter()
        await conn.copy_records_to_table("raw_usage", records=rows)
        return EVENTS / (time.perf_counter() - started)
    finally:
        await conn.close()


def config_messages() -> list[Envelope[Any]]:
    usd = "USD"
    prices = [
        Price(service="voice", unit="minute", unit_price=Decimal("0.02"), currency=usd),
        Price(
            service="voice", unit="minute", unit_price=Decimal("0.15"), currency=usd, destination_prefix="44"
        ),
        Price(
            service="voice",
            unit="minute",
            unit_price=Decimal("0.12"),
            currency=usd,
            destination_prefix="4420",
        ),
        Price(
            service="voice", unit="minute", unit_price=Decimal("0.10"), currency=usd, destination_prefix="33"
        ),
        Price(
            service="voice", unit="minute", unit_price=Decimal("0.11"), currency=usd, destination_prefix="49"
        ),
    ]
    return [
        Envelope.new(PutPriceList(price_list_id="default", prices=prices), customer_id=None),
        *(Envelope.new(UpsertCustomer(currency=usd), customer_id=f"bench-{i}") for i in range(CUSTOMERS)),
    ]


async def run_invoicing_until(settings: ServiceSettings, consumer: str, count: int) -> float:
    """Start invoicing, wait until `consumer` handled `count` messages, stop; seconds taken."""
    from invoicing.app import build

    service = build(settings)
    started = time.perf_counter()
    await service.start()
    conn = await asyncpg.connect(settings.database_url)
    try:
        await until_handled(conn, consumer_group(settings, consumer), count)
        return time.perf_counter() - started
    finally:
        await conn.close()
        await service.stop()


PARSE_SAMPLE = 20_000


def envelope_parse_micros(values: list[bytes], parse: Callable[[bytes], Any]) -> float:
    """Microseconds per message that `parse` costs alone."""
    started = time.process_time()
    for value in values:
        parse(value)
    return (time.process_time() - started) / len(values) * 1e6


def cpu_seconds(command: str) -> float | None:
    """User + system CPU seconds of this machine's processes named `command`, from /proc;
    None where /proc is not there (the figure is then left out)."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    ticks = 0
    for stat in proc.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if name == command:
            # utime, stime, and cutime, cstime: what its ended children (a closed
            # connection's backend) spent, added to the parent when it reaps them.
            ticks += sum(int(field) for field in rest[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


async def main() -> None:
    async with scratch_run(databases=2, http_port=18181) as (settings, (raw_dsn, _)):
        prefix = settings.topic_prefix
        # 1. Customers and the price list, before any usage exists (not timed).
        config = config_messages()
        await produce(prefix, topics.INVOICING_COMMANDS, config)
        await run_invoicing_until(settings, "invoicing:invoicing.commands", len(config))
        # 2. N usage events pre-loaded; the raw rates on the same data.
        events = usage_events()
        await produce(prefix, topics.USAGE, events)
        kafka = await raw_kafka_rate(prefix)
        copy = await raw_copy_rate(raw_dsn, events)
        sample = [e.to_json() for e in events[:PARSE_SAMPLE]]
        parse_us = envelope_parse_micros(sample, parse_message)
        fast_us = envelope_parse_micros(sample, parse_usage_message)
        # The generated events are not the service's: drop them, so that the timed run's
        # garbage collections do not walk N envelopes a real service would never hold.
        del events
        gc.collect()
        gc.freeze()
        # 3. Timed from the service's start until every event is on an invoice.
        reset_peak_rss()
        cpu_before = (time.process_time(), cpu_seconds("postgres"), cpu_seconds("java"))
        tally = EVENTS / await run_invoicing_until(settings, "invoicing:usage", EVENTS)
        cpu_after = (time.process_time(), cpu_seconds("postgres"), cpu_seconds("java"))
        rss = peak_rss_mib()
    smaller = min(kafka, copy)
    print(f"ingest: {tally:,.0f} events/s ({EVENTS:,} events, {CUSTOMERS:,} customers)")
    print(f"raw aiokafka read: {kafka:,.0f} events/s")
    print(f"raw asyncpg COPY: {copy:,.0f} rows/s")
    print(f"ingest / smaller raw rate: {tally / smaller:.0%}")
    print(f"ingest / raw aiokafka read (issue 16's P1 target: 20%): {tally / kafka:.1%}")
    # Where the CPU went while ingesting: the ceiling on cores the service shares with them.
    # ("kafka" sums every java process on the machine: other brokers running meanwhile skew it.)
    spent = [
        f"{name} {(after - before) / EVENTS * 1e6:,.1f}"
        for name, before, after in zip(("service", "postgres", "kafka"), cpu_before, cpu_after, strict=True)
        if before is not None and after is not None
    ]
    print(f"ingest CPU per event (µs): {', '.join(spent)}")
    print(f"of which envelope validation (pydantic): {parse_us:.1f} µs per message")
    print(f"of which the usage decoder (msgspec, pydantic when unsure): {fast_us:.1f} µs per message")
    if rss is not None:  # the service runs inside the benchmark's process
        print(f"ingest peak RSS of the process running invoicing: {rss:,.0f} MiB")
