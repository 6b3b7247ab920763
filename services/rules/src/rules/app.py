"""The rules service: subscriptions wired to handlers, and its read API."""

from tally_contracts import topics
from tally_messaging import Service, ServiceSettings


def build(settings: ServiceSettings | None = None) -> Service:
    service = Service("rules", events_topic=topics.RULES_EVENTS, settings=settings)
    service.consumes(topics.RULES_COMMANDS, topics.INVOICING_EVENTS)
    return service
