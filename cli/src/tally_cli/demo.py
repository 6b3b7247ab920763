"""`make demo`: a month of billing for three customers, played against the running stack.

Everything goes through Kafka exactly as a billing team's systems would send it:
configuration, usage in two currencies to domestic and international destinations, a
rule set with a tiered promotion, a minimum and a commitment penalty, a promotional
credit, a service-break refund that makes a negative invoice, a bill run, an
overpayment, and a void and regenerate. Each step waits for its outcome; at the end
every customer's statement is printed. Exits 1 when a step is rejected or never settles.

    python -m tally_cli.demo        (the stack must be up: make up)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tally_cli.connection import OPERATOR, USAGE_PRODUCER, KafkaAccess, kafka_access
from tally_cli.main import publish
from tally_cli.statement import fetch_statement, render, service_url
from tally_cli.watching import OutcomeWatcher
from tally_contracts import Envelope, Money
from tally_contracts.credits import GrantCredit
from tally_contracts.invoicing import (
    AddCharge,
    CreateSubscription,
    Price,
    PutPriceList,
    RegenerateInvoice,
    RunBilling,
    UpsertCustomer,
    VoidInvoice,
)
from tally_contracts.payments import RecordOfflinePayment
from tally_contracts.rules import Analyze, AssignRuleSet, Condition, PutRuleSet, Rule
from tally_contracts.topics import USAGE
from tally_contracts.usage import UsageRecorded
from tally_messaging.settings import ServiceSettings

console = Console()
# Last month, billed on the first of this one: every message is then inside the services'
# dedupe window (70 days), whatever day the demo runs.
BILL_DAY = dt.datetime.now(dt.UTC).date().replace(day=1)
MONTH = dt.datetime.combine((BILL_DAY - dt.timedelta(days=1)).replace(day=1), dt.time(), tzinfo=dt.UTC)


class DemoFailed(Exception):
    pass


def on_day(day: int) -> dt.datetime:
    """Day 1-28 of the demo month, 9:00; day 31 is the bill day and 32, 33, ... the days after it."""
    if day <= 28:
        return MONTH + dt.timedelta(days=day - 1, hours=9)
    return dt.datetime.combine(BILL_DAY, dt.time(9), tzinfo=dt.UTC) + dt.timedelta(days=day - 31)


def envelope(data: Any, customer: str | None, day: int = 1) -> Envelope[Any]:
    return Envelope.new(data, customer_id=customer, occurred_at=on_day(day))


def price_list() -> PutPriceList:
    def price(unit_price: str, currency: str, prefix: str | None = None) -> Price:
        return Price(
            service="voice",
            unit="minute",
            unit_price=Decimal(unit_price),
            currency=currency,
            destination_prefix=prefix,
        )

    return PutPriceList(
        price_list_id="default",
        prices=[
            price("0.02", "USD"),
            price("0.15", "USD", "44"),
            price("0.12", "USD", "4420"),
            price("0.10", "USD", "33"),
            price("0.03", "EUR"),
            price("0.09", "EUR", "44"),
        ],
    )


def rule_set() -> PutRuleSet:
    return PutRuleSet(
        rule_set_id="standard",
        name="Standard business rules",
        destination_groups={"international": ["44", "33", "49"]},
        rules=[
            Rule(
                rule_id="intl-voice-promo",
                type="promotion",
                title="International voice discount",
                tax_code="PROMO",
                analyze=Analyze(scope="service", service="voice", destination_group="international"),
                measure="units",
                value_type="percentage",
                conditions=[
                    Condition(threshold=Decimal(100), value=Decimal(5)),
                    Condition(threshold=Decimal(300), value=Decimal(10)),
                ],
            ),
            Rule(
                rule_id="monthly-minimum",
                type="minimum_amount",
                title="Monthly minimum",
                tax_code="MIN",
                analyze=Analyze(scope="total"),
                conditions=[Condition(threshold=Decimal(25))],
            ),
            Rule(
                rule_id="voice-commitment",
                type="penalty",
                title="Voice commitment shortfall",
                tax_code="PEN",
                analyze=Analyze(scope="service", service="voice"),
                measure="units",
                value_type="amount",
                conditions=[Condition(threshold=Decimal(500), value=Decimal(10))],
            ),
        ],
    )


def usage(customer: str, rng: random.Random, calls: list[tuple[str | None, int]]) -> list[Envelope[Any]]:
    """One event per call: (destination, minutes), spread over the month."""
    return [
        envelope(
            UsageRecorded(service="voice", quantity=Decimal(minutes), unit="minute", destination=destination),
            customer,
            day=rng.randint(1, 28),
        )
        for destination, minutes in calls
    ]


class Demo:
    def __init__(
        self,
        operator: KafkaAccess,
        usage_producer: KafkaAccess,
        prefix: str,
        watcher: OutcomeWatcher,
        http: httpx.AsyncClient,
    ) -> None:
        self.operator, self.usage_producer, self.prefix = operator, usage_producer, prefix
        self.watcher, self.http = watcher, http

    async def command(self, message: Envelope[Any], settle: float = 1.0) -> list[Any]:
        """Send, wait for the outcome; a rejection or dead letter ends the demo."""
        await publish(self.operator, self.prefix, [message])
        seen = await self.watcher.collect(message, timeout=30, settle=settle)
        if not seen:
            raise DemoFailed(f"{message.type} got no answer in 30 s")
        for item in seen:
            if item.raw is not None:
                raise DemoFailed(f"{message.type} dead-lettered: {item.raw.get('error')}")
            if item.envelope is not None and item.envelope.type == "CommandRejected":
                raise DemoFailed(f"{message.type} rejected: {item.envelope.data.reason}")
        return [item.envelope for item in seen if item.envelope is not None]

    async def invoices(self, customer: str) -> list[dict[str, Any]]:
        response = await self.http.get(f"{service_url('invoicing')}/customers/{customer}/invoices")
        response.raise_for_status()
        invoices: list[dict[str, Any]] = response.json()["invoices"]
        return invoices

    async def until(self, what: str, check: Callable[[], Awaitable[bool]], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not await check():
            if time.monotonic() > deadline:
                raise DemoFailed(f"timed out waiting for {what}")
            await asyncio.sleep(0.3)


async def play(demo: Demo, progress: Progress, customers: dict[str, str]) -> None:
    acme, globex, initech = customers["acme"], customers["globex"], customers["initech"]
    rng = random.Random(2026)

    async def step(title: str, work: Awaitable[Any]) -> Any:
        task = progress.add_task(title, total=None)
        result = await work
        progress.update(task, description=f"[green]✓[/green] {title}", completed=1, total=1)
        return result

    await step("price list: voice in USD and EUR, by destination", demo.command(envelope(price_list(), None)))
    await step("rule set: tiered promotion, minimum, penalty", demo.command(envelope(rule_set(), None)))
    for name, currency in ((acme, "USD"), (globex, "EUR"), (initech, "USD")):
        await step(
            f"customer {name} ({currency})",
            demo.command(envelope(UpsertCustomer(currency=currency, name=name.split("-")[0]), name)),
        )
    for name in (acme, globex):
        await step(
            f"assign rule set to {name}",
            demo.command(envelope(AssignRuleSet(rule_set_id="standard"), name)),
        )
    for name in (acme, initech):
        fee = Money.of("49.00", "USD")
        sub = CreateSubscription(
            subscription_id=f"plan-{name}", name="Business voice plan", fee=fee, starts_on=MONTH.date()
        )
        await step(f"subscription for {name}", demo.command(envelope(sub, name)))
    grant = GrantCredit(
        grant_id=f"welcome-{acme}",
        kind="promotional",
        amount=Money.of("20.00", "USD"),
        source="promo_code",
        reason="WELCOME20",
        expires_at=BILL_DAY + dt.timedelta(days=120),
    )
    await step(
        f"promotional credit 20.00 USD for {acme} (waits for a final invoice)",
        demo.command(envelope(grant, acme)),
    )
    outage = AddCharge(
        charge_id=f"outage-{initech}",
        description=f"Service break 12–14 {MONTH:%b}: three days refunded",
        amount=Money.of("-80.00", "USD"),
        invoice_now=True,
    )
    await step(
        f"service-break refund for {initech}: a negative invoice",
        demo.command(envelope(outage, initech, 15), settle=3),
    )

    events = usage(acme, rng, [("4420", 90), ("44", 120), ("33", 110), ("1", 250), ("1212", 150), (None, 30)])
    events += usage(globex, rng, [("44", 40), ("33", 15), ("49", 5)])
    minutes = {acme: Decimal(750), globex: Decimal(60)}

    async def usage_on_invoices() -> bool:
        for name, expected in minutes.items():
            pending = [i for i in await demo.invoices(name) if i["status"] == "pending"]
            total = Decimal(0)
            for invoice in pending:
                body = (
                    await demo.http.get(f"{service_url('invoicing')}/invoices/{invoice['invoice_id']}")
                ).json()
                total += sum(
                    (Decimal(ln["quantity"]) for ln in body["lines"] if ln["kind"] == "usage"), Decimal(0)
                )
            if total != expected:
                return False
        return True

    await publish(demo.usage_producer, demo.prefix, events, USAGE)
    await step(
        f"{len(events)} usage events rated onto pending invoices", demo.until("usage", usage_on_invoices)
    )

    async def all_final() -> bool:
        for name in customers.values():
            last_month = [i for i in await demo.invoices(name) if i["period_start"] < BILL_DAY.isoformat()]
            if any(i["status"] in ("pending", "closed") for i in last_month):
                return False
        return True

    await step(
        f"bill run for {BILL_DAY:%-d %b}: close, apply rules, finalize, apply credit",
        demo.command(envelope(RunBilling(as_of=BILL_DAY), None, 31), settle=3),
    )
    await step("every invoice posted", demo.until("invoices to be posted", all_final))

    globex_invoice = next(
        i
        for i in await demo.invoices(globex)
        if i["kind"] == "period" and i["period_start"] == MONTH.date().isoformat()
    )
    payment = RecordOfflinePayment(
        payment_id=f"wire-{globex}",
        invoice_id=globex_invoice["invoice_id"],
        amount=Money.of("50.00", "EUR"),
        method="bank_transfer",
        reference=f"SEPA {on_day(33).date().isoformat()}",
        received_on=on_day(33).date(),
    )
    await step(
        f"bank transfer 50.00 EUR from {globex}: an overpayment", demo.command(envelope(payment, globex, 33))
    )

    initech_invoice = next(
        i
        for i in await demo.invoices(initech)
        if i["kind"] != "one_time" and i["status"] in ("posted", "paid")
    )
    void = VoidInvoice(invoice_id=initech_invoice["invoice_id"], reason="wrong plan billed")
    await step(f"void {initech_invoice['invoice_id']}", demo.command(envelope(void, initech, 34), settle=2))
    regenerate = RegenerateInvoice(invoice_id=initech_invoice["invoice_id"])
    await step(
        "regenerate it: rules, finalize and credit again",
        demo.command(envelope(regenerate, initech, 34), settle=3),
    )

    async def regenerated_final() -> bool:
        return any(
            i.get("regenerated_from") == initech_invoice["invoice_id"] and i["status"] in ("posted", "paid")
            for i in await demo.invoices(initech)
        )

    await step("regenerated invoice posted", demo.until("the regenerated invoice", regenerated_final))


async def run() -> int:
    settings = ServiceSettings()
    run_id = uuid.uuid4().hex[:4]
    customers = {name: f"{name}-{run_id}" for name in ("acme", "globex", "initech")}
    operator = kafka_access(settings.kafka_bootstrap, OPERATOR)
    usage_producer = kafka_access(settings.kafka_bootstrap, USAGE_PRODUCER)
    async with (
        OutcomeWatcher(operator, settings.topic_prefix) as watcher,
        httpx.AsyncClient(timeout=10) as http,
    ):
        demo = Demo(operator, usage_producer, settings.topic_prefix, watcher, http)
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
        ) as progress:
            try:
                await play(demo, progress, customers)
            except DemoFailed as exc:
                console.print(f"[red]demo failed: {exc}[/red]")
                return 1
        await asyncio.sleep(1)  # let the last balance events land in the read models
        for customer in customers.values():
            console.print(render(await fetch_statement(customer, http)))
            console.print()
    return 0


def main() -> None:
    sys.exit(asyncio.run(run()))


if __name__ == "__main__":
    main()
