"""The rules DESIGN.md promises, worked through on invoices a billing team would recognise."""

from decimal import Decimal

import pytest

from rules.domain import RuleSetVersion, adjust_invoice, evaluate, put_rule_set
from tally_contracts import Line, Money
from tally_contracts.rules import PutRuleSet, Rule

DESTINATION_GROUPS = {"international": ["44", "33", "49"], "domestic": ["1"]}

VOICE_PROMOTION = Rule.model_validate(
    {
        "rule_id": "voice-10",
        "type": "promotion",
        "title": "10% off voice over 50 USD",
        "tax_code": "PROMO",
        "analyze": {"scope": "service", "service": "voice"},
        "measure": "money",
        "value_type": "percentage",
        "conditions": [{"threshold": "50", "value": "10"}],
    }
)
MINIMUM_20 = Rule.model_validate(
    {
        "rule_id": "minimum-20",
        "type": "minimum_amount",
        "title": "Minimum monthly spend",
        "analyze": {"scope": "total"},
        "conditions": [{"threshold": "20"}],
    }
)
COMMITMENT_PENALTY = Rule.model_validate(
    {
        "rule_id": "commitment",
        "type": "penalty",
        "title": "Usage commitment not met",
        "tax_code": "FEE",
        "analyze": {"scope": "transaction_type", "transaction_type": "usage"},
        "measure": "money",
        "value_type": "amount",
        "conditions": [{"threshold": "30", "value": "5"}],
        "apply_to": {"scope": "transaction_type", "transaction_type": "usage"},
    }
)
INTERNATIONAL_TIERS = Rule.model_validate(
    {
        "rule_id": "international-tiers",
        "type": "promotion",
        "title": "International calling reward",
        "analyze": {"scope": "service", "service": "voice", "destination_group": "international"},
        "measure": "money",
        "value_type": "percentage",
        "conditions": [
            {"threshold": "50", "value": "5"},
            {"threshold": "100", "value": "10"},
            {"threshold": "200", "value": "15"},
        ],
    }
)


def saved(*rules: Rule) -> RuleSetVersion:
    cmd = PutRuleSet(
        rule_set_id="retail", name="Retail", destination_groups=DESTINATION_GROUPS, rules=list(rules)
    )
    return put_rule_set(cmd, latest_version=None)


def voice(line_id: str, amount: str, destination: str) -> Line:
    return Line(
        line_id=line_id,
        kind="usage",
        description="calls",
        amount=Money.of(amount, "USD"),
        service="voice",
        unit="minute",
        quantity=Decimal(10),
        destination=destination,
    )


def plan(amount: str) -> Line:
    return Line(
        line_id="subscription:plan",
        kind="subscription",
        description="Plan",
        amount=Money.of(amount, "USD"),
        subscription_id="plan",
    )


def adjustments(lines: list[Line]) -> list[tuple[str | None, str]]:
    return [(line.rule_id, format(line.amount.amount, "f")) for line in lines]


@pytest.mark.parametrize(
    ("voice_charges", "expected"),
    [("55.00", [("voice-10", "-5.50")]), ("50.00", [("voice-10", "-5.00")]), ("49.99", [])],
)
def test_credit_10_percent_of_voice_charges_when_voice_reaches_50_usd(
    voice_charges: str, expected: list[tuple[str, str]]
) -> None:
    lines = evaluate(saved(VOICE_PROMOTION), [voice("calls", voice_charges, "1"), plan("20.00")], "USD")

    assert adjustments(lines) == expected
    assert all(
        (line.description, line.tax_code, line.service) == ("10% off voice over 50 USD", "PROMO", "voice")
        for line in lines
    )


@pytest.mark.parametrize(
    ("plan_fee", "expected"), [("12.30", [("minimum-20", "7.70")]), ("20.00", []), ("25.00", [])]
)
def test_top_the_bill_up_to_a_20_usd_minimum(plan_fee: str, expected: list[tuple[str, str]]) -> None:
    assert adjustments(evaluate(saved(MINIMUM_20), [plan(plan_fee)], "USD")) == expected


@pytest.mark.parametrize(
    ("used", "expected"),
    [("22.00", [("commitment", "5.00")]), ("30.00", []), ("0.00", [("commitment", "5.00")])],
)
def test_charge_a_5_usd_penalty_below_the_commitment(used: str, expected: list[tuple[str, str]]) -> None:
    assert (
        adjustments(evaluate(saved(COMMITMENT_PENALTY), [voice("calls", used, "1"), plan("10.00")], "USD"))
        == expected
    )


@pytest.mark.parametrize(
    ("uk", "france", "expected"),
    [
        ("20.00", "20.00", []),
        ("30.00", "25.00", [("international-tiers", "-2.75")]),
        ("70.00", "50.00", [("international-tiers", "-12.00")]),
        ("150.00", "50.00", [("international-tiers", "-30.00")]),
    ],
)
def test_a_tiered_voice_promotion_on_the_international_destination_group(
    uk: str, france: str, expected: list[tuple[str, str]]
) -> None:
    calls = [voice("uk", uk, "4420"), voice("france", france, "33"), voice("home", "500.00", "1212")]

    assert adjustments(evaluate(saved(INTERNATIONAL_TIERS), calls, "USD")) == expected


def test_a_whole_rule_set_runs_in_order_before_the_invoice_is_final() -> None:
    retail = saved(VOICE_PROMOTION, COMMITMENT_PENALTY, MINIMUM_20)
    invoice = [voice("calls", "15.00", "1")]

    answer = adjust_invoice("inv-7", "USD", invoice, retail)

    # voice 15 < 50: no promotion; usage 15 < 30: +5 penalty; total 20 = minimum: no top-up.
    assert (answer.rule_set_id, answer.rule_set_version) == ("retail", 1)
    assert adjustments(answer.lines) == [("commitment", "5.00")]
