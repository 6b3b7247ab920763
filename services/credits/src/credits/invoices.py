"""Posted invoices: InvoiceFinalized and InvoiceVoided. Rules: `credits.domain`."""

from __future__ import annotations

from dataclasses import replace

from credits.allocation import allocate_payment, finish, record_shortfall, release, settle, withdraw_lot
from credits.change import Cause, Change, Outcome
from credits.customer import CreditLot, CustomerLedger, Invoice, InvoiceLine
from credits.ledger import BILLED, balance_account, invoice_account
from tally_contracts import DomainError
from tally_contracts.credits import NegativeInvoiceTransferred
from tally_contracts.invoicing import InvoiceFinalized, InvoiceVoided
from tally_contracts.money import MAX_ABS_TOTAL, within_total_limit


def finalize_invoice(state: CustomerLedger, event: InvoiceFinalized, cause: Cause) -> Outcome:
    """A posted invoice: move a negative total to the credit balance; otherwise pay it from
    the payments parked for it, then from credit."""
    total = event.total.rounded()
    if not within_total_limit(total.amount):
        raise DomainError(
            "total_over_limit",
            f"invoice {event.invoice_id}: total {event.total} rounds to {total}, past the limit of "
            f"{MAX_ABS_TOTAL:,}; split it into smaller invoices",
        )
    existing = state.invoice(event.invoice_id)
    if existing is not None:
        if existing.total == total:
            return Outcome.unchanged(state)
        raise DomainError(
            "invoice_conflict",
            f"invoice {event.invoice_id} was posted with total {existing.total}, now {total}",
        )
    change = Change(state, cause)
    seq = change.take_seq()
    predecessor = change.invoices.get(event.regenerated_from) if event.regenerated_from else None
    invoice = Invoice(
        invoice_id=event.invoice_id,
        total=total,
        issued_on=event.issued_on,
        seq=seq,
        order=predecessor.order if predecessor is not None else seq,
        status="open",
        regenerated_from=event.regenerated_from,
        lines=scopable_lines(event),
    )
    change.put_invoice(invoice)
    account = invoice_account(invoice.invoice_id)
    change.post(f"invoice {invoice.invoice_id} posted", (account, -total), (BILLED, total))
    if total.is_negative:
        credit = -total
        lot = CreditLot(
            f"invoice:{invoice.invoice_id}",
            "negative_invoice",
            invoice.invoice_id,
            credit,
            credit,
            change.take_seq(),
        )
        change.put_lot(lot)
        change.post(
            f"negative invoice {invoice.invoice_id} to credit balance",
            (account, -credit),
            (balance_account(lot.lot_id), credit),
        )
        change.publish(NegativeInvoiceTransferred(invoice_id=invoice.invoice_id, amount=credit))
    parked = [p for p in state.parked_payments if p.invoice_id == invoice.invoice_id]
    if parked:
        # Credit first, then the payment: the same split as when the payment arrives after
        # the invoice, so the outcome does not depend on the order the topics deliver.
        settle(change)
    for payment in parked:
        allocate_payment(change, payment)
    return finish(change)


def scopable_lines(event: InvoiceFinalized) -> tuple[InvoiceLine, ...]:
    """The lines a scoped grant may pay (not adjustments), amounts at the minor unit."""
    return tuple(
        InvoiceLine(line.line_id, line.kind, line.service, line.amount.rounded())
        for line in event.lines
        if line.kind != "adjustment" and line.amount.currency == event.currency
    )


def void_invoice(state: CustomerLedger, event: InvoiceVoided, cause: Cause) -> Outcome:
    """Release everything on the invoice (or take back a negative invoice's credit), then let
    the released credit pay other open invoices. `cause.on` decides what has expired."""
    invoice = state.invoice(event.invoice_id)
    if invoice is None or invoice.status == "voided":
        return Outcome.unchanged(state)
    change = Change(state, cause)
    for application in change.active_applications(invoice_id=invoice.invoice_id):
        release(change, application)
    account = invoice_account(invoice.invoice_id)
    transferred = change.lots.get(f"invoice:{invoice.invoice_id}")
    if transferred is not None and transferred.status == "active":
        shortfall = withdraw_lot(change, transferred, account)
        if shortfall.is_positive:
            record_shortfall(
                change, f"shortfall:invoice:{invoice.invoice_id}", invoice.invoice_id, shortfall, account
            )
    change.put_invoice(replace(invoice, status="voided"))
    change.post(f"invoice {invoice.invoice_id} voided", (account, invoice.total), (BILLED, -invoice.total))
    return finish(change)
