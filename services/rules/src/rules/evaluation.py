"""Evaluating a rule set on a closed invoice: the adjustment lines its rules add.

Pure and deterministic: the same rule set and lines always give the same lines, in rule
order, whatever the order of the invoice's lines. `rules.domain` documents the rules.
"""

from __future__ import annotations

from collections.abc import Sequence

from rules.destinations import DestinationGroups
from rules.rule_sets import RuleSetVersion
from rules.rule_types import RULE_TYPES
from rules.running_invoice import RunningInvoice, Scope
from rules.validation import ADJUSTMENT_LINE_PREFIX
from tally_contracts import CurrencyMismatch, Line, Money
from tally_contracts.rules import InvoiceAdjusted, Rule


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
        kind = RULE_TYPES[rule.type]
        amount = kind.adjustment(rule, invoice)
        if amount is None or amount.is_zero:
            continue
        charged = kind.charged_scope(rule)
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
