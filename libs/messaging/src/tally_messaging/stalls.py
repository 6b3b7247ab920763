"""A consumer that cannot record a message's outcome holds its offset, and says so.

Recording an outcome (applied, rejected, dead-lettered) can fail for a reason that is
neither the infrastructure's nor the message's — a constraint, a trigger, a bug in the
runtime. Then there is nothing left to answer with, and committing past the message
would lose it; so the consumer stops moving and retries with backoff until the record
is written or the service stops. Meanwhile the stall is visible three ways: the gauge
`tally_consumer_stalled`, an error log line naming topic, partition, offset and error,
and /health (503, `consumers` false).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from tally_messaging.metrics import CONSUMER_STALLED
from tally_messaging.transaction import RawRecord, describe_exception

log = structlog.get_logger()

MAX_STALL_PAUSE_SECONDS = 30.0
"""Longest wait between two attempts to record an outcome while the consumer is stalled."""


class Stopping(Exception):
    """The service is shutting down; the batch is left uncommitted for redelivery."""


@dataclass
class StallWatch:
    """Whether one route's consumer is holding its offset, and why."""

    service: str
    topic: str
    reason: str | None = None

    def flag(self, record: RawRecord, exc: BaseException) -> None:
        error = describe_exception(exc)
        self.reason = f"{record.topic}[{record.partition}]@{record.offset}: {error[:300]}"
        CONSUMER_STALLED.labels(self.service, self.topic).set(1)
        log.error(
            "consumer stalled: cannot record a message's outcome; its offset is held",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error=error[:1000],
        )

    def clear(self) -> None:
        if self.reason is not None:
            log.warning("consumer resumed", stalled_at=self.reason)
            self.reason = None
            CONSUMER_STALLED.labels(self.service, self.topic).set(0)


async def pause(failures: int, is_stopping: Callable[[], bool]) -> None:
    """Back off before attempt `failures + 1`; raises Stopping as soon as the service stops."""
    deadline = time.monotonic() + min(0.5 * 2 ** min(failures, 10), MAX_STALL_PAUSE_SECONDS)
    while time.monotonic() < deadline:
        if is_stopping():
            raise Stopping
        await asyncio.sleep(min(0.2, max(deadline - time.monotonic(), 0)))
    if is_stopping():
        raise Stopping
