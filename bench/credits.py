"""Credits: the two loads that hurt a ledger service, timed on real Kafka and PostgreSQL.

1. One customer with N open invoices (posted, unpaid) receives one credit large enough
   to pay them all: the time from sending the GrantCredit until it is handled (every
   application, entry and event written in its one transaction).
2. Bill runs: M customers, each holding a promotional credit, each get one posted
   invoice (sent on `invoicing.events` while the service runs); time from the first send
   until every invoice is handled (credit applied), as invoices per second and the cost per invoice,
   for each M of BENCH_CREDIT_CUSTOMERS (one after the other, on the same database), with
   the peak RSS of the process meanwhile.

A message is handled when its partition's handled offset is past it: the offset and the
ledger change are written in one transaction, so the count cannot run ahead.

Settings: BENCH_OPEN_INVOICES (default 1000), BENCH_CREDIT_CUSTOMERS (sizes, default
"1000,10000,100000": issue 16's sizes and the 10,000 of its target; the last takes about five
minutes on two cores), and those of
`bench.scratch`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import os
import time
from typing import Any

import asyncpg

from bench.scratch import consumer_group, peak_rss_mib, produce, reset_peak_rss, scratch_run, until_handled
from tally_contracts import Envelope, Money, topics
from tally_contracts.credits import GrantCredit
from tally_contracts.invoicing import InvoiceFinalized
from tally_messaging import Service
from tally_messaging.settings import ServiceSettings

OPEN_INVOICES = int(os.environ.get("BENCH_OPEN_INVOICES", "1000"))
BILL_RUN_SIZES = [int(n) for n in os.environ.get("BENCH_CREDIT_CUSTOMERS", "1000,10000,100000").split(",")]
"""Bill runs of these many customers, one after the other: the cost per invoice at each size."""
# Today, early: inside the services' dedupe window whenever it runs.
POSTED = dt.datetime.now(dt.UTC).replace(hour=6, minute=0, second=0, microsecond=0)
INVOICES = "credits:invoicing.events"
COMMANDS = "credits:credits.commands"


def posted(customer: str, invoice_id: str, total: str) -> Envelope[Any]:
    data = InvoiceFinalized(
        invoice_id=invoice_id,
        currency="USD",
        issued_on=POSTED.date(),
        lines=[],
        total=Money.of(total, "USD"),
        rule_set_id=None,
        rule_set_version=None,
    )
    return Envelope.new(data, customer_id=customer, occurred_at=POSTED)


def grant(customer: str, grant_id: str, amount: str) -> Envelope[Any]:
    data = GrantCredit(grant_id=grant_id, kind="promotional", amount=Money.of(amount, "USD"), source="other")
    return Envelope.new(data, customer_id=customer, occurred_at=POSTED)


async def started(settings: ServiceSettings) -> Service:
    from credits.app import build

    service = build(settings)
    await service.start()
    return service


async def one_customer_many_invoices(
    settings: ServiceSettings, conn: asyncpg.Connection
) -> tuple[float, float]:
    """Seconds to post N invoices for one customer, and to handle the one grant that pays them."""
    customer = "bench-big"
    invoices = [posted(customer, f"inv-big-{i:05d}", "10.00") for i in range(OPEN_INVOICES)]
    service = await started(settings)
    try:
        begun = time.perf_counter()
        await produce(settings.topic_prefix, topics.INVOICING_EVENTS, invoices)
        await until_handled(conn, consumer_group(settings, INVOICES), OPEN_INVOICES)
        posting = time.perf_counter() - begun
        big = grant(customer, "g-big", f"{10 * OPEN_INVOICES}.00")
        begun = time.perf_counter()
        await produce(settings.topic_prefix, topics.CREDITS_COMMANDS, [big])
        await until_handled(conn, consumer_group(settings, COMMANDS), 1)
        paying = time.perf_counter() - begun
    finally:
        await service.stop()
    due = await conn.fetchval("select sum(amount_due) from invoice_balances where customer_id = $1", customer)
    assert due == 0, f"{due} still due after the large grant"
    return posting, paying


async def bill_run(
    settings: ServiceSettings, conn: asyncpg.Connection, size: int, handled: tuple[int, int]
) -> tuple[float, float | None]:
    """Seconds from start until `size` pre-loaded invoices (each customer holding credit) are
    handled, and the peak RSS meanwhile (MiB). `handled`: the grants and invoices the
    service handled before (earlier parts and sizes)."""
    customers = [f"bench-{size}-{i}" for i in range(size)]
    grants = [grant(c, f"g-{c}", "5.00") for c in customers]
    await produce(settings.topic_prefix, topics.CREDITS_COMMANDS, grants)
    service = await started(settings)
    try:
        await until_handled(conn, consumer_group(settings, COMMANDS), handled[0] + size)
    finally:
        await service.stop()
    invoices = [posted(c, f"inv-{c}-2026-11", "12.34") for c in customers]
    del grants, customers
    gc.collect()
    service = await started(settings)
    try:
        # Timed from the first invoice's send, the service already consuming: its start-up
        # (a few seconds of group join) would swamp the cost per invoice of a small run.
        reset_peak_rss()
        begun = time.perf_counter()
        await produce(settings.topic_prefix, topics.INVOICING_EVENTS, invoices)
        await until_handled(conn, consumer_group(settings, INVOICES), handled[1] + size)
        return time.perf_counter() - begun, peak_rss_mib()
    finally:
        await service.stop()


async def main() -> None:
    runs: list[tuple[int, float, float | None]] = []
    async with scratch_run(databases=1, http_port=18182) as (settings, _):
        conn = await asyncpg.connect(settings.database_url)
        try:
            posting, paying = await one_customer_many_invoices(settings, conn)
            handled = (1, OPEN_INVOICES)  # the large grant, the invoices it paid
            for size in BILL_RUN_SIZES:
                drain, rss = await bill_run(settings, conn, size, handled)
                runs.append((size, drain, rss))
                handled = (handled[0] + size, handled[1] + size)
        finally:
            await conn.close()
    print(f"credits: {OPEN_INVOICES:,} invoices posted for one customer in {posting:.1f} s")
    print(f"credits: one grant paying {OPEN_INVOICES:,} open invoices handled in {paying:.2f} s")
    for size, drain, rss in runs:
        print(
            f"credits: bill run of {size:,} customers with credit drained in {drain:.1f} s:"
            f" {size / drain:,.0f} invoices/s, {drain / size * 1e3:.2f} ms per invoice"
        )
        if rss is not None:  # the service runs inside the benchmark's process
            print(f"credits: bill run of {size:,}: peak RSS of the process running credits {rss:,.0f} MiB")


if __name__ == "__main__":
    asyncio.run(main())
