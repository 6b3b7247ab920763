"""Business dates: the window every date of a command, a usage or a bill run falls in.

Dates outside it are typos or hostile input (9999-12-15, 0001-01-01): they would open
invoices for the year 2999 or overflow `date` arithmetic (year 10000) in a handler.
They are refused where the message is parsed, with an error that names the field.
Dates a service derives (the end of a billing period that starts on the last day of
the window) may run past `LATEST_BUSINESS_DATE` and are not checked.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AwareDatetime, Field

EARLIEST_BUSINESS_DATE = dt.date(2000, 1, 1)
"""First date accepted (inclusive) in a command, a usage or an envelope's occurred_at."""

LATEST_BUSINESS_DATE = dt.date(2099, 12, 31)
"""Last date accepted (inclusive) in a command, a usage or an envelope's occurred_at."""


def is_business_date(day: dt.date) -> bool:
    """True when `day` is inside [EARLIEST_BUSINESS_DATE, LATEST_BUSINESS_DATE]."""
    return EARLIEST_BUSINESS_DATE <= day <= LATEST_BUSINESS_DATE


FIRST_BUSINESS_INSTANT = dt.datetime.combine(EARLIEST_BUSINESS_DATE, dt.time(), dt.UTC)
"""2000-01-01T00:00:00Z: the first instant accepted."""

END_OF_BUSINESS_INSTANTS = dt.datetime.combine(LATEST_BUSINESS_DATE + dt.timedelta(days=1), dt.time(), dt.UTC)
"""2100-01-01T00:00:00Z: the first instant past the window (excluded)."""

BusinessDate = Annotated[dt.date, Field(ge=EARLIEST_BUSINESS_DATE, le=LATEST_BUSINESS_DATE)]
"""A date (YYYY-MM-DD) inside the business window (checked by pydantic-core, on the hot path)."""

BusinessInstant = Annotated[AwareDatetime, Field(ge=FIRST_BUSINESS_INSTANT, lt=END_OF_BUSINESS_INSTANTS)]
"""An aware instant whose UTC date is inside the business window (offsets compared exactly)."""

__all__ = [
    "EARLIEST_BUSINESS_DATE",
    "END_OF_BUSINESS_INSTANTS",
    "FIRST_BUSINESS_INSTANT",
    "LATEST_BUSINESS_DATE",
    "BusinessDate",
    "BusinessInstant",
    "is_business_date",
]
