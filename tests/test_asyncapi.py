"""The AsyncAPI documents in docs/asyncapi agree with the services' code and the contracts.

Run as a script to write them again: `uv run python tests/test_asyncapi.py`."""

import importlib
import sys
from pathlib import Path

import pytest

from tally_contracts.read_apis import SERVICES
from tally_contracts.topics import TOPIC_MESSAGES
from tally_messaging import Service, asyncapi

DOCUMENTS = Path(__file__).resolve().parents[1] / "docs" / "asyncapi"


def build_service(name: str) -> Service:
    service: Service = importlib.import_module(f"{name}.app").build()
    return service


def write_documents(*, check: bool = False) -> list[Path]:
    return asyncapi.write_documents([build_service(name) for name in SERVICES], DOCUMENTS, check=check)


def test_checked_in_documents_are_what_the_code_generates() -> None:
    assert write_documents(check=True) == [], "run: uv run python tests/test_asyncapi.py"


@pytest.mark.parametrize("name", SERVICES)
def test_every_handled_type_belongs_on_its_topic(name: str) -> None:
    service = build_service(name)
    for registration in service.registrations:
        handled = set(registration.type_names)
        allowed = TOPIC_MESSAGES[registration.topic]
        assert handled <= allowed, (registration.topic, handled - allowed)


@pytest.mark.parametrize("name", SERVICES)
def test_document_lists_every_consumed_topic_and_the_events_topic(name: str) -> None:
    service = build_service(name)
    document = asyncapi.specification(service)

    channels = {c["address"] for c in document["channels"].values()}
    assert channels == {*service.routes, service.events_topic}


@pytest.mark.parametrize("name", SERVICES)
def test_each_subscriber_documents_the_types_registered_on_its_topic(name: str) -> None:
    service = build_service(name)
    document = asyncapi.specification(service)

    for topic in service.routes:
        channel = document["channels"][f"{name}:{topic}"]
        registered = sorted({n for r in service.registrations if r.topic == topic for n in r.type_names})
        assert channel["description"].startswith(f"Handled: {', '.join(registered) or 'none'}")


if __name__ == "__main__":
    for path in write_documents():
        print("wrote", path)
    sys.exit(0)
