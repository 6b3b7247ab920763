"""The credits service's only SQL: one customer's open items loaded per message, what the
message changed written back (records upserted, history appended), the append-only
double-entry ledger, and the read models the HTTP API serves.

Which records are open, and why a message needs no others, is `credits.open_items`; the
queries here select the same records (tests hold them to `open_items`). Every query
names its columns and is keyed by customer_id first, so its cost follows the customer's
open items, never the customer's history.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from asyncpg import Record

from credits.change import Cause
from credits.customer import (
    Application,
    CreditLot,
    CustomerLedger,
    Deduction,
    GrantScope,
    Invoice,
    InvoiceLine,
    LinePart,
    Payment,
    PromotionalGrant,
    Refund,
)
from credits.ledger import LedgerEntry
from credits.open_items import Changes, Wanted, credit_currencies
from tally_contracts import MessageData, Money
from tally_contracts.credits import CreditBalanceChanged, InvoiceBalanceChanged
from tally_contracts.money import at_minor_unit
from tally_messaging.db import DbConnection


@dataclass(frozen=True, slots=True)
class InvoiceRow:
    invoice_id: str
    customer_id: str
    currency: str
    total: Decimal
    credits_applied: Decimal
    payments_applied: Decimal
    amount_due: Decimal
    status: str
    issued_on: dt.date | None
    regenerated_from: str | None


@dataclass(frozen=True, slots=True)
class BalanceRow:
    currency: str
    promotional: Decimal
    credit_balance: Decimal


@dataclass(frozen=True, slots=True)
class PostingRow:
    account: str
    amount: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class EntryRow:
    entry_id: str
    cause_id: str
    cause_type: str
    cause_day: dt.date
    memo: str
    recorded_at: dt.datetime
    postings: tuple[PostingRow, ...]


# -- reading records -----------------------------------------------------------------------

_GRANT_COLUMNS = (
    "grant_id, granted_amount, granted_currency, currency, amount, remaining, expired, deducted,"
    " expires_at, seq, source, reason, first_eligible_seq, status, priority, scoped, scope_line_kind,"
    " scope_service"
)
_LOT_COLUMNS = (
    "lot_id, origin, origin_id, currency, amount, remaining, seq, status, first_eligible_seq, source, reason"
)
_APPLICATION_COLUMNS = (
    "a.application_id, a.invoice_id, a.source_type, a.source_id, a.currency, a.amount, a.part_count"
)
_ACTIVE = (
    "not exists (select from credit_application_releases r"
    " where r.customer_id = a.customer_id and r.application_id = a.application_id)"
)

_LOAD_CUSTOMER = "select next_seq from credit_customers where customer_id = $1 for update"
_WITHDRAWABLE_LOTS = (
    "select lot_id from credit_lots where customer_id = $1"
    " and (lot_id = any($2::text[]) or (origin_id = any($3::text[])"
    " and origin in ('overpayment', 'released_payment')))"
)
_PAYING_FROM = (
    "select a.invoice_id, a.source_type, a.source_id from credit_applications a"
    f" where a.customer_id = $1 and a.source_id = any($2::text[]) and {_ACTIVE}"
)
_LOAD_APPLICATION_LINES = (
    "select application_id, line_id, amount from credit_application_lines"
    " where customer_id = $1 and application_id = any($2::text[]) order by application_id, n"
)
_LOAD_GRANTS_BY_ID = (
    f"select {_GRANT_COLUMNS} from credit_grants where customer_id = $1 and grant_id = any($2::text[])"
)
_LOAD_LOTS_BY_ID = (
    f"select {_LOT_COLUMNS} from credit_lots where customer_id = $1 and lot_id = any($2::text[])"
)
_LOAD_REFUNDS = (
    "select refund_id, currency, amount, status from credit_refunds"
    " where customer_id = $1 and refund_id = any($2::text[])"
)
_LOAD_DEDUCTIONS = (
    "select deduction_id, currency, amount from credit_deductions"
    " where customer_id = $1 and deduction_id = any($2::text[])"
)


_LOAD_RECORDS = """
select
    array(select g from credit_grants g where customer_id = $1 and status = 'active' and remaining > 0
          union select g from credit_grants g where customer_id = $1 and grant_id = any($2::text[])
          union select g from credit_grants g where $3 and customer_id = $1 and first_eligible_seq > 0)
        as grants,
    array(select l from credit_lots l where customer_id = $1 and status = 'active' and remaining <> 0
          union select l from credit_lots l where customer_id = $1 and lot_id = any($4::text[])
          union select l from credit_lots l where $3 and customer_id = $1 and first_eligible_seq > 0)
        as lots,
    array(select p from credit_payments p where customer_id = $1 and status = 'parked'
          union select p from credit_payments p where customer_id = $1 and payment_id = any($5::text[]))
        as payments,
    array(select i from credit_invoices i where customer_id = $1 and invoice_id = any($6::text[])) as invoices
