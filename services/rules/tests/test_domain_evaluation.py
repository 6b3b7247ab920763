"""Evaluating rule sets on a closed invoice: scopes, measures, values, tiers, order, caps, rounding."""

import itertools
from decimal import Decimal
from typing import Any

import pytest

from rules.domain import (
    DestinationGroups,
    RuleSetVersion,
    adjust_invoice,
    evaluate,
    put_rule_set,
    select_rule_set,
    validate_rule_set,
)
from tally_contracts import CurrencyMismatch, Line, Money
from tally_contracts.rules import PutRuleSet, Rule

GROUPS = {"international": ["44", "33", "49"], "london": ["4420"], "domestic": ["1"]}


def usage(line_id: str, service: str, amount: str, quantity: str, destination: str | None = None) -> Line:
    return Line(
        line_id=line_id,
        kind="usage",
        description=f"{service} usage",
        amount=Money.of(amount, "USD"),
        service=service,
        unit="minute" if service == "voice" else "GB",
        quantity=Decimal(quantity),
        destination=destination,
    )


def subscription(subscription_id: str, amount: str) -> Line:
    return Line(
        line_id=f"subscription:{subscription_id}",
        kind="subscription",
        description=f"{subscription_id} plan",
        amount=Money.of(amount, "USD"),
        subscription_id=subscription_id,
    )


def one_time(line_id: str, amount: str, currency: str = "USD") -> Line:
    return Line(line_id=line_id, kind="one_time", description="charge", amount=Money.of(amount, currency))


# voice 65.00 (480 min): international 30.00 (100 min), london 12.00 (60 min), domestic 18.00
# (300 min), no destination 5.00 (20 min); data 10.00 (4 GB); usage 75.00; subscriptions 23.00
# (basic 15.00, tv 8.00); one-time 4.50; total 102.50.
INVOICE = [
    usage("voice-44", "voice", "30.00", "100", "44"),
    usage("voice-4420", "voice", "12.00", "60", "4420"),
    usage("voice-1", "voice", "18.00", "300", "1"),
    usage("voice-unknown", "voice", "5.00", "20"),
    usage("data", "data", "10.00", "4"),
    subscription("basic", "15.00"),
    subscription("tv", "8.00"),
    one_time("charge:setup", "4.50"),
]


def rule(**fields: Any) -> Rule:
    base: dict[str, Any] = {
        "rule_id": "r1",
        "type": "promotion",
        "title": "Adjustment",
        "analyze": {"scope": "total"},
        "measure": "money",
        "value_type": "amount",
        "conditions": [{"threshold": "0", "value": "1"}],
    }
    return Rule.model_validate(base | fields)


def version(*rules: Rule, groups: dict[str, list[str]] | None = None) -> RuleSetVersion:
    """A saved version, through the same validation a PutRuleSet goes through."""
    cmd = PutRuleSet(
        rule_set_id="standard",
        name="Standard",
        destination_groups=GROUPS if groups is None else groups,
        rules=list(rules),
    )
    return put_rule_set(cmd, latest_version=None)


def amounts(lines: list[Line]) -> list[Decimal]:
    return [line.amount.amount for line in lines]


TOTAL = {"scope": "total"}
USAGE = {"scope": "transaction_type", "transaction_type": "usage"}
SUBSCRIPTIONS = {"scope": "transaction_type", "transaction_type": "subscription"}
ONE_TIME = {"scope": "transaction_type", "transaction_type": "one_time"}
VOICE = {"scope": "service", "service": "voice"}
DATA = {"scope": "service", "service": "data"}
BASIC = {"scope": "subscription", "subscription_id": "basic"}
TV = {"scope": "subscription", "subscription_id": "tv"}
NO_SUCH_SUBSCRIPTION = {"scope": "subscription", "subscription_id": "gone"}


def voice_to(group: str) -> dict[str, str]:
    return {"scope": "service", "service": "voice", "destination_group": group}


def when(threshold: str, value: str | None = None) -> list[dict[str, str]]:
    return [{"threshold": threshold} if value is None else {"threshold": threshold, "value": value}]


