"""Tally's exactly-once runtime: inbox, transactional outbox + relay, DLQ, migrations,
logging, health and metrics. Every service is a `Service` with handlers registered on it."""

from tally_messaging.processing import Delivery
from tally_messaging.service import Service
from tally_messaging.settings import ServiceSettings
from tally_messaging.transaction import Rejected, Transaction

__all__ = ["Delivery", "Rejected", "Service", "ServiceSettings", "Transaction"]
