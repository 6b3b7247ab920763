"""Transactional outbox: rows written with the state change, published by the relay.

The relay is one task per service instance; a PostgreSQL advisory lock makes only one
instance relay at a time, which keeps rows in id order, so per-key order holds. It
sends a batch with an idempotent producer (acks=all), waits for every ack, then deletes
the batch. Per-key order holds because every handler transaction takes a per-key lock
before writing (see `transaction.py`), so one key's rows get ids in commit order. A crash between send and delete re-sends: consumers drop the duplicate by
message id in their inbox. LISTEN/NOTIFY wakes it at once; a poll covers missed wakes.

One row never wedges the relay: a row Kafka refuses for good (too large for the topic,
an invalid topic name) is tried once more on its own, then moved to
`tally_outbox_rejected` with the reason (an alert log line and
`tally_outbox_set_aside_total`), and the rows behind it flow. Rows after a failed one
are sent again on the next round, so per-key order holds (the inbox drops the copies).
"""

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from tally_messaging import faults
from tally_messaging.db import DbConnection
from tally_messaging.kafka_security import KafkaCredentials, client_options
from tally_messaging.metrics import OUTBOX_BACKLOG, OUTBOX_SET_ASIDE, RELAYED

log = structlog.get_logger()
_RELAY_LOCK_KEY = 0x7A11_0002
_POLL_SECONDS = 1.0

REFUSED_FOR_GOOD: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    InvalidTopicError,
    CorruptRecordException,
    UnsupportedForMessageFormatError,
)
"""Kafka's answers about one record that no retry changes: the row is set aside."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    topic: str
    key: str
    type: str
    payload: bytes


async def write_outbox(conn: DbConnection, rows: list[OutboxRow]) -> None:
    if not rows:
        return
    await conn.executemany(
        "insert into tally_outbox (topic, key, type, payload) values ($1, $2, $3, $4)",
        [(r.topic, r.key, r.type, r.payload) for r in rows],
    )


class OutboxRelay:
    def __init__(
        self,
        service: str,
        dsn: str,
        bootstrap: str,
        batch_size: int = 1000,
        credentials: KafkaCredentials | None = None,
    ) -> None:
        self._service = service
        self._dsn = dsn
        self._bootstrap = bootstrap
        self._credentials = credentials
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.healthy = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run_forever(), name=f"{self._service}-outbox-relay")

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=10)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run_forever(self) -> None:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential(multiplier=0.2, max=5),
            before_sleep=lambda rs: log.warning(
                "outbox relay failed; retrying", error=repr(rs.outcome and rs.outcome.exception())
            ),
        ):
            with attempt:
                self.healthy = False
                await self._run()
                return

    async def _run(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=0,  # a batch's rows are queued at once, so they share requests anyway;
            # waiting for more only added 5 ms to every hop of a flow
            max_batch_size=1024 * 1024,
            client_id=f"{self._service}-relay",
            **client_options(self._credentials),
        )
        try:
            await conn.add_listener("tally_outbox", lambda *_: self._wake.set())
            await producer.start()
            # Only one instance relays; the others wait here (and take over on its death).
            while not await conn.fetchval("select pg_try_advisory_lock($1)", _RELAY_LOCK_KEY):
                self.healthy = True
                if await self._sleep(_POLL_SECONDS):
                    return
            while not self._stopping.is_set():
                sent = await self._relay_batch(conn, producer)
                self.healthy = True  # only once a batch went through: a stuck relay is unhealthy
                if sent < self._batch_size and await self._sleep(_POLL_SECONDS):
                    return
        finally:
            with contextlib.suppress(Exception):
                await producer.stop()
            with contextlib.suppress(Exception):
                await conn.close()

    async def _sleep(self, seconds: float) -> bool:
        """Wait for a wake-up or the poll interval; True when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()
        return self._stopping.is_set()

    async def _relay_batch(self, conn: DbConnection, producer: AIOKafkaProducer) -> int:
        """Publish the oldest rows; returns how many were published or set aside."""
        rows = await conn.fetch(
            "select id, topic, key, type, payload from tally_outbox order by id limit $1",
            self._batch_size,
        )
        # Counted only when the batch is full: a shorter batch is the whole backlog, and one
        # round trip fewer per wake-up is latency on every hop of a flow.
        backlog = len(rows)
        if backlog == self._batch_size:
            backlog = int(await conn.fetchval("select count(*) from tally_outbox"))
        OUTBOX_BACKLOG.labels(self._service).set(backlog)  # before sending: a stuck relay shows it
        if not backlog:
            return 0
        faults.reach("relay_before_publish")
        sent = [await _send(producer, r) for r in rows]
        outcomes = await asyncio.gather(*sent, return_exceptions=True)
        faults.reach("relay_before_delete")
        failed = next((n for n, outcome in enumerate(outcomes) if isinstance(outcome, BaseException)), None)
        done = rows if failed is None else rows[:failed]  # later rows go again next round: order holds
        # Exact ids: a row with a smaller id may commit later (another key) and is still due.
        await conn.execute("delete from tally_outbox where id = any($1::bigint[])", [r["id"] for r in done])
        RELAYED.labels(self._service).inc(len(done))
        if failed is not None:
            error = outcomes[failed]
            assert isinstance(error, BaseException)
            if not isinstance(error, REFUSED_FOR_GOOD):
                raise error
            await self._publish_alone_or_set_aside(conn, producer, rows[failed])
            done = rows[: failed + 1]
        OUTBOX_BACKLOG.labels(self._service).set(max(backlog - len(done), 0))
        return len(done)

    async def _publish_alone_or_set_aside(
        self, conn: DbConnection, producer: AIOKafkaProducer, row: asyncpg.Record
    ) -> None:
        """Send a refused row on its own (it may have shared a batch with the culprit); if
        Kafka refuses it again, move it to `tally_outbox_rejected`."""
        try:
            await (await _send(producer, row))
        except REFUSED_FOR_GOOD as exc:
            reason = f"{type(exc).__name__}: {exc}".replace("\x00", "")[:2000]
            async with conn.transaction():
                await conn.execute(
                    "insert into tally_outbox_rejected (id, topic, key, type, payload, created_at, reason)"
                    " select id, topic, key, type, payload, created_at, $2 from tally_outbox where id = $1",
                    row["id"],
                    reason,
                )
                await conn.execute("delete from tally_outbox where id = $1", row["id"])
            OUTBOX_SET_ASIDE.labels(self._service, row["topic"]).inc()
            log.error(
                "ALERT outbox row refused by Kafka; set aside in tally_outbox_rejected",
                outbox_id=row["id"],
                topic=row["topic"],
                type=row["type"],
                bytes=len(row["payload"]),
                reason=reason,
            )
            return
        await conn.execute("delete from tally_outbox where id = $1", row["id"])
        RELAYED.labels(self._service).inc()


async def _send(producer: AIOKafkaProducer, row: asyncpg.Record) -> asyncio.Future[Any]:
    """Queue `row` for sending; its future fails with what Kafka answered. A record the
    producer refuses before sending (over `max_request_size`) gets a failed future too."""
    try:
        queued: asyncio.Future[Any] = await producer.send(
            row["topic"],
            value=bytes(row["payload"]),
            key=row["key"].encode(),
            headers=[("type", row["type"].encode())],
        )
    except REFUSED_FOR_GOOD as exc:
        refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        refused.set_exception(exc)
        return refused
    return queued
