"""The invoicing domain: billing periods, rating, aggregation, proration, closing and
finalising invoices. Pure: values in, values out; no I/O.

Rules this module enforces (documented for billing teams):

- **Periods.** A customer's period starts on its `billing_day` (1–28) and ends the day
  before the same day next month. A day belongs to exactly one period.
- **Rating.** Usage with an `amount` is pre-rated and taken as is (its currency must be
  the customer's). Otherwise the price list rates it: same service, unit and currency;
  among prices whose `destination_prefix` starts the destination (no prefix matches
  everything), the longest prefix wins. No price and no amount: the usage is refused.
- **Aggregation.** Usage adds to one line per (service, unit, destination, late) of the
  period's invoice. Quantities and unrounded amounts are summed; the line amount is
  rounded (half-even, minor unit) once, when the invoice closes. So the order and
  batching of usage never change a total.
- **Late usage.** Usage for a period whose invoice is already closed goes on the
  customer's pending invoice (opened for the period after the newest closed one if
  needed), on a line marked `late`.
- **Proration.** A subscription's line for a period is fee × days active in the period ÷
  days in the period, both ends inclusive, rounded half-even. A full period is the fee.
- **Totals.** subtotal = sum of the rounded charge lines; total = subtotal + adjustment
  lines from the rules service (it may be negative).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from tally_contracts import Line, Money
from tally_contracts.invoicing import Price


class InvoicingError(Exception):
    """A business rule was broken; `code` is stable, `reason` is for a person."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


# -- periods -------------------------------------------------------------------------


