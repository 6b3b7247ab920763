"""Topics `rules.commands` and `rules.events`.

The shapes here are structural; the rules service validates a rule set as a whole
(units only for one service, percentages, known destination groups, ...) and answers
CommandRejected naming the rule and the field.
"""

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from tally_contracts.base import Command, Line, MessageData
from tally_contracts.identifiers import Identifier
from tally_contracts.money import StrictDecimal

TransactionType = Literal["subscription", "usage", "one_time"]
RuleTypeName = Literal["promotion", "minimum_amount", "penalty"]
"""The rule types; each is one module of the rules service (`rules.rule_types`)."""


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Analyze(_Part):
    scope: Literal["total", "transaction_type", "service"] = Field(description="What is measured.")
    transaction_type: TransactionType | None = Field(default=None, description="For that scope.")
    service: str | None = Field(default=None, description="For scope service.")
    destination_group: str | None = Field(
        default=None, description="Limit a service scope to a named destination group."
    )


class ApplyTo(_Part):
    scope: Literal["total", "transaction_type", "service", "subscription"] = Field(
        description="Charges a percentage is taken of, and a promotion is capped by."
    )
    transaction_type: TransactionType | None = Field(default=None, description="For that scope.")
    service: str | None = Field(default=None, description="For scope service.")
    subscription_id: Identifier | None = Field(default=None, description="For scope subscription.")


class Condition(_Part):
    threshold: StrictDecimal = Field(description="Threshold on the analysed measure.")
    value: StrictDecimal | None = Field(
        default=None, description="Amount or percentage (promotion, penalty); none for minimum."
    )


class Rule(_Part):
    rule_id: Identifier = Field(description="Rule id, unique in the set.")
    type: RuleTypeName = Field(description="Rule type.")
    title: str = Field(description="Transaction title shown on the adjustment line.")
    tax_code: str | None = Field(default=None, description="Tax code of the adjustment line.")
    analyze: Analyze = Field(description="What the conditions are measured on.")
    measure: Literal["money", "units"] = Field(default="money", description="Money or units.")
    value_type: Literal["amount", "percentage"] | None = Field(
        default=None, description="Promotion and penalty: a fixed amount or a percentage."
    )
    conditions: list[Condition] = Field(description="Thresholds (tiers).", min_length=1)
    apply_to: ApplyTo | None = Field(default=None, description="Charges the value applies to.")


class PutRuleSet(Command):
    key_field: ClassVar[str | None] = "rule_set_id"
    rule_set_id: Identifier = Field(description="Rule set id.")
    name: str = Field(description="Display name.")
    is_default: bool = Field(default=False, description="Applies to customers with no assignment.")
    destination_groups: dict[str, list[str]] = Field(
        default_factory=dict, description="Group name → destination prefixes."
    )
    rules: list[Rule] = Field(description="Ordered rules; each sees earlier rules' lines.")


class AssignRuleSet(Command):
    key_field: ClassVar[str | None] = "rule_set_id"
    rule_set_id: Identifier = Field(description="Rule set assigned to the envelope's customer.")


class RuleSetChanged(MessageData):
    key_field: ClassVar[str | None] = "rule_set_id"
    rule_set_id: Identifier = Field(description="Rule set id.")
    name: str = Field(description="Display name.")
    version: int = Field(description="New version number.")
    is_default: bool = Field(description="Whether it is the default set.")


class RuleSetAssigned(MessageData):
    key_field: ClassVar[str | None] = "rule_set_id"
    rule_set_id: Identifier = Field(description="Rule set now assigned to the customer.")


class InvoiceAdjusted(MessageData):
    key_field: ClassVar[str | None] = "rule_set_id"
    invoice_id: Identifier = Field(description="Closed invoice evaluated.")
    rule_set_id: Identifier | None = Field(description="Rule set evaluated (null: none applies).")
    rule_set_version: int | None = Field(description="Its version.")
    lines: list[Line] = Field(description="Adjustment lines; may be empty.")
