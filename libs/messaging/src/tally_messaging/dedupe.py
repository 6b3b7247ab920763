"""Re-sent messages: the ids a consumer handled within the dedupe window.

An upstream may publish the same event twice (a retry after a lost acknowledgement, a
re-run export). Its copies have the same id, body and `occurred_at`, so the ids are kept
in `tally_message_ids`, partitioned by the UTC day of `occurred_at`: a lookup reads one
day's partition, the partitions being written are the recent days (small, in memory),
and expiring a day is dropping its partition, never a DELETE. (By arrival day instead,
a lookup would read every day from the message's own to today: all of the window for
late usage. A day named by a message that has no partition yet, future-dated ones
included, gets one on demand.)

The window: a message whose `occurred_at` is older than the window is dead-lettered
before any lookup (see `envelope_checks.older_than_window`), so a copy of a message whose
day was dropped can never be counted twice. A day's partition is dropped one day after
its last instant left the window (a margin for clocks).

The same id with another body is a reused id (dead-lettered with its reason) when the
two bodies name the same day; bodies of other days are stored apart and are not compared.

`tally_inbox` (the table before this one kept every id for ever) gets no new rows; its
ids are still looked up until the window has passed since the migration that retired it.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tally_messaging.db import DbConnection

DEFAULT_WINDOW_DAYS = 70
"""A billing period is at most 31 days, and usage for a period may still arrive during the
next one (late usage goes on the next invoice: a grace of one more period, 31 days); 8
days more cover a consumer held back by an outage or a stall. An id is kept that long
after its message's own time; an older message is dead-lettered, not handled."""

DAYS_AHEAD = 3
"""Partitions made before their day comes, so a day's first message makes no DDL."""

MAINTENANCE_SECONDS = 3600.0
"""How often a consumer makes partitions ahead and drops those out of the window."""

DIGEST_BYTES = 8
"""Bytes of the body's SHA-256 kept per id: enough to tell a reused id from a copy."""


@dataclass(frozen=True, slots=True)
class DedupeWindow:
    """How long message ids are kept; `TALLY_DEDUPE_WINDOW_DAYS` overrides the default."""

    days: int = DEFAULT_WINDOW_DAYS

    @classmethod
    def from_environment(cls) -> DedupeWindow:
        days = int(os.environ.get("TALLY_DEDUPE_WINDOW_DAYS", str(DEFAULT_WINDOW_DAYS)))
        if days < 1:
            raise ValueError(f"TALLY_DEDUPE_WINDOW_DAYS must be at least 1, not {days}")
        return cls(days)

    @property
    def length(self) -> dt.timedelta:
        return dt.timedelta(days=self.days)

    def opens_at(self, now: dt.datetime) -> dt.datetime:
        """The oldest `occurred_at` still handled at `now`."""
        return now - self.length

    def first_kept_day(self, now: dt.datetime) -> dt.date:
        """Days before this one are out of the window (with a day's margin): dropped."""
        return (self.opens_at(now) - dt.timedelta(days=1)).astimezone(dt.UTC).date()


def day_of(occurred_at: dt.datetime) -> dt.date:
    return occurred_at.astimezone(dt.UTC).date()


@dataclass(frozen=True, slots=True)
class MessageClaim:
    """One message to claim: its id, the day of its `occurred_at`, its body's digest."""

    message_id: uuid.UUID
    day: dt.date
    digest: bytes


@dataclass(frozen=True, slots=True)
class ClaimResult:
    fresh: set[uuid.UUID]
    """Not handled before: handle them."""
    seen: dict[uuid.UUID, bytes | None] = field(default_factory=dict)
    """Handled before, with the digest stored then (None: not known)."""

    def reused(self, message_id: uuid.UUID, digest: bytes | None) -> bool:
        """True when `message_id` was handled before with another body: a reused id, not a
        copy. A row stored without a digest counts as the same body. Stored digests may be
        a prefix of the SHA-256 (`DIGEST_BYTES`)."""
        stored = self.seen.get(message_id)
        return stored is not None and digest is not None and stored != digest[: len(stored)]


