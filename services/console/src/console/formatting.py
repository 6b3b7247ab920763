"""How the pages write amounts and times: money at its currency's minor unit, times in ISO."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from tally_contracts.currencies import MINOR_UNITS
from tally_contracts.money import at_minor_unit


def money(value: Any, currency: str | None = None) -> str:
    """`12.5`, `USD` → `12.50 USD`; a `{"amount", "currency"}` object too; None → `–`.

    Pads to the minor unit, never rounds: an amount with more places keeps them, so the
    page never shows a number the ledger does not hold."""
    if value is None:
        return "–"
    if isinstance(value, dict):
        value, currency = value.get("amount"), value.get("currency")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    code = str(currency or "")
    if code in MINOR_UNITS and amount.is_finite():
        amount = at_minor_unit(amount, code)
    return f"{amount:f} {code}".strip()


def iso_time(value: Any) -> str:
    """An ISO 8601 time in UTC, seconds precision: a datetime, an ISO string or epoch ms."""
    if value is None or value == "":
        return "–"
    if isinstance(value, int | float):
        moment = dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)
    elif isinstance(value, dt.datetime):
        moment = value
    else:
        try:
            moment = dt.datetime.fromisoformat(str(value))
        except ValueError:
            return str(value)
    if moment.tzinfo is None:
        return moment.replace(microsecond=0).isoformat()
    return moment.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def iso_date(value: Any) -> str:
    """An ISO date (`2026-12-01`); a time is cut to its UTC day."""
    if value is None or value == "":
        return "–"
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    text = iso_time(value)
    return text[:10] if len(text) >= 10 and text[4] == "-" else text
