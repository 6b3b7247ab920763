"""The runtime's guarantees, against real Kafka and PostgreSQL.

The probe service (beside this file) records one row per application of a GrantCredit,
so "applied once" is a row count, and publishes CreditGranted through the outbox.
"""

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

from tally_contracts import Envelope, Money, topics
from tally_contracts.credits import GrantCredit
from tally_contracts.usage import UsageRecorded
from tally_messaging.dedupe import MessageClaim, claim_message_ids, ensure_days
from tally_messaging.migrations import apply_migrations
from tally_messaging.settings import ServiceSettings
from tally_testing import (
    Infra,
    KafkaProbe,
    ServiceProcess,
    free_port,
    service_env,
    service_settings,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
PROBE_DIR = str(Path(__file__).parent)


def grant(customer: str, amount: str = "10.00", reason: str | None = None) -> Envelope[Any]:
    data = GrantCredit(
        grant_id=f"g-{uuid.uuid4().hex[:8]}",
        kind="promotional",
        amount=Money.of(amount, "USD"),
        source="promo_code",
        reason=reason,
    )
    return Envelope.new(data, customer_id=customer)


async def applied_count(dsn: str, message_id: uuid.UUID) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval("select count(*) from probe_applied where message_id = $1", message_id)
        )
    finally:
        await conn.close()


def granted(messages: list[Envelope[Any]], cause: Envelope[Any]) -> list[Envelope[Any]]:
    return [m for m in messages if m.type == "CreditGranted" and m.causation_id == str(cause.id)]


@pytest_asyncio.fixture(loop_scope="session")
async def probe_settings(infra: Infra, topic_prefix: str, new_database: Any) -> ServiceSettings:
    return service_settings(infra, topic_prefix, await new_database(), http_port=free_port())


@pytest_asyncio.fixture(loop_scope="session")
async def running_probe(probe_settings: ServiceSettings) -> AsyncIterator[ServiceSettings]:
    from probe import build

    service = build(probe_settings)
    await service.start()
    yield probe_settings
    await service.stop()


async def test_duplicate_message_is_applied_once(running_probe: ServiceSettings, kafka: KafkaProbe) -> None:
    message = grant(f"cus-{uuid.uuid4().hex[:6]}")

    await kafka.send(topics.CREDITS_COMMANDS, message)
    await kafka.send(topics.CREDITS_COMMANDS, message)
    after = grant(message.customer_id or "")
    await kafka.send(topics.CREDITS_COMMANDS, after)  # same key, so handled after both copies
    await kafka.wait_for(topics.CREDITS_EVENTS, lambda ms: bool(granted(ms, after)))

    assert await applied_count(running_probe.database_url, message.id) == 1
    assert len(granted(await kafka.messages(topics.CREDITS_EVENTS), message)) == 1


async def test_poison_message_goes_to_dlq_and_next_is_processed(
    running_probe: ServiceSettings, kafka: KafkaProbe
) -> None:
    customer = f"cus-{uuid.uuid4().hex[:6]}"
    poison = b'{"id": "not json at all'
    good = grant(customer)

    await kafka.send(topics.CREDITS_COMMANDS, poison, key=customer)
    await kafka.send(topics.CREDITS_COMMANDS, good)
    await kafka.wait_for(topics.CREDITS_EVENTS, lambda ms: bool(granted(ms, good)))

    dead = await kafka.dead_letters(topics.CREDITS_COMMANDS, lambda d: d["raw"] == poison.decode())
    assert len(dead) == 1
    assert "Invalid JSON" in dead[0]["error"]
    assert await applied_count(running_probe.database_url, good.id) == 1


async def test_oversized_message_is_dead_lettered_truncated_and_the_relay_keeps_going(
    running_probe: ServiceSettings, kafka: KafkaProbe
) -> None:
    """Found by the fault run: 1 MB of "€" once made a 2 MB dead letter Kafka refused,
    and the relay retried it for ever with every later event stuck behind it."""
    customer = f"cus-{uuid.uuid4().hex[:6]}"
    marker = uuid.uuid4().hex
    huge = ('{"id": "' + marker + '", "reason": "' + "€" * 336_000 + '"}').encode()
    good = grant(customer)

    await kafka.send(topics.CREDITS_COMMANDS, huge, key=customer)
    await kafka.send(topics.CREDITS_COMMANDS, good)
    await kafka.wait_for(topics.CREDITS_EVENTS, lambda ms: bool(granted(ms, good)))

    [dead] = await kafka.dead_letters(
        topics.CREDITS_COMMANDS,
        lambda d: isinstance(d["raw"], dict) and marker in d["raw"].get("truncated", ""),
    )
    assert dead["raw"]["bytes"] == len(huge)
    assert "limit" in dead["error"]


