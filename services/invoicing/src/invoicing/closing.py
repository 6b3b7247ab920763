"""What an invoice closes with: a period invoice at its bill run, a regeneration of a voided
invoice. Pure: the invoice and what is billed on it in, the lines and subtotal out; a line
or subtotal that breaks a rule raises DomainError and nothing is closed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from invoicing.invoices import (
    InvoiceState,
    one_time_line,
    regenerated_invoice_id,
    regenerated_lines,
    require_status,
    subtotal,
    usage_line,
)
from invoicing.periods import next_period
from invoicing.rating import UsageDelta
from invoicing.subscriptions import Subscription, subscription_lines
from tally_contracts import DomainError, Line, Money


@dataclass(frozen=True, slots=True)
class PendingCharge:
    """A one-time charge that waits for the customer's next invoice to close."""

    charge_id: str
    description: str
    amount: Money


@dataclass(frozen=True, slots=True)
class Closing:
    """An invoice to close (status `closed`) with these lines and their rounded subtotal."""

    invoice: InvoiceState
    lines: tuple[Line, ...]
    subtotal: Money


def closing(invoice: InvoiceState, lines: Iterable[Line]) -> Closing:
    """`invoice` closed with `lines`; refused (total_over_cap) when their sum reaches the cap."""
    kept = tuple(lines)
    return Closing(replace(invoice, status="closed"), kept, subtotal(kept, invoice.currency))


def check_closable(invoice: InvoiceState) -> None:
    """Only a pending invoice is closed on demand (CloseInvoice)."""
    if invoice.status != "pending":
        raise DomainError(
            f"invoice_{invoice.status}", f"invoice {invoice.invoice_id} is already {invoice.status}"
        )


@dataclass(frozen=True, slots=True)
class PeriodClosing:
    """A period invoice's close, and the next period, whose invoice opens with it."""

    closing: Closing
    next_period: tuple[dt.date, dt.date]


def close_period(
    invoice: InvoiceState,
    billing_day: int,
    usage: Iterable[UsageDelta],
    subscriptions: Iterable[Subscription],
    pending_charges: Sequence[PendingCharge],
) -> PeriodClosing:
    """Close a pending period invoice: subscription lines (prorated), then usage lines
    (rounded once, here), then the pending charges in the order they were added."""
    usage_lines = [usage_line(delta, invoice.currency) for delta in usage]
    fees = subscription_lines(subscriptions, invoice.period_start, invoice.period_end)
    charges = [one_time_line(c.charge_id, c.description, c.amount) for c in pending_charges]
    following = next_period(invoice.period_end, billing_day)
    return PeriodClosing(closing(invoice, [*fees, *usage_lines, *charges]), following)


def regenerate(old: InvoiceState, regeneration: str | None, old_lines: Iterable[Line]) -> Closing:
    """A voided invoice made again, closed at once with its charges (the rules run again for
    adjustments); its id follows from the voided one, so it is made once."""
    require_status(old, ("voided",), "regenerated")
    if regeneration is not None:
        raise DomainError(
            "already_regenerated", f"invoice {old.invoice_id} was already regenerated as {regeneration}"
        )
    invoice = InvoiceState(
        regenerated_invoice_id(old.customer_id, old.invoice_id),
        old.customer_id,
        old.currency,
        "closed",
        old.period_start,
        old.period_end,
        old.invoice_id,
    )
    return closing(invoice, regenerated_lines(old_lines))