def add_months(day: dt.date, months: int) -> dt.date:
    """Same day-of-month `months` later; only used with days 1–28, which every month has."""
    index = day.year * 12 + day.month - 1 + months
    return day.replace(year=index // 12, month=index % 12 + 1)


@functools.lru_cache(maxsize=4096)  # usage asks for the same few days thousands of times
def period_of(day: dt.date, billing_day: int) -> tuple[dt.date, dt.date]:
    """(first day, last day) of the billing period containing `day`."""
    start = (
        day.replace(day=billing_day)
        if day.day >= billing_day
        else add_months(day, -1).replace(day=billing_day)
    )
    return start, add_months(start, 1) - dt.timedelta(days=1)


def next_period(period_end: dt.date, billing_day: int) -> tuple[dt.date, dt.date]:
    return period_of(period_end + dt.timedelta(days=1), billing_day)


def pending_invoice_id(customer_id: str, period_start: dt.date) -> str:
    return f"inv-{customer_id}-{period_start.isoformat()}"


# -- rating --------------------------------------------------------------------------


def find_price(
    prices: Iterable[Price], service: str, unit: str, destination: str | None, currency: str
) -> Price | None:
    """The matching price with the longest destination prefix (None = matches everything)."""
    best: Price | None = None
    best_length = -1
    for price in prices:
        if (price.service, price.unit, price.currency) != (service, unit, currency):
            continue
        prefix = price.destination_prefix or ""
        if prefix and not (destination or "").startswith(prefix):
            continue
        if len(prefix) > best_length:
            best, best_length = price, len(prefix)
    return best


@dataclass(frozen=True, slots=True)
class RatedUsage:
    service: str
    unit: str
    destination: str | None
    quantity: Decimal
    amount: Decimal  # unrounded, in the customer's currency
    unit_price: Decimal | None


class PriceList:
    """A price list whose lookups are remembered: a batch of usage asks the same few
    (service, unit, destination, currency) questions thousands of times."""

    def __init__(self, price_list_id: str, prices: Iterable[Price]) -> None:
        self.price_list_id = price_list_id
        self.prices = tuple(prices)
        self._found: dict[tuple[str, str, str | None, str], Price | None] = {}

    def price(self, service: str, unit: str, destination: str | None, currency: str) -> Price | None:
        key = (service, unit, destination, currency)
        try:
            return self._found[key]
        except KeyError:
            found = self._found[key] = find_price(self.prices, service, unit, destination, currency)
            return found


def rate_usage(
    *,
    service: str,
    unit: str,
    destination: str | None,
    quantity: Decimal,
    amount: Money | None,
    currency: str,
    price_list: PriceList,
) -> RatedUsage:
    if amount is not None:
        if amount.currency != currency:
            raise InvoicingError(
                "currency_mismatch",
                f"usage rated in {amount.currency} for a customer invoiced in {currency}; rate it in {currency}",
            )
        unit_price = amount.amount / quantity if quantity else None
        return RatedUsage(service, unit, destination, quantity, amount.amount, unit_price)
    price = price_list.price(service, unit, destination, currency)
    if price is None:
        raise InvoicingError(
            "no_price",
            f"no price for {service}/{unit} to destination {destination or '(none)'} in {currency} "
            f"in price list {price_list.price_list_id!r}, and the usage has no amount; add a price or send a pre-rated amount",
        )
    return RatedUsage(service, unit, destination, quantity, quantity * price.unit_price, price.unit_price)


def usage_line_id(service: str, unit: str, destination: str | None, late: bool) -> str:
    return f"usage:{service}:{unit}:{destination or '*'}{':late' if late else ''}"


@dataclass(slots=True)
class UsageDelta:
    """What a batch adds to one usage line."""

    invoice_id: str
    line_id: str
    service: str
    unit: str
    destination: str | None
    late: bool
    quantity: Decimal = Decimal(0)
    amount: Decimal = Decimal(0)
    unit_price: Decimal | None = None


def fold_usage(
    deltas: dict[tuple[str, str], UsageDelta], invoice_id: str, rated: RatedUsage, late: bool
) -> None:
    """Add one rated usage to the batch's per-line deltas (one upsert per line per batch)."""
    line_id = usage_line_id(rated.service, rated.unit, rated.destination, late)
    delta = deltas.get((invoice_id, line_id))
    if delta is None:
        delta = deltas[(invoice_id, line_id)] = UsageDelta(
            invoice_id, line_id, rated.service, rated.unit, rated.destination, late
        )
    delta.quantity += rated.quantity
    delta.amount += rated.amount
    if rated.unit_price is not None:
        delta.unit_price = rated.unit_price


# -- subscriptions -------------------------------------------------------------------


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
    return (sub.fee * (Decimal(active) / Decimal(days))).rounded()


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


# -- invoices ------------------------------------------------------------------------

CHARGE_KINDS = ("subscription", "usage", "one_time")


@dataclass(frozen=True, slots=True)
class InvoiceState:
    invoice_id: str
    customer_id: str
    currency: str
    status: str  # pending | closed | posted | paid | voided
    period_start: dt.date
    period_end: dt.date
    regenerated_from: str | None = None
    lines: tuple[Line, ...] = field(default=())


def usage_line(delta_line: UsageDelta, currency: str) -> Line:
    destination = f" to {delta_line.destination}" if delta_line.destination else ""
    late = " (late usage from an earlier period)" if delta_line.late else ""
    return Line(
        line_id=delta_line.line_id,
        kind="usage",
        description=f"{delta_line.service}{destination}: {delta_line.quantity.normalize():f} {delta_line.unit}{late}",
        amount=Money.computed(delta_line.amount, currency).rounded(),
        service=delta_line.service,
        unit=delta_line.unit,
        quantity=delta_line.quantity,
        unit_price=delta_line.unit_price,
        destination=delta_line.destination,
        late=delta_line.late,
    )


def subtotal(lines: Iterable[Line], currency: str) -> Money:
    total = Money.zero(currency)
    for line in lines:
        total = total + line.amount
    return total.rounded()


def require_status(invoice: InvoiceState, allowed: tuple[str, ...], action: str) -> None:
    if invoice.status not in allowed:
        wanted = " or ".join(allowed)
        raise InvoicingError(
            f"invoice_{invoice.status}",
            f"invoice {invoice.invoice_id} is {invoice.status}; only a {wanted} invoice can be {action}",
        )


def finalized_total(charge_lines: Iterable[Line], adjustments: Iterable[Line], currency: str) -> Money:
    return subtotal([*charge_lines, *adjustments], currency)


def regenerated_lines(lines: Iterable[Line]) -> list[Line]:
    """A regenerated invoice keeps the charges; the rules run again for adjustments."""
    return [line for line in lines if line.kind in CHARGE_KINDS]


def one_time_line(charge_id: str, description: str, amount: Money) -> Line:
    return Line(
        line_id=f"charge:{charge_id}", kind="one_time", description=description, amount=amount.rounded()
    )
