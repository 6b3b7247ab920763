"""Handling received records exactly once: parse, check, dedupe, run the handler, write
the outbox, commit — one PostgreSQL transaction per message (or per batch for batch
handlers).

The rule: an offset never moves past a message that was neither applied, answered
with CommandRejected, nor dead-lettered. Infrastructure failures are retried in place;
a message that fails validation or an envelope check, or a handler bug that persists,
goes to the DLQ and the consumer keeps going; and when even recording an outcome fails
for another reason, the consumer holds its partition (`tally_consumer_stalled`, an
error log naming the offset, /health 503; see `stalls.py`) and retries until it passes.

A handler's domain error (a rejection) rolls its transaction back whole, and the answer
(CommandRejected, or the DLQ for an event) is recorded in a second transaction: no savepoint
per message, two round trips fewer on every message that is not rejected. A message's
transaction starts with one round trip (`take_records`): offset rows and per-key locks
taken, ids claimed, offsets advanced (a batch's takes the same steps one by one).

Every command is answered: by the events its handler published, CommandRejected, a dead
letter, or — when its handler committed without publishing anything on the service's
events topic — CommandCompleted(outcome="nothing_to_do"), added here once for all services.

Duplicates, in two parts: a redelivered record (at or below its partition's handled
offset, `consumed_offsets.py`) is skipped in silence; a re-sent message (its id claimed
within the dedupe window, `dedupe.py`) is a duplicate. Every transaction locks its
partitions' offset rows first and advances them before it commits. A message older than
the window is dead-lettered. A message its handler dead-letters gives its id back, so
`tally replay` (same id, new offset) is handled, while a redelivery of the same offset
stays one.

A fetched batch is handled in offset order: a batch handler gets each run of its type
between the records handled alone, so an offset committed to the database never passes
a record that is not done."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar

import asyncpg
import structlog
from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_never, wait_exponential

from tally_contracts import CommandCompleted, DomainError, Envelope, MessageData, message_key, parse_message
from tally_contracts.topics import TOPIC_MESSAGES
from tally_messaging import dedupe, faults
from tally_messaging.consumed_offsets import (
    TakenRecords,
    advance_handled_offsets,
    lock_handled_offsets,
    not_handled,
    take_records,
)
from tally_messaging.db import DbConnection
from tally_messaging.dedupe import ClaimResult, DedupeWindow, MessageClaim, day_of
from tally_messaging.envelope_checks import Refusal, check_envelope, id_reused, older_than_window
from tally_messaging.metrics import ENVELOPE_REFUSED, FAILED, HANDLED, HANDLER_SECONDS
from tally_messaging.stalls import StallWatch, pause
from tally_messaging.stalls import Stopping as Stopping  # re-exported: the service catches it
from tally_messaging.transaction import RawRecord, Transaction, describe_exception

log = structlog.get_logger()

INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.OperatorInterventionError,
)
"""Failures of the world, not of the message: retried until they pass."""

BUG_ATTEMPTS = 3
"""A handler that raises anything else this many times sends the message to the DLQ."""

GROUP_MAX_MESSAGES = 100
"""At most this many single-message records share one transaction (see `_handle_group`)."""

NOTHING_TO_DO = "nothing_to_do"
"""CommandCompleted's outcome for a command whose handler published no event."""


M = TypeVar("M", bound=MessageData)


@dataclass(frozen=True, slots=True)
class Delivery(Generic[M]):
    """A record whose envelope parsed: what a batch handler receives (`Delivery[UsageRecorded]`)."""

    envelope: Envelope[M]
    record: RawRecord
    _claim: MessageClaim = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Once per message: the body's SHA-256 and the day were made up to four times.
        claim = MessageClaim(self.envelope.id, day_of(self.envelope.occurred_at), self.record.body_digest())
        object.__setattr__(self, "_claim", claim)

    def claim(self) -> MessageClaim:
        """What the dedupe window keeps of this message."""
        return self._claim

    @property
    def digest(self) -> bytes:
        """SHA-256 of the record's value: tells a copy from a reused id."""
        return self._claim.digest


Handler = Callable[[Envelope[Any], Transaction], Awaitable[None]]
BatchHandler = Callable[[list[Delivery[Any]], Transaction], Awaitable[None]]


NOT_A_BUG: tuple[type[BaseException], ...] = (Stopping, *INFRASTRUCTURE_ERRORS)
"""Raised through the bug-retry loop: handled by the in-place retry or the shutdown."""


