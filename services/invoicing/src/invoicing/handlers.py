"""Commands about customers, prices, subscriptions and charges, and the answers from the
rules and credits services. One function per message type: load the customer's open items
→ decide (`accounts`, `closing`, `posting`) → save → publish. Usage is in `ingest`, bill
runs and CloseInvoice in `billing`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from invoicing import accounts, closing, posting
from invoicing.accounts import Customer, OpenInvoices
from invoicing.lifecycle import (
    close_with,
    known_customer,
    open_invoice,
    open_period,
    owned_invoice,
    status_changed,
)
from invoicing.periods import period_of
from invoicing.store import InvoicingStore
from tally_contracts import DomainError, Envelope
from tally_contracts.credits import InvoiceBalanceChanged
from tally_contracts.invoicing import (
    AddCharge,
    CancelSubscription,
    ChargeAdded,
    CreateSubscription,
    CustomerUpserted,
    InvoiceFinalized,
    InvoiceVoided,
    PriceListChanged,
    PutPriceList,
    RegenerateInvoice,
    SubscriptionCancelled,
    SubscriptionCreated,
    UpsertCustomer,
    VoidInvoice,
)
from tally_contracts.rules import InvoiceAdjusted
from tally_messaging import Transaction


def _message_day(message: Envelope[Any]) -> dt.date:
    return message.occurred_at.astimezone(dt.UTC).date()


async def _open_invoices(store: InvoicingStore, customer: Customer) -> OpenInvoices:
    """The customer's pending period invoices and what would close on them."""
    pending = [i.state() for i in await store.pending_period_invoices([customer.customer_id])]
    if not pending:
        return OpenInvoices()
    return OpenInvoices(
        pending,
        await store.usage_of([i.invoice_id for i in pending]),
        await store.subscriptions(customer.customer_id, min(i.period_start for i in pending)),
        (await store.pending_charge_amounts([customer.customer_id])).get(customer.customer_id, []),
    )


# -- customers, prices, subscriptions, charges -------------------------------------


async def upsert_customer(message: Envelope[UpsertCustomer], tx: Transaction) -> None:
    data = message.data
    store = InvoicingStore(tx.conn)
    if not message.customer_id:
        raise DomainError("customer_id_missing", "UpsertCustomer needs the envelope's customer_id")
    existing = await store.customer(message.customer_id)
    open_count = await store.open_invoice_count(message.customer_id) if existing is not None else 0
    customer = accounts.upsert_customer(existing, open_count, message.customer_id, data)
    await store.upsert_customer(customer)
    tx.publish(message, CustomerUpserted(**data.model_dump()))


async def put_price_list(message: Envelope[PutPriceList], tx: Transaction) -> None:
    data = message.data
    await InvoicingStore(tx.conn).put_price_list(data.price_list_id, data.prices)
    tx.publish(message, PriceListChanged(price_list_id=data.price_list_id, prices=len(data.prices)))


async def create_subscription(message: Envelope[CreateSubscription], tx: Transaction) -> None:
    data = message.data
    store = InvoicingStore(tx.conn)
    customer = await known_customer(store, message)
    first_period, _ = period_of(data.starts_on, customer.billing_day)
    decided = accounts.create_subscription(
        customer,
        await _open_invoices(store, customer),
        await store.subscription(customer.customer_id, data.subscription_id),
        await store.period_invoice(customer.customer_id, first_period) is not None,
        data,
    )
    await store.add_subscription(customer.customer_id, decided.subscription)
    if decided.open_period is not None:
        await open_period(store, tx, message, customer, *decided.open_period)
    tx.publish(message, SubscriptionCreated(**data.model_dump()))


async def cancel_subscription(message: Envelope[CancelSubscription], tx: Transaction) -> None:
    data = message.data
    store = InvoicingStore(tx.conn)
    customer = await known_customer(store, message)
    ended = accounts.cancel_subscription(
        await store.subscription(customer.customer_id, data.subscription_id), data
    )
    await store.cancel_subscription(customer.customer_id, ended.subscription_id, data.ends_on)
    tx.publish(message, SubscriptionCancelled(**data.model_dump()))