"""
"""The open grants, lots and payments (`credits.open_items`), those named, and the invoices
named, in one round trip (whole rows, as arrays; ordered in Python)."""
_LOAD_INVOICE_RECORDS = f"""
with invoices as (
    select i from credit_invoices i where customer_id = $1 and status = 'open' and currency = any($2::text[])
    union select i from credit_invoices i where customer_id = $1 and invoice_id = any($3::text[])
), applications as (
    select a from credit_applications a
    where a.customer_id = $1 and a.invoice_id in (select (i).invoice_id from invoices) and {_ACTIVE}
)
select
    array(select i from invoices) as invoices,
    array(select l from credit_invoice_lines l where l.customer_id = $1
          and l.invoice_id in (select (i).invoice_id from invoices where (i).line_count > 0)) as lines,
    array(select a from applications) as applications,
    array(select p from credit_application_lines p where p.customer_id = $1
          and p.application_id in (select (a).application_id from applications where (a).part_count > 0)) as parts
"""
"""The open invoices in these currencies and the invoices named, with their lines, their
active applications and the applications' lines, in one round trip (ordered in Python)."""


def _money(amount: Decimal, currency: str) -> Money:
    return Money.computed(amount, currency)


def _grant(r: Record) -> PromotionalGrant:
    currency = r["currency"]
    return PromotionalGrant(
        grant_id=r["grant_id"],
        granted=_money(r["granted_amount"], r["granted_currency"]),
        amount=_money(r["amount"], currency),
        remaining=_money(r["remaining"], currency),
        expired=_money(r["expired"], currency),
        deducted=_money(r["deducted"], currency),
        expires_at=r["expires_at"],
        seq=r["seq"],
        source=r["source"],
        reason=r["reason"],
        first_eligible_seq=r["first_eligible_seq"],
        status=r["status"],
        priority=r["priority"],
        scope=GrantScope(r["scope_line_kind"], r["scope_service"]) if r["scoped"] else None,
    )


def _lot(r: Record) -> CreditLot:
    currency = r["currency"]
    return CreditLot(
        lot_id=r["lot_id"],
        origin=r["origin"],
        origin_id=r["origin_id"],
        amount=_money(r["amount"], currency),
        remaining=_money(r["remaining"], currency),
        seq=r["seq"],
        status=r["status"],
        first_eligible_seq=r["first_eligible_seq"],
        source=r["source"],
        reason=r["reason"],
    )


def _invoice(r: Record, lines: dict[str, list[InvoiceLine]]) -> Invoice:
    return Invoice(
        invoice_id=r["invoice_id"],
        total=_money(r["total"], r["currency"]),
        issued_on=r["issued_on"],
        seq=r["seq"],
        order=r["sort_order"],
        status=r["status"],
        regenerated_from=r["regenerated_from"],
        lines=tuple(lines.get(r["invoice_id"], ())),
    )


def _application(r: Record, parts: dict[str, list[LinePart]]) -> Application:
    return Application(
        application_id=r["application_id"],
        invoice_id=r["invoice_id"],
        source_type=r["source_type"],
        source_id=r["source_id"],
        amount=_money(r["amount"], r["currency"]),
        lines=tuple(parts.get(r["application_id"], ())),
    )


def _payment(r: Record) -> Payment:
    return Payment(
        r["payment_id"], r["invoice_id"], _money(r["amount"], r["currency"]), r["received_on"], r["status"]
    )


# -- writing records -----------------------------------------------------------------------

