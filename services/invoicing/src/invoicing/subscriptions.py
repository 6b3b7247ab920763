"""Subscriptions and their prorated fee for a period."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from tally_contracts import DomainError, Line, Money
from tally_contracts.currencies import minor_unit


@dataclass(frozen=True, slots=True)
class Subscription:
    subscription_id: str
    name: str
    fee: Money
    starts_on: dt.date
    ends_on: dt.date | None = None


def prorated_fee(sub: Subscription, period_start: dt.date, period_end: dt.date) -> Money | None:
    """The subscription's charge for the period, or None when it is not active in it."""
    first = max(sub.starts_on, period_start)
    last = min(sub.ends_on or period_end, period_end)
    if last < first:
        return None
    active = (last - first).days + 1
    days = (period_end - period_start).days + 1
    if active == days:
        return sub.fee.rounded()
    return share_of(sub.fee, active, days)


def share_of(amount: Money, part: int, whole: int) -> Money:
    """amount × part ÷ whole, rounded half-even to the minor unit, exactly.

    Exact because a tie must be seen as a tie: with Decimal's 28 digits, 1/31 is rounded
    before the multiplication, and 2287651677506.237 × 5/31 (= 368976077017.135 exactly)
    came out as .13 instead of .14."""
    places = minor_unit(amount.currency)
    minor_units = round(Fraction(amount.amount) * part / whole * 10**places)  # Fraction: half to even
    return Money.computed(Decimal(minor_units).scaleb(-places), amount.currency)


def subscription_lines(
    subs: Iterable[Subscription], period_start: dt.date, period_end: dt.date
) -> list[Line]:
    lines = []
    for sub in sorted(subs, key=lambda s: s.subscription_id):
        fee = prorated_fee(sub, period_start, period_end)
        if fee is None:
            continue
        partial = fee != sub.fee.rounded()
        lines.append(
            Line(
                line_id=f"subscription:{sub.subscription_id}",
                kind="subscription",
                description=f"{sub.name} {period_start.isoformat()} – {period_end.isoformat()}"
                + (" (prorated)" if partial else ""),
                amount=fee,
                subscription_id=sub.subscription_id,
            )
        )
    return lines


def cancelled(sub: Subscription, ends_on: dt.date) -> Subscription:
    """The subscription ending on `ends_on` (its last day billed)."""
    if ends_on < sub.starts_on:
        raise DomainError(
            "ends_before_start", f"ends_on {ends_on} is before the subscription starts ({sub.starts_on})"
        )
    return Subscription(sub.subscription_id, sub.name, sub.fee, sub.starts_on, ends_on)
