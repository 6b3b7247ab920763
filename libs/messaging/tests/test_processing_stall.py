"""When an outcome cannot be recorded, the consumer stops moving instead of committing past.

Found by the hostile probe of issue 13 (D1): the dead-letter insert failed with an
error that is not the infrastructure's, escaped the handler, FastStream dropped it,
and the next batch's acknowledgement committed past the message: it was lost.
Here a trigger makes PostgreSQL refuse every dead letter, as it once refused NUL.
"""

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import REGISTRY

from tally_contracts import Envelope, Money, topics
from tally_contracts.credits import GrantCredit
from tally_messaging import Service
from tally_messaging.settings import ServiceSettings
from tally_testing import KafkaProbe, settings_kafka_options

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

REFUSE_DEAD_LETTERS = """
create function refuse_dead_letters() returns trigger language plpgsql as $$
begin
    if new.type = 'DeadLetter' then
        raise exception 'dead letters refused by the test';
    end if;
    return new;
end $$;
create trigger refuse_dead_letters before insert on tally_outbox
    for each row execute function refuse_dead_letters();
"""


def grant(customer: str) -> Envelope[Any]:
    data = GrantCredit(
        grant_id=f"g-{uuid.uuid4().hex[:8]}",
        kind="promotional",
        amount=Money.of("5.00", "USD"),
        source="promo_code",
    )
    return Envelope.new(data, customer_id=customer)


def granted(messages: list[Envelope[Any]], cause: Envelope[Any]) -> bool:
    return any(m.type == "CreditGranted" and m.causation_id == str(cause.id) for m in messages)


def stalled_gauge() -> float | None:
    return REGISTRY.get_sample_value(
        "tally_consumer_stalled", {"service": "probe", "topic": "credits.commands"}
    )


async def health(settings: ServiceSettings) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{settings.http_port}/health")
    return response.status_code, response.json()


async def wait_until_health(
    settings: ServiceSettings, consumers_ok: bool, timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = await health(settings)
        if body.get("checks", {}).get("consumers") is consumers_ok:
            return {**body, "http": status}
        if time.monotonic() > deadline:
            raise AssertionError(f"health never showed consumers={consumers_ok}: {status} {body}")
        await asyncio.sleep(0.2)


async def committed_offsets(settings: ServiceSettings, topic: str) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"{settings.group_prefix}probe.{topic}",
        enable_auto_commit=False,
        **settings_kafka_options(settings),
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(settings.topic(topic)) or set()
        return {p: await consumer.committed(TopicPartition(settings.topic(topic), p)) for p in partitions}
    finally:
        await consumer.stop()


async def test_a_dead_letter_that_cannot_be_written_holds_the_offset_and_says_so(
    isolated: tuple[ServiceSettings, KafkaProbe],
) -> None:
    from probe import build

    settings, kafka = isolated
    service: Service = build(settings)
    await service.start()
    try:
        customer = f"cus-{uuid.uuid4().hex[:6]}"
        poison_marker, after = uuid.uuid4().hex, grant(customer)
        conn = await asyncpg.connect(settings.database_url)
        try:
            await conn.execute(REFUSE_DEAD_LETTERS)
        finally:
            await conn.close()

        await kafka.send(topics.CREDITS_COMMANDS, f"not json {poison_marker}".encode(), key=customer)
        await kafka.send(topics.CREDITS_COMMANDS, after)  # same key: behind the poison
        stalled = await wait_until_health(settings, consumers_ok=False)
        held = await committed_offsets(settings, topics.CREDITS_COMMANDS)
        gauge_while_stalled = stalled_gauge()

        conn = await asyncpg.connect(settings.database_url)
        try:
            await conn.execute("drop trigger refuse_dead_letters on tally_outbox")
        finally:
            await conn.close()
        await kafka.wait_for(topics.CREDITS_EVENTS, lambda ms: granted(ms, after), timeout=90)
        [dead] = await kafka.dead_letters(topics.CREDITS_COMMANDS, lambda d: poison_marker in str(d["raw"]))
        resumed = await wait_until_health(settings, consumers_ok=True)
    finally:
        await service.stop()

    assert stalled["http"] == 503
    reason = stalled["stalled"][topics.CREDITS_COMMANDS]
    assert f"[{dead['partition']}]@{dead['offset']}" in reason  # names the held offset
    assert "dead letters refused by the test" in reason
    assert "stalled" not in resumed
    assert gauge_while_stalled == 1
    committed = held.get(dead["partition"])
    assert committed is None or committed <= dead["offset"]  # never past the poison
    assert resumed["http"] == 200
    assert stalled_gauge() == 0
