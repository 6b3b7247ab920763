"""The rule-type table, the contract's list of types and docs/RULES.md name the same types."""

import re
from pathlib import Path
from typing import get_args

from rules.rule_types import RULE_TYPES
from tally_contracts.rules import RuleTypeName

RULES_MD = Path(__file__).resolve().parents[3] / "docs" / "RULES.md"


def test_every_contract_rule_type_has_a_module_and_no_module_is_unnamed() -> None:
    assert set(RULE_TYPES) == set(get_args(RuleTypeName))


def test_each_rule_type_is_registered_under_its_own_name() -> None:
    assert all(kind.name == name for name, kind in RULE_TYPES.items())


def test_each_rule_type_says_how_it_decides_in_the_rules_doc() -> None:
    documented = set(re.findall(r"^- \*\*([a-z_]+)\*\*:", RULES_MD.read_text(), flags=re.MULTILINE))

    assert documented == set(RULE_TYPES)