_SAVE_CUSTOMER = (
    "insert into credit_customers (customer_id, next_seq) select $1, $2 where $3"
    " on conflict (customer_id) do update set next_seq = excluded.next_seq"
)
_SAVE_GRANTS = """
insert into credit_grants (customer_id, grant_id, granted_amount, granted_currency, currency, amount,
    remaining, expired, deducted, expires_at, seq, source, reason, first_eligible_seq, status, priority,
    scoped, scope_line_kind, scope_service)
select $1, g, ga, gc, c, a, r, e, d, x, s, so, re, f, st, p, sc, lk, sv
from unnest($2::text[], $3::numeric[], $4::text[], $5::text[], $6::numeric[], $7::numeric[],
    $8::numeric[], $9::numeric[], $10::date[], $11::bigint[], $12::text[], $13::text[], $14::bigint[],
    $15::text[], $16::int[], $17::boolean[], $18::text[], $19::text[])
    as u(g, ga, gc, c, a, r, e, d, x, s, so, re, f, st, p, sc, lk, sv)
on conflict (customer_id, grant_id) do update set currency = excluded.currency, amount = excluded.amount,
    remaining = excluded.remaining, expired = excluded.expired, deducted = excluded.deducted,
    first_eligible_seq = excluded.first_eligible_seq, status = excluded.status
"""
_SAVE_LOTS = """
insert into credit_lots (customer_id, lot_id, origin, origin_id, currency, amount, remaining, seq, status,
    first_eligible_seq, source, reason)
select $1, l, o, oi, c, a, r, s, st, f, so, re
from unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::numeric[], $7::numeric[], $8::bigint[],
    $9::text[], $10::bigint[], $11::text[], $12::text[]) as u(l, o, oi, c, a, r, s, st, f, so, re)
on conflict (customer_id, lot_id) do update set remaining = excluded.remaining, status = excluded.status,
    first_eligible_seq = excluded.first_eligible_seq
"""
_SAVE_INVOICES = """
insert into credit_invoices (customer_id, invoice_id, currency, total, issued_on, seq, sort_order, status,
    regenerated_from, line_count)
select $1, i, c, t, io, s, o, st, rf, lc
from unnest($2::text[], $3::text[], $4::numeric[], $5::date[], $6::bigint[], $7::bigint[], $8::text[],
    $9::text[], $10::int[]) as u(i, c, t, io, s, o, st, rf, lc)
on conflict (customer_id, invoice_id) do update set status = excluded.status
"""
_SAVE_INVOICE_LINES = """
insert into credit_invoice_lines (customer_id, invoice_id, n, line_id, kind, service, amount)
select $1, i, n, l, k, s, a
from unnest($2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::numeric[]) as u(i, n, l, k, s, a)
"""
_SAVE_PAYMENTS = """
insert into credit_payments (customer_id, payment_id, invoice_id, currency, amount, received_on, status)
select $1, p, i, c, a, r, s
from unnest($2::text[], $3::text[], $4::text[], $5::numeric[], $6::date[], $7::text[])
    with ordinality as u(p, i, c, a, r, s, o)
order by o
on conflict (customer_id, payment_id) do update set status = excluded.status
"""
_SAVE_APPLICATIONS = """
insert into credit_applications (customer_id, application_id, invoice_id, source_type, source_id, currency,
    amount, part_count)
select $1, ap, i, st, si, c, a, pc
from unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::numeric[], $8::int[])
    with ordinality as u(ap, i, st, si, c, a, pc, o)
order by o
"""
_SAVE_APPLICATION_LINES = """
insert into credit_application_lines (customer_id, application_id, n, line_id, amount)
select $1, ap, n, l, a from unnest($2::text[], $3::int[], $4::text[], $5::numeric[]) as u(ap, n, l, a)
"""
_SAVE_RELEASES = """
insert into credit_application_releases (customer_id, application_id, released_by)
select $1, ap, $3 from unnest($2::text[]) as u(ap)
"""
_SAVE_REFUNDS = """
insert into credit_refunds (customer_id, refund_id, currency, amount, status)
select $1, r, c, a, s from unnest($2::text[], $3::text[], $4::numeric[], $5::text[]) as u(r, c, a, s)
"""
_SAVE_DEDUCTIONS = """
insert into credit_deductions (customer_id, deduction_id, currency, amount)
select $1, d, c, a from unnest($2::text[], $3::text[], $4::numeric[]) as u(d, c, a)
"""
_SAVE_ENTRIES = """
insert into ledger_entries (entry_id, customer_id, cause_id, cause_type, cause_day, memo)
select e, $1, ci, $2, $3, m from unnest($4::text[], $5::text[], $6::text[]) with ordinality as t(e, ci, m, o)
order by o
"""
_SAVE_POSTINGS = """
insert into ledger_postings (entry_id, n, account, amount, currency)
select e, n, a, x, c from unnest($2::text[], $3::int[], $4::text[], $5::numeric[], $6::text[])
    as u(e, n, a, x, c)
"""
_SAVE_INVOICE_BALANCES = """
insert into invoice_balances (customer_id, invoice_id, currency, total, credits_applied, payments_applied,
    amount_due, status, issued_on, regenerated_from, sort_order, seq)
select $1, i, c, t, ca, pa, d, s, io, rf, o, q
from unnest($2::text[], $3::text[], $4::numeric[], $5::numeric[], $6::numeric[], $7::numeric[], $8::text[],
    $9::date[], $10::text[], $11::bigint[], $12::bigint[]) as u(i, c, t, ca, pa, d, s, io, rf, o, q)
on conflict (customer_id, invoice_id) do update set total = excluded.total,
    credits_applied = excluded.credits_applied, payments_applied = excluded.payments_applied,
    amount_due = excluded.amount_due, status = excluded.status
"""
_SAVE_CREDIT_BALANCES = """
insert into credit_balances (customer_id, currency, promotional, credit_balance)
select $1, c, p, b from unnest($2::text[], $3::numeric[], $4::numeric[]) as u(c, p, b)
on conflict (customer_id, currency) do update
set promotional = excluded.promotional, credit_balance = excluded.credit_balance
"""


