"""A Kafka broker and a PostgreSQL server of the fault run's own (deploy/local scripts on other
ports), so that restarting them hurts nobody else's work on the shared ones."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from tally_messaging.testing import REPO, Infra, local_infra

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

    @property
    def infra(self) -> Infra:
        # As the super users, with the passwords the scripts made for these ports.
        return local_infra(
            f"127.0.0.1:{self.kafka_port}", f"postgresql://postgres@127.0.0.1:{self.pg_port}/postgres"
        )

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(TALLY_KAFKA_PORT=str(self.kafka_port), TALLY_PG_PORT=str(self.pg_port))
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
        for port in (self.kafka_port, self.kafka_port + 1, self.pg_port):
            if not _port_free(port):
                raise RuntimeError(f"port {port} is taken: pick other ports for the private Kafka/PostgreSQL")
        print("  " + await self._start("kafka.sh"), flush=True)
        print("  " + await self._start("postgres.sh"), flush=True)

    async def _start(self, script: str) -> str:
        """Start, and on failure stop what is left (SIGKILL for the broker) and start again: the
        fault run is about the services, a slow server start is not one of its findings."""
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                return await self._script(script, "start")
            except RuntimeError as exc:
                if attempt == START_ATTEMPTS:
                    raise
                print(f"  {script} start attempt {attempt} failed, retrying: {str(exc)[-300:]}", flush=True)
                with contextlib.suppress(RuntimeError):
                    await self._script(script, "kill" if script == "kafka.sh" else "stop")
                await asyncio.sleep(2.0 * attempt)
        raise AssertionError("unreachable")

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
        for source, name in (
            (self._local / f"kafka-{self.kafka_port}" / "kafka.log", f"kafka-{self.kafka_port}.log"),
            (self._local / f"pg-{self.pg_port}" / "pg.log", f"pg-{self.pg_port}.log"),
        ):
            if source.exists():
                shutil.copyfile(source, into / name)
                kept.append(into / name)
        return kept

    async def wipe(self) -> None:
        await self._script("kafka.sh", "wipe")
        await self._script("postgres.sh", "wipe")
