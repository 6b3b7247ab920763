"""Building envelopes from what a person types: a type name and fields from flags, JSON or YAML."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import yaml

from tally_contracts import Envelope, MessageData
from tally_contracts.topics import TOPIC_MESSAGES
from tally_contracts.usage import UsageRecorded


class InputError(ValueError):
    """What the person typed cannot make a message; the text says why."""


def topic_for(type_name: str) -> str:
    """The commands (or usage) topic that carries `type_name`."""
    for topic, types in TOPIC_MESSAGES.items():
        if type_name in types and not topic.endswith(".events"):
            return topic
    sendable = sorted(t for topic, ts in TOPIC_MESSAGES.items() if not topic.endswith(".events") for t in ts)
    raise InputError(f"{type_name!r} is not a command; one of: {', '.join(sendable)}")


def parse_assignments(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs; a value that parses as JSON (objects, lists, booleans) is taken as JSON.

    Nested keys use dots: `amount.amount=12.50 amount.currency=USD`.
    """
    data: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InputError(f"expected key=value, got {pair!r}")
        value: Any = raw
        if raw[:1] in "{[" or raw in ("true", "false", "null"):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise InputError(f"{key}: {exc}") from None
        target = data
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return data


def load_documents(path: Path) -> list[dict[str, Any]]:
    """One message or many from a JSON, JSON-lines or YAML file."""
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    elif path.suffix == ".jsonl":
        docs = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        loaded = json.loads(text)
        docs = loaded if isinstance(loaded, list) else [loaded]
    flat: list[dict[str, Any]] = []
    for doc in docs:
        flat.extend(doc if isinstance(doc, list) else [doc])
    if not all(isinstance(d, dict) for d in flat):
        raise InputError(f"{path}: every message must be an object")
    return flat


def build(type_name: str, customer_id: str | None, data: dict[str, Any], **envelope: Any) -> Envelope[Any]:
    model = MessageData.registry.get(type_name)
    if model is None:
        raise InputError(f"unknown message type {type_name!r}")
    return Envelope.new(model.model_validate(data), customer_id=customer_id, **envelope)


def from_document(
    doc: dict[str, Any], default_type: str | None = None, customer_id: str | None = None
) -> Envelope[Any]:
    """A full envelope (with `id`), or `{type, customer_id, data}`, or bare data of `default_type`."""
    if "id" in doc and "data" in doc:
        return Envelope[Any].model_validate(doc)
    if "data" in doc:
        return build(doc.get("type") or default_type or "", doc.get("customer_id", customer_id), doc["data"])
    if default_type is None:
        raise InputError("a message without `type` needs --type")
    return build(default_type, customer_id, doc)


def usage_from_flags(
    customer: str | None,
    service: str | None,
    quantity: str | None,
    unit: str | None,
    destination: str | None = None,
    amount: str | None = None,
    currency: str | None = None,
    at: str | None = None,
) -> Envelope[UsageRecorded]:
    """One UsageRecorded from `tally usage`'s flags, dated `at` (RFC 3339) or now.

    Bad values raise InputError or pydantic's ValidationError, which names the field.
    """
    required = {"--customer": customer, "--service": service, "--quantity": quantity, "--unit": unit}
    missing = [flag for flag, value in required.items() if not value]
    if missing:
        raise InputError(f"{', '.join(missing)} required (or --file)")
    if amount is not None and not currency:
        raise InputError("--amount needs --currency")
    body = UsageRecorded.model_validate(
        {
            "service": service,
            "quantity": quantity,
            "unit": unit,
            "destination": destination,
            "amount": {"amount": amount, "currency": currency} if amount is not None else None,
        }
    )
    return Envelope.new(body, customer_id=customer, occurred_at=_instant(at) if at else None)


def _instant(text: str) -> dt.datetime:
    try:
        instant = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"--at {text!r} is not an RFC 3339 time, e.g. 2026-11-02T09:00:00Z") from None
    if instant.tzinfo is None:
        raise InputError(f"--at {text!r} has no time zone; add Z or an offset such as +01:00")
    return instant
