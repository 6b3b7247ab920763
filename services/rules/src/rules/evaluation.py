"""Evaluating a rule set on a closed invoice: the adjustment lines its rules add.

Pure and deterministic: the same rule set and lines always give the same lines, in rule
order, whatever the order of the invoice's lines. `rules.domain` documents the rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Literal

from rules.destinations import DestinationGroups
from rules.rule_sets import RuleSetVersion
from rules.validation import ADJUSTMENT_LINE_PREFIX
from tally_contracts import CurrencyMismatch, Line, Money
from tally_contracts.rules import Condition, InvoiceAdjusted, Rule

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
    def charged_by(cls, rule: Rule) -> Scope:
        """The charges a rule's value applies to and its line belongs to: `apply_to`, or the
        analysed scope (with its destination group) for a minimum or when apply_to is omitted."""
        target = rule.apply_to
        if rule.type == "minimum_amount" or target is None:
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


def evaluate(rule_set: RuleSetVersion, lines: Sequence[Line], currency: str) -> list[Line]:
    """The adjustment lines `rule_set` adds to an invoice with `lines` in `currency`.

    Rules run in their listed order and each sees the lines earlier rules added. A rule
    whose condition is not met, or whose adjustment rounds to zero, adds no line. The rule
    set must have passed `validate_rule_set`. Raises `CurrencyMismatch` when a line is not
    in `currency`.
    """
    for line in lines:
        if line.amount.currency != currency:
            raise CurrencyMismatch(
                f"line {line.line_id!r} is in {line.amount.currency}, the invoice in {currency}"
            )
    invoice = RunningInvoice(lines, currency, DestinationGroups(rule_set.destination_groups))
    added: list[Line] = []
    for rule in rule_set.rules:
        amount = _adjustment(rule, invoice)
        if amount is None or amount.is_zero:
            continue
        charged = Scope.charged_by(rule)
        line = _adjustment_line(rule, amount, charged)
        invoice.add(line, charged)
        added.append(line)
    return added


def adjust_invoice(
    invoice_id: str, currency: str, lines: Sequence[Line], rule_set: RuleSetVersion | None
) -> InvoiceAdjusted:
    """The answer to a closed invoice: the adjustments of `rule_set`, or none without one."""
    if rule_set is None:
        return InvoiceAdjusted(invoice_id=invoice_id, rule_set_id=None, rule_set_version=None, lines=[])
    return InvoiceAdjusted(
        invoice_id=invoice_id,
        rule_set_id=rule_set.rule_set_id,
        rule_set_version=rule_set.version,
        lines=evaluate(rule_set, lines, currency),
    )


def _adjustment(rule: Rule, invoice: RunningInvoice) -> Money | None:
    """The signed, rounded amount of the rule's line, or None when its condition is not met."""
    analysed = Scope.analysed_by(rule)
    if rule.type == "minimum_amount":
        minimum = Money.computed(rule.conditions[0].threshold, invoice.currency).rounded()
        spent = invoice.charges(analysed)
        return minimum - spent if spent < minimum else None
    measured = invoice.units(analysed) if rule.measure == "units" else invoice.charges(analysed).amount
    if rule.type == "promotion":
        reached = _highest_reached(rule.conditions, measured)
        return None if reached is None else _credit(rule, _value_of(rule, reached), invoice)
    missed = _lowest_missed(rule.conditions, measured)
    return None if missed is None else _charge(rule, _value_of(rule, missed), invoice)


def _highest_reached(conditions: Sequence[Condition], measured: Decimal) -> Condition | None:
    reached = [condition for condition in conditions if measured >= condition.threshold]
    return max(reached, key=lambda condition: condition.threshold, default=None)


def _lowest_missed(conditions: Sequence[Condition], measured: Decimal) -> Condition | None:
    missed = [condition for condition in conditions if measured < condition.threshold]
    return min(missed, key=lambda condition: condition.threshold, default=None)


def _credit(rule: Rule, value: Decimal, invoice: RunningInvoice) -> Money | None:
    """A promotion: never more than the charges it applies to, nothing when they are ≤ 0."""
    base = invoice.charges(Scope.charged_by(rule))
    if not base.is_positive:
        return None
    if rule.value_type == "percentage":
        credit = _percentage_of(base, value)
    else:
        credit = Money.computed(value, invoice.currency).rounded()
    return -credit.min(base)


def _charge(rule: Rule, value: Decimal, invoice: RunningInvoice) -> Money | None:
    """A penalty: a fixed amount, or a percentage of the charges (nothing when they are ≤ 0)."""
    if rule.value_type != "percentage":
        return Money.computed(value, invoice.currency).rounded()
    base = invoice.charges(Scope.charged_by(rule))
    return _percentage_of(base, value) if base.is_positive else None


def _percentage_of(base: Money, percentage: Decimal) -> Money:
    with localcontext() as exact:
        exact.prec = _PRECISION
        return Money.computed(base.amount * percentage / 100, base.currency).rounded()


def _value_of(rule: Rule, condition: Condition) -> Decimal:
    if condition.value is None:
        raise ValueError(
            f"rule {rule.rule_id!r} has a condition without a value; validate the rule set first"
        )
    return condition.value


def _adjustment_line(rule: Rule, amount: Money, charged: Scope) -> Line:
    return Line(
        line_id=f"{ADJUSTMENT_LINE_PREFIX}{rule.rule_id}",
        kind="adjustment",
        description=rule.title,
        amount=amount,
        service=charged.key if charged.kind == "service" else None,
        subscription_id=charged.key if charged.kind == "subscription" else None,
        tax_code=rule.tax_code,
        rule_id=rule.rule_id,
    )
