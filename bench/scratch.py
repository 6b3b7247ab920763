"""What every benchmark needs around the service it times: its own topic prefix and
databases (dropped afterwards), a fast way to pre-load a topic, and the handled offsets that
say how many messages a consumer has durably handled.

Settings: TALLY_KAFKA_BOOTSTRAP (127.0.0.1:9092), TALLY_BENCH_ADMIN_DSN
(postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from tally_contracts import Envelope, message_key
from tally_messaging.consumed_offsets import records_handled
from tally_messaging.logs import configure_logging
from tally_messaging.settings import ServiceSettings
from tally_messaging.topic_admin import ensure_topics
from tally_testing import local_infra

BOOTSTRAP = os.environ.get("TALLY_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
ADMIN_DSN = os.environ.get("TALLY_BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
INFRA = local_infra(BOOTSTRAP, ADMIN_DSN)
"""The servers with the set-up's passwords (Kafka's admin, PostgreSQL's postgres) when they
have identities; the benchmarks plumb as the super users, as the tests do."""
KAFKA_OPTIONS: dict[str, Any] = INFRA.kafka_options()


@asynccontextmanager
async def scratch_run(databases: int, http_port: int) -> AsyncIterator[tuple[ServiceSettings, list[str]]]:
    """Settings for the timed service (on the last of `databases` fresh databases, under a
    fresh topic prefix) and the DSNs of all of them; the databases are dropped afterwards."""
    configure_logging("bench", "WARNING")
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    await ensure_topics(BOOTSTRAP, prefix, credentials=INFRA.kafka_admin)
    admin = await asyncpg.connect(INFRA.admin_dsn)
    names = [f"bench_{uuid.uuid4().hex[:8]}" for _ in range(databases)]
    base = INFRA.admin_dsn.rpartition("/")[0]
    try:
        for name in names:
            await admin.execute(f'create database "{name}"')
        dsns = [f"{base}/{name}" for name in names]
        yield (
            ServiceSettings(
                kafka_bootstrap=BOOTSTRAP,
                database_url=dsns[-1],
                topic_prefix=prefix,
                group_prefix=prefix,
                http_port=http_port,
                log_level="WARNING",
                **_kafka_login(),
            ),
            dsns,
        )
    finally:
        for name in names:
            await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.close()


def _kafka_login() -> dict[str, Any]:
    admin = INFRA.kafka_admin
    return {} if admin is None else {"kafka_username": admin.username, "kafka_password": admin.password}


async def produce(prefix: str, topic: str, messages: list[Envelope[Any]]) -> None:
    """Pre-load `topic`, keyed as the services key it, 10,000 sends in flight at most."""
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP,
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=512 * 1024,
        **KAFKA_OPTIONS,
    )
    await producer.start()
    try:
        futures = []
        for m in messages:
            futures.append(await producer.send(prefix + topic, m.to_json(), key=message_key(m).encode()))
            if len(futures) >= 10_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def consumer_group(settings: ServiceSettings, consumer: str) -> str:
    """The consumer group of `consumer` ("service:topic") under `settings`."""
    service, _, topic = consumer.partition(":")
    return f"{settings.group_prefix}{service}.{topic}"


async def until_handled(conn: asyncpg.Connection, group: str, count: int) -> None:
    """Wait until `group` has handled `count` records of its (fresh) topic.

    Read from the handled offsets (`tally_consumed_offsets`, a few rows), which commit in
    the transaction that applies the records: a `count(*)` of the dedupe ids, polled 20
    times a second, cost PostgreSQL about 20 ms a poll at 100,000 ids, 40% of a core
    taken from the service it timed."""
    while await records_handled(conn, group) < count:
        await asyncio.sleep(0.05)


def reset_peak_rss() -> None:
    """Start measuring this process's peak resident set afresh (Linux: /proc/self/clear_refs)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mib() -> float | None:
    """This process's peak resident set since the last `reset_peak_rss`, in MiB (VmHWM);
    None where /proc is not there."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None
