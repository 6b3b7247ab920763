"""The payments service: subscriptions wired to handlers, and its read API."""

from tally_contracts import topics
from tally_messaging import Service, ServiceSettings


def build(settings: ServiceSettings | None = None) -> Service:
    service = Service("payments", events_topic=topics.PAYMENTS_EVENTS, settings=settings)
    service.consumes(topics.PAYMENTS_COMMANDS, topics.INVOICING_EVENTS, topics.CREDITS_EVENTS)
    return service
