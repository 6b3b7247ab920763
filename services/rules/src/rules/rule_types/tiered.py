"""What promotions and penalties share: tiers with a value each (an amount or a percentage),
measured in money or, for one service, in units, applied to an optional `apply_to` scope."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from rules.rule_type import Problem
from rules.running_invoice import RunningInvoice, Scope
from tally_contracts.rules import ApplyTo, Condition, Rule


def tiered_problems(rule: Rule, max_percentage: Decimal | None) -> Iterator[Problem]:
    """The problems of a tiered rule's own fields, in field order. `max_percentage` caps a
    percentage value (None: no cap)."""
    if rule.measure == "units" and rule.analyze.scope != "service":
        yield (
            "measure",
            f"units can only be counted for one service, not on scope {rule.analyze.scope!r}; "
            "set analyze.scope to 'service' with analyze.service, or measure 'money'",
        )
    if rule.value_type is None:
        yield "value_type", f"is missing; a {rule.type} needs value_type 'amount' or 'percentage'"
    wanted = "percentage" if rule.value_type == "percentage" else "amount"
    for index, condition in enumerate(rule.conditions):
        field = f"conditions[{index}].value"
        value = condition.value
        if value is None:
            yield field, f"is missing; set the {rule.type}'s {wanted}"
        elif value <= 0:
            yield field, f"must be more than zero, not {value}; set the {rule.type}'s {wanted}"
        elif max_percentage is not None and rule.value_type == "percentage" and value > max_percentage:
            yield (
                field,
                f"{value}% is over {max_percentage}; a {rule.type} never credits more than the charges, "
                f"use at most {max_percentage}",
            )
    if rule.apply_to is not None:
        yield from _apply_to_problems(rule.apply_to)


def measured(rule: Rule, invoice: RunningInvoice) -> Decimal:
    """The analysed measure the tiers are compared with: units or an amount of money."""
    analysed = Scope.analysed_by(rule)
    return invoice.units(analysed) if rule.measure == "units" else invoice.charges(analysed).amount


def value_of(rule: Rule, condition: Condition) -> Decimal:
    if condition.value is None:
        raise ValueError(
            f"rule {rule.rule_id!r} has a condition without a value; validate the rule set first"
        )
    return condition.value


def _apply_to_problems(target: ApplyTo) -> Iterator[Problem]:
    if target.scope == "transaction_type" and target.transaction_type is None:
        yield (
            "apply_to.transaction_type",
            "is missing; scope 'transaction_type' needs one of subscription, usage or one_time",
        )
    if target.scope != "transaction_type" and target.transaction_type is not None:
        yield (
            "apply_to.transaction_type",
            f"is only used with scope 'transaction_type', not {target.scope!r}; remove it or change apply_to.scope",
        )
    if target.scope == "service" and not target.service:
        yield (
            "apply_to.service",
            "is missing; scope 'service' needs the service charged or credited, e.g. 'voice'",
        )
    if target.scope != "service" and target.service is not None:
        yield (
            "apply_to.service",
            f"is only used with scope 'service', not {target.scope!r}; remove it or set apply_to.scope to 'service'",
        )
    if target.scope == "subscription" and not target.subscription_id:
        yield "apply_to.subscription_id", "is missing; scope 'subscription' needs the subscription's id"
    if target.scope != "subscription" and target.subscription_id is not None:
        yield (
            "apply_to.subscription_id",
            f"is only used with scope 'subscription', not {target.scope!r}; "
            "remove it or set apply_to.scope to 'subscription'",
        )
