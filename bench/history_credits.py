"""History: what one more message costs credits for a customer who already has N posted,
settled invoices (issue 15). The cost must not grow with N.

For each N (default 10, 1,000 and 10,000) one customer holds a large promotional grant
that has paid N posted invoices. That history is written straight through the domain and
the store, without Kafka: `credits.domain` decides each message on the customer's open
items as the service does, and `CreditsStore.save` writes what a chunk of messages changed
(the rows the service writes, fewer round trips). Then the credits service, on real Kafka
and PostgreSQL, gets M more InvoiceFinalized for the customer, each paid from the grant
(an application, its ledger entries, two read models). The cost of a message is the time
from the first send until the last of them is handled, over M (an invoice's read-model row
commits in its handler's transaction, so it cannot appear early).

Beside it, measured in the same run: a plain PostgreSQL insert + commit round trip on one
connection, the floor of any transaction that writes.

Settings: BENCH_HISTORY_SIZES (default "10,1000,10000"), BENCH_HISTORY_MESSAGES (M,
default 300), and those of `bench.scratch`. A quick smoke run:
`BENCH_HISTORY_SIZES=10,200 BENCH_HISTORY_MESSAGES=40 uv run python -m bench.history_credits`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import statistics
import time
from decimal import Decimal
from typing import Any

import asyncpg

from bench.scratch import produce, scratch_run
from tally_contracts import Envelope, Money, topics
from tally_contracts.credits import GrantCredit
from tally_contracts.invoicing import InvoiceFinalized
from tally_messaging.migrations import apply_migrations
from tally_testing import free_port

SIZES = [int(n) for n in os.environ.get("BENCH_HISTORY_SIZES", "10,1000,10000").split(",")]
MESSAGES = int(os.environ.get("BENCH_HISTORY_MESSAGES", "100"))
ROUNDS = int(os.environ.get("BENCH_HISTORY_ROUNDS", "3"))
"""Each size is measured ROUNDS times, the sizes interleaved, and the median kept: the box
is shared, and a burst of other work would otherwise land on one size only."""
DIRECT = 200  # messages handled without Kafka, for the handler-alone figure
# Today, early: inside the services' dedupe window whenever it runs.
POSTED = dt.datetime.now(dt.UTC).replace(hour=6, minute=0, second=0, microsecond=0)
INVOICE_TOTAL = Decimal("10.00")
HISTORY_CHUNK = 1000  # messages whose changes are written in one save while building the history
RAW_COMMITS = 500


def finalized(invoice_id: str) -> InvoiceFinalized:
    return InvoiceFinalized(
        invoice_id=invoice_id,
        currency="USD",
        issued_on=POSTED.date(),
        lines=[],
        total=Money.of(INVOICE_TOTAL, "USD"),
        rule_set_id=None,
        rule_set_version=None,
    )


def big_grant(customer: str, invoices: int) -> GrantCredit:
    amount = INVOICE_TOTAL * (invoices + 1_000_000)  # enough for every measured message too
    return GrantCredit(
        grant_id=f"g-{customer}", kind="promotional", amount=Money.of(amount, "USD"), source="other"
    )


async def write_history(conn: asyncpg.Connection, customer: str, invoices: int) -> float:
    """The grant and N invoices it pays, decided as the service decides them (each message on
    the customer's open items) and saved a chunk of messages at a time; seconds taken."""
    from credits import domain
    from credits.customer import CustomerLedger

    begun = time.perf_counter()
    state = CustomerLedger(customer)
    grant = big_grant(customer, invoices)
    state = await save_chunk(conn, state, [(domain.grant_credit, grant)], f"{customer}-grant", "GrantCredit")
    for start in range(0, invoices, HISTORY_CHUNK):
        chunk = [
            (domain.finalize_invoice, finalized(f"{customer}-inv-{k:06d}"))
            for k in range(start, min(start + HISTORY_CHUNK, invoices))
        ]
        state = await save_chunk(conn, state, chunk, f"{customer}-history-{start}", "InvoiceFinalized")
    settled = await conn.fetchval(
        "select count(*) from invoice_balances where customer_id = $1 and status = 'paid'", customer
    )
    assert settled == invoices, f"{customer}: {settled} of {invoices} history invoices paid"
    return time.perf_counter() - begun


async def save_chunk(
    conn: asyncpg.Connection, state: Any, messages: list[tuple[Any, Any]], chunk_id: str, kind: str
) -> Any:
    """Decide `messages` one after the other, each on the open items the previous one left,
    and write what they changed in one save: every record's last version, every application
    and ledger entry, the read models' last figures. Returns the open items after them."""
    from credits.change import Cause
    from credits.customer import CustomerLedger
    from credits.open_items import Changes, Wanted, changes, open_items
    from credits.store import CreditsStore
    from tally_contracts.credits import CreditBalanceChanged, InvoiceBalanceChanged

    grants: dict[str, Any] = {}
    invoices: dict[str, Any] = {}
    applications: list[Any] = []
    new_invoices: set[str] = set()
    entries: list[Any] = []
    balances: dict[str, Any] = {}
    for n, (operation, data) in enumerate(messages):
        outcome = operation(state, data, Cause(f"{chunk_id}-{n}", POSTED.date()))
        done = changes(state, outcome.state)
        assert not (done.lots or done.payments or done.released or done.refunds or done.deductions)
        grants.update((g.grant_id, g) for g in done.grants)
        invoices.update((i.invoice_id, i) for i in done.invoices)
        applications += done.applications
        new_invoices |= done.new_invoice_ids
        entries += outcome.entries
        for event in outcome.events:
            if isinstance(event, InvoiceBalanceChanged):
                balances[event.invoice_id] = event
            elif isinstance(event, CreditBalanceChanged):
                balances[event.currency] = event
        state = open_items(outcome.state, Wanted())
    merged = Changes(
        customer_id=state.customer_id,
        next_seq=state.next_seq,
        seq_changed=True,
        grants=tuple(grants.values()),
        lots=(),
        invoices=tuple(invoices.values()),
        new_invoice_ids=frozenset(new_invoices),
        payments=(),
        applications=tuple(applications),
        released=(),
        refunds=(),
        deductions=(),
    )
    read_side = CustomerLedger(state.customer_id, invoices=tuple(invoices.values()))
    async with conn.transaction():
        await CreditsStore(conn).save(
            merged, read_side, entries, balances.values(), Cause(chunk_id, POSTED.date()), kind
        )
    return state


async def message_cost(prefix: str, conn: asyncpg.Connection, customer: str, label: str) -> float:
    """Seconds per message: M InvoiceFinalized for `customer` are sent at once; the time from
    the first send until the last is handled, over M. (Not from the first handled to the
    last: credits handles InvoiceFinalized by the batch, so a fetch of them commits at once.)"""
    ids = [f"{customer}-{label}-{j:05d}" for j in range(MESSAGES)]
    envelopes = [Envelope.new(finalized(i), customer_id=customer, occurred_at=POSTED) for i in ids]
    begun = time.perf_counter()
    await produce(prefix, topics.INVOICING_EVENTS, envelopes)
    last = await handled_at(conn, customer, ids[-1])
    unpaid = await conn.fetchval(
        "select count(*) from invoice_balances where customer_id = $1 and invoice_id = any($2::text[])"
        " and amount_due = 0",
        customer,
        ids,
    )
    assert unpaid == MESSAGES, f"{customer}: {MESSAGES - unpaid} measured invoices not paid from the grant"
    return (last - begun) / MESSAGES


async def handled_at(conn: asyncpg.Connection, customer: str, invoice_id: str) -> float:
    """When the invoice's read-model row (written in its handler's transaction) appeared."""
    while not await conn.fetchval(
        "select exists (select from invoice_balances where customer_id = $1 and invoice_id = $2)",
        customer,
        invoice_id,
    ):
        await asyncio.sleep(0.001)
    return time.perf_counter()


async def handler_cost(conn: asyncpg.Connection, customer: str, label: str) -> float:
    """Seconds per message for the handler's own work alone, no Kafka, no runtime: load the
    open items, decide, save what changed, commit (what `credits.handlers` does)."""
    from credits import domain
    from credits.change import Cause
    from credits.open_items import changes, wanted_by
    from credits.store import CreditsStore

    store = CreditsStore(conn)
    begun = time.perf_counter()
    for j in range(DIRECT):
        data = finalized(f"{customer}-{label}-{j:05d}")
        cause = Cause(f"{customer}-{label}-{j}", POSTED.date())
        async with conn.transaction():
            state = await store.load(customer, wanted_by(data))
            outcome = domain.finalize_invoice(state, data, cause)
            done = changes(state, outcome.state)
            await store.save(done, outcome.state, outcome.entries, outcome.events, cause, "InvoiceFinalized")
    return (time.perf_counter() - begun) / DIRECT


async def raw_commit_seconds(conn: asyncpg.Connection) -> float:
    """A one-row insert + commit round trip on one connection, averaged."""
    await conn.execute("create table raw_commits (id bigint primary key, at timestamptz not null)")
    begun = time.perf_counter()
    for n in range(RAW_COMMITS):
        await conn.execute("insert into raw_commits (id, at) values ($1, now())", n)
    return (time.perf_counter() - begun) / RAW_COMMITS


async def main() -> None:
    from credits.app import build

    async with scratch_run(databases=1, http_port=free_port()) as (settings, _):
        conn = await asyncpg.connect(settings.database_url)
        try:
            await apply_migrations(conn, "tally_messaging", "sql")
            await apply_migrations(conn, "credits")
            built = {n: await write_history(conn, f"hist-{n}", n) for n in SIZES}
            direct: dict[int, list[float]] = {n: [] for n in SIZES}
            costs: dict[int, list[float]] = {n: [] for n in SIZES}
            service = build(settings)
            await service.start()
            try:
                await write_history(conn, "warm-up", 0)
                await message_cost(settings.topic_prefix, conn, "warm-up", "warm-up")
                for r in range(ROUNDS):
                    for n in SIZES[r % len(SIZES) :] + SIZES[: r % len(SIZES)]:  # each size first once
                        costs[n].append(
                            await message_cost(settings.topic_prefix, conn, f"hist-{n}", f"next{r}")
                        )
            finally:
                await service.stop()
            for r in range(ROUNDS):
                for n in SIZES:
                    direct[n].append(await handler_cost(conn, f"hist-{n}", f"direct{r}"))
            raw = await raw_commit_seconds(conn)
        finally:
            await conn.close()
    sizes = " / ".join(f"{n:,}" for n in SIZES)

    def line(figures: dict[int, list[float]]) -> str:
        kept = {n: statistics.median(values) for n, values in figures.items()}
        shown = " / ".join(f"{kept[n] * 1000:.2f}" for n in SIZES)
        return f"{shown} ms (last/first {kept[SIZES[-1]] / kept[SIZES[0]]:.2f}x)"

    print(f"history: credits message cost at {sizes} posted invoices for one customer: {line(costs)}")
    print(f"history: credits handler alone (load, decide, save, commit; no Kafka) at {sizes}: {line(direct)}")
    print(f"history: raw PostgreSQL insert+commit round trip: {raw * 1000:.2f} ms")
    print(
        f"history: each figure the median of {ROUNDS} rounds of {MESSAGES} InvoiceFinalized via Kafka"
        f" ({DIRECT} direct), each paid from a grant; histories written through the domain in "
        + ", ".join(f"{built[n]:.1f} s" for n in SIZES)
    )


if __name__ == "__main__":
    asyncio.run(main())
