"""Promotion: the highest threshold reached (measure >= threshold) applies — a credit of its
amount, or its percentage of the apply_to charges. Never more than those charges, so the
apply_to scope never goes below zero; nothing when they are zero or less. A percentage is at
most 100."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

from rules.rule_type import Problem
from rules.rule_types.tiered import measured, tiered_problems, value_of
from rules.running_invoice import RunningInvoice, Scope, percentage_of
from tally_contracts import Money
from tally_contracts.rules import Condition, Rule


@dataclass(frozen=True)
class Promotion:
    name: str = "promotion"

    def problems(self, rule: Rule) -> Iterator[Problem]:
        return tiered_problems(rule, max_percentage=Decimal(100))

    def charged_scope(self, rule: Rule) -> Scope:
        return Scope.applied_to(rule)

    def adjustment(self, rule: Rule, invoice: RunningInvoice) -> Money | None:
        reached = _highest_reached(rule.conditions, measured(rule, invoice))
        if reached is None:
            return None
        base = invoice.charges(self.charged_scope(rule))
        if not base.is_positive:
            return None
        value = value_of(rule, reached)
        if rule.value_type == "percentage":
            credit = percentage_of(base, value)
        else:
            credit = Money.computed(value, invoice.currency).rounded()
        return -credit.min(base)


def _highest_reached(conditions: Sequence[Condition], measure: Decimal) -> Condition | None:
    reached = [condition for condition in conditions if measure >= condition.threshold]
    return max(reached, key=lambda condition: condition.threshold, default=None)


PROMOTION = Promotion()
