"""Duplicate detection whose cost does not grow with history (issue 15), in one run:

1. ingest (as `bench.ingest`: N usage events pre-loaded on `usage`, invoicing timed from its
   start until every event is handled) into an empty dedupe store, then into one already
   holding BENCH_DEDUPE_IDS ids spread over the window's days (filled with generate_series,
   its time printed apart), each next to a raw asyncpg COPY of the same rows into the same
   database;
2. storage per ingested usage event: in the dedupe store while inside the window, and in
   the whole database once the window has passed (its days dropped);
3. what dropping one day of the full window costs (and, for contrast, a DELETE of another).

An event is handled when its partition's handled offset covers it (the offset row
commits with the event's state change), counted as the sum of handled offsets + 1.

Settings: BENCH_DEDUPE_IDS (default 20,000,000), BENCH_EVENTS and BENCH_CUSTOMERS (as
`bench.ingest`), and those of `bench.scratch`. A quick smoke run:
`BENCH_DEDUPE_IDS=100000 BENCH_EVENTS=5000 BENCH_CUSTOMERS=100 uv run python -m bench dedupe`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import os
import time

import asyncpg

from bench.ingest import CUSTOMERS, EVENTS, config_messages, raw_copy_rate, usage_events
from bench.scratch import produce, scratch_run
from tally_contracts import topics
from tally_messaging.consumed_offsets import records_handled
from tally_messaging.dedupe import DedupeWindow, day_of, drop_days_before
from tally_messaging.migrations import apply_migrations
from tally_messaging.settings import ServiceSettings
from tally_testing import free_port

IDS = int(os.environ.get("BENCH_DEDUPE_IDS", "20000000"))
CONSUMER = "invoicing:usage"
USAGE_DAYS = 20
"""The usage is dated over the 20 days before the run: the days ingest writes are the
recent ones, as in production, and the fill holds ids on them too."""


def window_days(window: DedupeWindow, now: dt.datetime) -> list[dt.date]:
    """The days of the window at `now`, oldest first (today included)."""
    today = day_of(now)
    return [today - dt.timedelta(days=n) for n in range(window.days - 1, -1, -1)]


async def fill_day(conn: asyncpg.Connection, day: dt.date, count: int) -> None:
    """One day's partition with `count` random ids: loaded, indexed, then attached (a
    check constraint spares the attach its scan). The index is built with its leaves 70%
    full, as random inserts leave a B-tree (ln 2 ≈ 69%); CREATE INDEX's default 90% would
    make every first insert into a leaf split it, a cost the store never has in use."""
    name = f"tally_message_ids_{day:%Y%m%d}"
    await conn.execute(f"create table {name} (like tally_message_ids including defaults)")
    await conn.execute(
        f"insert into {name} (consumer, day, message_id, body_digest)"
        " select $1, $2::date, gen_random_uuid(), substring(decode(md5(g::text), 'hex') from 1 for 8)"
        " from generate_series(1, $3) as g",
        CONSUMER,
        day,
        count,
    )
    await conn.execute(
        f"alter table {name} add primary key (consumer, day, message_id) with (fillfactor = 70)"
    )
    await conn.execute(
        f"alter table {name} add constraint {name}_day check (day >= '{day}' and day < '{day + dt.timedelta(days=1)}')"
    )
    await conn.execute(
        f"alter table tally_message_ids attach partition {name} for values from ('{day}') to ('{day + dt.timedelta(days=1)}')"
    )
    await conn.execute(f"alter table {name} drop constraint {name}_day")


async def fill_dedupe_store(dsn: str, window: DedupeWindow, now: dt.datetime) -> float:
    """`IDS` ids spread evenly over the window's days, then vacuumed (as autovacuum would
    have); seconds taken. Two connections, one per core."""
    days = window_days(window, now)
    started = time.perf_counter()
    conns = [await asyncpg.connect(dsn) for _ in range(2)]
    try:
        await apply_migrations(conns[0], "tally_messaging", "sql")

        async def fill(conn: asyncpg.Connection, mine: list[dt.date]) -> None:
            for day in mine:
                await fill_day(conn, day, IDS // len(days) + (1 if days.index(day) < IDS % len(days) else 0))

        await asyncio.gather(*(fill(c, days[n :: len(conns)]) for n, c in enumerate(conns)))
        await conns[0].execute("vacuum (analyze) tally_message_ids")
    finally:
        for conn in conns:
            await conn.close()
    return time.perf_counter() - started


async def run_invoicing_until(settings: ServiceSettings, topic: str, count: int) -> float:
    """Start invoicing, wait until its consumer of `topic` handled `count` records, stop;
    seconds taken."""
    from invoicing.app import build

    group = f"{settings.group_prefix}invoicing.{topic}"
    service = build(settings)
    started = time.perf_counter()
    await service.start()
    conn = await asyncpg.connect(settings.database_url)
    try:
        while await records_handled(conn, group) < count:
            await asyncio.sleep(0.05)
        return time.perf_counter() - started
    finally:
        await conn.close()
        await service.stop()


DATABASE_BYTES = (
    "select coalesce(sum(pg_total_relation_size(c.oid)), 0) from pg_class c"
    " join pg_namespace n on n.oid = c.relnamespace"
    " where n.nspname = 'public' and c.relkind in ('r', 'm') and c.relname like $1"
)


async def storage_per_event(dsn: str, now: dt.datetime) -> tuple[float, float, float]:
    """Bytes per ingested event: in the dedupe store inside the window; then, once every day
    the usage was dated on left the window (dropped), in the runtime's tables and in the
    whole database."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("vacuum (analyze)")
        inside = await conn.fetchval(DATABASE_BYTES, "tally\\_message\\_ids\\_%")
        await drop_days_before(conn, day_of(now) + dt.timedelta(days=1))  # the window has passed
        runtime = await conn.fetchval(DATABASE_BYTES, "tally\\_%")
        everything = await conn.fetchval(DATABASE_BYTES, "%")
    finally:
        await conn.close()
    return inside / EVENTS, runtime / EVENTS, everything / EVENTS


