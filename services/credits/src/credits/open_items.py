"""What a message can still change, and what it changed: the credits service loads one
customer's *open items* per message, never the whole history, and writes back only the
records that changed. Pure: no I/O.

The open items of a customer are the records whose figures a message can still move:

- invoices still `open` (an amount due) in a currency where the message may apply credit
  (`credit_currencies`), each with every active application on it;
- promotional grants with credit left (`active`, remaining > 0) and credit-balance lots
  with a non-zero remaining (a shortfall lot is below zero);
- payments still parked (waiting for their invoice);
- the source (grant or lot) of every application loaded.

Settled history — paid and voided invoices, exhausted grants, spent lots, applied and
reversed payments, refunds, deductions — stays stored and is read only when a message
names it (`Wanted`): a duplicate check by id, the invoice a payment or a void names, the
lots a reversal withdraws and the invoices they paid, the grants held back until an
ApplyCredits. `open_items` is the rule, on a whole `CustomerLedger`; the store loads
the same records with SQL, and tests hold the two to each other. Every operation of
`credits.domain` decides on the open items exactly as on the whole ledger (property-tested),
because it reads only (a) records by id, (b) invoices with an amount due, and only where
credit is or arrives, (c) sources with credit left, and (d) sums in which a spent source
counts zero.

`changes(before, after)` is what an operation changed, as the store writes it: new or
changed grants, lots, invoices and payments (one row each, upserted); new applications,
releases, refunds and deductions (appended; an application is never rewritten, its
release is a row of its own).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from credits.customer import (
    PAYMENT_ORIGINS,
    Application,
    CreditLot,
    CustomerLedger,
    Deduction,
    Invoice,
    Payment,
    PromotionalGrant,
    Refund,
    manual_lot_id,
)
from tally_contracts import MessageData
from tally_contracts.credits import (
    ApplyCredits,
    ChangeCreditCurrency,
    DeleteCreditEntry,
    GrantCredit,
)
from tally_contracts.invoicing import InvoiceFinalized, InvoiceVoided
from tally_contracts.payments import (
    PaymentRecorded,
    PaymentReversed,
    PromotionalCreditsDeducted,
    RefundRequested,
)


@dataclass(frozen=True, slots=True)
class Wanted:
    """Records a message may read beyond the open items, by id."""

    invoice_ids: frozenset[str] = frozenset()
    payment_ids: frozenset[str] = frozenset()  # and the active applications paid from them
    grant_ids: frozenset[str] = frozenset()
    lot_ids: frozenset[str] = frozenset()  # and the active applications paid from them
    lots_of_payments: frozenset[str] = frozenset()  # lots made from these payments, and their applications
    refund_ids: frozenset[str] = frozenset()
    deduction_ids: frozenset[str] = frozenset()
    held: bool = False  # every grant and lot still held back (apply_to_existing: false)
    credit_currencies: frozenset[str] = frozenset()  # where the message itself may bring credit


def _ids(*ids: str | None) -> frozenset[str]:
    return frozenset(i for i in ids if i is not None)


def wanted_by(data: MessageData) -> Wanted:
    """What the operation for `data` reads beyond the open items."""
    match data:
        case GrantCredit():
            return Wanted(
                grant_ids=_ids(data.grant_id),
                lot_ids=_ids(manual_lot_id(data.grant_id)),
                credit_currencies=_ids(data.amount.currency),
            )
        case ChangeCreditCurrency():
            return Wanted(
                grant_ids=_ids(data.grant_id),
                lot_ids=_ids(manual_lot_id(data.grant_id)),
                credit_currencies=_ids(data.currency),
            )
        case DeleteCreditEntry():
            return Wanted(grant_ids=_ids(data.grant_id), lot_ids=_ids(manual_lot_id(data.grant_id)))
        case ApplyCredits():
            return Wanted(invoice_ids=_ids(data.invoice_id), held=data.invoice_id is None)
        case InvoiceFinalized():  # a negative total becomes credit
            negative = data.total.amount < 0
            return Wanted(
                invoice_ids=_ids(data.invoice_id, data.regenerated_from),
                credit_currencies=_ids(data.total.currency) if negative else frozenset(),
            )
        case InvoiceVoided():
            return Wanted(invoice_ids=_ids(data.invoice_id), lot_ids=_ids(f"invoice:{data.invoice_id}"))
        case PaymentRecorded():  # an overpayment becomes credit
            return Wanted(
                invoice_ids=_ids(data.invoice_id),
                payment_ids=_ids(data.payment_id),
                credit_currencies=_ids(data.amount.currency),
            )
        case PaymentReversed():
            return Wanted(payment_ids=_ids(data.payment_id), lots_of_payments=_ids(data.payment_id))
        case RefundRequested():
            return Wanted(refund_ids=_ids(data.refund_id))
        case PromotionalCreditsDeducted():
            return Wanted(deduction_ids=_ids(data.deduction_id), grant_ids=_ids(data.grant_id))
        case _:
            return Wanted()  # ExpireCredits: grants with credit left are open items


def _refund_id(refund: Refund) -> str:
    return refund.refund_id


def _deduction_id(deduction: Deduction) -> str:
    return deduction.deduction_id


def is_open_invoice(invoice: Invoice) -> bool:
    return invoice.status == "open"


def is_open_grant(grant: PromotionalGrant) -> bool:
    return grant.status == "active" and grant.remaining.is_positive


def is_open_lot(lot: CreditLot) -> bool:
    return lot.status == "active" and not lot.remaining.is_zero


def is_held(record: PromotionalGrant | CreditLot) -> bool:
    """Held back until an ApplyCredits lifts the hold (which lifts it on every record)."""
    return record.first_eligible_seq > 0


def is_withdrawable(lot: CreditLot, wanted: Wanted) -> bool:
    """A lot whose applications the message may release: named, or made from a named payment."""
    return lot.lot_id in wanted.lot_ids or (
        lot.origin in PAYMENT_ORIGINS and lot.origin_id in wanted.lots_of_payments
    )


def credit_currencies(
    wanted: Wanted,
    grants: Iterable[PromotionalGrant],
    lots: Iterable[CreditLot],
    named: Iterable[Invoice],
    payments: Iterable[Payment],
) -> set[str]:
    """The currencies in which the message may apply credit to open invoices: where credit is
    left, where the message brings credit, and those of the invoices and payments it names
    (a void or a reversal releases credit in its invoice's currency; a parked payment's
    excess becomes credit). Elsewhere no invoice can be paid, so none is loaded."""
    return (
        set(wanted.credit_currencies)
        | {g.currency for g in grants if is_open_grant(g)}
        | {lot.currency for lot in lots if is_open_lot(lot)}
        | {i.currency for i in named}
        | {p.amount.currency for p in payments}
    )


def open_items(state: CustomerLedger, wanted: Wanted) -> CustomerLedger:
    """The part of `state` a message with `wanted` is decided on (records keep their order)."""
    active = [a for a in state.applications if a.status == "active"]
    withdrawable = {lot.lot_id for lot in state.lots if is_withdrawable(lot, wanted)}
    named_ids = set(wanted.invoice_ids) | {
        a.invoice_id
        for a in active
        if (a.source_type == "payment" and a.source_id in wanted.payment_ids)
        or (a.source_type == "credit_balance" and a.source_id in withdrawable)
    }
    payments = tuple(p for p in state.payments if p.status == "parked" or p.payment_id in wanted.payment_ids)
    currencies = credit_currencies(
        wanted,
        state.grants,
        state.lots,
        (i for i in state.invoices if i.invoice_id in named_ids),
        payments,
    )
    invoices = tuple(
        i
        for i in state.invoices
        if i.invoice_id in named_ids or (is_open_invoice(i) and i.currency in currencies)
    )
    invoice_ids = {i.invoice_id for i in invoices}
    applications = tuple(a for a in active if a.invoice_id in invoice_ids)
    sources = {(a.source_type, a.source_id) for a in applications}
    grants = tuple(
        g
        for g in state.grants
        if is_open_grant(g)
        or g.grant_id in wanted.grant_ids
        or ("promotional", g.grant_id) in sources
        or (wanted.held and is_held(g))
    )
    lots = tuple(
        lot
        for lot in state.lots
        if is_open_lot(lot)
        or lot.lot_id in withdrawable
        or ("credit_balance", lot.lot_id) in sources
        or (wanted.held and is_held(lot))
    )
    return CustomerLedger(
        customer_id=state.customer_id,
        grants=grants,
        lots=lots,
        invoices=invoices,
        payments=payments,
        applications=applications,
        # by id: a refund or a deduction is only ever looked up by its id
        refunds=tuple(sorted((r for r in state.refunds if r.refund_id in wanted.refund_ids), key=_refund_id)),
        deductions=tuple(
            sorted((d for d in state.deductions if d.deduction_id in wanted.deduction_ids), key=_deduction_id)
        ),
        next_seq=state.next_seq,
    )


@dataclass(frozen=True, slots=True)
class Changes:
    """What one operation changed, record by record, in the order it made them."""

    customer_id: str
    next_seq: int
    seq_changed: bool
    grants: tuple[PromotionalGrant, ...]  # new or changed: upserted
    lots: tuple[CreditLot, ...]
    invoices: tuple[Invoice, ...]
    new_invoice_ids: frozenset[str]  # their lines are written once, with them
    payments: tuple[Payment, ...]
    applications: tuple[Application, ...]  # new: appended
    released: tuple[Application, ...]  # released now: the release is appended
    refunds: tuple[Refund, ...]  # new: appended
    deductions: tuple[Deduction, ...]


Record = TypeVar("Record", PromotionalGrant, CreditLot, Invoice, Payment, Application, Refund, Deduction)


def _changed(
    before: Iterable[Record], after: Iterable[Record], key: Callable[[Record], str]
) -> tuple[Record, ...]:
    known = {key(r): r for r in before}
    return tuple(r for r in after if known.get(key(r)) != r)


def _new(
    before: Iterable[Record], after: Iterable[Record], key: Callable[[Record], str]
) -> tuple[Record, ...]:
    known = {key(r) for r in before}
    return tuple(r for r in after if key(r) not in known)


def changes(before: CustomerLedger, after: CustomerLedger) -> Changes:
    """The records of `after` that differ from `before` (the state they were decided on)."""
    released_before = {a.application_id for a in before.applications if a.status == "released"}
    return Changes(
        customer_id=after.customer_id,
        next_seq=after.next_seq,
        seq_changed=after.next_seq != before.next_seq,
        grants=_changed(before.grants, after.grants, lambda g: g.grant_id),
        lots=_changed(before.lots, after.lots, lambda lot: lot.lot_id),
        invoices=_changed(before.invoices, after.invoices, lambda i: i.invoice_id),
        new_invoice_ids=frozenset(
            i.invoice_id for i in _new(before.invoices, after.invoices, lambda i: i.invoice_id)
        ),
        payments=_changed(before.payments, after.payments, lambda p: p.payment_id),
        applications=_new(before.applications, after.applications, lambda a: a.application_id),
        released=tuple(
            a
            for a in after.applications
            if a.status == "released" and a.application_id not in released_before
        ),
        refunds=_new(before.refunds, after.refunds, lambda r: r.refund_id),
        deductions=_new(before.deductions, after.deductions, lambda d: d.deduction_id),
    )