async def test_float_amount_is_dead_lettered_with_the_field_named(
    running_probe: ServiceSettings, kafka: KafkaProbe
) -> None:
    message = grant(f"cus-{uuid.uuid4().hex[:6]}")
    raw = message.to_json().replace(b'"amount":"10.00"', b'"amount":10.0')

    await kafka.send(topics.CREDITS_COMMANDS, raw, key=message.customer_id)

    [record] = await kafka.dead_letters(topics.CREDITS_COMMANDS, lambda d: str(message.id) in d["raw"])
    assert "amount" in record["error"] and "not a float" in record["error"]
    assert await applied_count(running_probe.database_url, message.id) == 0


async def test_business_rule_violation_answers_command_rejected_and_keeps_nothing(
    running_probe: ServiceSettings, kafka: KafkaProbe
) -> None:
    message = grant(f"cus-{uuid.uuid4().hex[:6]}", amount="-5.00")

    await kafka.send(topics.CREDITS_COMMANDS, message)
    events = await kafka.wait_for(
        topics.CREDITS_EVENTS, lambda ms: any(m.causation_id == str(message.id) for m in ms)
    )

    [answer] = [m for m in events if m.causation_id == str(message.id)]
    assert answer.type == "CommandRejected"
    assert answer.data.code == "amount_not_positive"
    assert answer.correlation_id == message.correlation_id
    assert await applied_count(running_probe.database_url, message.id) == 0


async def test_persistent_handler_bug_dead_letters_the_message_and_consumer_keeps_going(
    running_probe: ServiceSettings, kafka: KafkaProbe
) -> None:
    customer = f"cus-{uuid.uuid4().hex[:6]}"
    buggy, good = grant(customer, reason="bug"), grant(customer)

    await kafka.send(topics.CREDITS_COMMANDS, buggy)
    await kafka.send(topics.CREDITS_COMMANDS, good)
    await kafka.wait_for(topics.CREDITS_EVENTS, lambda ms: bool(granted(ms, good)))

    dead = await kafka.dead_letters(topics.CREDITS_COMMANDS, lambda d: str(buggy.id) in d["raw"])
    assert len(dead) == 1 and "a handler bug" in dead[0]["error"]


async def test_usage_batch_is_one_transaction_and_duplicates_count_once(
    running_probe: ServiceSettings, kafka: KafkaProbe
) -> None:
    customer = f"cus-{uuid.uuid4().hex[:6]}"
    usages = [
        Envelope.new(UsageRecorded(service="voice", quantity=Decimal(1), unit="minute"), customer_id=customer)
        for _ in range(50)
    ]
    marker = Envelope.new(
        UsageRecorded(service="voice", quantity=Decimal(1), unit="minute"), customer_id=customer
    )
    for message in [*usages, *usages[:10], marker]:
        await kafka.send(topics.USAGE, message)

    conn = await asyncpg.connect(running_probe.database_url)
    try:
        for _ in range(300):  # the marker comes last on the same key: once it landed, all did
            if await conn.fetchval("select count(*) from probe_usage where message_id = $1", marker.id):
                break
            await asyncio.sleep(0.1)
        rows = await conn.fetch(
            "select message_id, batch_size from probe_usage where message_id = any($1)",
            [u.id for u in usages],
        )
    finally:
        await conn.close()
    assert len(rows) == 50
    assert len({r["message_id"] for r in rows}) == 50
    assert max(r["batch_size"] for r in rows) > 1  # consumed in batches, not one by one


