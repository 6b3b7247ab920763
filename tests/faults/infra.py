"""A Kafka broker and a PostgreSQL server of the fault run's own (deploy/local scripts on other
ports), so that restarting them hurts nobody else's work on the shared ones."""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass

from tally_messaging.testing import REPO, Infra

SCRIPTS = REPO / "deploy" / "local"


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
        return Infra(
            f"127.0.0.1:{self.kafka_port}", f"postgresql://postgres@127.0.0.1:{self.pg_port}/postgres"
        )

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(TALLY_KAFKA_PORT=str(self.kafka_port), TALLY_PG_PORT=str(self.pg_port))
        env.pop("TALLY_PG_FAST", None)  # fsync on: a restart must not lose what was committed
        return env

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
        print("  " + await self._script("kafka.sh", "start"), flush=True)
        print("  " + await self._script("postgres.sh", "start"), flush=True)

    async def restart_kafka(self, down: float, hard: bool = False) -> None:
        """Stop the broker (`hard`: SIGKILL, no controlled shutdown), wait, start it again."""
        await self._script("kafka.sh", "kill" if hard else "stop")
        await asyncio.sleep(down)
        await self._script("kafka.sh", "start")

    async def restart_postgres(self, down: float, immediate: bool = False) -> None:
        """Stop the server (`immediate`: `pg_ctl stop -m immediate`, recovery from the WAL at
        the next start; else `-m fast`), wait, start it again."""
        await self._script("postgres.sh", "stop", "immediate" if immediate else "fast")
        await asyncio.sleep(down)
        await self._script("postgres.sh", "start")

    async def wipe(self) -> None:
        await self._script("kafka.sh", "wipe")
        await self._script("postgres.sh", "wipe")
