"""The reasons the invoicing domain gives for its calendar and total caps (as `DomainError`)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from tally_contracts import DomainError
from tally_contracts.dates import EARLIEST_BUSINESS_DATE, LATEST_BUSINESS_DATE
from tally_contracts.money import MAX_ABS_TOTAL


def out_of_range(day: dt.date) -> DomainError:
    return DomainError(
        "date_out_of_range",
        f"{day.isoformat()} is too close to the end of the calendar to have a billing period;"
        f" send a date from {EARLIEST_BUSINESS_DATE.isoformat()} to {LATEST_BUSINESS_DATE.isoformat()}",
    )


def over_total_cap(what: str, value: Decimal, currency: str, field_name: str, advice: str) -> DomainError:
    return DomainError(
        "total_over_cap",
        f"{field_name}: this would bring {what} to {value:f} {currency}, not below the cap of"
        f" {MAX_ABS_TOTAL:,} for a sum; {advice}",
    )
