"""Moving credit inside one change: applying sources to invoices, releasing applications,
spending and withdrawing credit-balance lots. Each move is one balanced ledger entry and,
where the contract has one, one event.

Rules enforced here:

- **Sources**, in order: promotional grants usable on the invoice's issue date (its
  `issued_on` on or before the grant's last day, whatever order the messages came in),
  by priority (1 first, none as 50), then soonest last day (a grant that never expires
  last), then the oldest grant; then the credit-balance lots (oldest first).
- **Targets**: posted invoices with an amount due, in the source's currency, oldest first
  (`Invoice.order`); each gets min(available, amount due). Credit never crosses
  currencies and never exceeds what is due; credits only knows posted invoices, so a
  pending invoice is never paid.
- **Scope**: a scoped grant pays only the invoice's lines in its scope, never more than
  the invoice's amount due (`credits.scoping`).
- **Held sources**: a grant made with `apply_to_existing: false` pays only invoices
  posted after it, until an ApplyCredits lifts the hold (or names one invoice for it).
- **Debts first**: a negative lot (what a reversal could not take back) is settled from
  the rest of the credit balance, oldest lot first, before anything pays an invoice.
- **Settling**: every operation ends by settling debts and applying credit in each
  currency it touched, so available credit never sits beside an invoice it may pay.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import replace
from typing import Literal

from credits.change import Change, Outcome
from credits.customer import (
    Application,
    CreditLot,
    Invoice,
    LinePart,
    Payment,
    PromotionalGrant,
    SourceType,
    total_of,
)
from credits.ledger import EXPIRED, balance_account, invoice_account, payment_account, promo_account
from credits.scoping import scoped_parts
from tally_contracts import Money
from tally_contracts.credits import CreditApplied, CreditReleased

ReleasedTo = Literal["promotional", "credit_balance", "expired", "payment_reversed"]


def apply_source(
    change: Change,
    invoice: Invoice,
    source_type: SourceType,
    source_id: str,
    amount: Money,
    lines: tuple[LinePart, ...] = (),
) -> None:
    """Pay `amount` of `invoice` from one source; the caller has checked it is available and due."""
    if source_type == "promotional":
        grant = change.grants[source_id]
        change.put_grant(replace(grant, remaining=grant.remaining - amount))
        account = promo_account(source_id)
    elif source_type == "credit_balance":
        lot = change.lots[source_id]
        change.put_lot(replace(lot, remaining=lot.remaining - amount))
        account = balance_account(source_id)
    else:
        account = payment_account(source_id)
    application = Application(
        change.new_id(), invoice.invoice_id, source_type, source_id, amount, lines=lines
    )
    change.add_application(application)
    change.post(
        f"apply {source_type} {source_id} to invoice {invoice.invoice_id}",
        (account, -amount),
        (invoice_account(invoice.invoice_id), amount),
    )
    change.publish(
        CreditApplied(
            application_id=application.application_id,
            invoice_id=invoice.invoice_id,
            source_type=source_type,
            source_id=source_id,
            amount=amount,
        )
    )


def release(
    change: Change,
    application: Application,
    payment_goes_to: Literal["credit_balance", "payment_reversed"] = "credit_balance",
) -> None:
    """Take an application off its invoice and give the money back to where it belongs.

    Promotional credit returns to its grant, or expires at once if the grant is past its
    last day on the cause's date; credit balance returns to its lot; a payment becomes a
    new credit-balance lot (`release:<application_id>`), or goes back with the reversed
    payment.
    """
    amount = application.amount
    returned_to: ReleasedTo
    if application.source_type == "promotional":
        grant = change.grants[application.source_id]
        if grant.usable_on(change.cause.on):
            change.put_grant(replace(grant, remaining=grant.remaining + amount))
            account, returned_to = promo_account(grant.grant_id), "promotional"
        else:
            change.put_grant(replace(grant, expired=grant.expired + amount))
            account, returned_to = EXPIRED, "expired"
    elif application.source_type == "credit_balance":
        lot = change.lots[application.source_id]
        change.put_lot(replace(lot, remaining=lot.remaining + amount))
        account, returned_to = balance_account(lot.lot_id), "credit_balance"
    elif payment_goes_to == "payment_reversed":
        account, returned_to = payment_account(application.source_id), "payment_reversed"
    else:
        lot = CreditLot(
            lot_id=f"release:{application.application_id}",
            origin="released_payment",
            origin_id=application.source_id,
            amount=amount,
            remaining=amount,
            seq=change.take_seq(),
        )
        change.put_lot(lot)
        account, returned_to = balance_account(lot.lot_id), "credit_balance"
    change.release_application(application)
    change.post(
        f"release {application.application_id} from invoice {application.invoice_id} to {returned_to}",
        (invoice_account(application.invoice_id), -amount),
        (account, amount),
    )
    change.publish(
        CreditReleased(
            application_id=application.application_id,
            invoice_id=application.invoice_id,
            amount=amount,
            returned_to=returned_to,
        )
    )


def spend_credit_balance(change: Change, currency: str, amount: Money, to_account: str, memo: str) -> None:
    """Take `amount` out of the positive lots, oldest first, in one entry; the caller has
    checked the credit balance covers it."""
    postings: list[tuple[str, Money]] = []
    left = amount
    for lot in positive_lots(change, currency):
        if left.is_zero:
            break
        take = lot.remaining.min(left)
        change.put_lot(replace(lot, remaining=lot.remaining - take))
        postings.append((balance_account(lot.lot_id), -take))
        left = left - take
    change.post(memo, *postings, (to_account, amount - left))


def settle_debts(change: Change, currency: str) -> None:
    """Pay negative lots (oldest first) from positive ones, as far as they go."""
    debts = sorted(
        (
            lot
            for lot in change.lots.values()
            if lot.status == "active" and lot.currency == currency and lot.remaining.is_negative
        ),
        key=lambda lot: lot.seq,
    )
    for debt in debts:
        available = total_of((lot.remaining for lot in positive_lots(change, currency)), currency)
        take = (-debt.remaining).min(available)
        if take.is_zero:
            return
        spend_credit_balance(change, currency, take, balance_account(debt.lot_id), f"settle {debt.lot_id}")
        debt = change.lots[debt.lot_id]
        change.put_lot(replace(debt, remaining=debt.remaining + take))


def withdraw_lot(change: Change, lot: CreditLot, into_account: str) -> Money:
    """Remove a lot whose money is going back (a reversed payment, a voided negative
    invoice): release what it paid, take out what is left, and return the part that
    cannot be taken back because it was refunded or settled a debt."""
    for application in change.active_applications(source_type="credit_balance", source_id=lot.lot_id):
        release(change, application)
    lot = change.lots[lot.lot_id]
    left = lot.remaining
    change.put_lot(replace(lot, remaining=Money.zero(lot.currency), status="withdrawn"))
    change.post(f"withdraw {lot.lot_id}", (balance_account(lot.lot_id), -left), (into_account, left))
    return lot.amount - left


def record_shortfall(
    change: Change, lot_id: str, origin_id: str, shortfall: Money, from_account: str
) -> None:
    """What the customer owes after a reversal: a negative lot, settled from later credit."""
    lot = CreditLot(lot_id, "shortfall", origin_id, -shortfall, -shortfall, change.take_seq())
    change.put_lot(lot)
    change.post(f"shortfall {lot_id}", (balance_account(lot_id), -shortfall), (from_account, shortfall))


def allocate_payment(change: Change, payment: Payment) -> None:
    """Pay the payment's invoice up to its amount due; the rest becomes credit balance.

    A payment in a currency other than its invoice's (or for a voided or already paid
    invoice) becomes credit balance in its own currency, whole.
    """
    invoice = change.invoices.get(payment.invoice_id) if payment.invoice_id else None
    applied = Money.zero(payment.amount.currency)
    if invoice is not None and invoice.currency == payment.amount.currency:
        due = change.amount_due(invoice)
        if due.is_positive:
            applied = payment.amount.min(due)
            apply_source(change, invoice, "payment", payment.payment_id, applied)
    excess = payment.amount - applied
    if excess.is_positive:
        lot = CreditLot(
            lot_id=f"payment:{payment.payment_id}",
            origin="overpayment",
            origin_id=payment.payment_id,
            amount=excess,
            remaining=excess,
            seq=change.take_seq(),
        )
        change.put_lot(lot)
        change.post(
            f"payment {payment.payment_id} to credit balance",
            (payment_account(payment.payment_id), -excess),
            (balance_account(lot.lot_id), excess),
        )
    change.put_payment(replace(payment, status="applied"))


def allocate(change: Change, currency: str) -> None:
    """Apply available credit to open invoices in one currency, by the rules above."""
    if not credit_left(change, currency):
        return  # nothing to apply (sources only shrink below): skip the walk over every invoice
    invoices = sorted(
        (i for i in change.invoices.values() if i.currency == currency and change.amount_due(i).is_positive),
        key=lambda i: (i.order, i.seq),
    )
    for invoice in invoices:
        pay_from(change, invoice, eligible_sources(change, invoice))


def pay_from(
    change: Change, invoice: Invoice, sources: list[tuple[SourceType, str]], most: Money | None = None
) -> Money:
    """Pay `invoice` from `sources` in order, each as much as it has, as is due (in its
    scope) and as is left of `most`; return what was applied."""
    applied = Money.zero(invoice.currency)
    for source_type, source_id in sources:
        due = change.amount_due(invoice)
        if most is not None:
            due = due.min(most - applied)
        if not due.is_positive:
            break
        parts: tuple[LinePart, ...] = ()
        if source_type == "promotional":
            grant = change.grants[source_id]
            amount = grant.remaining.min(due)
            if grant.scope is not None:
                parts = scoped_parts(change, invoice, grant.scope, amount)
                amount = total_of((p.amount for p in parts), invoice.currency)
        else:
            amount = change.lots[source_id].remaining.min(due)
        if amount.is_positive:
            apply_source(change, invoice, source_type, source_id, amount, parts)
            applied = applied + amount
    return applied


def eligible_sources(
    change: Change, invoice: Invoice, *, held_too: bool = False
) -> list[tuple[SourceType, str]]:
    """The sources that may pay `invoice`, in the order they are spent. A held source (made
    after the invoice with apply_to_existing: false) only when `held_too`."""
    sources: list[tuple[SourceType, str]] = [
        ("promotional", grant.grant_id)
        for grant in usable_grants(change, invoice.currency, invoice.issued_on)
        if held_too or grant.first_eligible_seq <= invoice.seq
    ]
    sources += [
        ("credit_balance", lot.lot_id)
        for lot in positive_lots(change, invoice.currency)
        if held_too or lot.first_eligible_seq <= invoice.seq
    ]
    return sources


def credit_left(change: Change, currency: str) -> bool:
    """Any promotional credit (usable on some day) or positive credit balance in `currency`."""
    return any(
        g.status == "active" and g.currency == currency and g.remaining.is_positive
        for g in change.grants.values()
    ) or bool(positive_lots(change, currency))


def settle(change: Change, also: Iterable[str] = ()) -> None:
    for currency in dict.fromkeys([*change.currencies_to_settle(), *also]):
        settle_debts(change, currency)
        allocate(change, currency)


def usable_grants(change: Change, currency: str, day: dt.date) -> list[PromotionalGrant]:
    """Active grants with credit left and usable on `day`, in the order they are spent
    (`PromotionalGrant.burn_order`)."""
    return sorted(
        (
            g
            for g in change.grants.values()
            if g.status == "active"
            and g.currency == currency
            and g.remaining.is_positive
            and g.usable_on(day)
        ),
        key=lambda g: g.burn_order,
    )


def positive_lots(change: Change, currency: str) -> list[CreditLot]:
    return sorted(
        (
            lot
            for lot in change.lots.values()
            if lot.status == "active" and lot.currency == currency and lot.remaining.is_positive
        ),
        key=lambda lot: lot.seq,
    )


def finish(change: Change, also_settle: tuple[str, ...] = ()) -> Outcome:
    """End an operation: settle every currency it touched, then freeze the outcome."""
    settle(change, also_settle)
    return change.outcome()
