"""What the runtime checks of a parsed message before any handler sees it.

A message that fails a check is dead-lettered with the reason, and counted by check
in `tally_envelope_refused_total`: a wrong `type` header or Kafka key means a producer
is broken, and a key that is not the message's own would break per-customer order.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from tally_contracts import Envelope, message_key
from tally_messaging.dedupe import DedupeWindow
from tally_messaging.transaction import RawRecord


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a record is dead-lettered instead of handled."""

    reason: str
    check: str | None = None
    """The envelope check that failed (a metric label); None when the record did not parse."""


def check_envelope(record: RawRecord, envelope: Envelope[Any]) -> Refusal | None:
    """The first envelope check `record` fails, or None.

    - the `type` header, when present, names the body's type;
    - the Kafka key is `message_key(envelope)` (declared with the contracts): the customer,
      or the configuration's id.
    """
    header = record.header("type")
    if header is not None and header != envelope.type.encode():
        shown = header.decode(errors="replace")
        return Refusal(
            f"type header {shown!r} does not match the body's type {envelope.type!r}", "type_header"
        )
    expected = message_key(envelope)
    if record.key != expected.encode():
        shown_key = "none" if record.key is None else repr(record.key.decode(errors="replace"))
        return Refusal(
            f"Kafka key {shown_key} is not the message's key {expected!r}"
            " (its customer_id, or the configuration's id): it would break per-key order",
            "key",
        )
    return None


def id_reused(message_id: uuid.UUID) -> Refusal:
    return Refusal(f"message id {message_id} reused with a different body (already handled)", "id_reused")


def older_than_window(envelope: Envelope[Any], window: DedupeWindow, now: dt.datetime) -> Refusal | None:
    """A message whose own time left the dedupe window is refused: its id may have been
    handled and forgotten, so handling it could count it twice."""
    if envelope.occurred_at >= window.opens_at(now):
        return None
    occurred = envelope.occurred_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return Refusal(
        f"occurred_at {occurred} is older than the dedupe window ({window.days} days):"
        " a copy of it may have been handled already and its id forgotten, so it is not handled",
        "older_than_window",
    )
