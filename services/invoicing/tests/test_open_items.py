"""Per message, invoicing reads a customer's open items, never its history: for a customer
with thousands of posted invoices, placing usage (on time or late), a charge, a
subscription, a customer update, a regeneration or a close reads a handful of invoice
rows. Counted by PostgreSQL itself: `pg_stat_xact_user_tables`, the rows the handling
transaction read from `invoices` by sequential and index scans."""

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from invoicing import billing, handlers, ingest
from invoicing.invoices import period_invoice_id
from tally_contracts import DomainError, Envelope, Money
from tally_contracts.invoicing import (
    AddCharge,
    CloseInvoice,
    CreateSubscription,
    RegenerateInvoice,
    UpsertCustomer,
)
from tally_contracts.usage import UsageRecorded
from tally_messaging import Delivery, Transaction
from tally_messaging.migrations import apply_migrations
from tally_messaging.transaction import RawRecord

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
NOV = dt.datetime(2026, 11, 3, 9, 0, tzinfo=dt.UTC)
POSTED = 3000
ROWS_READ_AT_MOST = 20
"""A handful: the customer's pending invoice, the newest billed one, the one a message names."""


def usage(at: dt.datetime) -> Envelope[Any]:
    data = UsageRecorded(service="voice", quantity=1, unit="minute", amount=Money.of("0.10", "USD"))
    return Envelope.new(data, customer_id="c1", occurred_at=at)


async def handle(conn: asyncpg.Connection, handler: Any, data: Any) -> None:
    tx = Transaction(conn, "invoicing-test", "invoicing.events", "")
    await handler(Envelope.new(data, customer_id="c1", occurred_at=NOV), tx)
    await tx.flush()


async def refused(conn: asyncpg.Connection, handler: Any, data: Any, code: str) -> None:
    with pytest.raises(DomainError) as rejection:
        await handle(conn, handler, data)
    assert rejection.value.code == code


async def ingest_usage(conn: asyncpg.Connection, *events: Envelope[Any]) -> None:
    tx = Transaction(conn, "invoicing-test", "invoicing.events", "")
    batch = [
        Delivery(e, RawRecord(topic="usage", partition=0, offset=n, key=None, value=e.to_json()))
        for n, e in enumerate(events)
    ]
    await ingest.record_usage(batch, tx)
    await tx.flush()


@pytest_asyncio.fixture(loop_scope="session")
async def long_customer(new_database: Callable[[], Awaitable[str]]) -> AsyncIterator[asyncpg.Connection]:
    """Customer c1 with POSTED paid monthly invoices before November 2026 (one of them
    voided), and a pending November invoice."""
    conn = await asyncpg.connect(await new_database())
    await apply_migrations(conn, "tally_messaging", "sql")
    await apply_migrations(conn, "invoicing")
    async with conn.transaction():
        await handle(conn, handlers.upsert_customer, UpsertCustomer(currency="USD", billing_day=1))
    await conn.execute(
        "insert into invoices (invoice_id, customer_id, kind, currency, status, period_start, period_end,"
        " issued_on, subtotal, total, amount_due)"
        " select 'inv-old-' || n, 'c1', 'period', 'USD', case when n = 7 then 'voided' else 'paid' end,"
        " s, (s + interval '1 month' - interval '1 day')::date, s + interval '1 month', 10, 10, 0"
        " from generate_series(1, $1::int) as n,"
        " lateral (select (date '2026-11-01' - make_interval(months => n))::date as s) as p",
        POSTED,
    )
    await conn.execute(
        "insert into invoice_lines (invoice_id, line_id, kind, description, amount)"
        " select invoice_id, 'charge:' || invoice_id, 'one_time', 'fee', 10 from invoices"
    )
    async with conn.transaction():
        await ingest_usage(conn, usage(NOV))
    await conn.execute("analyze")
    yield conn
    await conn.close()


async def invoice_rows_read(conn: asyncpg.Connection, action: Callable[[], Awaitable[None]]) -> int:
    """Rows of `invoices` that handling one message read, in its own transaction."""
    query = (
        "select coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) from pg_stat_xact_user_tables"
        " where relname = 'invoices'"
    )
    async with conn.transaction():
        before = await conn.fetchval(query)
        await action()
        after = await conn.fetchval(query)
    return int(after - before)


NOVEMBER_INVOICE = period_invoice_id("c1", NOV.date().replace(day=1))
MESSAGES: dict[str, Callable[[asyncpg.Connection], Awaitable[None]]] = {
    "usage of the open period": lambda conn: ingest_usage(conn, usage(NOV + dt.timedelta(days=1))),
    "late usage of a posted period": lambda conn: ingest_usage(
        conn, usage(dt.datetime(2005, 5, 3, tzinfo=dt.UTC))
    ),
    "a charge for the next invoice": lambda conn: handle(
        conn,
        handlers.add_charge,
        AddCharge(charge_id="later", description="fee", amount=Money.of("5", "USD"), invoice_now=False),
    ),
    "a charge invoiced now": lambda conn: handle(
        conn,
        handlers.add_charge,
        AddCharge(charge_id="now", description="fee", amount=Money.of("5", "USD"), invoice_now=True),
    ),
    "a subscription": lambda conn: handle(
        conn,
        handlers.create_subscription,
        CreateSubscription(
            subscription_id="s", name="Plan", fee=Money.of("30", "USD"), starts_on=dt.date(2026, 11, 16)
        ),
    ),
    "a customer update": lambda conn: handle(
        conn, handlers.upsert_customer, UpsertCustomer(currency="USD", billing_day=1, name="Ada")
    ),
    "a currency change, refused while November is open": lambda conn: refused(
        conn, handlers.upsert_customer, UpsertCustomer(currency="EUR"), "currency_change_with_open_invoices"
    ),
    "a regeneration": lambda conn: handle(
        conn, handlers.regenerate_invoice, RegenerateInvoice(invoice_id="inv-old-7")
    ),
    "a close": lambda conn: handle(conn, billing.close_invoice, CloseInvoice(invoice_id=NOVEMBER_INVOICE)),
}


@pytest.mark.parametrize("message", sorted(MESSAGES))
async def test_a_message_reads_open_invoices_not_the_customers_posted_history(
    long_customer: asyncpg.Connection, message: str
) -> None:
    read = await invoice_rows_read(long_customer, lambda: MESSAGES[message](long_customer))

    assert read <= ROWS_READ_AT_MOST, f"{message} read {read} invoice rows of a {POSTED}-invoice history"
