"""What happens to a closed or posted invoice: posting it on the rules service's answer,
voiding it, marking it paid or open again from the credits service's balance. Pure: the
invoice and the message in, the change out (None: the message changes nothing)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from invoicing.invoices import InvoiceState, finalized_total, require_status
from tally_contracts import DomainError, Line, Money
from tally_contracts.credits import InvoiceBalanceChanged
from tally_contracts.invoicing import InvoiceStatus
from tally_contracts.rules import InvoiceAdjusted


@dataclass(frozen=True, slots=True)
class Posting:
    """A closed invoice posted: the adjustment lines to append, all its lines, its total."""

    invoice: InvoiceState
    adjustments: tuple[Line, ...]
    lines: tuple[Line, ...]
    total: Money
    issued_on: dt.date
    rule_set_id: str | None
    rule_set_version: int | None


def post(
    invoice: InvoiceState | None,
    charges: Iterable[Line],
    answer: InvoiceAdjusted,
    issued_on: dt.date,
) -> Posting | None:
    """Post a closed invoice with the rules' adjustments (total = charges + adjustments,
    rounded). A repeated answer for an invoice already posted changes nothing; an answer for
    an unknown invoice or with adjustments in another currency is refused."""
    if invoice is None:
        raise DomainError(
            "unknown_invoice",
            f"rules answered for invoice {answer.invoice_id!r}, which invoicing does not know",
        )
    if invoice.status != "closed":
        return None
    adjustments = tuple(ln for ln in answer.lines if ln.amount.currency == invoice.currency)
    if len(adjustments) != len(answer.lines):
        raise DomainError(
            "currency_mismatch", f"adjustments for {invoice.invoice_id} are not all in {invoice.currency}"
        )
    kept = tuple(charges)
    return Posting(
        invoice,
        adjustments,
        (*kept, *adjustments),
        finalized_total(kept, adjustments, invoice.currency),
        issued_on,
        answer.rule_set_id,
        answer.rule_set_version,
    )


def void(invoice: InvoiceState) -> Decimal:
    """A posted or paid invoice voided; returns what is owed on it afterwards (nothing)."""
    require_status(invoice, ("posted", "paid"), "voided")
    return Decimal(0)


@dataclass(frozen=True, slots=True)
class BalanceUpdate:
    """A posted invoice's status and amount due as credits sees them."""

    status: InvoiceStatus
    amount_due: Decimal
    status_changed: bool


def balance_update(invoice: InvoiceState | None, balance: InvoiceBalanceChanged) -> BalanceUpdate | None:
    """Paid when credits says so, posted (open again) otherwise. Only a posted or paid invoice
    follows credits: an unknown, pending, closed or voided one ignores the message."""
    if invoice is None or invoice.status not in ("posted", "paid"):
        return None
    status: InvoiceStatus = "paid" if balance.status == "paid" else "posted"
    return BalanceUpdate(status, balance.amount_due.amount, status != invoice.status)
