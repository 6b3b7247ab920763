"""Handling received records exactly once: parse, check, dedupe, run the handler, write
the outbox, commit — one PostgreSQL transaction per message (or per batch for batch
handlers).

The rule: an offset never moves past a message that was neither applied, answered
with CommandRejected, nor dead-lettered. Infrastructure failures are retried in place;
a message that fails validation or an envelope check, or a handler bug that persists,
goes to the DLQ and the consumer keeps going; and when even recording an outcome fails
for another reason, the consumer holds its partition (`tally_consumer_stalled`, an
error log naming the offset, /health 503; see `stalls.py`) and retries until it passes.

Every command is answered: by the events its handler published, CommandRejected, a dead
letter, or — when its handler committed without publishing anything on the service's
events topic — CommandCompleted(outcome="nothing_to_do"), added here once for all services.

The inbox: a message id is claimed when its message is applied or rejected. A message
dead-lettered after parsing gives its id back and claims its record's synthetic id
(topic/partition/offset) instead, so `tally replay` (same id, new offset) is handled
while a redelivery of the same offset stays a duplicate."""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import asyncpg
import structlog
from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_never, wait_exponential

from tally_contracts import CommandCompleted, Envelope, parse_message
from tally_contracts.topics import TOPIC_MESSAGES
from tally_messaging import faults
from tally_messaging.db import DbConnection
from tally_messaging.envelope_checks import Refusal, check_envelope, id_reused
from tally_messaging.metrics import ENVELOPE_REFUSED, FAILED, HANDLED, HANDLER_SECONDS
from tally_messaging.stalls import StallWatch, pause
from tally_messaging.stalls import Stopping as Stopping  # re-exported: the service catches it
from tally_messaging.transaction import (
    InboxClaim,
    RawRecord,
    Rejected,
    Transaction,
    claim_inbox,
    describe_exception,
    message_key,
    settle_dead_lettered,
)

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

NOTHING_TO_DO = "nothing_to_do"
"""CommandCompleted's outcome for a command whose handler published no event."""


@dataclass(frozen=True, slots=True)
class Delivery:
    envelope: Envelope[Any]
    record: RawRecord


