"""The invoicing service: subscriptions wired to handlers, and its read API."""

from tally_contracts import topics
from tally_messaging import Service, ServiceSettings


def build(settings: ServiceSettings | None = None) -> Service:
    service = Service("invoicing", events_topic=topics.INVOICING_EVENTS, settings=settings)
    service.consumes(topics.USAGE, topics.INVOICING_COMMANDS, topics.RULES_EVENTS, topics.CREDITS_EVENTS)
    return service
