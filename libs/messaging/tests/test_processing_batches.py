"""A batch handler's persistent bug: the batch is split until the poison is alone, the
poison goes to the DLQ after its retries, and every other message of the batch lands."""

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import REGISTRY

from tally_contracts import Envelope, topics
from tally_contracts.usage import UsageRecorded
from tally_messaging import Delivery, Service, Transaction
from tally_messaging.processing import BUG_ATTEMPTS
from tally_messaging.settings import ServiceSettings
from tally_testing import KafkaProbe, settings_kafka_options

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
SERVICE = "batchprobe"


def usage(customer: str, unit: str = "minute") -> Envelope[Any]:
    return Envelope.new(UsageRecorded(service="voice", quantity=Decimal(1), unit=unit), customer_id=customer)


def build(settings: ServiceSettings, priced: set[str]) -> Service:
    """The probe's tables, and a batch handler with a bug (it fails on any batch holding
    unit "bug") that dead-letters usage in a unit not (yet) in `priced`, as invoicing does."""
    service = Service(
        SERVICE,
        events_topic=topics.CREDITS_EVENTS,
        default_http_port=8080,
        migrations_package="probe",
        settings=settings,
    )

    @service.handles_batch(topics.USAGE, UsageRecorded)
    async def record_usage(batch: list[Delivery[UsageRecorded]], tx: Transaction) -> None:
        if any(d.envelope.data.unit == "bug" for d in batch):
            raise RuntimeError("a batch handler bug")
        for d in batch:
            if d.envelope.data.unit not in priced:
                tx.dead_letter(d.record, f"no price for {d.envelope.data.unit}")
        await tx.conn.executemany(
            "insert into probe_usage (message_id, batch_size) values ($1, $2)",
            [(d.envelope.id, len(batch)) for d in batch if d.envelope.data.unit in priced],
        )

    return service


async def wait_for_row(dsn: str, message_id: uuid.UUID) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(300):
            if await conn.fetchval("select count(*) from probe_usage where message_id = $1", message_id):
                return
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    raise AssertionError(f"usage {message_id} never landed")


def failed_attempts() -> float:
    labels = {"service": SERVICE, "topic": topics.USAGE, "type": "UsageRecorded"}
    return REGISTRY.get_sample_value("tally_messages_failed_total", labels) or 0.0


async def test_a_poison_usage_is_isolated_from_its_batch_and_dead_lettered_after_its_retries(
    isolated: tuple[ServiceSettings, KafkaProbe],
) -> None:
    settings, kafka = isolated
    customer = f"cus-{uuid.uuid4().hex[:6]}"
    good = [usage(customer) for _ in range(30)]
    poison, marker = usage(customer, unit="bug"), usage(customer)
    for message in [*good[:15], poison, *good[15:]]:
        await kafka.send(topics.USAGE, message)
    failed_before = failed_attempts()
    service = build(settings, {"minute"})

    await service.start()  # one fetch holds the whole batch
    try:
        [dead] = await kafka.dead_letters(topics.USAGE, lambda d: str(poison.id) in str(d["raw"]), timeout=60)
        await kafka.send(topics.USAGE, marker)
        conn = await asyncpg.connect(settings.database_url)
        try:
            await wait_for_row(settings.database_url, marker.id)  # last on the key: then all landed
            applied = await conn.fetch(
                "select message_id from probe_usage where message_id = any($1)",
                [m.id for m in [*good, poison]],
            )
        finally:
            await conn.close()
    finally:
        await service.stop()

    assert sorted(str(r["message_id"]) for r in applied) == sorted(str(m.id) for m in good)
    assert dead["error"] == "batch handler failed repeatedly"
    assert dead["consumer"] == f"{SERVICE}:{topics.USAGE}"
    assert failed_attempts() - failed_before >= BUG_ATTEMPTS  # each attempt counted


async def test_a_usage_its_handler_dead_lettered_is_applied_once_when_replayed_after_the_fix(
    isolated: tuple[ServiceSettings, KafkaProbe],
) -> None:
    """Found by the CLI's replay test: the inbox kept the dead-lettered message's id, so the
    replayed copy (same id, same body) was dropped as a duplicate."""
    settings, kafka = isolated
    customer = f"cus-{uuid.uuid4().hex[:6]}"
    priced = {"minute"}
    unpriced, marker = usage(customer, unit="sms"), usage(customer)
    service = build(settings, priced)
    await service.start()
    try:
        await kafka.send(topics.USAGE, unpriced)
        [dead] = await kafka.dead_letters(topics.USAGE, lambda d: str(unpriced.id) in str(d["raw"]))
        priced.add("sms")  # the cause is fixed

        for _ in range(2):  # what `tally replay` sends, replayed twice by mistake
            await kafka.send(topics.USAGE, dead["raw"].encode(), key=dead["key"])
        await kafka.send(topics.USAGE, marker)
        await wait_for_row(settings.database_url, marker.id)
        applied = await usage_rows(settings.database_url, unpriced.id)
    finally:
        await service.stop()

    assert dead["error"] == "no price for sms"
    assert applied == 1


async def test_a_dead_lettered_offset_delivered_again_stays_a_duplicate(
    isolated: tuple[ServiceSettings, KafkaProbe],
) -> None:
    """A crash between the commit and the offset commit delivers the same offset again:
    it must not be dead-lettered a second time, nor applied (it was answered already)."""
    settings, kafka = isolated
    customer = f"cus-{uuid.uuid4().hex[:6]}"
    priced = {"minute"}
    unpriced, marker = usage(customer, unit="sms"), usage(customer)
    service = build(settings, priced)
    await service.start()
    try:
        await kafka.send(topics.USAGE, unpriced)
        [dead] = await kafka.dead_letters(topics.USAGE, lambda d: str(unpriced.id) in str(d["raw"]))
    finally:
        await service.stop()
    await rewind_group(settings, topics.USAGE, dead["partition"], dead["offset"])
    priced.add("sms")  # a second handling would now apply it: it must not happen
    service = build(settings, priced)
    await service.start()
    try:
        await kafka.send(topics.USAGE, marker)
        await wait_for_row(settings.database_url, marker.id)
        applied = await usage_rows(settings.database_url, unpriced.id)
        dead_again = await kafka.dead_letters(topics.USAGE, lambda d: str(unpriced.id) in str(d["raw"]))
    finally:
        await service.stop()

    assert applied == 0
    assert [d["offset"] for d in dead_again] == [dead["offset"]]


async def usage_rows(dsn: str, message_id: uuid.UUID) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("select count(*) from probe_usage where message_id = $1", message_id))
    finally:
        await conn.close()


async def rewind_group(settings: ServiceSettings, topic: str, partition: int, offset: int) -> None:
    """Commit `offset` for the (stopped) service's consumer group: the record there comes again."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"{settings.group_prefix}{SERVICE}.{topic}",
        enable_auto_commit=False,
        **settings_kafka_options(settings),
    )
    await consumer.start()
    try:
        tp = TopicPartition(settings.topic(topic), partition)
        consumer.assign([tp])
        await consumer.commit({tp: offset})
    finally:
        await consumer.stop()
