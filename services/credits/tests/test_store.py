"""The store against real PostgreSQL: it loads exactly the open items `credits.open_items`
names, writes back what changed so the next message sees the same ledger as the whole-state
domain would, and migration 0002 turns 0001's JSON snapshots into the same rows.

Random runs are the domain property tests' (`test_domain_properties`): each message is
decided twice, on the whole in-memory ledger and on what the store loads, and the two must
agree message by message.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from importlib.resources import files
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from credits import domain
from credits.change import Cause
from credits.customer import CustomerLedger
from credits.open_items import Wanted, changes, open_items, wanted_by
from credits.snapshot import dump_state
from credits.store import CreditsStore
from tally_contracts import DomainError, Money
from tally_contracts.credits import GrantCredit
from tally_messaging.migrations import apply_migrations
from tally_testing import Infra

pytestmark = pytest.mark.integration


def _sibling(name: str) -> ModuleType:
    """A test module beside this one (pytest's importlib mode puts none on sys.path)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


runs = _sibling("test_domain_properties")
NO_SHRINKING = [Phase.reuse, Phase.generate]
"""Every example costs database round trips (the upgrade test a database of its own):
shrinking a failure would take minutes, so the failing example is shown as found."""
SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


async def create_database(infra: Infra) -> str:
    """A fresh database with the runtime's tables (no credits migration yet)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(infra.admin_dsn)
    try:
        await admin.execute(f'create database "{name}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(infra.dsn(name))
    try:
        await apply_migrations(conn, "tally_messaging", "sql")
    finally:
        await conn.close()
    return name


async def drop_database(infra: Infra, name: str) -> None:
    admin = await asyncpg.connect(infra.admin_dsn)
    try:
        await admin.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def scratch_database(infra: Infra) -> AsyncIterator[str]:
    name = await create_database(infra)
    try:
        yield infra.dsn(name)
    finally:
        await drop_database(infra, name)


@pytest.fixture
def migrated(infra: Infra) -> Iterator[str]:
    """One migrated database for every example of a test (each plays its own customer)."""
    name = asyncio.run(create_database(infra))
    try:
        asyncio.run(_migrate(infra.dsn(name)))
        yield infra.dsn(name)
    finally:
        asyncio.run(drop_database(infra, name))


async def _migrate(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await apply_migrations(conn, "credits")
    finally:
        await conn.close()


def everything(state: CustomerLedger) -> Wanted:
    """Every record of `state` by id: what it takes to load a whole ledger."""
    return Wanted(
        invoice_ids=frozenset(i.invoice_id for i in state.invoices),
        payment_ids=frozenset(p.payment_id for p in state.payments),
        grant_ids=frozenset(g.grant_id for g in state.grants),
        lot_ids=frozenset(lot.lot_id for lot in state.lots),
        refund_ids=frozenset(r.refund_id for r in state.refunds),
        deduction_ids=frozenset(d.deduction_id for d in state.deductions),
        held=True,
    )


async def play_through_store(conn: asyncpg.Connection, step_list: list[Any]) -> CustomerLedger:
    """Decide each message on the whole ledger and on what the store loads; assert they
    agree; save what changed. Returns the whole ledger at the end."""
    customer = f"cus-{uuid.uuid4().hex[:8]}"
    run = runs.Run(CustomerLedger(customer), runs.START, [], [])
    store = CreditsStore(conn)
    for step in step_list:
        found = runs.message(run, step)
        if found is None:
            continue
        operation, data = found
        run.messages += 1
        cause = Cause(f"{customer}/m{run.messages}", run.day)
        wanted = wanted_by(data)
        async with conn.transaction():
            loaded = await store.load(customer, wanted)
            assert loaded == open_items(run.state, wanted)
            on_whole = runs.decided(operation, run.state, data, cause)
            on_store = runs.decided(operation, loaded, data, cause)
            if isinstance(on_whole, str) or isinstance(on_store, str):
                assert on_store == on_whole
                continue
            assert on_store.events == on_whole.events
            if on_store.state is not loaded:
                done = changes(loaded, on_store.state)
                await store.save(done, on_store.state, on_store.entries, on_store.events, cause, "Test")
        run.state = on_whole.state
    final: CustomerLedger = run.state
    return final


async def assert_store_holds(conn: asyncpg.Connection, state: CustomerLedger) -> None:
    store = CreditsStore(conn)
    async with conn.transaction():
        loaded = await store.load(state.customer_id, everything(state))
    assert loaded == open_items(state, everything(state))
    active = [a for a in state.applications if a.status == "active"]
    assert await store.active_applications(state.customer_id) == active


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=NO_SHRINKING,
)
@given(st.lists(runs.steps, min_size=15, max_size=40))
def test_the_store_loads_the_open_items_and_writes_back_what_changed(
    migrated: str, step_list: list[Any]
) -> None:
    async def check() -> None:
        conn = await asyncpg.connect(migrated)
        try:
            state = await play_through_store(conn, step_list)
            await assert_store_holds(conn, state)
        finally:
            await conn.close()

    asyncio.run(check())


def whole_ledger(customer: str, step_list: list[Any]) -> CustomerLedger:
    run = runs.play(step_list)
    return CustomerLedger(
        customer,
        run.state.grants,
        run.state.lots,
        run.state.invoices,
        run.state.payments,
        run.state.applications,
        run.state.refunds,
        run.state.deductions,
        run.state.next_seq,
    )


def without_issue_18_fields(state: CustomerLedger) -> CustomerLedger:
    """The ledger as it was before grants had a priority and a scope, and lines existed."""
    return replace(
        state,
        grants=tuple(replace(g, priority=None, scope=None) for g in state.grants),
        invoices=tuple(replace(i, lines=()) for i in state.invoices),
        applications=tuple(replace(a, lines=()) for a in state.applications),
    )


def before_issue_18(state: CustomerLedger) -> str:
    """A snapshot as stored before issue 18: those fields are absent, not null."""
    stored = json.loads(dump_state(state))
    for grant in stored["grants"]:
        del grant["priority"], grant["scope"]
    for invoice in stored["invoices"]:
        del invoice["lines"]
    for application in stored["applications"]:
        del application["lines"]
    return json.dumps(stored)


async def with_only_0001(conn: asyncpg.Connection) -> None:
    """The database as a service of migration 0001 left it."""
    await conn.execute(files("credits").joinpath("migrations/0001_init.sql").read_text())
    await conn.execute("insert into schema_migrations (name) values ('credits/0001_init.sql')")


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=NO_SHRINKING,
)
@given(st.lists(st.lists(runs.steps, min_size=10, max_size=40), min_size=1, max_size=4))
def test_the_upgrade_turns_every_snapshot_into_the_same_ledger(
    infra: Infra, step_lists: list[list[Any]]
) -> None:
    """0001 snapshots (one before issue 18's fields) → 0002 rows: the same records and
    balances, and the next message decides the same on both."""
    states = [whole_ledger(f"cus-{n}", steps) for n, steps in enumerate(step_lists)]
    states[0] = without_issue_18_fields(states[0])

    async def check() -> None:
        async with scratch_database(infra) as dsn:
            conn = await asyncpg.connect(dsn)
            try:
                await upgrade_and_compare(conn, states)
            finally:
                await conn.close()

    asyncio.run(check())


async def upgrade_and_compare(conn: asyncpg.Connection, states: list[CustomerLedger]) -> None:
    """Snapshots written as 0001 wrote them, then 0002; compare every customer."""
    await with_only_0001(conn)
    for n, state in enumerate(states):
        snapshot = before_issue_18(state) if n == 0 else dump_state(state)
        await conn.execute(
            "insert into customer_ledgers (customer_id, state) values ($1, $2::jsonb)",
            state.customer_id,
            snapshot,
        )

    assert await apply_migrations(conn, "credits") == ["credits/0002_open_items.sql"]

    store = CreditsStore(conn)
    for state in states:
        await assert_store_holds(conn, state)
        for currency in runs.CURRENCIES:
            async with conn.transaction():
                loaded = await store.load(state.customer_id, Wanted())
            assert loaded.promotional_available(currency) == state.promotional_available(currency)
            assert loaded.balance_available(currency) == state.balance_available(currency)
        await assert_next_message_agrees(conn, state)


async def assert_next_message_agrees(conn: asyncpg.Connection, state: CustomerLedger) -> None:
    """A grant of credit in every currency after the upgrade: the same events as on the
    whole ledger (it pays every open invoice it may)."""
    store = CreditsStore(conn)
    for currency in runs.CURRENCIES:
        grant = GrantCredit(
            grant_id=f"after-{currency}", kind="manual", amount=Money.of("1000", currency), source="other"
        )
        cause = Cause(f"{state.customer_id}/after-{currency}", runs.START)
        async with conn.transaction():
            loaded = await store.load(state.customer_id, wanted_by(grant))
            try:
                expected = domain.grant_credit(state, grant, cause)
            except DomainError:
                continue
            outcome = domain.grant_credit(loaded, grant, cause)
            assert outcome.events == expected.events
            await store.save(
                changes(loaded, outcome.state), outcome.state, outcome.entries, outcome.events, cause, "Test"
            )
        state = expected.state


WANTED_CHOICES = 4


def some_wanted(state: CustomerLedger, choice: int) -> Wanted:
    """One of four kinds of request: everything by id, nothing, held records, credit arriving."""
    return [
        everything(state),
        Wanted(),
        Wanted(held=True),
        Wanted(credit_currencies=frozenset({"USD", "EUR", "JPY"})),
    ][choice]


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=NO_SHRINKING,
)
@given(
    st.lists(st.lists(runs.steps, min_size=10, max_size=30), min_size=2, max_size=4),
    st.lists(st.integers(0, WANTED_CHOICES - 1), min_size=4, max_size=4),
)
def test_customers_loaded_together_are_each_what_it_is_alone(
    migrated: str, step_lists: list[list[Any]], choices: list[int]
) -> None:
    """`load_many` (one batch of InvoiceFinalized, several customers) gives each customer
    exactly its open items, whatever the others hold or ask for."""

    async def check() -> None:
        conn = await asyncpg.connect(migrated)
        try:
            states = [await play_through_store(conn, steps) for steps in step_lists]
            wanted = {
                s.customer_id: some_wanted(s, choice) for s, choice in zip(states, choices, strict=False)
            }
            async with conn.transaction():
                together = await CreditsStore(conn).load_many(wanted)
        finally:
            await conn.close()
        assert sorted(together) == sorted(wanted)
        for state in states:
            assert together[state.customer_id] == open_items(state, wanted[state.customer_id])

    asyncio.run(check())
