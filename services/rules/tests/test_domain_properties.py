"""Properties of evaluation that hold for every valid rule set and every invoice."""

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rules.domain import DestinationGroups, RuleSetVersion, evaluate, put_rule_set
from tally_contracts import Line, Money
from tally_contracts.currencies import minor_unit
from tally_contracts.rules import ApplyTo, PutRuleSet, Rule

GROUPS = {"international": ["44", "33"], "london": ["4420"], "domestic": ["1"]}
SERVICES = ("voice", "data")
DESTINATIONS = (None, "44", "4420", "442071", "33", "1", "7")
SUBSCRIPTIONS = ("basic", "tv")

ANALYZE = [
    {"scope": "total"},
    {"scope": "transaction_type", "transaction_type": "usage"},
    {"scope": "transaction_type", "transaction_type": "subscription"},
    {"scope": "transaction_type", "transaction_type": "one_time"},
    {"scope": "service", "service": "voice"},
    {"scope": "service", "service": "data"},
    {"scope": "service", "service": "voice", "destination_group": "international"},
    {"scope": "service", "service": "voice", "destination_group": "london"},
]
APPLY_TO = [
    {"scope": "total"},
    {"scope": "transaction_type", "transaction_type": "usage"},
    {"scope": "transaction_type", "transaction_type": "subscription"},
    {"scope": "transaction_type", "transaction_type": "one_time"},
    {"scope": "service", "service": "voice"},
    {"scope": "service", "service": "data"},
    {"scope": "subscription", "subscription_id": "basic"},
    {"scope": "subscription", "subscription_id": "gone"},
]

properties = settings(max_examples=150, deadline=None)


def money_in(currency: str, low: int = -5_000, high: int = 20_000) -> st.SearchStrategy[Decimal]:
    """Whole minor units of `currency`, as a Decimal with its minor-unit digits."""
    digits = minor_unit(currency)
    return st.integers(low, high).map(lambda units: Decimal(units).scaleb(-digits))


@st.composite
def invoice_lines(draw: st.DrawFn, currency: str = "USD") -> list[Line]:
    lines = []
    for index in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["usage", "usage", "subscription", "one_time", "adjustment"]))
        fields: dict[str, Any] = {}
        if kind == "usage":
            fields = {
                "service": draw(st.sampled_from(SERVICES)),
                "destination": draw(st.sampled_from(DESTINATIONS)),
                "quantity": Decimal(draw(st.integers(0, 500))),
            }
        elif kind == "subscription":
            fields = {"subscription_id": draw(st.sampled_from(SUBSCRIPTIONS))}
        low = 0 if kind in ("usage", "subscription") else -5_000
        amount = draw(money_in(currency, low=low))
        lines.append(
            Line(
                line_id=f"line-{index}",
                kind=kind,
                description=kind,
                amount=Money.computed(amount, currency),
                **fields,
            )
        )
    return lines


@st.composite
def valid_rules(
    draw: st.DrawFn,
    rule_id: str,
    types: tuple[str, ...] = ("promotion", "penalty", "minimum_amount"),
    analyze: list[dict[str, str]] = ANALYZE,
    apply_to: list[dict[str, str] | None] | None = None,
) -> Rule:
    type_ = draw(st.sampled_from(types))
    analysed = draw(st.sampled_from(analyze))
    money_thresholds = money_in("USD", low=0, high=30_000)
    if type_ == "minimum_amount":
        return Rule.model_validate(
            {
                "rule_id": rule_id,
                "type": type_,
                "title": f"Minimum {rule_id}",
                "analyze": analysed,
                "conditions": [{"threshold": draw(money_thresholds)}],
            }
        )
    units = analysed["scope"] == "service" and draw(st.booleans())
    value_type = draw(st.sampled_from(["amount", "percentage"]))
    ceiling = 100 if type_ == "promotion" or value_type == "amount" else 250
    values = st.decimals(min_value=Decimal("0.01"), max_value=ceiling, places=2)
    thresholds = st.integers(0, 600).map(Decimal) if units else money_thresholds
    tiers = draw(st.lists(thresholds, min_size=1, max_size=3, unique=True))
    target = draw(st.sampled_from(apply_to if apply_to is not None else [None, *APPLY_TO]))
    return Rule.model_validate(
        {
            "rule_id": rule_id,
            "type": type_,
            "title": f"{type_} {rule_id}",
            "analyze": analysed,
            "measure": "units" if units else "money",
            "value_type": value_type,
            "conditions": [{"threshold": tier, "value": draw(values)} for tier in tiers],
            "apply_to": target,
        }
    )