# (type, analyze, measure, value_type, conditions, apply_to, expected amount or None)
# fmt: off
CASES = {
    # promotions: the analysed measure reaches the threshold
    "promotion/total/money/amount/default": ("promotion", TOTAL, "money", "amount", when("100", "5"), None, "-5.00"),
    "promotion/total/money/percentage/default": ("promotion", TOTAL, "money", "percentage", when("100", "10"), None, "-10.25"),
    "promotion/total/money/percentage/service": ("promotion", TOTAL, "money", "percentage", when("100", "10"), VOICE, "-6.50"),
    "promotion/total/money/amount/subscription-capped": ("promotion", TOTAL, "money", "amount", when("100", "10"), TV, "-8.00"),
    "promotion/usage/money/percentage/default": ("promotion", USAGE, "money", "percentage", when("75", "10"), None, "-7.50"),
    "promotion/subscriptions/money/amount/subscription": ("promotion", SUBSCRIPTIONS, "money", "amount", when("20", "3"), BASIC, "-3.00"),
    "promotion/one-time/money/percentage/total": ("promotion", ONE_TIME, "money", "percentage", when("4.50", "20"), TOTAL, "-20.50"),
    "promotion/one-time/money/amount/one-time-capped": ("promotion", ONE_TIME, "money", "amount", when("1", "10"), ONE_TIME, "-4.50"),
    "promotion/voice/money/percentage/default": ("promotion", VOICE, "money", "percentage", when("50", "10"), None, "-6.50"),
    "promotion/voice/units/amount/service": ("promotion", VOICE, "units", "amount", when("480", "7"), VOICE, "-7.00"),
    "promotion/voice/units/percentage/usage": ("promotion", VOICE, "units", "percentage", when("400", "10"), USAGE, "-7.50"),
    "promotion/international/money/percentage/default": ("promotion", voice_to("international"), "money", "percentage", when("25", "10"), None, "-3.00"),
    "promotion/international/units/amount/service": ("promotion", voice_to("international"), "units", "amount", when("100", "2"), VOICE, "-2.00"),
    "promotion/london/money/percentage/subscriptions": ("promotion", voice_to("london"), "money", "percentage", when("12", "50"), SUBSCRIPTIONS, "-11.50"),
    "promotion/data/units/percentage/subscription": ("promotion", DATA, "units", "percentage", when("4", "100"), BASIC, "-15.00"),
    "promotion/voice/money/not-reached": ("promotion", VOICE, "money", "percentage", when("65.01", "10"), None, None),
    "promotion/voice/units/not-reached": ("promotion", VOICE, "units", "amount", when("481", "5"), None, None),
    "promotion/international/units/not-reached": ("promotion", voice_to("international"), "units", "amount", when("101", "5"), None, None),
    "promotion/total/nothing-to-credit": ("promotion", TOTAL, "money", "percentage", when("0", "10"), NO_SUCH_SUBSCRIPTION, None),
    # penalties: the analysed measure does not reach the threshold
    "penalty/total/money/amount/default": ("penalty", TOTAL, "money", "amount", when("200", "5"), None, "5.00"),
    "penalty/total/money/percentage/usage": ("penalty", TOTAL, "money", "percentage", when("200", "10"), USAGE, "7.50"),
    "penalty/usage/money/amount/service": ("penalty", USAGE, "money", "amount", when("100", "5"), DATA, "5.00"),
    "penalty/one-time/money/percentage/default": ("penalty", ONE_TIME, "money", "percentage", when("5", "10"), None, "0.45"),
    "penalty/subscriptions/money/amount/subscription": ("penalty", SUBSCRIPTIONS, "money", "amount", when("23.01", "4"), TV, "4.00"),
    "penalty/voice/units/amount/service": ("penalty", VOICE, "units", "amount", when("500", "5"), VOICE, "5.00"),
    "penalty/voice/money/percentage/subscription": ("penalty", VOICE, "money", "percentage", when("70", "20"), BASIC, "3.00"),
    "penalty/domestic/units/percentage/default": ("penalty", voice_to("domestic"), "units", "percentage", when("301", "10"), None, "1.80"),
    "penalty/international/money/amount/total": ("penalty", voice_to("international"), "money", "amount", when("50", "5"), TOTAL, "5.00"),
    "penalty/total/money/reached": ("penalty", TOTAL, "money", "amount", when("102.50", "5"), None, None),
    "penalty/voice/units/reached": ("penalty", VOICE, "units", "amount", when("480", "5"), None, None),
    "penalty/total/percentage/nothing-to-charge": ("penalty", TOTAL, "money", "percentage", when("200", "10"), NO_SUCH_SUBSCRIPTION, None),
    # minimum amounts: the difference up to the threshold
    "minimum/total": ("minimum_amount", TOTAL, "money", None, when("120"), None, "17.50"),
    "minimum/total/reached": ("minimum_amount", TOTAL, "money", None, when("102.50"), None, None),
    "minimum/subscriptions": ("minimum_amount", SUBSCRIPTIONS, "money", None, when("25"), None, "2.00"),
    "minimum/one-time": ("minimum_amount", ONE_TIME, "money", None, when("10"), None, "5.50"),
    "minimum/usage/reached": ("minimum_amount", USAGE, "money", None, when("75"), None, None),
    "minimum/voice": ("minimum_amount", VOICE, "money", None, when("70"), None, "5.00"),
    "minimum/international": ("minimum_amount", voice_to("international"), "money", None, when("40"), None, "10.00"),
    "minimum/data/reached": ("minimum_amount", DATA, "money", None, when("5"), None, None),
}
# fmt: on


