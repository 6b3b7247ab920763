"""Replaying one dead letter: the same choice as `tally replay` (tally_cli.replaying), for
the one dead letter an operator picked on the page, published the same way."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from console.topic_reading import DeadLetter, TopicReader
from tally_cli.replaying import Replay, choose_replays


class ReplayRefused(Exception):
    """The chosen dead letter is gone or cannot be re-published; the message says why."""


@dataclass(frozen=True)
class Replayed:
    replay: Replay
    letter: DeadLetter


async def replay_one(reader: TopicReader, topic: str, partition: int, offset: int) -> Replayed:
    """Re-publish the dead letter at `<topic>.dlq[partition]@offset` to the topic it came from.

    The inbox of the consumer drops it if it was handled since (same id, same bytes)."""
    letters = [d for d in await reader.dead_letters(topic) if (d.partition, d.offset) == (partition, offset)]
    if not letters:
        raise ReplayRefused(f"no dead letter at {topic}.dlq[{partition}]@{offset}")
    [letter] = letters
    replays, refused = choose_replays([letter.doc], reader.prefix + topic, None)
    if refused or not replays:
        raise ReplayRefused(refused[0] if refused else f"{letter.origin}: nothing to replay")
    [chosen] = replays
    producer = AIOKafkaProducer(enable_idempotence=True, **reader.kafka.options())
    await producer.start()
    try:
        await producer.send_and_wait(chosen.topic, chosen.value, key=chosen.key)
    finally:
        await producer.stop()
    return Replayed(chosen, letter)
