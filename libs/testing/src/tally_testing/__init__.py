"""Test fixtures for real Kafka and PostgreSQL (a pytest plugin: `tally_testing`).

Infrastructure is picked in order: URLs from the environment
(`TALLY_TEST_KAFKA_BOOTSTRAP`, `TALLY_TEST_DATABASE_URL` — an admin DSN), then
testcontainers when a Docker daemon answers, else the project's scripts in
`deploy/local/` (real Kafka from Maven Central, PostgreSQL from Debian's binaries).
Each test session gets its own topic prefix; each test its own database.

Identities: the plumbing (topics, probes, services under test) runs as the broker's super
user `admin` and the database superuser, whose passwords come from
`TALLY_TEST_KAFKA_USERNAME`/`TALLY_TEST_KAFKA_PASSWORD` and the DSN, else from the files
deploy/local's scripts made for those ports (`.local/kafka-<port>/credentials`,
`.local/pg-<port>/credentials`). Tests of the ACLs themselves grant the table's rules for
their session's prefix (`tally_messaging.identities.grant`) and connect as the principals.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tally_contracts import Envelope, message_key, parse_message
from tally_contracts.topics import dlq
from tally_messaging.identities import grant, read_table, revoke
from tally_messaging.kafka_security import (
    KafkaCredentials,
    client_options,
    credentials_in,
    kafka_credentials,
    local_credentials_dir,
)
from tally_messaging.settings import ServiceSettings
from tally_messaging.topic_admin import ensure_topics

REPO = Path(__file__).resolve().parents[4]
ACL_TABLE = REPO / "deploy" / "local" / "acls.tsv"
LOCAL_DIR = Path(os.environ.get("TALLY_LOCAL_DIR") or REPO / ".local")
"""Where deploy/local's scripts keep their servers (and the servers' passwords)."""


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap: str
    admin_dsn: str
    kafka_admin: KafkaCredentials | None = None
    """The broker's super user, when the broker has identities (None: PLAINTEXT)."""

    def dsn(self, database: str) -> str:
        base, _, _ = self.admin_dsn.rpartition("/")
        return f"{base}/{database}"

    def kafka_options(self) -> dict[str, Any]:
        """Keyword arguments that make an aiokafka client connect as `kafka_admin`."""
        return client_options(self.kafka_admin)


def local_infra(bootstrap: str, admin_dsn: str) -> Infra:
    """`Infra` for servers on this machine, with the passwords deploy/local's scripts made
    for them when the environment gives none (see the module's docstring)."""
    username = os.environ.get("TALLY_TEST_KAFKA_USERNAME")
    if username:
        admin: KafkaCredentials | None = KafkaCredentials(
            username, os.environ.get("TALLY_TEST_KAFKA_PASSWORD", "")
        )
    else:
        folder = local_credentials_dir(bootstrap, LOCAL_DIR)
        admin = credentials_in(folder, "admin") if folder is not None else None
    return Infra(bootstrap, with_local_password(admin_dsn), admin)


def with_local_password(dsn: str) -> str:
    """`dsn` with its role's password from `.local/pg-<port>/credentials` (made by
    deploy/local/postgres.sh) when it names none and that file exists."""
    parts = urlsplit(dsn)
    if parts.password or parts.hostname not in ("127.0.0.1", "localhost") or not parts.username:
        return dsn
    path = LOCAL_DIR / f"pg-{parts.port or 5432}" / "credentials" / f"{parts.username}.password"
    if not path.is_file():
        return dsn
    netloc = f"{parts.username}:{quote(path.read_text().strip(), safe='')}@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _docker_answers() -> bool:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        # Probe the socket first: the docker client leaks a socket when nothing answers.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            try:
                sock.connect(host.removeprefix("unix://"))
            except OSError:
                return False
    try:
        import docker

        client = docker.from_env(timeout=3)
    except Exception:
        return False
    try:
        client.ping()
    except Exception:
        return False
    finally:
        client.close()
    return True


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    bootstrap = os.environ.get("TALLY_TEST_KAFKA_BOOTSTRAP")
    admin_dsn = os.environ.get("TALLY_TEST_DATABASE_URL")
    if bootstrap and admin_dsn:
        yield local_infra(bootstrap, admin_dsn)
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        with KafkaContainer().with_kraft() as kafka, PostgresContainer("postgres:15") as pg:
            yield Infra(kafka.get_bootstrap_server(), pg.get_connection_url(driver=None))
        return
    for script in ("kafka.sh", "postgres.sh"):
        subprocess.run([str(REPO / "deploy/local" / script), "start"], check=True)
    yield local_infra("127.0.0.1:9092", "postgresql://postgres@127.0.0.1:5432/postgres")


