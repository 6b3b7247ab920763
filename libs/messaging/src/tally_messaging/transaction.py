"""What a handler gets: the database connection inside the message's transaction, and
the ways to answer (publish, reject, dead-letter), all written to the outbox."""

from __future__ import annotations

import hashlib
import traceback
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tally_contracts import CommandRejected, Envelope, MessageData
from tally_messaging.db import DbConnection
from tally_messaging.dead_letters import dead_letter_row
from tally_messaging.outbox import OutboxRow, write_outbox


class Rejected(Exception):
    """A command broke a business rule: nothing it did is kept; CommandRejected is sent."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def message_key(envelope: Envelope[Any]) -> str:
    """Kafka key: the customer, or for configuration messages their own id."""
    if envelope.customer_id:
        return envelope.customer_id
    for name in ("price_list_id", "rule_set_id"):
        value = getattr(envelope.data, name, None)
        if isinstance(value, str):
            return value
    return "bill-run" if envelope.type == "RunBilling" else str(envelope.id)


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A Kafka record as received, before parsing."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    def synthetic_id(self) -> uuid.UUID:
        """A stable id for a record that has none of its own (it did not parse)."""
        return uuid.uuid5(uuid.NAMESPACE_URL, f"kafka:{self.topic}/{self.partition}/{self.offset}")

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
    """Records dead-lettered in this transaction: the runtime settles them at the end (see
    `settle_dead_lettered`), so that a replay of the same message (fixed cause, same id)
    is handled while a redelivery of the same offset stays a duplicate."""
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


async def settle_dead_lettered(
    conn: DbConnection, consumer: str, message_ids: list[uuid.UUID], records: list[RawRecord]
) -> None:
    """Dead-lettered messages were not applied: forget their ids, so that `tally replay` of
    one (same id, new offset) is handled; and claim their records' synthetic ids, so that
    a redelivery of the same offset (a crash before the offset commit) stays a duplicate
    instead of a second dead letter. One statement."""
    await conn.execute(
        "with released as (delete from tally_inbox where consumer = $1 and message_id = any($2::uuid[]))"
        " insert into tally_inbox (consumer, message_id)"
        " select $1, unnest($3::uuid[]) on conflict do nothing",
        consumer,
        message_ids,
        [r.synthetic_id() for r in records],
    )


@dataclass(frozen=True, slots=True)
class InboxClaim:
    fresh: set[uuid.UUID]
    """Not handled before: handle them."""
    seen: dict[uuid.UUID, bytes | None]
    """Handled before, with the body digest stored then (None: not known)."""
    settled: set[uuid.UUID] = field(default_factory=set)
    """Synthetic ids of the records (offsets) dead-lettered before: skip them as duplicates."""

    def reused(self, message_id: uuid.UUID, digest: bytes | None) -> bool:
        """True when `message_id` was handled before with another body: a reused id, not a
        redelivery. A row stored without a digest counts as the same body."""
        stored = self.seen.get(message_id)
        return stored is not None and digest is not None and stored != digest


async def claim_inbox(
    conn: DbConnection,
    consumer: str,
    messages: Iterable[tuple[uuid.UUID, bytes | None]],
    records: Sequence[RawRecord] | None = None,
) -> InboxClaim:
    """Record each (id, body digest) as handled by `consumer`, in one round trip.

    PostgreSQL answers only with the ids that were already there (usually none) and
    their stored digests: on a batch of thousands that saves decoding thousands of rows.
    An id twice in `messages` is claimed once, with its first digest.

    With `records` (one per message, same order), a message whose record was dead-lettered
    before (its synthetic id is in the inbox, see `settle_dead_lettered`) is not claimed:
    its record's synthetic id comes back in `settled` instead."""
    wanted = list(messages)
    ids = [m[0] for m in wanted]
    record_ids = [r.synthetic_id() for r in records] if records is not None else [None] * len(ids)
    rows = await conn.fetch(
        "with wanted as (select * from unnest($2::uuid[], $3::bytea[], $4::uuid[])"
        "  as w (message_id, body_digest, record_id)),"
        " settled as (select w.record_id from wanted w"
        "  join tally_inbox t on t.consumer = $1 and t.message_id = w.record_id),"
        " todo as (select * from wanted w"
        "  where not exists (select from settled s where s.record_id = w.record_id)),"
        " claimed as (insert into tally_inbox (consumer, message_id, body_digest)"
        "  select $1, message_id, body_digest from todo on conflict do nothing returning message_id)"
        " select distinct w.message_id, t.body_digest, null::uuid as settled"
        " from todo w left join tally_inbox t on t.consumer = $1 and t.message_id = w.message_id"
        " where not exists (select from claimed c where c.message_id = w.message_id)"
        " union all select null, null, record_id from settled",
        consumer,
        ids,
        [m[1] for m in wanted],
        record_ids,
    )
    settled = {r["settled"] for r in rows if r["settled"] is not None}
    seen = {r["message_id"]: r["body_digest"] for r in rows if r["settled"] is None}
    fresh = {m for m, r in zip(ids, record_ids, strict=True) if r not in settled}.difference(seen)
    return InboxClaim(fresh=fresh, seen=seen, settled=settled)
