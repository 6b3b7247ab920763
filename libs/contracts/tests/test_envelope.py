"""The envelope and every message it carries: round trips, golden fixtures per message
version, parsing by `type`, clear errors, causation, topics and documentation.

EXAMPLES holds one valid example of every registered message type; a new message type
without an example fails `test_examples_cover_every_registered_message_type`. After
adding one (or changing a message on purpose, with a new version), write its fixture with

    uv run python libs/contracts/tests/test_envelope.py

and review the diff of `golden/`.
"""

from __future__ import annotations

import datetime as dt
import json
import typing
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from tally_contracts import (
    Command,
    CommandCompleted,
    CommandRejected,
    Envelope,
    Line,
    MessageData,
    Money,
    parse_message,
    topics,
)
from tally_contracts import credits as cr
from tally_contracts import invoicing as inv
from tally_contracts import payments as pay
from tally_contracts import rules as ru
from tally_contracts import usage as us
from tally_contracts.dates import EARLIEST_BUSINESS_DATE, LATEST_BUSINESS_DATE
from tally_contracts.envelope import MAX_MESSAGE_BYTES
from tally_contracts.identifiers import MAX_ID_LENGTH
from tally_contracts.money import MAX_ABS_AMOUNT

GOLDEN = Path(__file__).parent / "golden"
FIXED_AT = dt.datetime(2026, 11, 3, 9, 15, tzinfo=dt.UTC)
FIXED_NAMESPACE = uuid.UUID("6f1c3a52-1b0e-4c47-9d0a-6a3e1f2b7c10")
CUSTOMER = "cus_42"
CONFIGURATION = {"PutPriceList", "PriceListChanged", "PutRuleSet", "RuleSetChanged"}


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


def _lines() -> list[Line]:
    return [
        Line(
            line_id="usage:voice:minute:44",
            kind="usage",
            description="Voice to the UK",
            amount=usd("12.50"),
            service="voice",
            unit="minute",
            quantity=Decimal("250"),
            unit_price=Decimal("0.05"),
            destination="44",
        ),
        Line(
            line_id="sub:basic",
            kind="subscription",
            description="Basic plan",
            amount=usd("20.00"),
            subscription_id="sub-1",
        ),
        Line(
            line_id="rule:voice-promo",
            kind="adjustment",
            description="Voice promotion",
            amount=usd("-1.25"),
            tax_code="PROMO",
            rule_id="voice-promo",
        ),
    ]


_RULE = ru.Rule(
    rule_id="voice-promo",
    type="promotion",
    title="Voice promotion",
    tax_code="PROMO",
    analyze=ru.Analyze(scope="service", service="voice", destination_group="europe"),
    measure="money",
    value_type="percentage",
    conditions=[ru.Condition(threshold=Decimal("50"), value=Decimal("10"))],
    apply_to=ru.ApplyTo(scope="service", service="voice"),
)

