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
  period's invoice. Quantities and unrounded amounts are summed exactly; the line amount is
  rounded (half-even, minor unit) once, when the invoice closes. So the order and
  batching of usage never change a total.
- **Usage ids.** Each usage event (by its message id) is on exactly one usage line: the
  line it was folded into. A regeneration takes the usage of the voided invoice with it.
- **Late usage.** Usage for a period whose invoice is already closed goes on the
  customer's pending invoice (opened for the period after the newest closed one if
  needed), on a line marked `late`.
- **Proration.** A subscription's line for a period is fee × days active in the period ÷
  days in the period, both ends inclusive, computed exactly and rounded half-even to the
  minor unit. A full period is the fee.
- **Unit price shown.** Usage is billed by its amount: pre-rated usage by the amount sent,
  the rest by quantity × price; the line amount is their sum, rounded half-even to the
  minor unit at close. The unit price on a usage line is informational only: the line's
  unrounded amount ÷ its quantity, rounded half-even to 12 decimal places (the price
  itself for usage rated by one price; for pre-rated usage 1.00 for 3 units, 0.333333333333).
  None when the quotient is not below 10^15; for a quantity of 0, the last price rated.
- **Totals.** subtotal = sum of the rounded charge lines; total = subtotal + adjustment
  lines from the rules service (it may be negative). A sum stays below `MAX_ABS_TOTAL` and
  a line's quantity below `MAX_ABS_AMOUNT`: the usage, charge or subscription that would
  take an open invoice past them is refused where it is added, and an invoice that would
  still pass them at close is not closed (the bill run reports it and goes on).
- **Invoice ids.** `inv-` + a UUID 5 of (kind, customer, charge id / period start / voided
  invoice): unique by construction across customers, kinds and periods, and always 40
  characters, so a command can name it.
- **Dates.** Date arithmetic near the ends of the calendar is refused with
  `date_out_of_range`, never raised as a bug.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact, InvalidOperation, localcontext
from fractions import Fraction

from tally_contracts import Line, Money
from tally_contracts.currencies import minor_unit
from tally_contracts.dates import EARLIEST_BUSINESS_DATE, LATEST_BUSINESS_DATE
from tally_contracts.invoicing import Price
from tally_contracts.money import MAX_ABS_AMOUNT, MAX_ABS_TOTAL, within_total_limit

MAX_LINE_QUANTITY = MAX_ABS_AMOUNT
"""A line's quantity is a `StrictDecimal` on the wire (Line.quantity): below 10^15."""

UNIT_PRICE_PLACES = 12
"""Decimal places of the informational unit price of a usage line."""

EXACT = Context(prec=100, traps=[Inexact, InvalidOperation])
"""Usage arithmetic, exact: a quantity (27 digits) × a price (27 digits), and sums of them up
to 10^18, never reach 100 digits. Decimal's default 28 digits would round before the one
rounding at close, and could turn a value just under a half cent into a tie."""


