"""The relay never wedges on one row, and its backlog gauge counts what waits.

Found by the hostile probe of issue 13 (D2): one outbox row Kafka refused for its size
made the relay retry it for ever, with every later row stuck behind it and
`tally_outbox_backlog` saying 0.
"""

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import REGISTRY

from tally_messaging.migrations import apply_migrations
from tally_messaging.outbox import OutboxRelay
from tally_testing import Infra, KafkaProbe

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
TOPIC_MAX_BYTES = 20_000


@pytest_asyncio.fixture(loop_scope="session")
async def small_topic(infra: Infra, topic_prefix: str) -> str:
    """A topic of its own whose broker-side limit is 20 KB, so the broker (not the client) refuses."""
    name = f"small-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap, **infra.kafka_options())
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic_prefix + name, 1, 1, topic_configs={"max.message.bytes": str(TOPIC_MAX_BYTES)})]
        )
    finally:
        await admin.close()
    return name


@pytest_asyncio.fixture(loop_scope="session")
async def outbox_db(new_database: Any) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """A database with the runtime's tables: its DSN (for the relay) and a connection."""
    dsn = await new_database()
    conn = await asyncpg.connect(dsn)
    await apply_migrations(conn, "tally_messaging", "sql")
    yield dsn, conn
    await conn.close()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def insert(conn: asyncpg.Connection, topic: str, key: str, payload: bytes) -> int:
    return int(
        await conn.fetchval(
            "insert into tally_outbox (topic, key, type, payload) values ($1, $2, 'Probe', $3) returning id",
            topic,
            key,
            payload,
        )
    )


async def test_rows_kafka_refuses_are_set_aside_and_the_rows_behind_them_flow(
    infra: Infra,
    topic_prefix: str,
    small_topic: str,
    outbox_db: tuple[str, asyncpg.Connection],
    kafka: KafkaProbe,
) -> None:
    dsn, conn = outbox_db
    service = f"relay-{uuid.uuid4().hex[:6]}"
    topic = topic_prefix + small_topic
    before = metric("tally_outbox_set_aside_total", service=service, topic=topic)
    rows = [
        (b"first", await insert(conn, topic, "k", b"first")),
        (b"x" * 50_000, await insert(conn, topic, "k", b"x" * 50_000)),  # over the topic's limit
        (b"y" * 2_000_000, await insert(conn, topic, "k", b"y" * 2_000_000)),  # over the producer's
        (b"after", await insert(conn, topic, "k", b"after")),
    ]
    relay = OutboxRelay(service, dsn, infra.kafka_bootstrap, batch_size=100, credentials=infra.kafka_admin)

    relay.start()
    try:
        published = await wait_for_values(kafka, small_topic, {b"first", b"after"})
        left = await wait_for_empty_outbox(conn)
    finally:
        await relay.stop()

    set_aside = await conn.fetch(
        "select id, reason, length(payload) as size from tally_outbox_rejected order by id"
    )
    assert [v for v in published if v in (b"first", b"after")] == [b"first", b"after"]  # in order
    assert left == 0
    assert [r["id"] for r in set_aside] == [rows[1][1], rows[2][1]]
    assert all("MessageSizeTooLarge" in r["reason"] for r in set_aside), [r["reason"] for r in set_aside]
    assert [r["size"] for r in set_aside] == [50_000, 2_000_000]
    assert metric("tally_outbox_set_aside_total", service=service, topic=topic) == before + 2
    assert metric("tally_outbox_backlog", service=service) == 0


async def wait_for_values(
    kafka: KafkaProbe, topic: str, wanted: set[bytes], timeout: float = 60
) -> list[bytes]:
    deadline = time.monotonic() + timeout
    while True:
        values = [v for _, v in await kafka.raw(topic)]
        if wanted <= set(values):
            return values
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {wanted} on {topic}; saw {len(values)} records")


async def wait_for_empty_outbox(conn: asyncpg.Connection, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while True:
        left = int(await conn.fetchval("select count(*) from tally_outbox"))
        if left == 0 or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.1)


async def test_the_backlog_gauge_counts_rows_that_wait_while_the_relay_cannot_publish(
    infra: Infra, topic_prefix: str, outbox_db: tuple[str, asyncpg.Connection]
) -> None:
    dsn, conn = outbox_db
    service = f"relay-{uuid.uuid4().hex[:6]}"
    missing_topic = f"{topic_prefix}missing-{uuid.uuid4().hex[:8]}"  # never created: sends time out
    for n in range(3):
        await insert(conn, missing_topic, "k", f"row {n}".encode())
    relay = OutboxRelay(service, dsn, infra.kafka_bootstrap, credentials=infra.kafka_admin)

    relay.start()
    try:
        deadline = time.monotonic() + 30
        while metric("tally_outbox_backlog", service=service) != 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        waiting = metric("tally_outbox_backlog", service=service)
    finally:
        await conn.execute("delete from tally_outbox")
        with contextlib.suppress(TimeoutError):
            await relay.stop()

    assert waiting == 3
