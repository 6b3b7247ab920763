"""Reading Tally's topics for the pages: a customer's messages, one correlation id's flow,
the customers upserted, rule sets changed, dead letters. Each read runs from the oldest
record to the end offsets of the moment and stops (no consumer group, nothing committed).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from tally_cli.connection import KafkaAccess
from tally_contracts import topics
from tally_contracts.topics import dlq

COMMAND_TOPICS = (
    topics.INVOICING_COMMANDS,
    topics.RULES_COMMANDS,
    topics.CREDITS_COMMANDS,
    topics.PAYMENTS_COMMANDS,
)
EVENT_TOPICS = (topics.INVOICING_EVENTS, topics.RULES_EVENTS, topics.CREDITS_EVENTS, topics.PAYMENTS_EVENTS)
FLOW_TOPICS = COMMAND_TOPICS + EVENT_TOPICS
"""Where a correlation id's messages are (usage has its own and can be huge: left out)."""
SOURCE_TOPICS = (topics.USAGE, *COMMAND_TOPICS, *EVENT_TOPICS)
"""Topics whose dead letters the console shows."""


@dataclass(frozen=True)
class Message:
    """An envelope as read from a topic, with where it was."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    id: str
    type: str
    customer_id: str | None
    correlation_id: str | None
    causation_id: str | None
    occurred_at: str | None
    data: dict[str, Any]

    @property
    def position(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True)
class DeadLetter:
    """A record of `<topic>.dlq`: where it sits there, and the dead letter it holds."""

    partition: int
    offset: int
    timestamp: int
    doc: dict[str, Any]
    prefix: str = ""

    @property
    def origin(self) -> str:
        """Where the original record was: `topic[partition]@offset` (topic without the prefix)."""
        topic = str(self.doc.get("topic")).removeprefix(self.prefix)
        return f"{topic}[{self.doc.get('partition')}]@{self.doc.get('offset')}"

    @property
    def replayable(self) -> bool:
        """Only a value kept as text can be re-published as it was (tally_cli.replaying)."""
        return isinstance(self.doc.get("raw"), str)

    @property
    def raw_text(self) -> str:
        raw = self.doc.get("raw")
        return raw if isinstance(raw, str) else json.dumps(raw, indent=2)


@dataclass
class Scan:
    """What one read found, and whether it stopped at the scan limit before the end."""

    records: list[ConsumerRecord[bytes, bytes]]
    truncated: bool = False


class TopicReader:
    """Reads the session's topics (`prefix` + name) as the console's Kafka principal."""

    def __init__(self, kafka: KafkaAccess, prefix: str, limit: int, seconds: float = 20.0) -> None:
        self.kafka, self.prefix, self.limit, self.seconds = kafka, prefix, limit, seconds

    async def scan(self, names: Iterable[str], keep: Callable[[ConsumerRecord[bytes, bytes]], bool]) -> Scan:
        """Every record of `names` that `keep` accepts, oldest first per partition; stops
        early (`truncated`) after `limit` records or `seconds`, so a page always answers."""
        consumer = AIOKafkaConsumer(enable_auto_commit=False, **self.kafka.options())
        await consumer.start()
        try:
            cluster = await consumer._client.fetch_all_metadata()
            tps = [
                TopicPartition(self.prefix + name, p)
                for name in names
                for p in sorted(cluster.partitions_for_topic(self.prefix + name) or ())
            ]
            if not tps:
                return Scan([])
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            found = Scan([])
            read, deadline = 0, time.monotonic() + self.seconds
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for tp, records in (await consumer.getmany(timeout_ms=300, max_records=2000)).items():
                    for record in records:
                        if record.offset >= ends[tp]:
                            continue
                        read += 1
                        if keep(record):
                            found.records.append(record)
                if read >= self.limit or time.monotonic() > deadline:
                    found.truncated = True
                    break
            return found
        finally:
            await consumer.stop()

    def message(self, record: ConsumerRecord[bytes, bytes]) -> Message | None:
        """The record as an envelope; None when it is not one (the DLQ is where those go)."""
        try:
            doc = json.loads(record.value or b"")
        except ValueError:
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
            return None
        data = doc.get("data")
        return Message(
            topic=record.topic.removeprefix(self.prefix),
            partition=record.partition,
            offset=record.offset,
            timestamp=record.timestamp,
            id=str(doc.get("id")),
            type=doc["type"],
            customer_id=doc.get("customer_id"),
            correlation_id=doc.get("correlation_id"),
            causation_id=doc.get("causation_id"),
            occurred_at=doc.get("occurred_at"),
            data=data if isinstance(data, dict) else {},
        )

    def messages(self, scan: Scan) -> list[Message]:
        found = [m for m in map(self.message, scan.records) if m is not None]
        return sorted(found, key=lambda m: (m.timestamp, m.topic, m.partition, m.offset))

    async def customer_messages(self, customer_id: str) -> tuple[list[Message], bool]:
        """Every command and event keyed by the customer, in the order they were written."""
        key = customer_id.encode()
        scan = await self.scan(FLOW_TOPICS, lambda r: r.key == key)
        return self.messages(scan), scan.truncated

    async def flow(self, correlation_id: str) -> tuple[list[Message], bool]:
        """Every command and event of one correlation id, across the four services."""
        needle = correlation_id.encode()
        scan = await self.scan(FLOW_TOPICS, lambda r: needle in (r.value or b""))
        found = [m for m in self.messages(scan) if m.correlation_id == correlation_id]
        return found, scan.truncated

    async def of_type(self, topic: str, type_name: str) -> list[Message]:
        """The messages of one type on `topic`, picked by their `type` header before parsing."""
        header = type_name.encode()
        scan = await self.scan([topic], lambda r: ("type", header) in (r.headers or ()))
        return [m for m in self.messages(scan) if m.type == type_name]

    async def dead_letters(self, topic: str) -> list[DeadLetter]:
        scan = await self.scan([dlq(topic)], lambda r: True)
        letters = [
            DeadLetter(r.partition, r.offset, r.timestamp, _dead_letter_doc(r.value or b""), self.prefix)
            for r in scan.records
        ]
        return sorted(letters, key=lambda d: (d.timestamp, d.partition, d.offset))

    async def dead_letter_counts(self) -> dict[str, int]:
        """Records on each source topic's DLQ now (end − beginning offsets: nothing is read)."""
        consumer = AIOKafkaConsumer(enable_auto_commit=False, **self.kafka.options())
        await consumer.start()
        try:
            cluster = await consumer._client.fetch_all_metadata()
            counts: dict[str, int] = {}
            for name in SOURCE_TOPICS:
                full = self.prefix + dlq(name)
                tps = [TopicPartition(full, p) for p in sorted(cluster.partitions_for_topic(full) or ())]
                if not tps:
                    counts[name] = 0
                    continue
                begins, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
                counts[name] = sum(ends[tp] - begins[tp] for tp in tps)
            return counts
        finally:
            await consumer.stop()


def _dead_letter_doc(value: bytes) -> dict[str, Any]:
    """A DLQ record; one that is not a JSON object has no `raw`, so it is never replayed."""
    try:
        doc = json.loads(value)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        return doc
    return {
        "error": "not a dead letter: the record is not a JSON object",
        "shown": value[:2000].decode(errors="replace"),
    }