_SAVE_PARTS = (
    ("customer", _SAVE_CUSTOMER, 2),
    ("grants", _SAVE_GRANTS, 18),
    ("lots", _SAVE_LOTS, 11),
    ("invoices", _SAVE_INVOICES, 9),
    ("invoice_lines", _SAVE_INVOICE_LINES, 6),
    ("payments", _SAVE_PAYMENTS, 6),
    ("applications", _SAVE_APPLICATIONS, 7),
    ("application_lines", _SAVE_APPLICATION_LINES, 4),
    ("releases", _SAVE_RELEASES, 2),
    ("refunds", _SAVE_REFUNDS, 4),
    ("deductions", _SAVE_DEDUCTIONS, 3),
    ("entries", _SAVE_ENTRIES, 5),
    ("postings", _SAVE_POSTINGS, 5),
    ("invoice_balances", _SAVE_INVOICE_BALANCES, 11),
    ("credit_balances", _SAVE_CREDIT_BALANCES, 3),
)
"""Each write as (name, statement, its parameters after $1 = customer_id)."""


def _one_statement(parts: Sequence[tuple[str, str, int]]) -> str:
    """The writes as one statement (writable CTEs): one round trip for all of them, an empty
    array inserting nothing. Each part's `$2…` are renumbered after the parts before it;
    `$1` stays the customer. All parts see the same snapshot and touch different tables;
    foreign keys (postings → entries) are checked at the statement's end."""
    ctes, offset = [], 0
    for name, sql, count in parts:
        ctes.append(f"{name} as ({_shift_parameters(sql, offset).strip()})")
        offset += count
    return "with " + ",\n".join(ctes) + "\nselect 1"


def _shift_parameters(sql: str, by: int) -> str:
    """`sql` with `$n` (n ≥ 2) renumbered `$(n + by)`."""

    def shifted(match: re.Match[str]) -> str:
        n = int(match[1])
        return match[0] if n == 1 else f"${n + by}"

    return re.sub(r"\$(\d+)", shifted, sql)


_SAVE = _one_statement(_SAVE_PARTS)


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows to columns, for unnest; `width` empty columns when there are no rows."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


def _grant_row(g: PromotionalGrant) -> tuple[Any, ...]:
    scope = g.scope
    return (
        g.grant_id,
        g.granted.amount,
        g.granted.currency,
        g.currency,
        g.amount.amount,
        g.remaining.amount,
        g.expired.amount,
        g.deducted.amount,
        g.expires_at,
        g.seq,
        g.source,
        g.reason,
        g.first_eligible_seq,
        g.status,
        g.priority,
        scope is not None,
        scope.line_kind if scope else None,
        scope.service if scope else None,
    )


def _lot_row(lot: CreditLot) -> tuple[Any, ...]:
    return (
        lot.lot_id,
        lot.origin,
        lot.origin_id,
        lot.currency,
        lot.amount.amount,
        lot.remaining.amount,
        lot.seq,
        lot.status,
        lot.first_eligible_seq,
        lot.source,
        lot.reason,
    )


