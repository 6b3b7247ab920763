"""The console against the real stack: the four services and the console as separate OS
processes on the session's topics, each service with its own database, plus one customer
whose invoice has an adjustment and a promotional credit applied, and one dead letter."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio

from tally_contracts import Envelope, Money, message_key, topics
from tally_contracts.credits import GrantCredit
from tally_contracts.invoicing import AddCharge, UpsertCustomer
from tally_contracts.read_apis import SERVICES
from tally_contracts.rules import Analyze, AssignRuleSet, Condition, PutRuleSet, Rule
from tally_contracts.usage import UsageRecorded
from tally_testing import (
    REPO,
    Infra,
    KafkaProbe,
    ServiceProcess,
    free_port,
    read_api_until,
    service_env,
    service_settings,
)

DEC = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
SCREENSHOTS = REPO / ".local" / "console-screenshots"
"""Where the browser tests leave their screenshots (not committed: .local/ is ignored)."""


@dataclass
class Seeded:
    """What the stack holds for the console tests to find."""

    customer: str
    rule_set_id: str
    grant_id: str
    invoice_id: str
    unpriced_customer: str
    """Its usage was dead-lettered ("no price"): its price list is put only by the test."""
    price_list_id: str


@dataclass
class ConsoleStack:
    processes: dict[str, ServiceProcess]
    console: ServiceProcess
    console_dir: Path
    http: httpx.AsyncClient
    kafka: KafkaProbe
    seeded: Seeded

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.console.port}"

    def url(self, service: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.processes[service].port}{path}"

    def password(self) -> str:
        return (self.console_dir / "operators" / "operator.password").read_text().strip()

    async def until(self, service: str, path: str, check: Callable[[Any], bool], timeout: float = 60) -> Any:
        """The read API's answer once `check` holds on it; fails with the last answer."""
        return await read_api_until(self.http, self.url(service, path), check, timeout, f"{service} {path}")

    async def send(self, topic: str, data: Any, customer: str | None) -> Envelope[Any]:
        envelope = Envelope.new(data, customer_id=customer, occurred_at=DEC)
        await self.kafka.send(topic, envelope, key=message_key(envelope))
        return envelope

    async def answered(self, topic: str, command: Envelope[Any], type_name: str) -> Envelope[Any]:
        correlation = command.correlation_id or str(command.id)
        found = await self.kafka.wait_for(
            topic, lambda ms: any(m.type == type_name and m.correlation_id == correlation for m in ms), 60
        )
        return next(m for m in found if m.type == type_name and m.correlation_id == correlation)


def console_env(infra: Infra, prefix: str, port: int, folder: Path, urls: dict[str, str]) -> dict[str, str]:
    """The console's environment: Kafka as its `ops` principal where the broker has identities
    (the local broker's credentials folder), else PLAINTEXT, like the CLI in the e2e tests."""
    settings = service_settings(infra, prefix, "postgresql://unused/unused")
    env = service_env(settings)
    env.pop("TALLY_KAFKA_USERNAME", None)
    env.pop("TALLY_KAFKA_PASSWORD", None)
    env.pop("TALLY_DATABASE_URL", None)
    env.update(
        TALLY_CONSOLE_PORT=str(port),
        TALLY_CONSOLE_DIR=str(folder),
        **{f"TALLY_{name.upper()}_URL": url for name, url in urls.items()},
    )
    return env


