"""The credits service's only SQL: one snapshot of `CustomerLedger` per customer, the
append-only double-entry ledger, and the read models the HTTP API serves."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import TypeAdapter

from credits.change import Cause
from credits.customer import Application, CustomerLedger
from credits.ledger import LedgerEntry
from tally_contracts import MessageData
from tally_contracts.credits import CreditBalanceChanged, InvoiceBalanceChanged
from tally_contracts.money import at_minor_unit
from tally_messaging.db import DbConnection

SNAPSHOT = TypeAdapter(CustomerLedger)
"""Frozen dataclasses ⇄ JSON; Money amounts are decimal strings, so they survive exactly."""


def dump_state(state: CustomerLedger) -> str:
    return SNAPSHOT.dump_json(state).decode()


def load_state(raw: str | bytes) -> CustomerLedger:
    return SNAPSHOT.validate_json(raw)


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


_SAVE = """
with snapshot as (
    insert into customer_ledgers (customer_id, state) values ($1, $2::jsonb)
    on conflict (customer_id) do update
    set state = $2::jsonb, version = customer_ledgers.version + 1, updated_at = now()
), entries as (
    insert into ledger_entries (entry_id, customer_id, cause_id, cause_type, cause_day, memo)
    select e, $1, $3, $4, $5, m from unnest($6::text[], $7::text[]) with ordinality as t(e, m, o)
    order by o
), postings as (
    insert into ledger_postings (entry_id, n, account, amount, currency)
    select * from unnest($8::text[], $9::int[], $10::text[], $11::numeric[], $12::text[])
), invoices as (
    insert into invoice_balances (customer_id, invoice_id, currency, total, credits_applied,
        payments_applied, amount_due, status, issued_on, regenerated_from, sort_order, seq)
    select $1, i, c, t, ca, pa, d, s, io, rf, o, q
    from unnest($13::text[], $14::text[], $15::numeric[], $16::numeric[], $17::numeric[],
        $18::numeric[], $19::text[], $20::date[], $21::text[], $22::bigint[], $23::bigint[])
        as u(i, c, t, ca, pa, d, s, io, rf, o, q)
    on conflict (customer_id, invoice_id) do update set total = excluded.total,
        credits_applied = excluded.credits_applied, payments_applied = excluded.payments_applied,
        amount_due = excluded.amount_due, status = excluded.status
), credit as (
    insert into credit_balances (customer_id, currency, promotional, credit_balance)
    select $1, c, p, b from unnest($24::text[], $25::numeric[], $26::numeric[]) as u(c, p, b)
    on conflict (customer_id, currency) do update
    set promotional = excluded.promotional, credit_balance = excluded.credit_balance
)
select 1
"""


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows to columns, for unnest; `width` empty columns when there are no rows."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


class CreditsStore:
    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn

    # -- the ledger of one customer (write side) -----------------------------------

    async def load(self, customer_id: str) -> CustomerLedger:
        """The customer's ledger, row-locked until commit; an empty one if never seen."""
        raw = await self.conn.fetchval(
            "select state from customer_ledgers where customer_id = $1 for update", customer_id
        )
        return CustomerLedger(customer_id) if raw is None else load_state(raw)

    async def save(
        self,
        state: CustomerLedger,
        entries: Iterable[LedgerEntry],
        events: Iterable[MessageData],
        cause: Cause,
        cause_type: str,
    ) -> None:
        """Write the new snapshot, append the entries, update the read models: one statement."""
        entries, events = list(entries), list(events)
        postings = [
            (e.entry_id, n, p.account, p.amount.amount, p.amount.currency)
            for e in entries
            for n, p in enumerate(e.postings, start=1)
        ]
        invoices = {i.invoice_id: i for i in state.invoices}
        balances = [e for e in events if isinstance(e, InvoiceBalanceChanged)]
        credit = [e for e in events if isinstance(e, CreditBalanceChanged)]
        await self.conn.execute(
            _SAVE,
            state.customer_id,
            dump_state(state),
            cause.message_id,
            cause_type,
            cause.on,
            # $6-$7: entries; $8-$12: postings
            [e.entry_id for e in entries],
            [e.memo for e in entries],
            *_columns(postings, 5),
            # $13-$23: invoice balances
            [b.invoice_id for b in balances],
            [b.total.currency for b in balances],
            [b.total.amount for b in balances],
            [b.credits_applied.amount for b in balances],
            [b.payments_applied.amount for b in balances],
            [b.amount_due.amount for b in balances],
            [b.status for b in balances],
            [invoices[b.invoice_id].issued_on for b in balances],
            [invoices[b.invoice_id].regenerated_from for b in balances],
            [invoices[b.invoice_id].order for b in balances],
            [invoices[b.invoice_id].seq for b in balances],
            # $24-$26: credit balances
            [c.currency for c in credit],
            [c.promotional_available.amount for c in credit],
            [c.balance_available.amount for c in credit],
        )

    # -- reads -----------------------------------------------------------------------

    async def balances(self, customer_id: str) -> list[BalanceRow]:
        rows = await self.conn.fetch(
            "select currency, promotional, credit_balance from credit_balances"
            " where customer_id = $1 order by currency",
            customer_id,
        )
        return [BalanceRow(**dict(r)) for r in rows]

    async def invoices(self, customer_id: str) -> list[InvoiceRow]:
        rows = await self.conn.fetch(
            "select invoice_id, customer_id, currency, total, credits_applied, payments_applied,"
            " amount_due, status, issued_on, regenerated_from from invoice_balances"
            " where customer_id = $1 order by sort_order, seq",
            customer_id,
        )
        return [InvoiceRow(**dict(r)) for r in rows]

    async def active_applications(self, customer_id: str) -> list[Application]:
        """What pays each of the customer's invoices now (read from the snapshot, no lock)."""
        raw = await self.conn.fetchval(
            "select state from customer_ledgers where customer_id = $1", customer_id
        )
        if raw is None:
            return []
        return [a for a in load_state(raw).applications if a.status == "active"]

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