async def add_charge(message: Envelope[AddCharge], tx: Transaction) -> None:
    data = message.data
    store = InvoicingStore(tx.conn)
    customer = await known_customer(store, message)
    used = await store.charge_id_used(customer.customer_id, data.charge_id)
    if data.invoice_now:
        invoiced = accounts.charge_now(customer, used, data, _message_day(message))
        await store.record_charge_id(customer.customer_id, data.charge_id)
        if not await open_invoice(store, tx, message, invoiced.invoice, "one_time"):
            raise RuntimeError(
                f"invoice {invoiced.invoice.invoice_id} already exists for a charge id never seen"
            )
        await close_with(store, tx, message, invoiced)
        invoice_id: str | None = invoiced.invoice.invoice_id
    else:
        pending = accounts.charge_later(customer, await _open_invoices(store, customer), used, data)
        await store.record_charge_id(customer.customer_id, data.charge_id)
        await store.add_pending_charge(
            customer.customer_id, pending.charge_id, pending.description, pending.amount
        )
        invoice_id = None
    tx.publish(message, ChargeAdded(charge_id=data.charge_id, amount=data.amount, invoice_id=invoice_id))


# -- finalisation, void, regenerate, status ----------------------------------------


async def finalize(message: Envelope[InvoiceAdjusted], tx: Transaction) -> None:
    """The rules service answered for a closed invoice: append adjustments and post it."""
    data = message.data
    store = InvoicingStore(tx.conn)
    invoice = await store.invoice(data.invoice_id, for_update=True)
    charges = await store.lines(invoice.invoice_id, invoice.currency) if invoice is not None else []
    posted = posting.post(
        invoice.state() if invoice is not None else None, charges, data, _message_day(message)
    )
    if posted is None:
        return  # already finalised: a repeated answer changes nothing
    state = posted.invoice
    await store.save_lines(state.invoice_id, posted.adjustments)
    await store.post(
        state.invoice_id, posted.total, posted.issued_on, posted.rule_set_id, posted.rule_set_version
    )
    tx.publish(
        message,
        InvoiceFinalized(
            invoice_id=state.invoice_id,
            currency=state.currency,
            issued_on=posted.issued_on,
            lines=list(posted.lines),
            total=posted.total,
            rule_set_id=posted.rule_set_id,
            rule_set_version=posted.rule_set_version,
            regenerated_from=state.regenerated_from,
        ),
        customer_id=state.customer_id,
    )
    status_changed(tx, message, state, "posted")


async def void_invoice(message: Envelope[VoidInvoice], tx: Transaction) -> None:
    data = message.data
    store = InvoicingStore(tx.conn)
    invoice = (await owned_invoice(store, data.invoice_id, message)).state()
    amount_due = posting.void(invoice)
    await store.set_status(invoice.invoice_id, "voided", amount_due)
    tx.publish(
        message,
        InvoiceVoided(invoice_id=invoice.invoice_id, reason=data.reason),
        customer_id=invoice.customer_id,
    )
    status_changed(tx, message, invoice, "voided")


async def regenerate_invoice(message: Envelope[RegenerateInvoice], tx: Transaction) -> None:
    data = message.data
    store = InvoicingStore(tx.conn)
    old = (await owned_invoice(store, data.invoice_id, message)).state()
    decided = closing.regenerate(
        old,
        await store.regeneration_of(old.customer_id, old.invoice_id),
        await store.lines(old.invoice_id, old.currency),
    )
    if not await open_invoice(store, tx, message, decided.invoice, "regenerated"):
        raise RuntimeError(f"invoice {decided.invoice.invoice_id} already exists for a first regeneration")
    await close_with(store, tx, message, decided)
    await store.move_usage(old.invoice_id, decided.invoice.invoice_id)  # billed by the new lines now


async def balance_changed(message: Envelope[InvoiceBalanceChanged], tx: Transaction) -> None:
    """The credits service's view of an invoice: mark it paid, or open again."""
    data = message.data
    store = InvoicingStore(tx.conn)
    invoice = await store.invoice(data.invoice_id, for_update=True)
    update = posting.balance_update(invoice.state() if invoice is not None else None, data)
    if update is None or invoice is None:
        return
    await store.set_status(invoice.invoice_id, update.status, update.amount_due)
    if update.status_changed:
        status_changed(tx, message, invoice.state(), update.status)
