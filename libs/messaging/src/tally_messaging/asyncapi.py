"""AsyncAPI 3.0 documents generated from the services' code, with FastStream.

A service's routes (what it consumes and which types it handles) and its events topic
are declared on a FastStream KafkaBroker that is never started; payload schemas come from
the pydantic models in libs/contracts. `python -m tally_messaging.asyncapi [--check]`
writes (or compares) `docs/asyncapi/<service>.json`; the tests run the check, so the
documents cannot drift from the code.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any, Union

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from tally_contracts import Envelope
from tally_contracts.base import MessageData
from tally_contracts.topics import TOPIC_MESSAGES
from tally_messaging.service import Service

SERVICES = ("invoicing", "rules", "credits", "payments")
DOCS = Path(__file__).resolve().parents[4] / "docs" / "asyncapi"


def _payload(type_names: list[str]) -> Any:
    envelope: Any = Envelope  # parametrised at run time with each contract model
    models = tuple(envelope[MessageData.registry[name]] for name in sorted(type_names))
    if not models:
        return Envelope[Any]
    return models[0] if len(models) == 1 else Union[models]  # noqa: UP007 - a runtime union of a tuple


def specification(service: Service) -> dict[str, Any]:
    """The service's AsyncAPI document as JSON-ready data."""
    broker = KafkaBroker("127.0.0.1:9092")
    for topic, route in sorted(service.routes.items()):
        handled = set(route.handlers) | ({route.batch_type} if route.batch_type else set())

        async def handler(body: Any) -> None:
            return None

        handler.__annotations__ = {"body": _payload(sorted(handled)), "return": None}
        broker.subscriber(
            topic,
            group_id=f"{service.name}.{topic}",
            title=f"{service.name}:{topic}",
            description=f"Handled: {', '.join(sorted(handled)) or 'none (validated, dead-lettered if bad)'}. "
            f"Invalid messages go to {topic}.dlq.",
        )(handler)
    broker.publisher(
        service.events_topic,
        title=f"{service.name}:{service.events_topic}",
        description="Published through the transactional outbox, keyed by customer_id.",
        schema=_payload(sorted(TOPIC_MESSAGES[service.events_topic])),
    )
    document = AsyncAPI(broker, title=f"Tally {service.name}", version="1", schema_version="3.0.0")
    data: dict[str, Any] = json.loads(document.to_specification().to_json())
    return data


def build_service(name: str) -> Service:
    app = importlib.import_module(f"{name}.app")
    service: Service = app.build()
    return service


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    DOCS.mkdir(parents=True, exist_ok=True)
    for name in SERVICES:
        text = json.dumps(specification(build_service(name)), indent=2, sort_keys=True) + "\n"
        path = DOCS / f"{name}.json"
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("out of date (run python -m tally_messaging.asyncapi):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