EXAMPLES: dict[str, MessageData] = {
    example.message_type(): example
    for example in [
        us.UsageRecorded(
            service="voice",
            quantity=Decimal("12.5"),
            unit="minute",
            destination="44",
            amount=usd("0.625"),
            subscription_id="sub-1",
        ),
        inv.UpsertCustomer(currency="USD", name="Acme", billing_day=15, price_list_id="gold"),
        inv.PutPriceList(
            price_list_id="default",
            prices=[
                inv.Price(service="voice", unit="minute", unit_price=Decimal("0.0125"), currency="USD"),
                inv.Price(
                    service="voice",
                    unit="minute",
                    unit_price=Decimal("0.05"),
                    currency="USD",
                    destination_prefix="44",
                ),
            ],
        ),
        inv.CreateSubscription(
            subscription_id="sub-1", name="Basic plan", fee=usd("20.00"), starts_on=dt.date(2026, 11, 1)
        ),
        inv.CancelSubscription(subscription_id="sub-1", ends_on=dt.date(2026, 12, 15)),
        inv.AddCharge(charge_id="chg-1", description="Setup fee", amount=usd("99.00"), invoice_now=False),
        inv.RunBilling(as_of=dt.date(2026, 12, 1)),
        inv.CloseInvoice(invoice_id="inv-1"),
        inv.VoidInvoice(invoice_id="inv-1", reason="Billed twice"),
        inv.RegenerateInvoice(invoice_id="inv-1"),
        inv.CustomerUpserted(currency="USD", name="Acme", billing_day=15, price_list_id="gold"),
        inv.InvoiceCreated(
            invoice_id="inv-2",
            currency="USD",
            status="pending",
            period_start=dt.date(2026, 11, 1),
            period_end=dt.date(2026, 11, 30),
            regenerated_from="inv-1",
        ),
        inv.InvoiceClosed(
            invoice_id="inv-1",
            currency="USD",
            lines=_lines()[:2],
            subtotal=usd("32.50"),
            period_start=dt.date(2026, 11, 1),
            period_end=dt.date(2026, 11, 30),
        ),
        inv.InvoiceFinalized(
            invoice_id="inv-1",
            currency="USD",
            issued_on=dt.date(2026, 12, 1),
            lines=_lines(),
            total=usd("31.25"),
            rule_set_id="rs-1",
            rule_set_version=3,
        ),
        inv.InvoiceVoided(invoice_id="inv-1", reason="Billed twice"),
        inv.InvoiceStatusChanged(invoice_id="inv-1", status="posted"),
        inv.InvoiceCloseFailed(
            invoice_id="inv-5",
            code="total_over_cap",
            reason="subtotal: this would bring the invoice to 1000000000000000000.00 USD, not below the cap",
            as_of=dt.date(2026, 12, 1),
        ),
        inv.PriceListChanged(price_list_id="default", prices=2),
        inv.SubscriptionCreated(
            subscription_id="sub-1", name="Basic plan", fee=usd("20.00"), starts_on=dt.date(2026, 11, 1)
        ),
        inv.SubscriptionCancelled(subscription_id="sub-1", ends_on=dt.date(2026, 12, 15)),
        inv.ChargeAdded(charge_id="chg-1", amount=usd("99.00"), invoice_id="inv-3"),
        ru.PutRuleSet(
            rule_set_id="rs-1",
            name="Standard",
            is_default=True,
            destination_groups={"europe": ["44", "33", "49"]},
            rules=[
                _RULE,
                ru.Rule(
                    rule_id="minimum",
                    type="minimum_amount",
                    title="Minimum monthly amount",
                    analyze=ru.Analyze(scope="total"),
                    conditions=[ru.Condition(threshold=Decimal("20"))],
                ),
            ],
        ),
        ru.AssignRuleSet(rule_set_id="rs-1"),
        ru.RuleSetChanged(rule_set_id="rs-1", name="Standard", version=3, is_default=True),
        ru.RuleSetAssigned(rule_set_id="rs-1"),
        ru.InvoiceAdjusted(invoice_id="inv-1", rule_set_id="rs-1", rule_set_version=3, lines=_lines()[2:]),
        cr.GrantCredit(
            grant_id="grant-1",
            kind="promotional",
            amount=usd("10.00"),
            source="promo_code",
            reason="WELCOME10",
            expires_at=dt.date(2027, 1, 31),
            apply_to_existing=False,
            priority=10,
            scope=cr.CreditScope(line_kind="usage", service="voice"),
        ),
        cr.DeleteCreditEntry(grant_id="grant-1"),
        cr.ChangeCreditCurrency(grant_id="grant-1", currency="EUR", rate=Decimal("0.92")),
        cr.ApplyCredits(invoice_id="inv-1", amount=usd("20.00")),
        cr.ExpireCredits(as_of=dt.date(2027, 2, 1)),
        cr.CreditGranted(
            grant_id="grant-1",
            kind="promotional",
            amount=usd("10.00"),
            source="promo_code",
            reason="WELCOME10",
            expires_at=dt.date(2027, 1, 31),
            priority=10,
            scope=cr.CreditScope(line_kind="usage", service="voice"),
        ),
        cr.CreditApplied(
            application_id="app-1",
            invoice_id="inv-1",
            source_type="promotional",
            source_id="grant-1",
            amount=usd("10.00"),
        ),
        cr.CreditReleased(
            application_id="app-1", invoice_id="inv-1", amount=usd("10.00"), returned_to="promotional"
        ),
        cr.NegativeInvoiceTransferred(invoice_id="inv-4", amount=usd("5.00")),
        cr.CreditExpired(grant_id="grant-1", amount=usd("2.50")),
        cr.CreditEntryDeleted(grant_id="grant-1", amount=usd("10.00")),
        cr.CreditCurrencyChanged(
            grant_id="grant-1",
            from_amount=usd("10.00"),
            to_amount=Money.of("9.20", "EUR"),
            rate=Decimal("0.92"),
        ),
        cr.CreditRefunded(refund_id="ref-1", amount=usd("15.00")),
        cr.RefundDeclined(
            refund_id="ref-1",
            amount=usd("15.00"),
            reason="The credit balance is 5.00 USD, less than 15.00 USD",
        ),
        cr.InvoiceBalanceChanged(
            invoice_id="inv-1",
            total=usd("31.25"),
            credits_applied=usd("10.00"),
            payments_applied=usd("21.25"),
            amount_due=usd("0.00"),
            status="paid",
        ),
        cr.CreditBalanceChanged(
            currency="USD", promotional_available=usd("0.00"), balance_available=usd("3.75")
        ),
        pay.RecordOfflinePayment(
            payment_id="pay-1",
            invoice_id="inv-1",
            amount=usd("25.00"),
            method="check",
            reference="CHK-1001",
            received_on=dt.date(2026, 12, 3),
        ),
        pay.ReversePayment(payment_id="pay-1", reason="The check bounced"),
        pay.DeductPromotionalCredits(
            deduction_id="ded-1", amount=usd("5.00"), reason="Promo abuse", grant_id="grant-1"
        ),
        pay.RefundCreditBalance(
            refund_id="ref-1", amount=usd("15.00"), method="bank_transfer", reference="SEPA-77"
        ),
        pay.PaymentRecorded(
            payment_id="pay-1",
            invoice_id="inv-1",
            amount=usd("25.00"),
            method="check",
            reference="CHK-1001",
            received_on=dt.date(2026, 12, 3),
        ),
        pay.PaymentReversed(payment_id="pay-1", amount=usd("25.00"), reason="The check bounced"),
        pay.PromotionalCreditsDeducted(
            deduction_id="ded-1", amount=usd("5.00"), reason="Promo abuse", grant_id="grant-1"
        ),
        pay.RefundRequested(
            refund_id="ref-1", amount=usd("15.00"), method="bank_transfer", reference="SEPA-77"
        ),
        pay.RefundRecorded(
            refund_id="ref-1", amount=usd("15.00"), method="bank_transfer", reference="SEPA-77"
        ),
        pay.RefundFailed(
            refund_id="ref-1",
            amount=usd("15.00"),
            reason="The credit balance is 5.00 USD, less than 15.00 USD",
        ),
        CommandRejected(
            command_id="0b8f6f3e-6c1a-4d8e-9a51-3f0f4a1f8c10",
            command_type="VoidInvoice",
            code="unknown_invoice",
            reason="Invoice inv-9 does not exist for this customer; check the invoice id.",
        ),
        CommandCompleted(
            command_id="0b8f6f3e-6c1a-4d8e-9a51-3f0f4a1f8c10",
            command_type="ExpireCredits",
            outcome="nothing_to_do",
        ),
    ]
}