@st.composite
def rule_sets(draw: st.DrawFn) -> RuleSetVersion:
    count = draw(st.integers(1, 4))
    rules = [draw(valid_rules(f"r{index}")) for index in range(count)]
    return saved(*rules)


def saved(*rules: Rule) -> RuleSetVersion:
    """Saved through validation: every generated rule set must be accepted."""
    cmd = PutRuleSet(rule_set_id="generated", name="Generated", destination_groups=GROUPS, rules=list(rules))
    return put_rule_set(cmd, latest_version=None)


def in_apply_to(line: Line, target: ApplyTo) -> bool:
    """An independent statement of which invoice lines a target covers."""
    if target.scope == "total":
        return True
    if target.scope == "transaction_type":
        return line.kind == target.transaction_type
    if target.scope == "service":
        return line.service == target.service
    return line.subscription_id == target.subscription_id


def in_analysed(line: Line, rule: Rule) -> bool:
    analyze = rule.analyze
    if analyze.scope == "total":
        return True
    if analyze.scope == "transaction_type":
        return line.kind == analyze.transaction_type
    group = analyze.destination_group
    return line.service == analyze.service and (
        group is None or DestinationGroups(GROUPS).group_of(line.destination) == group
    )


def total(lines: list[Line]) -> Decimal:
    return sum((line.amount.amount for line in lines), Decimal(0))


@properties
@given(
    invoice_lines(),
    st.sampled_from(APPLY_TO),
    st.integers(1, 3).flatmap(
        lambda count: st.tuples(*(valid_rules(f"p{index}", types=("promotion",)) for index in range(count)))
    ),
)
def test_a_promotion_never_makes_its_apply_to_scope_negative(
    lines: list[Line], target: dict[str, str], promotions: tuple[Rule, ...]
) -> None:
    apply_to = ApplyTo.model_validate(target)
    stacked = [promotion.model_copy(update={"apply_to": apply_to}) for promotion in promotions]
    before = total([line for line in lines if in_apply_to(line, apply_to)])

    credits = evaluate(saved(*stacked), lines, "USD")

    assert all(credit.amount.is_negative for credit in credits)
    if before <= 0:
        assert credits == []
    else:
        assert before + total(credits) >= 0


@properties
@given(invoice_lines(), valid_rules("minimum", types=("minimum_amount",)))
def test_a_minimum_never_leaves_the_analysed_charges_below_it(lines: list[Line], minimum: Rule) -> None:
    threshold = minimum.conditions[0].threshold
    before = total([line for line in lines if in_analysed(line, minimum)])

    top_ups = evaluate(saved(minimum), lines, "USD")

    assert all(top_up.amount.is_positive for top_up in top_ups)
    assert before + total(top_ups) >= threshold
    if before >= threshold:
        assert top_ups == []
    else:
        assert before + total(top_ups) == threshold


@properties
@given(
    invoice_lines(),
    st.integers(0, 3).flatmap(lambda count: st.tuples(*(valid_rules(f"e{index}") for index in range(count)))),
    valid_rules("minimum", types=("minimum_amount",), analyze=[{"scope": "total"}]),
)
def test_a_minimum_on_the_total_after_any_rules_leaves_the_bill_at_least_at_the_minimum(
    lines: list[Line], earlier: tuple[Rule, ...], minimum: Rule
) -> None:
    adjustments = evaluate(saved(*earlier, minimum), lines, "USD")

    assert total(lines) + total(adjustments) >= minimum.conditions[0].threshold


@properties
@given(st.data(), rule_sets())
def test_evaluation_is_deterministic_whatever_the_order_of_the_lines(
    data: st.DataObject, rule_set: RuleSetVersion
) -> None:
    lines = data.draw(invoice_lines())
    shuffled = data.draw(st.permutations(lines))

    first = evaluate(rule_set, lines, "USD")

    assert evaluate(rule_set, lines, "USD") == first
    assert evaluate(rule_set, shuffled, "USD") == first


@properties
@given(st.data(), st.sampled_from(["USD", "JPY", "BHD"]), rule_sets())
def test_every_adjustment_is_rounded_to_the_minor_unit_and_named_for_its_rule(
    data: st.DataObject, currency: str, rule_set: RuleSetVersion
) -> None:
    lines = data.draw(invoice_lines(currency))

    adjustments = evaluate(rule_set, lines, currency)

    rule_ids = [rule.rule_id for rule in rule_set.rules]
    positions = [rule_ids.index(line.rule_id or "") for line in adjustments]
    assert positions == sorted(set(positions))
    for line in adjustments:
        assert line.amount.currency == currency
        assert line.amount == line.amount.rounded()
        assert not line.amount.is_zero
        assert line.kind == "adjustment"
        assert line.line_id == f"adj-{line.rule_id}"