def _invoice_row(i: Invoice) -> tuple[Any, ...]:
    return (
        i.invoice_id,
        i.currency,
        i.total.amount,
        i.issued_on,
        i.seq,
        i.order,
        i.status,
        i.regenerated_from,
        len(i.lines),
    )


def _record_arguments(changes: Changes, cause: Cause) -> list[Any]:
    """The arguments of the record writes, in `_SAVE_PARTS` order (customer to deductions)."""
    lines = [
        (i.invoice_id, n, line.line_id, line.kind, line.service, line.amount.amount)
        for i in changes.invoices
        if i.invoice_id in changes.new_invoice_ids
        for n, line in enumerate(i.lines, start=1)
    ]
    payments = [
        (p.payment_id, p.invoice_id, p.amount.currency, p.amount.amount, p.received_on, p.status)
        for p in changes.payments
    ]
    applications = [
        (
            a.application_id,
            a.invoice_id,
            a.source_type,
            a.source_id,
            a.amount.currency,
            a.amount.amount,
            len(a.lines),
        )
        for a in changes.applications
    ]
    parts = [
        (a.application_id, n, part.line_id, part.amount.amount)
        for a in changes.applications
        for n, part in enumerate(a.lines, start=1)
    ]
    return [
        changes.next_seq,
        changes.seq_changed,
        *_columns([_grant_row(g) for g in changes.grants], 18),
        *_columns([_lot_row(lot) for lot in changes.lots], 11),
        *_columns([_invoice_row(i) for i in changes.invoices], 9),
        *_columns(lines, 6),
        *_columns(payments, 6),
        *_columns(applications, 7),
        *_columns(parts, 4),
        [a.application_id for a in changes.released],
        cause.message_id,
        *_columns([(r.refund_id, r.amount.currency, r.amount.amount, r.status) for r in changes.refunds], 4),
        *_columns([(d.deduction_id, d.amount.currency, d.amount.amount) for d in changes.deductions], 3),
    ]


def _entry_arguments(entries: list[LedgerEntry], cause: Cause, cause_type: str) -> list[Any]:
    """The arguments of the ledger entries and their postings."""
    postings = [
        (e.entry_id, n, p.account, p.amount.amount, p.amount.currency)
        for e in entries
        for n, p in enumerate(e.postings, start=1)
    ]
    return [
        cause_type,
        cause.on,
        [e.entry_id for e in entries],
        [e.cause_id for e in entries],
        [e.memo for e in entries],
        *_columns(postings, 5),
    ]


def _read_model_arguments(state: CustomerLedger, events: list[MessageData]) -> list[Any]:
    """The arguments of the read models: the invoices' and the credit balances' rows."""
    invoices = {i.invoice_id: i for i in state.invoices}
    rows = []
    for b in events:
        if isinstance(b, InvoiceBalanceChanged):
            invoice = invoices[b.invoice_id]
            rows.append(
                (
                    b.invoice_id,
                    b.total.currency,
                    b.total.amount,
                    b.credits_applied.amount,
                    b.payments_applied.amount,
                    b.amount_due.amount,
                    b.status,
                    invoice.issued_on,
                    invoice.regenerated_from,
                    invoice.order,
                    invoice.seq,
                )
            )
    sums = [
        (c.currency, c.promotional_available.amount, c.balance_available.amount)
        for c in events
        if isinstance(c, CreditBalanceChanged)
    ]
    return [*_columns(rows, 11), *_columns(sums, 3)]


