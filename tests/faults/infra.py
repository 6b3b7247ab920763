"""A Kafka broker (or a cluster of three) and a PostgreSQL server of the fault run's own
(deploy/local scripts on other ports), so that restarting them hurts nobody else's work on the
shared ones."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from tally_testing import REPO, Infra, local_infra

SCRIPTS = REPO / "deploy" / "local"
START_ATTEMPTS = 3  # a broker recovering its log on a busy machine may miss one start window


def _port_free(port: int) -> bool:
    """Nothing listens on the port (a socket in TIME_WAIT from an earlier run is fine)."""
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


@dataclass
class PrivateInfra:
    kafka_port: int = 19092  # the controller takes kafka_port + 1
    pg_port: int = 15432
    brokers: int = 1
    """3: kafka.sh's cluster (TALLY_KAFKA_BROKERS=3), node i on kafka_port + 2(i-1) and the
    port after it; the harness kills and restarts one node at a time."""

    @property
    def nodes(self) -> tuple[int, ...]:
        return tuple(range(1, self.brokers + 1))

    def node_port(self, node: int) -> int:
        return self.kafka_port + 2 * (node - 1)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.node_port(n)}" for n in self.nodes)

    @property
    def infra(self) -> Infra:
        # As the super users, with the passwords the scripts made for these ports.
        # local_infra finds a cluster's in .local/kafka-cluster-<first port>/credentials.
        return local_infra(self.bootstrap, f"postgresql://postgres@127.0.0.1:{self.pg_port}/postgres")

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            TALLY_KAFKA_PORT=str(self.kafka_port),
            TALLY_PG_PORT=str(self.pg_port),
            TALLY_KAFKA_BROKERS=str(self.brokers),
        )
        env.pop("TALLY_PG_FAST", None)  # fsync on: a restart must not lose what was committed
        env.setdefault("TALLY_KAFKA_START_SECONDS", "180")
        return env

    @property
    def _local(self) -> Path:
        return Path(os.environ.get("TALLY_LOCAL_DIR", REPO / ".local"))

    async def _script(self, script: str, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            str(SCRIPTS / script),
            *args,
            env=self._env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        text = out.decode(errors="replace").strip()
        if proc.returncode != 0:
            raise RuntimeError(f"{script} {' '.join(args)} failed ({proc.returncode}): {text}")
        return text

    async def start(self) -> None:
        kafka_ports = [p for n in self.nodes for p in (self.node_port(n), self.node_port(n) + 1)]
        for port in (*kafka_ports, self.pg_port):
            if not _port_free(port):
                raise RuntimeError(f"port {port} is taken: pick other ports for the private Kafka/PostgreSQL")
        print("  " + await self._start("kafka.sh"), flush=True)
        print("  " + await self._start("postgres.sh"), flush=True)

    async def _start(self, script: str, *nodes: str) -> str:
        """Start (`nodes`: only those nodes of the cluster), and on failure stop what is left
        (SIGKILL for the broker) and start again: the fault run is about the services, a slow
        server start is not one of its findings."""
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                return await self._script(script, "start", *nodes)
            except RuntimeError as exc:
                if attempt == START_ATTEMPTS:
                    raise
                print(f"  {script} start attempt {attempt} failed, retrying: {str(exc)[-300:]}", flush=True)
                with contextlib.suppress(RuntimeError):
                    await self._script(script, "kill" if script == "kafka.sh" else "stop", *nodes)
                await asyncio.sleep(2.0 * attempt)
        raise AssertionError("unreachable")

    async def restart_broker(self, node: int, down: float, hard: bool = True) -> None:
        """One node of the cluster down (`hard`: SIGKILL) while the others go on, then back."""
        await self._script("kafka.sh", "kill" if hard else "stop", str(node))
        await asyncio.sleep(down)
        await self._start("kafka.sh", str(node))

    async def restart_kafka(self, down: float, hard: bool = False) -> None:
        """Stop the broker (`hard`: SIGKILL, no controlled shutdown), wait, start it again."""
        await self._script("kafka.sh", "kill" if hard else "stop")
        await asyncio.sleep(down)
        await self._start("kafka.sh")

    async def restart_postgres(self, down: float, immediate: bool = False) -> None:
        """Stop the server (`immediate`: `pg_ctl stop -m immediate`, recovery from the WAL at
        the next start; else `-m fast`), wait, start it again."""
        await self._script("postgres.sh", "stop", "immediate" if immediate else "fast")
        await asyncio.sleep(down)
        await self._start("postgres.sh")

    def keep_logs(self, into: Path) -> list[Path]:
        """Copy the broker's and the server's logs out of the folders `wipe` removes."""
        into.mkdir(parents=True, exist_ok=True)
        kept = []
        home = self._local / (
            f"kafka-{self.kafka_port}" if self.brokers == 1 else f"kafka-cluster-{self.kafka_port}"
        )
        kafka_logs = (
            [(home / "kafka.log", f"kafka-{self.kafka_port}.log")]
            if self.brokers == 1
            else [
                (home / f"node-{n}" / "kafka.log", f"kafka-{self.kafka_port}-node-{n}.log")
                for n in self.nodes
            ]
        )
        for source, name in (
            *kafka_logs,
            (self._local / f"pg-{self.pg_port}" / "pg.log", f"pg-{self.pg_port}.log"),
        ):
            if source.exists():
                shutil.copyfile(source, into / name)
                kept.append(into / name)
        return kept

    async def wipe(self) -> None:
        await self._script("kafka.sh", "wipe")
        await self._script("postgres.sh", "wipe")
