"""What a service registers: one handler per type and topic, recorded for the AsyncAPI
documents. (Dispatch itself is tested on real Kafka and PostgreSQL by the probes.)"""

import pytest

from tally_contracts import Envelope, topics
from tally_contracts.credits import ApplyCredits, GrantCredit
from tally_contracts.usage import UsageRecorded
from tally_messaging import Delivery, Registration, Service, ServiceSettings, Transaction


def service() -> Service:
    return Service("registering", events_topic=topics.CREDITS_EVENTS, default_http_port=8080)


async def grant(message: Envelope[GrantCredit], tx: Transaction) -> None:
    return None


async def grant_or_apply(message: Envelope[GrantCredit | ApplyCredits], tx: Transaction) -> None:
    return None


async def usage(batch: list[Delivery[UsageRecorded]], tx: Transaction) -> None:
    return None


def test_registrations_are_recorded_in_order_and_routed_by_type_name() -> None:
    registering = service()
    registering.handles(topics.CREDITS_COMMANDS, GrantCredit, ApplyCredits)(grant_or_apply)
    registering.handles_batch(topics.USAGE, UsageRecorded)(usage)

    assert registering.registrations == [
        Registration(topics.CREDITS_COMMANDS, (GrantCredit, ApplyCredits)),
        Registration(topics.USAGE, (UsageRecorded,), batch=True),
    ]
    assert registering.routes[topics.CREDITS_COMMANDS].handlers == {
        "GrantCredit": grant_or_apply,
        "ApplyCredits": grant_or_apply,
    }
    assert registering.routes[topics.USAGE].batch_type == "UsageRecorded"


def test_a_second_handler_for_a_type_on_a_topic_is_refused() -> None:
    registering = service()
    registering.handles(topics.CREDITS_COMMANDS, GrantCredit)(grant)

    with pytest.raises(ValueError, match=r"GrantCredit on credits\.commands has a handler already"):
        registering.handles(topics.CREDITS_COMMANDS, GrantCredit, ApplyCredits)(grant_or_apply)
    assert registering.routes[topics.CREDITS_COMMANDS].handlers == {"GrantCredit": grant}


def test_the_default_port_is_the_services_own_unless_settings_name_one() -> None:
    named = Service(
        "registering",
        events_topic=topics.CREDITS_EVENTS,
        default_http_port=8080,
        settings=ServiceSettings(http_port=9999),
    )

    assert (
        Service("registering", events_topic=topics.CREDITS_EVENTS, default_http_port=8080).http_port == 8080
    )
    assert named.http_port == 9999
