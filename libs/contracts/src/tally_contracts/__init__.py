"""Tally's wire contracts (v1): envelope, Money, every message, and the topic names."""

from tally_contracts.base import Command, CommandCompleted, CommandRejected, Line, MessageData
from tally_contracts.envelope import Envelope, message_key, parse_message
from tally_contracts.errors import DomainError
from tally_contracts.money import CurrencyMismatch, Money

__all__ = [
    "Command",
    "CommandCompleted",
    "CommandRejected",
    "CurrencyMismatch",
    "DomainError",
    "Envelope",
    "Line",
    "MessageData",
    "Money",
    "message_key",
    "parse_message",
]
