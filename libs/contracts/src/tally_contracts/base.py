"""The base of every message body, and the pieces several topics share."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from tally_contracts.identifiers import Identifier
from tally_contracts.money import Money, StrictDecimal


class MessageData(BaseModel):
    """The `data` of a message. Subclasses are registered by their class name (the `type`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    is_command: ClassVar[bool] = False
    registry: ClassVar[dict[str, type[MessageData]]] = {}
    key_field: ClassVar[str | None] = None
    """The field whose value keys a message sent without a customer (a configuration's own
    id, e.g. `price_list_id`); see `key_without_customer`."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        MessageData.registry[cls.__name__] = cls

    @classmethod
    def message_type(cls) -> str:
        return cls.__name__

    def key_without_customer(self) -> str | None:
        """The Kafka key of this message when its envelope names no customer: the value of
        `key_field` when it is set, else None (the message id keys it)."""
        value = getattr(self, self.key_field, None) if self.key_field else None
        return value if isinstance(value, str) else None


class Command(MessageData):
    """A request that is answered by events or by CommandRejected."""

    is_command: ClassVar[bool] = True


del MessageData.registry[Command.__name__]  # a base class, not a message type


LineKind = Literal["subscription", "usage", "one_time", "adjustment"]


class Line(BaseModel):
    """One line of an invoice."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    line_id: Identifier = Field(description="Unique within the invoice.")
    kind: LineKind = Field(description="subscription, usage, one_time or adjustment.")
    description: str = Field(description="What the customer reads on the invoice.", max_length=500)
    amount: Money = Field(description="Line amount, rounded to the currency's minor unit.")
    service: str | None = Field(default=None, description="Service rated (usage) or analysed.")
    unit: str | None = Field(default=None, description="Unit of the quantity, e.g. minute, GB.")
    quantity: StrictDecimal | None = Field(default=None, description="Quantity consumed.")
    unit_price: StrictDecimal | None = Field(default=None, description="Price per unit.")
    destination: str | None = Field(default=None, description="Destination prefix, e.g. 44.")
    subscription_id: Identifier | None = Field(default=None, description="Subscription billed.")
    tax_code: str | None = Field(default=None, description="Tax code of an adjustment.")
    rule_id: Identifier | None = Field(default=None, description="Rule that made an adjustment.")
    late: bool = Field(default=False, description="Usage from an earlier, already closed period (extension).")


class CommandRejected(MessageData):
    """A command broke a business rule; nothing was changed."""

    command_id: str = Field(description="Id of the rejected command message.")
    command_type: str = Field(description="Type of the rejected command.")
    code: str = Field(description="Stable machine-readable code, e.g. unknown_invoice.")
    reason: str = Field(description="A sentence a person can act on.")


class CommandCompleted(MessageData):
    """A command was handled and changed nothing: its answer when it has no event of its own.

    Every command is answered (an event, CommandRejected, or a dead letter), so a sender or an
    auditor can tell "done, nothing to do" from "lost"."""

    command_id: str = Field(description="Id of the command message.")
    command_type: str = Field(description="Type of the command.")
    outcome: str = Field(description="Stable machine-readable outcome, e.g. nothing_to_do.")


__all__ = ["Command", "CommandCompleted", "CommandRejected", "Identifier", "Line", "LineKind", "MessageData"]