async def drop_a_day(dsn: str) -> tuple[float, int, int, float, int]:
    """Time to drop the oldest day of the window (its ids and bytes), and for contrast to
    DELETE the next day's ids."""
    conn = await asyncpg.connect(dsn)
    try:
        oldest, following = (
            r[0] for r in await conn.fetch("select d from tally_message_ids_days() as d order by d limit 2")
        )
        ids = await conn.fetchval("select count(*) from tally_message_ids where day = $1", oldest)
        size = await conn.fetchval(
            "select pg_total_relation_size($1::regclass)", f"tally_message_ids_{oldest:%Y%m%d}"
        )
        started = time.perf_counter()
        await drop_days_before(conn, oldest + dt.timedelta(days=1))
        dropped = time.perf_counter() - started
        deleted_ids = await conn.fetchval("select count(*) from tally_message_ids where day = $1", following)
        started = time.perf_counter()
        await conn.execute("delete from tally_message_ids where day = $1", following)
        deleted = time.perf_counter() - started
    finally:
        await conn.close()
    return dropped, ids, size, deleted, deleted_ids


async def main() -> None:
    window = DedupeWindow.from_environment()
    async with scratch_run(databases=3, http_port=free_port()) as (settings, (raw_dsn, empty_dsn, full_dsn)):
        prefix = settings.topic_prefix
        now = dt.datetime.now(dt.UTC)
        config = config_messages()
        await produce(prefix, topics.INVOICING_COMMANDS, config)
        fill_seconds = await fill_dedupe_store(full_dsn, window, now)
        runs = {
            name: settings.model_copy(update={"database_url": dsn, "group_prefix": f"{prefix}{name}."})
            for name, dsn in (("empty", empty_dsn), ("full", full_dsn))
        }
        for run in runs.values():  # customers and prices, before any usage exists (not timed)
            await run_invoicing_until(run, topics.INVOICING_COMMANDS, len(config))
        events = usage_events(now - dt.timedelta(days=USAGE_DAYS), USAGE_DAYS)
        await produce(prefix, topics.USAGE, events)
        copy_empty = await raw_copy_rate(raw_dsn, events)
        copy_full = await raw_copy_rate(full_dsn, events)
        del events  # not the service's: its collections must not walk them (see bench.ingest)
        gc.collect()
        gc.freeze()
        rates = {
            name: EVENTS / await run_invoicing_until(run, topics.USAGE, EVENTS) for name, run in runs.items()
        }
        inside, runtime, everything = await storage_per_event(empty_dsn, now)
        dropped, dropped_ids, dropped_bytes, deleted, deleted_ids = await drop_a_day(full_dsn)
    print(f"dedupe store fill: {IDS:,} ids over {window.days} days in {fill_seconds:,.1f} s")
    print(
        f"ingest, empty dedupe store: {rates['empty']:,.0f} events/s ({EVENTS:,} events, {CUSTOMERS:,} customers)"
    )
    print(f"raw asyncpg COPY, empty database: {copy_empty:,.0f} rows/s")
    print(f"ingest with {IDS:,} ids in the dedupe store: {rates['full']:,.0f} events/s")
    print(f"raw asyncpg COPY, database with {IDS:,} ids: {copy_full:,.0f} rows/s")
    print(f"ingest full / empty store: {rates['full'] / rates['empty']:.0%} (target >= 90%)")
    print(f"storage per usage event inside the window, dedupe store: {inside:,.0f} bytes")
    print(
        f"storage per usage event after the window: runtime {runtime:,.1f} bytes, whole database {everything:,.0f} bytes"
    )
    print(
        f"drop a day of the window: {dropped * 1000:,.0f} ms ({dropped_ids:,} ids, {dropped_bytes / 2**20:,.0f} MiB);"
        f" a DELETE of a day ({deleted_ids:,} ids): {deleted * 1000:,.0f} ms"
    )