TYPES = sorted(MessageData.registry)


def example_envelope(type_name: str) -> Envelope[Any]:
    """The example of `type_name` in an envelope with fixed ids and time."""
    return Envelope.new(
        EXAMPLES[type_name],
        customer_id=None if type_name in CONFIGURATION else CUSTOMER,
        message_id=uuid.uuid5(FIXED_NAMESPACE, type_name),
        correlation_id=str(uuid.uuid5(FIXED_NAMESPACE, "flow")),
        causation_id=None if EXAMPLES[type_name].is_command else str(uuid.uuid5(FIXED_NAMESPACE, "cause")),
        occurred_at=FIXED_AT,
    )


def golden_path(type_name: str, version: int = 1) -> Path:
    return GOLDEN / f"{type_name}.v{version}.json"


def golden_text(envelope: Envelope[Any]) -> str:
    """The fixture's layout: the wire JSON, indented, keys in model order."""
    return json.dumps(json.loads(envelope.to_json()), indent=2, ensure_ascii=False) + "\n"


def write_golden() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for type_name in TYPES:
        envelope = example_envelope(type_name)
        golden_path(type_name, envelope.version).write_text(golden_text(envelope), encoding="utf-8")


def wire(type_name: str, **changes: Any) -> dict[str, Any]:
    """The example of `type_name` as a JSON object, with top-level `changes`."""
    document: dict[str, Any] = json.loads(example_envelope(type_name).to_json())
    return {**document, **changes}


def parse_error(document: Any) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        parse_message(json.dumps(document))
    return caught.value


# -- round trips and golden fixtures -------------------------------------------------


def test_examples_cover_every_registered_message_type() -> None:
    assert set(EXAMPLES) == set(MessageData.registry)


def test_only_message_types_are_registered() -> None:
    assert "Command" not in MessageData.registry
    assert "MessageData" not in MessageData.registry


@pytest.mark.parametrize("type_name", TYPES)
def test_every_message_round_trips_through_json(type_name: str) -> None:
    envelope = example_envelope(type_name)

    parsed = parse_message(envelope.to_json())

    assert parsed == envelope
    assert type(parsed.data) is MessageData.registry[type_name]
    assert parsed.to_json() == envelope.to_json()


@pytest.mark.parametrize("type_name", TYPES)
def test_golden_fixture_parses_to_the_example(type_name: str) -> None:
    text = golden_path(type_name).read_text(encoding="utf-8")

    parsed = parse_message(text.encode())

    assert parsed == example_envelope(type_name)


