"""Invoicing on real Kafka and PostgreSQL; the test plays the rules service's part."""

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import pytest_asyncio

from invoicing.app import build
from tally_contracts import Envelope, Line, Money, topics
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
from tally_contracts.rules import InvoiceAdjusted
from tally_contracts.usage import UsageRecorded
from tally_messaging.settings import ServiceSettings
from tally_messaging.testing import Infra, KafkaProbe, free_port, service_settings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
NOV = dt.datetime(2026, 11, 3, 9, 0, tzinfo=dt.UTC)


@pytest_asyncio.fixture(loop_scope="session")
async def invoicing(infra: Infra, topic_prefix: str, new_database: Any) -> AsyncIterator[ServiceSettings]:
    settings = service_settings(infra, topic_prefix, await new_database(), http_port=free_port())
    service = build(settings)
    await service.start()
    yield settings
    await service.stop()


def cmd(data: Any, customer: str | None, at: dt.datetime = NOV) -> Envelope[Any]:
    return Envelope.new(data, customer_id=customer, occurred_at=at)


def of_type(messages: list[Envelope[Any]], type_name: str, customer: str) -> list[Envelope[Any]]:
    return [m for m in messages if m.type == type_name and m.customer_id == customer]


async def a_customer(kafka: KafkaProbe, price_list: str) -> str:
    customer = f"cus-{uuid.uuid4().hex[:8]}"
    prices = [
        Price(service="voice", unit="minute", unit_price=Decimal("0.02"), currency="USD"),
        Price(
            service="voice",
            unit="minute",
            unit_price=Decimal("0.105"),
            currency="USD",
            destination_prefix="44",
        ),
    ]
    await kafka.send(
        topics.INVOICING_COMMANDS, cmd(PutPriceList(price_list_id=price_list, prices=prices), None)
    )
    await kafka.send(
        topics.INVOICING_COMMANDS,
        cmd(UpsertCustomer(currency="USD", billing_day=1, price_list_id=price_list), customer),
    )
    await kafka.wait_for(topics.INVOICING_EVENTS, lambda ms: bool(of_type(ms, "CustomerUpserted", customer)))
    return customer


def voice(customer: str, minutes: str, destination: str | None, at: dt.datetime = NOV) -> Envelope[Any]:
    return cmd(
        UsageRecorded(service="voice", quantity=Decimal(minutes), unit="minute", destination=destination),
        customer,
        at,
    )


async def usage_ingested(settings: ServiceSettings, customer: str, minutes: Decimal) -> None:
    """Wait until `minutes` of usage are on the customer's pending invoices (read API)."""
    base = f"http://127.0.0.1:{settings.http_port}"
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            invoices = (await client.get(f"{base}/customers/{customer}/invoices")).json()["invoices"]
            total = Decimal(0)
            for invoice in (i for i in invoices if i["status"] == "pending"):
                lines = (await client.get(f"{base}/invoices/{invoice['invoice_id']}")).json()["lines"]
                total += sum((Decimal(ln["quantity"]) for ln in lines if ln["kind"] == "usage"), Decimal(0))
            if total >= minutes:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"usage for {customer} not ingested: {total} of {minutes} minutes")


async def adjust(kafka: KafkaProbe, closed: Envelope[Any], lines: list[Line]) -> None:
    """The rules service's answer, played by the test."""
    answer = closed.reply(
        InvoiceAdjusted(
            invoice_id=closed.data.invoice_id, rule_set_id="rs-test", rule_set_version=3, lines=lines
        )
    )
    await kafka.send(topics.RULES_EVENTS, answer)


