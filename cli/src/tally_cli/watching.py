"""Reading topics: the outcome of a command (by correlation id) and live tails."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from tally_cli.connection import KafkaAccess
from tally_contracts import Envelope, parse_message
from tally_contracts.topics import ALL_TOPICS, dlq


class TopicsMissing(RuntimeError):
    """None of the topics asked for exist: the stack was never started, or the name is wrong."""


@dataclass
class Seen:
    topic: str
    envelope: Envelope[Any] | None
    raw: dict[str, Any] | None  # a dead letter


async def _assigned(kafka: KafkaAccess, topics: list[str], from_beginning: bool) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **kafka.options())
    await consumer.start()
    # A consumer without a subscription has no metadata yet: ask the cluster directly.
    cluster = await consumer._client.fetch_all_metadata()
    tps = [TopicPartition(t, p) for t in topics for p in sorted(cluster.partitions_for_topic(t) or ())]
    if not tps:
        await consumer.stop()
        raise TopicsMissing(f"none of the topics {topics} exist on {kafka.bootstrap}; start the stack first")
    consumer.assign(tps)
    if from_beginning:
        await consumer.seek_to_beginning(*tps)
    else:
        await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)  # resolve now, before anything is sent
    return consumer


class OutcomeWatcher:
    """Collects every message correlated with one command across the events topics and DLQs."""

    def __init__(self, kafka: KafkaAccess, prefix: str) -> None:
        self.kafka = kafka
        self.prefix = prefix
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> OutcomeWatcher:
        names = [t for t in ALL_TOPICS if t.endswith(".events")] + [dlq(t) for t in ALL_TOPICS]
        self._consumer = await _assigned(self.kafka, [self.prefix + n for n in names], False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def collect(self, command: Envelope[Any], timeout: float, settle: float) -> list[Seen]:
        """Messages caused by `command`'s flow; stops `settle` s after the last one, or at `timeout`."""
        assert self._consumer is not None
        correlation = command.correlation_id or str(command.id)
        seen: list[Seen] = []
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline and (last is None or time.monotonic() - last < settle):
            batches = await self._consumer.getmany(timeout_ms=100)
            for tp, records in batches.items():
                topic = tp.topic.removeprefix(self.prefix)
                for r in records:
                    item = correlated(topic, r.value or b"", correlation, str(command.id))
                    if item is not None:
                        seen.append(item)
                        last = time.monotonic()
        return seen


def correlated(topic: str, value: bytes, correlation: str, command_id: str) -> Seen | None:
    """The record as part of a command's outcome: an event with its correlation id, or a
    dead letter whose raw value holds the command's id; None when it is neither."""
    if topic.endswith(".dlq"):
        dead = readable(value)
        return Seen(topic, None, dead) if command_id in str(dead.get("raw")) else None
    try:
        envelope = parse_message(value)
    except ValueError:
        return None
    return Seen(topic, envelope, None) if envelope.correlation_id == correlation else None


def readable(value: bytes) -> dict[str, Any]:
    """A record's value as a JSON object; a value that is not one is kept under `raw`."""
    try:
        doc = json.loads(value)
    except ValueError:  # not JSON, or not UTF-8
        return {"raw": value.decode(errors="replace")}
    return doc if isinstance(doc, dict) else {"raw": doc}


def selected(doc: dict[str, Any], customer: str | None, type_name: str | None) -> bool:
    """Whether `tally tail --customer/--type` shows this message (a dead letter has no type)."""
    if customer is not None and doc.get("customer_id") != customer:
        return False
    return type_name is None or doc.get("type", "DeadLetter") == type_name


async def tail(
    kafka: KafkaAccess, topic: str, from_beginning: bool
) -> AsyncGenerator[tuple[int, int, bytes], None]:
    consumer = await _assigned(kafka, [topic], from_beginning)
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in sorted(batches.items(), key=lambda kv: kv[0].partition):
                for r in records:
                    yield tp.partition, r.offset, r.value or b""
    finally:
        await consumer.stop()


async def sleep_forever() -> None:
    await asyncio.Event().wait()


def _as_dead_letter(value: bytes) -> dict[str, Any]:
    """A DLQ record; one that is not a JSON object has no `raw`, so it is never replayed."""
    try:
        doc = json.loads(value)
    except ValueError:
        doc = None
    return doc if isinstance(doc, dict) else {"error": "not a dead letter: the record is not a JSON object"}


async def dead_letters(kafka: KafkaAccess, topic: str) -> list[dict[str, Any]]:
    """Every dead letter on `topic`'s DLQ now (read from the oldest to the current end)."""
    consumer = await _assigned(kafka, [dlq(topic)], from_beginning=True)
    try:
        assigned = list(consumer.assignment())
        ends = await consumer.end_offsets(assigned)
        found: list[dict[str, Any]] = []
        while [tp for tp in assigned if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(_as_dead_letter(r.value or b"") for r in records)
        return found
    finally:
        await consumer.stop()
