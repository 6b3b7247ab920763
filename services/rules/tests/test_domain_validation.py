"""Validating a rule set: rejected whole, each error naming the rule, the field and what to do."""

from typing import Any

import pytest

from rules.domain import RuleSetProblem, put_rule_set, validate_rule_set
from tally_contracts import DomainError
from tally_contracts.rules import PutRuleSet, Rule

GROUPS = {"international": ["44", "33"], "domestic": ["1"]}


def rule(**fields: Any) -> Rule:
    """A valid promotion ("10% of voice when voice reaches 50"), with `fields` replaced."""
    base: dict[str, Any] = {
        "rule_id": "r1",
        "type": "promotion",
        "title": "Voice promotion",
        "analyze": {"scope": "service", "service": "voice"},
        "measure": "money",
        "value_type": "percentage",
        "conditions": [{"threshold": "50", "value": "10"}],
    }
    return Rule.model_validate(base | fields)


def minimum(**fields: Any) -> Rule:
    base: dict[str, Any] = {
        "type": "minimum_amount",
        "title": "Minimum spend",
        "analyze": {"scope": "total"},
        "value_type": None,
        "conditions": [{"threshold": "20"}],
    }
    return rule(**(base | fields))


def rule_set(*rules: Rule, groups: dict[str, list[str]] | None = None) -> PutRuleSet:
    return PutRuleSet(
        rule_set_id="standard",
        name="Standard",
        destination_groups=GROUPS if groups is None else groups,
        rules=list(rules),
    )


def where(errors: list[RuleSetProblem]) -> list[tuple[str | None, str]]:
    return [(error.rule_id, error.field) for error in errors]


@pytest.mark.parametrize(
    "valid",
    [
        pytest.param(rule(), id="promotion-percentage-on-service"),
        pytest.param(rule(conditions=[{"threshold": "50", "value": "100"}]), id="promotion-100-percent"),
        pytest.param(
            rule(value_type="amount", conditions=[{"threshold": "0", "value": "5"}]), id="zero-threshold"
        ),
        pytest.param(
            rule(type="penalty", conditions=[{"threshold": "50", "value": "150"}]),
            id="penalty-over-100-percent",
        ),
        pytest.param(rule(measure="units"), id="units-on-a-service"),
        pytest.param(
            rule(analyze={"scope": "service", "service": "voice", "destination_group": "international"}),
            id="destination-group-apply-to-defaults-to-analysed",
        ),
        pytest.param(rule(apply_to=None), id="apply-to-omitted"),
        pytest.param(
            rule(apply_to={"scope": "subscription", "subscription_id": "basic"}), id="apply-to-subscription"
        ),
        pytest.param(minimum(), id="minimum-on-total"),
        pytest.param(
            minimum(analyze={"scope": "service", "service": "voice", "destination_group": "domestic"}),
            id="minimum-on-destination-group",
        ),
        pytest.param(
            rule(
                conditions=[
                    {"threshold": "50", "value": "5"},
                    {"threshold": "100", "value": "10"},
                    {"threshold": "200", "value": "15"},
                ]
            ),
            id="tiers",
        ),
    ],
)
def test_a_valid_rule_set_has_no_errors(valid: Rule) -> None:
    assert validate_rule_set(rule_set(valid)) == []


