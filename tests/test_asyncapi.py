"""The AsyncAPI documents in docs/asyncapi agree with the services' code and the contracts."""

import pytest

from tally_contracts.topics import TOPIC_MESSAGES
from tally_messaging import asyncapi


def test_checked_in_documents_are_what_the_code_generates() -> None:
    assert asyncapi.main(["--check"]) == 0, "run: uv run python -m tally_messaging.asyncapi"


@pytest.mark.parametrize("name", asyncapi.SERVICES)
def test_every_handled_type_belongs_on_its_topic(name: str) -> None:
    service = asyncapi.build_service(name)
    for topic, route in service.routes.items():
        handled = set(route.handlers) | ({route.batch_type} if route.batch_type else set())
        assert handled <= TOPIC_MESSAGES[topic], (topic, handled - TOPIC_MESSAGES[topic])


@pytest.mark.parametrize("name", asyncapi.SERVICES)
def test_document_lists_every_consumed_topic_and_the_events_topic(name: str) -> None:
    service = asyncapi.build_service(name)
    document = asyncapi.specification(service)

    channels = {c["address"] for c in document["channels"].values()}
    assert channels == {*service.routes, service.events_topic}
