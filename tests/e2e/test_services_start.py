"""All four services as separate processes on real Kafka and PostgreSQL."""

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tally_contracts import topics
from tally_messaging.testing import (
    Infra,
    KafkaProbe,
    ServiceProcess,
    free_port,
    service_env,
    service_settings,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]
SERVICES = ("invoicing", "rules", "credits", "payments")


@pytest_asyncio.fixture(loop_scope="session")
async def stack(
    infra: Infra, topic_prefix: str, new_database: Any
) -> AsyncIterator[dict[str, ServiceProcess]]:
    processes: dict[str, ServiceProcess] = {}
    for name in SERVICES:
        settings = service_settings(infra, topic_prefix, await new_database(), http_port=free_port())
        processes[name] = ServiceProcess(name, service_env(settings), settings.http_port)
        processes[name].start()
    try:
        for process in processes.values():
            await process.wait_healthy()
        yield processes
    finally:
        codes = {name: p.stop() for name, p in processes.items()}
        assert all(code == 0 for code in codes.values()), codes


async def test_every_service_is_healthy_and_exposes_metrics(stack: dict[str, ServiceProcess]) -> None:
    async with httpx.AsyncClient() as client:
        for name, process in stack.items():
            health = (await client.get(f"http://127.0.0.1:{process.port}/health")).json()
            metrics = await client.get(f"http://127.0.0.1:{process.port}/metrics")

            assert health == {
                "service": name,
                "status": "ok",
                "checks": {"database": True, "relay": True, "kafka": True},
            }
            assert "tally_messages_handled_total" in metrics.text


async def test_command_with_a_bad_body_is_dead_lettered(
    stack: dict[str, ServiceProcess], kafka: KafkaProbe
) -> None:
    command_id = str(uuid.uuid4())
    bad = json.dumps(
        {
            "id": command_id,
            "type": "UpsertCustomer",
            "version": 1,
            "occurred_at": "2026-11-03T09:15:00Z",
            "customer_id": "cus_bad",
            "data": {"currency": "DOLLARS", "billing_day": 31},
        }
    )

    await kafka.send(topics.INVOICING_COMMANDS, bad.encode(), key="cus_bad")

    [dead] = await kafka.dead_letters(topics.INVOICING_COMMANDS, lambda d: command_id in d["raw"])
    assert dead["consumer"] == "invoicing:invoicing.commands"
    assert "currency" in dead["error"] and "billing_day" in dead["error"]