@pytest.mark.parametrize(
    ("type_", "analyze", "measure", "value_type", "conditions", "apply_to", "expected"),
    list(CASES.values()),
    ids=list(CASES),
)
def test_each_rule_adjusts_the_invoice_as_its_scopes_measure_and_value_say(
    type_: str,
    analyze: dict[str, str],
    measure: str,
    value_type: str | None,
    conditions: list[dict[str, str]],
    apply_to: dict[str, str] | None,
    expected: str | None,
) -> None:
    the_rule = rule(
        type=type_,
        analyze=analyze,
        measure=measure,
        value_type=value_type,
        conditions=conditions,
        apply_to=apply_to,
    )

    lines = evaluate(version(the_rule), INVOICE, "USD")

    assert amounts(lines) == ([] if expected is None else [Decimal(expected)])


ANALYZE_CHOICES = [
    TOTAL,
    USAGE,
    SUBSCRIPTIONS,
    ONE_TIME,
    VOICE,
    voice_to("international"),
    voice_to("london"),
]
APPLY_TO_CHOICES = [None, TOTAL, USAGE, SUBSCRIPTIONS, ONE_TIME, VOICE, DATA, BASIC, TV]


def is_valid_combination(
    type_: str, analyze: dict[str, str], measure: str, value_type: str | None, apply_to: Any
) -> bool:
    """The spec, independently of the validator: units only on one service; a minimum is money,
    has no value_type and no apply_to; promotions and penalties need a value_type."""
    if measure == "units" and (type_ == "minimum_amount" or analyze["scope"] != "service"):
        return False
    if type_ == "minimum_amount":
        return value_type is None and apply_to is None
    return value_type is not None


@pytest.mark.parametrize("type_", ["promotion", "penalty", "minimum_amount"])
def test_every_combination_of_type_scope_measure_value_and_target_is_validated_and_evaluated(
    type_: str,
) -> None:
    for analyze, measure, value_type, apply_to in itertools.product(
        ANALYZE_CHOICES, ["money", "units"], [None, "amount", "percentage"], APPLY_TO_CHOICES
    ):
        value = None if type_ == "minimum_amount" else "10"
        the_rule = rule(
            type=type_,
            analyze=analyze,
            measure=measure,
            value_type=value_type,
            conditions=when("1000" if type_ != "promotion" else "1", value),
            apply_to=apply_to,
        )
        cmd = PutRuleSet(rule_set_id="s", name="S", destination_groups=GROUPS, rules=[the_rule])
        valid = is_valid_combination(type_, analyze, measure, value_type, apply_to)

        assert (validate_rule_set(cmd) == []) is valid, the_rule
        if valid:
            lines = evaluate(version(the_rule), INVOICE, "USD")
            assert len(lines) == 1, the_rule
            assert lines[0].amount.is_negative is (type_ == "promotion"), the_rule


# -- adjustment lines ------------------------------------------------------------------


def test_an_adjustment_line_carries_the_rule_title_tax_code_id_and_the_service_it_credits() -> None:
    the_rule = rule(
        rule_id="voice-10",
        title="Voice loyalty credit",
        tax_code="PROMO-01",
        analyze=VOICE,
        value_type="percentage",
        conditions=when("50", "10"),
    )

    [line] = evaluate(version(the_rule), INVOICE, "USD")

    assert line == Line(
        line_id="adj-voice-10",
        kind="adjustment",
        description="Voice loyalty credit",
        amount=Money.of("-6.50", "USD"),
        service="voice",
        tax_code="PROMO-01",
        rule_id="voice-10",
    )


