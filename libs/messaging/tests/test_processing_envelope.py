"""Envelope checks: what a producer got wrong is dead-lettered with its reason and counted.

Found by the hostile probe of issue 13: the `type` header was never compared with the
body, the Kafka key never with the customer (so a message on another key broke
per-customer order), and a message id reused with another body was dropped as a
duplicate without a trace.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from tally_contracts import Envelope, Money, topics
from tally_contracts.credits import GrantCredit
from tally_contracts.usage import UsageRecorded
from tally_messaging.settings import ServiceSettings
from tally_testing import Infra, KafkaProbe, free_port, service_settings

MARKER_ROWS = "select count(*) from probe_usage where message_id = $1"
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def grant(customer: str, amount: str = "10.00", message_id: uuid.UUID | None = None) -> Envelope[Any]:
    data = GrantCredit(
        grant_id=f"g-{uuid.uuid4().hex[:8]}",
        kind="promotional",
        amount=Money.of(amount, "USD"),
        source="promo_code",
    )
    return Envelope.new(data, customer_id=customer, message_id=message_id)


def usage(customer: str, quantity: int = 1, message_id: uuid.UUID | None = None) -> Envelope[Any]:
    data = UsageRecorded(service="voice", quantity=Decimal(quantity), unit="minute")
    return Envelope.new(data, customer_id=customer, message_id=message_id)


def granted(messages: list[Envelope[Any]], cause: Envelope[Any]) -> list[Envelope[Any]]:
    return [m for m in messages if m.type == "CreditGranted" and m.causation_id == str(cause.id)]


def refused(check: str, topic: str) -> float:
    labels = {"service": "probe", "topic": topic, "check": check}
    return REGISTRY.get_sample_value("tally_envelope_refused_total", labels) or 0.0


async def fetch_count(dsn: str, sql: str, *args: Any) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


@pytest_asyncio.fixture(loop_scope="session")
async def running_probe(infra: Infra, topic_prefix: str, new_database: Any) -> AsyncIterator[ServiceSettings]:
    from probe import build

    settings = service_settings(infra, topic_prefix, await new_database(), http_port=free_port())
    service = build(settings)
    await service.start()
    yield settings
    await service.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def producer(infra: Infra) -> AsyncIterator[AIOKafkaProducer]:
    """Sends records exactly as given (key and headers), as a faulty upstream would."""
    sender = AIOKafkaProducer(
        bootstrap_servers=infra.kafka_bootstrap, enable_idempotence=True, **infra.kafka_options()
    )
    await sender.start()
    yield sender
    await sender.stop()


async def test_a_type_header_naming_another_type_is_dead_lettered(
    running_probe: ServiceSettings, kafka: KafkaProbe, producer: AIOKafkaProducer, topic_prefix: str
) -> None:
    customer = f"cus-{uuid.uuid4().hex[:6]}"
    mislabelled, marker = grant(customer), grant(customer)
    before = refused("type_header", topics.CREDITS_COMMANDS)

    await producer.send_and_wait(
        topic_prefix + topics.CREDITS_COMMANDS,
        mislabelled.to_json(),
        key=customer.encode(),
        headers=[("type", b"UsageRecorded")],
    )
    await kafka.send(topics.CREDITS_COMMANDS, marker)  # same key: handled after the mislabelled one
    events = await kafka.wait_for(topics.CREDITS_EVENTS, lambda ms: bool(granted(ms, marker)))

    [dead] = await kafka.dead_letters(topics.CREDITS_COMMANDS, lambda d: str(mislabelled.id) in str(d["raw"]))
    assert "type header 'UsageRecorded' does not match the body's type 'GrantCredit'" in dead["error"]
    assert granted(events, mislabelled) == []
    assert refused("type_header", topics.CREDITS_COMMANDS) == before + 1


async def test_a_message_on_another_customers_key_is_dead_lettered(
    running_probe: ServiceSettings, kafka: KafkaProbe
) -> None:
    customer, other = f"cus-{uuid.uuid4().hex[:6]}", f"cus-{uuid.uuid4().hex[:6]}"
    misrouted, marker = grant(customer), grant(other)
    before = refused("key", topics.CREDITS_COMMANDS)

    await kafka.send(topics.CREDITS_COMMANDS, misrouted, key=other)
    await kafka.send(topics.CREDITS_COMMANDS, marker)  # the same key, so the same partition, after it
    events = await kafka.wait_for(topics.CREDITS_EVENTS, lambda ms: bool(granted(ms, marker)))

    [dead] = await kafka.dead_letters(topics.CREDITS_COMMANDS, lambda d: str(misrouted.id) in str(d["raw"]))
    assert f"Kafka key '{other}' is not the message's key '{customer}'" in dead["error"]
    assert granted(events, misrouted) == []
    assert (
        await fetch_count(
            running_probe.database_url,
            "select count(*) from probe_applied where message_id = $1",
            misrouted.id,
        )
        == 0
    )
    assert refused("key", topics.CREDITS_COMMANDS) == before + 1


async def test_an_id_reused_with_another_body_is_dead_lettered_and_a_true_duplicate_stays_silent(
    running_probe: ServiceSettings, kafka: KafkaProbe
) -> None:
    customer = f"cus-{uuid.uuid4().hex[:6]}"
    first = grant(customer, "10.00")
    reused = grant(customer, "99.00", message_id=first.id)
    marker = grant(customer)
    before = refused("id_reused", topics.CREDITS_COMMANDS)

    await kafka.send(topics.CREDITS_COMMANDS, first)
    await kafka.send(topics.CREDITS_COMMANDS, reused)
    await kafka.send(topics.CREDITS_COMMANDS, first)  # redelivered as is: a duplicate
    await kafka.send(topics.CREDITS_COMMANDS, marker)
    events = await kafka.wait_for(topics.CREDITS_EVENTS, lambda ms: bool(granted(ms, marker)))

    dead = await kafka.dead_letters(topics.CREDITS_COMMANDS, lambda d: str(first.id) in str(d["raw"]))
    assert len(dead) == 1
    assert f"message id {first.id} reused with a different body" in dead[0]["error"]
    assert '"99.00"' in dead[0]["raw"]
    assert len(granted(events, first)) == 1
    assert (
        await fetch_count(
            running_probe.database_url, "select count(*) from probe_applied where message_id = $1", first.id
        )
        == 1
    )
    assert refused("id_reused", topics.CREDITS_COMMANDS) == before + 1


async def test_a_reused_id_in_a_usage_batch_is_dead_lettered_and_the_batch_lands(
    running_probe: ServiceSettings, kafka: KafkaProbe
) -> None:
    customer = f"cus-{uuid.uuid4().hex[:6]}"
    usages = [usage(customer) for _ in range(20)]
    reused = usage(customer, quantity=7, message_id=usages[3].id)
    marker = usage(customer)

    for message in [*usages[:10], reused, *usages[10:], usages[3], marker]:
        await kafka.send(topics.USAGE, message)
    [dead] = await kafka.dead_letters(topics.USAGE, lambda d: str(usages[3].id) in str(d["raw"]))
    for _ in range(300):  # the marker comes last on the same key: once it landed, all did
        if await fetch_count(running_probe.database_url, MARKER_ROWS, marker.id):
            break
        await asyncio.sleep(0.1)

    rows = await fetch_count(
        running_probe.database_url,
        "select count(*) from probe_usage where message_id = any($1)",
        [u.id for u in [*usages, marker]],
    )
    assert rows == 21  # each usage once, the marker too; the reused copy not
    assert "reused with a different body" in dead["error"]
    assert '"quantity":"7"' in dead["raw"]


async def test_a_type_that_does_not_belong_on_the_topic_is_dead_lettered(
    running_probe: ServiceSettings, kafka: KafkaProbe
) -> None:
    stray = usage(f"cus-{uuid.uuid4().hex[:6]}")

    await kafka.send(topics.CREDITS_COMMANDS, stray)

    [dead] = await kafka.dead_letters(topics.CREDITS_COMMANDS, lambda d: str(stray.id) in str(d["raw"]))
    assert "message type UsageRecorded does not belong on topic credits.commands" in dead["error"]
