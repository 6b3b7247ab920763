"""Closing invoices on demand: bill runs and CloseInvoice.

A bill run isolates failures: each customer's invoices close inside their own savepoint,
and their events are held until it is released. A customer whose invoice cannot close
(a sum past the cap, a date past the calendar, a bug) is rolled back alone and reported
with an InvoiceCloseFailed keyed by that customer, naming the invoice, a code and the
reason (not a CommandRejected: the run's other customers were billed); its invoices stay
pending, so the next RunBilling tries them again. A CloseInvoice of such an invoice is
answered with CommandRejected and the same code (`close_failed` for an unexpected error).
"""

from __future__ import annotations

from itertools import groupby

from invoicing.closing import check_closable
from invoicing.lifecycle import HeldEvents, close_period_invoice, owned_invoice
from invoicing.store import InvoiceRow, InvoicingStore
from tally_contracts import DomainError, Envelope
from tally_contracts.invoicing import CloseInvoice, InvoiceCloseFailed, RunBilling
from tally_messaging import Transaction
from tally_messaging.processing import INFRASTRUCTURE_ERRORS
from tally_messaging.transaction import describe_exception


async def run_billing(message: Envelope[RunBilling], tx: Transaction) -> None:
    data = message.data
    store = InvoicingStore(tx.conn)
    due = await store.due_pending_invoices(data.as_of, message.customer_id)
    await tx.lock_keys(i.customer_id for i in due)
    for customer_id, invoices in groupby(due, key=lambda i: i.customer_id):
        await _bill_customer(store, tx, message, customer_id, list(invoices))


async def _bill_customer(
    store: InvoicingStore,
    tx: Transaction,
    message: Envelope[RunBilling],
    customer_id: str,
    due: list[InvoiceRow],
) -> None:
    held = HeldEvents()
    current = due[0]
    try:
        async with tx.conn.transaction():  # a savepoint: this customer's failure is rolled back alone
            for current in due:
                await close_period_invoice(store, held, message, current)
    except INFRASTRUCTURE_ERRORS:
        raise
    except DomainError as error:
        _report_not_closed(tx, message, current, error.code, error.reason)
    except Exception as error:  # a bug in one customer's data must not stop the others
        _report_not_closed(tx, message, current, "close_failed", describe_exception(error))
    else:
        held.release(tx)


def _report_not_closed(
    tx: Transaction, message: Envelope[RunBilling], invoice: InvoiceRow, code: str, reason: str
) -> None:
    data = message.data
    tx.publish(
        message,
        InvoiceCloseFailed(
            invoice_id=invoice.invoice_id,
            code=code,
            reason=f"{reason}. It stays pending and the next RunBilling tries it again",
            as_of=data.as_of,
        ),
        customer_id=invoice.customer_id,
    )


async def close_invoice(message: Envelope[CloseInvoice], tx: Transaction) -> None:
    data = message.data
    store = InvoicingStore(tx.conn)
    invoice = await owned_invoice(store, data.invoice_id, message)
    check_closable(invoice.state())
    try:
        await close_period_invoice(store, tx, message, invoice)
    except INFRASTRUCTURE_ERRORS:
        raise
    except DomainError:
        raise  # answered with its own code by the runtime
    except Exception as error:  # as in a bill run: the invoice stays pending, the code says why
        raise DomainError(
            "close_failed", f"invoice {invoice.invoice_id} was not closed: {describe_exception(error)}"
        ) from error
