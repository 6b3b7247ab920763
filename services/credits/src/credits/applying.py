"""ApplyCredits: apply credit now, to every open invoice or to the one the person chose.
Rules: `credits.domain`."""

from __future__ import annotations

from dataclasses import replace

from credits.allocation import eligible_sources, finish, pay_from
from credits.change import Cause, Change, Outcome
from credits.customer import CustomerLedger, Invoice
from tally_contracts import DomainError, Money
from tally_contracts.credits import ApplyCredits


def apply_credits(state: CustomerLedger, command: ApplyCredits, cause: Cause) -> Outcome:
    """Without invoice_id: lift every hold (apply_to_existing: false) and apply what can be
    applied. With invoice_id: pay that invoice, up to `amount`, and nothing else."""
    if command.invoice_id is not None:
        return _apply_to_invoice(state, command.invoice_id, command.amount, cause)
    if command.amount is not None:
        raise DomainError(
            "invoice_id_missing",
            f"an amount ({command.amount}) needs the invoice_id it is for; send invoice_id, or no amount "
            "to apply all available credit",
        )
    change = Change(state, cause)
    for grant in state.grants:
        change.grants[grant.grant_id] = replace(grant, first_eligible_seq=0)
    for lot in state.lots:
        change.lots[lot.lot_id] = replace(lot, first_eligible_seq=0)
    currencies = [g.currency for g in state.grants] + [lot.currency for lot in state.lots]
    return finish(change, tuple(dict.fromkeys(currencies)))


def _apply_to_invoice(state: CustomerLedger, invoice_id: str, amount: Money | None, cause: Cause) -> Outcome:
    """Pay the chosen invoice from every source that may pay it, held ones included, in the
    usual order; exactly `amount` when given. Anything that cannot be done is refused whole."""
    invoice = _payable_invoice(state, invoice_id)
    change = Change(state, cause)
    due = change.amount_due(invoice)
    wanted = None if amount is None else _checked_amount(invoice, amount, due)
    applied = pay_from(change, invoice, eligible_sources(change, invoice, held_too=True), wanted)
    if wanted is not None and applied < wanted:
        raise DomainError(
            "amount_over_available",
            f"{wanted} is more than the {applied} of credit that can pay invoice {invoice_id} "
            f"(amount due {due}); apply at most {applied}",
        )
    if applied.is_zero:
        raise _nothing_to_apply(state, invoice)
    return finish(change)


def _payable_invoice(state: CustomerLedger, invoice_id: str) -> Invoice:
    invoice = state.invoice(invoice_id)
    if invoice is None:
        raise DomainError(
            "unknown_invoice",
            f"no posted invoice {invoice_id!r} for this customer; credit applies only to posted invoices",
        )
    if invoice.status == "voided":
        raise DomainError(
            "invoice_voided", f"invoice {invoice_id} is voided; apply credit to its regenerated invoice"
        )
    balance = state.invoice_balance(invoice_id)
    if not balance.amount_due.is_positive:
        raise DomainError("invoice_paid", f"invoice {invoice_id} is paid: nothing is due on it")
    return invoice


def _checked_amount(invoice: Invoice, amount: Money, due: Money) -> Money:
    if amount.currency != invoice.currency:
        raise DomainError(
            "currency_mismatch",
            f"invoice {invoice.invoice_id} is in {invoice.currency}, the amount in {amount.currency}; "
            f"send the amount in {invoice.currency}",
        )
    wanted = amount.rounded()
    if not wanted.is_positive:
        raise DomainError("amount_not_positive", f"the amount must be positive, not {wanted}")
    if wanted > due:
        raise DomainError(
            "amount_over_due",
            f"{wanted} is more than the {due} due on invoice {invoice.invoice_id}; apply at most {due}",
        )
    return wanted


def _nothing_to_apply(state: CustomerLedger, invoice: Invoice) -> DomainError:
    others = sorted(
        {g.currency for g in state.grants if g.status == "active" and g.remaining.is_positive}
        | {lot.currency for lot in state.lots if lot.status == "active" and lot.remaining.is_positive}
        - {invoice.currency}
    )
    if others:
        return DomainError(
            "currency_mismatch",
            f"invoice {invoice.invoice_id} is in {invoice.currency}; the customer's credit is in "
            f"{', '.join(others)} — convert a grant with ChangeCreditCurrency first",
        )
    return DomainError(
        "no_credit_available",
        f"no credit can pay invoice {invoice.invoice_id}: no credit balance and no promotional credit "
        f"in {invoice.currency} usable on its issue date {invoice.issued_on} (and in scope)",
    )