Handler = Callable[[Envelope[Any], Transaction], Awaitable[None]]
BatchHandler = Callable[[list[Delivery], Transaction], Awaitable[None]]


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
        events_topic: str,
        topic_prefix: str,
        is_stopping: Callable[[], bool],
    ) -> None:
        self.service = service
        self.pool = pool
        self.route = route
        self.consumer = consumer
        self.events_topic = events_topic
        self.topic_prefix = topic_prefix
        self.is_stopping = is_stopping
        self._held_batches = 0
        self.watch = route.watch = StallWatch(service, route.logical_topic)

    def _new_tx(self, conn: DbConnection) -> Transaction:
        return Transaction(conn, self.consumer, self.events_topic, self.topic_prefix)

    def _parse(self, record: RawRecord) -> Envelope[Any] | Refusal:
        """The envelope, or why it is unusable."""
        try:
            envelope = parse_message(record.value)
        except ValidationError as exc:
            return Refusal(f"invalid message: {exc}")
        except ValueError as exc:
            return Refusal(f"invalid message: {exc}")
        if not self.route.accepts(envelope.type):
            return Refusal(
                f"message type {envelope.type} does not belong on topic {self.route.logical_topic}"
            )
        return check_envelope(record, envelope) or envelope

    async def process(self, records: list[RawRecord]) -> None:
        """Handle every record; returns once each is applied, rejected or dead-lettered."""
        started = time.perf_counter()
        parsed = [(r, self._parse(r)) for r in records]
        batch: list[Delivery] = []
        for record, result in parsed:
            if isinstance(result, Refusal):
                self._count_refusal(result)
                await self._until_recorded(
                    partial(self._dead_letter, record, result.reason), record, "DeadLetter"
                )
            elif self.route.batch_handler is not None and result.type == self.route.batch_type:
                batch.append(Delivery(result, record))
            else:
                await self._handle_one(Delivery(result, record))
        if batch:
            await self._handle_batch(batch)
        self._held_batches = 0
        self.watch.clear()
        HANDLER_SECONDS.labels(self.service, self.route.logical_topic).observe(time.perf_counter() - started)

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
        async with self.pool.acquire() as conn, conn.transaction():
            tx = self._new_tx(conn)
            await self._write_dead_letter(tx, record, error)
        faults.reach("after_commit")
        HANDLED.labels(self.service, self.route.logical_topic, "-", "dead_lettered").inc()

    async def _write_dead_letter(self, tx: Transaction, record: RawRecord, error: str) -> None:
        """Dead-letter `record` inside `tx`, once: a redelivered record is not dead-lettered again."""
        claim = await claim_inbox(tx.conn, self.consumer, [(record.synthetic_id(), None)])
        if claim.fresh:
            tx.dead_letter(record, error)
            await tx.flush()
        log.warning("message dead-lettered", topic=record.topic, offset=record.offset, error=error[:500])

    async def _handle_one(self, delivery: Delivery) -> None:
        envelope = delivery.envelope
        handler = self.route.handlers.get(envelope.type)
        structlog.contextvars.bind_contextvars(
            message_id=str(envelope.id),
            type=envelope.type,
            customer_id=envelope.customer_id,
            correlation_id=envelope.correlation_id,
        )
        try:
            if handler is None:
                HANDLED.labels(self.service, self.route.logical_topic, envelope.type, "ignored").inc()
                return
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
            structlog.contextvars.unbind_contextvars("message_id", "type", "customer_id", "correlation_id")

    async def _apply(self, delivery: Delivery, handler: Handler) -> None:
        envelope, digest = delivery.envelope, delivery.record.body_digest()
        outcome = "applied"
        async with self.pool.acquire() as conn, conn.transaction():
            tx = self._new_tx(conn)
            await tx.lock_keys([message_key(envelope)])
            claim = await claim_inbox(conn, self.consumer, [(envelope.id, digest)], [delivery.record])
            if claim.settled:
                outcome = "duplicate"  # this very offset was dead-lettered before
            elif claim.reused(envelope.id, digest):
                outcome = "dead_lettered"
                await self._refuse_reused(tx, [delivery])
            elif envelope.id not in claim.fresh:
                outcome = "duplicate"
            else:
                try:
                    async with conn.transaction():  # a savepoint: a rejection undoes the handler
                        await handler(envelope, tx)
                        self._complete_unanswered(tx, [delivery])
                        await tx.flush()
                except Rejected as rejection:
                    tx.discard()
                    outcome = "rejected"
                    if envelope.data.is_command:
                        tx.reject(envelope, rejection.code, rejection.reason)
                    else:
                        tx.dead_letter(delivery.record, f"rejected: {rejection}")
                    await tx.flush()
                    log.info("command rejected", code=rejection.code, reason=rejection.reason)
                await self._settle_dead_lettered(tx, [delivery])
        faults.reach("after_commit")
        HANDLED.labels(self.service, self.route.logical_topic, envelope.type, outcome).inc()
        log.info("message handled", outcome=outcome)

    def _complete_unanswered(self, tx: Transaction, handled: list[Delivery]) -> None:
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

    async def _settle_dead_lettered(self, tx: Transaction, handled: list[Delivery]) -> None:
        """A message its handler dead-lettered was not applied: its id leaves the inbox, so
        that `tally replay` of it (same id, new offset) is handled, not dropped as a
        duplicate; its record's synthetic id is claimed, so that a redelivery of the same
        offset is one (see `settle_dead_lettered`)."""
        if not tx.dead_lettered:
            return
        dead = set(tx.dead_lettered)
        settled = [d for d in handled if d.record in dead]
        if settled:
            await settle_dead_lettered(
                tx.conn, self.consumer, [d.envelope.id for d in settled], [d.record for d in settled]
            )

    async def _refuse_reused(self, tx: Transaction, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            refusal = id_reused(delivery.envelope.id)
            self._count_refusal(refusal)
            await self._write_dead_letter(tx, delivery.record, refusal.reason)

    async def _handle_batch(self, batch: list[Delivery]) -> None:
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

    async def _apply_batch(self, batch: list[Delivery], handler: BatchHandler) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            tx = self._new_tx(conn)
            await tx.lock_keys([message_key(d.envelope) for d in batch])
            digests = [d.record.body_digest() for d in batch]
            claim = await claim_inbox(
                conn,
                self.consumer,
                [(d.envelope.id, h) for d, h in zip(batch, digests, strict=True)],
                [d.record for d in batch],
            )
            todo, reused = _first_copies(batch, digests, claim)
            if reused:
                await self._refuse_reused(tx, reused)
            if todo:
                await handler(todo, tx)
                self._complete_unanswered(tx, todo)
                await self._settle_dead_lettered(tx, todo)
            await tx.flush()
        faults.reach("after_commit")
        labels = (self.service, self.route.logical_topic, self.route.batch_type or "-")
        HANDLED.labels(*labels, "applied").inc(len(todo))
        HANDLED.labels(*labels, "dead_lettered").inc(len(reused))
        HANDLED.labels(*labels, "duplicate").inc(len(batch) - len(todo) - len(reused))


def _first_copies(
    batch: list[Delivery], digests: list[bytes], claim: InboxClaim
) -> tuple[list[Delivery], list[Delivery]]:
    """The deliveries to handle (first copy of each new id, in arrival order), and those
    that reuse an id with another body (than the one handled before, or earlier in the batch)."""
    todo: list[Delivery] = []
    reused: list[Delivery] = []
    first: dict[Any, bytes] = {}
    for delivery, digest in zip(batch, digests, strict=True):
        message_id = delivery.envelope.id
        if claim.settled and delivery.record.synthetic_id() in claim.settled:
            continue  # this very offset was dead-lettered before: a duplicate
        if message_id in claim.fresh and message_id not in first:
            first[message_id] = digest
            todo.append(delivery)
        elif claim.reused(message_id, digest) or first.get(message_id, digest) != digest:
            reused.append(delivery)
    return todo, reused
