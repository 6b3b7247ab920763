"""The dead-letter record: what the DLQ keeps of a message it could not handle.

Writing a dead letter must not fail on the message's content, whatever it holds: the
body is JSON in a `bytea` outbox column, bytes that are not clean text travel as base64
(PostgreSQL `text` refuses NUL; JSON escapes control bytes six-fold), and the size cap
applies to the encoded body, so Kafka never refuses a dead letter for its size.

Body: `topic`, `partition`, `offset`, `key`, `consumer`, `error`, `failed_at`, `raw`.
`raw` (and `key`) is a string when the original bytes are clean text (UTF-8, no control
character but tab, LF, CR), which `tally replay` can re-publish as is; else
`{"base64": ...}` with the exact bytes; or, when the body would pass
`MAX_DEAD_LETTER_BYTES`, `{"truncated": <text of the first bytes>, "bytes": <size>,
"sha256": <hex digest>}` (never replayed).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from tally_contracts.topics import dlq
from tally_messaging.outbox import OutboxRow

if TYPE_CHECKING:
    from tally_messaging.transaction import RawRecord

MAX_DEAD_LETTER_BYTES = 256 * 1024
"""A published dead letter is at most this many bytes (the whole JSON body): far below
Kafka's 1 MB default, so a hostile message cannot make a dead letter Kafka refuses."""

_MAX_KEY_BYTES = 1024
"""A longer key is kept as its digest, in the dead letter's key and in its body."""
_NOT_CLEAN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(data: bytes) -> str | None:
    """`data` as text when it is UTF-8 without NUL or other control characters, else None."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return None
    return None if _NOT_CLEAN_TEXT.search(text) else text


def encode_bytes(data: bytes) -> str | dict[str, str]:
    """Clean text as is; anything else as base64, so no byte is lost or refused."""
    text = clean_text(data)
    return text if text is not None else {"base64": base64.b64encode(data).decode()}


def dead_letter_key(record: RawRecord) -> str:
    """The dead letter's Kafka key: the original key when clean text, else its hex."""
    if record.key is None:
        return f"{record.partition}/{record.offset}"
    if len(record.key) > _MAX_KEY_BYTES:
        return "sha256:" + hashlib.sha256(record.key).hexdigest()
    text = clean_text(record.key)
    return text if text is not None else "hex:" + record.key.hex()


def dead_letter_row(record: RawRecord, error: str, consumer: str) -> OutboxRow:
    body: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": _body_key(record.key),
        "consumer": consumer,
        "error": error[:4000],
        "failed_at": dt.datetime.now(dt.UTC).isoformat(),
        "raw": encode_bytes(record.value),
    }
    payload = _encode(body)
    if len(payload) > MAX_DEAD_LETTER_BYTES:
        payload = _truncated(body, record.value)
    return OutboxRow(dlq(record.topic), dead_letter_key(record), "DeadLetter", payload)


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def _truncated(body: dict[str, Any], value: bytes) -> bytes:
    """The body with `raw` cut to a prefix that keeps the encoded whole under the cap.

    Escaping makes the encoded size of a prefix unknown in advance, so the prefix
    shrinks in proportion to its overshoot until the whole fits (two or three rounds)."""
    raw: dict[str, Any] = {"truncated": "", "bytes": len(value), "sha256": hashlib.sha256(value).hexdigest()}
    body = {**body, "raw": raw}
    room = MAX_DEAD_LETTER_BYTES - len(_encode(body))
    keep = max(room, 0)
    while True:
        raw["truncated"] = value[:keep].decode(errors="replace")
        payload = _encode(body)
        if len(payload) <= MAX_DEAD_LETTER_BYTES or keep == 0:
            return payload
        encoded = len(payload) - (MAX_DEAD_LETTER_BYTES - room)
        keep = max(keep * room // encoded - 1, 0)


def _body_key(key: bytes | None) -> str | dict[str, str] | None:
    if key is None:
        return None
    if len(key) > _MAX_KEY_BYTES:
        return {"sha256": hashlib.sha256(key).hexdigest(), "bytes": str(len(key))}
    return encode_bytes(key)
