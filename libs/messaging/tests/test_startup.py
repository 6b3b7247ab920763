"""Start-up waits for what it needs (issue 22), and consumers outlive an outage after it.

Each test runs a PostgreSQL or a Kafka of its own (deploy/local's scripts on free ports,
data under a temporary folder) so it can stop and start it; the shared ones on
5432/9092 are never touched. The probe service is started while that server is down:
`/health` must answer 503 naming what it waits for, and once the server is started
~10 s later the service must become healthy and handle a message end to end. Then the
server is stopped and started again under the running service, and a message sent
meanwhile must still be handled exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from prometheus_client import REGISTRY

from probe import build
from tally_contracts import Envelope, Money, topics
from tally_contracts.credits import GrantCredit
from tally_messaging.kafka_security import KafkaCredentials
from tally_messaging.settings import ServiceSettings
from tally_testing import (
    REPO,
    Infra,
    KafkaProbe,
    ServiceProcess,
    free_port,
    service_env,
    service_settings,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

SCRIPTS = REPO / "deploy" / "local"
PROBE_DIR = str(Path(__file__).parent)
DOWN_SECONDS = 10.0


@dataclass
class LocalServer:
    """One of deploy/local's servers on its own port, its data under `local_dir`."""

    script: str
    port_variable: str
    port: int
    local_dir: Path

    async def run(self, action: str) -> str:
        env = {**os.environ, self.port_variable: str(self.port), "TALLY_LOCAL_DIR": str(self.local_dir)}
        proc = await asyncio.create_subprocess_exec(
            str(SCRIPTS / self.script),
            action,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        text = out.decode(errors="replace").strip()
        if proc.returncode != 0:
            raise RuntimeError(f"{self.script} {action} failed ({proc.returncode}): {text}")
        return text

    def admin_dsn(self, database: str) -> str:
        """The superuser's DSN on `database` of this (PostgreSQL) server, password included."""
        password = (
            (self.local_dir / f"pg-{self.port}" / "credentials" / "postgres.password").read_text().strip()
        )
        return f"postgresql://postgres:{password}@127.0.0.1:{self.port}/{database}"

    def choose_admin_password(self) -> KafkaCredentials:
        """Kafka's `admin` password, chosen before the first start (kafka.sh keeps it)."""
        folder = self.local_dir / f"kafka-{self.port}" / "credentials"
        folder.mkdir(parents=True, exist_ok=True)
        password = uuid.uuid4().hex
        (folder / "admin.password").write_text(password)
        return KafkaCredentials("admin", password)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port_pair() -> int:
    """A port whose successor is free too (Kafka's controller listens on port + 1)."""
    for _ in range(50):
        port = free_port()
        if port < 65535 and _port_free(port + 1):
            return port
    raise RuntimeError("no two consecutive free ports")


def _new_local_dir() -> Path:
    local_dir = Path(tempfile.mkdtemp(prefix="tally-startup-"))
    local_dir.chmod(0o755)  # PostgreSQL runs as the postgres user when we are root
    shared_kafka_lib = REPO / ".local" / "kafka-lib"
    if shared_kafka_lib.is_dir():  # Kafka's jars already resolved: no Maven run
        (local_dir / "kafka-lib").symlink_to(shared_kafka_lib)
    return local_dir


@contextlib.asynccontextmanager
async def private_server(script: str, port_variable: str, port: int) -> AsyncIterator[LocalServer]:
    local_dir = _new_local_dir()
    server = LocalServer(script, port_variable, port, local_dir)
    try:
        yield server
    finally:
        with contextlib.suppress(RuntimeError):
            await server.run("wipe")
        shutil.rmtree(local_dir, ignore_errors=True)


def grant(customer: str) -> Envelope[Any]:
    data = GrantCredit(
        grant_id=f"g-{uuid.uuid4().hex[:8]}",
        kind="promotional",
        amount=Money.of("10.00", "USD"),
        source="promo_code",
    )
    return Envelope.new(data, customer_id=customer)


async def health(port: int) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"http://127.0.0.1:{port}/health")
    return response.status_code, response.json()