def test_an_adjustment_on_a_subscription_names_the_subscription() -> None:
    [line] = evaluate(version(rule(apply_to=BASIC)), INVOICE, "USD")

    assert (line.subscription_id, line.service) == ("basic", None)


def test_an_adjustment_on_a_transaction_type_or_the_total_names_no_service() -> None:
    lines = evaluate(version(rule(rule_id="a", apply_to=USAGE), rule(rule_id="b")), INVOICE, "USD")

    assert [(line.service, line.subscription_id) for line in lines] == [(None, None), (None, None)]


def test_no_rules_add_no_lines() -> None:
    assert evaluate(version(), INVOICE, "USD") == []


def test_a_line_in_another_currency_is_refused() -> None:
    with pytest.raises(CurrencyMismatch, match="'charge:eur' is in EUR"):
        evaluate(version(rule()), [*INVOICE, one_time("charge:eur", "1.00", "EUR")], "USD")


# -- tiers ---------------------------------------------------------------------------

PROMOTION_TIERS = [
    {"threshold": "100", "value": "10"},
    {"threshold": "50", "value": "5"},
    {"threshold": "60", "value": "7"},
]


@pytest.mark.parametrize(
    ("voice", "credit"),
    [
        ("49.99", None),
        ("50.00", "-2.50"),
        ("59.99", "-3.00"),
        ("60.00", "-4.20"),
        ("99.99", "-7.00"),
        ("100.00", "-10.00"),
        ("250.00", "-25.00"),
    ],
)
def test_a_promotion_takes_the_highest_threshold_reached(voice: str, credit: str | None) -> None:
    tiers = rule(analyze=VOICE, value_type="percentage", conditions=PROMOTION_TIERS)

    lines = evaluate(version(tiers), [usage("voice", "voice", voice, "1")], "USD")

    assert amounts(lines) == ([] if credit is None else [Decimal(credit)])


PENALTY_TIERS = [
    {"threshold": "100", "value": "10"},
    {"threshold": "50", "value": "20"},
    {"threshold": "75", "value": "15"},
]


@pytest.mark.parametrize(
    ("spent", "penalty"),
    [
        ("0.00", "20"),
        ("49.99", "20"),
        ("50.00", "15"),
        ("74.99", "15"),
        ("75.00", "10"),
        ("99.99", "10"),
        ("100.00", None),
    ],
)
def test_a_penalty_takes_the_lowest_threshold_not_reached(spent: str, penalty: str | None) -> None:
    tiers = rule(type="penalty", analyze=USAGE, value_type="amount", conditions=PENALTY_TIERS)

    lines = evaluate(version(tiers), [usage("voice", "voice", spent, "1")], "USD")

    assert amounts(lines) == ([] if penalty is None else [Decimal(penalty)])


# -- order ---------------------------------------------------------------------------

HALF_OFF = rule(rule_id="half-off", analyze=TOTAL, value_type="percentage", conditions=when("100", "50"))
MINIMUM_60 = rule(rule_id="minimum", type="minimum_amount", value_type=None, conditions=when("60"))


def test_a_minimum_after_a_promotion_sees_the_promotions_line() -> None:
    lines = evaluate(version(HALF_OFF, MINIMUM_60), INVOICE, "USD")

    assert [(line.rule_id, line.amount.amount) for line in lines] == [
        ("half-off", Decimal("-51.25")),
        ("minimum", Decimal("8.75")),
    ]


def test_a_minimum_before_a_promotion_does_not_see_it() -> None:
    lines = evaluate(version(MINIMUM_60, HALF_OFF), INVOICE, "USD")

    assert [(line.rule_id, line.amount.amount) for line in lines] == [("half-off", Decimal("-51.25"))]


def test_a_penalty_after_a_promotion_on_the_same_service_measures_the_credited_charges() -> None:
    promotion = rule(rule_id="p", analyze=VOICE, value_type="percentage", conditions=when("50", "10"))
    penalty = rule(rule_id="n", type="penalty", analyze=VOICE, conditions=when("60", "5"))

    lines = evaluate(version(promotion, penalty), INVOICE, "USD")

    assert amounts(lines) == [Decimal("-6.50"), Decimal("5")]


