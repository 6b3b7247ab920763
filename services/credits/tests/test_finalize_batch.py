"""A batch of InvoiceFinalized (issue 16: a bill run posts thousands) ends exactly where the
same events handled one by one end: the same balances and invoices, the same events
published, the same invoices dead-lettered with the same reasons — with customers loaded
together, a customer's several invoices in one batch, a refused invoice among the rest, and
an event without a customer."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credits import domain, handlers
from credits.store import CreditsStore
from tally_contracts import DomainError, Envelope, Money, topics
from tally_contracts.credits import GrantCredit
from tally_contracts.invoicing import InvoiceFinalized
from tally_messaging import Delivery, Transaction
from tally_messaging.migrations import apply_migrations
from tally_messaging.transaction import RawRecord
from tally_testing import Infra

pytestmark = pytest.mark.integration

POSTED = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)
CUSTOMERS = 3


@dataclass(frozen=True)
class Posting:
    customer: int | None  # None: the event names no customer
    invoice: int
    total: str
    currency: str


postings = st.builds(
    Posting,
    customer=st.one_of(st.none(), st.integers(0, CUSTOMERS - 1)) | st.integers(0, CUSTOMERS - 1),
    invoice=st.integers(0, 3),  # few ids: the same invoice posted again, or with another total
    total=st.sampled_from(["12.34", "3.00", "0.00", "-5.50", "40.00"]),
    currency=st.sampled_from(["USD", "USD", "EUR"]),
)


def finalized(customer: str | None, posting: Posting, message_id: uuid.UUID) -> Envelope[Any]:
    data = InvoiceFinalized(
        invoice_id=f"inv-{posting.invoice}",
        currency=posting.currency,
        issued_on=POSTED.date(),
        lines=[],
        total=Money.of(posting.total, posting.currency),
        rule_set_id=None,
        rule_set_version=None,
    )
    return Envelope.new(data, customer_id=customer, occurred_at=POSTED, message_id=message_id)


def delivered(envelope: Envelope[Any], offset: int) -> Delivery[Any]:
    record = RawRecord(topics.INVOICING_EVENTS, 0, offset, None, envelope.to_json())
    return Delivery(envelope, record)


def new_tx(conn: asyncpg.Connection) -> Transaction:
    return Transaction(conn, "credits:invoicing.events", topics.CREDITS_EVENTS, "")


def published(tx: Transaction, names: dict[str, str]) -> list[tuple[Any, ...]]:
    """What `tx` wrote to the outbox, without ids and times: (type, customer, data)."""
    rows: list[tuple[Any, ...]] = []
    for row in tx._rows:
        body = json.loads(row.payload)
        if "data" in body:
            rows.append((body["type"], names.get(body["customer_id"]), body["data"]))
        else:  # a dead letter: its reason
            rows.append(("dead letter", body.get("error")))
    return rows


def per_customer(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    events = sorted((r for r in rows if r[0] != "dead letter"), key=lambda r: str(r[1]))
    return events + sorted(r for r in rows if r[0] == "dead letter")


async def grant_each(conn: asyncpg.Connection, customers: list[str]) -> None:
    grant_credit = handlers.grant_credit
    for customer in customers:
        data = GrantCredit(
            grant_id="g-1", kind="promotional", amount=Money.of("20.00", "USD"), source="other"
        )
        async with conn.transaction():
            await grant_credit(Envelope.new(data, customer_id=customer, occurred_at=POSTED), new_tx(conn))


async def one_by_one(
    conn: asyncpg.Connection, envelopes: list[Envelope[Any]], names: dict[str, str]
) -> list[Any]:
    """Each event in a transaction of its own, a rejection rolled back and dead-lettered, as
    the runtime handles a lone event."""
    finalize = handlers._handler(domain.finalize_invoice)
    out: list[Any] = []
    for offset, envelope in enumerate(envelopes):
        tx = new_tx(conn)
        try:
            async with conn.transaction():
                await finalize(envelope, tx)
        except DomainError as rejection:
            tx = new_tx(conn)
            tx.dead_letter(delivered(envelope, offset).record, f"rejected: {rejection}")
        out += published(tx, names)
    return out


async def in_one_batch(
    conn: asyncpg.Connection, envelopes: list[Envelope[Any]], names: dict[str, str]
) -> list[Any]:
    tx = new_tx(conn)
    async with conn.transaction():
        await handlers.finalize_invoices([delivered(e, n) for n, e in enumerate(envelopes)], tx)
    return published(tx, names)


async def ledgers(conn: asyncpg.Connection, customers: list[str]) -> list[Any]:
    store = CreditsStore(conn)
    return [
        (
            [(b.currency, b.promotional, b.credit_balance) for b in await store.balances(c)],
            [
                (i.invoice_id, i.total, i.credits_applied, i.amount_due, i.status)
                for i in await store.invoices(c)
            ],
        )
        for c in customers
    ]


@pytest.fixture
def databases(infra: Infra) -> Iterator[tuple[str, str]]:
    """Two migrated databases: one handles the events one by one, the other in a batch
    (the same message ids on both sides give the same derived ids, unique per database)."""
    names = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(2)]

    async def create() -> None:
        admin = await asyncpg.connect(infra.admin_dsn)
        for name in names:
            await admin.execute(f'create database "{name}"')
        await admin.close()
        for name in names:
            conn = await asyncpg.connect(infra.dsn(name))
            await apply_migrations(conn, "tally_messaging", "sql")
            await apply_migrations(conn, "credits")
            await conn.close()

    async def drop() -> None:
        admin = await asyncpg.connect(infra.admin_dsn)
        for name in names:
            await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.close()

    asyncio.run(create())
    try:
        yield infra.dsn(names[0]), infra.dsn(names[1])
    finally:
        asyncio.run(drop())


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(postings, min_size=1, max_size=12))
def test_a_batch_of_posted_invoices_ends_where_one_by_one_ends(
    databases: tuple[str, str], batch: list[Posting]
) -> None:
    run = uuid.uuid4().hex[:8]
    customers = [f"{run}-{n}" for n in range(CUSTOMERS)]
    names = {c: f"c{n}" for n, c in enumerate(customers)}
    envelopes = [
        finalized(None if p.customer is None else customers[p.customer], p, uuid.uuid4()) for p in batch
    ]

    async def check() -> None:
        alone, together = [await asyncpg.connect(dsn) for dsn in databases]
        try:
            await grant_each(alone, customers)
            await grant_each(together, customers)
            expected = await one_by_one(alone, envelopes, names)
            got = await in_one_batch(together, envelopes, names)
            # Per customer in order (the order Kafka keeps, by key); across customers a batch
            # goes round by round, and dead letters of different keys have no order.
            assert per_customer(got) == per_customer(expected)
            assert await ledgers(together, customers) == await ledgers(alone, customers)
        finally:
            await alone.close()
            await together.close()

    asyncio.run(check())
