"""Minimum amount: when the analysed charges are below the threshold, a line for the
difference. The threshold is an amount the bill is topped up to, so it is rounded to the
currency's minor unit first; the analysed charges then equal it exactly. It is money, has
exactly one condition, takes no value and no apply_to: it tops up what it analysed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from rules.rule_type import Problem
from rules.running_invoice import RunningInvoice, Scope
from tally_contracts import Money
from tally_contracts.rules import Rule


@dataclass(frozen=True)
class MinimumAmount:
    name: str = "minimum_amount"

    def problems(self, rule: Rule) -> Iterator[Problem]:
        if rule.measure == "units":
            yield "measure", "a minimum_amount is an amount of money; set measure to 'money'"
        if rule.value_type is not None:
            yield (
                "value_type",
                "a minimum_amount adds the difference up to its threshold; remove value_type",
            )
        if len(rule.conditions) > 1:
            yield (
                "conditions",
                f"a minimum_amount has exactly one condition (its threshold), not {len(rule.conditions)}; "
                "keep one",
            )
        for index, condition in enumerate(rule.conditions):
            if condition.value is not None:
                yield (
                    f"conditions[{index}].value",
                    "a minimum_amount tops up to its threshold and takes no value; remove it",
                )
        if rule.apply_to is not None:
            yield "apply_to", "a minimum_amount tops up the analysed charges themselves; remove apply_to"

    def charged_scope(self, rule: Rule) -> Scope:
        return Scope.analysed_by(rule)

    def adjustment(self, rule: Rule, invoice: RunningInvoice) -> Money | None:
        minimum = Money.computed(rule.conditions[0].threshold, invoice.currency).rounded()
        spent = invoice.charges(self.charged_scope(rule))
        return minimum - spent if spent < minimum else None


MINIMUM_AMOUNT = MinimumAmount()
