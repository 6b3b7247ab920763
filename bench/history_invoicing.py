"""Invoicing: the cost of one more message for a customer who already has N posted invoices
(10 / 1,000 / 10,000), on real Kafka and PostgreSQL through the service's own handlers.

Each history is N paid monthly period invoices (two lines each) written straight into the
invoicing database with COPY, for one customer per N, all in the same tables. The service
runs with one message per transaction (`batch_max_records` 1: a usage event arriving alone
is a batch of one), and handles for each customer a burst of

1. `charge`: AddCharge for the next invoice (checked against the open invoice's sum cap),
2. `usage`: usage events of the open period (the period invoice is found or opened),
3. `late usage`: usage events dated in a period already posted (the late-usage rule),

timed from the first send until the last is saved: ms per message. Rounds interleave the
sizes, so the machine's other load falls on each; the median round is printed. Before it
loaded open items only, invoicing read every period invoice of the customer for each of
them. The last size's figure should be within 1.5x of the first. Printed beside them, in the
same run: a plain PostgreSQL insert + commit round trip on its own database, the floor of
any message handled in its own transaction.

The service's cost is also measured without Kafka: the same handlers called on the same
database, one committed transaction per message, 100 times each (median), with the rows of
`invoices` each read (PostgreSQL's own count, `pg_stat_xact_user_tables`): the figure the
1.5x is judged on, as the machine's other load moves the Kafka figures by more than that.

Settings: BENCH_HISTORY_SIZES (default "10,1000,10000"), BENCH_HISTORY_CHARGES (100),
BENCH_HISTORY_USAGE (100), BENCH_HISTORY_ROUNDS (2; 0 leaves the Kafka figures out),
BENCH_HISTORY_HANDLER_REPEATS (100);
BENCH_HISTORY_SMALL=1 for a quick smoke run (10,100,1000; 40 charges, 40 usage events, 1
round, 20 repeats). Those of `bench.scratch`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import statistics
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from bench.scratch import BOOTSTRAP, KAFKA_OPTIONS, produce, scratch_run
from tally_contracts import Envelope, Money, message_key, topics
from tally_contracts.invoicing import AddCharge, UpsertCustomer
from tally_contracts.usage import UsageRecorded
from tally_messaging import Service
from tally_messaging.processing import Delivery
from tally_messaging.settings import ServiceSettings
from tally_messaging.transaction import RawRecord, Transaction

SMALL = os.environ.get("BENCH_HISTORY_SMALL") == "1"
SIZES = [
    int(n)
    for n in os.environ.get("BENCH_HISTORY_SIZES", "10,100,1000" if SMALL else "10,1000,10000").split(",")
]
CHARGES = int(os.environ.get("BENCH_HISTORY_CHARGES", "40" if SMALL else "100"))
USAGE = int(os.environ.get("BENCH_HISTORY_USAGE", "40" if SMALL else "100"))
ROUNDS = int(os.environ.get("BENCH_HISTORY_ROUNDS", "1" if SMALL else "2"))
HANDLER_REPEATS = int(os.environ.get("BENCH_HISTORY_HANDLER_REPEATS", "20" if SMALL else "100"))
# Dated now: a message older than the dedupe window would be dead-lettered.
NOW = dt.datetime.now(dt.UTC)
OPEN_PERIOD = NOW.date().replace(day=1)  # billing day 1
LATE = dt.datetime.combine(OPEN_PERIOD - dt.timedelta(days=1), dt.time(12), dt.UTC)  # posted in every history
POLL = 0.002


def customer_of(size: int) -> str:
    return f"history-{size}"


async def write_history(conn: asyncpg.Connection, customer: str, size: int) -> None:
    """`size` paid monthly invoices before the open period, two lines each, with COPY."""
    from invoicing.domain import period_invoice_id

    invoices, lines = [], []
    start = OPEN_PERIOD
    for _ in range(size):
        end = start - dt.timedelta(days=1)
        start = end.replace(day=1)
        invoice_id = period_invoice_id(customer, start)
        invoices.append(
            (
                invoice_id,
                customer,
                "period",
                "USD",
                "paid",
                start,
                end,
                end,
                Decimal("42.00"),
                Decimal("42.00"),
            )
        )
        lines.append((invoice_id, "subscription:plan", "subscription", "Plan", Decimal("30.00")))
        lines.append((invoice_id, "usage:voice:minute:*", "usage", "voice: 600 minute", Decimal("12.00")))
    await conn.copy_records_to_table(
        "invoices",
        records=[(*i, Decimal(0)) for i in invoices],
        columns=[
            "invoice_id",
            "customer_id",
            "kind",
            "currency",
            "status",
            "period_start",
            "period_end",
            "issued_on",
            "subtotal",
            "total",
            "amount_due",
        ],
    )
    await conn.copy_records_to_table(
        "invoice_lines", records=lines, columns=["invoice_id", "line_id", "kind", "description", "amount"]
    )


async def until(conn: asyncpg.Connection, query: str, *args: Any, at_least: int) -> None:
    while int(await conn.fetchval(query, *args)) < at_least:
        await asyncio.sleep(POLL)


async def started(settings: ServiceSettings) -> Service:
    from invoicing.app import build

    service = build(settings)
    await service.start()
    return service


async def burst_ms(
    producer: AIOKafkaProducer,
    prefix: str,
    topic: str,
    messages: list[Envelope[Any]],
    conn: asyncpg.Connection,
    saved: str,
    customer: str,
) -> float:
    """ms per message: send `messages` at once, wait until the `saved` count of the customer's
    rows has grown by as many."""
    before = int(await conn.fetchval(saved, customer))
    began = time.perf_counter()
    sent = [await producer.send(prefix + topic, m.to_json(), key=message_key(m).encode()) for m in messages]
    await asyncio.gather(*sent)
    await until(conn, saved, customer, at_least=before + len(messages))
    return (time.perf_counter() - began) / len(messages) * 1000


def charges(customer: str, count: int) -> list[Envelope[Any]]:
    """AddCharge for the next invoice: checked against the open invoice's sum cap."""
    return [
        Envelope.new(
            AddCharge(
                charge_id=f"bench-{uuid.uuid4()}",
                description="fee",
                amount=Money.of("1.00", "USD"),
                invoice_now=False,
            ),
            customer_id=customer,
            occurred_at=NOW,
        )
        for _ in range(count)
    ]