async def test_usage_to_finalized_invoice_with_duplicates_counted_once(
    invoicing: ServiceSettings, kafka: KafkaProbe
) -> None:
    customer = await a_customer(kafka, f"pl-{uuid.uuid4().hex[:6]}")
    uk = voice(customer, "10", "4420")  # 10 × 0.105 = 1.05
    domestic = voice(customer, "7.5", "1212")  # 7.5 × 0.02 = 0.15
    for message in (uk, domestic, uk, uk, voice(customer, "10", "4420")):  # uk sent three times
        await kafka.send(topics.USAGE, message)
    await usage_ingested(invoicing, customer, Decimal("27.5"))
    await kafka.send(topics.INVOICING_COMMANDS, cmd(RunBilling(as_of=dt.date(2026, 12, 1)), customer))

    events = await kafka.wait_for(
        topics.INVOICING_EVENTS, lambda ms: bool(of_type(ms, "InvoiceClosed", customer))
    )
    [closed] = of_type(events, "InvoiceClosed", customer)
    assert closed.data.subtotal == Money.of("2.25", "USD")  # 2 × 1.05 + 0.15
    uk_line = next(ln for ln in closed.data.lines if ln.destination == "4420")
    assert uk_line.quantity == Decimal(20)
    created = of_type(events, "InvoiceCreated", customer)
    assert [c.data.period_start for c in created] == [dt.date(2026, 11, 1), dt.date(2026, 12, 1)]

    promo = Line(
        line_id="adj-p", kind="adjustment", description="Promo", amount=Money.of("-0.25", "USD"), rule_id="p"
    )
    await adjust(kafka, closed, [promo])
    events = await kafka.wait_for(
        topics.INVOICING_EVENTS, lambda ms: bool(of_type(ms, "InvoiceFinalized", customer))
    )
    [final] = of_type(events, "InvoiceFinalized", customer)
    assert final.data.total == Money.of("2.00", "USD")
    assert (final.data.rule_set_id, final.data.rule_set_version) == ("rs-test", 3)
    assert final.correlation_id == closed.correlation_id

    async with httpx.AsyncClient() as client:
        body = (
            await client.get(f"http://127.0.0.1:{invoicing.http_port}/invoices/{final.data.invoice_id}")
        ).json()
    assert body["status"] == "posted" and body["total"] == "2.00" and len(body["lines"]) == 3


async def test_late_usage_goes_on_the_next_invoice_marked_late(
    invoicing: ServiceSettings, kafka: KafkaProbe
) -> None:
    customer = await a_customer(kafka, f"pl-{uuid.uuid4().hex[:6]}")
    await kafka.send(topics.USAGE, voice(customer, "1", None))
    await usage_ingested(invoicing, customer, Decimal(1))
    await kafka.send(topics.INVOICING_COMMANDS, cmd(RunBilling(as_of=dt.date(2026, 12, 1)), customer))
    await kafka.wait_for(topics.INVOICING_EVENTS, lambda ms: bool(of_type(ms, "InvoiceClosed", customer)))

    november_again = voice(customer, "5", None, at=NOV + dt.timedelta(days=10))  # November is billed
    await kafka.send(topics.USAGE, november_again)
    await usage_ingested(invoicing, customer, Decimal(5))
    await kafka.send(topics.INVOICING_COMMANDS, cmd(RunBilling(as_of=dt.date(2027, 1, 1)), customer))
    events = await kafka.wait_for(
        topics.INVOICING_EVENTS, lambda ms: len(of_type(ms, "InvoiceClosed", customer)) == 2
    )

    december = of_type(events, "InvoiceClosed", customer)[1].data
    assert december.period_start == dt.date(2026, 12, 1)
    [late] = december.lines
    assert late.late and late.quantity == Decimal(5) and late.amount == Money.of("0.10", "USD")


async def test_subscription_prorated_and_one_time_charge_on_next_invoice(
    invoicing: ServiceSettings, kafka: KafkaProbe
) -> None:
    customer = await a_customer(kafka, f"pl-{uuid.uuid4().hex[:6]}")
    sub = CreateSubscription(
        subscription_id="s1", name="Plan", fee=Money.of("30.00", "USD"), starts_on=dt.date(2026, 11, 16)
    )
    await kafka.send(topics.INVOICING_COMMANDS, cmd(sub, customer))
    charge = AddCharge(charge_id="c1", description="Setup", amount=Money.of("5.00", "USD"), invoice_now=False)
    await kafka.send(topics.INVOICING_COMMANDS, cmd(charge, customer))
    await kafka.send(topics.INVOICING_COMMANDS, cmd(RunBilling(as_of=dt.date(2026, 12, 1)), customer))

    events = await kafka.wait_for(
        topics.INVOICING_EVENTS, lambda ms: bool(of_type(ms, "InvoiceClosed", customer))
    )
    lines = {ln.kind: ln for ln in of_type(events, "InvoiceClosed", customer)[0].data.lines}
    assert lines["subscription"].amount == Money.of("15.00", "USD")  # 15 of 30 days
    assert lines["one_time"].amount == Money.of("5.00", "USD")


