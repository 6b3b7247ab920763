"""The rules service on real Kafka and PostgreSQL; the test plays the invoicing service's part.

One service instance (and database) serves the whole module, so each test works with its
own customers and rule set ids. No test but the last leaves a default rule set behind.
"""

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import pytest_asyncio

from rules.app import build
from tally_contracts import Envelope, Line, Money, topics
from tally_contracts.invoicing import InvoiceClosed, InvoiceCreated
from tally_contracts.rules import AssignRuleSet, PutRuleSet, Rule
from tally_messaging.settings import ServiceSettings
from tally_testing import Infra, KafkaProbe, free_port, service_settings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

GROUPS = {"international": ["44", "33"], "domestic": ["1"]}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rules_service(
    infra: Infra, topic_prefix: str, module_database: Any
) -> AsyncIterator[ServiceSettings]:
    settings = service_settings(infra, topic_prefix, await module_database(), http_port=free_port())
    service = build(settings)
    await service.start()
    yield settings
    await service.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def rule(**fields: Any) -> Rule:
    return Rule.model_validate(fields)


def international_tiers() -> Rule:
    return rule(
        rule_id="intl-tiers",
        type="promotion",
        title="International calling reward",
        tax_code="PROMO",
        analyze={"scope": "service", "service": "voice", "destination_group": "international"},
        value_type="percentage",
        conditions=[
            {"threshold": "50", "value": "5"},
            {"threshold": "100", "value": "10"},
            {"threshold": "200", "value": "15"},
        ],
    )


def minimum(threshold: str) -> Rule:
    return rule(
        rule_id="minimum",
        type="minimum_amount",
        title="Minimum monthly spend",
        analyze={"scope": "total"},
        conditions=[{"threshold": threshold}],
    )


def put(rule_set_id: str, *rules: Rule, is_default: bool = False) -> Envelope[Any]:
    data = PutRuleSet(
        rule_set_id=rule_set_id,
        name=rule_set_id.title(),
        is_default=is_default,
        destination_groups=GROUPS,
        rules=list(rules),
    )
    return Envelope.new(data, customer_id=None)


def voice(line_id: str, amount: str, destination: str) -> Line:
    return Line(
        line_id=line_id,
        kind="usage",
        description=f"Calls to {destination}",
        amount=Money.of(amount, "USD"),
        service="voice",
        unit="minute",
        quantity=Decimal(100),
        destination=destination,
    )


def closed(customer: str, invoice_id: str, *lines: Line) -> Envelope[Any]:
    subtotal = sum((ln.amount for ln in lines), Money.zero("USD"))
    return Envelope.new(
        InvoiceClosed(invoice_id=invoice_id, currency="USD", lines=list(lines), subtotal=subtotal),
        customer_id=customer,
    )


def adjusted(messages: list[Envelope[Any]], invoice_id: str) -> list[Envelope[Any]]:
    return [m for m in messages if m.type == "InvoiceAdjusted" and m.data.invoice_id == invoice_id]


async def answer(kafka: KafkaProbe, invoice_id: str) -> Envelope[Any]:
    events = await kafka.wait_for(topics.RULES_EVENTS, lambda ms: bool(adjusted(ms, invoice_id)))
    [message] = adjusted(events, invoice_id)
    return message


async def saved(kafka: KafkaProbe, command: Envelope[Any]) -> Any:
    """Send a rules command; the data of its event (RuleSetChanged or RuleSetAssigned)."""
    await kafka.send(topics.RULES_COMMANDS, command)

    def caused(ms: list[Envelope[Any]]) -> list[Envelope[Any]]:
        return [m for m in ms if m.causation_id == str(command.id)]

    [event] = caused(await kafka.wait_for(topics.RULES_EVENTS, lambda ms: bool(caused(ms))))
    assert event.type != "CommandRejected", event.data.reason
    return event.data


async def rejection(kafka: KafkaProbe, command: Envelope[Any]) -> Any:
    await kafka.send(topics.RULES_COMMANDS, command)

    def rejections(ms: list[Envelope[Any]]) -> list[Envelope[Any]]:
        return [m for m in ms if m.type == "CommandRejected" and m.data.command_id == str(command.id)]

    [rejected] = rejections(await kafka.wait_for(topics.RULES_EVENTS, lambda ms: bool(rejections(ms))))
    return rejected.data


