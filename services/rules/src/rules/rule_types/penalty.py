"""Penalty: the lowest threshold not reached (measure < threshold) applies — a charge of its
amount, or its percentage of the apply_to charges (nothing when those are zero or less). A
penalty percentage may exceed 100."""

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
class Penalty:
    name: str = "penalty"

    def problems(self, rule: Rule) -> Iterator[Problem]:
        return tiered_problems(rule, max_percentage=None)

    def charged_scope(self, rule: Rule) -> Scope:
        return Scope.applied_to(rule)

    def adjustment(self, rule: Rule, invoice: RunningInvoice) -> Money | None:
        missed = _lowest_missed(rule.conditions, measured(rule, invoice))
        if missed is None:
            return None
        value = value_of(rule, missed)
        if rule.value_type != "percentage":
            return Money.computed(value, invoice.currency).rounded()
        base = invoice.charges(self.charged_scope(rule))
        return percentage_of(base, value) if base.is_positive else None


def _lowest_missed(conditions: Sequence[Condition], measure: Decimal) -> Condition | None:
    missed = [condition for condition in conditions if measure < condition.threshold]
    return min(missed, key=lambda condition: condition.threshold, default=None)


PENALTY = Penalty()
