"""Usage, in batches: rate, check against the caps, aggregate into invoice lines.

A usage the batch cannot take (unknown customer, no price, a date past the calendar, a
sum past a cap) goes to the DLQ with its reason; the rest of the batch lands.

Each usage event that lands is recorded, by its id, on the one line it went on
(`invoice_line_usage`, in the same transaction as the line and the inbox row). The inbox
lets each id through once; were an id ever on a line already, its primary key refuses the
batch (nothing saved) rather than bill it twice."""

from __future__ import annotations

import datetime as dt
from typing import Any

from invoicing import domain
from invoicing.domain import InvoiceSums, InvoicingError, UsageDelta
from invoicing.lifecycle import open_period
from invoicing.store import Customer, InvoiceRow, InvoicingStore, UsagePlacement
from tally_contracts import Envelope, Money
from tally_messaging import Delivery, Transaction


class _BatchView:
    """What one batch knows of its customers' open invoices, loaded once per batch."""

    def __init__(
        self,
        invoices: dict[str, list[InvoiceRow]],
        usage: dict[str, list[UsageDelta]],
        subscriptions: dict[str, list[domain.Subscription]],
        pending_charges: dict[str, list[Money]],
    ) -> None:
        self.invoices = invoices
        self.usage = usage
        self.subscriptions = subscriptions
        self.pending_charges = pending_charges
        self.sums: dict[str, InvoiceSums] = {}

    def sums_of(self, customer: Customer, invoice_id: str, start: dt.date, end: dt.date) -> InvoiceSums:
        found = self.sums.get(invoice_id)
        if found is None:
            state = domain.InvoiceState(
                invoice_id, customer.customer_id, customer.currency, "pending", start, end
            )
            found = self.sums[invoice_id] = domain.open_invoice_sums(
                state,
                self.usage.get(invoice_id, ()),
                self.subscriptions.get(customer.customer_id, ()),
                self.pending_charges.get(customer.customer_id, ()),
            )
        return found


async def record_usage(batch: list[Delivery], tx: Transaction) -> None:
    """Rate and aggregate a batch of usage into invoice lines: one upsert per line."""
    store = InvoicingStore(tx.conn)
    customer_ids = sorted({d.envelope.customer_id or "" for d in batch})
    customers = await store.customers(customer_ids)
    price_list_ids = sorted({c.price_list_id or "default" for c in customers.values()})
    found = await store.price_lists(price_list_ids)
    # A list never put stays empty: usage without an amount is then refused with a reason.
    price_lists = {i: domain.PriceList(i, found.get(i, ())) for i in price_list_ids}
    invoices: dict[str, list[InvoiceRow]] = {}
    for row in await store.period_invoices(sorted(customers)):
        invoices.setdefault(row.customer_id, []).append(row)
    pending_ids = [i.invoice_id for rows in invoices.values() for i in rows if i.status == "pending"]
    view = _BatchView(
        invoices,
        await store.usage_of(pending_ids),
        await store.subscriptions_of(sorted(customers)),
        await store.pending_charge_amounts(sorted(customers)),
    )
    opened: dict[tuple[str, dt.date], str] = {}
    targets: dict[tuple[str, dt.date], tuple[str, bool, dt.date, dt.date]] = {}
    deltas: dict[tuple[str, str], UsageDelta] = {}
    placements: list[UsagePlacement] = []
    for delivery in batch:
        message, data = delivery.envelope, delivery.envelope.data
        customer = customers.get(message.customer_id or "")
        if customer is None:
            tx.dead_letter(
                delivery.record,
                f"usage for unknown customer {message.customer_id!r}: send UpsertCustomer, then replay",
            )
            continue
        try:
            rated = domain.rate_usage(
                service=data.service,
                unit=data.unit,
                destination=data.destination,
                quantity=data.quantity,
                amount=data.amount,
                currency=customer.currency,
                price_list=price_lists[customer.price_list_id or "default"],
            )
            start, end = domain.period_of(message.occurred_at.astimezone(dt.UTC).date(), customer.billing_day)
            target = targets.get((customer.customer_id, start))
            if target is None:  # the same answer for every usage of this customer and period
                target = targets[(customer.customer_id, start)] = await _usage_target(
                    store,
                    tx,
                    message,
                    customer,
                    start,
                    end,
                    view.invoices.get(customer.customer_id, []),
                    opened,
                )
            invoice_id, late, invoice_start, invoice_end = target
            sums = view.sums_of(customer, invoice_id, invoice_start, invoice_end)
            line_id = domain.fold_usage(deltas, sums, rated, late)
            placements.append(UsagePlacement(customer.customer_id, message.id, invoice_id, line_id))
        except InvoicingError as error:
            tx.dead_letter(delivery.record, f"{error.code}: {error.reason}")
    await store.add_usage(deltas.values())
    await store.place_usage(placements)


async def _usage_target(
    store: InvoicingStore,
    tx: Transaction,
    cause: Envelope[Any],
    customer: Customer,
    start: dt.date,
    end: dt.date,
    mine: list[InvoiceRow],
    opened: dict[tuple[str, dt.date], str],
) -> tuple[str, bool, dt.date, dt.date]:
    """The invoice usage of the period `start`–`end` goes on (id and period), and whether it is
    late (its period is already closed)."""
    exact = next((i for i in mine if i.period_start == start), None)
    billed_later = any(i.status != "pending" and i.period_start > start for i in mine)
    if exact is not None and exact.status == "pending":
        return exact.invoice_id, False, exact.period_start, exact.period_end
    if exact is None and not billed_later:
        key = (customer.customer_id, start)
        if key not in opened:
            opened[key] = await open_period(store, tx, cause, customer, start, end)
        return opened[key], False, start, end
    pending = [i for i in mine if i.status == "pending"]
    if pending:
        return pending[-1].invoice_id, True, pending[-1].period_start, pending[-1].period_end
    newest = max(mine, key=lambda i: i.period_start)
    n_start, n_end = domain.next_period(newest.period_end, customer.billing_day)
    key = (customer.customer_id, n_start)
    if key not in opened:
        opened[key] = await open_period(store, tx, cause, customer, n_start, n_end)
    return opened[key], True, n_start, n_end