@pytest.mark.parametrize("type_name", TYPES)
def test_golden_fixture_reserialises_to_the_same_json(type_name: str) -> None:
    text = golden_path(type_name).read_text(encoding="utf-8")

    assert golden_text(parse_message(text)) == text


def test_every_golden_fixture_belongs_to_a_message_version() -> None:
    expected = {golden_path(t).name for t in TYPES}
    assert {p.name for p in GOLDEN.glob("*.json")} == expected


def test_occurred_at_is_written_in_utc_with_z() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    envelope = Envelope.new(
        cr.ApplyCredits(), customer_id=CUSTOMER, occurred_at=dt.datetime(2026, 11, 3, 10, 15, tzinfo=paris)
    )

    assert json.loads(envelope.to_json())["occurred_at"] == "2026-11-03T09:15:00Z"


def test_money_amounts_keep_their_digits_on_the_wire() -> None:
    document = json.loads(example_envelope("PaymentRecorded").to_json())

    assert document["data"]["amount"] == {"amount": "25.00", "currency": "USD"}


# -- parsing by type -----------------------------------------------------------------


def test_parse_picks_the_model_named_by_type() -> None:
    body = {"invoice_id": "inv-1"}

    close = parse_message(json.dumps(wire("CloseInvoice", data=body)))
    regenerate = parse_message(json.dumps(wire("RegenerateInvoice", data=body)))

    assert type(close.data) is inv.CloseInvoice
    assert type(regenerate.data) is inv.RegenerateInvoice


def test_a_body_of_another_type_is_refused() -> None:
    error = parse_error(wire("InvoiceVoided", data=EXAMPLES["CloseInvoice"].model_dump(mode="json")))

    assert error.errors()[0]["loc"] == ("data", "reason")


def test_an_envelope_whose_data_disagrees_with_its_type_is_refused() -> None:
    with pytest.raises(ValidationError, match="data is a CloseInvoice, type says InvoiceVoided"):
        Envelope[Any](
            id=uuid.uuid4(),
            type="InvoiceVoided",
            occurred_at=FIXED_AT,
            customer_id=CUSTOMER,
            data=EXAMPLES["CloseInvoice"],
        )


# -- clear errors --------------------------------------------------------------------


@pytest.mark.parametrize("type_name", ["Nope", "Command", "MessageData", "invoicevoided", ""])
def test_an_unknown_type_is_refused_by_name(type_name: str) -> None:
    error = parse_error(wire("ApplyCredits", type=type_name))

    assert f"unknown message type {type_name!r}" in str(error)


def test_a_message_without_type_is_refused() -> None:
    document = wire("ApplyCredits")
    del document["type"]

    assert "unknown message type None" in str(parse_error(document))


@pytest.mark.parametrize("field", ["id", "occurred_at", "customer_id", "data"])
def test_a_missing_envelope_field_is_named(field: str) -> None:
    document = wire("InvoiceVoided")
    del document[field]

    error = parse_error(document)

    assert error.errors()[0]["loc"] == (field,)


def test_a_missing_data_field_is_named_under_data() -> None:
    document = wire("RecordOfflinePayment")
    del document["data"]["received_on"]

    error = parse_error(document)

    assert [(e["loc"], e["msg"]) for e in error.errors()] == [(("data", "received_on"), "Field required")]
    assert "data.received_on" in str(error)


def test_a_missing_data_field_is_not_mistaken_for_an_envelope_field() -> None:
    document = wire("RuleSetChanged")
    del document["data"]["version"]

    assert parse_error(document).errors()[0]["loc"] == ("data", "version")


def test_an_extra_envelope_field_is_named() -> None:
    error = parse_error(wire("InvoiceVoided", priority="high"))

    assert [(e["loc"], e["type"]) for e in error.errors()] == [(("priority",), "extra_forbidden")]


def test_an_extra_data_field_is_named_under_data() -> None:
    document = wire("InvoiceVoided")
    document["data"]["priority"] = "high"

    error = parse_error(document)

    assert [(e["loc"], e["type"]) for e in error.errors()] == [(("data", "priority"), "extra_forbidden")]


@pytest.mark.parametrize(
    ("path", "value", "error_type"),
    [
        (("data", "payment_id"), 42, "string_type"),
        (("data", "method"), "bitcoin", "literal_error"),
        (("data", "received_on"), "last tuesday", "date_from_datetime_parsing"),
        (("data", "amount"), "25.00", "model_type"),
        (("data", "amount", "currency"), "usd", "value_error"),
        (("data", "amount", "amount"), "lots", "value_error"),
        (("id",), "not-a-uuid", "uuid_parsing"),
        (("occurred_at",), "2026-11-03T09:15:00", "timezone_aware"),
        (("version",), 2, "less_than_equal"),
        (("customer_id",), 42, "string_type"),
    ],
)
def test_a_wrong_typed_field_is_named(path: tuple[str, ...], value: Any, error_type: str) -> None:
    document = wire("RecordOfflinePayment")
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value

    error = parse_error(document)

    assert [(e["loc"], e["type"]) for e in error.errors()] == [(path, error_type)]


