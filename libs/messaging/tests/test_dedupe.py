"""Duplicate detection in two parts, against real Kafka and PostgreSQL: a redelivered record
is caught by its partition's handled offset (even once its id has left the dedupe window),
a re-sent id by the dedupe window; a message older than the window is dead-lettered; the
window's days are partitions made ahead and dropped, never deleted."""

import asyncio
import datetime as dt
import signal
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from prometheus_client import REGISTRY

from tally_contracts import Envelope, message_key, topics
from tally_contracts.usage import UsageRecorded
from tally_messaging import Delivery, Transaction
from tally_messaging.consumed_offsets import records_handled
from tally_messaging.dedupe import (
    DAYS_AHEAD,
    DedupeWindow,
    MessageClaim,
    claim_message_ids,
    ensure_days,
    legacy_inbox_in_use,
    maintain,
    partition_days,
)
from tally_messaging.migrations import apply_migrations
from tally_messaging.processing import RecordProcessor, TopicRoute
from tally_messaging.settings import ServiceSettings
from tally_messaging.transaction import RawRecord
from tally_testing import KafkaProbe, ServiceProcess, service_env

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
PROBE_DIR = str(Path(__file__).parent)
USAGE_GROUP = "probe.usage"


def usage(customer: str, at: dt.datetime | None = None) -> Envelope[Any]:
    data = UsageRecorded(service="voice", quantity=Decimal(1), unit="minute")
    return Envelope.new(data, customer_id=customer, occurred_at=at)


