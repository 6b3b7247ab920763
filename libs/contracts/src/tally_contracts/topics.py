"""Topic names, partition counts, and which message types each topic carries."""

from types import ModuleType
from typing import Final

from tally_contracts import credits, invoicing, payments, rules, usage
from tally_contracts.base import CommandCompleted, CommandRejected, MessageData

USAGE: Final = "usage"
INVOICING_COMMANDS: Final = "invoicing.commands"
INVOICING_EVENTS: Final = "invoicing.events"
RULES_COMMANDS: Final = "rules.commands"
RULES_EVENTS: Final = "rules.events"
CREDITS_COMMANDS: Final = "credits.commands"
CREDITS_EVENTS: Final = "credits.events"
PAYMENTS_COMMANDS: Final = "payments.commands"
PAYMENTS_EVENTS: Final = "payments.events"

PARTITIONS: Final = 6
"""Every topic has several partitions so that ordering by key is really exercised."""


def dlq(topic: str) -> str:
    """The dead-letter topic of `topic`."""
    return f"{topic}.dlq"


def _types(*models: type[MessageData]) -> frozenset[str]:
    return frozenset(m.message_type() for m in models)


def _declared_in(module: ModuleType) -> list[type[MessageData]]:
    """The message types `module` declares."""
    return [m for m in MessageData.registry.values() if m.__module__ == module.__name__]


def _commands_of(module: ModuleType) -> frozenset[str]:
    return _types(*(m for m in _declared_in(module) if m.is_command))


def _events_of(module: ModuleType) -> frozenset[str]:
    """The events `module` declares, and the runtime's answers to its commands."""
    return _types(*(m for m in _declared_in(module) if not m.is_command), CommandRejected, CommandCompleted)


TOPIC_MESSAGES: Final[dict[str, frozenset[str]]] = {
    USAGE: _types(*_declared_in(usage)),
    INVOICING_COMMANDS: _commands_of(invoicing),
    INVOICING_EVENTS: _events_of(invoicing),
    RULES_COMMANDS: _commands_of(rules),
    RULES_EVENTS: _events_of(rules),
    CREDITS_COMMANDS: _commands_of(credits),
    CREDITS_EVENTS: _events_of(credits),
    PAYMENTS_COMMANDS: _commands_of(payments),
    PAYMENTS_EVENTS: _events_of(payments),
}
"""The types each topic carries: a contract module `tally_contracts.<x>` is the contract of
`<x>.commands` (the Commands it declares) and `<x>.events` (the rest, and CommandRejected
and CommandCompleted); `tally_contracts.usage` is the `usage` topic's. A new message type
is on its topic by being declared in its module."""

ALL_TOPICS: Final = tuple(TOPIC_MESSAGES)
ALL_TOPICS_WITH_DLQ: Final = ALL_TOPICS + tuple(dlq(t) for t in ALL_TOPICS)
