"""All four services as separate processes on real Kafka and PostgreSQL."""

import json
import uuid

import httpx
import pytest

from tally_contracts import topics
from tally_testing import KafkaProbe

from .conftest import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def test_every_service_is_healthy_and_exposes_metrics(stack: Stack) -> None:
    async with httpx.AsyncClient() as client:
        for name, process in stack.processes.items():
            health = (await client.get(f"http://127.0.0.1:{process.port}/health")).json()
            metrics = await client.get(f"http://127.0.0.1:{process.port}/metrics")

            assert health == {
                "service": name,
                "status": "ok",
                "checks": {"database": True, "relay": True, "kafka": True, "consumers": True},
            }
            assert "tally_messages_handled_total" in metrics.text


async def test_command_with_a_bad_body_is_dead_lettered(stack: Stack, kafka: KafkaProbe) -> None:
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