async def get_json(settings: ServiceSettings, path: str) -> tuple[int, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{settings.http_port}{path}")
    return response.status_code, response.json()


async def test_assigned_tiered_promotion_adjusts_a_closed_invoice(
    rules_service: ServiceSettings, kafka: KafkaProbe
) -> None:
    customer, rule_set_id = unique("cus"), unique("intl")
    await saved(kafka, put(rule_set_id, international_tiers()))
    await saved(kafka, Envelope.new(AssignRuleSet(rule_set_id=rule_set_id), customer_id=customer))

    invoice = closed(
        customer,
        unique("inv"),
        voice("uk", "80.00", "4420"),
        voice("fr", "45.55", "331"),  # international: 125.55, the 100 tier → 10%
        voice("us", "300.00", "1212"),  # domestic: neither measured nor credited
    )
    await kafka.send(topics.INVOICING_EVENTS, invoice)
    message = await answer(kafka, invoice.data.invoice_id)

    assert (message.data.rule_set_id, message.data.rule_set_version) == (rule_set_id, 1)
    assert message.customer_id == customer and message.correlation_id == invoice.correlation_id
    [line] = message.data.lines
    assert line.amount == Money.of("-12.56", "USD")  # 10% of 125.55 = 12.555, half-even
    assert (line.line_id, line.kind, line.rule_id) == ("adj-intl-tiers", "adjustment", "intl-tiers")
    assert (line.description, line.tax_code, line.service) == (
        "International calling reward",
        "PROMO",
        "voice",
    )

    status, body = await get_json(rules_service, f"/customers/{customer}/rule-set")
    assert status == 200
    assert body["assigned"]["rule_set_id"] == rule_set_id and body["assigned"]["version"] == 1
    assert body["applies"] == {"rule_set_id": rule_set_id, "version": 1}


async def test_invalid_rule_set_is_rejected_naming_the_rule_and_field(
    rules_service: ServiceSettings, kafka: KafkaProbe
) -> None:
    rule_set_id = unique("broken")
    bad = rule(
        rule_id="too-generous",
        type="promotion",
        title="Everything free and more",
        analyze={"scope": "service", "service": "voice", "destination_group": "mars"},
        value_type="percentage",
        conditions=[{"threshold": "10", "value": "150"}],
    )
    data = await rejection(kafka, put(rule_set_id, bad))

    assert data.code == "invalid_rule_set" and data.command_type == "PutRuleSet"
    assert "rule 'too-generous', conditions[0].value" in data.reason
    assert "rule 'too-generous', analyze.destination_group" in data.reason and "'mars'" in data.reason
    status, _ = await get_json(rules_service, f"/rule-sets/{rule_set_id}")
    assert status == 404  # nothing was saved

    customer = unique("cus")
    assign = Envelope.new(AssignRuleSet(rule_set_id=rule_set_id), customer_id=customer)
    data = await rejection(kafka, assign)
    assert data.code == "unknown_rule_set" and rule_set_id in data.reason


async def test_rule_set_changed_after_close_does_not_change_that_invoice(
    rules_service: ServiceSettings, kafka: KafkaProbe
) -> None:
    customer, rule_set_id = unique("cus"), unique("minimum")
    await saved(kafka, put(rule_set_id, minimum("20")))
    await saved(kafka, Envelope.new(AssignRuleSet(rule_set_id=rule_set_id), customer_id=customer))
    first = closed(customer, unique("inv"), voice("us", "5.00", "1212"))
    await kafka.send(topics.INVOICING_EVENTS, first)
    before = await answer(kafka, first.data.invoice_id)
    assert [ln.amount for ln in before.data.lines] == [Money.of("15.00", "USD")]

    changed = await saved(kafka, put(rule_set_id, minimum("50")))
    assert (changed.rule_set_id, changed.version, changed.is_default) == (rule_set_id, 2, False)
    await kafka.send(topics.INVOICING_EVENTS, first)  # the same message again: the inbox drops it
    again = closed(customer, first.data.invoice_id, voice("us", "5.00", "1212"))  # a new message id
    await kafka.send(topics.INVOICING_EVENTS, again)
    # Same customer, same partition: once the next invoice is answered, so were the re-sends.
    second = closed(customer, unique("inv"), voice("us", "5.00", "1212"))
    await kafka.send(topics.INVOICING_EVENTS, second)
    after = await answer(kafka, second.data.invoice_id)
    assert after.data.rule_set_version == 2
    assert [ln.amount for ln in after.data.lines] == [Money.of("45.00", "USD")]

    events = await kafka.messages(topics.RULES_EVENTS)
    assert [m.data for m in adjusted(events, first.data.invoice_id)] == [before.data]  # once, with v1

    status, body = await get_json(rules_service, f"/rule-sets/{rule_set_id}")
    assert status == 200 and body["current"]["version"] == 2
    assert [v["version"] for v in body["versions"]] == [1, 2]
    assert [v["rules"][0]["conditions"][0]["threshold"] for v in body["versions"]] == ["20", "50"]


async def test_without_a_rule_set_the_answer_has_no_lines(
    rules_service: ServiceSettings, kafka: KafkaProbe
) -> None:
    customer, invoice_id = unique("cus"), unique("inv")
    created = InvoiceCreated(
        invoice_id=invoice_id,
        currency="USD",
        status="closed",
        period_start=dt.date(2026, 11, 1),
        period_end=dt.date(2026, 11, 30),
    )
    await kafka.send(topics.INVOICING_EVENTS, Envelope.new(created, customer_id=customer))  # ignored
    await kafka.send(topics.INVOICING_EVENTS, closed(customer, invoice_id, voice("uk", "99.00", "44")))

    message = await answer(kafka, invoice_id)
    assert (message.data.rule_set_id, message.data.rule_set_version, message.data.lines) == (None, None, [])
    status, body = await get_json(rules_service, f"/customers/{customer}/rule-set")
    assert status == 200 and body["assigned"] is None and body["applies"] is None


async def test_default_rule_set_applies_to_customers_without_an_assignment(
    rules_service: ServiceSettings, kafka: KafkaProbe
) -> None:
    """Last in the module: it makes a default rule set, and then stops it being the default."""
    customer, rule_set_id = unique("cus"), unique("default")
    await saved(kafka, put(rule_set_id, minimum("10"), is_default=True))
    try:
        invoice = closed(customer, unique("inv"), voice("us", "4.00", "1212"))
        await kafka.send(topics.INVOICING_EVENTS, invoice)
        message = await answer(kafka, invoice.data.invoice_id)
        assert (message.data.rule_set_id, message.data.rule_set_version) == (rule_set_id, 1)
        assert [ln.amount for ln in message.data.lines] == [Money.of("6.00", "USD")]
        status, body = await get_json(rules_service, f"/customers/{customer}/rule-set")
        assert status == 200 and body["assigned"] is None
        assert body["default"] == body["applies"] == {"rule_set_id": rule_set_id, "version": 1}
    finally:
        await saved(kafka, put(rule_set_id, minimum("10")))  # version 2, not the default
    status, body = await get_json(rules_service, f"/customers/{customer}/rule-set")
    assert body["default"] is None


async def post_json(settings: ServiceSettings, path: str, body: Any) -> tuple[int, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"http://127.0.0.1:{settings.http_port}{path}", json=body)
    return response.status_code, response.json()


async def test_a_dry_run_evaluates_a_chosen_version_and_saves_nothing(
    rules_service: ServiceSettings, kafka: KafkaProbe
) -> None:
    rule_set_id = unique("dry")
    await saved(kafka, put(rule_set_id, international_tiers()))
    lines = [
        voice("uk", "80.00", "4420").model_dump(mode="json"),
        voice("fr", "45.55", "331").model_dump(mode="json"),
    ]

    status, body = await post_json(
        rules_service, f"/rule-sets/{rule_set_id}/versions/1/dry-run", {"currency": "USD", "lines": lines}
    )

    assert status == 200
    assert (body["rule_set_id"], body["version"]) == (rule_set_id, 1)
    assert [(ln["rule_id"], ln["amount"]) for ln in body["lines"]] == [
        ("intl-tiers", {"amount": "-12.56", "currency": "USD"})
    ]
    _, after = await get_json(rules_service, f"/rule-sets/{rule_set_id}")
    assert [v["version"] for v in after["versions"]] == [1]


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("versions/9/dry-run", {"currency": "USD", "lines": []}, 404, "unknown rule set or version"),
        ("versions/x/dry-run", {"currency": "USD", "lines": []}, 400, "version must be a number"),
        ("versions/1/dry-run", {"currency": "USD"}, 400, "lines"),
        (
            "versions/1/dry-run",
            {"currency": "EUR", "lines": [voice("uk", "80.00", "4420").model_dump(mode="json")]},
            400,
            "the invoice in EUR",
        ),
    ],
)
async def test_a_dry_run_refuses_what_it_cannot_evaluate_with_a_reason(
    rules_service: ServiceSettings, kafka: KafkaProbe, path: str, body: Any, status: int, says: str
) -> None:
    rule_set_id = unique("dry")
    await saved(kafka, put(rule_set_id, international_tiers()))

    answered, problem = await post_json(rules_service, f"/rule-sets/{rule_set_id}/{path}", body)

    assert answered == status
    assert says in problem["error"]
