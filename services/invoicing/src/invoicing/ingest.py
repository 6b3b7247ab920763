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

from invoicing.accounts import Customer
from invoicing.invoices import InvoiceState, open_invoice_sums
from invoicing.lifecycle import open_period
from invoicing.periods import period_of
from invoicing.rating import InvoiceSums, PriceList, UsageDelta, fold_usage, rate_usage
from invoicing.store import InvoicingStore, UsagePlacement
from invoicing.subscriptions import Subscription
from invoicing.usage_placement import CustomerPeriods, UsageTarget, usage_target
from tally_contracts import DomainError, Envelope, Money
from tally_contracts.usage import UsageRecorded
from tally_messaging import Delivery, Transaction


class _OpenSums:
    """The running sums of the open invoices a batch adds to, made on first use from what the
    batch loaded (usage lines, subscriptions, pending charges)."""

    def __init__(
        self,
        usage: dict[str, list[UsageDelta]],
        subscriptions: dict[str, list[Subscription]],
        pending_charges: dict[str, list[Money]],
    ) -> None:
        self.usage = usage
        self.subscriptions = subscriptions
        self.pending_charges = pending_charges
        self.sums: dict[str, InvoiceSums] = {}

    def of(self, customer: Customer, invoice_id: str, start: dt.date, end: dt.date) -> InvoiceSums:
        found = self.sums.get(invoice_id)
        if found is None:
            state = InvoiceState(invoice_id, customer.customer_id, customer.currency, "pending", start, end)
            found = self.sums[invoice_id] = open_invoice_sums(
                state,
                self.usage.get(invoice_id, ()),
                self.subscriptions.get(customer.customer_id, ()),
                self.pending_charges.get(customer.customer_id, ()),
            )
        return found


def _usage_periods(
    batch: list[Delivery[UsageRecorded]], customers: dict[str, Customer]
) -> set[tuple[str, dt.date]]:
    """(customer, period start) of each usage of known customers whose date has a period."""
    found = set()
    for delivery in batch:
        customer = customers.get(delivery.envelope.customer_id or "")
        if customer is None:
            continue
        try:
            start, _ = period_of(
                delivery.envelope.occurred_at.astimezone(dt.UTC).date(), customer.billing_day
            )
        except DomainError:
            continue  # dead-lettered with its reason below
        found.add((customer.customer_id, start))
    return found


async def record_usage(batch: list[Delivery[UsageRecorded]], tx: Transaction) -> None:
    """Rate and aggregate a batch of usage into invoice lines: one upsert per line.

    Loads the batch's customers' open items only: their pending invoices and the usage on
    them, the newest billed period, the invoices of the periods the usage names, the
    subscriptions that can still bill, pending charges and price lists."""
    store = InvoicingStore(tx.conn)
    customer_ids = sorted({d.envelope.customer_id or "" for d in batch})
    customers = await store.customers(customer_ids)
    known = sorted(customers)
    price_list_ids = sorted({c.price_list_id or "default" for c in customers.values()})
    found = await store.price_lists(price_list_ids)
    # A list never put stays empty: usage without an amount is then refused with a reason.
    price_lists = {i: PriceList(i, found.get(i, ())) for i in price_list_ids}
    named = _usage_periods(batch, customers)
    periods = await store.customer_periods(known, named)
    pending = [i for p in periods.values() for i in p.pending]
    earliest = min([*(i.period_start for i in pending), *(start for _, start in named)], default=None)
    sums = _OpenSums(
        await store.usage_of([i.invoice_id for i in pending]),
        await store.subscriptions_of(known, earliest),
        await store.pending_charge_amounts(known),
    )
    targets: dict[tuple[str, dt.date], tuple[str, UsageTarget]] = {}
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
            rated = rate_usage(
                service=data.service,
                unit=data.unit,
                destination=data.destination,
                quantity=data.quantity,
                amount=data.amount,
                currency=customer.currency,
                price_list=price_lists[customer.price_list_id or "default"],
            )
            start, end = period_of(message.occurred_at.astimezone(dt.UTC).date(), customer.billing_day)
            placed = targets.get((customer.customer_id, start))
            if placed is None:  # the same answer for every usage of this customer and period
                placed = targets[(customer.customer_id, start)] = await _target_invoice(
                    store, tx, message, customer, periods, start, end
                )
            invoice_id, target = placed
            open_sums = sums.of(customer, invoice_id, target.start, target.end)
            line_id = fold_usage(deltas, open_sums, rated, target.late)
            placements.append(UsagePlacement(customer.customer_id, message.id, invoice_id, line_id))
        except DomainError as error:
            tx.dead_letter(delivery.record, f"{error.code}: {error.reason}")
    await store.add_usage(deltas.values())
    await store.place_usage(placements)


async def _target_invoice(
    store: InvoicingStore,
    tx: Transaction,
    cause: Envelope[Any],
    customer: Customer,
    periods: dict[str, CustomerPeriods],
    start: dt.date,
    end: dt.date,
) -> tuple[str, UsageTarget]:
    """The id of the invoice usage of the period `start`–`end` goes on, and the domain's
    target; an invoice the target names to open is opened, and pending from then on."""
    target = usage_target(periods[customer.customer_id], start, end, customer.billing_day)
    if target.invoice_id is not None:
        return target.invoice_id, target
    invoice_id = await open_period(store, tx, cause, customer, target.start, target.end)
    opened = InvoiceState(
        invoice_id, customer.customer_id, customer.currency, "pending", target.start, target.end
    )
    periods[customer.customer_id] = periods[customer.customer_id].with_opened(opened)
    return invoice_id, target
