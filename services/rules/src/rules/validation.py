"""Validating a rule set as a whole, before it is saved.

The contract models check shapes; this module checks meaning. An invalid rule set is
rejected whole, with every problem at once: each `RuleSetProblem` names the rule (None for
a destination-group problem), the field, and what to do about it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from rules.rule_type import Problem
from rules.rule_types import RULE_TYPES
from tally_contracts import DomainError
from tally_contracts.rules import PutRuleSet, Rule

ADJUSTMENT_LINE_PREFIX = "adj-"
MAX_LINE_ID_LENGTH = 200
MAX_RULE_ID_LENGTH = MAX_LINE_ID_LENGTH - len(ADJUSTMENT_LINE_PREFIX)
MAX_TITLE_LENGTH = 500


@dataclass(frozen=True, slots=True)
class RuleSetProblem:
    """One reason a rule set was refused."""

    rule_id: str | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.field if self.rule_id is None else f"rule {self.rule_id!r}, {self.field}"
        return f"{where}: {self.message}"


def rule_set_rejected(rule_set_id: str, problems: Sequence[RuleSetProblem]) -> DomainError:
    """The answer to a PutRuleSet with `problems`: nothing is saved, every problem named."""
    return DomainError(
        "invalid_rule_set", f"rule set {rule_set_id!r} was not saved: " + "; ".join(map(str, problems))
    )


def validate_rule_set(cmd: PutRuleSet) -> list[RuleSetProblem]:
    """Every problem of the rule set; an empty list means it can be saved."""
    errors = list(_destination_group_errors(cmd.destination_groups))
    seen: set[str] = set()
    for rule in cmd.rules:
        if rule.rule_id in seen:
            errors.append(
                RuleSetProblem(
                    rule.rule_id,
                    "rule_id",
                    "another rule in the set has this id; give each rule its own rule_id",
                )
            )
        seen.add(rule.rule_id)
        errors.extend(
            RuleSetProblem(rule.rule_id, field, message) for field, message in _rule_problems(rule, cmd)
        )
    return errors


def _rule_problems(rule: Rule, cmd: PutRuleSet) -> Iterator[Problem]:
    """The fields every rule has, then what its type gives meaning to."""
    yield from _identity_problems(rule)
    yield from _analyze_problems(rule, cmd.destination_groups)
    yield from _threshold_problems(rule)
    yield from RULE_TYPES[rule.type].problems(rule)


def _identity_problems(rule: Rule) -> Iterator[Problem]:
    if len(rule.rule_id) > MAX_RULE_ID_LENGTH:
        yield (
            "rule_id",
            f"must be at most {MAX_RULE_ID_LENGTH} characters, so that the adjustment line id "
            f"'{ADJUSTMENT_LINE_PREFIX}<rule_id>' fits in {MAX_LINE_ID_LENGTH}; shorten it",
        )
    if not rule.title.strip():
        yield "title", "is empty; set the transaction title the customer reads on the invoice line"
    elif len(rule.title) > MAX_TITLE_LENGTH:
        yield (
            "title",
            f"must be at most {MAX_TITLE_LENGTH} characters (an invoice line's description); shorten it",
        )


def _analyze_problems(rule: Rule, groups: Mapping[str, list[str]]) -> Iterator[Problem]:
    analyze = rule.analyze
    if analyze.scope == "transaction_type" and analyze.transaction_type is None:
        yield (
            "analyze.transaction_type",
            "is missing; scope 'transaction_type' needs one of subscription, usage or one_time",
        )
    if analyze.scope != "transaction_type" and analyze.transaction_type is not None:
        yield (
            "analyze.transaction_type",
            f"is only used with scope 'transaction_type', not {analyze.scope!r}; remove it or change analyze.scope",
        )
    if analyze.scope == "service" and not analyze.service:
        yield "analyze.service", "is missing; scope 'service' needs the service to analyse, e.g. 'voice'"
    if analyze.scope != "service" and analyze.service is not None:
        yield (
            "analyze.service",
            f"is only used with scope 'service', not {analyze.scope!r}; remove it or set analyze.scope to 'service'",
        )
    group = analyze.destination_group
    if group is None:
        return
    if analyze.scope != "service":
        yield (
            "analyze.destination_group",
            "limits one service's usage to some destinations; set analyze.scope to 'service' "
            "with analyze.service, or remove the destination group",
        )
    if group not in groups:
        known = ", ".join(repr(name) for name in sorted(groups)) or "none"
        yield (
            "analyze.destination_group",
            f"unknown destination group {group!r} (defined: {known}); "
            "add it to destination_groups or correct the name",
        )


def _threshold_problems(rule: Rule) -> Iterator[Problem]:
    first_with: dict[Decimal, int] = {}
    for index, condition in enumerate(rule.conditions):
        field = f"conditions[{index}].threshold"
        if condition.threshold < 0:
            yield field, f"is negative ({condition.threshold}); use zero or more"
        if condition.threshold in first_with:
            yield (
                field,
                f"{condition.threshold} is also the threshold of conditions[{first_with[condition.threshold]}]; "
                "give each tier its own threshold",
            )
        else:
            first_with[condition.threshold] = index


def _destination_group_errors(groups: Mapping[str, list[str]]) -> Iterator[RuleSetProblem]:
    owner: dict[str, str] = {}
    for name, prefixes in groups.items():
        field = f"destination_groups[{name!r}]"
        if not name.strip():
            yield RuleSetProblem(None, field, "a destination group needs a name; name it or remove it")
        if not prefixes:
            yield RuleSetProblem(
                None, field, "has no prefixes; list its destination prefixes (e.g. '44') or remove the group"
            )
        listed: set[str] = set()
        for prefix in prefixes:
            if not prefix.strip():
                yield RuleSetProblem(None, field, "contains an empty prefix; remove it")
            elif prefix in listed:
                yield RuleSetProblem(None, field, f"lists prefix {prefix!r} more than once; keep one")
            elif prefix in owner:
                yield RuleSetProblem(
                    None,
                    field,
                    f"prefix {prefix!r} is also in group {owner[prefix]!r}; a prefix belongs to one group only",
                )
            else:
                owner[prefix] = name
            listed.add(prefix)
