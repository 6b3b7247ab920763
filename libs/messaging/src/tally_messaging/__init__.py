"""Tally's exactly-once runtime: inbox, transactional outbox + relay, DLQ, migrations,
logging, health and metrics. Every service is a `Service` with handlers registered on it."""

from tally_messaging.processing import Delivery
from tally_messaging.registration import BatchMessageHandler, MessageHandler, Registration
from tally_messaging.service import Service
from tally_messaging.settings import ServiceSettings
from tally_messaging.transaction import Transaction

__all__ = [
    "BatchMessageHandler",
    "Delivery",
    "MessageHandler",
    "Registration",
    "Service",
    "ServiceSettings",
    "Transaction",
]
