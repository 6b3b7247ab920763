"""The credits service: subscriptions wired to handlers, and its read API."""

from tally_contracts import topics
from tally_messaging import Service, ServiceSettings


def build(settings: ServiceSettings | None = None) -> Service:
    service = Service("credits", events_topic=topics.CREDITS_EVENTS, settings=settings)
    service.consumes(topics.CREDITS_COMMANDS, topics.INVOICING_EVENTS, topics.PAYMENTS_EVENTS)
    return service
