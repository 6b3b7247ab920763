"""The invoicing service's only SQL."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from invoicing.accounts import Customer
from invoicing.closing import PendingCharge
from invoicing.invoices import InvoiceState
from invoicing.rating import UsageDelta
from invoicing.subscriptions import Subscription
from invoicing.usage_placement import CustomerPeriods
from tally_contracts import Line, Money
from tally_contracts.invoicing import Price
from tally_messaging.db import DbConnection


@dataclass(frozen=True, slots=True)
class UsagePlacement:
    """One usage event, and the usage line that bills it."""

    customer_id: str
    usage_id: uuid.UUID
    invoice_id: str
    line_id: str


@dataclass(frozen=True, slots=True)
class InvoiceRow:
    invoice_id: str
    customer_id: str
    kind: str
    currency: str
    status: str
    period_start: dt.date
    period_end: dt.date
    issued_on: dt.date | None
    subtotal: Decimal | None
    total: Decimal | None
    amount_due: Decimal | None
    rule_set_id: str | None
    rule_set_version: int | None
    regenerated_from: str | None

    def state(self, lines: Iterable[Line] = ()) -> InvoiceState:
        return InvoiceState(
            self.invoice_id,
            self.customer_id,
            self.currency,
            self.status,
            self.period_start,
            self.period_end,
            self.regenerated_from,
            tuple(lines),
        )


_INVOICE_COLUMNS = (
    "invoice_id, customer_id, kind, currency, status, period_start, period_end, issued_on, subtotal,"
    " total, amount_due, rule_set_id, rule_set_version, regenerated_from"
)


def _invoice(row: Any) -> InvoiceRow:
    return InvoiceRow(
        invoice_id=row["invoice_id"],
        customer_id=row["customer_id"],
        kind=row["kind"],
        currency=row["currency"],
        status=row["status"],
        period_start=row["period_start"],
        period_end=row["period_end"],
        issued_on=row["issued_on"],
        subtotal=row["subtotal"],
        total=row["total"],
        amount_due=row["amount_due"],
        rule_set_id=row["rule_set_id"],
        rule_set_version=row["rule_set_version"],
        regenerated_from=row["regenerated_from"],
    )


_CUSTOMER_COLUMNS = "customer_id, currency, name, billing_day, price_list_id"


def _customer(row: Any) -> Customer:
    return Customer(
        customer_id=row["customer_id"],
        currency=row["currency"],
        name=row["name"],
        billing_day=row["billing_day"],
        price_list_id=row["price_list_id"],
    )


_SUBSCRIPTION_COLUMNS = "customer_id, subscription_id, name, fee, currency, starts_on, ends_on"


def _subscription(row: Any) -> Subscription:
    return Subscription(
        row["subscription_id"],
        row["name"],
        Money(amount=row["fee"], currency=row["currency"]),
        row["starts_on"],
        row["ends_on"],
    )


_LINE_COLUMNS = (
    "line_id, kind, description, amount, quantity, unit_price, service, unit, destination, subscription_id,"
    " tax_code, rule_id, late"
)


def _line(row: Any, currency: str) -> Line:
    return Line(
        line_id=row["line_id"],
        kind=row["kind"],
        description=row["description"],
        amount=Money(amount=row["amount"] if row["amount"] is not None else Decimal(0), currency=currency),
        service=row["service"],
        unit=row["unit"],
        quantity=row["quantity"],
        unit_price=row["unit_price"],
        destination=row["destination"],
        subscription_id=row["subscription_id"],
        tax_code=row["tax_code"],
        rule_id=row["rule_id"],
        late=row["late"],
    )


class InvoicingStore:
    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn

    # -- customers and prices ----------------------------------------------------

    async def customer(self, customer_id: str) -> Customer | None:
        row = await self.conn.fetchrow(
            f"select {_CUSTOMER_COLUMNS} from customers where customer_id = $1", customer_id
        )
        return _customer(row) if row else None

    async def customers(self, ids: list[str]) -> dict[str, Customer]:
        rows = await self.conn.fetch(
            f"select {_CUSTOMER_COLUMNS} from customers where customer_id = any($1)", ids
        )
        return {r["customer_id"]: _customer(r) for r in rows}

    async def upsert_customer(self, c: Customer) -> None:
        await self.conn.execute(
            f"insert into customers ({_CUSTOMER_COLUMNS}) values ($1, $2, $3, $4, $5) on conflict (customer_id) do update"
            " set currency = $2, name = $3, billing_day = $4, price_list_id = $5",
            c.customer_id,
            c.currency,
            c.name,
            c.billing_day,
            c.price_list_id,
        )

    async def put_price_list(self, price_list_id: str, prices: list[Price]) -> None:
        doc = json.dumps([p.model_dump(mode="json") for p in prices])
        await self.conn.execute(
            "insert into price_lists (price_list_id, prices) values ($1, $2::jsonb)"
            " on conflict (price_list_id) do update set prices = $2::jsonb",
            price_list_id,
            doc,
        )

    async def price_lists(self, ids: list[str]) -> dict[str, list[Price]]:
        rows = await self.conn.fetch(
            "select price_list_id, prices from price_lists where price_list_id = any($1)", ids
        )
        return {r["price_list_id"]: [Price.model_validate(p) for p in json.loads(r["prices"])] for r in rows}

    # -- subscriptions and pending charges ----------------------------------------

    async def add_subscription(self, customer_id: str, sub: Subscription) -> None:
        await self.conn.execute(
            f"insert into subscriptions ({_SUBSCRIPTION_COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7)",
            customer_id,
            sub.subscription_id,
            sub.name,
            sub.fee.amount,
            sub.fee.currency,
            sub.starts_on,
            sub.ends_on,
        )

    async def subscription(self, customer_id: str, subscription_id: str) -> Subscription | None:
        row = await self.conn.fetchrow(
            f"select {_SUBSCRIPTION_COLUMNS} from subscriptions where customer_id = $1 and subscription_id = $2",
            customer_id,
            subscription_id,
        )
        return _subscription(row) if row else None

    async def subscriptions(self, customer_id: str, billing_from: dt.date | None) -> list[Subscription]:
        """The customer's subscriptions that can bill a period from `billing_from` on (those
        ended before it cannot); all of them when it is None."""
        return (await self.subscriptions_of([customer_id], billing_from)).get(customer_id, [])

    async def subscriptions_of(
        self, customer_ids: list[str], billing_from: dt.date | None
    ) -> dict[str, list[Subscription]]:
        rows = await self.conn.fetch(
            f"select {_SUBSCRIPTION_COLUMNS} from subscriptions where customer_id = any($1)"
            " and ($2::date is null or ends_on is null or ends_on >= $2) order by customer_id, subscription_id",
            customer_ids,
            billing_from,
        )
        found: dict[str, list[Subscription]] = {}
        for r in rows:
            found.setdefault(r["customer_id"], []).append(_subscription(r))
        return found

    async def cancel_subscription(self, customer_id: str, subscription_id: str, ends_on: dt.date) -> None:
        await self.conn.execute(
            "update subscriptions set ends_on = $3 where customer_id = $1 and subscription_id = $2",
            customer_id,
            subscription_id,
            ends_on,
        )

    async def record_charge_id(self, customer_id: str, charge_id: str) -> bool:
        """Remember a charge id the customer used; False when it was used before."""
        inserted = await self.conn.fetchval(
            "insert into charge_ids (customer_id, charge_id) values ($1, $2) on conflict do nothing returning 1",
            customer_id,
            charge_id,
        )
        return inserted is not None

    async def charge_id_used(self, customer_id: str, charge_id: str) -> bool:
        return bool(
            await self.conn.fetchval(
                "select exists (select 1 from charge_ids where customer_id = $1 and charge_id = $2)",
                customer_id,
                charge_id,
            )
        )

    async def pending_charge_amounts(self, customer_ids: list[str]) -> dict[str, list[Money]]:
        """What each customer's pending charges add up to, one exact sum per currency: all an
        open invoice's sums need, however many charges wait."""
        rows = await self.conn.fetch(
            "select customer_id, currency, sum(amount) as amount from pending_charges"
            " where customer_id = any($1) group by customer_id, currency order by customer_id, currency",
            customer_ids,
        )
        found: dict[str, list[Money]] = {}
        for r in rows:
            found.setdefault(r["customer_id"], []).append(Money.computed(r["amount"], r["currency"]))
        return found

    async def add_pending_charge(
        self, customer_id: str, charge_id: str, description: str, amount: Money
    ) -> None:
        await self.conn.execute(
            "insert into pending_charges (customer_id, charge_id, description, amount, currency)"
            " values ($1, $2, $3, $4, $5)",
            customer_id,
            charge_id,
            description,
            amount.amount,
            amount.currency,
        )

    async def take_pending_charges(self, customer_id: str, currency: str) -> list[PendingCharge]:
        """Remove and return the customer's pending charges in `currency`, oldest first."""
        rows = await self.conn.fetch(
            "delete from pending_charges where customer_id = $1 and currency = $2"
            " returning charge_id, description, amount, added_seq",
            customer_id,
            currency,
        )
        rows = sorted(rows, key=lambda r: r["added_seq"])
        return [
            PendingCharge(r["charge_id"], r["description"], Money(amount=r["amount"], currency=currency))
            for r in rows
        ]

    # -- invoices -----------------------------------------------------------------

    async def invoice(self, invoice_id: str, *, for_update: bool = False) -> InvoiceRow | None:
        lock = " for update" if for_update else ""
        row = await self.conn.fetchrow(
            f"select {_INVOICE_COLUMNS} from invoices where invoice_id = $1{lock}", invoice_id
        )
        return _invoice(row) if row else None

    async def pending_period_invoices(self, customer_ids: list[str]) -> list[InvoiceRow]:
        """These customers' pending period invoices, oldest period first, locked against a
        concurrent close (a bill run)."""
        rows = await self.conn.fetch(
            f"select {_INVOICE_COLUMNS} from invoices where customer_id = any($1) and status = 'pending'"
            " and kind = 'period' order by customer_id, period_start for share",
            customer_ids,
        )
        return [_invoice(r) for r in rows]

    async def customer_periods(
        self, customer_ids: list[str], named: Iterable[tuple[str, dt.date]]
    ) -> dict[str, CustomerPeriods]:
        """What placing usage needs of each customer's period invoices (`CustomerPeriods`):
        the pending ones (locked against a close), the newest billed one, and those of the
        (customer, period start) pairs `named`. Three index lookups per customer, whatever
        the customer's history."""
        pairs = sorted(set(named))
        pending = await self.pending_period_invoices(customer_ids)
        named_rows = await self.conn.fetch(
            f"select {_INVOICE_COLUMNS} from invoices where kind = 'period'"
            " and (customer_id, period_start) in"
            " (select n.customer_id, n.period_start from unnest($1::text[], $2::date[]) as n(customer_id, period_start))"
            " order by customer_id, period_start for share",
            [c for c, _ in pairs],
            [d for _, d in pairs],
        )
        newest_billed = await self.conn.fetch(
            f"select {', '.join(f'i.{c}' for c in _INVOICE_COLUMNS.split(', '))}"
            " from unnest($1::text[]) as c(customer_id) cross join lateral ("
            f"select {_INVOICE_COLUMNS} from invoices where kind = 'period' and customer_id = c.customer_id"
            " and status <> 'pending' order by period_start desc limit 1) as i",
            customer_ids,
        )
        found = {c: CustomerPeriods() for c in customer_ids}
        for row in pending:
            periods = found[row.customer_id]
            found[row.customer_id] = replace(periods, pending=(*periods.pending, row.state()))
        for r in newest_billed:
            found[r["customer_id"]] = replace(found[r["customer_id"]], newest_billed=_invoice(r).state())
        for r in named_rows:
            row = _invoice(r)
            periods = found[row.customer_id]
            found[row.customer_id] = replace(periods, named={**periods.named, row.period_start: row.state()})
        return found

    async def period_invoice(self, customer_id: str, period_start: dt.date) -> InvoiceRow | None:
        row = await self.conn.fetchrow(
            f"select {_INVOICE_COLUMNS} from invoices where kind = 'period' and customer_id = $1"
            " and period_start = $2",
            customer_id,
            period_start,
        )
        return _invoice(row) if row else None

    async def due_pending_invoices(self, as_of: dt.date, customer_id: str | None) -> list[InvoiceRow]:
        rows = await self.conn.fetch(
            f"select {_INVOICE_COLUMNS} from invoices where status = 'pending' and period_end <= $1"
            " and ($2::text is null or customer_id = $2) order by customer_id, period_start for update",
            as_of,
            customer_id,
        )
        return [_invoice(r) for r in rows]

    async def open_invoice_count(self, customer_id: str) -> int:
        """The customer's pending or closed invoices (of any kind)."""
        return int(
            await self.conn.fetchval(
                "select count(*) from invoices where customer_id = $1 and status in ('pending', 'closed')",
                customer_id,
            )
        )

    async def customer_invoices(self, customer_id: str) -> list[InvoiceRow]:
        """Every invoice of the customer, oldest first: the read API only."""
        rows = await self.conn.fetch(
            f"select {_INVOICE_COLUMNS} from invoices where customer_id = $1 order by created_seq",
            customer_id,
        )
        return [_invoice(r) for r in rows]

    async def regeneration_of(self, customer_id: str, invoice_id: str) -> str | None:
        value = await self.conn.fetchval(
            "select invoice_id from invoices where customer_id = $1 and regenerated_from = $2",
            customer_id,
            invoice_id,
        )
        return str(value) if value is not None else None

    async def insert_invoice(self, inv: InvoiceState, kind: str) -> bool:
        inserted = await self.conn.fetchval(
            "insert into invoices (invoice_id, customer_id, kind, currency, status, period_start, period_end,"
            " regenerated_from) values ($1, $2, $3, $4, $5, $6, $7, $8) on conflict do nothing returning 1",
            inv.invoice_id,
            inv.customer_id,
            kind,
            inv.currency,
            inv.status,
            inv.period_start,
            inv.period_end,
            inv.regenerated_from,
        )
        return inserted is not None

    async def close(self, invoice_id: str, subtotal: Money) -> None:
        await self.conn.execute(
            "update invoices set status = 'closed', subtotal = $2 where invoice_id = $1",
            invoice_id,
            subtotal.amount,
        )

    async def post(
        self, invoice_id: str, total: Money, issued_on: dt.date, rule_set_id: str | None, version: int | None
    ) -> None:
        await self.conn.execute(
            "update invoices set status = 'posted', total = $2, amount_due = $2, issued_on = $3,"
            " rule_set_id = $4, rule_set_version = $5 where invoice_id = $1",
            invoice_id,
            total.amount,
            issued_on,
            rule_set_id,
            version,
        )

    async def set_status(self, invoice_id: str, status: str, amount_due: Decimal | None = None) -> None:
        await self.conn.execute(
            "update invoices set status = $2, amount_due = coalesce($3, amount_due) where invoice_id = $1",
            invoice_id,
            status,
            amount_due,
        )

    # -- lines --------------------------------------------------------------------

    async def add_usage(self, deltas: Iterable[UsageDelta]) -> None:
        """Add a batch's usage to its lines: one statement (arrays), not one per line.

        The deltas are already folded per (invoice, line), as ON CONFLICT requires."""
        rows = list(deltas)
        if not rows:
            return
        await self.conn.execute(
            "insert into invoice_lines (invoice_id, line_id, kind, raw_amount, quantity, unit_price, service, unit,"
            " destination, late)"
            " select invoice_id, line_id, 'usage', raw_amount, quantity, unit_price, service, unit, destination, late"
            " from unnest($1::text[], $2::text[], $3::numeric[], $4::numeric[], $5::numeric[], $6::text[],"
            " $7::text[], $8::text[], $9::bool[])"
            " as u(invoice_id, line_id, raw_amount, quantity, unit_price, service, unit, destination, late)"
            " on conflict (invoice_id, line_id) do update set raw_amount = invoice_lines.raw_amount + excluded.raw_amount,"
            " quantity = invoice_lines.quantity + excluded.quantity,"
            " unit_price = coalesce(excluded.unit_price, invoice_lines.unit_price)",
            [d.invoice_id for d in rows],
            [d.line_id for d in rows],
            [d.amount for d in rows],
            [d.quantity for d in rows],
            [d.unit_price for d in rows],
            [d.service for d in rows],
            [d.unit for d in rows],
            [d.destination for d in rows],
            [d.late for d in rows],
        )

    async def place_usage(self, placements: Iterable[UsagePlacement]) -> None:
        """Record the line each usage event of a batch went on: one statement (arrays), not
        one per event. An id already on a line raises UniqueViolationError."""
        rows = list(placements)
        if not rows:
            return
        await self.conn.execute(
            "insert into invoice_line_usage (customer_id, usage_id, invoice_id, line_id)"
            " select customer_id, usage_id, invoice_id, line_id"
            " from unnest($1::text[], $2::uuid[], $3::text[], $4::text[]) as u(customer_id, usage_id, invoice_id, line_id)",
            [p.customer_id for p in rows],
            [p.usage_id for p in rows],
            [p.invoice_id for p in rows],
            [p.line_id for p in rows],
        )

    async def move_usage(self, from_invoice_id: str, to_invoice_id: str) -> None:
        """Put the usage of one invoice's lines on the lines of the same id of another (a
        regeneration, whose lines must be saved first)."""
        await self.conn.execute(
            "update invoice_line_usage set invoice_id = $2 where invoice_id = $1",
            from_invoice_id,
            to_invoice_id,
        )

    async def usage_ids_by_line(self, invoice_id: str) -> dict[str, list[str]]:
        """line id -> the ids of the usage events that line bills, in id order."""
        rows = await self.conn.fetch(
            "select line_id, usage_id from invoice_line_usage where invoice_id = $1 order by line_id, usage_id",
            invoice_id,
        )
        found: dict[str, list[str]] = {}
        for r in rows:
            found.setdefault(r["line_id"], []).append(str(r["usage_id"]))
        return found

    async def usage_deltas(self, invoice_id: str) -> list[UsageDelta]:
        return (await self.usage_of([invoice_id])).get(invoice_id, [])

    async def usage_of(self, invoice_ids: list[str]) -> dict[str, list[UsageDelta]]:
        """The usage lines of these invoices, as they stand, by invoice."""
        rows = await self.conn.fetch(
            "select invoice_id, line_id, service, unit, destination, late, quantity, raw_amount, unit_price"
            " from invoice_lines where invoice_id = any($1) and kind = 'usage' order by position",
            invoice_ids,
        )
        found: dict[str, list[UsageDelta]] = {}
        for r in rows:
            found.setdefault(r["invoice_id"], []).append(
                UsageDelta(
                    r["invoice_id"],
                    r["line_id"],
                    r["service"],
                    r["unit"],
                    r["destination"],
                    r["late"],
                    r["quantity"],
                    r["raw_amount"],
                    r["unit_price"],
                )
            )
        return found

    async def save_lines(self, invoice_id: str, lines: Iterable[Line]) -> None:
        """Insert lines, or set the final amount and text of lines already there (usage at close)."""
        await self.conn.executemany(
            "insert into invoice_lines (invoice_id, line_id, kind, description, amount, quantity, unit_price, service,"
            " unit, destination, subscription_id, tax_code, rule_id, late)"
            " values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            " on conflict (invoice_id, line_id) do update set description = excluded.description, amount = excluded.amount",
            [
                (
                    invoice_id,
                    ln.line_id,
                    ln.kind,
                    ln.description,
                    ln.amount.amount,
                    ln.quantity,
                    ln.unit_price,
                    ln.service,
                    ln.unit,
                    ln.destination,
                    ln.subscription_id,
                    ln.tax_code,
                    ln.rule_id,
                    ln.late,
                )
                for ln in lines
            ],
        )

    async def lines(self, invoice_id: str, currency: str) -> list[Line]:
        rows = await self.conn.fetch(
            f"select {_LINE_COLUMNS} from invoice_lines where invoice_id = $1 order by position", invoice_id
        )
        return [_line(r, currency) for r in rows]