async def wait_health(
    port: int,
    status_code: int,
    starting: asyncio.Task[None] | None = None,
    timeout: float = 60,
    until: Callable[[dict[str, Any]], bool] = lambda body: True,
) -> dict[str, Any]:
    """The `/health` body once it answers `status_code` and `until(body)` holds; fails
    early when start-up failed."""
    deadline = time.monotonic() + timeout
    last: tuple[int, dict[str, Any]] | None = None
    while time.monotonic() < deadline:
        if starting is not None and starting.done():
            starting.result()  # raises what start-up raised
        with contextlib.suppress(httpx.HTTPError):
            last = await health(port)
            if last[0] == status_code and until(last[1]):
                return last[1]
        await asyncio.sleep(0.2)
    raise AssertionError(f"/health did not answer {status_code} within {timeout}s; last: {last}")


def failed_attempt_on(dependency: str) -> Callable[[dict[str, Any]], bool]:
    """A `/health` body of a start-up waiting for `dependency` after a failed attempt."""
    return lambda body: body.get("waiting_for") == dependency and body.get("last_error") is not None


async def handled_once(kafka: KafkaProbe, dsn: str, message: Envelope[Any], timeout: float = 60) -> bool:
    """Waits for the CreditGranted caused by `message`; True when it was applied exactly once."""
    await kafka.wait_for(
        topics.CREDITS_EVENTS,
        lambda ms: any(m.type == "CreditGranted" and m.causation_id == str(message.id) for m in ms),
        timeout=timeout,
    )
    conn = await asyncpg.connect(dsn)
    try:
        count = await conn.fetchval("select count(*) from probe_applied where message_id = $1", message.id)
    finally:
        await conn.close()
    return bool(count == 1)


def failed_grant_attempts() -> float:
    """Attempts at a GrantCredit that failed and are retried (the service runs in this process)."""
    labels = {"service": "probe", "topic": topics.CREDITS_COMMANDS, "type": "GrantCredit"}
    return REGISTRY.get_sample_value("tally_messages_failed_total", labels) or 0.0


async def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def starting_service(settings: ServiceSettings) -> AsyncIterator[asyncio.Task[None]]:
    """The probe service's `start()` running in the background; stopped on exit."""
    service = build(settings)
    starting = asyncio.create_task(service.start())
    try:
        yield starting
    finally:
        if not starting.done():
            starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await service.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def private_postgres() -> AsyncIterator[LocalServer]:
    """Initialised (with its databases), then stopped: as after a crash or a restart."""
    async with private_server("postgres.sh", "TALLY_PG_PORT", free_port()) as server:
        await server.run("start")
        await server.run("stop")
        yield server


@pytest_asyncio.fixture(loop_scope="session")
async def private_kafka() -> AsyncIterator[LocalServer]:
    """Never started yet: its first start formats it, as a broker coming up for the first time."""
    async with private_server("kafka.sh", "TALLY_KAFKA_PORT", _free_port_pair()) as server:
        yield server


async def test_service_started_while_postgres_is_down_waits_then_handles_messages(
    infra: Infra, topic_prefix: str, kafka: KafkaProbe, private_postgres: LocalServer
) -> None:
    dsn = private_postgres.admin_dsn("credits")
    settings = service_settings(infra, topic_prefix, dsn, http_port=free_port(), startup_timeout_seconds=120)
    began = time.monotonic()
    async with starting_service(settings) as starting:
        waiting = await wait_health(settings.http_port, 503, starting, until=failed_attempt_on("database"))
        assert waiting["status"] == "starting"
        assert "Connect" in waiting["last_error"] or "refused" in waiting["last_error"]

        await asyncio.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - began)))
        await private_postgres.run("start")
        await wait_health(settings.http_port, 200, starting)
        first = grant(f"cus-{uuid.uuid4().hex[:6]}")
        await kafka.send(topics.CREDITS_COMMANDS, first)
        assert await handled_once(kafka, dsn, first)

        # An outage after start: the consumer retries in place and loses nothing.
        failed_before = failed_grant_attempts()
        await private_postgres.run("stop")
        during = await wait_health(settings.http_port, 503)
        assert during["checks"]["database"] is False
        second = grant(first.customer_id or "")
        await kafka.send(topics.CREDITS_COMMANDS, second)
        await wait_until(lambda: failed_grant_attempts() > failed_before)  # it met the outage
        await private_postgres.run("start")
        assert await handled_once(kafka, dsn, second)
        await wait_health(settings.http_port, 200)


