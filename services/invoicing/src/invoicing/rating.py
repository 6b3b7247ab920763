"""Rating and aggregating usage: the price a usage is billed at, the line it goes on, and
the running sums that refuse a usage or charge taking an open invoice past a cap."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact, InvalidOperation, localcontext

from invoicing.errors import over_total_cap
from tally_contracts import DomainError, Money
from tally_contracts.invoicing import Price
from tally_contracts.money import MAX_ABS_AMOUNT, within_total_limit

MAX_LINE_QUANTITY = MAX_ABS_AMOUNT
"""A line's quantity is a `StrictDecimal` on the wire (Line.quantity): below 10^15."""

UNIT_PRICE_PLACES = 12
"""Decimal places of the informational unit price of a usage line."""

EXACT = Context(prec=100, traps=[Inexact, InvalidOperation])
"""Usage arithmetic, exact: a quantity (27 digits) × a price (27 digits), and sums of them up
to 10^18, never reach 100 digits. Decimal's default 28 digits would round before the one
rounding at close, and could turn a value just under a half cent into a tie."""


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
            raise DomainError(
                "currency_mismatch",
                f"usage rated in {amount.currency} for a customer invoiced in {currency}; rate it in {currency}",
            )
        unit_price = informational_unit_price(amount.amount, quantity)
        return RatedUsage(service, unit, destination, quantity, amount.amount, unit_price)
    price = price_list.price(service, unit, destination, currency)
    if price is None:
        raise DomainError(
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
            raise DomainError(
                "quantity_over_cap",
                f"quantity: this usage would bring line {line_id} of invoice {self.invoice_id} to"
                f" {quantity:f} {rated.unit}, not below the cap of {MAX_LINE_QUANTITY:,}; send it in a"
                " larger unit",
            )
        if not within_total_limit(amount):
            raise over_total_cap(
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
            raise over_total_cap(
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

    Raises DomainError, changing nothing, when the usage would take its invoice or line
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