def test_a_later_promotion_on_a_transaction_type_sees_an_earlier_credit_to_it() -> None:
    first = rule(rule_id="a", analyze=USAGE, value_type="percentage", conditions=when("0", "10"))
    everything_left = rule(rule_id="b", analyze=USAGE, value_type="percentage", conditions=when("0", "100"))

    lines = evaluate(version(first, everything_left), INVOICE, "USD")

    assert amounts(lines) == [Decimal("-7.50"), Decimal("-67.50")]


def test_a_credit_to_one_service_is_not_seen_by_a_rule_on_another() -> None:
    voice_credit = rule(rule_id="a", analyze=VOICE, value_type="amount", conditions=when("0", "60"))
    data_minimum = rule(
        rule_id="b", type="minimum_amount", analyze=DATA, value_type=None, conditions=when("10")
    )

    lines = evaluate(version(voice_credit, data_minimum), INVOICE, "USD")

    assert [line.rule_id for line in lines] == ["a"]


def test_adjustments_already_on_the_invoice_count_in_the_total() -> None:
    goodwill = Line(
        line_id="goodwill", kind="adjustment", description="Goodwill", amount=Money.of("-2.50", "USD")
    )

    minimum_110 = rule(type="minimum_amount", value_type=None, conditions=when("110"))

    lines = evaluate(version(minimum_110), [*INVOICE, goodwill], "USD")

    assert amounts(lines) == [Decimal("10.00")]


# -- caps ----------------------------------------------------------------------------


def test_a_promotion_never_credits_more_than_the_charges_it_applies_to() -> None:
    lines = evaluate(
        version(rule(value_type="amount", conditions=when("0", "1000"), apply_to=VOICE)), INVOICE, "USD"
    )

    assert amounts(lines) == [Decimal("-65.00")]


def test_stacked_promotions_never_take_a_scope_below_zero() -> None:
    five_off_tv = [rule(rule_id=f"tv-{n}", conditions=when("0", "5"), apply_to=TV) for n in range(3)]

    lines = evaluate(version(*five_off_tv), INVOICE, "USD")

    assert amounts(lines) == [Decimal("-5"), Decimal("-3.00")]


@pytest.mark.parametrize("refund", ["-4.50", "-10.00"], ids=["zero", "negative"])
def test_a_promotion_credits_nothing_when_its_charges_are_zero_or_less(refund: str) -> None:
    lines = evaluate(version(rule(apply_to=ONE_TIME)), [*INVOICE, one_time("charge:refund", refund)], "USD")

    assert lines == []


def test_a_penalty_percentage_of_charges_below_zero_charges_nothing() -> None:
    penalty = rule(type="penalty", value_type="percentage", conditions=when("1000", "10"), apply_to=ONE_TIME)

    assert evaluate(version(penalty), [one_time("charge:refund", "-10.00")], "USD") == []


def test_a_fixed_penalty_applies_whatever_the_charges() -> None:
    penalty = rule(
        type="penalty", value_type="amount", conditions=when("1000", "5"), apply_to=NO_SUCH_SUBSCRIPTION
    )

    assert amounts(evaluate(version(penalty), INVOICE, "USD")) == [Decimal("5")]


# -- rounding ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("charges", "currency", "credit"),
    [
        ("0.25", "USD", "-0.02"),
        ("0.35", "USD", "-0.04"),
        ("0.15", "USD", "-0.02"),
        ("0.45", "USD", "-0.04"),
        ("125", "JPY", "-12"),
        ("135", "JPY", "-14"),
        ("1.005", "BHD", "-0.100"),
        ("1.015", "BHD", "-0.102"),
    ],
)
def test_a_percentage_is_rounded_half_even_to_the_minor_unit(
    charges: str, currency: str, credit: str
) -> None:
    ten_percent = rule(value_type="percentage", conditions=when("0", "10"))

    [line] = evaluate(version(ten_percent), [one_time("charge", charges, currency)], currency)

    assert line.amount.amount == Decimal(credit)
    assert line.amount.amount.as_tuple().exponent == Decimal(credit).as_tuple().exponent


@pytest.mark.parametrize(("value", "credit"), [("5.555", "-5.56"), ("5.565", "-5.56"), ("0.004", None)])
def test_an_amount_with_more_digits_than_the_currency_is_rounded_half_even(
    value: str, credit: str | None
) -> None:
    lines = evaluate(version(rule(conditions=when("0", value))), INVOICE, "USD")

    assert amounts(lines) == ([] if credit is None else [Decimal(credit)])