class InvoicingError(Exception):
    """A business rule was broken; `code` is stable, `reason` is for a person."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


# -- periods -------------------------------------------------------------------------


def _out_of_range(day: dt.date) -> InvoicingError:
    return InvoicingError(
        "date_out_of_range",
        f"{day.isoformat()} is too close to the end of the calendar to have a billing period;"
        f" send a date from {EARLIEST_BUSINESS_DATE.isoformat()} to {LATEST_BUSINESS_DATE.isoformat()}",
    )


def add_months(day: dt.date, months: int) -> dt.date:
    """Same day-of-month `months` later; only used with days 1–28, which every month has."""
    index = day.year * 12 + day.month - 1 + months
    try:
        return day.replace(year=index // 12, month=index % 12 + 1)
    except ValueError:  # year 0 or 10000
        raise _out_of_range(day) from None


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
    except InvoicingError:
        raise _out_of_range(day) from None


def next_period(period_end: dt.date, billing_day: int) -> tuple[dt.date, dt.date]:
    if period_end == dt.date.max:
        raise _out_of_range(period_end)
    return period_of(period_end + dt.timedelta(days=1), billing_day)


# -- invoice ids ---------------------------------------------------------------------

INVOICE_ID_NAMESPACE = uuid.UUID("5b0f2a52-6f53-4d0e-9a55-7a11e0000001")


def invoice_id(kind: str, customer_id: str, key: str) -> str:
    """`inv-` + UUID 5 of (kind, customer, key): JSON keeps the parts apart whatever they hold,
    so two different triples never share an id (a customer id may contain any separator)."""
    name = json.dumps([kind, customer_id, key], ensure_ascii=False)
    return f"inv-{uuid.uuid5(INVOICE_ID_NAMESPACE, name)}"


def period_invoice_id(customer_id: str, period_start: dt.date) -> str:
    return invoice_id("period", customer_id, period_start.isoformat())


def one_time_invoice_id(customer_id: str, charge_id: str) -> str:
    return invoice_id("one_time", customer_id, charge_id)


def regenerated_invoice_id(customer_id: str, voided_invoice_id: str) -> str:
    return invoice_id("regenerated", customer_id, voided_invoice_id)


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
        unit_price = informational_unit_price(amount.amount, quantity)
        return RatedUsage(service, unit, destination, quantity, amount.amount, unit_price)
    price = price_list.price(service, unit, destination, currency)
    if price is None:
        raise InvoicingError(
            "no_price",
            f"no price for {service}/{unit} to destination {destination or '(none)'} in {currency} "
            f"in price list {price_list.price_list_id!r}, and the usage has no amount; add a price or send a pre-rated amount",
        )
    rated = EXACT.multiply(quantity, price.unit_price)
    return RatedUsage(service, unit, destination, quantity, rated, price.unit_price)


def informational_unit_price(amount: Decimal, quantity: Decimal) -> Decimal | None:
    """amount ÷ quantity rounded half-even to 12 places: shown on pre-rated usage, never used to
    bill it. None when the quantity is 0 or the quotient is not below 10^15 (a price per
    0.000000000001 unit)."""
    if not quantity:
        return None
    with localcontext() as context:
        context.prec = 60  # 10^15 ÷ 10^-12 needs 27 digits before the point, then 12 after
        price = (amount / quantity).quantize(Decimal(1).scaleb(-UNIT_PRICE_PLACES), ROUND_HALF_EVEN)
    if price.copy_abs() >= MAX_ABS_AMOUNT:
        return None
    return price.normalize() if price else Decimal(0)


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


def _over_total_cap(what: str, value: Decimal, currency: str, field_name: str, advice: str) -> InvoicingError:
    return InvoicingError(
        "total_over_cap",
        f"{field_name}: this would bring {what} to {value:f} {currency}, not below the cap of"
        f" {MAX_ABS_TOTAL:,} for a sum; {advice}",
    )


@dataclass(slots=True)
class InvoiceSums:
    """An open invoice's running sums (usage lines, subscriptions, pending charges), so the
    usage or charge that would take it past a cap is refused where it is added, not when a
    close makes an invoice the other services cannot read."""

    invoice_id: str
    currency: str
    total: Decimal = Decimal(0)
    line_quantities: dict[str, Decimal] = field(default_factory=dict)
    line_amounts: dict[str, Decimal] = field(default_factory=dict)

    def add_usage(self, line_id: str, rated: RatedUsage) -> None:
        """Count one usage on `line_id`; nothing changes when it is refused."""
        quantity = EXACT.add(self.line_quantities.get(line_id, Decimal(0)), rated.quantity)
        amount = EXACT.add(self.line_amounts.get(line_id, Decimal(0)), rated.amount)
        total = EXACT.add(self.total, rated.amount)
        if quantity.copy_abs() >= MAX_LINE_QUANTITY:
            raise InvoicingError(
                "quantity_over_cap",
                f"quantity: this usage would bring line {line_id} of invoice {self.invoice_id} to"
                f" {quantity:f} {rated.unit}, not below the cap of {MAX_LINE_QUANTITY:,}; send it in a"
                " larger unit",
            )
        if not within_total_limit(amount):
            raise _over_total_cap(
                f"line {line_id} of invoice {self.invoice_id}",
                amount,
                self.currency,
                "amount",
                "check the usage",
            )
        self.add_amount(rated.amount, "amount", total_after=total)
        self.line_quantities[line_id], self.line_amounts[line_id] = quantity, amount

    def add_amount(self, amount: Decimal, field_name: str, *, total_after: Decimal | None = None) -> None:
        """Count a charge, a fee or a usage amount on the invoice's total; refused past the cap."""
        total = EXACT.add(self.total, amount) if total_after is None else total_after
        if not within_total_limit(total):
            raise _over_total_cap(
                f"the total of open invoice {self.invoice_id}",
                total,
                self.currency,
                field_name,
                "bill the open invoice first (RunBilling or CloseInvoice), then send it again",
            )
        self.total = total