async def seed(stack: ConsoleStack, run: str) -> Seeded:
    seeded = Seeded(
        customer=f"console-{run}",
        rule_set_id=f"standard-{run}",
        grant_id=f"welcome-{run}",
        invoice_id="",
        unpriced_customer=f"console-{run}-sms",
        price_list_id=f"pl-{run}",
    )
    rule_set = PutRuleSet(
        rule_set_id=seeded.rule_set_id,
        name="Standard business rules",
        rules=[
            Rule(
                rule_id="monthly-minimum",
                type="minimum_amount",
                title="Monthly minimum",
                tax_code="MIN",
                analyze=Analyze(scope="total"),
                conditions=[Condition(threshold=Decimal(25))],
            )
        ],
    )
    put = await stack.send(topics.RULES_COMMANDS, rule_set, None)
    await stack.answered(topics.RULES_EVENTS, put, "RuleSetChanged")
    for who, name, price_list in (
        (seeded.customer, "Console Demo Ltd", None),
        (seeded.unpriced_customer, "Console SMS Ltd", seeded.price_list_id),
    ):
        upsert = UpsertCustomer(currency="USD", name=name, price_list_id=price_list)
        done = await stack.send(topics.INVOICING_COMMANDS, upsert, who)
        await stack.answered(topics.INVOICING_EVENTS, done, "CustomerUpserted")
    assigned = await stack.send(
        topics.RULES_COMMANDS, AssignRuleSet(rule_set_id=seeded.rule_set_id), seeded.customer
    )
    await stack.answered(topics.RULES_EVENTS, assigned, "RuleSetAssigned")
    grant = GrantCredit(
        grant_id=seeded.grant_id,
        kind="promotional",
        amount=Money.of("5.00", "USD"),
        source="promo_code",
        reason="WELCOME5",
        expires_at=dt.date(2027, 3, 31),
    )
    granted = await stack.send(topics.CREDITS_COMMANDS, grant, seeded.customer)
    await stack.answered(topics.CREDITS_EVENTS, granted, "CreditGranted")
    charge = AddCharge(
        charge_id=f"setup-{run}",
        description="Setup fee",
        amount=Money.of("10.00", "USD"),
        invoice_now=True,
    )
    await stack.send(topics.INVOICING_COMMANDS, charge, seeded.customer)

    def settled(body: Any) -> bool:  # 10.00 + 15.00 minimum top-up − 5.00 credit
        return any(Decimal(i["amount_due"]) == Decimal("20.00") for i in body["invoices"])

    credit_view = await stack.until("credits", f"/customers/{seeded.customer}/invoices", settled)
    seeded.invoice_id = next(
        i["invoice_id"] for i in credit_view["invoices"] if Decimal(i["amount_due"]) == Decimal("20.00")
    )
    usage = UsageRecorded(service="sms", quantity=Decimal(7), unit="message")
    await stack.send(topics.USAGE, usage, seeded.unpriced_customer)
    await stack.kafka.dead_letters(
        topics.USAGE,
        lambda d: d.get("key") == seeded.unpriced_customer and "no price" in str(d.get("error")),
        timeout=60,
    )
    return seeded


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def console_stack(
    infra: Infra, topic_prefix: str, module_database: Any, tmp_path_factory: Any
) -> AsyncIterator[ConsoleStack]:
    processes: dict[str, ServiceProcess] = {}
    for name in SERVICES:
        settings = service_settings(infra, topic_prefix, await module_database(), http_port=free_port())
        processes[name] = ServiceProcess(name, service_env(settings), settings.http_port)
        processes[name].start()
    folder = tmp_path_factory.mktemp("console")
    port = free_port()
    urls = {name: f"http://127.0.0.1:{p.port}" for name, p in processes.items()}
    console = ServiceProcess("console", console_env(infra, topic_prefix, port, folder, urls), port)
    console.start()
    probe = KafkaProbe(infra.kafka_bootstrap, topic_prefix, infra.kafka_admin)
    await probe.start()
    try:
        for process in (*processes.values(), console):
            await process.wait_healthy()
        async with httpx.AsyncClient(timeout=10) as http:
            stack = ConsoleStack(processes, console, folder, http, probe, Seeded("", "", "", "", "", ""))
            stack.seeded = await seed(stack, uuid.uuid4().hex[:6])
            yield stack
    finally:
        await probe.stop()
        codes = {name: p.stop() for name, p in (*processes.items(), ("console", console))}
        assert all(code == 0 for code in codes.values()), codes