def usage(customer: str, count: int, at: dt.datetime) -> list[Envelope[Any]]:
    return [
        Envelope.new(
            UsageRecorded(
                service="voice", quantity=Decimal(1), unit="minute", amount=Money.of("0.02", "USD")
            ),
            customer_id=customer,
            occurred_at=at,
        )
        for _ in range(count)
    ]


PENDING_CHARGES = "select count(*) from pending_charges where customer_id = $1"
PLACED_USAGE = "select count(*) from invoice_line_usage where customer_id = $1"


async def one_round(
    producer: AIOKafkaProducer, prefix: str, conn: asyncpg.Connection, customer: str
) -> tuple[float, float, float]:
    """ms per charge, per usage event of the open period, per late usage event."""
    return (
        await burst_ms(
            producer,
            prefix,
            topics.INVOICING_COMMANDS,
            charges(customer, CHARGES),
            conn,
            PENDING_CHARGES,
            customer,
        ),
        await burst_ms(
            producer, prefix, topics.USAGE, usage(customer, USAGE, NOW), conn, PLACED_USAGE, customer
        ),
        await burst_ms(
            producer, prefix, topics.USAGE, usage(customer, USAGE, LATE), conn, PLACED_USAGE, customer
        ),
    )


ROWS_READ = (
    "select coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) from pg_stat_xact_user_tables"
    " where relname = 'invoices'"
)


async def handled_directly(conn: asyncpg.Connection, message: Envelope[Any]) -> tuple[float, int]:
    """One message through the service's own handler, in one committed transaction on the
    service's database as the runtime runs it (inbox and Kafka aside): seconds taken by the
    handler and the commit, and the rows of `invoices` it read (PostgreSQL's own count,
    read before the commit and left out of the time)."""
    from invoicing import handlers, ingest

    transaction = conn.transaction()
    await transaction.start()
    try:
        before = int(await conn.fetchval(ROWS_READ))
        began = time.perf_counter()
        tx = Transaction(conn, "invoicing:bench", topics.INVOICING_EVENTS, "")
        if isinstance(message.data, UsageRecorded):
            raw = RawRecord(topic=topics.USAGE, partition=0, offset=0, key=None, value=message.to_json())
            await ingest.record_usage([Delivery(message, raw)], tx)
        else:
            await handlers.add_charge(message, tx)
        await tx.flush()
        handled = time.perf_counter() - began
        read = int(await conn.fetchval(ROWS_READ)) - before
    except BaseException:
        await transaction.rollback()
        raise
    began = time.perf_counter()
    await transaction.commit()
    return handled + time.perf_counter() - began, read