def fold_usage(
    deltas: dict[tuple[str, str], UsageDelta], sums: InvoiceSums, rated: RatedUsage, late: bool
) -> str:
    """Add one rated usage to the batch's per-line deltas (one upsert per line per batch);
    returns the id of the line it went on.

    Raises InvoicingError, changing nothing, when the usage would take its invoice or line
    past a cap."""
    line_id = usage_line_id(rated.service, rated.unit, rated.destination, late)
    sums.add_usage(line_id, rated)
    delta = deltas.get((sums.invoice_id, line_id))
    if delta is None:
        delta = deltas[(sums.invoice_id, line_id)] = UsageDelta(
            sums.invoice_id, line_id, rated.service, rated.unit, rated.destination, late
        )
    delta.quantity = EXACT.add(delta.quantity, rated.quantity)
    delta.amount = EXACT.add(delta.amount, rated.amount)
    if rated.unit_price is not None:
        delta.unit_price = rated.unit_price
    return line_id


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
    """The line a usage aggregate closes as; its unit price is informational (module rules)."""
    if delta_line.quantity.copy_abs() >= MAX_LINE_QUANTITY:
        raise InvoicingError(
            "quantity_over_cap",
            f"quantity: line {delta_line.line_id} of invoice {delta_line.invoice_id} adds up to"
            f" {delta_line.quantity:f} {delta_line.unit}, not below the cap of {MAX_LINE_QUANTITY:,}",
        )
    amount = Money.computed(delta_line.amount, currency).rounded()
    if not within_total_limit(amount.amount):
        raise _over_total_cap(
            f"line {delta_line.line_id} of invoice {delta_line.invoice_id}",
            amount.amount,
            currency,
            "amount",
            "void or correct the usage",
        )
    unit_price = (
        informational_unit_price(delta_line.amount, delta_line.quantity)
        if delta_line.quantity
        else delta_line.unit_price
    )
    if unit_price is not None and not _is_wire_decimal(unit_price):  # stored before the rule
        unit_price = None
    destination = f" to {delta_line.destination}" if delta_line.destination else ""
    late = " (late usage from an earlier period)" if delta_line.late else ""
    return Line(
        line_id=delta_line.line_id,
        kind="usage",
        description=f"{delta_line.service}{destination}: {delta_line.quantity.normalize():f} {delta_line.unit}{late}",
        amount=amount,
        service=delta_line.service,
        unit=delta_line.unit,
        quantity=delta_line.quantity,
        unit_price=unit_price,
        destination=delta_line.destination,
        late=delta_line.late,
    )


def _is_wire_decimal(value: Decimal) -> bool:
    """True when `value` fits a StrictDecimal: below 10^15, at most 12 decimal places."""
    exponent = value.as_tuple().exponent
    places = -exponent if isinstance(exponent, int) else 0
    return value.copy_abs() < MAX_ABS_AMOUNT and places <= UNIT_PRICE_PLACES


def subtotal(lines: Iterable[Line], currency: str) -> Money:
    """The rounded sum of `lines`; refused (total_over_cap) when it is not below the sum cap."""
    total = Money.zero(currency)
    for line in lines:
        total = total + line.amount
    total = total.rounded()
    if not within_total_limit(total.amount):
        raise _over_total_cap(
            "the invoice", total.amount, currency, "subtotal", "split the charges over several invoices"
        )
    return total


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


# -- command decisions -------------------------------------------------------------


def check_currency_change(current: str | None, wanted: str, open_invoices: int) -> None:
    """A customer's currency changes only when no pending or closed invoice is in the old one."""
    if current is not None and current != wanted and open_invoices:
        raise InvoicingError(
            "currency_change_with_open_invoices",
            f"customer has {open_invoices} pending or closed invoice(s) in {current}; bill them first",
        )


def check_same_currency(what: str, amount: Money, customer_currency: str) -> None:
    if amount.currency != customer_currency:
        raise InvoicingError(
            "currency_mismatch",
            f"{what} is in {amount.currency} but the customer is invoiced in {customer_currency};"
            f" send it in {customer_currency}",
        )


def cancelled(sub: Subscription, ends_on: dt.date) -> Subscription:
    """The subscription ending on `ends_on` (its last day billed)."""
    if ends_on < sub.starts_on:
        raise InvoicingError(
            "ends_before_start", f"ends_on {ends_on} is before the subscription starts ({sub.starts_on})"
        )
    return Subscription(sub.subscription_id, sub.name, sub.fee, sub.starts_on, ends_on)


def open_invoice_sums(
    invoice: InvoiceState,
    usage: Iterable[UsageDelta],
    subscriptions: Iterable[Subscription],
    pending_charges: Iterable[Money],
) -> InvoiceSums:
    """What an open invoice would add up to if it closed now (pending charges go on the next
    invoice that closes, so each open invoice counts them)."""
    sums = InvoiceSums(invoice.invoice_id, invoice.currency)
    for delta in usage:
        sums.line_quantities[delta.line_id] = delta.quantity
        sums.line_amounts[delta.line_id] = delta.amount
        sums.total = EXACT.add(sums.total, delta.amount)
    for sub in subscriptions:
        fee = prorated_fee(sub, invoice.period_start, invoice.period_end)
        sums.total = EXACT.add(sums.total, fee.amount if fee is not None else Decimal(0))
    for charge in pending_charges:
        sums.total = EXACT.add(sums.total, charge.amount)
    return sums