async def _crash_then_restart(
    settings: ServiceSettings, fault: str, kafka: KafkaProbe, events_before_restart: int | None
) -> Envelope[Any]:
    env = service_env(settings, PYTHONPATH=PROBE_DIR)
    crashing = ServiceProcess("probe", {**env, "TALLY_FAULT": fault}, settings.http_port)
    crashing.start()
    try:
        await crashing.wait_healthy()
        message = grant(f"cus-{uuid.uuid4().hex[:6]}")
        await kafka.send(topics.CREDITS_COMMANDS, message)
        assert await crashing.wait_exit(timeout=60) == -signal.SIGKILL
    finally:
        crashing.stop(signal.SIGKILL)
    assert await applied_count(settings.database_url, message.id) == 1  # committed before the kill
    if events_before_restart is not None:
        assert len(granted(await kafka.messages(topics.CREDITS_EVENTS), message)) == events_before_restart
    restarted = ServiceProcess("probe", env, settings.http_port)
    restarted.start()
    try:
        await restarted.wait_healthy()
        await kafka.wait_for(topics.CREDITS_EVENTS, lambda ms: bool(granted(ms, message)), timeout=60)
        follow_up = grant(message.customer_id or "")
        await kafka.send(topics.CREDITS_COMMANDS, follow_up)
        await kafka.wait_for(topics.CREDITS_EVENTS, lambda ms: bool(granted(ms, follow_up)), timeout=60)
    finally:
        assert restarted.stop() == 0, restarted.tail()
    return message


async def test_sigkill_between_db_commit_and_offset_commit_redelivers_but_applies_once(
    isolated: tuple[ServiceSettings, KafkaProbe],
) -> None:
    settings, kafka = isolated
    message = await _crash_then_restart(settings, "after_commit", kafka, events_before_restart=None)

    assert await applied_count(settings.database_url, message.id) == 1
    assert len(granted(await kafka.messages(topics.CREDITS_EVENTS), message)) == 1


async def test_sigkill_before_relay_publishes_still_publishes_after_restart(
    isolated: tuple[ServiceSettings, KafkaProbe],
) -> None:
    settings, kafka = isolated
    message = await _crash_then_restart(settings, "relay_before_publish", kafka, events_before_restart=0)

    assert await applied_count(settings.database_url, message.id) == 1
    assert len(granted(await kafka.messages(topics.CREDITS_EVENTS), message)) == 1


async def test_claiming_ids_returns_exactly_the_ids_not_seen_before(new_database: Any) -> None:
    conn = await asyncpg.connect(await new_database())
    try:
        await apply_migrations(conn, "tally_messaging", "sql")
        day = dt.date(2026, 11, 3)
        await ensure_days(conn, [day])
        old, new, twice = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        body, other = b"a" * 32, b"b" * 32

        def claims(*wanted: tuple[uuid.UUID, bytes]) -> list[MessageClaim]:
            return [MessageClaim(message_id, day, digest) for message_id, digest in wanted]

        first = await claim_message_ids(conn, "c1", claims((old, body)))
        fresh = await claim_message_ids(
            conn, "c1", claims((old, body), (new, body), (twice, body), (twice, other))
        )
        again = await claim_message_ids(conn, "c1", claims((old, other), (new, body), (twice, body)))
        other_consumer = await claim_message_ids(conn, "c2", claims((old, other)))
        rows = await conn.fetchval("select count(*) from tally_message_ids where consumer = 'c1'")
    finally:
        await conn.close()
    assert first.fresh == {old}
    assert fresh.fresh == {new, twice}
    assert fresh.reused(old, body) is False  # sent again: same body
    assert again.fresh == set()
    assert again.reused(old, other) is True  # the same id with another body
    assert again.reused(twice, None) is False  # no digest to compare: a duplicate
    assert other_consumer.fresh == {old}
    assert rows == 3


async def test_a_service_given_several_bootstrap_servers_connects_and_handles(
    probe_settings: ServiceSettings, kafka: KafkaProbe
) -> None:
    """A cluster's `TALLY_KAFKA_BOOTSTRAP` lists its brokers; the service must read it as
    several servers (FastStream would take the string as one host named `a:1,b`)."""
    from probe import build

    servers = probe_settings.kafka_bootstrap
    settings = probe_settings.model_copy(update={"kafka_bootstrap": f"{servers}, {servers}"})
    service = build(settings)
    await asyncio.wait_for(service.start(), 60)
    try:
        message = grant(f"cus-{uuid.uuid4().hex[:6]}")
        await kafka.send(topics.CREDITS_COMMANDS, message)
        await kafka.wait_for(topics.CREDITS_EVENTS, lambda ms: bool(granted(ms, message)))
        assert await applied_count(settings.database_url, message.id) == 1
    finally:
        await service.stop()