async def handler_figures(conn: asyncpg.Connection) -> dict[int, list[tuple[float, int]]]:
    """Per size: (median ms, rows read) for a charge, a usage event, a late usage event,
    HANDLER_REPEATS calls each, interleaved over the sizes."""
    kinds: tuple[Callable[[str], Envelope[Any]], ...] = (
        lambda customer: charges(customer, 1)[0],
        lambda customer: usage(customer, 1, NOW)[0],
        lambda customer: usage(customer, 1, LATE)[0],
    )
    taken: dict[tuple[int, int], list[float]] = {}
    read: dict[tuple[int, int], int] = {}
    for _ in range(HANDLER_REPEATS):
        for size in SIZES:
            for index, make in enumerate(kinds):
                seconds, rows = await handled_directly(conn, make(customer_of(size)))
                taken.setdefault((size, index), []).append(seconds)
                read[(size, index)] = max(read.get((size, index), 0), rows)
    return {
        size: [(statistics.median(taken[(size, i)]) * 1000, read[(size, i)]) for i in range(len(kinds))]
        for size in SIZES
    }


async def commit_round_trip_ms(dsn: str) -> float:
    """Median ms of a plain PostgreSQL insert + commit, one row per transaction."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("create table round_trip (id uuid primary key, at timestamptz not null)")
        taken = []
        for _ in range(200):
            began = time.perf_counter()
            async with conn.transaction():
                await conn.execute("insert into round_trip (id, at) values ($1, now())", uuid.uuid4())
            taken.append(time.perf_counter() - began)
        return statistics.median(taken) * 1000
    finally:
        await conn.close()


async def main() -> None:
    async with scratch_run(databases=2, http_port=18183) as (settings, (raw_dsn, dsn)):
        prefix = settings.topic_prefix
        # One usage event per batch: each event is its own transaction, as a message
        # arriving alone is; a burst then shows the cost per message, not per Kafka round trip.
        settings = settings.model_copy(update={"batch_max_records": 1})
        conn = await asyncpg.connect(dsn)
        service = await started(settings)  # applies the migrations
        producer = AIOKafkaProducer(
            bootstrap_servers=BOOTSTRAP, enable_idempotence=True, linger_ms=5, **KAFKA_OPTIONS
        )
        await producer.start()
        try:
            customers = [
                Envelope.new(UpsertCustomer(currency="USD", billing_day=1), customer_id=customer_of(n))
                for n in SIZES
            ]
            await produce(prefix, topics.INVOICING_COMMANDS, customers)
            await until(conn, "select count(*) from customers", at_least=len(SIZES))
            for size in SIZES:
                await write_history(conn, customer_of(size), size)
            await conn.execute("analyze")
            for size in SIZES:  # opens each customer's invoice of the open period; warms up
                await one_round(producer, prefix, conn, customer_of(size))
            rounds: dict[int, list[tuple[float, float, float]]] = {n: [] for n in SIZES}
            for _ in range(ROUNDS):  # interleaved, so the box's other load falls on every size
                for size in SIZES:
                    rounds[size].append(await one_round(producer, prefix, conn, customer_of(size)))
        finally:
            await producer.stop()
            await service.stop()
        try:
            direct = await handler_figures(conn)
        finally:
            await conn.close()
        floor = await commit_round_trip_ms(raw_dsn)
    sizes = " / ".join(f"{n:,}" for n in SIZES)
    names = ("charge (AddCharge, next invoice)", "usage of the open period", "late usage")
    for index, name in enumerate(names):
        values = [direct[n][index][0] for n in SIZES]
        rows = " / ".join(str(direct[n][index][1]) for n in SIZES)
        print(
            f"history: invoicing {name}, handler ms per message at {sizes} posted invoices for one"
            f" customer: {' / '.join(f'{v:.2f}' for v in values)} (last/first {values[-1] / values[0]:.2f}x;"
            f" invoice rows read: {rows})"
        )
    for index, name in enumerate(names if ROUNDS else ()):
        values = [statistics.median(r[index] for r in rounds[n]) for n in SIZES]
        print(
            f"history: invoicing {name} through Kafka, ms per message in a burst at {sizes}:"
            f" {' / '.join(f'{v:.2f}' for v in values)} (last/first {values[-1] / values[0]:.2f}x)"
        )
    print(f"raw PostgreSQL insert + commit round trip: {floor:.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
