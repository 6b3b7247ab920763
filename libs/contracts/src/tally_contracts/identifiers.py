"""Ids: the limits every id on the wire obeys.

An id is chosen by an upstream system (customer, grant, payment, charge ...) or made by
a service (invoice, application); either way it is stored in PostgreSQL `text`
columns, used as a Kafka key and printed in logs and read-API paths. PostgreSQL
refuses NUL in text and control characters break logs and keys, so an id is 1 to
`MAX_ID_LENGTH` characters with no control character. A service that makes an id
from others (an invoice id from a customer id) keeps it within the same limit, so a
command can name it.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

MAX_ID_LENGTH = 200
"""Longest id accepted, in characters (every id field, and the envelope's customer_id)."""


_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""Unicode category Cc, exactly: U+0000-U+001F (NUL, tab, newline, ...), DEL and U+0080-U+009F."""


def has_control_character(text: str) -> bool:
    """True when `text` holds a control character (Unicode category Cc)."""
    return _CONTROL_CHARACTER.search(text) is not None


def _no_control_character(value: str) -> str:
    if has_control_character(value):
        raise ValueError("must not contain control characters (NUL, tab, newline, ...)")
    return value


Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_LENGTH),
    AfterValidator(_no_control_character),
]
"""An id: 1 to MAX_ID_LENGTH characters, no control character."""


def nul_in_strings(value: object, path: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    """Where the first string (or key) in a JSON-like value that holds NUL is, else None.

    PostgreSQL refuses NUL in `text` and `jsonb`, so free text (a reason, a description)
    may hold newlines or tabs but never NUL; `parse_message` refuses it anywhere.
    """
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                return (*path, key)
            found = nul_in_strings(item, (*path, key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for n, item in enumerate(value):
            found = nul_in_strings(item, (*path, n))
            if found is not None:
                return found
    return None


__all__ = ["MAX_ID_LENGTH", "Identifier", "has_control_character", "nul_in_strings"]