async def claim_message_ids(
    conn: DbConnection, consumer: str, claims: Sequence[MessageClaim], *, legacy_inbox: bool = False
) -> ClaimResult:
    """Record each message as handled by `consumer`.

    One insert; only when some ids were there already (rare) a second statement reads
    their stored digests. (One statement doing both is planned with a join over every
    day's partition, whose estimated cost switches PostgreSQL's JIT on: over a second per
    batch once the window is full.) An id twice in `claims` is claimed once, with its
    first digest. With `legacy_inbox`, an id found in the retired `tally_inbox` counts as
    handled too. Every claimed day must have its partition (`ensure_days`)."""
    inserted = await conn.fetch(
        "insert into tally_message_ids (consumer, day, message_id, body_digest)"
        " select $1, day, message_id, body_digest"
        " from unnest($2::uuid[], $3::date[], $4::bytea[]) as w (message_id, day, body_digest)"
        " on conflict do nothing returning message_id",
        consumer,
        [c.message_id for c in claims],
        [c.day for c in claims],
        [c.digest[:DIGEST_BYTES] for c in claims],
    )
    fresh = {r["message_id"] for r in inserted}
    there = [c for c in claims if c.message_id not in fresh]
    seen: dict[uuid.UUID, bytes | None] = {}
    if there:
        rows = await conn.fetch(
            "select t.message_id, t.body_digest from tally_message_ids t"
            " join unnest($2::uuid[], $3::date[]) as w (message_id, day)"
            " on t.day = w.day and t.message_id = w.message_id where t.consumer = $1",
            consumer,
            [c.message_id for c in there],
            [c.day for c in there],
        )
        seen = {r["message_id"]: r["body_digest"] for r in rows}
        fresh.difference_update(seen)  # the same id on another day, handled before: not new
    result = ClaimResult(fresh=fresh, seen=seen)
    return await also_in_legacy_inbox(conn, consumer, result) if legacy_inbox else result


async def also_in_legacy_inbox(conn: DbConnection, consumer: str, claim: ClaimResult) -> ClaimResult:
    """`claim` with the fresh ids that the retired `tally_inbox` holds counted as seen. Their
    rows just written to the window stay: a later copy is then found there."""
    if not claim.fresh:
        return claim
    found = await conn.fetch(
        "select message_id, body_digest from tally_inbox where consumer = $1 and message_id = any($2::uuid[])",
        consumer,
        list(claim.fresh),
    )
    if not found:
        return claim
    seen = {**claim.seen, **{r["message_id"]: r["body_digest"] for r in found}}
    return ClaimResult(fresh=claim.fresh.difference(seen), seen=seen)


async def release_message_ids(conn: DbConnection, consumer: str, claims: Iterable[MessageClaim]) -> None:
    """Forget ids claimed in this transaction whose messages were not applied (dead-lettered
    by their handler), so that `tally replay` of one (same id, new offset) is handled. The
    rare path: a few rows, found by their full key."""
    wanted = list(claims)
    if not wanted:
        return
    await conn.execute(
        "delete from tally_message_ids t using unnest($2::date[], $3::uuid[]) as w (day, message_id)"
        " where t.consumer = $1 and t.day = w.day and t.message_id = w.message_id",
        consumer,
        [c.day for c in wanted],
        [c.message_id for c in wanted],
    )


async def legacy_inbox_in_use(conn: DbConnection, consumer: str, window: DedupeWindow) -> bool:
    """Whether `tally_inbox` may still hold ids of `consumer` inside the window."""
    return bool(
        await conn.fetchval(
            "select exists (select from tally_inbox_retired where retired_at > now() - $2::interval)"
            " and exists (select from tally_inbox where consumer = $1)",
            consumer,
            window.length,
        )
    )


# -- partitions ---------------------------------------------------------------------


async def partition_days(conn: DbConnection) -> set[dt.date]:
    """The days that have a partition."""
    return {r[0] for r in await conn.fetch("select tally_message_ids_days()")}


async def ensure_days(conn: DbConnection, days: Iterable[dt.date]) -> None:
    """Make the partitions of `days` that are missing (idempotent; in its own transaction)."""
    wanted = sorted(set(days))
    if wanted:
        await conn.execute("select tally_message_ids_ensure($1::date[])", wanted)


async def drop_days_before(
    conn: DbConnection, first_kept: dt.date, lock_timeout_ms: int = 2000
) -> list[dt.date]:
    """Drop the partitions of the days before `first_kept`; returns the days dropped.

    A drop waits for the transactions writing ids to end: `lock_timeout_ms` bounds that
    wait (a timeout raises; the next maintenance tries again)."""
    async with conn.transaction():
        await conn.execute("select set_config('lock_timeout', $1, true)", f"{int(lock_timeout_ms)}ms")
        return [r[0] for r in await conn.fetch("select tally_message_ids_drop_before($1)", first_kept)]


async def maintain(conn: DbConnection, window: DedupeWindow, now: dt.datetime) -> list[dt.date]:
    """Make today's partition and those of the next `DAYS_AHEAD` days, drop those out of the
    window; returns the days dropped."""
    today = day_of(now)
    await ensure_days(conn, [today + dt.timedelta(days=n) for n in range(DAYS_AHEAD + 1)])
    return await drop_days_before(conn, window.first_kept_day(now))
