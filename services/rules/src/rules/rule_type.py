"""What a rule type is: its own validation, the scope its line charges, and its adjustment.

Each type lives in one module of `rules.rule_types`, registered in `RULE_TYPES` there; the
validation and evaluation of a rule set dispatch on `rule.type` through that table alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from rules.running_invoice import RunningInvoice, Scope
from tally_contracts import Money
from tally_contracts.rules import Rule

Problem = tuple[str, str]
"""(field, what is wrong and what to do) for one rule."""


class RuleType(Protocol):
    """One rule type. Its module says, in its docstring, the rule billing teams read."""

    @property
    def name(self) -> str:
        """The `type` a rule names in the contract."""
        ...

    def problems(self, rule: Rule) -> Iterator[Problem]:
        """What is wrong with the fields this type gives meaning to (measure, value_type,
        condition values, apply_to); the shared fields are checked by `rules.validation`."""
        ...

    def charged_scope(self, rule: Rule) -> Scope:
        """The charges the rule's value applies to, and the scope its line belongs to."""
        ...

    def adjustment(self, rule: Rule, invoice: RunningInvoice) -> Money | None:
        """The signed, rounded amount of the rule's line, or None when its condition is not met.
        The rule has passed validation."""
        ...