@pytest.mark.parametrize(
    ("broken", "field", "says"),
    [
        pytest.param(
            rule(analyze={"scope": "total"}, measure="units"), "measure", "one service", id="units-on-total"
        ),
        pytest.param(
            rule(analyze={"scope": "transaction_type", "transaction_type": "usage"}, measure="units"),
            "measure",
            "one service",
            id="units-on-transaction-type",
        ),
        pytest.param(
            minimum(analyze={"scope": "service", "service": "voice"}, measure="units"),
            "measure",
            "set measure to 'money'",
            id="minimum-in-units",
        ),
        pytest.param(
            rule(value_type=None), "value_type", "'amount' or 'percentage'", id="promotion-no-value-type"
        ),
        pytest.param(
            rule(type="penalty", value_type=None),
            "value_type",
            "'amount' or 'percentage'",
            id="penalty-no-value-type",
        ),
        pytest.param(
            minimum(value_type="amount"), "value_type", "remove value_type", id="minimum-with-value-type"
        ),
        pytest.param(
            rule(conditions=[{"threshold": "50", "value": "100.01"}]),
            "conditions[0].value",
            "at most 100",
            id="promotion-over-100-percent",
        ),
        pytest.param(
            rule(conditions=[{"threshold": "50", "value": "0"}]),
            "conditions[0].value",
            "more than zero",
            id="zero-value",
        ),
        pytest.param(
            rule(type="penalty", value_type="amount", conditions=[{"threshold": "50", "value": "-5"}]),
            "conditions[0].value",
            "more than zero",
            id="negative-penalty",
        ),
        pytest.param(
            rule(conditions=[{"threshold": "50"}]),
            "conditions[0].value",
            "is missing",
            id="promotion-without-value",
        ),
        pytest.param(
            minimum(conditions=[{"threshold": "20"}, {"threshold": "30"}]),
            "conditions",
            "exactly one condition",
            id="minimum-with-tiers",
        ),
        pytest.param(
            minimum(conditions=[{"threshold": "20", "value": "5"}]),
            "conditions[0].value",
            "takes no value",
            id="minimum-with-value",
        ),
        pytest.param(
            rule(analyze={"scope": "service", "service": "voice", "destination_group": "europe"}),
            "analyze.destination_group",
            "unknown destination group 'europe'",
            id="unknown-destination-group",
        ),
        pytest.param(
            rule(analyze={"scope": "total", "destination_group": "international"}),
            "analyze.destination_group",
            "set analyze.scope to 'service'",
            id="destination-group-without-service-scope",
        ),
        pytest.param(
            rule(analyze={"scope": "transaction_type"}),
            "analyze.transaction_type",
            "is missing",
            id="analyze-transaction-type-missing",
        ),
        pytest.param(
            rule(analyze={"scope": "service"}), "analyze.service", "is missing", id="analyze-service-missing"
        ),
        pytest.param(
            rule(analyze={"scope": "service", "service": ""}),
            "analyze.service",
            "is missing",
            id="analyze-service-empty",
        ),
        pytest.param(
            rule(analyze={"scope": "total", "service": "voice"}),
            "analyze.service",
            "only used with scope 'service'",
            id="analyze-service-on-total",
        ),
        pytest.param(
            rule(analyze={"scope": "service", "service": "voice", "transaction_type": "usage"}),
            "analyze.transaction_type",
            "only used with scope 'transaction_type'",
            id="analyze-transaction-type-on-service",
        ),
        pytest.param(
            rule(apply_to={"scope": "subscription"}),
            "apply_to.subscription_id",
            "is missing",
            id="apply-to-subscription-without-id",
        ),
        pytest.param(
            rule(apply_to={"scope": "service"}),
            "apply_to.service",
            "is missing",
            id="apply-to-service-missing",
        ),
        pytest.param(
            rule(apply_to={"scope": "transaction_type"}),
            "apply_to.transaction_type",
            "is missing",
            id="apply-to-transaction-type-missing",
        ),
        pytest.param(
            rule(apply_to={"scope": "total", "subscription_id": "basic"}),
            "apply_to.subscription_id",
            "only used with scope 'subscription'",
            id="apply-to-subscription-id-on-total",
        ),
        pytest.param(
            rule(apply_to={"scope": "subscription", "subscription_id": "basic", "service": "voice"}),
            "apply_to.service",
            "only used with scope 'service'",
            id="apply-to-service-on-subscription",
        ),
        pytest.param(
            rule(apply_to={"scope": "service", "service": "voice", "transaction_type": "usage"}),
            "apply_to.transaction_type",
            "only used with scope 'transaction_type'",
            id="apply-to-transaction-type-on-service",
        ),
        pytest.param(
            minimum(apply_to={"scope": "total"}), "apply_to", "remove apply_to", id="minimum-with-apply-to"
        ),
        pytest.param(
            rule(conditions=[{"threshold": "-1", "value": "10"}]),
            "conditions[0].threshold",
            "negative",
            id="negative-threshold",
        ),
        pytest.param(
            minimum(conditions=[{"threshold": "-20"}]),
            "conditions[0].threshold",
            "negative",
            id="negative-minimum",
        ),
        pytest.param(
            rule(conditions=[{"threshold": "50", "value": "5"}, {"threshold": "50.00", "value": "10"}]),
            "conditions[1].threshold",
            "also the threshold of conditions[0]",
            id="duplicate-tier-threshold",
        ),
        pytest.param(rule(rule_id="r" * 197), "rule_id", "at most 196", id="rule-id-too-long-for-line-id"),
        pytest.param(rule(title="  "), "title", "transaction title", id="empty-title"),
        pytest.param(rule(title="t" * 501), "title", "at most 500", id="title-too-long"),
    ],
)
def test_a_broken_rule_is_named_with_its_field_and_what_to_do(broken: Rule, field: str, says: str) -> None:
    errors = validate_rule_set(rule_set(broken))

    assert where(errors) == [(broken.rule_id, field)]
    assert says in errors[0].message
    assert str(errors[0]).startswith(f"rule {broken.rule_id!r}, {field}: ")


