"""Billing periods: a customer's period starts on its `billing_day` (1–28) and ends the day
before the same day next month; a day belongs to exactly one period."""

from __future__ import annotations

import datetime as dt
import functools

from invoicing.errors import out_of_range
from tally_contracts import DomainError


def add_months(day: dt.date, months: int) -> dt.date:
    """Same day-of-month `months` later; only used with days 1–28, which every month has."""
    index = day.year * 12 + day.month - 1 + months
    try:
        return day.replace(year=index // 12, month=index % 12 + 1)
    except ValueError:  # year 0 or 10000
        raise out_of_range(day) from None


@functools.lru_cache(maxsize=4096)  # usage asks for the same few days thousands of times
def period_of(day: dt.date, billing_day: int) -> tuple[dt.date, dt.date]:
    """(first day, last day) of the billing period containing `day`."""
    try:
        start = (
            day.replace(day=billing_day)
            if day.day >= billing_day
            else add_months(day, -1).replace(day=billing_day)
        )
        return start, add_months(start, 1) - dt.timedelta(days=1)  # add_months(start, 1) ≥ 0001-01-29
    except DomainError:
        raise out_of_range(day) from None


def next_period(period_end: dt.date, billing_day: int) -> tuple[dt.date, dt.date]:
    if period_end == dt.date.max:
        raise out_of_range(period_end)
    return period_of(period_end + dt.timedelta(days=1), billing_day)
