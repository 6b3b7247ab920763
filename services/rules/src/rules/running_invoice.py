"""The invoice as a rule set's evaluation sees it, and the scopes rules measure and charge."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Literal

from rules.destinations import DestinationGroups
from tally_contracts import Line, Money
from tally_contracts.rules import Rule

ScopeKind = Literal["total", "transaction_type", "service", "subscription"]

# Enough digits that charges × percentage is exact before the one rounding to the minor unit.
_PRECISION = 60


@dataclass(frozen=True, slots=True)
class Scope:
    """A part of the invoice: everything, one transaction type, one service (optionally
    limited to a destination group) or one subscription. `key` names the type, service
    or subscription."""

    kind: ScopeKind
    key: str | None = None
    destination_group: str | None = None

    @classmethod
    def analysed_by(cls, rule: Rule) -> Scope:
        analyze = rule.analyze
        if analyze.scope == "transaction_type":
            return cls("transaction_type", analyze.transaction_type)
        if analyze.scope == "service":
            return cls("service", analyze.service, analyze.destination_group)
        return cls("total")

    @classmethod
    def applied_to(cls, rule: Rule) -> Scope:
        """The rule's `apply_to`, or the analysed scope (with its destination group) when it
        has none."""
        target = rule.apply_to
        if target is None:
            return cls.analysed_by(rule)
        if target.scope == "transaction_type":
            return cls("transaction_type", target.transaction_type)
        if target.scope == "service":
            return cls("service", target.service)
        if target.scope == "subscription":
            return cls("subscription", target.subscription_id)
        return cls("total")

    def within(self, other: Scope) -> bool:
        """Every line of this scope is also in `other`."""
        if other.kind == "total":
            return True
        return (
            self.kind == other.kind
            and self.key == other.key
            and other.destination_group in (None, self.destination_group)
        )


class RunningInvoice:
    """The invoice as the rules see it: its lines, then the line of each rule run so far.

    A line a rule adds belongs to the scope that rule charged (so a later rule on that
    scope sees it); the invoice's own lines belong to scopes by their kind, service,
    destination and subscription_id.
    """

    def __init__(self, lines: Sequence[Line], currency: str, groups: DestinationGroups) -> None:
        self.currency = currency
        self._groups = groups
        self._lines: list[tuple[Line, Scope | None]] = [(line, None) for line in lines]

    def add(self, line: Line, charged: Scope) -> None:
        self._lines.append((line, charged))

    def charges(self, scope: Scope) -> Money:
        """Sum of the scope's line amounts (each read as rounded, as the contract says it is)."""
        total = Money.zero(self.currency)
        for line, charged in self._lines:
            if self._contains(scope, line, charged):
                total = total + line.amount.rounded()
        return total

    def units(self, scope: Scope) -> Decimal:
        """Sum of the scope's quantities; a line without a quantity counts none."""
        return sum(
            (
                line.quantity
                for line, charged in self._lines
                if line.quantity is not None and self._contains(scope, line, charged)
            ),
            Decimal(0),
        )

    def _contains(self, scope: Scope, line: Line, charged: Scope | None) -> bool:
        if charged is not None:
            return charged.within(scope)
        if scope.kind == "total":
            return True
        if scope.kind == "transaction_type":
            return line.kind == scope.key
        if scope.kind == "subscription":
            return line.subscription_id == scope.key
        return line.service == scope.key and (
            scope.destination_group is None
            or self._groups.group_of(line.destination) == scope.destination_group
        )


def percentage_of(base: Money, percentage: Decimal) -> Money:
    """`percentage` % of `base`, taken exactly and then rounded once to the minor unit."""
    with localcontext() as exact:
        exact.prec = _PRECISION
        return Money.computed(base.amount * percentage / 100, base.currency).rounded()
