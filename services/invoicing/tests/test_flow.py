"""Invoicing on real Kafka and PostgreSQL; the test plays the rules service's part."""

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from invoicing.app import build
from tally_contracts import Envelope, Line, Money, topics
from tally_contracts.invoicing import (
    AddCharge,
    CancelSubscription,
    CloseInvoice,
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
from tally_testing import Infra, KafkaProbe, free_port, service_settings

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


async def test_the_read_api_lists_each_usage_event_id_on_exactly_one_line(
    invoicing: ServiceSettings, kafka: KafkaProbe
) -> None:
    customer = await a_customer(kafka, f"pl-{uuid.uuid4().hex[:6]}")
    uk, domestic, uk_again = (
        voice(customer, "10", "4420"),
        voice(customer, "7.5", "1212"),
        voice(customer, "1", "44"),
    )
    for message in (uk, domestic, uk, uk_again, uk):  # uk delivered three times
        await kafka.send(topics.USAGE, message)
    await usage_ingested(invoicing, customer, Decimal("18.5"))
    await kafka.send(topics.INVOICING_COMMANDS, cmd(RunBilling(as_of=dt.date(2026, 12, 1)), customer))
    events = await kafka.wait_for(
        topics.INVOICING_EVENTS, lambda ms: bool(of_type(ms, "InvoiceClosed", customer))
    )
    [closed] = of_type(events, "InvoiceClosed", customer)

    async with httpx.AsyncClient() as client:
        base = f"http://127.0.0.1:{invoicing.http_port}"
        lines = (await client.get(f"{base}/invoices/{closed.data.invoice_id}")).json()["lines"]
        invoices = (await client.get(f"{base}/customers/{customer}/invoices")).json()["invoices"]
        others = [(await client.get(f"{base}/invoices/{i['invoice_id']}")).json()["lines"] for i in invoices]

    listed = [uid for line in lines for uid in line["usage_ids"]]
    assert sorted(listed) == sorted(str(m.id) for m in (uk, domestic, uk_again))  # each once
    by_destination = {line["destination"]: line["usage_ids"] for line in lines}
    assert by_destination == {"4420": [str(uk.id)], "1212": [str(domestic.id)], "44": [str(uk_again.id)]}
    assert sum(len(line.get("usage_ids", [])) for found in others for line in found) == 3  # nowhere else
    assert not any(
        "usage_ids" in line for line in closed.data.model_dump(mode="json")["lines"]
    )  # not on the wire


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


async def rejected(kafka: KafkaProbe, customer: str, command: Envelope[Any]) -> Any:
    events = await kafka.wait_for(
        topics.INVOICING_EVENTS,
        lambda ms: any(
            m.data.command_id == str(command.id) for m in of_type(ms, "CommandRejected", customer)
        ),
    )
    return next(
        m.data for m in of_type(events, "CommandRejected", customer) if m.data.command_id == str(command.id)
    )


async def test_pre_rated_usage_with_a_non_terminating_unit_price_is_billed(
    invoicing: ServiceSettings, kafka: KafkaProbe
) -> None:
    """D3: quantity 3 for 1.00 left CloseInvoice dead-lettered and the invoice pending."""
    customer = await a_customer(kafka, f"pl-{uuid.uuid4().hex[:6]}")
    pre_rated = UsageRecorded(
        service="sms", quantity=Decimal(3), unit="message", amount=Money.of("1.00", "USD")
    )
    await kafka.send(topics.USAGE, cmd(pre_rated, customer))
    [created] = of_type(
        await kafka.wait_for(
            topics.INVOICING_EVENTS, lambda ms: bool(of_type(ms, "InvoiceCreated", customer))
        ),
        "InvoiceCreated",
        customer,
    )
    await usage_ingested(invoicing, customer, Decimal(0))
    await kafka.send(
        topics.INVOICING_COMMANDS, cmd(CloseInvoice(invoice_id=created.data.invoice_id), customer)
    )

    events = await kafka.wait_for(
        topics.INVOICING_EVENTS, lambda ms: bool(of_type(ms, "InvoiceClosed", customer))
    )

    [closed] = of_type(events, "InvoiceClosed", customer)
    assert closed.data.subtotal == Money.of("1.00", "USD")
    assert closed.data.lines[0].unit_price == Decimal("0.333333333333")


async def test_cancel_subscription_and_charges_are_answered_over_kafka(
    invoicing: ServiceSettings, kafka: KafkaProbe
) -> None:
    """D6 (a repeated charge_id was dead-lettered with UniqueViolationError) and the wiring of
    CancelSubscription, which had no test at any level."""
    customer = await a_customer(kafka, f"pl-{uuid.uuid4().hex[:6]}")
    sub = CreateSubscription(
        subscription_id="s1", name="Plan", fee=Money.of("30.00", "USD"), starts_on=dt.date(2026, 11, 1)
    )
    await kafka.send(topics.INVOICING_COMMANDS, cmd(sub, customer))
    charge = AddCharge(charge_id="c1", description="Setup", amount=Money.of("5.00", "USD"), invoice_now=False)
    await kafka.send(topics.INVOICING_COMMANDS, cmd(charge, customer))
    repeated = cmd(charge, customer)
    await kafka.send(topics.INVOICING_COMMANDS, repeated)
    cancel = cmd(CancelSubscription(subscription_id="s1", ends_on=dt.date(2026, 11, 15)), customer)
    await kafka.send(topics.INVOICING_COMMANDS, cancel)
    unknown = cmd(CancelSubscription(subscription_id="s9", ends_on=dt.date(2026, 11, 15)), customer)
    await kafka.send(topics.INVOICING_COMMANDS, unknown)
    await kafka.send(topics.INVOICING_COMMANDS, cmd(RunBilling(as_of=dt.date(2026, 12, 1)), customer))

    events = await kafka.wait_for(
        topics.INVOICING_EVENTS, lambda ms: bool(of_type(ms, "InvoiceClosed", customer))
    )

    assert (await rejected(kafka, customer, repeated)).code == "duplicate_charge"
    assert (await rejected(kafka, customer, unknown)).code == "unknown_subscription"
    assert [c.data.ends_on for c in of_type(events, "SubscriptionCancelled", customer)] == [
        dt.date(2026, 11, 15)
    ]
    lines = {ln.kind: ln.amount for ln in of_type(events, "InvoiceClosed", customer)[0].data.lines}
    assert lines == {"subscription": Money.of("15.00", "USD"), "one_time": Money.of("5.00", "USD")}


async def test_usage_past_the_quantity_cap_is_dead_lettered_with_its_reason(
    invoicing: ServiceSettings, kafka: KafkaProbe
) -> None:
    """D4: two usages of quantity 9e14 got RunBilling dead-lettered."""
    customer = await a_customer(kafka, f"pl-{uuid.uuid4().hex[:6]}")
    first, second = voice(customer, "900000000000000", None), voice(customer, "900000000000000", None)
    for message in (first, second, voice(customer, "2", None)):
        await kafka.send(topics.USAGE, message)

    [refused] = await kafka.dead_letters(topics.USAGE, lambda d: str(second.id) in json_of(d))
    await usage_ingested(invoicing, customer, Decimal("900000000000002"))
    await kafka.send(topics.INVOICING_COMMANDS, cmd(RunBilling(as_of=dt.date(2026, 12, 1)), customer))
    events = await kafka.wait_for(
        topics.INVOICING_EVENTS, lambda ms: bool(of_type(ms, "InvoiceClosed", customer))
    )

    assert refused["error"].startswith("quantity_over_cap: quantity:")
    assert of_type(events, "InvoiceClosed", customer)[0].data.lines[0].quantity == Decimal("900000000000002")


def json_of(dead_letter: dict[str, Any]) -> str:
    return json.dumps(dead_letter["raw"])


async def test_a_global_bill_run_bills_the_others_and_reports_the_customer_that_cannot_close(
    invoicing: ServiceSettings, kafka: KafkaProbe
) -> None:
    """D3/D4 made a global RunBilling dead-lettered whole: no customer was billed."""
    customers = [await a_customer(kafka, f"pl-{uuid.uuid4().hex[:6]}") for _ in range(3)]
    for customer in customers:
        await kafka.send(topics.USAGE, voice(customer, "1", None))
        await usage_ingested(invoicing, customer, Decimal(1))
    stuck = customers[1]
    conn = await asyncpg.connect(invoicing.database_url)
    try:  # an invoice that adds up past the sum cap: data from before the checks
        await conn.execute(
            "insert into pending_charges (customer_id, charge_id, description, amount, currency)"
            " values ($1, 'old', 'x', 999999999999999999.99, 'USD')",
            stuck,
        )
    finally:
        await conn.close()
    run = cmd(RunBilling(as_of=dt.date(2026, 12, 1)), None)
    await kafka.send(topics.INVOICING_COMMANDS, run)

    events = await kafka.wait_for(
        topics.INVOICING_EVENTS,
        lambda ms: (
            all(of_type(ms, "InvoiceClosed", c) for c in (customers[0], customers[2]))
            and bool(of_type(ms, "InvoiceCloseFailed", stuck))
        ),
    )

    [failure] = of_type(events, "InvoiceCloseFailed", stuck)
    assert failure.causation_id == str(run.id) and failure.data.code == "total_over_cap"
    assert not of_type(events, "InvoiceClosed", stuck) and not of_type(events, "CommandRejected", stuck)
    async with httpx.AsyncClient() as client:
        body = (await client.get(f"http://127.0.0.1:{invoicing.http_port}/customers/{stuck}/invoices")).json()
    assert [(i["invoice_id"], i["status"]) for i in body["invoices"]] == [
        (failure.data.invoice_id, "pending")
    ]
