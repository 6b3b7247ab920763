"""One running Tally stack for the fault run: its own topic prefix, its own databases, the four
services as separate OS processes; publishing, draining (idle detection) and reading back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import OutOfOrderSequenceNumber, UnknownProducerId

from tally_contracts import message_key, topics
from tally_contracts.topics import PARTITIONS, TOPIC_MESSAGES, dlq
from tally_messaging.topic_admin import ensure_topics
from tally_testing import (
    Infra,
    ServiceProcess,
    free_port,
    local_infra,
    service_env,
    service_settings,
)

from .faults import instance_name
from .workload import Outgoing

SERVICES = ("invoicing", "rules", "credits", "payments")
CONSUMES: dict[str, tuple[str, ...]] = {
    "invoicing": (topics.USAGE, topics.INVOICING_COMMANDS, topics.RULES_EVENTS, topics.CREDITS_EVENTS),
    "rules": (topics.RULES_COMMANDS, topics.INVOICING_EVENTS),
    "credits": (topics.CREDITS_COMMANDS, topics.INVOICING_EVENTS, topics.PAYMENTS_EVENTS),
    "payments": (topics.PAYMENTS_COMMANDS, topics.INVOICING_EVENTS, topics.CREDITS_EVENTS),
}
EVENTS = {
    "invoicing": topics.INVOICING_EVENTS,
    "rules": topics.RULES_EVENTS,
    "credits": topics.CREDITS_EVENTS,
    "payments": topics.PAYMENTS_EVENTS,
}
ALL_TOPICS = tuple(TOPIC_MESSAGES)


def infra_from_env() -> Infra:
    return local_infra(
        os.environ.get("TALLY_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        os.environ.get("TALLY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )


@dataclass
class Record:
    topic: str  # logical (no prefix)
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]

    def json(self) -> Any:
        try:
            return json.loads(self.value)
        except ValueError:
            return None


@dataclass
class Stack:
    infra: Infra
    label: str
    services: tuple[str, ...] = SERVICES
    instances: int = 1
    """Processes per service, sharing its database and consumer groups (cluster mode: 2-3)."""
    prefix: str = field(default_factory=lambda: f"f{uuid.uuid4().hex[:10]}.")
    databases: dict[str, str] = field(default_factory=dict)
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    _producer: AIOKafkaProducer | None = None
    _producer_config: dict[str, Any] = field(default_factory=dict)
    _admin: AIOKafkaAdminClient | None = None
    _offsets: AIOKafkaConsumer | None = None
    _http: httpx.AsyncClient | None = None
    deaths: list[tuple[str, int | None, str]] = field(default_factory=list)
    failed_restarts: list[str] = field(default_factory=list)  # one line per attempt that failed
    gave_up: dict[str, str] = field(default_factory=dict)  # service -> log tail: never came back
    missing: list[str] = field(default_factory=list)  # read-API answers that were not there
    restart_timeout: float = 240.0
    _paused: set[str] = field(default_factory=set)
    _expected_down: set[str] = field(default_factory=set)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        await ensure_topics(self.infra.kafka_bootstrap, self.prefix, credentials=self.infra.kafka_admin)
        conn = await asyncpg.connect(self.infra.admin_dsn)
        try:
            for name in self.services:
                db = f"faults_{self.prefix.strip('.')}_{name}"
                await conn.execute(f'create database "{db}"')
                self.databases[name] = db
        finally:
            await conn.close()
        for name in self.services:
            for n in range(1, self.instances + 1):
                settings = service_settings(
                    self.infra, self.prefix, self.infra.dsn(self.databases[name]), http_port=free_port()
                )
                env = service_env(settings, TALLY_LOG_LEVEL="WARNING")
                key = instance_name(name, n)
                self.processes[key] = ServiceProcess(name, env, settings.http_port)
                self.processes[key].start()
        for process in self.processes.values():
            await process.wait_healthy(90 * self.instances)
        self._producer_config = dict(
            bootstrap_servers=self.infra.kafka_bootstrap,
            enable_idempotence=True,
            max_request_size=2_000_000,
            **self.infra.kafka_options(),
        )
        self._producer = AIOKafkaProducer(**self._producer_config)
        await self._producer.start()
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=self.infra.kafka_bootstrap, **self.infra.kafka_options()
        )
        await self._admin.start()
        self._offsets = AIOKafkaConsumer(
            bootstrap_servers=self.infra.kafka_bootstrap,
            enable_auto_commit=False,
            **self.infra.kafka_options(),
        )
        await self._offsets.start()
        self._http = httpx.AsyncClient(timeout=15)

    async def stop(self, drop: bool = True) -> dict[str, int | None]:
        for name in list(self._paused):
            self.resume(name)
        codes = {name: p.stop() for name, p in self.processes.items()}
        with contextlib.suppress(Exception):
            if self._producer is not None:
                await self._producer.stop()
        with contextlib.suppress(Exception):
            if self._offsets is not None:
                await self._offsets.stop()
        with contextlib.suppress(Exception):
            if self._admin is not None:
                await self._admin.close()
        if self._http is not None:
            await self._http.aclose()
        if drop:
            conn = await asyncpg.connect(self.infra.admin_dsn)
            try:
                for db in self.databases.values():
                    await conn.execute(f'drop database if exists "{db}" with (force)')
            finally:
                await conn.close()
            await self.delete_topics()
        return codes

    async def delete_topics(self) -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.infra.kafka_bootstrap, **self.infra.kafka_options()
        )
        await admin.start()
        try:
            names = [self.prefix + t for t in ALL_TOPICS] + [self.prefix + dlq(t) for t in ALL_TOPICS]
            existing = set(await admin.list_topics())
            doomed = [n for n in names if n in existing]
            if doomed:
                with contextlib.suppress(Exception):
                    await admin.delete_topics(doomed)
        finally:
            await admin.close()

    # -- faults on processes -----------------------------------------------------------

    def kill(self, name: str) -> None:
        self._expected_down.add(name)
        self.processes[name].stop(signal.SIGKILL)

    def leave(self, name: str) -> None:
        """SIGTERM without waiting: the process leaves its consumer groups and exits."""
        self._expected_down.add(name)
        proc = self.processes[name].proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    async def wait_stopped(self, name: str, timeout: float) -> None:
        """Until `name` has exited (SIGKILL after `timeout` seconds)."""
        proc = self.processes[name].proc
        deadline = time.monotonic() + timeout
        while proc is not None and proc.poll() is None:
            if time.monotonic() > deadline:
                self.processes[name].stop(signal.SIGKILL)
                return
            await asyncio.sleep(0.2)

    async def restart(self, name: str, **extra_env: str) -> bool:
        """Start `name` again and wait until it is healthy. A start that fails (the service
        exited, e.g. its database was down during an overlapping fault, or never became
        healthy) is retried with backoff and counted in `failed_restarts`; after
        `restart_timeout` seconds the service is given up (`gave_up`, with its log tail) and
        False is returned. Never raises: a failed restart is a fault, not the end of the run."""
        process = self.processes[name]
        env = {k: v for k, v in process.env.items() if k != "TALLY_FAULT"}
        env.update(extra_env)
        process.env = env
        self.restarts[name] = self.restarts.get(name, 0) + 1
        self._expected_down.discard(name)
        self.gave_up.pop(name, None)
        if "TALLY_FAULT" in extra_env:  # it is meant to die: the runner notices and restarts it
            process.start()
            return True
        deadline = time.monotonic() + self.restart_timeout
        backoff = 1.0
        attempt = 1
        while True:
            if process.proc is None or process.proc.poll() is not None:
                process.start()
            try:
                await process.wait_healthy(max(5.0, min(60.0, deadline - time.monotonic())))
                return True
            except AssertionError as exc:
                first_line = str(exc).splitlines()[0][:300]
                self.failed_restarts.append(f"{name} start attempt {attempt} failed: {first_line}")
                print(f"  [{self.label}] {name} start attempt {attempt} failed; retrying", flush=True)
            if time.monotonic() + backoff > deadline:
                self.processes[name].stop(signal.SIGKILL)
                self.gave_up[name] = process.tail(20)
                self._expected_down.add(name)  # not revived by drain: it is reported instead
                return False
            with contextlib.suppress(Exception):
                process.stop(signal.SIGKILL)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
            attempt += 1

    def pause(self, name: str) -> None:
        proc = self.processes[name].proc
        assert proc is not None
        proc.send_signal(signal.SIGSTOP)
        self._paused.add(name)

    def resume(self, name: str) -> None:
        proc = self.processes[name].proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
        self._paused.discard(name)

    async def revive_dead(self) -> list[str]:
        """Restart (without any armed fault) every service that died on its own (TALLY_FAULT)."""
        revived = []
        for name, process in self.processes.items():
            if name in self._expected_down or process.proc is None:
                continue
            if process.proc.poll() is not None:
                self.deaths.append((name, process.proc.returncode, process.tail(8)))
                await self.restart(name)
                revived.append(name)
        return revived

    async def leaders(self, topic: str) -> dict[int, int]:
        """Partition -> node id of its leader (-1: none right now), for logical `topic`."""
        assert self._admin is not None
        described = await self._admin.describe_topics([self.prefix + topic])
        return {int(p["partition"]): int(p["leader"]) for t in described for p in t["partitions"]}

    # -- publishing --------------------------------------------------------------------

    async def send(self, message: Outgoing) -> tuple[int, int]:
        return await self.send_raw(
            message.topic,
            message.envelope.to_json(),
            message_key(message.envelope).encode(),
            [("type", message.envelope.type.encode())],
        )

    async def send_raw(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> tuple[int, int]:
        """Publish one record; returns where it landed (partition, offset)."""
        assert self._producer is not None
        try:
            meta = await self._producer.send_and_wait(
                self.prefix + topic, value=value, key=key or b"x", headers=headers or [], partition=partition
            )
        except (OutOfOrderSequenceNumber, UnknownProducerId):
            await self._renew_producer()
            raise
        return meta.partition, meta.offset

    async def _renew_producer(self) -> None:
        """A new producer (a new producer id): aiokafka's idempotent producer does not recover
        once the broker lost its sequence (OutOfOrderSequenceNumber for ever after a broker
        restart, aiokafka#1017). A record sent again is a duplicate the services' inbox drops."""
        old, self._producer = self._producer, AIOKafkaProducer(**self._producer_config)
        if old is not None:
            with contextlib.suppress(Exception):
                await old.stop()
        await self._producer.start()

    # -- idle detection ----------------------------------------------------------------

    def groups(self, services: Iterable[str] | None = None) -> list[tuple[str, str]]:
        return [
            (f"{self.prefix}{name}.{topic}", topic)
            for name in (services or self.services)
            for topic in CONSUMES[name]
        ]

    async def lag(self, services: Iterable[str] | None = None) -> tuple[int, dict[str, int]]:
        """Total consumer lag over every group of `services`, and the end offsets seen."""
        assert self._admin is not None and self._offsets is not None
        groups = self.groups(services)
        wanted = sorted({t for _, t in groups})
        tps = [TopicPartition(self.prefix + t, p) for t in wanted for p in range(PARTITIONS)]
        ends = await self._offsets.end_offsets(tps)
        total = 0
        for group, topic in groups:
            committed = await self._admin.list_consumer_group_offsets(group)
            for p in range(PARTITIONS):
                tp = TopicPartition(self.prefix + topic, p)
                meta = committed.get(tp)
                at = meta.offset if meta is not None and meta.offset >= 0 else 0
                total += max(0, ends[tp] - at)
        return total, {f"{tp.topic}/{tp.partition}": end for tp, end in ends.items()}

    async def backlog(self, services: Iterable[str] | None = None) -> int:
        total = 0
        for name in services or self.services:
            conn = await asyncpg.connect(self.infra.dsn(self.databases[name]))
            try:
                total += int(await conn.fetchval("select count(*) from tally_outbox"))
            except asyncpg.UndefinedTableError:
                pass
            finally:
                await conn.close()
        return total

    async def drain(self, timeout: float = 120, services: Iterable[str] | None = None) -> float:
        """Waits until every consumer of `services` is caught up and every outbox is empty, twice
        in a row with nothing new on the topics. Returns the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout
        clean_ends: dict[str, int] | None = None
        last: tuple[int, int] = (-1, -1)
        chosen = list(services or self.services)
        while time.monotonic() < deadline:
            await self.revive_dead()
            try:
                lag, ends = await self.lag(chosen)
                backlog = await self.backlog(chosen)
            except Exception as exc:  # the broker or the database is restarting
                last = (-1, -1)
                clean_ends = None
                print(f"  [{self.label}] drain probe failed: {exc!r}", flush=True)
                await asyncio.sleep(1)
                continue
            last = (lag, backlog)
            if lag == 0 and backlog == 0:
                if clean_ends == ends:
                    return time.monotonic() - started
                clean_ends = ends
            else:
                clean_ends = None
            await asyncio.sleep(0.3)
        tails = {n: p.tail(5) for n, p in self.processes.items() if n in chosen}
        raise TimeoutError(
            f"[{self.label}] not idle after {timeout}s: lag={last[0]} outbox={last[1]}; {tails}"
        )

    # -- reading back ------------------------------------------------------------------

    async def read_topics(self, names: Iterable[str]) -> dict[str, list[Record]]:
        """Every record on the given logical topics, from the beginning up to now."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.infra.kafka_bootstrap,
            enable_auto_commit=False,
            fetch_max_bytes=8_000_000,
            max_partition_fetch_bytes=4_000_000,
            **self.infra.kafka_options(),
        )
        await consumer.start()
        found: dict[str, list[Record]] = {n: [] for n in names}
        try:
            by_full = {self.prefix + n: n for n in found}
            tps = [TopicPartition(full, p) for full in by_full for p in range(PARTITIONS)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            remaining = {tp for tp in tps if ends[tp] > 0}
            deadline = time.monotonic() + 600  # a long run's topics hold hundreds of thousands
            while remaining and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for tp, records in batches.items():
                    for r in records:
                        found[by_full[tp.topic]].append(
                            Record(
                                by_full[tp.topic],
                                tp.partition,
                                r.offset,
                                r.timestamp,
                                r.key,
                                r.value or b"",
                                list(r.headers or []),
                            )
                        )
                    if records and records[-1].offset + 1 >= ends[tp]:
                        remaining.discard(tp)
            if remaining:  # the checks would see a part only: say so, they will fail
                self.missing.append(f"topics read incompletely: {sorted(tp.topic for tp in remaining)}")
        finally:
            await consumer.stop()
        return found

    async def get(self, service: str, path: str) -> Any:
        """The JSON answer of a read API, or None. A 404 or no answer at all is recorded in
        `missing` (a read API that does not know a customer it was told about is not an empty
        list); the invariants report it."""
        assert self._http is not None
        url = f"http://127.0.0.1:{self.processes[service].port}{path}"
        for attempt in range(5):
            try:
                response = await self._http.get(url)
                if response.status_code == 404:
                    self.missing.append(f"{service} GET {path} answered 404")
                    return None
                response.raise_for_status()
                return response.json()
            except (httpx.HTTPError, ValueError) as exc:
                if attempt == 4:
                    self.missing.append(f"{service} GET {path} failed: {exc!r}"[:300])
                    return None
                await asyncio.sleep(1)
        return None

    async def status_of(self, service: str, path: str) -> int:
        """The HTTP status a read API answers (0 when it does not answer)."""
        assert self._http is not None
        try:
            response = await self._http.get(f"http://127.0.0.1:{self.processes[service].port}{path}")
        except httpx.HTTPError:
            return 0
        return response.status_code

    async def health(self) -> dict[str, int]:
        assert self._http is not None
        codes: dict[str, int] = {}
        for name, process in self.processes.items():
            try:
                response = await self._http.get(f"http://127.0.0.1:{process.port}/health")
                codes[name] = response.status_code
            except httpx.HTTPError:
                codes[name] = 0
        return codes