async def test_charge_in_another_currency_is_rejected(invoicing: ServiceSettings, kafka: KafkaProbe) -> None:
    customer = await a_customer(kafka, f"pl-{uuid.uuid4().hex[:6]}")
    command = cmd(AddCharge(charge_id="c2", description="Fee", amount=Money.of("5.00", "EUR")), customer)
    await kafka.send(topics.INVOICING_COMMANDS, command)

    events = await kafka.wait_for(
        topics.INVOICING_EVENTS, lambda ms: bool(of_type(ms, "CommandRejected", customer))
    )
    [rejected] = of_type(events, "CommandRejected", customer)
    assert rejected.data.code == "currency_mismatch" and rejected.data.command_id == str(command.id)


async def test_void_then_regenerate_goes_through_rules_again(
    invoicing: ServiceSettings, kafka: KafkaProbe
) -> None:
    customer = await a_customer(kafka, f"pl-{uuid.uuid4().hex[:6]}")
    await kafka.send(
        topics.INVOICING_COMMANDS,
        cmd(AddCharge(charge_id="c3", description="Install", amount=Money.of("40.00", "USD")), customer),
    )
    events = await kafka.wait_for(
        topics.INVOICING_EVENTS, lambda ms: bool(of_type(ms, "InvoiceClosed", customer))
    )
    [closed] = of_type(events, "InvoiceClosed", customer)
    await kafka.send(
        topics.INVOICING_COMMANDS, cmd(VoidInvoice(invoice_id=closed.data.invoice_id, reason="x"), customer)
    )
    events = await kafka.wait_for(
        topics.INVOICING_EVENTS, lambda ms: bool(of_type(ms, "CommandRejected", customer))
    )
    assert of_type(events, "CommandRejected", customer)[0].data.code == "invoice_closed"  # not posted yet

    adj = Line(
        line_id="adj-m",
        kind="adjustment",
        description="Minimum",
        amount=Money.of("10.00", "USD"),
        rule_id="m",
    )
    await adjust(kafka, closed, [adj])
    await kafka.wait_for(topics.INVOICING_EVENTS, lambda ms: bool(of_type(ms, "InvoiceFinalized", customer)))
    await kafka.send(
        topics.INVOICING_COMMANDS,
        cmd(VoidInvoice(invoice_id=closed.data.invoice_id, reason="wrong"), customer),
    )
    await kafka.send(
        topics.INVOICING_COMMANDS, cmd(RegenerateInvoice(invoice_id=closed.data.invoice_id), customer)
    )

    events = await kafka.wait_for(
        topics.INVOICING_EVENTS, lambda ms: len(of_type(ms, "InvoiceClosed", customer)) == 2
    )
    assert of_type(events, "InvoiceVoided", customer)[0].data.invoice_id == closed.data.invoice_id
    regenerated = of_type(events, "InvoiceClosed", customer)[1]
    assert regenerated.data.regenerated_from == closed.data.invoice_id
    assert [ln.kind for ln in regenerated.data.lines] == ["one_time"]  # charges kept, adjustments dropped
    await adjust(kafka, regenerated, [])
    events = await kafka.wait_for(
        topics.INVOICING_EVENTS, lambda ms: len(of_type(ms, "InvoiceFinalized", customer)) == 2
    )
    final = of_type(events, "InvoiceFinalized", customer)[1].data
    assert final.total == Money.of("40.00", "USD") and final.regenerated_from == closed.data.invoice_id


async def test_usage_without_price_or_customer_is_dead_lettered_and_the_rest_lands(
    invoicing: ServiceSettings, kafka: KafkaProbe
) -> None:
    customer = await a_customer(kafka, f"pl-{uuid.uuid4().hex[:6]}")
    unpriced = cmd(UsageRecorded(service="sms", quantity=Decimal(3), unit="message"), customer)
    stranger = voice(f"nobody-{uuid.uuid4().hex[:6]}", "5", "44")
    for message in (voice(customer, "2", "44"), unpriced, stranger, voice(customer, "4", "44")):
        await kafka.send(topics.USAGE, message)

    await usage_ingested(invoicing, customer, Decimal(6))
    [no_price] = await kafka.dead_letters(topics.USAGE, lambda d: str(unpriced.id) in d["raw"])
    [no_customer] = await kafka.dead_letters(topics.USAGE, lambda d: str(stranger.id) in d["raw"])
    assert no_price["error"].startswith("no_price: no price for sms/message")
    assert "add a price or send a pre-rated amount" in no_price["error"]
    assert "unknown customer" in no_customer["error"] and "UpsertCustomer" in no_customer["error"]
