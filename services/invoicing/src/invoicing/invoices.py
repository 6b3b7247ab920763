"""Invoices: their ids, the lines they close with, totals, and the checks on their status
and currency."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from invoicing.errors import over_total_cap
from invoicing.rating import (
    EXACT,
    MAX_LINE_QUANTITY,
    UNIT_PRICE_PLACES,
    InvoiceSums,
    UsageDelta,
    informational_unit_price,
)
from invoicing.subscriptions import Subscription, prorated_fee
from tally_contracts import DomainError, Line, Money
from tally_contracts.money import MAX_ABS_AMOUNT, within_total_limit

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
        raise DomainError(
            "quantity_over_cap",
            f"quantity: line {delta_line.line_id} of invoice {delta_line.invoice_id} adds up to"
            f" {delta_line.quantity:f} {delta_line.unit}, not below the cap of {MAX_LINE_QUANTITY:,}",
        )
    amount = Money.computed(delta_line.amount, currency).rounded()
    if not within_total_limit(amount.amount):
        raise over_total_cap(
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
        raise over_total_cap(
            "the invoice", total.amount, currency, "subtotal", "split the charges over several invoices"
        )
    return total


def require_status(invoice: InvoiceState, allowed: tuple[str, ...], action: str) -> None:
    if invoice.status not in allowed:
        wanted = " or ".join(allowed)
        raise DomainError(
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
        raise DomainError(
            "currency_change_with_open_invoices",
            f"customer has {open_invoices} pending or closed invoice(s) in {current}; bill them first",
        )


def check_same_currency(what: str, amount: Money, customer_currency: str) -> None:
    if amount.currency != customer_currency:
        raise DomainError(
            "currency_mismatch",
            f"{what} is in {amount.currency} but the customer is invoiced in {customer_currency};"
            f" send it in {customer_currency}",
        )


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
