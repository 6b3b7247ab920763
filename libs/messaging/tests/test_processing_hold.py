"""The consumer's last safety net: when processing a batch fails in a way no inner path
answers (a bug in the runtime itself), the batch is held and rewound, never acknowledged.

Acknowledging it, or letting FastStream swallow the error, would let the next batch's
commit move the offset past messages that were neither applied, rejected nor
dead-lettered (issue 13). The bug is injected into the processor here, as a runtime bug
would be; Kafka and PostgreSQL are real."""

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

from tally_contracts import Envelope, Money, topics
from tally_contracts.credits import GrantCredit
from tally_messaging import Service
from tally_messaging.processing import RecordProcessor
from tally_messaging.settings import ServiceSettings
from tally_messaging.transaction import RawRecord
from tally_testing import KafkaProbe, settings_kafka_options

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def grant(customer: str) -> Envelope[Any]:
    data = GrantCredit(
        grant_id=f"g-{uuid.uuid4().hex[:8]}",
        kind="promotional",
        amount=Money.of("5.00", "USD"),
        source="promo_code",
    )
    return Envelope.new(data, customer_id=customer)


def granted(messages: list[Envelope[Any]], cause: Envelope[Any]) -> int:
    return sum(1 for m in messages if m.type == "CreditGranted" and m.causation_id == str(cause.id))


async def health_when(settings: ServiceSettings, consumers_ok: bool, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            response = await client.get(f"http://127.0.0.1:{settings.http_port}/health")
            body: dict[str, Any] = response.json()
            if body.get("checks", {}).get("consumers") is consumers_ok:
                return {**body, "http": response.status_code}
            if time.monotonic() > deadline:
                raise AssertionError(f"health never showed consumers={consumers_ok}: {body}")
            await asyncio.sleep(0.2)


async def test_a_batch_whose_processing_fails_is_held_and_comes_again_until_it_passes(
    isolated: tuple[ServiceSettings, KafkaProbe], monkeypatch: pytest.MonkeyPatch
) -> None:
    from probe import build

    settings, kafka = isolated
    customer = f"cus-{uuid.uuid4().hex[:6]}"
    poison, behind = grant(customer), grant(customer)
    broken = True
    process = RecordProcessor.process

    async def process_with_a_bug(self: RecordProcessor, records: list[RawRecord]) -> None:
        if broken and any(str(poison.id).encode() in r.value for r in records):
            raise RuntimeError("a bug in the runtime")
        await process(self, records)

    monkeypatch.setattr(RecordProcessor, "process", process_with_a_bug)
    service: Service = build(settings)
    await service.start()
    try:
        await kafka.send(topics.CREDITS_COMMANDS, poison)
        await kafka.send(topics.CREDITS_COMMANDS, behind)  # same key: behind the failing batch
        stalled = await health_when(settings, consumers_ok=False)
        reason = stalled["stalled"][topics.CREDITS_COMMANDS]
        partition, offset = (int(n) for n in reason.split(":")[0].split("[")[1].split("]@"))
        committed = await committed_offset(settings, partition)

        broken = False  # the bug is fixed: the held batch comes again and passes
        seen = await kafka.wait_for(topics.CREDITS_EVENTS, lambda ms: granted(ms, behind) == 1, timeout=90)
        resumed = await health_when(settings, consumers_ok=True)
    finally:
        await service.stop()

    assert stalled["http"] == 503
    assert "a bug in the runtime" in reason
    assert committed is None or committed <= offset  # never past the held batch
    assert granted(seen, poison) == 1
    assert resumed["http"] == 200 and "stalled" not in resumed


async def committed_offset(settings: ServiceSettings, partition: int) -> int | None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"{settings.group_prefix}probe.{topics.CREDITS_COMMANDS}",
        enable_auto_commit=False,
        **settings_kafka_options(settings),
    )
    await consumer.start()
    try:
        committed: int | None = await consumer.committed(
            TopicPartition(settings.topic(topics.CREDITS_COMMANDS), partition)
        )
        return committed
    finally:
        await consumer.stop()
