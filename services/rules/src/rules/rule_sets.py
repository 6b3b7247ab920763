"""Rule set versions: every PutRuleSet that passes validation becomes a new, immutable version.

`RuleSetVersion` is what the store persists (one JSON document per version, via
`model_dump_json` / `model_validate_json`) and what an invoice is evaluated with, so
the invoice can record exactly which rules made its adjustments.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from rules.validation import rule_set_rejected, validate_rule_set
from tally_contracts.base import Identifier
from tally_contracts.rules import PutRuleSet, Rule, RuleSetChanged

T = TypeVar("T")


class RuleSetVersion(BaseModel):
    """One saved version of a rule set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule_set_id: Identifier = Field(description="Rule set id.")
    version: int = Field(ge=1, description="1 for the first Put, then one more per Put.")
    name: str = Field(description="Display name.")
    is_default: bool = Field(description="Applies to customers with no assignment.")
    destination_groups: dict[str, list[str]] = Field(description="Group name → destination prefixes.")
    rules: list[Rule] = Field(description="Ordered rules; each sees earlier rules' lines.")

    def changed(self) -> RuleSetChanged:
        """The event announcing this version."""
        return RuleSetChanged(
            rule_set_id=self.rule_set_id, name=self.name, version=self.version, is_default=self.is_default
        )


def put_rule_set(cmd: PutRuleSet, latest_version: int | None) -> RuleSetVersion:
    """The next version of the rule set (1 when none is stored yet).

    Raises `DomainError` (`invalid_rule_set`) naming every problem when the rule set is invalid.
    """
    errors = validate_rule_set(cmd)
    if errors:
        raise rule_set_rejected(cmd.rule_set_id, errors)
    return RuleSetVersion(
        rule_set_id=cmd.rule_set_id,
        version=(latest_version or 0) + 1,
        name=cmd.name,
        is_default=cmd.is_default,
        destination_groups={name: list(prefixes) for name, prefixes in cmd.destination_groups.items()},
        rules=list(cmd.rules),
    )


def select_rule_set(assigned: T | None, default: T | None) -> T | None:
    """The customer's assigned rule set, else the default one, else None (no adjustments)."""
    return assigned if assigned is not None else default
