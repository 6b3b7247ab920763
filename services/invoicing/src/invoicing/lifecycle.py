"""Opening and closing invoices, shared by the command, usage and bill-run handlers."""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from invoicing.accounts import Customer
from invoicing.closing import Closing, close_period
from invoicing.invoices import InvoiceState, period_invoice_id
from invoicing.store import InvoiceRow, InvoicingStore
from tally_contracts import DomainError, Envelope, MessageData
from tally_contracts.invoicing import InvoiceClosed, InvoiceCreated, InvoiceStatus, InvoiceStatusChanged
from tally_messaging import Transaction


class Publisher(Protocol):
    def publish(self, cause: Envelope[Any], data: MessageData, *, customer_id: str | None = None) -> Any: ...


class HeldEvents:
    """Events held back until their part of a bill run is saved: a part that fails is rolled
    back to its savepoint and publishes nothing."""

    def __init__(self) -> None:
        self._events: list[tuple[Envelope[Any], MessageData, str | None]] = []

    def publish(self, cause: Envelope[Any], data: MessageData, *, customer_id: str | None = None) -> None:
        self._events.append((cause, data, customer_id))

    def release(self, tx: Transaction) -> None:
        for cause, data, customer_id in self._events:
            tx.publish(cause, data, customer_id=customer_id)
        self._events.clear()


async def known_customer(store: InvoicingStore, message: Envelope[Any]) -> Customer:
    customer = await store.customer(message.customer_id or "")
    if customer is None:
        raise DomainError(
            "unknown_customer", f"customer {message.customer_id!r} is not known; send UpsertCustomer first"
        )
    return customer


async def owned_invoice(store: InvoicingStore, invoice_id: str, message: Envelope[Any]) -> InvoiceRow:
    invoice = await store.invoice(invoice_id, for_update=True)
    if invoice is None or (message.customer_id and invoice.customer_id != message.customer_id):
        raise DomainError(
            "unknown_invoice", f"invoice {invoice_id!r} is not known for customer {message.customer_id!r}"
        )
    return invoice


def status_changed(
    out: Publisher, cause: Envelope[Any], invoice: InvoiceState, status: InvoiceStatus
) -> None:
    out.publish(
        cause,
        InvoiceStatusChanged(invoice_id=invoice.invoice_id, status=status),
        customer_id=invoice.customer_id,
    )


async def open_invoice(
    store: InvoicingStore, out: Publisher, cause: Envelope[Any], state: InvoiceState, kind: str
) -> bool:
    """Insert the invoice and announce it; False when its id already existed."""
    if not await store.insert_invoice(state, kind):
        return False
    out.publish(
        cause,
        InvoiceCreated(
            invoice_id=state.invoice_id,
            currency=state.currency,
            status="pending" if state.status == "pending" else "closed",
            period_start=state.period_start,
            period_end=state.period_end,
            regenerated_from=state.regenerated_from,
        ),
        customer_id=state.customer_id,
    )
    return True


async def open_period(
    store: InvoicingStore,
    out: Publisher,
    cause: Envelope[Any],
    customer: Customer,
    start: dt.date,
    end: dt.date,
) -> str:
    """The id of the customer's invoice for the period starting on `start`, opened if needed.

    An insert that finds the period already there answers with that invoice's id (it may
    carry an id of the earlier `inv-{customer}-{date}` scheme); any other failure raises."""
    state = InvoiceState(
        period_invoice_id(customer.customer_id, start),
        customer.customer_id,
        customer.currency,
        "pending",
        start,
        end,
    )
    if await open_invoice(store, out, cause, state, "period"):
        return state.invoice_id
    existing = await store.period_invoice(customer.customer_id, start)
    if existing is None:
        raise RuntimeError(f"invoice {state.invoice_id} exists but is not the period invoice of {start}")
    return existing.invoice_id


async def close_with(store: InvoicingStore, out: Publisher, cause: Envelope[Any], closing: Closing) -> None:
    """Save a decided close (its lines, status and subtotal) and announce it."""
    state = closing.invoice
    await store.save_lines(state.invoice_id, closing.lines)
    await store.close(state.invoice_id, closing.subtotal)
    out.publish(
        cause,
        InvoiceClosed(
            invoice_id=state.invoice_id,
            currency=state.currency,
            lines=list(closing.lines),
            subtotal=closing.subtotal,
            period_start=state.period_start,
            period_end=state.period_end,
            regenerated_from=state.regenerated_from,
        ),
        customer_id=state.customer_id,
    )
    out.publish(
        cause,
        InvoiceStatusChanged(invoice_id=state.invoice_id, status="closed"),
        customer_id=state.customer_id,
    )


async def close_period_invoice(
    store: InvoicingStore, out: Publisher, cause: Envelope[Any], invoice: InvoiceRow
) -> None:
    """Close a pending period invoice (subscriptions, usage, pending charges) and open the next
    period. Raises DomainError when a line or the subtotal breaks a rule."""
    customer = await store.customer(invoice.customer_id)
    if customer is None:
        raise RuntimeError(
            f"invoice {invoice.invoice_id} belongs to unknown customer {invoice.customer_id!r}"
        )
    decided = close_period(
        invoice.state(),
        customer.billing_day,
        await store.usage_deltas(invoice.invoice_id),
        await store.subscriptions(invoice.customer_id, invoice.period_start),
        await store.take_pending_charges(invoice.customer_id, invoice.currency),
    )
    await close_with(store, out, cause, decided.closing)
    await open_period(store, out, cause, customer, *decided.next_period)