async def prepare_topics(infra: Infra, prefix: str) -> None:
    """Make every topic named `prefix` + name; on a broker with identities, grant the ACL
    table's rules for them too, so that the CLI (`ops`, `usage-producer`) and the services'
    principals may do on them what they may do on the real topics."""
    await ensure_topics(infra.kafka_bootstrap, prefix, credentials=infra.kafka_admin)
    if infra.kafka_admin is not None:
        await grant(infra.kafka_bootstrap, infra.kafka_admin, read_table(ACL_TABLE), prefix)


async def release_topics(infra: Infra, prefix: str) -> None:
    """Take back what `prepare_topics` granted (the topics stay: tests read them after)."""
    if infra.kafka_admin is not None:
        await revoke(infra.kafka_bootstrap, infra.kafka_admin, read_table(ACL_TABLE), prefix)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def topic_prefix(infra: Infra) -> AsyncIterator[str]:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    await prepare_topics(infra, prefix)
    yield prefix
    await release_topics(infra, prefix)


@contextlib.asynccontextmanager
async def _databases(infra: Infra) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    made: list[str] = []

    async def make() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(infra.admin_dsn)
        try:
            await conn.execute(f'create database "{name}"')
        finally:
            await conn.close()
        made.append(name)
        return infra.dsn(name)

    yield make
    conn = await asyncpg.connect(infra.admin_dsn)
    try:
        for name in made:
            await conn.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await conn.close()


@pytest_asyncio.fixture(loop_scope="session")
async def new_database(infra: Infra) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Makes empty databases for the test (dropped after); returns their DSNs."""
    async with _databases(infra) as make:
        yield make


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def module_database(infra: Infra) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Like `new_database`, for fixtures shared by a test module (e.g. one running stack)."""
    async with _databases(infra) as make:
        yield make


TEST_DEDUPE_WINDOW_DAYS = 36_500
"""Tests and fault runs date their messages in fixed months (2026-11 ...): a window of a
century keeps them inside it whatever today is. Partitions exist only for days that occur,
so a long window costs nothing; the window's own tests set theirs."""


def service_settings(infra: Infra, prefix: str, dsn: str, **overrides: Any) -> ServiceSettings:
    """Settings for a service under test: on the session's topics, as the super user (the
    table's ACLs name the real topics; tests/e2e/test_identities.py runs the principals)."""
    admin = infra.kafka_admin
    settings: dict[str, Any] = {}
    if admin is not None:
        settings = {"kafka_username": admin.username, "kafka_password": admin.password}
    settings.update(overrides)
    settings.setdefault("dedupe_window_days", TEST_DEDUPE_WINDOW_DAYS)
    return ServiceSettings(
        kafka_bootstrap=infra.kafka_bootstrap,
        database_url=dsn,
        topic_prefix=prefix,
        group_prefix=prefix,
        log_json=True,
        **settings,
    )


def settings_kafka_options(settings: ServiceSettings) -> dict[str, Any]:
    """Keyword arguments for an aiokafka client that connects as `settings` do (a test's
    service settings name the super user when the broker has identities)."""
    return client_options(kafka_credentials(settings, "admin"))


