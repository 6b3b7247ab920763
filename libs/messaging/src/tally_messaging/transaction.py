"""What a handler gets: the database connection inside the message's transaction, and
the ways to answer (publish, reject, dead-letter), all written to the outbox."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import traceback
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tally_contracts import CommandRejected, Envelope, MessageData
from tally_contracts.topics import dlq
from tally_messaging.db import DbConnection
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

    def synthetic_id(self) -> uuid.UUID:
        """A stable id for a record that has none of its own (it did not parse)."""
        return uuid.uuid5(uuid.NAMESPACE_URL, f"kafka:{self.topic}/{self.partition}/{self.offset}")


MAX_DEAD_LETTER_RAW_BYTES = 256 * 1024
"""A dead letter keeps at most this much of the original value: a hostile message must not
make a dead letter Kafka refuses (that would block the outbox behind it)."""


def dead_letter_row(record: RawRecord, error: str, consumer: str) -> OutboxRow:
    raw: Any
    if len(record.value) > MAX_DEAD_LETTER_RAW_BYTES:
        raw = {  # not text, so `tally replay` will not re-publish a fragment
            "truncated": record.value[:MAX_DEAD_LETTER_RAW_BYTES].decode(errors="replace"),
            "bytes": len(record.value),
            "sha256": hashlib.sha256(record.value).hexdigest(),
        }
    else:
        try:
            raw = record.value.decode()
        except UnicodeDecodeError:
            raw = {"hex": record.value.hex()}
    body = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key.decode(errors="replace") if record.key else None,
        "consumer": consumer,
        "error": error,
        "failed_at": dt.datetime.now(dt.UTC).isoformat(),
        "raw": raw,
    }
    key = record.key.decode(errors="replace") if record.key else f"{record.partition}/{record.offset}"
    return OutboxRow(dlq(record.topic), key, "DeadLetter", json.dumps(body, ensure_ascii=False).encode())


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
        self._rows.append(
            OutboxRow(
                topic=self.topic_prefix + topic if topic else self.events_topic,
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

    def discard(self) -> None:
        self._rows.clear()

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


async def claim_inbox(conn: DbConnection, consumer: str, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Record `ids` as handled by `consumer`; returns those not handled before.

    PostgreSQL answers with the ids that were already there (usually none), not with
    every id inserted: on a batch of thousands that saves decoding thousands of rows."""
    wanted = set(ids)
    seen_before = await conn.fetchval(
        "with claimed as (insert into tally_inbox (consumer, message_id) select $1, unnest($2::uuid[])"
        " on conflict do nothing returning message_id)"
        " select array(select unnest($2::uuid[]) except select message_id from claimed)",
        consumer,
        list(wanted),
    )
    return wanted.difference(seen_before)