def test_a_float_amount_is_refused_with_the_reason() -> None:
    document = wire("RecordOfflinePayment")
    document["data"]["amount"]["amount"] = 25.0

    error = parse_error(document)

    assert error.errors()[0]["loc"] == ("data", "amount", "amount")
    assert "not a float" in error.errors()[0]["msg"]


def test_a_float_nested_in_a_list_is_refused_with_its_position() -> None:
    document = wire("InvoiceFinalized")
    document["data"]["lines"][1]["amount"]["amount"] = 20.0

    error = parse_error(document)

    assert error.errors()[0]["loc"] == ("data", "lines", 1, "amount", "amount")


@pytest.mark.parametrize(
    "raw", [b"{not json", b"", b"[]", b"null", b'{"id": "x"', "\u00e9".encode("latin-1")]
)
def test_invalid_json_is_refused(raw: bytes) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_message(raw)

    assert caught.value.errors()[0]["type"] in {"json_invalid", "model_type", "value_error"}


def test_invalid_json_says_so() -> None:
    with pytest.raises(ValidationError, match="Invalid JSON"):
        parse_message(b"{not json")


def test_an_oversized_message_is_refused_before_parsing() -> None:
    raw = b" " * (MAX_MESSAGE_BYTES + 1)

    with pytest.raises(ValueError, match=f"over the {MAX_MESSAGE_BYTES}-byte limit"):
        parse_message(raw)