def service_env(settings: ServiceSettings, **extra: str) -> dict[str, str]:
    """Environment for running a service as its own process with `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    env.update(
        TALLY_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        TALLY_DATABASE_URL=settings.database_url,
        TALLY_TOPIC_PREFIX=settings.topic_prefix,
        TALLY_GROUP_PREFIX=settings.group_prefix,
        TALLY_HTTP_PORT=str(settings.http_port),
        TALLY_LOG_JSON="true",
        TALLY_DEDUPE_WINDOW_DAYS=str(settings.dedupe_window_days),
    )
    if settings.kafka_username:
        env.update(
            TALLY_KAFKA_USERNAME=settings.kafka_username,
            TALLY_KAFKA_PASSWORD=settings.kafka_password.get_secret_value(),
        )
    env.update(extra)
    return env


async def read_api_until(
    http: httpx.AsyncClient, url: str, check: Callable[[Any], bool], timeout: float, what: str
) -> Any:
    """A read API's answer at `url` once `check` holds on it (polled); fails naming `what`
    with the last answer."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        response = await http.get(url)
        if response.status_code == 200:
            last = response.json()
            if check(last):
                return last
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what} never satisfied the check; last answer: {last}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class KafkaProbe:
    """Publishes to and reads from the test session's topics, as an outside system would."""

    bootstrap: str
    prefix: str
    credentials: KafkaCredentials | None = None
    _producer: AIOKafkaProducer | None = None
    _consumers: dict[str, AIOKafkaConsumer] = field(default_factory=dict)
    _seen: dict[str, list[tuple[bytes | None, bytes]]] = field(default_factory=dict)

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, enable_idempotence=True, **client_options(self.credentials)
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        for consumer in self._consumers.values():
            await consumer.stop()

    async def send(self, topic: str, message: Envelope[Any] | bytes, key: str | None = None) -> None:
        assert self._producer is not None
        if isinstance(message, Envelope):
            key = key or message_key(message)
            value, headers = message.to_json(), [("type", message.type.encode())]
        else:
            value, headers = message, []
        await self._producer.send_and_wait(
            self.prefix + topic, value=value, key=(key or "x").encode(), headers=headers
        )

    async def _consumer(self, topic: str) -> AIOKafkaConsumer:
        if topic not in self._consumers:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, enable_auto_commit=False, **client_options(self.credentials)
            )
            await consumer.start()
            partitions = consumer.partitions_for_topic(self.prefix + topic)
            while not partitions:
                await asyncio.sleep(0.1)
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(self.prefix + topic)
            tps = [TopicPartition(self.prefix + topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            self._consumers[topic] = consumer
            self._seen[topic] = []
        return self._consumers[topic]

    async def raw(self, topic: str, poll_ms: int = 200) -> list[tuple[bytes | None, bytes]]:
        """Every record seen so far on `topic` (key, value)."""
        consumer = await self._consumer(topic)
        batches = await consumer.getmany(timeout_ms=poll_ms)
        for records in batches.values():
            self._seen[topic].extend((r.key, r.value) for r in records)
        return list(self._seen[topic])

    async def dead_letters(
        self, topic: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30
    ) -> list[dict[str, Any]]:
        """Records on `topic`'s DLQ that match `predicate`, waiting until there is one.

        Values that are not a JSON object are skipped: tests send hostile records to DLQs
        too (a replay must ignore them), and they are nobody's dead letter."""
        deadline = time.monotonic() + timeout
        while True:
            found = [d for _, v in await self.raw(dlq(topic)) if isinstance(d := _json_or_none(v), dict)]
            matching = [d for d in found if predicate(d)]
            if matching:
                return matching
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting on {dlq(topic)}")

    async def messages(self, topic: str) -> list[Envelope[Any]]:
        return [parse_message(v) for _, v in await self.raw(topic)]

    async def wait_for(
        self,
        topic: str,
        predicate: Callable[[list[Envelope[Any]]], bool],
        timeout: float = 30,
    ) -> list[Envelope[Any]]:
        """Messages on `topic` once `predicate(all messages)` holds; fails after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            seen = await self.messages(topic)
            if predicate(seen):
                return seen
            if time.monotonic() > deadline:
                types = [m.type for m in seen]
                raise AssertionError(f"timed out after {timeout}s waiting on {topic}; saw {types}")


@pytest_asyncio.fixture(loop_scope="session")
async def kafka(infra: Infra, topic_prefix: str) -> AsyncIterator[KafkaProbe]:
    probe = KafkaProbe(infra.kafka_bootstrap, topic_prefix, infra.kafka_admin)
    await probe.start()
    yield probe
    await probe.stop()


@dataclass
class ServiceProcess:
    """A service run as its own OS process (`python -m <module>`)."""

    module: str
    env: dict[str, str]
    port: int
    cwd: Path = REPO
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def start(self) -> None:
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"tally-{self.module}-{self.port}.log"
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module], env=self.env, cwd=self.cwd, stdout=log, stderr=log
            )

    async def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"{self.module} exited with {self.proc.returncode}: {self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(f"http://127.0.0.1:{self.port}/health")
                    if response.status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise AssertionError(f"{self.module} not healthy after {timeout}s: {self.tail()}")

    async def wait_exit(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.module} still running after {timeout}s")
            await asyncio.sleep(0.1)
        return self.proc.returncode

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _json_or_none(value: bytes) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return None
