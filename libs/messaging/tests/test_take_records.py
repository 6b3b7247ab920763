"""`take_records` (one round trip) against the steps it replaces, on real PostgreSQL: the
same pending records, the same claims (fresh, seen with their digests), the same handled
offsets after, and the same locks held until commit."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from tally_messaging.consumed_offsets import (
    advance_handled_offsets,
    handled_offsets,
    lock_handled_offsets,
    not_handled,
    take_records,
)
from tally_messaging.dedupe import ClaimResult, MessageClaim, claim_message_ids, ensure_days
from tally_messaging.migrations import apply_migrations
from tally_messaging.transaction import RawRecord

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
GROUP = "g.usage"
CONSUMER = "svc:usage"
DAY = dt.date(2026, 11, 3)


@pytest_asyncio.fixture(loop_scope="session")
async def two_databases(new_database: Any) -> AsyncIterator[tuple[asyncpg.Connection, asyncpg.Connection]]:
    """Two migrated databases: one for the steps, one for `take_records`."""
    conns = []
    for _ in range(2):
        conn = await asyncpg.connect(await new_database())
        await apply_migrations(conn, "tally_messaging", "sql")
        await ensure_days(conn, [DAY, DAY + dt.timedelta(days=1)])
        conns.append(conn)
    yield conns[0], conns[1]
    for conn in conns:
        await conn.close()


def record(partition: int, offset: int, body: bytes) -> RawRecord:
    return RawRecord("usage", partition, offset, b"k", body)


def claim_of(message_id: uuid.UUID, body: bytes, day: dt.date = DAY) -> MessageClaim:
    return MessageClaim(message_id, day, hashlib.sha256(body).digest())


async def by_steps(
    conn: asyncpg.Connection, records: list[RawRecord], claims: list[MessageClaim]
) -> tuple[list[RawRecord], ClaimResult]:
    async with conn.transaction():
        handled = await lock_handled_offsets(conn, GROUP, records)
        pending = not_handled(records, handled)
        wanted = [claims[records.index(r)] for r in pending]
        claim = await claim_message_ids(conn, CONSUMER, wanted) if wanted else ClaimResult(fresh=set())
        await advance_handled_offsets(conn, GROUP, records)
    return pending, claim


async def in_one(
    conn: asyncpg.Connection, records: list[RawRecord], claims: list[MessageClaim]
) -> tuple[list[RawRecord], ClaimResult]:
    async with conn.transaction():
        taken = await take_records(conn, GROUP, CONSUMER, records, claims, ["cus-1"])
    return taken.pending, taken.claim


async def test_take_records_decides_as_the_steps_it_replaces(
    two_databases: tuple[asyncpg.Connection, asyncpg.Connection],
) -> None:
    steps, one = two_databases
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    rounds = [
        # first sight: three records on two partitions, one id twice in the batch
        ([record(0, 0, b"a"), record(0, 1, b"b"), record(1, 0, b"a")], [a, b, a]),
        # a redelivery of offsets 0-1 with a new record: only the new one is pending
        ([record(0, 0, b"a"), record(0, 1, b"b"), record(0, 2, b"c")], [a, b, c]),
        # re-sent copies (same id, same body) and a reused id (same id, another body)
        ([record(0, 3, b"a"), record(1, 1, b"x")], [a, b]),
        # the same id on another day: stored apart, not compared
        ([record(1, 2, b"z")], [c]),
        # everything redelivered: nothing pending
        ([record(0, 1, b"b"), record(1, 2, b"z")], [b, c]),
    ]
    for n, (records, ids) in enumerate(rounds):
        day = DAY + dt.timedelta(days=1) if n == 3 else DAY
        claims = [claim_of(i, r.value, day) for r, i in zip(records, ids, strict=True)]
        expected = await by_steps(steps, records, claims)
        got = await in_one(one, records, claims)
        assert got[0] == expected[0], f"round {n}: pending"
        assert got[1] == expected[1], f"round {n}: claims"
        partitions = [("usage", 0), ("usage", 1)]
        assert await handled_offsets(one, GROUP, partitions) == await handled_offsets(
            steps, GROUP, partitions
        )
    # the rounds did see each case: a duplicate, a reused id, and a fully redelivered batch
    _, third = await in_one(one, [record(0, 9, b"a")], [claim_of(a, b"a")])
    assert a not in third.fresh and not third.reused(a, hashlib.sha256(b"a").digest())
    assert third.reused(a, hashlib.sha256(b"other").digest())
    pending, _ = await in_one(one, [record(0, 9, b"a")], [claim_of(a, b"a")])
    assert pending == []


async def test_take_records_holds_the_offset_row_and_the_key_until_commit(new_database: Any) -> None:
    """A second transaction on the same partition waits for the first to commit, then sees
    its offset (the record is a redelivery for it); the per-key lock is held alike."""
    dsn = await new_database()
    first, second, probe = [await asyncpg.connect(dsn) for _ in range(3)]
    try:
        await apply_migrations(first, "tally_messaging", "sql")
        await ensure_days(first, [DAY])
        rec, message_id = record(0, 0, b"a"), uuid.uuid4()
        tx = first.transaction()
        await tx.start()
        taken = await take_records(first, GROUP, CONSUMER, [rec], [claim_of(message_id, b"a")], ["cus-1"])
        assert taken.pending == [rec]
        key_free = await probe.fetchval("select pg_try_advisory_lock(hashtextextended('cus-1', 0))")
        assert key_free is False

        async def again() -> list[RawRecord]:
            async with second.transaction():
                return (
                    await take_records(
                        second, GROUP, CONSUMER, [rec], [claim_of(message_id, b"a")], ["cus-1"]
                    )
                ).pending

        waiting = asyncio.create_task(again())
        await asyncio.sleep(0.3)
        assert not waiting.done()  # held by the first transaction's lock
        await tx.commit()
        assert await asyncio.wait_for(waiting, 10) == []  # then a redelivery
    finally:
        for conn in (first, second, probe):
            await conn.close()
