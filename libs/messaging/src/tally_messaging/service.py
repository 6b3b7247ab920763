"""A Tally service process: FastStream subscribers wired to exactly-once handlers, the
outbox relay, migrations at start, `/health` + `/metrics` and the read API over HTTP on
127.0.0.1. Start-up waits for PostgreSQL and Kafka (see `startup.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

import asyncpg
import structlog
import uvicorn
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tally_contracts import Envelope, MessageData
from tally_contracts.identifiers import MAX_ID_LENGTH, has_control_character
from tally_contracts.topics import dlq
from tally_messaging.consumed_offsets import SeekPastHandled
from tally_messaging.dedupe import DedupeWindow
from tally_messaging.kafka_security import bootstrap_servers, broker_security, kafka_credentials
from tally_messaging.logs import configure_logging
from tally_messaging.metrics import CONSUMER_LAG
from tally_messaging.migrations import apply_migrations
from tally_messaging.outbox import OutboxRelay
from tally_messaging.processing import (
    INFRASTRUCTURE_ERRORS,
    Handler,
    RecordProcessor,
    Stopping,
    TopicRoute,
)
from tally_messaging.registration import BatchMessageHandler, MessageHandler, Registration
from tally_messaging.settings import ServiceSettings
from tally_messaging.startup import DATABASE_UNAVAILABLE, KAFKA_UNAVAILABLE, Startup, StartupTimedOut
from tally_messaging.topic_admin import create_missing_topics
from tally_messaging.transaction import RawRecord, describe_exception

log = structlog.get_logger()
A = TypeVar("A", bound=MessageData)
B = TypeVar("B", bound=MessageData)
C = TypeVar("C", bound=MessageData)
D = TypeVar("D", bound=MessageData)
E = TypeVar("E", bound=MessageData)
Endpoint = Callable[[Request], Awaitable[Response]]


class Service:
    def __init__(
        self,
        name: str,
        *,
        events_topic: str,
        default_http_port: int,
        migrations_package: str | None = None,
        settings: ServiceSettings | None = None,
    ) -> None:
        self.name = name
        self.settings = settings or ServiceSettings()
        self.events_topic = events_topic
        self.migrations_package = migrations_package or name
        self.routes: dict[str, TopicRoute] = {}
        self.registrations: list[Registration] = []
        """What `handles` and `handles_batch` registered, in order (the AsyncAPI source)."""
        self.http_routes: list[Route] = []
        self._pool: asyncpg.Pool | None = None
        self._broker: KafkaBroker | None = None
        self._relay: OutboxRelay | None = None
        self._server: uvicorn.Server | None = None
        self._server_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._subscribers: list[tuple[str, Any]] = []
        self._lag_task: asyncio.Task[None] | None = None
        self._startup = Startup(self.settings.startup_timeout_seconds)
        self.http_port = self.settings.http_port or default_http_port

    # -- declaring -------------------------------------------------------------------

    def _route(self, topic: str) -> TopicRoute:
        return self.routes.setdefault(topic, TopicRoute(logical_topic=topic, handlers={}))

    def consumes(self, *topics: str) -> None:
        """Subscribe to `topics` (validation and the DLQ apply even before any handler)."""
        for topic in topics:
            self._route(topic)

    @overload
    def handles(self, topic: str, a: type[A], /) -> Callable[[MessageHandler[A]], MessageHandler[A]]: ...
    @overload
    def handles(
        self, topic: str, a: type[A], b: type[B], /
    ) -> Callable[[MessageHandler[A | B]], MessageHandler[A | B]]: ...
    @overload
    def handles(
        self, topic: str, a: type[A], b: type[B], c: type[C], /
    ) -> Callable[[MessageHandler[A | B | C]], MessageHandler[A | B | C]]: ...
    @overload
    def handles(
        self, topic: str, a: type[A], b: type[B], c: type[C], d: type[D], /
    ) -> Callable[[MessageHandler[A | B | C | D]], MessageHandler[A | B | C | D]]: ...
    @overload
    def handles(
        self, topic: str, a: type[A], b: type[B], c: type[C], d: type[D], e: type[E], /
    ) -> Callable[[MessageHandler[A | B | C | D | E]], MessageHandler[A | B | C | D | E]]: ...
    def handles(self, topic: str, *types: type[MessageData]) -> Callable[[Handler], Handler]:
        """Register a handler for messages of `types` arriving on `topic`.

        The handler takes an `Envelope` of those types (`Envelope[A | B]` for two), and
        mypy rejects one whose envelope is of another type."""

        def register(handler: Handler) -> Handler:
            self._register(Registration(topic, types))
            route = self._route(topic)
            for t in types:
                route.handlers[t.message_type()] = handler
            return handler

        return register

    def handles_batch(
        self, topic: str, type_: type[A], *, decode: Callable[[bytes], Envelope[Any]] | None = None
    ) -> Callable[[BatchMessageHandler[A]], BatchMessageHandler[A]]:
        """Register a handler that receives every `type_` message of a fetched batch at once.

        `decode` reads the topic's records instead of `parse_message`: a faster decoder that
        gives the same envelopes and leaves what it is unsure of to `parse_message`."""

        def register(handler: BatchMessageHandler[A]) -> BatchMessageHandler[A]:
            self._register(Registration(topic, (type_,), batch=True))
            route = self._route(topic)
            route.batch_handler = handler
            route.batch_type = type_.message_type()
            if decode is not None:
                route.decode = decode
            return handler

        return register

    def _register(self, registration: Registration) -> None:
        """Record `registration`; a type with a handler on the topic already is refused (the
        second registration would silently replace the first)."""
        taken = {n for r in self.registrations if r.topic == registration.topic for n in r.type_names}
        twice = sorted(taken.intersection(registration.type_names))
        if twice:
            raise ValueError(f"{self.name}: {', '.join(twice)} on {registration.topic} has a handler already")
        self.registrations.append(registration)

    def get(self, path: str) -> Callable[[Endpoint], Endpoint]:
        """Register a read endpoint behind the read API's rules (see `_read_endpoint`)."""

        def register(endpoint: Endpoint) -> Endpoint:
            self.http_routes.append(Route(path, self._read_endpoint(path, endpoint), methods=["GET"]))
            return endpoint

        return register

    def query(self, path: str) -> Callable[[Endpoint], Endpoint]:
        """Register a read-only computation on a JSON body (POST, e.g. a dry run) behind the
        read API's rules. It must change nothing: state changes come only from messages."""

        def register(endpoint: Endpoint) -> Endpoint:
            self.http_routes.append(Route(path, self._read_endpoint(path, endpoint), methods=["POST"]))
            return endpoint

        return register

    def _read_endpoint(self, path: str, endpoint: Endpoint) -> Endpoint:
        """`endpoint` with the rules every read route shares: each path parameter is an id
        (400 with a reason when it holds a control character or is over `MAX_ID_LENGTH`,
        before it reaches the database, which refuses NUL); 503 while starting or while
        the database is unreachable; any other failure a short JSON 500, the traceback
        in the log only."""

        @functools.wraps(endpoint)
        async def read(request: Request) -> Response:
            for name, value in request.path_params.items():
                problem = _id_problem(name, value)
                if problem is not None:
                    return JSONResponse({"error": problem, "parameter": name}, status_code=400)
            if not self._startup.ready:
                return JSONResponse({"error": "starting; retry later"}, status_code=503)
            try:
                return await endpoint(request)
            except INFRASTRUCTURE_ERRORS as exc:
                log.warning("read endpoint unavailable", route=path, error=describe_exception(exc))
                return JSONResponse({"error": "temporarily unavailable; retry later"}, status_code=503)
            except Exception:
                log.exception("read endpoint failed", route=path)
                return JSONResponse({"error": "internal error"}, status_code=500)

        return read

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._pool

    # -- running ---------------------------------------------------------------------

    async def start(self) -> None:
        """HTTP first, so `/health` answers 503 "starting" with what is awaited; then the
        database (pool + migrations) and Kafka (topics, then the broker), each retried with
        backoff for up to `startup_timeout_seconds` (StartupTimedOut after that)."""
        s = self.settings
        self._startup.begin()
        await self._start_http()
        self._pool = await self._startup.wait_for("database", self._open_database, DATABASE_UNAVAILABLE)
        credentials = kafka_credentials(s, self.name)
        # Only the topics it uses: under ACLs a service sees no others, and creates none.
        used = (self.events_topic, *self.routes, *(dlq(topic) for topic in self.routes))
        await self._startup.wait_for(
            "kafka",
            lambda: create_missing_topics(s.kafka_bootstrap, s.topic_prefix, used, credentials=credentials),
            KAFKA_UNAVAILABLE,
        )
        self._relay = OutboxRelay(
            self.name, s.dsn(self.name), s.kafka_bootstrap, s.relay_batch_size, credentials=credentials
        )
        self._relay.start()
        self._broker = KafkaBroker(
            bootstrap_servers(s.kafka_bootstrap),
            client_id=self.name,
            logger=None,
            security=broker_security(credentials),
        )
        for route in self.routes.values():
            self._subscribe(route)
        await self._startup.wait_for("kafka", self._start_broker, KAFKA_UNAVAILABLE)
        self._startup.done()
        self._lag_task = asyncio.create_task(self._measure_lag())
        log.info("service started", http_port=self.http_port, topics=list(self.routes))

    async def _open_database(self) -> asyncpg.Pool:
        """A pool on the service's database, migrated (the runtime's tables, then its own)."""
        s = self.settings
        pool = await asyncpg.create_pool(
            s.dsn(self.name), min_size=1, max_size=s.pool_max_size, timeout=10, reset=_keep_session
        )
        try:
            async with pool.acquire() as conn:
                await apply_migrations(conn, "tally_messaging", "sql")
                await apply_migrations(conn, self.migrations_package)
        except BaseException:
            pool.terminate()
            raise
        return pool

    async def _start_broker(self) -> None:
        """Start the consumers; a failed start is undone so that the next attempt is clean."""
        assert self._broker is not None
        try:
            await self._broker.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await self._broker.stop()
            raise

    def _subscribe(self, route: TopicRoute) -> None:
        assert self._broker is not None and self._pool is not None
        s = self.settings
        group_id = f"{s.group_prefix}{self.name}.{route.logical_topic}"
        processor = RecordProcessor(
            service=self.name,
            pool=self._pool,
            route=route,
            consumer=f"{self.name}:{route.logical_topic}",
            consumer_group=group_id,
            events_topic=s.topic(self.events_topic),
            topic_prefix=s.topic_prefix,
            is_stopping=lambda: self._stopping,
            window=DedupeWindow(s.dedupe_window_days),
        )
        # On assignment, seek past what the database says is handled (the subscriber's
        # consumer exists once the broker starts it, before any assignment).
        seek = SeekPastHandled(group_id, lambda: self._pool, lambda: getattr(subscriber, "consumer", None))
        subscriber = self._broker.subscriber(
            s.topic(route.logical_topic),
            group_id=group_id,
            listener=seek,
            batch=True,
            max_records=s.batch_max_records,
            batch_timeout_ms=s.consumer_wait_ms,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.MANUAL,
            decoder=_raw_body,
            title=f"{self.name}:{route.logical_topic}",
        )

        async def on_batch(body: list[Any], msg: KafkaMessage) -> None:
            raw = msg.raw_message
            consumer_records = raw if isinstance(raw, tuple) else (raw,)
            records = [
                RawRecord(r.topic, r.partition, r.offset, r.key, r.value or b"", tuple(r.headers or ()))
                for r in consumer_records
            ]
            try:
                await processor.process(records)
            except Stopping:
                await msg.nack()  # not committed: redelivered after restart
                return
            except Exception as exc:  # escaping, FastStream would drop it and the next ack commit past it
                await processor.hold(records, exc)
                await msg.nack()  # rewound to the batch's first records: it comes again
                return
            await msg.ack()

        subscriber(on_batch)
        self._subscribers.append((route.logical_topic, subscriber))

    async def _start_http(self) -> None:
        app = Starlette(
            routes=[
                Route("/health", self._health, methods=["GET"]),
                Route("/metrics", _metrics, methods=["GET"]),
                *self.http_routes,
            ]
        )
        app.state.service = self
        config = uvicorn.Config(
            app,
            host=self.settings.http_host,
            port=self.http_port,
            log_level="warning",
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._server_task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._server_task.done():
                self._server_task.result()
                raise RuntimeError(f"HTTP server for {self.name} did not start")
            await asyncio.sleep(0.02)

    async def _health(self, request: Request) -> Response:
        if not self._startup.ready:
            return JSONResponse({"service": self.name, **self._startup.status()}, status_code=503)
        checks: dict[str, bool] = {}
        try:
            checks["database"] = await self.pool.fetchval("select true", timeout=2) is True
        except Exception:
            checks["database"] = False
        checks["relay"] = self._relay is not None and self._relay.running and self._relay.healthy
        checks["kafka"] = self._broker is not None and await self._broker.ping(timeout=2)
        stalled = {topic: route.stall for topic, route in self.routes.items() if route.stall}
        checks["consumers"] = not stalled
        ok = all(checks.values()) and not self._stopping
        body: dict[str, Any] = {"service": self.name, "status": "ok" if ok else "unhealthy", "checks": checks}
        if stalled:
            body["stalled"] = stalled  # topic -> "topic[partition]@offset: error"
        return JSONResponse(body, status_code=200 if ok else 503)

    async def _measure_lag(self) -> None:
        """Consumer lag per partition (high watermark − position), every few seconds."""
        while not self._stopping:
            for topic, subscriber in self._subscribers:
                consumer = getattr(subscriber, "consumer", None)
                if consumer is None:
                    continue
                with contextlib.suppress(Exception):
                    for tp in consumer.assignment():
                        high = consumer.highwater(tp)
                        if high is not None:
                            lag = high - await consumer.position(tp)
                            CONSUMER_LAG.labels(self.name, topic, str(tp.partition)).set(lag)
            await asyncio.sleep(5)

    async def stop(self) -> None:
        self._stopping = True
        if self._lag_task is not None:
            self._lag_task.cancel()
        if self._broker is not None:
            try:
                await self._broker.stop()
            except Exception as exc:  # e.g. stopped before it ever connected
                log.warning("broker stop failed", error=describe_exception(exc))
        if self._relay is not None:
            await self._relay.stop()
        if self._server is not None:
            self._server.should_exit = True
            if self._server_task is not None:
                with contextlib.suppress(Exception):
                    await self._server_task
        if self._pool is not None:
            await self._pool.close()
        log.info("service stopped")

    async def run_until_signal(self) -> None:
        """Start, run until SIGTERM/SIGINT, stop. A signal during start-up ends the wait;
        a start-up that gives up stops what it started and raises StartupTimedOut."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        starting = asyncio.create_task(self.start(), name=f"{self.name}-start")
        signalled = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
            if starting in done:
                starting.result()
                await signalled
        finally:
            for task in (starting, signalled):
                task.cancel()
            await asyncio.gather(starting, signalled, return_exceptions=True)
            await self.stop()

    def main(self) -> None:
        """Process entry point: logging, then run until SIGTERM/SIGINT; exit 1 when
        start-up gave up (the reason is logged)."""
        configure_logging(self.name, self.settings.log_level, self.settings.log_json)
        try:
            asyncio.run(self.run_until_signal())
        except StartupTimedOut:
            raise SystemExit(1) from None


def _id_problem(name: str, value: object) -> str | None:
    """Why a path parameter cannot be an id, or None when it can."""
    if not isinstance(value, str):
        return None
    if has_control_character(value):
        return f"{name} must not contain control characters (NUL, newline, ...)"
    if len(value) > MAX_ID_LENGTH:
        return f"{name} is {len(value)} characters long; an id has at most {MAX_ID_LENGTH}"
    return None


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A released connection is reset by nothing more than asyncpg's own rollback of an open
    transaction: its default reset (advisory unlock all, close cursors, unlisten, reset all)
    is one more round trip per message, and there is nothing for it to undo. Handlers take
    only transaction-scoped locks and settings, and the migrations' session lock is released
    in their `finally`."""


def _raw_body(msg: Any) -> Any:
    """Keep bodies as bytes: parsing (and the DLQ on failure) is the processor's job."""
    return msg.body


async def _metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
