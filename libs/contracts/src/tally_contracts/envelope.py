"""The envelope every message travels in, and parsing by `type`.

`Envelope.model_validate_json(raw)` picks the body model from the envelope's `type`
(the registry of `MessageData` subclasses): an unknown type or a malformed body is a
pydantic `ValidationError` that names the field.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any, Generic, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from tally_contracts import credits, invoicing, payments, rules, usage  # noqa: F401  (registers)
from tally_contracts.base import MessageData
from tally_contracts.dates import BusinessInstant
from tally_contracts.identifiers import Identifier, nul_in_strings

D = TypeVar("D", bound=MessageData)
MAX_MESSAGE_BYTES = 1_000_000


class Envelope(BaseModel, Generic[D]):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: uuid.UUID = Field(description="Unique per message; the idempotency key.")
    type: str = Field(description="Message type; selects the model of `data`.")
    version: int = Field(default=1, ge=1, le=1, description="Contract version.")
    occurred_at: BusinessInstant = Field(
        description="When it happened (RFC 3339, UTC); its UTC date is a business date (2000-2099)."
    )
    customer_id: Identifier | None = Field(description="Customer; null for configuration messages.")
    correlation_id: Identifier | None = Field(default=None, description="Id of the flow's first command.")
    causation_id: Identifier | None = Field(default=None, description="Id of the direct cause.")
    data: SerializeAsAny[D] = Field(description="The message body.")

    @model_validator(mode="before")
    @classmethod
    def _body_by_type(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        type_name = values.get("type")
        body = values.get("data")
        model = MessageData.registry.get(type_name) if isinstance(type_name, str) else None
        if model is None:
            raise ValueError(f"unknown message type {type_name!r}")
        if isinstance(body, MessageData):
            if not isinstance(body, model):
                raise ValueError(f"data is a {type(body).__name__}, type says {type_name}")
            return values
        try:
            return {**values, "data": model.model_validate(body)}
        except ValidationError as exc:  # re-raised with locations under `data`, not the envelope's
            raise ValidationError.from_exception_data(
                exc.title,
                [
                    InitErrorDetails(
                        type=e["type"], loc=("data", *e["loc"]), input=e["input"], ctx=e.get("ctx", {})
                    )
                    for e in exc.errors()
                ],
            ) from None

    @field_serializer("occurred_at")
    def _utc(self, value: dt.datetime) -> str:
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")

    @classmethod
    def new(
        cls,
        data: D,
        *,
        customer_id: str | None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        occurred_at: dt.datetime | None = None,
        message_id: uuid.UUID | None = None,
    ) -> Envelope[D]:
        mid = message_id or uuid.uuid4()
        return Envelope[D](
            id=mid,
            type=data.message_type(),
            occurred_at=occurred_at or dt.datetime.now(dt.UTC),
            customer_id=customer_id,
            correlation_id=correlation_id or str(mid),
            causation_id=causation_id,
            data=data,
        )

    def reply(self, data: MessageData, *, customer_id: str | None = None) -> Envelope[Any]:
        """A message caused by this one: same correlation, causation = this id."""
        return Envelope.new(
            data,
            customer_id=self.customer_id if customer_id is None else customer_id,
            correlation_id=self.correlation_id or str(self.id),
            causation_id=str(self.id),
        )

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


def message_key(envelope: Envelope[Any]) -> str:
    """The Kafka key of a message: its customer, or for a message without one what its
    contract declares (`MessageData.key_without_customer`: a configuration's own id), or
    its id. Per-key order is per-customer order."""
    if envelope.customer_id:
        return envelope.customer_id
    return envelope.data.key_without_customer() or str(envelope.id)


def parse_message(raw: bytes | str) -> Envelope[Any]:
    """Parse one message value; raises `ValidationError` (or ValueError for size).

    NUL is refused in every string of the message (PostgreSQL stores none in `text` or
    `jsonb`), with the error located at the field that holds it. JSON can only carry NUL
    escaped, so a message without the text `\\u0000` is not walked.
    """
    data = raw.encode(errors="surrogatepass") if isinstance(raw, str) else raw
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {len(data)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")
    if _ESCAPED_NUL in data:
        _refuse_nul(data)
    return _ANY_ENVELOPE.model_validate_json(data)


_ESCAPED_NUL = b"\\u0000"


def _refuse_nul(data: bytes) -> None:
    try:
        document = json.loads(data)
    except ValueError:
        return  # not JSON: model_validate_json says why
    where = nul_in_strings(document)
    if where is not None:
        error = PydanticCustomError("nul_character", "must not contain the NUL character")
        raise ValidationError.from_exception_data(
            "Envelope", [InitErrorDetails(type=error, loc=where, input="\\u0000")]
        )


_ANY_ENVELOPE = Envelope[Any]
"""Parametrised once: `Envelope[Any]` looks the generic up on every call (hot path)."""


__all__ = ["MAX_MESSAGE_BYTES", "Envelope", "ValidationError", "message_key", "parse_message"]
