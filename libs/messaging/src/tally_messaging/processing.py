"""Handling received records exactly once: parse, dedupe, run the handler, write the
outbox, commit — one PostgreSQL transaction per message (or per batch for batch
handlers). Infrastructure failures are retried in place, so an offset is never
committed past a message that was not handled; a message that fails validation, or a
handler bug that persists, goes to the DLQ and the consumer keeps going."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import asyncpg
import structlog
from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_never, wait_exponential

from tally_contracts import Envelope, parse_message
from tally_contracts.topics import TOPIC_MESSAGES
from tally_messaging import faults
from tally_messaging.db import DbConnection
from tally_messaging.metrics import FAILED, HANDLED, HANDLER_SECONDS
from tally_messaging.transaction import (
    RawRecord,
    Rejected,
    Transaction,
    claim_inbox,
    describe_exception,
    message_key,
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


@dataclass(frozen=True, slots=True)
class Delivery:
    envelope: Envelope[Any]
    record: RawRecord


Handler = Callable[[Envelope[Any], Transaction], Awaitable[None]]
BatchHandler = Callable[[list[Delivery], Transaction], Awaitable[None]]


class Stopping(Exception):
    """The service is shutting down; the batch is left uncommitted for redelivery."""


NOT_A_BUG: tuple[type[BaseException], ...] = (Stopping, *INFRASTRUCTURE_ERRORS)
"""Raised through the bug-retry loop: handled by the in-place retry or the shutdown."""


@dataclass
class TopicRoute:
    logical_topic: str
    handlers: dict[str, Handler]
    batch_handler: BatchHandler | None = None
    batch_type: str | None = None
    allowed_types: frozenset[str] | None = None

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

    def _new_tx(self, conn: DbConnection) -> Transaction:
        return Transaction(conn, self.consumer, self.events_topic, self.topic_prefix)

    def _parse(self, record: RawRecord) -> Envelope[Any] | str:
        """The envelope, or the reason it is unusable."""
        try:
            envelope = parse_message(record.value)
        except ValidationError as exc:
            return f"invalid message: {exc}"
        except ValueError as exc:
            return f"invalid message: {exc}"
        if not self.route.accepts(envelope.type):
            return f"message type {envelope.type} does not belong on topic {self.route.logical_topic}"
        return envelope

    async def process(self, records: list[RawRecord]) -> None:
        """Handle every record; returns once all are durably handled (or dead-lettered)."""
        started = time.perf_counter()
        parsed = [(r, self._parse(r)) for r in records]
        batch: list[Delivery] = []
        for record, result in parsed:
            if isinstance(result, str):
                await self._retrying(partial(self._dead_letter, record, result), "DeadLetter")
            elif self.route.batch_handler is not None and result.type == self.route.batch_type:
                batch.append(Delivery(result, record))
            else:
                await self._handle_one(Delivery(result, record))
        if batch:
            await self._handle_batch(batch)
        HANDLER_SECONDS.labels(self.service, self.route.logical_topic).observe(time.perf_counter() - started)

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
            if await claim_inbox(conn, self.consumer, [record.synthetic_id()]):
                tx.dead_letter(record, error)
                await tx.flush()
        faults.reach("after_commit")
        HANDLED.labels(self.service, self.route.logical_topic, "-", "dead_lettered").inc()
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
            await self._retrying(
                lambda: self._dead_letter(delivery.record, f"handler failed: {describe_exception(last)}"),
                envelope.type,
            )
        finally:
            structlog.contextvars.unbind_contextvars("message_id", "type", "customer_id", "correlation_id")

    async def _apply(self, delivery: Delivery, handler: Handler) -> None:
        envelope = delivery.envelope
        outcome = "applied"
        async with self.pool.acquire() as conn, conn.transaction():
            tx = self._new_tx(conn)
            await tx.lock_keys([message_key(envelope)])
            if not await claim_inbox(conn, self.consumer, [envelope.id]):
                outcome = "duplicate"
            else:
                try:
                    async with conn.transaction():  # a savepoint: a rejection undoes the handler
                        await handler(envelope, tx)
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
        faults.reach("after_commit")
        HANDLED.labels(self.service, self.route.logical_topic, envelope.type, outcome).inc()
        log.info("message handled", outcome=outcome)

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
                log.exception("batch handler failed", attempt=attempt, size=len(batch))
        if len(batch) == 1:
            await self._retrying(
                lambda: self._dead_letter(batch[0].record, "batch handler failed repeatedly"),
                "batch",
            )
            return
        for delivery in batch:  # isolate the poison: one message per transaction
            await self._handle_batch([delivery])

    async def _apply_batch(self, batch: list[Delivery], handler: BatchHandler) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            tx = self._new_tx(conn)
            await tx.lock_keys([message_key(d.envelope) for d in batch])
            fresh = await claim_inbox(conn, self.consumer, [d.envelope.id for d in batch])
            todo: list[Delivery] = []
            for delivery in batch:  # first copy of each id only, in arrival order
                if delivery.envelope.id in fresh:
                    fresh.discard(delivery.envelope.id)
                    todo.append(delivery)
            if todo:
                await handler(todo, tx)
            await tx.flush()
        faults.reach("after_commit")
        labels = (self.service, self.route.logical_topic, self.route.batch_type or "-")
        HANDLED.labels(*labels, "applied").inc(len(todo))
        HANDLED.labels(*labels, "duplicate").inc(len(batch) - len(todo))
