"""Choosing which dead letters `tally replay` re-publishes, and where each one goes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Replay:
    """A dead letter's original record, to be published again into the topic it came from."""

    topic: str
    key: bytes | None
    value: bytes
    origin: str
    """Where it was read from the first time: `topic[partition]@offset`."""
    error: str


def choose_replays(
    dead_letters: list[dict[str, Any]], source_topic: str, contains: str | None
) -> tuple[list[Replay], list[str]]:
    """The replays asked for, and why the other chosen dead letters cannot be replayed.

    A dead letter is chosen when its raw value contains `contains` (all when None). It goes
    back to the topic recorded in it (`source_topic`, whose DLQ it was read from, when the
    record does not say). A raw value that is not text (binary, or truncated because it
    was too big) cannot be re-published as it was.
    """
    replays: list[Replay] = []
    refused: list[str] = []
    for letter in dead_letters:
        raw = letter.get("raw")
        if contains is not None and contains not in str(raw):
            continue
        topic = letter.get("topic")
        origin = f"{topic or source_topic}[{letter.get('partition')}]@{letter.get('offset')}"
        if not isinstance(raw, str):
            refused.append(f"{origin}: the value is not text and cannot be replayed")
            continue
        key = letter.get("key")
        replays.append(
            Replay(
                topic=topic if isinstance(topic, str) and topic else source_topic,
                key=key.encode() if isinstance(key, str) else None,
                value=raw.encode(),
                origin=origin,
                error=str(letter.get("error") or ""),
            )
        )
    return replays, refused