def test_an_oversized_text_message_is_measured_in_bytes() -> None:
    reason = "€" * (MAX_MESSAGE_BYTES // 2)  # 1.5 MB as UTF-8
    document = wire("InvoiceVoided")
    document["data"]["reason"] = reason

    with pytest.raises(ValueError, match="-byte limit"):
        parse_message(json.dumps(document, ensure_ascii=False))


def test_a_message_at_the_limit_is_parsed() -> None:
    document = wire("InvoiceVoided")
    document["data"]["reason"] = ""
    raw = json.dumps(document).encode()
    padded = raw[:-1] + b" " * (MAX_MESSAGE_BYTES - len(raw)) + b"}"

    assert len(padded) == MAX_MESSAGE_BYTES
    assert parse_message(padded).type == "InvoiceVoided"


# -- causation -----------------------------------------------------------------------


def test_reply_copies_correlation_and_sets_causation() -> None:
    command = example_envelope("RecordOfflinePayment")

    reply = command.reply(EXAMPLES["PaymentRecorded"])

    assert reply.correlation_id == command.correlation_id
    assert reply.causation_id == str(command.id)
    assert reply.customer_id == command.customer_id
    assert reply.type == "PaymentRecorded"
    assert reply.id != command.id


def test_a_reply_to_a_reply_keeps_the_first_correlation() -> None:
    command = example_envelope("RefundCreditBalance")

    requested = command.reply(EXAMPLES["RefundRequested"])
    answered = requested.reply(EXAMPLES["CreditRefunded"])

    assert answered.correlation_id == command.correlation_id
    assert answered.causation_id == str(requested.id)


def test_a_new_message_starts_its_own_flow() -> None:
    envelope = Envelope.new(EXAMPLES["ApplyCredits"], customer_id=CUSTOMER)

    assert envelope.correlation_id == str(envelope.id)
    assert envelope.causation_id is None


def test_reply_to_a_message_without_correlation_correlates_with_it() -> None:
    upstream = Envelope[Any].model_validate({**wire("UsageRecorded"), "correlation_id": None})

    reply = upstream.reply(EXAMPLES["CommandRejected"])

    assert reply.correlation_id == str(upstream.id)


def test_reply_may_name_another_customer() -> None:
    command = example_envelope("PutPriceList")

    reply = command.reply(EXAMPLES["CommandRejected"], customer_id="cus_7")

    assert (command.customer_id, reply.customer_id) == (None, "cus_7")


# -- topics --------------------------------------------------------------------------


def _topics_of(type_name: str) -> set[str]:
    return {topic for topic, names in topics.TOPIC_MESSAGES.items() if type_name in names}


EVENT_TOPICS = {t for t in topics.TOPIC_MESSAGES if t.endswith(".events")}
COMMAND_TOPICS = {t for t in topics.TOPIC_MESSAGES if t.endswith(".commands")}


def test_every_topic_is_usage_commands_or_events() -> None:
    assert set(topics.TOPIC_MESSAGES) == {topics.USAGE} | EVENT_TOPICS | COMMAND_TOPICS


ANSWERS_ON_EVERY_EVENTS_TOPIC = {"CommandRejected", "CommandCompleted"}


@pytest.mark.parametrize("type_name", [t for t in TYPES if t not in ANSWERS_ON_EVERY_EVENTS_TOPIC])
def test_every_message_belongs_to_exactly_one_topic_of_its_kind(type_name: str) -> None:
    found = _topics_of(type_name)

    assert len(found) == 1, f"{type_name} is on {sorted(found) or 'no topic'}"
    expected = COMMAND_TOPICS if MessageData.registry[type_name].is_command else EVENT_TOPICS | {topics.USAGE}
    assert found <= expected


@pytest.mark.parametrize("type_name", sorted(ANSWERS_ON_EVERY_EVENTS_TOPIC))
def test_command_answers_are_on_every_events_topic_and_no_other(type_name: str) -> None:
    assert _topics_of(type_name) == EVENT_TOPICS


def test_topics_name_only_registered_message_types() -> None:
    named = set().union(*topics.TOPIC_MESSAGES.values())

    assert named <= set(MessageData.registry)


def test_every_command_is_a_command_and_every_event_is_not() -> None:
    for name, model in MessageData.registry.items():
        assert model.is_command == issubclass(model, Command), name


def test_every_topic_has_a_dead_letter_topic() -> None:
    assert set(topics.ALL_TOPICS_WITH_DLQ) == set(topics.ALL_TOPICS) | {f"{t}.dlq" for t in topics.ALL_TOPICS}


# -- documentation and strictness ----------------------------------------------------


def _nested_models(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for argument in typing.get_args(annotation):
        yield from _nested_models(argument)


def _every_model() -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []
    pending: list[type[BaseModel]] = [Envelope, *MessageData.registry.values()]
    while pending:
        model = pending.pop()
        if model in seen:
            continue
        seen.append(model)
        for info in model.model_fields.values():
            pending.extend(_nested_models(info.annotation))
    return sorted(seen, key=lambda m: m.__name__)


MODELS = _every_model()


def test_the_model_walk_reaches_nested_models() -> None:
    assert {Money, Line, inv.Price, ru.Rule, ru.Analyze, ru.ApplyTo, ru.Condition} <= set(MODELS)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_field_has_a_description(model: type[BaseModel]) -> None:
    undocumented = [name for name, info in model.model_fields.items() if not info.description]

    assert undocumented == []


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_model_is_frozen_and_forbids_extra_fields(model: type[BaseModel]) -> None:
    assert model.model_config.get("frozen") is True
    assert model.model_config.get("extra") == "forbid"


if __name__ == "__main__":
    write_golden()


# -- limits on every id and every date (issue 13) -------------------------------------


def _id_fields() -> list[tuple[str, str]]:
    """(type, field) for every top-level `*_id` field the examples fill with a string."""
    return [
        (type_name, name)
        for type_name in TYPES
        for name, value in EXAMPLES[type_name].model_dump(mode="json").items()
        if name.endswith("_id") and name != "command_id" and isinstance(value, str)
    ] + [("InvoiceCreated", "regenerated_from")]


def _command_date_fields() -> list[tuple[str, str]]:
    """(type, field) for every date field of a command."""
    return [
        (type_name, name)
        for type_name in TYPES
        if EXAMPLES[type_name].is_command
        for name, value in EXAMPLES[type_name].model_dump().items()
        if isinstance(value, dt.date)
    ]


WINDOW_MESSAGES = {
    "Input should be greater than or equal to 2000-01-01",
    "Input should be less than or equal to 2099-12-31",
}
INSTANT_WINDOW_MESSAGES = {
    "Input should be greater than or equal to 2000-01-01T00:00:00Z",
    "Input should be less than 2100-01-01T00:00:00Z",
}
ID_FIELDS = _id_fields()
COMMAND_DATE_FIELDS = _command_date_fields()


def with_field(type_name: str, field: str, value: Any) -> dict[str, Any]:
    return wire(type_name, data={**EXAMPLES[type_name].model_dump(mode="json"), field: value})


def test_the_limits_reach_the_fields_they_are_about() -> None:
    assert ("RecordOfflinePayment", "invoice_id") in ID_FIELDS
    assert ("GrantCredit", "grant_id") in ID_FIELDS
    assert ("CreditApplied", "application_id") in ID_FIELDS
    assert {t for t, _ in COMMAND_DATE_FIELDS} >= {
        "CreateSubscription",
        "CancelSubscription",
        "RunBilling",
        "GrantCredit",
        "ExpireCredits",
        "RecordOfflinePayment",
    }


@pytest.mark.parametrize(("type_name", "field"), ID_FIELDS)
def test_an_id_of_the_longest_length_is_accepted(type_name: str, field: str) -> None:
    parsed = parse_message(json.dumps(with_field(type_name, field, "i" * MAX_ID_LENGTH)))

    assert getattr(parsed.data, field) == "i" * MAX_ID_LENGTH


@pytest.mark.parametrize(("type_name", "field"), ID_FIELDS)
def test_an_id_over_the_longest_length_is_refused_naming_the_field(type_name: str, field: str) -> None:
    error = parse_error(with_field(type_name, field, "i" * (MAX_ID_LENGTH + 1)))

    assert error.errors()[0]["loc"] == ("data", field)
    assert f"at most {MAX_ID_LENGTH} characters" in error.errors()[0]["msg"]


@pytest.mark.parametrize(("type_name", "field"), ID_FIELDS)
@pytest.mark.parametrize("control", ["\x00", "\x01", "\n", "\x1b", "\x7f", "\x85"])
def test_an_id_with_a_control_character_is_refused_naming_the_field(
    type_name: str, field: str, control: str
) -> None:
    error = parse_error(with_field(type_name, field, f"id{control}1"))

    assert any(e["loc"] == ("data", field) or field in e["msg"] for e in error.errors())


@pytest.mark.parametrize("customer_id", ["", "c" * (MAX_ID_LENGTH + 1), "cus\x00", "cus\t42"])
def test_the_envelope_customer_id_is_an_id(customer_id: str) -> None:
    error = parse_error(wire("ApplyCredits", customer_id=customer_id))

    assert error.errors()[0]["loc"] == ("customer_id",)


@pytest.mark.parametrize("field", ["correlation_id", "causation_id"])
def test_correlation_and_causation_ids_are_ids(field: str) -> None:
    error = parse_error(wire("ApplyCredits", **{field: "x\x00"}))

    assert error.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize(("type_name", "field"), COMMAND_DATE_FIELDS)
@pytest.mark.parametrize("day", ["9999-12-15", "2999-06-01", "0001-01-01", "1999-12-31", "2100-01-01"])
def test_a_command_date_outside_the_business_window_is_refused_naming_the_field(
    type_name: str, field: str, day: str
) -> None:
    error = parse_error(with_field(type_name, field, day))

    assert error.errors()[0]["loc"] == ("data", field)
    assert error.errors()[0]["msg"] in WINDOW_MESSAGES


@pytest.mark.parametrize(("type_name", "field"), COMMAND_DATE_FIELDS)
@pytest.mark.parametrize("day", [EARLIEST_BUSINESS_DATE, LATEST_BUSINESS_DATE])
def test_the_ends_of_the_business_window_are_accepted(type_name: str, field: str, day: dt.date) -> None:
    parsed = parse_message(json.dumps(with_field(type_name, field, day.isoformat())))

    assert getattr(parsed.data, field) == day


@pytest.mark.parametrize(
    "occurred_at",
    ["9999-12-31T23:59:59Z", "2999-06-01T00:00:00Z", "0001-01-01T00:00:00Z", "0001-01-01T00:30:00+01:00",
     "9999-12-31T23:30:00-01:00", "1999-12-31T23:59:59Z", "2100-01-01T00:00:00Z"],
)  # fmt: skip
def test_an_occurred_at_outside_the_business_window_is_refused(occurred_at: str) -> None:
    error = parse_error(wire("UsageRecorded", occurred_at=occurred_at))

    assert error.errors()[0]["loc"] == ("occurred_at",)
    assert error.errors()[0]["msg"] in INSTANT_WINDOW_MESSAGES


def test_an_occurred_at_is_judged_by_its_utc_date() -> None:
    parsed = parse_message(json.dumps(wire("UsageRecorded", occurred_at="2100-01-01T00:30:00+01:00")))

    assert parsed.occurred_at.astimezone(dt.UTC).date() == LATEST_BUSINESS_DATE


@pytest.mark.parametrize(
    ("type_name", "field"),
    [("GrantCredit", "reason"), ("VoidInvoice", "reason"), ("RecordOfflinePayment", "reference"),
     ("UsageRecorded", "service"), ("AddCharge", "description")],
)  # fmt: skip
def test_nul_in_free_text_is_refused_naming_the_field(type_name: str, field: str) -> None:
    error = parse_error(with_field(type_name, field, "a\x00b"))

    assert error.errors()[0]["loc"] == ("data", field)
    assert error.errors()[0]["msg"] == "must not contain the NUL character"


def test_nul_deep_in_a_body_is_refused_naming_where() -> None:
    document = wire("PutPriceList")
    document["data"]["prices"][1]["destination_prefix"] = "4\x004"

    error = parse_error(document)

    assert error.errors()[0]["loc"] == ("data", "prices", 1, "destination_prefix")
    assert "data.prices.1.destination_prefix" in str(error)


def test_nul_in_a_key_is_refused() -> None:
    document = wire("PutRuleSet")
    document["data"]["destination_groups"]["eu\x00"] = ["44"]

    assert parse_error(document).errors()[0]["loc"] == ("data", "destination_groups", "eu\x00")


def test_an_escaped_backslash_before_u0000_is_not_nul() -> None:
    parsed = parse_message(json.dumps(with_field("VoidInvoice", "reason", "see C:\\u0000")))

    assert parsed.data.reason == "see C:\\u0000"


def test_free_text_may_hold_newlines_and_tabs() -> None:
    parsed = parse_message(json.dumps(with_field("VoidInvoice", "reason", "Billed twice:\n\tsee ticket 12")))

    assert parsed.data.reason == "Billed twice:\n\tsee ticket 12"


@pytest.mark.parametrize(
    ("type_name", "field"),
    [("GrantCredit", "amount"), ("RecordOfflinePayment", "amount"), ("DeductPromotionalCredits", "amount"),
     ("RefundCreditBalance", "amount"), ("AddCharge", "amount"), ("CreateSubscription", "fee"),
     ("UsageRecorded", "amount")],
)  # fmt: skip
@pytest.mark.parametrize("amount", ["1000000000000000", "-1000000000000000.00", "999999999999999999"])
def test_a_single_amount_is_below_the_amount_cap_naming_the_field(
    type_name: str, field: str, amount: str
) -> None:
    error = parse_error(with_field(type_name, field, {"amount": amount, "currency": "USD"}))

    assert error.errors()[0]["loc"] == ("data", field)
    assert f"smaller than {MAX_ABS_AMOUNT:,}" in error.errors()[0]["msg"]


@pytest.mark.parametrize(
    ("type_name", "field"),
    [("InvoiceFinalized", "total"), ("InvoiceClosed", "subtotal"), ("CreditBalanceChanged", "balance_available"),
     ("InvoiceBalanceChanged", "amount_due"), ("CreditApplied", "amount"), ("NegativeInvoiceTransferred", "amount")],
)  # fmt: skip
def test_a_sum_may_pass_the_amount_cap_up_to_the_total_cap(type_name: str, field: str) -> None:
    accepted = parse_message(
        json.dumps(with_field(type_name, field, {"amount": "1800000000000000.00", "currency": "USD"}))
    )
    refused = parse_error(with_field(type_name, field, {"amount": "1000000000000000000", "currency": "USD"}))

    assert getattr(accepted.data, field) == Money.of("1800000000000000", "USD")
    assert refused.errors()[0]["loc"] == ("data", field, "amount")


@pytest.mark.parametrize("amount", ["-0.01", "-1000"])
def test_a_negative_pre_rated_usage_amount_is_refused(amount: str) -> None:
    error = parse_error(with_field("UsageRecorded", "amount", {"amount": amount, "currency": "USD"}))

    assert error.errors()[0]["loc"] == ("data", "amount")
    assert "must not be negative" in error.errors()[0]["msg"]


def test_a_zero_pre_rated_usage_amount_is_accepted() -> None:
    parsed = parse_message(
        json.dumps(with_field("UsageRecorded", "amount", {"amount": "0", "currency": "JPY"}))
    )

    assert parsed.data.amount == Money.zero("JPY")


@pytest.mark.parametrize(
    ("type_name", "field", "longest"),
    [("RecordOfflinePayment", "reference", 200), ("RefundCreditBalance", "reference", 200),
     ("ReversePayment", "reason", 500), ("DeductPromotionalCredits", "reason", 500)],
)  # fmt: skip
def test_free_text_of_payments_commands_has_a_longest_length(
    type_name: str, field: str, longest: int
) -> None:
    accepted = parse_message(json.dumps(with_field(type_name, field, "r" * longest)))
    refused = parse_error(with_field(type_name, field, "r" * (longest + 1)))

    assert getattr(accepted.data, field) == "r" * longest
    assert refused.errors()[0]["loc"] == ("data", field)


@pytest.mark.parametrize(("field", "longest"), [("service", 100), ("unit", 50), ("destination_prefix", 30)])
def test_a_price_is_as_long_as_the_usage_it_rates(field: str, longest: int) -> None:
    document = wire("PutPriceList")
    document["data"]["prices"][0][field] = "4" * (longest + 1)

    assert parse_error(document).errors()[0]["loc"] == ("data", "prices", 0, field)