async def test_service_started_while_kafka_is_down_waits_then_handles_messages(
    infra: Infra, new_database: Any, private_kafka: LocalServer
) -> None:
    bootstrap = f"127.0.0.1:{private_kafka.port}"
    prefix = f"t{uuid.uuid4().hex[:10]}."
    dsn = await new_database()
    admin = private_kafka.choose_admin_password()  # known before its first start, which makes the users
    settings = service_settings(
        Infra(bootstrap, infra.admin_dsn, admin),
        prefix,
        dsn,
        http_port=free_port(),
        startup_timeout_seconds=120,
    )
    began = time.monotonic()
    async with starting_service(settings) as starting:
        waiting = await wait_health(settings.http_port, 503, starting, until=failed_attempt_on("kafka"))
        assert waiting["status"] == "starting"
        assert "KafkaConnectionError" in waiting["last_error"]

        await asyncio.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - began)))
        await private_kafka.run("start")
        await wait_health(settings.http_port, 200, starting, timeout=90)
        kafka = KafkaProbe(bootstrap, prefix, admin)
        await kafka.start()
        try:
            first = grant(f"cus-{uuid.uuid4().hex[:6]}")
            await kafka.send(topics.CREDITS_COMMANDS, first)
            assert await handled_once(kafka, dsn, first)

            # A broker restart after start: consumers and the relay reconnect by themselves.
            await private_kafka.run("stop")
            during = await wait_health(settings.http_port, 503)
            assert during["checks"]["kafka"] is False
            await private_kafka.run("start")
            second = grant(first.customer_id or "")
            await kafka.send(topics.CREDITS_COMMANDS, second)
            assert await handled_once(kafka, dsn, second, timeout=90)
            await wait_health(settings.http_port, 200)
        finally:
            await kafka.stop()


async def test_start_up_gives_up_after_the_configured_time_and_exits_1(
    infra: Infra, topic_prefix: str
) -> None:
    nothing_listens = f"postgresql://postgres@127.0.0.1:{free_port()}/credits"
    settings = service_settings(infra, topic_prefix, nothing_listens, http_port=free_port())
    env = service_env(settings, PYTHONPATH=PROBE_DIR, TALLY_STARTUP_TIMEOUT_SECONDS="3")
    process = ServiceProcess("probe", env, settings.http_port)
    process.start()
    try:
        exit_code = await process.wait_exit(timeout=30)
    finally:
        process.stop()

    assert exit_code == 1
    assert "gave up waiting at start-up" in process.tail()
    assert "ConnectionRefusedError" in process.tail()


async def test_sigterm_while_waiting_at_start_up_stops_at_once(infra: Infra, topic_prefix: str) -> None:
    nothing_listens = f"postgresql://postgres@127.0.0.1:{free_port()}/credits"
    settings = service_settings(infra, topic_prefix, nothing_listens, http_port=free_port())
    process = ServiceProcess("probe", service_env(settings, PYTHONPATH=PROBE_DIR), settings.http_port)
    process.start()
    try:
        await wait_health(settings.http_port, 503, until=failed_attempt_on("database"), timeout=30)
        assert process.proc is not None
        process.proc.send_signal(signal.SIGTERM)
        exit_code = await process.wait_exit(timeout=10)
    finally:
        process.stop(signal.SIGKILL)

    assert exit_code == 0, process.tail()
    assert "service stopped" in process.tail()
