"""The Kafka key of a message, as its contract declares it: per-key order is per-customer
order, and a configuration without a customer is ordered by its own id."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from tally_contracts import Envelope, MessageData, Money, message_key
from tally_contracts.credits import GrantCredit
from tally_contracts.invoicing import PriceListChanged, PutPriceList, RunBilling, UpsertCustomer
from tally_contracts.rules import AssignRuleSet, RuleSetChanged


def test_a_customers_message_is_keyed_by_the_customer_whatever_its_fields() -> None:
    upsert = UpsertCustomer(currency="EUR", price_list_id="eu")
    assign = AssignRuleSet(rule_set_id="standard")

    assert message_key(Envelope.new(upsert, customer_id="c-1")) == "c-1"
    assert message_key(Envelope.new(assign, customer_id="c-2")) == "c-2"


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (PutPriceList(price_list_id="eu", prices=[]), "eu"),
        (PriceListChanged(price_list_id="eu", prices=0), "eu"),
        (RuleSetChanged(rule_set_id="standard", name="Standard", version=2, is_default=True), "standard"),
        (RunBilling(as_of=dt.date(2026, 11, 30)), "bill-run"),
    ],
)
def test_a_configuration_without_a_customer_is_keyed_as_its_contract_declares(
    data: MessageData, key: str
) -> None:
    assert message_key(Envelope.new(data, customer_id=None)) == key


def test_a_message_without_a_customer_or_a_declared_key_is_keyed_by_its_id() -> None:
    grant = GrantCredit(
        grant_id="g-1", kind="promotional", amount=Money(amount=Decimal(5), currency="EUR"), source="other"
    )
    message = Envelope.new(grant, customer_id=None)

    assert message_key(message) == str(message.id)


@pytest.mark.parametrize(
    "model", [m for m in MessageData.registry.values() if m.key_field is not None], ids=lambda m: m.__name__
)
def test_a_declared_key_field_is_a_field_of_the_message(model: type[MessageData]) -> None:
    assert model.key_field in model.model_fields


@pytest.mark.parametrize("model", list(MessageData.registry.values()), ids=lambda m: m.__name__)
def test_a_message_carrying_a_configurations_id_is_keyed_by_it_without_a_customer(
    model: type[MessageData],
) -> None:
    """The configurations are price lists and rule sets: a message naming one, sent without
    a customer, keeps their order (as the runtime keyed them before the contracts said so)."""
    configuration_ids = [f for f in ("price_list_id", "rule_set_id") if f in model.model_fields]

    assert model.key_field == (configuration_ids[0] if configuration_ids else None)
