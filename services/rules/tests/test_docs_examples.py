"""The worked examples of docs/RULES.md validate and give exactly the lines shown there.

Each example is three YAML blocks whose first line is `# example N: rule set`,
`# example N: closed invoice` and `# example N: adjustments`.
"""

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from rules.domain import RuleSetVersion, adjust_invoice, put_rule_set
from tally_contracts import Line, Money
from tally_contracts.rules import AssignRuleSet, InvoiceAdjusted, PutRuleSet

RULES_MD = Path(__file__).resolve().parents[3] / "docs" / "RULES.md"
BLOCK = re.compile(r"```yaml\n# example (\d+): (rule set|closed invoice|adjustments)\n(.*?)```", re.DOTALL)


def examples() -> dict[int, dict[str, str]]:
    found: dict[int, dict[str, str]] = {}
    for number, part, body in BLOCK.findall(RULES_MD.read_text()):
        assert part not in found.setdefault(int(number), {}), f"example {number} has two {part!r} blocks"
        found[int(number)][part] = body
    return found


EXAMPLES = examples()


def test_the_page_has_three_complete_examples() -> None:
    assert sorted(EXAMPLES) == [1, 2, 3]
    for number, parts in EXAMPLES.items():
        assert sorted(parts) == ["adjustments", "closed invoice", "rule set"], f"example {number}"


def saved_rule_set(text: str) -> RuleSetVersion:
    """The PutRuleSet of a `tally send -f` file, saved as version 1; its assignments checked."""
    documents: list[dict[str, Any]] = [d for d in yaml.safe_load_all(text) if d is not None]
    puts = [d for d in documents if d["type"] == "PutRuleSet"]
    assert len(puts) == 1
    cmd = PutRuleSet.model_validate(puts[0]["data"])
    for doc in documents:
        assert doc["type"] in ("PutRuleSet", "AssignRuleSet")
        if doc["type"] == "AssignRuleSet":
            assert doc["customer_id"], "an assignment names its customer"
            assert AssignRuleSet.model_validate(doc["data"]).rule_set_id == cmd.rule_set_id
        else:
            assert doc["customer_id"] is None
    return put_rule_set(cmd, latest_version=None)


def adjusted(number: int, **changes: str) -> InvoiceAdjusted:
    """Evaluate example `number`'s rule set on its invoice, with line amounts replaced by `changes`."""
    parts = EXAMPLES[number]
    invoice = yaml.safe_load(parts["closed invoice"])
    lines = [Line.model_validate(line) for line in invoice["lines"]]
    lines = [
        line.model_copy(update={"amount": Money.of(changes[line.line_id], invoice["currency"])})
        if line.line_id in changes
        else line
        for line in lines
    ]
    return adjust_invoice(
        invoice["invoice_id"], invoice["currency"], lines, saved_rule_set(parts["rule set"])
    )


@pytest.mark.parametrize("number", sorted(EXAMPLES))
def test_example_gives_the_adjustments_shown(number: int) -> None:
    shown = InvoiceAdjusted.model_validate(yaml.safe_load(EXAMPLES[number]["adjustments"]))
    assert adjusted(number) == shown


def amounts(answer: InvoiceAdjusted) -> list[Decimal]:
    return [line.amount.amount for line in answer.lines]


def test_what_the_prose_around_the_examples_says() -> None:
    # 1: 250 USD of international calls reach the 200 tier (15%); under 50 there is no line.
    assert amounts(adjusted(1, **{"voice-4420": "200.00", "voice-3314": "50.00"})) == [Decimal("-37.50")]
    assert amounts(adjusted(1, **{"voice-4420": "30.00", "voice-3314": "19.99"})) == []
    # 2: an invoice of 25 or more gets no line.
    assert amounts(adjusted(2, **{"voice-1212": "15.00"})) == []
    # 3: from 60 of usage there is no fee; below 30 it is 10.
    assert amounts(adjusted(3, **{"data-gb": "60.00"})) == []
    assert amounts(adjusted(3, **{"data-gb": "29.99"})) == [Decimal("10")]


def test_a_percentage_penalty_in_example_3_would_charge_ten_percent_of_usage() -> None:
    rule_set = saved_rule_set(EXAMPLES[3]["rule set"])
    [rule] = rule_set.rules
    conditions = [c.model_copy(update={"value": Decimal(10)}) for c in rule.conditions]
    percentage = rule.model_copy(update={"value_type": "percentage", "conditions": conditions})
    invoice = yaml.safe_load(EXAMPLES[3]["closed invoice"])
    lines = [Line.model_validate(line) for line in invoice["lines"]]
    answer = adjust_invoice("inv", "USD", lines, rule_set.model_copy(update={"rules": [percentage]}))
    assert amounts(answer) == [Decimal("4.20")]
