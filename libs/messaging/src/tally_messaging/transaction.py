"""What a handler gets: the database connection inside the message's transaction, and
the ways to answer (publish, reject, dead-letter), all written to the outbox."""

from __future__ import annotations

import hashlib
import traceback
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tally_contracts import CommandRejected, DomainError, Envelope, MessageData, message_key
from tally_messaging.db import DbConnection
from tally_messaging.dead_letters import dead_letter_row
from tally_messaging.outbox import OutboxRow, write_outbox


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A Kafka record as received, before parsing."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    def header(self, name: str) -> bytes | None:
        """The last value of header `name`, or None."""
        found = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found

    def body_digest(self) -> bytes:
        """SHA-256 of the value as received: tells a redelivery from a reused message id."""
        return hashlib.sha256(self.value).digest()


def describe_exception(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


@dataclass(slots=True)
class Transaction:
    """One handler call's unit of work. Rows are buffered and written at commit."""

    conn: DbConnection
    consumer: str
    events_topic: str
    topic_prefix: str
    _rows: list[OutboxRow] = field(default_factory=list)
    dead_lettered: list[RawRecord] = field(default_factory=list)
    """Records dead-lettered in this transaction: the runtime releases their message ids at
    the end (see `dedupe.release_message_ids`), so that a replay of the same message (fixed
    cause, same id, new offset) is handled; a redelivery of the same offset stays one (its
    partition's handled offset covers it)."""
    answered: set[uuid.UUID] = field(default_factory=set)
    """Ids of the messages this transaction published something for on its own events
    topic: a command not among them gets CommandCompleted from the runtime."""

    def publish(
        self,
        cause: Envelope[Any],
        data: MessageData,
        *,
        topic: str | None = None,
        customer_id: str | None = None,
    ) -> Envelope[Any]:
        """Publish `data` as caused by `cause` (correlation copied) on `topic` (default: own events)."""
        out = cause.reply(data, customer_id=customer_id)
        target = self.topic_prefix + topic if topic else self.events_topic
        if target == self.events_topic:
            self.answered.add(cause.id)
        self._rows.append(
            OutboxRow(
                topic=target,
                key=message_key(out),
                type=out.type,
                payload=out.to_json(),
            )
        )
        return out

    def reject(self, command: Envelope[Any], code: str, reason: str) -> None:
        self.publish(
            command,
            CommandRejected(command_id=str(command.id), command_type=command.type, code=code, reason=reason),
        )

    def dead_letter(self, record: RawRecord, error: str) -> None:
        self._rows.append(dead_letter_row(record, error, self.consumer))
        self.dead_lettered.append(record)

    def dead_letter_rejected(self, record: RawRecord, rejection: DomainError) -> None:
        """Dead-letter an event its handler refused, naming the rule it broke (the runtime's
        answer to a lone event's DomainError; a batch handler refusing one of its events)."""
        self.dead_letter(record, f"rejected: {rejection}")

    def discard(self) -> None:
        self._rows.clear()
        self.dead_lettered.clear()
        self.answered.clear()

    async def flush(self) -> None:
        await write_outbox(self.conn, self._rows)
        self._rows.clear()

    async def lock_keys(self, keys: Iterable[str]) -> None:
        """Serialise work per key (customer) across subscribers and instances until commit.

        Each key once, in sorted order: two transactions locking overlapping keys then
        take them in the same order and cannot deadlock."""
        await self.conn.execute(
            "select pg_advisory_xact_lock(hashtextextended(k, 0)) from unnest($1::text[]) as k",
            sorted(set(keys)),
        )