@dataclass
class TopicRoute:
    logical_topic: str
    handlers: dict[str, Handler]
    batch_handler: BatchHandler | None = None
    batch_type: str | None = None
    allowed_types: frozenset[str] | None = None
    watch: StallWatch | None = None
    """Set by the route's processor; /health reads `stall`."""
    decode: Callable[[bytes], Envelope[Any]] = parse_message
    """Reads a record's value: `parse_message`, or a faster decoder that gives the same
    envelopes and raises the same errors (e.g. invoicing's compiled `usage` decoder)."""

    @property
    def stall(self) -> str | None:
        """Why this route's consumer is holding its offset; None while it moves."""
        return self.watch.reason if self.watch is not None else None

    def accepts(self, type_name: str) -> bool:
        allowed = (
            self.allowed_types
            if self.allowed_types is not None
            else TOPIC_MESSAGES.get(self.logical_topic, frozenset())
        )
        return type_name in allowed


class RecordProcessor:
    def __init__(
        self,
        *,
        service: str,
        pool: asyncpg.Pool,
        route: TopicRoute,
        consumer: str,
        consumer_group: str,
        events_topic: str,
        topic_prefix: str,
        is_stopping: Callable[[], bool],
        window: DedupeWindow | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.service = service
        self.pool = pool
        self.route = route
        self.consumer = consumer
        self.consumer_group = consumer_group
        self.events_topic = events_topic
        self.topic_prefix = topic_prefix
        self.is_stopping = is_stopping
        self.window = window or DedupeWindow.from_environment()
        self.clock = clock
        self._held_batches = 0
        self.watch = route.watch = StallWatch(service, route.logical_topic)
        self._days: set[dt.date] = set()
        """Days known to have a partition in the dedupe window."""
        self._maintained_at: float | None = None
        self._legacy_inbox = True
        """Whether ids are still looked up in the retired `tally_inbox` (known after maintenance)."""

    def _new_tx(self, conn: DbConnection) -> Transaction:
        return Transaction(conn, self.consumer, self.events_topic, self.topic_prefix)

    def _parse(self, record: RawRecord, now: dt.datetime) -> Envelope[Any] | Refusal:
        """The envelope, or why it is unusable (read by the route's `decode`)."""
        try:
            envelope = self.route.decode(record.value)
        except ValidationError as exc:
            return Refusal(f"invalid message: {exc}")
        except ValueError as exc:
            return Refusal(f"invalid message: {exc}")
        if not self.route.accepts(envelope.type):
            return Refusal(
                f"message type {envelope.type} does not belong on topic {self.route.logical_topic}"
            )
        return check_envelope(record, envelope) or older_than_window(envelope, self.window, now) or envelope

    async def process(self, records: list[RawRecord]) -> None:
        """Handle every record in offset order; returns once each is applied, rejected or
        dead-lettered (or skipped as a redelivery)."""
        started = time.perf_counter()
        await self._maintain_if_due()
        now = self.clock()
        parsed = [(r, self._parse(r, now)) for r in records]
        run: list[Delivery[Any]] = []
        group: list[Delivery[Any]] = []
        for record, result in parsed:
            if isinstance(result, Envelope) and self._batched(result):
                if group:
                    await self._handle_group(group)
                    group = []
                run.append(Delivery(result, record))
                continue
            if isinstance(result, Envelope) and result.type not in self.route.handlers:
                # No state, no answer: the run or the group around it goes on.
                HANDLED.labels(self.service, self.route.logical_topic, result.type, "ignored").inc()
                continue
            if run:
                await self._handle_batch(run)
                run = []
            if isinstance(result, Envelope):
                group.append(Delivery(result, record))
                if len(group) == GROUP_MAX_MESSAGES:
                    await self._handle_group(group)
                    group = []
                continue
            if group:
                await self._handle_group(group)
                group = []
            self._count_refusal(result)
            await self._until_recorded(
                partial(self._dead_letter, record, result.reason), record, "DeadLetter"
            )
        if group:
            await self._handle_group(group)
        if run:
            await self._handle_batch(run)
        self._held_batches = 0
        self.watch.clear()
        HANDLER_SECONDS.labels(self.service, self.route.logical_topic).observe(time.perf_counter() - started)

    def _batched(self, envelope: Envelope[Any]) -> bool:
        return self.route.batch_handler is not None and envelope.type == self.route.batch_type

    async def _maintain_if_due(self) -> None:
        """Hourly: make the dedupe window's partitions ahead, drop those out of it. A failure
        is logged and tried again a minute later; it never holds the messages."""
        now = time.monotonic()
        if self._maintained_at is not None and now - self._maintained_at < dedupe.MAINTENANCE_SECONDS:
            return
        self._maintained_at = now
        try:
            async with self.pool.acquire() as conn:
                dropped = await dedupe.maintain(conn, self.window, self.clock())
                self._days = await dedupe.partition_days(conn)
                self._legacy_inbox = await dedupe.legacy_inbox_in_use(conn, self.consumer, self.window)
        except Exception as exc:
            self._maintained_at = now - dedupe.MAINTENANCE_SECONDS + 60
            log.warning("dedupe window maintenance failed; retrying", error=describe_exception(exc))
            return
        if dropped:
            log.info("dedupe window: days dropped", days=[d.isoformat() for d in dropped])

    async def _ensure_days(self, claims: Iterable[MessageClaim]) -> None:
        """Every claimed day has its partition (made on demand for days not made ahead)."""
        missing = {c.day for c in claims}.difference(self._days)
        if not missing:
            return
        async with self.pool.acquire() as conn:
            await dedupe.ensure_days(conn, missing)
        self._days.update(missing)

    async def _claim(self, conn: DbConnection, claims: list[MessageClaim]) -> ClaimResult:
        try:
            return await dedupe.claim_message_ids(
                conn, self.consumer, claims, legacy_inbox=self._legacy_inbox
            )
        except asyncpg.CheckViolationError:
            await self._learn_days()
            raise

    async def _learn_days(self) -> None:
        """A partition we knew of is gone: learn them again before the next attempt."""
        self._days.clear()
        async with self.pool.acquire() as other:
            self._days = await dedupe.partition_days(other)

    async def _take(self, conn: DbConnection, deliveries: list[Delivery[Any]]) -> TakenRecords:
        """Start the transaction of `deliveries`: locks, redeliveries told apart, ids claimed,
        offsets advanced, in one round trip (`take_records`)."""
        try:
            taken = await take_records(
                conn,
                self.consumer_group,
                self.consumer,
                [d.record for d in deliveries],
                [d.claim() for d in deliveries],
                [message_key(d.envelope) for d in deliveries],
            )
        except asyncpg.CheckViolationError:
            await self._learn_days()
            raise
        if self._legacy_inbox:
            claim = await dedupe.also_in_legacy_inbox(conn, self.consumer, taken.claim)
            taken = TakenRecords(taken.pending, claim)
        return taken

    async def _take_batch(
        self, conn: DbConnection, tx: Transaction, batch: list[Delivery[Any]]
    ) -> tuple[list[Delivery[Any]], ClaimResult]:
        """Start a batch's transaction as `_take` does; returns the records not handled before
        and their claim. A few records in one round trip (`take_records`), many step by step:
        for thousands of records that one round trip costs PostgreSQL more than the four
        statements (32 vs 26 ms for 2,000 records)."""
        if len(batch) <= GROUP_MAX_MESSAGES:
            taken = await self._take(conn, batch)
            fresh_records = set(taken.pending)
            return [d for d in batch if d.record in fresh_records], taken.claim
        records = [d.record for d in batch]
        handled = await lock_handled_offsets(conn, self.consumer_group, records)
        fresh_records = set(not_handled(records, handled))
        pending = [d for d in batch if d.record in fresh_records]
        claim = ClaimResult(fresh=set())
        if pending:
            await tx.lock_keys([message_key(d.envelope) for d in pending])
            claim = await self._claim(conn, [d.claim() for d in pending])
        await advance_handled_offsets(conn, self.consumer_group, records)
        return pending, claim

    async def hold(self, records: list[RawRecord], exc: BaseException) -> None:
        """`process` failed unexpectedly: flag the stall and wait before the batch comes again.

        The caller rewinds the batch (nack) instead of acknowledging it: a later
        acknowledgement would commit past these records."""
        self._held_batches += 1
        self.watch.flag(records[0], exc)
        await pause(self._held_batches, self.is_stopping)

    def _count_refusal(self, refusal: Refusal) -> None:
        if refusal.check is not None:
            ENVELOPE_REFUSED.labels(self.service, self.route.logical_topic, refusal.check).inc()

    async def _until_recorded(
        self, work: Callable[[], Awaitable[None]], record: RawRecord, type_name: str
    ) -> None:
        """Record an outcome, however long it takes: the offset must not move past `record` before.

        Infrastructure failures are retried in place (`_retrying`). Any other failure
        cannot be answered by dead-lettering (this often is the dead letter), so the
        consumer holds its partition — flagged, counted, logged — and tries again."""
        for failures in itertools.count(1):
            try:
                await self._retrying(work, type_name)
            except NOT_A_BUG:
                raise
            except Exception as exc:
                self.watch.flag(record, exc)
                await pause(failures, self.is_stopping)
                continue
            self.watch.clear()
            return

    async def _retrying(self, work: Callable[[], Awaitable[None]], type_name: str) -> None:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(INFRASTRUCTURE_ERRORS),
            wait=wait_exponential(multiplier=0.1, max=5),
            stop=stop_never,
            reraise=True,
            before_sleep=lambda rs: self._infra_failed(rs.outcome, type_name),
        ):
            with attempt:
                if self.is_stopping():
                    raise Stopping
                await work()

    def _infra_failed(self, outcome: Any, type_name: str) -> None:
        FAILED.labels(self.service, self.route.logical_topic, type_name).inc()
        log.warning("infrastructure failure; retrying", error=repr(outcome and outcome.exception()))

    async def _dead_letter(self, record: RawRecord, error: str) -> None:
        """Dead-letter `record` in a transaction of its own, once: a redelivered record (at or
        below its partition's handled offset) is not dead-lettered again."""
        outcome = "redelivered"
        async with self.pool.acquire() as conn, conn.transaction():
            handled = await lock_handled_offsets(conn, self.consumer_group, [record])
            if not_handled([record], handled):
                outcome = "dead_lettered"
                tx = self._new_tx(conn)
                self._write_dead_letter(tx, record, error)
                await tx.flush()
                await advance_handled_offsets(conn, self.consumer_group, [record])
        faults.reach("after_commit")
        HANDLED.labels(self.service, self.route.logical_topic, "-", outcome).inc()

    def _write_dead_letter(self, tx: Transaction, record: RawRecord, error: str) -> None:
        tx.dead_letter(record, error)
        log.warning("message dead-lettered", topic=record.topic, offset=record.offset, error=error[:500])

    async def _handle_group(self, group: list[Delivery[Any]]) -> None:
        """Handle consecutive single-message records in one transaction: one start
        (`take_records`) and one commit for all, each handler called in offset order on the
        same connection, so that a busy consumer pays the round trips of a transaction once
        per fetch instead of once per message.

        When a handler raises (a rejection or a bug), nothing of the group is kept: the
        records before it are handled again as a group, it alone (`_handle_one`: answered,
        or retried and dead-lettered), then the records after it as a group."""
        if len(group) <= 1:
            for delivery in group:
                await self._handle_one(delivery)
            return
        failed: list[int] = []
        try:
            await self._retrying(lambda: self._apply_group(group, failed), "group")
            return
        except NOT_A_BUG:
            raise
        except Exception as exc:
            if not failed:  # not a handler's failure: each record in a transaction of its own
                log.warning("group failed; handling its messages one by one", error=describe_exception(exc))
                for delivery in group:
                    await self._handle_one(delivery)
                return
        at = failed[-1]
        await self._handle_group(group[:at])
        await self._handle_one(group[at])
        await self._handle_group(group[at + 1 :])

    async def _apply_group(self, group: list[Delivery[Any]], failed: list[int]) -> None:
        """One transaction for `group`; appends to `failed` the index of a handler that raised."""
        await self._ensure_days(d.claim() for d in group)
        async with self.pool.acquire() as conn, conn.transaction():
            taken = await self._take(conn, group)
            pending_records = set(taken.pending)
            pending = [d for d in group if d.record in pending_records]
            todo, reused = _first_copies(pending, taken.claim)
            tx = self._new_tx(conn)
            if reused:
                await self._refuse_reused(tx, reused)
            to_handle = {id(d) for d in todo}
            for at, delivery in enumerate(group):
                if id(delivery) not in to_handle:
                    continue
                envelope = delivery.envelope
                _bind_message(envelope)
                try:
                    await self.route.handlers[envelope.type](envelope, tx)
                except NOT_A_BUG:
                    raise
                except Exception:
                    failed.append(at)
                    raise
                finally:
                    _unbind_message()
            self._complete_unanswered(tx, todo)
            await tx.flush()
            await self._release_dead_lettered(tx, todo)
        faults.reach("after_commit")
        topic = self.route.logical_topic
        for delivery in todo:
            envelope = delivery.envelope
            HANDLED.labels(self.service, topic, envelope.type, "applied").inc()
            log.info(
                "message handled",
                outcome="applied",
                message_id=str(envelope.id),
                type=envelope.type,
                customer_id=envelope.customer_id,
                correlation_id=envelope.correlation_id,
                group=len(group),
            )
        for delivery in reused:
            HANDLED.labels(self.service, topic, delivery.envelope.type, "dead_lettered").inc()
        copies = {id(d) for d in todo} | {id(d) for d in reused}
        for delivery in pending:
            if id(delivery) not in copies:
                HANDLED.labels(self.service, topic, delivery.envelope.type, "duplicate").inc()
        for delivery in group:
            if delivery.record not in pending_records:
                HANDLED.labels(self.service, topic, delivery.envelope.type, "redelivered").inc()

    async def _handle_one(self, delivery: Delivery[Any]) -> None:
        envelope = delivery.envelope
        handler = self.route.handlers[envelope.type]
        _bind_message(envelope)
        try:
            for attempt in range(1, BUG_ATTEMPTS + 1):
                try:
                    await self._retrying(lambda: self._apply(delivery, handler), envelope.type)
                    return
                except NOT_A_BUG:
                    raise
                except Exception as exc:
                    FAILED.labels(self.service, self.route.logical_topic, envelope.type).inc()
                    log.exception("handler failed", attempt=attempt)
                    last = exc
            error = f"handler failed: {describe_exception(last)}"
            await self._until_recorded(
                partial(self._dead_letter, delivery.record, error), delivery.record, envelope.type
            )
        finally:
            _unbind_message()

    async def _apply(self, delivery: Delivery[Any], handler: Handler) -> None:
        envelope = delivery.envelope
        await self._ensure_days([delivery.claim()])
        try:
            outcome = await self._apply_once(delivery, handler)
        except DomainError as rejection:  # the one place a domain error becomes an answer
            # Its transaction rolled back with the handler's work (no savepoint per message:
            # two round trips fewer on each); the answer is recorded in a transaction of its
            # own, where redelivery and duplicates are decided afresh.
            outcome = await self._apply_once(delivery, handler, rejection)
        faults.reach("after_commit")
        HANDLED.labels(self.service, self.route.logical_topic, envelope.type, outcome).inc()
        log.info("message handled", outcome=outcome)

    async def _apply_once(
        self, delivery: Delivery[Any], handler: Handler, rejection: DomainError | None = None
    ) -> str:
        """One transaction for `delivery`: run its handler, or with `rejection` (what the
        handler raised in a transaction rolled back since) answer it; returns the outcome."""
        async with self.pool.acquire() as conn, conn.transaction():
            taken = await self._take(conn, [delivery])
            if not taken.pending:
                return "redelivered"
            return await self._apply_claimed(self._new_tx(conn), delivery, handler, taken.claim, rejection)

    async def _apply_claimed(
        self,
        tx: Transaction,
        delivery: Delivery[Any],
        handler: Handler,
        claim: ClaimResult,
        rejection: DomainError | None = None,
    ) -> str:
        """Handle `delivery` whose id is claimed in `tx` (or answer its `rejection`); returns
        the outcome. A domain error the handler raises rolls the whole transaction back."""
        envelope = delivery.envelope
        outcome = "applied"
        if claim.reused(envelope.id, delivery.digest):
            outcome = "dead_lettered"
            await self._refuse_reused(tx, [delivery])
        elif envelope.id not in claim.fresh:
            outcome = "duplicate"
        else:
            if rejection is None:
                await handler(envelope, tx)
                self._complete_unanswered(tx, [delivery])
            else:
                outcome = "rejected"
                if envelope.data.is_command:
                    tx.reject(envelope, rejection.code, rejection.reason)
                else:
                    tx.dead_letter_rejected(delivery.record, rejection)
                log.info("command rejected", code=rejection.code, reason=rejection.reason)
            await tx.flush()
            await self._release_dead_lettered(tx, [delivery])
        return outcome

    def _complete_unanswered(self, tx: Transaction, handled: list[Delivery[Any]]) -> None:
        """Every command is answered: one whose handler published nothing on the service's
        events topic (and dead-lettered nothing) gets CommandCompleted "nothing_to_do"."""
        dead = set(tx.dead_lettered)
        for delivery in handled:
            envelope = delivery.envelope
            if envelope.data.is_command and envelope.id not in tx.answered and delivery.record not in dead:
                tx.publish(
                    envelope,
                    CommandCompleted(
                        command_id=str(envelope.id), command_type=envelope.type, outcome=NOTHING_TO_DO
                    ),
                )
                log.info("command completed with nothing to do", command_type=envelope.type)

    async def _release_dead_lettered(self, tx: Transaction, handled: list[Delivery[Any]]) -> None:
        """A message its handler dead-lettered was not applied: its id leaves the dedupe window,
        so that `tally replay` of it (same id, new offset) is handled, not dropped as a
        duplicate. A redelivery of the same offset stays one: the offset is handled."""
        if not tx.dead_lettered:
            return
        dead = set(tx.dead_lettered)
        released = [d.claim() for d in handled if d.record in dead]
        await dedupe.release_message_ids(tx.conn, self.consumer, released)

    async def _refuse_reused(self, tx: Transaction, deliveries: list[Delivery[Any]]) -> None:
        for delivery in deliveries:
            refusal = id_reused(delivery.envelope.id)
            self._count_refusal(refusal)
            self._write_dead_letter(tx, delivery.record, refusal.reason)
        await tx.flush()

    async def _handle_batch(self, batch: list[Delivery[Any]]) -> None:
        assert self.route.batch_handler is not None
        handler = self.route.batch_handler
        for attempt in range(1, BUG_ATTEMPTS + 1):
            try:
                await self._retrying(lambda: self._apply_batch(batch, handler), "batch")
                return
            except NOT_A_BUG:
                raise
            except Exception:
                FAILED.labels(self.service, self.route.logical_topic, self.route.batch_type or "-").inc()
                log.exception("batch handler failed", attempt=attempt, size=len(batch))
        if len(batch) == 1:
            record = batch[0].record
            await self._until_recorded(
                partial(self._dead_letter, record, "batch handler failed repeatedly"), record, "batch"
            )
            return
        for delivery in batch:  # isolate the poison: one message per transaction
            await self._handle_batch([delivery])

    async def _apply_batch(self, batch: list[Delivery[Any]], handler: BatchHandler) -> None:
        await self._ensure_days(d.claim() for d in batch)
        todo: list[Delivery[Any]] = []
        reused: list[Delivery[Any]] = []
        async with self.pool.acquire() as conn, conn.transaction():
            tx = self._new_tx(conn)
            pending, claim = await self._take_batch(conn, tx, batch)
            if pending:
                todo, reused = _first_copies(pending, claim)
                if reused:
                    await self._refuse_reused(tx, reused)
                if todo:
                    await handler(todo, tx)
                    self._complete_unanswered(tx, todo)
                    await self._release_dead_lettered(tx, todo)
                await tx.flush()
        faults.reach("after_commit")
        labels = (self.service, self.route.logical_topic, self.route.batch_type or "-")
        HANDLED.labels(*labels, "applied").inc(len(todo))
        HANDLED.labels(*labels, "dead_lettered").inc(len(reused))
        HANDLED.labels(*labels, "duplicate").inc(len(pending) - len(todo) - len(reused))
        HANDLED.labels(*labels, "redelivered").inc(len(batch) - len(pending))


def _bind_message(envelope: Envelope[Any]) -> None:
    """Name the message in every log line until `_unbind_message`."""
    structlog.contextvars.bind_contextvars(
        message_id=str(envelope.id),
        type=envelope.type,
        customer_id=envelope.customer_id,
        correlation_id=envelope.correlation_id,
    )


def _unbind_message() -> None:
    structlog.contextvars.unbind_contextvars("message_id", "type", "customer_id", "correlation_id")


def _first_copies(
    batch: list[Delivery[Any]], claim: ClaimResult
) -> tuple[list[Delivery[Any]], list[Delivery[Any]]]:
    """The deliveries to handle (first copy of each new id, in arrival order), and those
    that reuse an id with another body (than the one handled before, or earlier in the batch)."""
    todo: list[Delivery[Any]] = []
    reused: list[Delivery[Any]] = []
    first: dict[Any, bytes] = {}
    for delivery in batch:
        message_id, digest = delivery.envelope.id, delivery.digest
        if message_id in claim.fresh and message_id not in first:
            first[message_id] = digest
            todo.append(delivery)
        elif claim.reused(message_id, digest) or first.get(message_id, digest) != digest:
            reused.append(delivery)
    return todo, reused