async def usage_rows(dsn: str, ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """How many times each of `ids` was applied by the probe."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "select message_id, count(*) as n from probe_usage where message_id = any($1) group by 1", ids
        )
    finally:
        await conn.close()
    return {r["message_id"]: r["n"] for r in rows}


async def wait_for_usage(dsn: str, message_id: uuid.UUID, timeout: float = 60) -> None:
    for _ in range(int(timeout * 10)):
        if await usage_rows(dsn, [message_id]):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"usage {message_id} never landed")


def refused(check: str) -> float:
    labels = {"service": "probe", "topic": topics.USAGE, "check": check}
    return REGISTRY.get_sample_value("tally_envelope_refused_total", labels) or 0.0


# -- redelivery: the handled offset ----------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def probe_pool(new_database: Any) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(await new_database(), min_size=1, max_size=4)
    async with pool.acquire() as conn:
        await apply_migrations(conn, "tally_messaging", "sql")
        await apply_migrations(conn, "probe")
    yield pool
    await pool.close()


def usage_processor(pool: asyncpg.Pool, batches: list[int]) -> RecordProcessor:
    """A processor of `usage` whose batch handler records each usage (and each batch's size
    in `batches`)."""

    async def record(batch: list[Delivery[UsageRecorded]], tx: Transaction) -> None:
        batches.append(len(batch))
        await tx.conn.executemany(
            "insert into probe_usage (message_id, batch_size) values ($1, $2)",
            [(d.envelope.id, len(batch)) for d in batch],
        )

    route = TopicRoute(topics.USAGE, {}, batch_handler=record, batch_type=UsageRecorded.message_type())
    return RecordProcessor(
        service="probe",
        pool=pool,
        route=route,
        consumer=f"probe:{topics.USAGE}",
        consumer_group=USAGE_GROUP,
        events_topic="x." + topics.CREDITS_EVENTS,
        topic_prefix="x.",
        is_stopping=lambda: False,
    )


def records(messages: list[Envelope[Any]], first_offset: int = 0, partition: int = 0) -> list[RawRecord]:
    return [
        RawRecord(
            "x." + topics.USAGE,
            partition,
            first_offset + n,
            message_key(m).encode(),
            m.to_json(),
            (("type", m.type.encode()),),
        )
        for n, m in enumerate(messages)
    ]


async def test_a_redelivered_batch_is_skipped_by_its_offset_even_once_its_ids_are_forgotten(
    probe_pool: asyncpg.Pool,
) -> None:
    customer = f"cus-{uuid.uuid4().hex[:6]}"
    messages = [usage(customer) for _ in range(20)]
    batches: list[int] = []
    processor = usage_processor(probe_pool, batches)

    await processor.process(records(messages))
    await probe_pool.execute("delete from tally_message_ids")  # only the offset row is left to tell
    await processor.process(records(messages))  # Kafka delivers the same offsets again

    async with probe_pool.acquire() as conn:
        applied = await conn.fetchval(
            "select count(*) from probe_usage where message_id = any($1)", [m.id for m in messages]
        )
        handled = await records_handled(conn, USAGE_GROUP)
    assert applied == 20
    assert batches == [20]  # the second delivery never reached the handler
    assert handled == 20


async def test_a_batch_is_handled_in_offset_order_so_the_handled_offset_never_passes_a_pending_record(
    probe_pool: asyncpg.Pool,
) -> None:
    """Usage, a record that does not parse, usage: the handled offset is written by each
    transaction, so the usage after the bad record must not share a transaction with (and
    be committed together with) the usage before it."""
    customer = f"cus-{uuid.uuid4().hex[:6]}"
    before, after = usage(customer), usage(customer)
    fetched = records([before, before, after])
    fetched[1] = RawRecord(fetched[1].topic, 0, 1, customer.encode(), b'{"not": "a message"')
    batches: list[int] = []
    processor = usage_processor(probe_pool, batches)

    await processor.process(fetched)

    async with probe_pool.acquire() as conn:
        dead_letters = await conn.fetchval("select count(*) from tally_outbox where type = 'DeadLetter'")
        handled = await records_handled(conn, USAGE_GROUP)
    assert batches == [1, 1]
    assert dead_letters == 1
    assert handled == 3


async def test_a_redelivered_batch_after_a_sigkill_between_the_commits_is_counted_once(
    isolated: tuple[ServiceSettings, KafkaProbe],
) -> None:
    """The probe is SIGKILLed after its database commit, before Kafka's offset commit; its
    ids are then forgotten (as once the window passed), so only the offset row can tell
    the redelivered batch from new usage."""
    settings, kafka = isolated
    customer = f"cus-{uuid.uuid4().hex[:6]}"
    messages = [usage(customer) for _ in range(30)]
    env = service_env(settings, PYTHONPATH=PROBE_DIR)
    crashing = ServiceProcess("probe", {**env, "TALLY_FAULT": "after_commit"}, settings.http_port)
    crashing.start()
    try:
        await crashing.wait_healthy()
        for message in messages:
            await kafka.send(topics.USAGE, message)
        assert await crashing.wait_exit(timeout=60) == -signal.SIGKILL
    finally:
        crashing.stop(signal.SIGKILL)
    conn = await asyncpg.connect(settings.database_url)
    try:
        committed = await conn.fetchval("select count(*) from probe_usage")
        await conn.execute("delete from tally_message_ids")
    finally:
        await conn.close()
    assert committed > 0  # a batch was committed before the kill

    restarted = ServiceProcess("probe", env, settings.http_port)
    restarted.start()
    try:
        await restarted.wait_healthy()
        marker = usage(customer)
        await kafka.send(topics.USAGE, marker)
        await wait_for_usage(settings.database_url, marker.id)
    finally:
        assert restarted.stop() == 0, restarted.tail()

    counts = await usage_rows(settings.database_url, [m.id for m in messages])
    assert sorted(counts) == sorted(m.id for m in messages)
    assert set(counts.values()) == {1}
    assert "seeked past handled offset" in restarted.tail(200)
    assert "could not seek past handled offsets" not in restarted.tail(200)  # Kafka's commit too


# -- re-sent ids: the dedupe window ----------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def running_probe(
    isolated: tuple[ServiceSettings, KafkaProbe],
) -> AsyncIterator[tuple[ServiceSettings, KafkaProbe]]:
    from probe import build

    # The production window: the test settings' century-long one would take no message as old.
    settings = isolated[0].model_copy(update={"dedupe_window_days": DedupeWindow().days})
    service = build(settings)
    await service.start()
    yield settings, isolated[1]
    await service.stop()


async def test_an_id_sent_again_inside_the_window_is_counted_once(
    running_probe: tuple[ServiceSettings, KafkaProbe],
) -> None:
    settings, kafka = running_probe
    customer = f"cus-{uuid.uuid4().hex[:6]}"
    late = usage(customer, at=dt.datetime.now(dt.UTC) - dt.timedelta(days=40))  # late, still in the window
    marker = usage(customer)

    await kafka.send(topics.USAGE, late)
    await kafka.send(topics.USAGE, usage(customer))
    await kafka.send(topics.USAGE, late)  # re-sent by its upstream: another offset, same bytes
    await kafka.send(topics.USAGE, marker)
    await wait_for_usage(settings.database_url, marker.id)

    assert await usage_rows(settings.database_url, [late.id]) == {late.id: 1}
    conn = await asyncpg.connect(settings.database_url)
    try:
        kept_on = await conn.fetchval("select day from tally_message_ids where message_id = $1", late.id)
    finally:
        await conn.close()
    assert kept_on == late.occurred_at.date()  # kept in its own day's partition


async def test_a_message_older_than_the_window_is_dead_lettered_with_its_reason(
    running_probe: tuple[ServiceSettings, KafkaProbe],
) -> None:
    settings, kafka = running_probe
    customer = f"cus-{uuid.uuid4().hex[:6]}"
    window = DedupeWindow(settings.dedupe_window_days)
    old = usage(customer, at=dt.datetime.now(dt.UTC) - window.length - dt.timedelta(hours=1))
    marker = usage(customer)
    before = refused("older_than_window")

    await kafka.send(topics.USAGE, old)
    await kafka.send(topics.USAGE, marker)
    [dead] = await kafka.dead_letters(topics.USAGE, lambda d: str(old.id) in str(d["raw"]))
    await wait_for_usage(settings.database_url, marker.id)

    assert f"older than the dedupe window ({window.days} days)" in dead["error"]
    assert await usage_rows(settings.database_url, [old.id]) == {}
    assert refused("older_than_window") == before + 1


# -- the window's partitions -----------------------------------------------------------------


async def dedupe_database(new_database: Any) -> asyncpg.Connection:
    conn = await asyncpg.connect(await new_database())
    await apply_migrations(conn, "tally_messaging", "sql")
    return conn


async def test_days_are_partitions_made_ahead_and_dropped_once_out_of_the_window(new_database: Any) -> None:
    conn = await dedupe_database(new_database)
    try:
        window = DedupeWindow(days=10)
        now = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
        today = now.date()
        inside, outside = today - dt.timedelta(days=10), today - dt.timedelta(days=12)
        await ensure_days(conn, [inside, outside])
        for day in (inside, outside):
            await claim_message_ids(conn, "c1", [MessageClaim(uuid.uuid4(), day, b"x" * 32)])

        dropped = await maintain(conn, window, now)
        again = await maintain(conn, window, now)  # idempotent
        days = await partition_days(conn)
        kept = await conn.fetchval("select count(*) from tally_message_ids")
        outside_table = await conn.fetchval("select to_regclass($1)", f"tally_message_ids_{outside:%Y%m%d}")
        deleted = await conn.fetchval(
            "select coalesce(sum(n_tup_del), 0) from pg_stat_user_tables where relname like 'tally_message_ids%'"
        )
    finally:
        await conn.close()
    assert dropped == [outside] and again == []
    assert days == {inside, *(today + dt.timedelta(days=n) for n in range(DAYS_AHEAD + 1))}
    assert outside_table is None  # the whole day's table is gone: dropped, not deleted
    assert kept == 1 and deleted == 0


async def test_ids_of_the_retired_inbox_count_until_the_window_has_passed(new_database: Any) -> None:
    conn = await dedupe_database(new_database)
    try:
        window, day = DedupeWindow(days=10), dt.date(2026, 12, 1)
        await ensure_days(conn, [day])
        handled_before = uuid.uuid4()
        await conn.execute(
            "insert into tally_inbox (consumer, message_id, body_digest) values ('c1', $1, $2)",
            handled_before,
            b"a" * 32,
        )
        in_use = await legacy_inbox_in_use(conn, "c1", window)
        claim = await claim_message_ids(
            conn, "c1", [MessageClaim(handled_before, day, b"a" * 32)], legacy_inbox=in_use
        )
        await conn.execute("update tally_inbox_retired set retired_at = now() - interval '11 days'")
        in_use_later = await legacy_inbox_in_use(conn, "c1", window)
    finally:
        await conn.close()
    assert in_use is True
    assert claim.fresh == set() and claim.reused(handled_before, b"a" * 32) is False
    assert in_use_later is False
