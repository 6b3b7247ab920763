"""One function per message type: load → decide (domain) → save → publish."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from invoicing import domain
from invoicing.domain import InvoiceState, InvoicingError, Subscription, UsageDelta
from invoicing.store import Customer, InvoiceRow, InvoicingStore
from tally_contracts import Envelope, Money
from tally_contracts.credits import InvoiceBalanceChanged
from tally_contracts.invoicing import (
    AddCharge,
    CancelSubscription,
    ChargeAdded,
    CloseInvoice,
    CreateSubscription,
    CustomerUpserted,
    InvoiceClosed,
    InvoiceCreated,
    InvoiceFinalized,
    InvoiceStatus,
    InvoiceStatusChanged,
    InvoiceVoided,
    PriceListChanged,
    PutPriceList,
    RegenerateInvoice,
    RunBilling,
    SubscriptionCancelled,
    SubscriptionCreated,
    UpsertCustomer,
    VoidInvoice,
)
from tally_contracts.rules import InvoiceAdjusted
from tally_messaging import Delivery, Rejected, Transaction


def _reject(error: InvoicingError) -> Rejected:
    return Rejected(error.code, error.reason)


async def _customer(store: InvoicingStore, message: Envelope[Any]) -> Customer:
    customer = await store.customer(message.customer_id or "")
    if customer is None:
        raise Rejected(
            "unknown_customer", f"customer {message.customer_id!r} is not known; send UpsertCustomer first"
        )
    return customer


async def _invoice(store: InvoicingStore, invoice_id: str, message: Envelope[Any]) -> InvoiceRow:
    invoice = await store.invoice(invoice_id, for_update=True)
    if invoice is None or (message.customer_id and invoice.customer_id != message.customer_id):
        raise Rejected(
            "unknown_invoice", f"invoice {invoice_id!r} is not known for customer {message.customer_id!r}"
        )
    return invoice


def _status_changed(
    tx: Transaction, cause: Envelope[Any], invoice: InvoiceRow, status: InvoiceStatus
) -> None:
    tx.publish(
        cause,
        InvoiceStatusChanged(invoice_id=invoice.invoice_id, status=status),
        customer_id=invoice.customer_id,
    )


async def _open_invoice(
    store: InvoicingStore, tx: Transaction, cause: Envelope[Any], state: InvoiceState, kind: str = "period"
) -> bool:
    """Insert the invoice and announce it; False when it already existed."""
    if not await store.insert_invoice(state, kind):
        return False
    tx.publish(
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


async def _open_period(
    store: InvoicingStore,
    tx: Transaction,
    cause: Envelope[Any],
    customer: Customer,
    start: dt.date,
    end: dt.date,
) -> str:
    invoice_id = domain.pending_invoice_id(customer.customer_id, start)
    state = InvoiceState(invoice_id, customer.customer_id, customer.currency, "pending", start, end)
    await _open_invoice(store, tx, cause, state)
    return invoice_id


# -- customers, prices, subscriptions, charges -------------------------------------


async def upsert_customer(message: Envelope[Any], tx: Transaction) -> None:
    data: UpsertCustomer = message.data
    store = InvoicingStore(tx.conn)
    if not message.customer_id:
        raise Rejected("customer_id_missing", "UpsertCustomer needs the envelope's customer_id")
    existing = await store.customer(message.customer_id)
    if existing and existing.currency != data.currency:
        open_ = [
            i for i in await store.customer_invoices(message.customer_id) if i.status in ("pending", "closed")
        ]
        if open_:
            raise Rejected(
                "currency_change_with_open_invoices",
                f"customer has {len(open_)} pending or closed invoice(s) in {existing.currency}; bill them first",
            )
    customer = Customer(message.customer_id, data.currency, data.name, data.billing_day, data.price_list_id)
    await store.upsert_customer(customer)
    tx.publish(message, CustomerUpserted(**data.model_dump()))


async def put_price_list(message: Envelope[Any], tx: Transaction) -> None:
    data: PutPriceList = message.data
    await InvoicingStore(tx.conn).put_price_list(data.price_list_id, data.prices)
    tx.publish(message, PriceListChanged(price_list_id=data.price_list_id, prices=len(data.prices)))


async def create_subscription(message: Envelope[Any], tx: Transaction) -> None:
    data: CreateSubscription = message.data
    store = InvoicingStore(tx.conn)
    customer = await _customer(store, message)
    if data.fee.currency != customer.currency:
        raise Rejected(
            "currency_mismatch",
            f"fee is in {data.fee.currency} but the customer is invoiced in {customer.currency}; send the fee in {customer.currency}",
        )
    sub = Subscription(data.subscription_id, data.name, data.fee, data.starts_on)
    if not await store.add_subscription(customer.customer_id, sub):
        raise Rejected("duplicate_subscription", f"subscription {data.subscription_id!r} already exists")
    start, end = domain.period_of(data.starts_on, customer.billing_day)
    if not any(i.period_start == start for i in await store.period_invoices([customer.customer_id])):
        await _open_period(store, tx, message, customer, start, end)
    tx.publish(message, SubscriptionCreated(**data.model_dump()))


async def cancel_subscription(message: Envelope[Any], tx: Transaction) -> None:
    data: CancelSubscription = message.data
    store = InvoicingStore(tx.conn)
    customer = await _customer(store, message)
    sub = await store.subscription(customer.customer_id, data.subscription_id)
    if sub is None:
        raise Rejected(
            "unknown_subscription", f"subscription {data.subscription_id!r} is not known for this customer"
        )
    if data.ends_on < sub.starts_on:
        raise Rejected(
            "ends_before_start", f"ends_on {data.ends_on} is before the subscription starts ({sub.starts_on})"
        )
    await store.cancel_subscription(customer.customer_id, data.subscription_id, data.ends_on)
    tx.publish(message, SubscriptionCancelled(**data.model_dump()))


async def add_charge(message: Envelope[Any], tx: Transaction) -> None:
    data: AddCharge = message.data
    store = InvoicingStore(tx.conn)
    customer = await _customer(store, message)
    if data.amount.currency != customer.currency:
        raise Rejected(
            "currency_mismatch",
            f"charge is in {data.amount.currency} but the customer is invoiced in {customer.currency}",
        )
    if not data.invoice_now:
        await store.add_pending_charge(customer.customer_id, data.charge_id, data.description, data.amount)
        tx.publish(message, ChargeAdded(charge_id=data.charge_id, amount=data.amount, invoice_id=None))
        return
    day = message.occurred_at.date()
    invoice_id = f"inv-{customer.customer_id}-charge-{data.charge_id}"
    state = InvoiceState(invoice_id, customer.customer_id, customer.currency, "closed", day, day)
    if not await _open_invoice(store, tx, message, state, kind="one_time"):
        raise Rejected("duplicate_charge", f"charge {data.charge_id!r} already has invoice {invoice_id}")
    lines = [domain.one_time_line(data.charge_id, data.description, data.amount)]
    await _close_with(store, tx, message, state, lines)
    tx.publish(message, ChargeAdded(charge_id=data.charge_id, amount=data.amount, invoice_id=invoice_id))


# -- usage (batched) -----------------------------------------------------------------


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
    opened: dict[tuple[str, dt.date], str] = {}
    targets: dict[tuple[str, dt.date], tuple[str, bool]] = {}
    deltas: dict[tuple[str, str], UsageDelta] = {}
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
        except InvoicingError as error:
            tx.dead_letter(delivery.record, f"{error.code}: {error.reason}")
            continue
        start, end = domain.period_of(message.occurred_at.astimezone(dt.UTC).date(), customer.billing_day)
        target = targets.get((customer.customer_id, start))
        if target is None:  # the same answer for every usage of this customer and period
            target = targets[(customer.customer_id, start)] = await _usage_target(
                store, tx, message, customer, start, end, invoices.get(customer.customer_id, []), opened
            )
        domain.fold_usage(deltas, target[0], rated, target[1])
    await store.add_usage(deltas.values())


async def _usage_target(
    store: InvoicingStore,
    tx: Transaction,
    cause: Envelope[Any],
    customer: Customer,
    start: dt.date,
    end: dt.date,
    mine: list[InvoiceRow],
    opened: dict[tuple[str, dt.date], str],
) -> tuple[str, bool]:
    """The invoice usage of the period `start`–`end` goes on, and whether it is late (its
    period is already closed)."""
    exact = next((i for i in mine if i.period_start == start), None)
    billed_later = any(i.status != "pending" and i.period_start > start for i in mine)
    if exact is not None and exact.status == "pending":
        return exact.invoice_id, False
    if exact is None and not billed_later:
        key = (customer.customer_id, start)
        if key not in opened:
            opened[key] = await _open_period(store, tx, cause, customer, start, end)
        return opened[key], False
    pending = [i for i in mine if i.status == "pending"]
    if pending:
        return pending[-1].invoice_id, True
    newest = max(mine, key=lambda i: i.period_start)
    n_start, n_end = domain.next_period(newest.period_end, customer.billing_day)
    key = (customer.customer_id, n_start)
    if key not in opened:
        opened[key] = await _open_period(store, tx, cause, customer, n_start, n_end)
    return opened[key], True


# -- closing, bill runs ------------------------------------------------------------


async def _close_with(
    store: InvoicingStore, tx: Transaction, cause: Envelope[Any], state: InvoiceState, lines: list[Any]
) -> None:
    subtotal = domain.subtotal(lines, state.currency)
    await store.save_lines(state.invoice_id, lines)
    await store.close(state.invoice_id, subtotal)
    tx.publish(
        cause,
        InvoiceClosed(
            invoice_id=state.invoice_id,
            currency=state.currency,
            lines=lines,
            subtotal=subtotal,
            period_start=state.period_start,
            period_end=state.period_end,
            regenerated_from=state.regenerated_from,
        ),
        customer_id=state.customer_id,
    )
    tx.publish(
        cause,
        InvoiceStatusChanged(invoice_id=state.invoice_id, status="closed"),
        customer_id=state.customer_id,
    )


async def _close_period_invoice(
    store: InvoicingStore, tx: Transaction, cause: Envelope[Any], invoice: InvoiceRow
) -> None:
    customer = await store.customer(invoice.customer_id)
    assert customer is not None
    usage = [domain.usage_line(d, invoice.currency) for d in await store.usage_deltas(invoice.invoice_id)]
    subs = domain.subscription_lines(
        await store.subscriptions(invoice.customer_id), invoice.period_start, invoice.period_end
    )
    charges = [
        domain.one_time_line(charge_id, description, amount)
        for charge_id, description, amount in await store.take_pending_charges(
            invoice.customer_id, invoice.currency
        )
    ]
    await _close_with(store, tx, cause, invoice.state(), [*subs, *usage, *charges])
    start, end = domain.next_period(invoice.period_end, customer.billing_day)
    await _open_period(store, tx, cause, customer, start, end)


async def run_billing(message: Envelope[Any], tx: Transaction) -> None:
    data: RunBilling = message.data
    store = InvoicingStore(tx.conn)
    due = await store.due_pending_invoices(data.as_of, message.customer_id)
    await tx.lock_keys(i.customer_id for i in due)
    for invoice in due:
        await _close_period_invoice(store, tx, message, invoice)


async def close_invoice(message: Envelope[Any], tx: Transaction) -> None:
    data: CloseInvoice = message.data
    store = InvoicingStore(tx.conn)
    invoice = await _invoice(store, data.invoice_id, message)
    if invoice.status != "pending":
        raise _reject(
            InvoicingError(
                f"invoice_{invoice.status}", f"invoice {invoice.invoice_id} is already {invoice.status}"
            )
        )
    await _close_period_invoice(store, tx, message, invoice)


# -- finalisation, void, regenerate, status ----------------------------------------


async def finalize(message: Envelope[Any], tx: Transaction) -> None:
    """The rules service answered for a closed invoice: append adjustments and post it."""
    data: InvoiceAdjusted = message.data
    store = InvoicingStore(tx.conn)
    invoice = await store.invoice(data.invoice_id, for_update=True)
    if invoice is None:
        raise Rejected(
            "unknown_invoice",
            f"rules answered for invoice {data.invoice_id!r}, which invoicing does not know",
        )
    if invoice.status != "closed":
        return  # already finalised: a repeated answer changes nothing
    charges = await store.lines(invoice.invoice_id, invoice.currency)
    adjustments = [ln for ln in data.lines if ln.amount.currency == invoice.currency]
    if len(adjustments) != len(data.lines):
        raise Rejected(
            "currency_mismatch", f"adjustments for {invoice.invoice_id} are not all in {invoice.currency}"
        )
    total = domain.finalized_total(charges, adjustments, invoice.currency)
    issued_on = message.occurred_at.astimezone(dt.UTC).date()
    await store.save_lines(invoice.invoice_id, adjustments)
    await store.post(invoice.invoice_id, total, issued_on, data.rule_set_id, data.rule_set_version)
    tx.publish(
        message,
        InvoiceFinalized(
            invoice_id=invoice.invoice_id,
            currency=invoice.currency,
            issued_on=issued_on,
            lines=[*charges, *adjustments],
            total=total,
            rule_set_id=data.rule_set_id,
            rule_set_version=data.rule_set_version,
            regenerated_from=invoice.regenerated_from,
        ),
        customer_id=invoice.customer_id,
    )
    _status_changed(tx, message, invoice, "posted")


async def void_invoice(message: Envelope[Any], tx: Transaction) -> None:
    data: VoidInvoice = message.data
    store = InvoicingStore(tx.conn)
    invoice = await _invoice(store, data.invoice_id, message)
    try:
        domain.require_status(invoice.state(), ("posted", "paid"), "voided")
    except InvoicingError as error:
        raise _reject(error) from None
    await store.set_status(invoice.invoice_id, "voided", Decimal(0))  # nothing is owed on it any more
    tx.publish(
        message,
        InvoiceVoided(invoice_id=invoice.invoice_id, reason=data.reason),
        customer_id=invoice.customer_id,
    )
    _status_changed(tx, message, invoice, "voided")


async def regenerate_invoice(message: Envelope[Any], tx: Transaction) -> None:
    data: RegenerateInvoice = message.data
    store = InvoicingStore(tx.conn)
    old = await _invoice(store, data.invoice_id, message)
    try:
        domain.require_status(old.state(), ("voided",), "regenerated")
    except InvoicingError as error:
        raise _reject(error) from None
    if (existing := await store.regeneration_of(old.invoice_id)) is not None:
        raise Rejected(
            "already_regenerated", f"invoice {old.invoice_id} was already regenerated as {existing}"
        )
    lines = domain.regenerated_lines(await store.lines(old.invoice_id, old.currency))
    state = InvoiceState(
        f"{old.invoice_id}-r",
        old.customer_id,
        old.currency,
        "closed",
        old.period_start,
        old.period_end,
        old.invoice_id,
    )
    await _open_invoice(store, tx, message, state, kind="regenerated")
    await _close_with(store, tx, message, state, lines)


async def balance_changed(message: Envelope[Any], tx: Transaction) -> None:
    """The credits service's view of an invoice: mark it paid, or open again."""
    data: InvoiceBalanceChanged = message.data
    store = InvoicingStore(tx.conn)
    invoice = await store.invoice(data.invoice_id, for_update=True)
    if invoice is None or invoice.status in ("voided", "pending", "closed"):
        return
    status: InvoiceStatus = "paid" if data.status == "paid" else "posted"
    await store.set_status(invoice.invoice_id, status, data.amount_due.amount)
    if status != invoice.status:
        _status_changed(tx, message, invoice, status)


def money(amount: Any, currency: str) -> Money:
    return Money(amount=amount, currency=currency)