def test_duplicate_rule_ids_name_the_second_rule() -> None:
    errors = validate_rule_set(rule_set(rule(rule_id="a"), rule(rule_id="b"), rule(rule_id="a")))

    assert where(errors) == [("a", "rule_id")]
    assert "give each rule its own rule_id" in errors[0].message


@pytest.mark.parametrize(
    ("groups", "says"),
    [
        pytest.param({"international": []}, "has no prefixes", id="empty-group"),
        pytest.param({"international": ["44", ""]}, "empty prefix", id="empty-prefix"),
        pytest.param({"international": ["44", "33", "44"]}, "'44' more than once", id="duplicate-prefix"),
        pytest.param(
            {"domestic": ["1"], "international": ["44", "1"]},
            "also in group 'domestic'",
            id="prefix-in-two-groups",
        ),
    ],
)
def test_a_broken_destination_group_is_named(groups: dict[str, list[str]], says: str) -> None:
    errors = validate_rule_set(rule_set(rule(), groups=groups))

    assert where(errors) == [(None, "destination_groups['international']")]
    assert says in errors[0].message
    assert str(errors[0]).startswith("destination_groups['international']: ")


def test_a_group_without_a_name_is_refused() -> None:
    errors = validate_rule_set(rule_set(rule(), groups={" ": ["44"]}))

    assert where(errors) == [(None, "destination_groups[' ']")]


def test_every_problem_is_reported_at_once() -> None:
    cmd = rule_set(
        rule(rule_id="a", value_type=None),
        rule(rule_id="b"),
        minimum(rule_id="c", value_type="amount", conditions=[{"threshold": "-5", "value": "1"}]),
        groups={"international": []},
    )

    errors = validate_rule_set(cmd)

    assert where(errors) == [
        (None, "destination_groups['international']"),
        ("a", "value_type"),
        ("c", "conditions[0].threshold"),
        ("c", "value_type"),
        ("c", "conditions[0].value"),
    ]


def test_an_invalid_rule_set_is_rejected_whole_with_a_reason_naming_each_problem() -> None:
    cmd = rule_set(rule(rule_id="a"), rule(rule_id="b", measure="units", analyze={"scope": "total"}))

    with pytest.raises(DomainError) as rejected:
        put_rule_set(cmd, latest_version=3)

    assert rejected.value.code == "invalid_rule_set"
    assert where(validate_rule_set(cmd)) == [("b", "measure")]
    assert rejected.value.reason.startswith("rule set 'standard' was not saved: rule 'b', measure: ")