class CreditsStore:
    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn

    # -- the open items of one customer (write side) -----------------------------------

    async def load(self, customer_id: str, wanted: Wanted) -> CustomerLedger:
        """The customer's open items and what `wanted` names (`credits.open_items`), the
        customer row locked until commit; an empty ledger if the customer is new."""
        conn = self.conn
        next_seq = await conn.fetchval(_LOAD_CUSTOMER, customer_id)
        withdrawable: list[str] = []
        if wanted.lot_ids or wanted.lots_of_payments:
            rows = await conn.fetch(
                _WITHDRAWABLE_LOTS, customer_id, sorted(wanted.lot_ids), sorted(wanted.lots_of_payments)
            )
            withdrawable = [r["lot_id"] for r in rows]
        named_ids = set(wanted.invoice_ids)
        if wanted.payment_ids or withdrawable:
            rows = await conn.fetch(_PAYING_FROM, customer_id, [*sorted(wanted.payment_ids), *withdrawable])
            named_ids |= {
                r["invoice_id"]
                for r in rows
                if (r["source_type"] == "payment" and r["source_id"] in wanted.payment_ids)
                or (r["source_type"] == "credit_balance" and r["source_id"] in withdrawable)
            }
        grant_ids, lot_ids = set(wanted.grant_ids), set(wanted.lot_ids) | set(withdrawable)
        found = await conn.fetchrow(
            _LOAD_RECORDS,
            customer_id,
            sorted(grant_ids),
            wanted.held,
            sorted(lot_ids),
            sorted(wanted.payment_ids),
            sorted(named_ids),
        )
        assert found is not None  # one row, always
        grants = {g.grant_id: g for g in map(_grant, found["grants"])}
        lots = {lot.lot_id: lot for lot in map(_lot, found["lots"])}
        payments = [_payment(r) for r in sorted(found["payments"], key=lambda r: r["position"])]
        named = [_invoice(r, {}) for r in found["invoices"]]
        currencies = credit_currencies(wanted, grants.values(), lots.values(), named, payments)
        invoices: list[Invoice] = []
        applications: list[Application] = []
        if currencies or named:
            invoices, applications = await self._invoices_and_applications(
                customer_id, sorted(currencies), sorted(i.invoice_id for i in named)
            )
        missing_grants = sorted(
            {a.source_id for a in applications if a.source_type == "promotional"} - grants.keys()
        )
        if missing_grants:
            rows = await conn.fetch(_LOAD_GRANTS_BY_ID, customer_id, missing_grants)
            grants.update((g.grant_id, g) for g in map(_grant, rows))
        missing_lots = sorted(
            {a.source_id for a in applications if a.source_type == "credit_balance"} - lots.keys()
        )
        if missing_lots:
            rows = await conn.fetch(_LOAD_LOTS_BY_ID, customer_id, missing_lots)
            lots.update((lot.lot_id, lot) for lot in map(_lot, rows))
        refunds: list[Refund] = []
        if wanted.refund_ids:
            rows = await conn.fetch(_LOAD_REFUNDS, customer_id, sorted(wanted.refund_ids))
            refunds = [Refund(r["refund_id"], _money(r["amount"], r["currency"]), r["status"]) for r in rows]
        deductions: list[Deduction] = []
        if wanted.deduction_ids:
            rows = await conn.fetch(_LOAD_DEDUCTIONS, customer_id, sorted(wanted.deduction_ids))
            deductions = [Deduction(r["deduction_id"], _money(r["amount"], r["currency"])) for r in rows]
        return CustomerLedger(
            customer_id=customer_id,
            grants=tuple(sorted(grants.values(), key=lambda g: g.seq)),
            lots=tuple(sorted(lots.values(), key=lambda lot: lot.seq)),
            invoices=tuple(invoices),
            payments=tuple(payments),
            applications=tuple(applications),
            refunds=tuple(refunds),
            deductions=tuple(deductions),
            next_seq=1 if next_seq is None else next_seq,
        )

    async def _invoices_and_applications(
        self, customer_id: str, currencies: list[str], invoice_ids: list[str]
    ) -> tuple[list[Invoice], list[Application]]:
        """The open invoices in `currencies` and those named, by seq, with their lines; and
        the active applications on them, in the order they were made, with their lines."""
        found = await self.conn.fetchrow(_LOAD_INVOICE_RECORDS, customer_id, currencies, invoice_ids)
        assert found is not None  # one row, always
        rows = sorted(found["invoices"], key=lambda r: r["seq"])
        currency = {r["invoice_id"]: r["currency"] for r in rows}
        lines: dict[str, list[InvoiceLine]] = {}
        for line in sorted(found["lines"], key=lambda r: (r["invoice_id"], r["n"])):
            invoice_id = line["invoice_id"]
            lines.setdefault(invoice_id, []).append(
                InvoiceLine(
                    line["line_id"],
                    line["kind"],
                    line["service"],
                    _money(line["amount"], currency[invoice_id]),
                )
            )
        applied = sorted(found["applications"], key=lambda r: r["position"])
        of_application = {r["application_id"]: r["currency"] for r in applied}
        parts: dict[str, list[LinePart]] = {}
        for part in sorted(found["parts"], key=lambda r: (r["application_id"], r["n"])):
            application_id = part["application_id"]
            parts.setdefault(application_id, []).append(
                LinePart(part["line_id"], _money(part["amount"], of_application[application_id]))
            )
        return [_invoice(r, lines) for r in rows], [_application(r, parts) for r in applied]

    async def _with_parts(self, customer_id: str, rows: list[Record]) -> list[Application]:
        parts: dict[str, list[LinePart]] = {}
        with_parts = [r["application_id"] for r in rows if r["part_count"]]
        if with_parts:
            currency = {r["application_id"]: r["currency"] for r in rows}
            for part in await self.conn.fetch(_LOAD_APPLICATION_LINES, customer_id, with_parts):
                application_id = part["application_id"]
                parts.setdefault(application_id, []).append(
                    LinePart(part["line_id"], _money(part["amount"], currency[application_id]))
                )
        return [_application(r, parts) for r in rows]

    async def save(
        self,
        changes: Changes,
        state: CustomerLedger,
        entries: Iterable[LedgerEntry],
        events: Iterable[MessageData],
        cause: Cause,
        cause_type: str,
    ) -> None:
        """Write what changed, in one round trip: records upserted, applications, releases,
        refunds, deductions and ledger entries appended, the read models updated. `state` is
        the outcome's."""
        await self.conn.execute(
            _SAVE,
            changes.customer_id,
            *_record_arguments(changes, cause),
            *_entry_arguments(list(entries), cause, cause_type),
            *_read_model_arguments(state, list(events)),
        )

    # -- reads -----------------------------------------------------------------------

    async def balances(self, customer_id: str) -> list[BalanceRow]:
        rows = await self.conn.fetch(
            "select currency, promotional, credit_balance from credit_balances"
            " where customer_id = $1 order by currency",
            customer_id,
        )
        return [BalanceRow(r["currency"], r["promotional"], r["credit_balance"]) for r in rows]

    async def invoices(self, customer_id: str) -> list[InvoiceRow]:
        rows = await self.conn.fetch(
            "select invoice_id, customer_id, currency, total, credits_applied, payments_applied,"
            " amount_due, status, issued_on, regenerated_from from invoice_balances"
            " where customer_id = $1 order by sort_order, seq",
            customer_id,
        )
        return [
            InvoiceRow(
                invoice_id=r["invoice_id"],
                customer_id=r["customer_id"],
                currency=r["currency"],
                total=r["total"],
                credits_applied=r["credits_applied"],
                payments_applied=r["payments_applied"],
                amount_due=r["amount_due"],
                status=r["status"],
                issued_on=r["issued_on"],
                regenerated_from=r["regenerated_from"],
            )
            for r in rows
        ]

    async def active_applications(self, customer_id: str) -> list[Application]:
        """What pays each of the customer's invoices now, in the order it was applied."""
        rows = await self.conn.fetch(
            f"select {_APPLICATION_COLUMNS} from credit_applications a"
            f" where a.customer_id = $1 and {_ACTIVE} order by a.position",
            customer_id,
        )
        return await self._with_parts(customer_id, rows)

    async def entries(self, customer_id: str) -> list[EntryRow]:
        rows = await self.conn.fetch(
            "select e.entry_id, e.cause_id, e.cause_type, e.cause_day, e.memo, e.recorded_at,"
            " p.account, p.amount, p.currency"
            " from ledger_entries e join ledger_postings p using (entry_id)"
            " where e.customer_id = $1 order by e.position, p.n",
            customer_id,
        )
        heads: dict[str, Any] = {}
        postings: dict[str, list[PostingRow]] = {}
        for r in rows:
            if r["entry_id"] not in heads:
                heads[r["entry_id"]] = r
                postings[r["entry_id"]] = []
            postings[r["entry_id"]].append(PostingRow(r["account"], r["amount"], r["currency"]))
        return [
            EntryRow(
                entry_id,
                r["cause_id"],
                r["cause_type"],
                r["cause_day"],
                r["memo"],
                r["recorded_at"],
                tuple(postings[entry_id]),
            )
            for entry_id, r in heads.items()
        ]


def amount_text(value: Decimal, currency: str) -> str:
    """An amount as the read API shows it: at least the currency's minor unit ("0.00")."""
    return format(at_minor_unit(value, currency), "f")
