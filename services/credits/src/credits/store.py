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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

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

_LOCK_CUSTOMERS = (
    "select customer_id, next_seq from credit_customers where customer_id = any($1::text[])"
    " order by customer_id for update"
)
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


def _named(table: str, alias: str, id_column: str, first: int) -> str:
    """Rows of `table` named by (customer, id) pairs: parameters `$first` (customers) and
    `$first+1` (ids), as two arrays of the same length."""
    return (
        f"select {alias} from {table} {alias} join unnest(${first}::text[], ${first + 1}::text[]) as n (c, id)"
        f" on {alias}.customer_id = n.c and {alias}.{id_column} = n.id"
    )


_LOAD_RECORDS = f"""
select
    array(select g from credit_grants g
          where g.customer_id = any($1::text[]) and g.status = 'active' and g.remaining > 0
          union {_named("credit_grants", "g", "grant_id", 2)}
          union select g from credit_grants g
          where g.customer_id = any($4::text[]) and g.first_eligible_seq > 0) as grants,
    array(select l from credit_lots l
          where l.customer_id = any($1::text[]) and l.status = 'active' and l.remaining <> 0
          union {_named("credit_lots", "l", "lot_id", 5)}
          union select l from credit_lots l
          where l.customer_id = any($4::text[]) and l.first_eligible_seq > 0) as lots,
    array(select p from credit_payments p where p.customer_id = any($1::text[]) and p.status = 'parked'
          union {_named("credit_payments", "p", "payment_id", 7)}) as payments,
    array({_named("credit_invoices", "i", "invoice_id", 9)}) as invoices
"""
"""For customers `$1`: the open grants, lots and payments (`credits.open_items`), those named
by (customer, id) pairs, the grants and lots still held back (customers `$4`), and the
invoices named, in one round trip (whole rows, as arrays; ordered in Python)."""
_LOAD_INVOICE_RECORDS = f"""
with invoices as (
    select i from credit_invoices i join unnest($1::text[], $2::text[]) as w (c, currency)
        on i.customer_id = w.c and i.currency = w.currency
    where i.status = 'open'
    union {_named("credit_invoices", "i", "invoice_id", 3)}
), applications as (
    select a from credit_applications a
    where (a.customer_id, a.invoice_id) in (select (i).customer_id, (i).invoice_id from invoices)
    and {_ACTIVE}
)
select
    array(select i from invoices) as invoices,
    array(select l from credit_invoice_lines l where (l.customer_id, l.invoice_id) in
          (select (i).customer_id, (i).invoice_id from invoices where (i).line_count > 0)) as lines,
    array(select a from applications) as applications,
    array(select p from credit_application_lines p where (p.customer_id, p.application_id) in
          (select (a).customer_id, (a).application_id from applications where (a).part_count > 0)) as parts
"""
"""The open invoices of (customer, currency) pairs and the invoices named by (customer, id)
pairs, with their lines, their active applications and the applications' lines, in one
round trip (ordered in Python)."""
_LOAD_GRANTS_BY_ID = f"select array({_named('credit_grants', 'g', 'grant_id', 1)})"
_LOAD_LOTS_BY_ID = f"select array({_named('credit_lots', 'l', 'lot_id', 1)})"
_LOAD_REFUNDS = f"select array({_named('credit_refunds', 'r', 'refund_id', 1)})"
_LOAD_DEDUCTIONS = f"select array({_named('credit_deductions', 'd', 'deduction_id', 1)})"


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


def _invoice(r: Record, lines: Sequence[InvoiceLine] = ()) -> Invoice:
    return Invoice(
        invoice_id=r["invoice_id"],
        total=_money(r["total"], r["currency"]),
        issued_on=r["issued_on"],
        seq=r["seq"],
        order=r["sort_order"],
        status=r["status"],
        regenerated_from=r["regenerated_from"],
        lines=tuple(lines),
    )


