"""AsyncAPI 3.0 documents built from what services registered, with FastStream.

Each topic a service consumes becomes a FastStream subscriber on a KafkaBroker that is
never started, its payload the envelopes of the types registered on it
(`Service.registrations`); the events topic becomes a publisher of the types the contracts
put on it. Payload schemas are the pydantic models of libs/contracts.

`write_documents(services, folder)` writes `<service>.json` into `folder`, or with
`check=True` lists those that differ from what would be written; the repository's caller
(tests/test_asyncapi.py) names the services and the folder.
"""

# No `from __future__ import annotations`: a subscriber's payload annotation is evaluated
# when `_subscriber_of` defines it (FastStream reads the payload schema from it).

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Union

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from tally_contracts import Envelope, MessageData
from tally_contracts.topics import TOPIC_MESSAGES
from tally_messaging.service import Service


def handled_types(service: Service, topic: str) -> list[type[MessageData]]:
    """The types `service` registered a handler for on `topic`, by name."""
    found = {t for r in service.registrations if r.topic == topic for t in r.types}
    return sorted(found, key=lambda t: t.message_type())


def _payload(types: Iterable[type[MessageData]]) -> Any:
    """The envelope of each type: one, or the union of several."""
    envelope: Any = Envelope  # parametrised at run time with each contract model
    models = tuple(envelope[t] for t in sorted(types, key=lambda t: t.message_type()))
    if not models:
        return Envelope[Any]
    return models[0] if len(models) == 1 else Union[models]  # noqa: UP007 - a runtime union of a tuple


def _subscriber_of(payload: Any) -> Any:
    """A subscriber that is never called; FastStream documents `payload` from its annotation."""

    async def handler(body: payload) -> None:
        return None

    return handler


def specification(service: Service) -> dict[str, Any]:
    """The service's AsyncAPI document as JSON-ready data."""
    broker = KafkaBroker("127.0.0.1:9092")
    for topic in sorted(service.routes):
        handled = handled_types(service, topic)
        names = [t.message_type() for t in handled]
        broker.subscriber(
            topic,
            group_id=f"{service.name}.{topic}",
            title=f"{service.name}:{topic}",
            description=f"Handled: {', '.join(names) or 'none (validated, dead-lettered if bad)'}. "
            f"Invalid messages go to {topic}.dlq.",
        )(_subscriber_of(_payload(handled)))
    broker.publisher(
        service.events_topic,
        title=f"{service.name}:{service.events_topic}",
        description="Published through the transactional outbox, keyed by customer_id.",
        schema=_payload(MessageData.registry[name] for name in TOPIC_MESSAGES[service.events_topic]),
    )
    document = AsyncAPI(broker, title=f"Tally {service.name}", version="1", schema_version="3.0.0")
    data: dict[str, Any] = json.loads(document.to_specification().to_json())
    return data


def document_text(service: Service) -> str:
    return json.dumps(specification(service), indent=2, sort_keys=True) + "\n"


def write_documents(services: Iterable[Service], folder: Path, *, check: bool = False) -> list[Path]:
    """Write each service's document to `folder/<name>.json` and answer the paths written;
    with `check`, write nothing and answer the documents that are missing or differ
    (empty: all up to date)."""
    answered = []
    if not check:
        folder.mkdir(parents=True, exist_ok=True)
    for service in services:
        text = document_text(service)
        path = folder / f"{service.name}.json"
        if check:
            if not path.exists() or path.read_text() != text:
                answered.append(path)
        else:
            path.write_text(text)
            answered.append(path)
    return answered
