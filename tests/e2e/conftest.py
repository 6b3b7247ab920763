"""One running stack per e2e module: the four services as separate OS processes."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest_asyncio

from tally_contracts import Envelope, message_key
from tally_contracts.read_apis import SERVICES
from tally_testing import (
    Infra,
    KafkaProbe,
    ServiceProcess,
    free_port,
    read_api_until,
    service_env,
    service_settings,
)

NOV = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)


@dataclass
class Stack:
    processes: dict[str, ServiceProcess]
    http: httpx.AsyncClient

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.processes[service].port}{path}"

    async def get(self, service: str, path: str) -> Any:
        response = await self.http.get(self.url(service, path))
        response.raise_for_status()
        return response.json()

    async def until(self, service: str, path: str, check: Callable[[Any], bool], timeout: float = 45) -> Any:
        """The read API's answer once `check` holds on it; fails with the last answer."""
        return await read_api_until(self.http, self.url(service, path), check, timeout, f"{service} {path}")

    # The credits read model, as the scenarios read it.
    async def balances(self, customer: str, currency: str) -> tuple[Decimal, Decimal]:
        found = await self.get("credits", f"/customers/{customer}/balances")
        for row in found["balances"]:
            if row["currency"] == currency:
                return Decimal(row["promotional"]), Decimal(row["credit_balance"])
        return Decimal(0), Decimal(0)

    async def until_balances(
        self, customer: str, currency: str, promotional: str, credit_balance: str
    ) -> None:
        want = (Decimal(promotional), Decimal(credit_balance))

        def check(found: Any) -> bool:
            rows = {r["currency"]: r for r in found["balances"]}
            row = rows.get(currency, {"promotional": "0", "credit_balance": "0"})
            return (Decimal(row["promotional"]), Decimal(row["credit_balance"])) == want

        await self.until("credits", f"/customers/{customer}/balances", check)

    async def invoices(self, customer: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await self.get("invoicing", f"/customers/{customer}/invoices"))[
            "invoices"
        ]
        return found

    async def until_invoices(
        self, customer: str, check: Callable[[list[dict[str, Any]]], bool]
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (
            await self.until(
                "invoicing", f"/customers/{customer}/invoices", lambda body: check(body["invoices"])
            )
        )["invoices"]
        return found

    async def until_due(self, customer: str, invoice_id: str, amount_due: str) -> dict[str, Any]:
        """Credits' view of one invoice once its amount due is `amount_due`."""

        def check(body: Any) -> bool:
            mine = [i for i in body["invoices"] if i["invoice_id"] == invoice_id]
            return bool(mine) and Decimal(mine[0]["amount_due"]) == Decimal(amount_due)

        body = await self.until("credits", f"/customers/{customer}/invoices", check)
        found: dict[str, Any] = next(i for i in body["invoices"] if i["invoice_id"] == invoice_id)
        return found


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(infra: Infra, topic_prefix: str, module_database: Any) -> AsyncIterator[Stack]:
    processes: dict[str, ServiceProcess] = {}
    for name in SERVICES:
        settings = service_settings(infra, topic_prefix, await module_database(), http_port=free_port())
        processes[name] = ServiceProcess(name, service_env(settings), settings.http_port)
        processes[name].start()
    try:
        for process in processes.values():
            await process.wait_healthy()
        async with httpx.AsyncClient(timeout=10) as http:
            yield Stack(processes, http)
    finally:
        codes = {name: p.stop() for name, p in processes.items()}
        assert all(code == 0 for code in codes.values()), codes


def message(data: Any, customer: str | None, day: int = 2) -> Envelope[Any]:
    """A message dated `day` November 2026."""
    return Envelope.new(data, customer_id=customer, occurred_at=NOV + dt.timedelta(days=day - 2))


async def send(kafka: KafkaProbe, topic: str, data: Any, customer: str | None, day: int = 2) -> Envelope[Any]:
    envelope = message(data, customer, day)
    await kafka.send(topic, envelope, key=message_key(envelope))
    return envelope


async def answered(
    kafka: KafkaProbe, topic: str, command: Envelope[Any], type_name: str, timeout: float = 30
) -> Envelope[Any]:
    """The first `type_name` caused by `command` (by correlation id) on `topic`."""
    correlation = command.correlation_id or str(command.id)

    def mine(messages: list[Envelope[Any]]) -> list[Envelope[Any]]:
        return [m for m in messages if m.type == type_name and m.correlation_id == correlation]

    found = await kafka.wait_for(topic, lambda ms: bool(mine(ms)), timeout)
    return mine(found)[0]


Wait = Callable[[], Awaitable[None]]
