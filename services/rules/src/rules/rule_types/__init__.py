"""The rule types, one module each, in one table: a new type is a module here, its name in
`tally_contracts.rules.RuleTypeName`, and its rule in docs/RULES.md."""

from rules.rule_type import RuleType
from rules.rule_types.minimum_amount import MINIMUM_AMOUNT
from rules.rule_types.penalty import PENALTY
from rules.rule_types.promotion import PROMOTION

RULE_TYPES: dict[str, RuleType] = {kind.name: kind for kind in (PROMOTION, MINIMUM_AMOUNT, PENALTY)}
"""Rule type name → the type."""

__all__ = ["RULE_TYPES", "RuleType"]