def _application(r: Record, parts: Sequence[LinePart] = ()) -> Application:
    return Application(
        application_id=r["application_id"],
        invoice_id=r["invoice_id"],
        source_type=r["source_type"],
        source_id=r["source_id"],
        amount=_money(r["amount"], r["currency"]),
        lines=tuple(parts),
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


def save_arguments(
    changes: Changes,
    state: CustomerLedger,
    entries: Iterable[LedgerEntry],
    events: Iterable[MessageData],
    cause: Cause,
    cause_type: str,
) -> list[Any]:
    """What `CreditsStore.save` writes, as the arguments of its one statement."""
    return [
        changes.customer_id,
        *_record_arguments(changes, cause),
        *_entry_arguments(list(entries), cause, cause_type),
        *_read_model_arguments(state, list(events)),
    ]


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


def _pairs(ids: Mapping[str, Iterable[str]]) -> tuple[list[str], list[str]]:
    """(customer, id) pairs as two arrays of one length, for `unnest($n, $n+1)`."""
    pairs = sorted((customer_id, i) for customer_id, named in ids.items() for i in named)
    return [c for c, _ in pairs], [i for _, i in pairs]


T = TypeVar("T")


def _by_customer(
    customers: Iterable[str], rows: Iterable[Record], make: Callable[[Record], T], key: Callable[[T], str]
) -> dict[str, dict[str, T]]:
    """Each customer's records, by id (every customer present, with none or some)."""
    found: dict[str, dict[str, T]] = {c: {} for c in customers}
    for row in rows:
        item = make(row)
        found[row["customer_id"]][key(item)] = item
    return found


def _keep(row: Record) -> Record:
    return row


def _grouped(customers: Iterable[str], rows: Iterable[Record]) -> dict[str, list[Record]]:
    found: dict[str, list[Record]] = {c: [] for c in customers}
    for row in rows:
        found[row["customer_id"]].append(row)
    return found


class CreditsStore:
    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn

    # -- the open items of one customer (write side) -----------------------------------

    async def load(self, customer_id: str, wanted: Wanted) -> CustomerLedger:
        """The customer's open items and what `wanted` names (`credits.open_items`), the
        customer row locked until commit; an empty ledger if the customer is new."""
        return (await self.load_many({customer_id: wanted}))[customer_id]

    async def load_many(self, wanted: Mapping[str, Wanted]) -> dict[str, CustomerLedger]:
        """`load` for several customers in the same round trips (three for any number of
        customers; more only for a withdrawal's lookups or an application whose source is
        no longer open): the customers' rows locked in sorted order until commit."""
        conn = self.conn
        customers = sorted(wanted)
        next_seq = {r["customer_id"]: r["next_seq"] for r in await conn.fetch(_LOCK_CUSTOMERS, customers)}
        named_invoices: dict[str, set[str]] = {}
        lot_ids: dict[str, set[str]] = {}
        for customer_id in customers:
            named, withdrawable = await self._withdrawal(customer_id, wanted[customer_id])
            named_invoices[customer_id] = set(wanted[customer_id].invoice_ids) | named
            lot_ids[customer_id] = set(wanted[customer_id].lot_ids) | withdrawable
        found = await conn.fetchrow(
            _LOAD_RECORDS,
            customers,
            *_pairs({c: w.grant_ids for c, w in wanted.items()}),
            [c for c in customers if wanted[c].held],
            *_pairs(lot_ids),
            *_pairs({c: w.payment_ids for c, w in wanted.items()}),
            *_pairs(named_invoices),
        )
        assert found is not None  # one row, always
        grants = _by_customer(customers, found["grants"], _grant, key=lambda g: g.grant_id)
        lots = _by_customer(customers, found["lots"], _lot, key=lambda lot: lot.lot_id)
        payments = _grouped(customers, found["payments"])
        named_rows = _by_customer(customers, found["invoices"], _keep, key=lambda r: r["invoice_id"])
        currencies = {
            c: credit_currencies(
                wanted[c],
                grants[c].values(),
                lots[c].values(),
                (_invoice(r) for r in named_rows[c].values()),
                (_payment(r) for r in payments[c]),
            )
            for c in customers
        }
        invoices, applications = await self._invoices_and_applications(
            currencies, {c: set(rows) for c, rows in named_rows.items()}
        )
        await self._sources_not_open(applications, grants, lots)
        refunds = _grouped(
            customers, await self._named_rows(_LOAD_REFUNDS, {c: w.refund_ids for c, w in wanted.items()})
        )
        deductions = _grouped(
            customers,
            await self._named_rows(_LOAD_DEDUCTIONS, {c: w.deduction_ids for c, w in wanted.items()}),
        )
        return {
            c: CustomerLedger(
                customer_id=c,
                grants=tuple(sorted(grants[c].values(), key=lambda g: g.seq)),
                lots=tuple(sorted(lots[c].values(), key=lambda lot: lot.seq)),
                invoices=tuple(invoices[c]),
                payments=tuple(_payment(r) for r in sorted(payments[c], key=lambda r: r["position"])),
                applications=tuple(applications[c]),
                refunds=tuple(
                    Refund(r["refund_id"], _money(r["amount"], r["currency"]), r["status"])
                    for r in sorted(refunds[c], key=lambda r: r["refund_id"])
                ),
                deductions=tuple(
                    Deduction(r["deduction_id"], _money(r["amount"], r["currency"]))
                    for r in sorted(deductions[c], key=lambda r: r["deduction_id"])
                ),
                next_seq=next_seq.get(c) or 1,
            )
            for c in customers
        }

    async def _withdrawal(self, customer_id: str, wanted: Wanted) -> tuple[set[str], set[str]]:
        """The invoices paid from the payments and lots `wanted` names, and the lots a
        withdrawal may take back (none asked: no query)."""
        conn = self.conn
        withdrawable: list[str] = []
        if wanted.lot_ids or wanted.lots_of_payments:
            rows = await conn.fetch(
                _WITHDRAWABLE_LOTS, customer_id, sorted(wanted.lot_ids), sorted(wanted.lots_of_payments)
            )
            withdrawable = [r["lot_id"] for r in rows]
        named: set[str] = set()
        if wanted.payment_ids or withdrawable:
            rows = await conn.fetch(_PAYING_FROM, customer_id, [*sorted(wanted.payment_ids), *withdrawable])
            named = {
                r["invoice_id"]
                for r in rows
                if (r["source_type"] == "payment" and r["source_id"] in wanted.payment_ids)
                or (r["source_type"] == "credit_balance" and r["source_id"] in withdrawable)
            }
        return named, set(withdrawable)

    async def _invoices_and_applications(
        self, currencies: Mapping[str, Iterable[str]], named: Mapping[str, Iterable[str]]
    ) -> tuple[dict[str, list[Invoice]], dict[str, list[Application]]]:
        """Per customer: its open invoices in its `currencies` and those `named`, by seq, with
        their lines; and the active applications on them, in the order they were made."""
        invoices: dict[str, list[Invoice]] = {c: [] for c in currencies}
        applications: dict[str, list[Application]] = {c: [] for c in currencies}
        if not any(currencies.values()) and not any(named.values()):
            return invoices, applications
        found = await self.conn.fetchrow(_LOAD_INVOICE_RECORDS, *_pairs(currencies), *_pairs(named))
        assert found is not None  # one row, always
        rows = sorted(found["invoices"], key=lambda r: r["seq"])
        currency = {(r["customer_id"], r["invoice_id"]): r["currency"] for r in rows}
        lines: dict[tuple[str, str], list[InvoiceLine]] = {}
        for line in sorted(found["lines"], key=lambda r: (r["customer_id"], r["invoice_id"], r["n"])):
            invoice = (line["customer_id"], line["invoice_id"])
            lines.setdefault(invoice, []).append(
                InvoiceLine(
                    line["line_id"], line["kind"], line["service"], _money(line["amount"], currency[invoice])
                )
            )
        for r in rows:
            invoices[r["customer_id"]].append(_invoice(r, lines.get((r["customer_id"], r["invoice_id"]), [])))
        applied = sorted(found["applications"], key=lambda r: r["position"])
        of_application = {(r["customer_id"], r["application_id"]): r["currency"] for r in applied}
        parts: dict[tuple[str, str], list[LinePart]] = {}
        for part in sorted(found["parts"], key=lambda r: (r["customer_id"], r["application_id"], r["n"])):
            application = (part["customer_id"], part["application_id"])
            parts.setdefault(application, []).append(
                LinePart(part["line_id"], _money(part["amount"], of_application[application]))
            )
        for r in applied:
            applications[r["customer_id"]].append(
                _application(r, parts.get((r["customer_id"], r["application_id"]), []))
            )
        return invoices, applications

    async def _sources_not_open(
        self,
        applications: Mapping[str, list[Application]],
        grants: dict[str, dict[str, PromotionalGrant]],
        lots: dict[str, dict[str, CreditLot]],
    ) -> None:
        """Adds the grants and lots the loaded applications were paid from that are not open
        (spent, expired): the domain reads an application's source."""
        missing_grants = {
            c: {a.source_id for a in applied if a.source_type == "promotional"} - grants[c].keys()
            for c, applied in applications.items()
        }
        for r in await self._named_rows(_LOAD_GRANTS_BY_ID, missing_grants):
            grant = _grant(r)
            grants[r["customer_id"]][grant.grant_id] = grant
        missing_lots = {
            c: {a.source_id for a in applied if a.source_type == "credit_balance"} - lots[c].keys()
            for c, applied in applications.items()
        }
        for r in await self._named_rows(_LOAD_LOTS_BY_ID, missing_lots):
            lot = _lot(r)
            lots[r["customer_id"]][lot.lot_id] = lot

    async def _named_rows(self, query: str, ids: Mapping[str, Iterable[str]]) -> list[Record]:
        """The rows `query` selects for (customer, id) pairs (no pairs, no query)."""
        customers, named = _pairs(ids)
        if not customers:
            return []
        return list(await self.conn.fetchval(query, customers, named))

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
        return [_application(r, parts.get(r["application_id"], ())) for r in rows]

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
        await self.conn.execute(_SAVE, *save_arguments(changes, state, entries, events, cause, cause_type))

    async def save_many(self, saves: Sequence[Sequence[Any]]) -> None:
        """Several `save`s (each `save_arguments(...)`, in order) in one round trip: asyncpg
        pipelines the executions."""
        if saves:
            await self.conn.executemany(_SAVE, saves)

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
