"""Redelivery detection: the last offset handled per (consumer group, topic, partition).

Kafka Connect's sinks and eventsourcing's tracking records do the same: the position is
part of the state, written in the transaction that applies, rejects or dead-letters the
records. A record at or below its partition's handled offset was handled already (a
restart, a rebalance, a crash between the commit and Kafka's offset commit) and is
skipped in silence. Each transaction locks its partitions' rows first, so two consumers
handling one partition during a rebalance take turns, and the second sees the first's
offset. When a partition is assigned the consumer seeks past the handled offset, so a
redelivery is not even fetched (see `SeekPastHandled`).

Why the offset may only move over records that are done: the processor handles a
fetched batch in offset order within each partition (runs of a batch handler's type
stay in order with the records around them), so when a transaction commits offset X,
every record at or below X is applied, answered or dead-lettered.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
import structlog
from aiokafka import ConsumerRebalanceListener, TopicPartition

from tally_messaging.db import DbConnection
from tally_messaging.dedupe import DIGEST_BYTES, ClaimResult, MessageClaim

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer

    from tally_messaging.transaction import RawRecord

log = structlog.get_logger()

NOTHING_HANDLED = -1
"""The handled offset of a partition no transaction has recorded yet."""


def _partitions(records: Iterable[RawRecord]) -> dict[tuple[str, int], int]:
    """The highest offset per (topic, partition) among `records`."""
    highest: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic, record.partition)
        highest[key] = max(highest.get(key, NOTHING_HANDLED), record.offset)
    return highest


async def lock_handled_offsets(
    conn: DbConnection, consumer_group: str, records: Iterable[RawRecord]
) -> dict[tuple[str, int], int]:
    """Lock the rows of the partitions of `records` until commit (in sorted order, so two
    transactions cannot deadlock; a partition's first transaction creates its row);
    returns each partition's handled offset. One round trip once the rows exist."""
    keys = sorted(_partitions(records))
    topics, partitions = [k[0] for k in keys], [k[1] for k in keys]
    handled = await _lock_rows(conn, consumer_group, topics, partitions)
    if len(handled) < len(keys):
        await conn.execute(
            "insert into tally_consumed_offsets (consumer_group, topic, partition, handled_offset)"
            " select $1, t, p, $4 from unnest($2::text[], $3::int[]) as k (t, p) on conflict do nothing",
            consumer_group,
            topics,
            partitions,
            NOTHING_HANDLED,
        )
        handled = await _lock_rows(conn, consumer_group, topics, partitions)
    return handled


async def _lock_rows(
    conn: DbConnection, consumer_group: str, topics: list[str], partitions: list[int]
) -> dict[tuple[str, int], int]:
    rows = await conn.fetch(
        "select o.topic, o.partition, o.handled_offset from tally_consumed_offsets o"
        " join unnest($2::text[], $3::int[]) with ordinality as k (topic, partition, n)"
        " on o.topic = k.topic and o.partition = k.partition"
        " where o.consumer_group = $1 order by k.n for update of o",
        consumer_group,
        topics,
        partitions,
    )
    return {(r["topic"], r["partition"]): r["handled_offset"] for r in rows}


def not_handled(records: Iterable[RawRecord], handled: dict[tuple[str, int], int]) -> list[RawRecord]:
    """The records above their partition's handled offset: the rest are redeliveries."""
    return [r for r in records if r.offset > handled.get((r.topic, r.partition), NOTHING_HANDLED)]


async def advance_handled_offsets(
    conn: DbConnection, consumer_group: str, records: Iterable[RawRecord]
) -> None:
    """Record `records` as handled: each partition's offset moves up to its highest one
    (never down). Call it in the transaction that locked the rows."""
    highest = _partitions(records)
    if not highest:
        return
    await conn.execute(
        "update tally_consumed_offsets o set handled_offset = greatest(o.handled_offset, k.handled)"
        " from unnest($2::text[], $3::int[], $4::bigint[]) as k (topic, partition, handled)"
        " where o.consumer_group = $1 and o.topic = k.topic and o.partition = k.partition",
        consumer_group,
        [k[0] for k in highest],
        [k[1] for k in highest],
        list(highest.values()),
    )


async def handled_offsets(
    conn: DbConnection, consumer_group: str, partitions: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """The handled offset of each of `partitions` that has one (no lock)."""
    wanted = list(partitions)
    rows = await conn.fetch(
        "select o.topic, o.partition, o.handled_offset from tally_consumed_offsets o"
        " join unnest($2::text[], $3::int[]) as k (topic, partition)"
        " on o.topic = k.topic and o.partition = k.partition"
        " where o.consumer_group = $1",
        consumer_group,
        [p[0] for p in wanted],
        [p[1] for p in wanted],
    )
    return {(r["topic"], r["partition"]): r["handled_offset"] for r in rows}


async def records_handled(conn: DbConnection, consumer_group: str) -> int:
    """How many records of the group's partitions are handled, counting from offset 0 (for
    benchmarks and tests on topics that started empty): the sum of handled offsets + 1."""
    total = await conn.fetchval(
        "select coalesce(sum(handled_offset + 1), 0) from tally_consumed_offsets where consumer_group = $1",
        consumer_group,
    )
    return int(total)


class SeekPastHandled(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, move each partition's position, and Kafka's committed offset, past its
    handled offset when Kafka's is behind it (a crash after the database commit, before
    Kafka's)."""

    def __init__(
        self,
        consumer_group: str,
        pool: Callable[[], asyncpg.Pool | None],
        consumer: Callable[[], AIOKafkaConsumer | None],
    ) -> None:
        self.consumer_group = consumer_group
        self._pool = pool
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pool, consumer = self._pool(), self._consumer()
        if not assigned or pool is None or consumer is None:
            return
        try:
            async with pool.acquire() as conn:
                handled = await handled_offsets(
                    conn, self.consumer_group, [(tp.topic, tp.partition) for tp in assigned]
                )
            for tp in assigned:
                offset = handled.get((tp.topic, tp.partition))
                if offset is None:
                    continue
                committed = await consumer.committed(tp)
                if committed is None or committed <= offset:
                    consumer.seek(tp, offset + 1)
                    # Kafka's committed offset catches up too: else the partition shows a lag
                    # (the records skipped) until its next record is handled and committed.
                    await consumer.commit({tp: offset + 1})
                    log.info(
                        "seeked past handled offset",
                        topic=tp.topic,
                        partition=tp.partition,
                        offset=offset + 1,
                    )
        except Exception as exc:  # the transactions skip redeliveries anyway: this only saves fetches
            log.warning("could not seek past handled offsets", error=repr(exc))


@dataclass(frozen=True, slots=True)
class TakenRecords:
    """What `take_records` found: the records to handle, and their ids' claims."""

    pending: list[RawRecord]
    """Above their partition's handled offset, in the order given; the rest are redeliveries."""
    claim: ClaimResult
    """The pending records' ids in the dedupe window (as `claim_message_ids` answers)."""


async def take_records(
    conn: DbConnection,
    consumer_group: str,
    consumer: str,
    records: Sequence[RawRecord],
    claims: Sequence[MessageClaim],
    keys: Iterable[str],
) -> TakenRecords:
    """Start the transaction of `records` (with `claims[i]` the claim of `records[i]`) in one
    round trip: lock their partitions' rows (in sorted order), then the per-key locks of
    `keys` (sorted here, as `Transaction.lock_keys` sorts them), claim the pending records'
    ids and advance the handled offsets (see sql/0005_take_records.sql). The same effect
    as `lock_handled_offsets`, `not_handled`, `Transaction.lock_keys`,
    `claim_message_ids` and `advance_handled_offsets` in turn; call it in the transaction
    that handles the records, whose commit makes it all count."""
    rows = await conn.fetch(
        "select kind, n, message_id, body_digest from tally_take_records("
        "$1, $2, $3::text[], $4::int[], $5::bigint[], $6::uuid[], $7::date[], $8::bytea[], $9::text[])",
        consumer_group,
        consumer,
        [r.topic for r in records],
        [r.partition for r in records],
        [r.offset for r in records],
        [c.message_id for c in claims],
        [c.day for c in claims],
        [c.digest[:DIGEST_BYTES] for c in claims],
        sorted(set(keys)),
    )
    pending: list[RawRecord] = []
    fresh: set[uuid.UUID] = set()
    seen: dict[uuid.UUID, bytes | None] = {}
    for row in rows:
        kind = row["kind"]
        if kind == "pending":
            pending.append(records[row["n"] - 1])
        elif kind == "fresh":
            fresh.add(row["message_id"])
        else:
            seen[row["message_id"]] = row["body_digest"]
    fresh.difference_update(seen)
    return TakenRecords(pending, ClaimResult(fresh=fresh, seen=seen))