def test_a_percentage_that_rounds_to_zero_adds_no_line() -> None:
    one_percent = rule(value_type="percentage", conditions=when("0", "1"))

    assert evaluate(version(one_percent), [one_time("charge", "0.01")], "USD") == []


@pytest.mark.parametrize(
    ("threshold", "currency", "spent", "top_up"),
    [("20.005", "USD", "10.00", "10.00"), ("20.015", "USD", "10.00", "10.02"), ("20.5", "JPY", "10", "10")],
)
def test_a_minimum_threshold_is_rounded_to_the_minor_unit_before_topping_up(
    threshold: str, currency: str, spent: str, top_up: str
) -> None:
    the_minimum = rule(type="minimum_amount", value_type=None, conditions=when(threshold))

    lines = evaluate(version(the_minimum), [one_time("charge", spent, currency)], currency)

    assert amounts(lines) == [Decimal(top_up)]


# -- destination groups --------------------------------------------------------------


@pytest.mark.parametrize(
    ("destination", "group"),
    [
        ("44", "international"),
        ("4420", "london"),
        ("442071838750", "london"),
        ("4421", "international"),
        ("33", "international"),
        ("1212", "domestic"),
        ("4", None),
        ("7", None),
        ("", None),
        (None, None),
    ],
)
def test_a_destination_belongs_to_the_group_with_its_longest_matching_prefix(
    destination: str | None, group: str | None
) -> None:
    assert DestinationGroups(GROUPS).group_of(destination) == group


def test_a_rule_on_a_destination_group_measures_only_that_groups_usage() -> None:
    lines = [
        usage("uk", "voice", "10.00", "10", "441234"),
        usage("london", "voice", "20.00", "20", "4420123"),
        usage("germany", "voice", "30.00", "30", "49301"),
        usage("data-uk", "data", "40.00", "40", "44"),
    ]
    the_minimum = rule(
        type="minimum_amount", analyze=voice_to("international"), value_type=None, conditions=when("50")
    )

    assert amounts(evaluate(version(the_minimum), lines, "USD")) == [Decimal("10.00")]


# -- versions, selection and the answer to a closed invoice -------------------------------


def test_each_put_makes_the_next_version() -> None:
    cmd = PutRuleSet(rule_set_id="standard", name="Standard", is_default=True, rules=[rule()])

    first = put_rule_set(cmd, latest_version=None)
    fourth = put_rule_set(cmd, latest_version=3)

    assert (first.version, fourth.version) == (1, 4)
    assert fourth.changed().model_dump() == {
        "rule_set_id": "standard",
        "name": "Standard",
        "version": 4,
        "is_default": True,
    }


def test_a_version_round_trips_through_one_json_document() -> None:
    saved = version(
        rule(analyze=voice_to("international"), value_type="percentage", conditions=when("50.00", "12.5"))
    )

    assert RuleSetVersion.model_validate_json(saved.model_dump_json()) == saved


@pytest.mark.parametrize(
    ("assigned", "default", "selected"),
    [
        ("mine", "everyone", "mine"),
        (None, "everyone", "everyone"),
        ("mine", None, "mine"),
        (None, None, None),
    ],
)
def test_the_assigned_rule_set_wins_over_the_default(
    assigned: str | None, default: str | None, selected: str | None
) -> None:
    assert select_rule_set(assigned, default) == selected


def test_an_invoice_without_a_rule_set_is_answered_with_no_adjustments() -> None:
    answer = adjust_invoice("inv-1", "USD", INVOICE, None)

    assert (answer.invoice_id, answer.rule_set_id, answer.rule_set_version, answer.lines) == (
        "inv-1",
        None,
        None,
        [],
    )


def test_the_answer_records_the_rule_set_and_version_evaluated() -> None:
    saved = put_rule_set(
        PutRuleSet(rule_set_id="standard", name="Standard", rules=[rule(conditions=when("0", "5"))]),
        latest_version=6,
    )

    answer = adjust_invoice("inv-1", "USD", INVOICE, saved)

    assert (answer.rule_set_id, answer.rule_set_version, amounts(answer.lines)) == (
        "standard",
        7,
        [Decimal("-5")],
    )
