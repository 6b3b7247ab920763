"""Tally's wire contracts (v1): envelope, Money, every message, and the topic names."""

from tally_contracts.base import Command, CommandCompleted, CommandRejected, Line, MessageData
from tally_contracts.envelope import Envelope, parse_message
from tally_contracts.money import CurrencyMismatch, Money

__all__ = [
    "Command",
    "CommandCompleted",
    "CommandRejected",
    "CurrencyMismatch",
    "Envelope",
    "Line",
    "MessageData",
    "Money",
    "parse_message",
]
