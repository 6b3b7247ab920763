"""Every invoicing command and rejection code, handler by handler, on a real PostgreSQL
database (the service's migrations applied); Kafka is not needed to decide, so the wiring
is left to test_flow. A message is handled as the runtime does: one transaction, the
handler inside a savepoint, a DomainError undoing it."""

import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from importlib.resources import files
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from invoicing import billing, handlers, ingest
from invoicing.store import InvoicingStore
from tally_contracts import DomainError, Envelope, Line, Money, parse_message
from tally_contracts.credits import InvoiceBalanceChanged
from tally_contracts.invoicing import (
    AddCharge,
    CancelSubscription,
    CloseInvoice,
    CreateSubscription,
    Price,
    PutPriceList,
    RegenerateInvoice,
    RunBilling,
    UpsertCustomer,
    VoidInvoice,
)
from tally_contracts.rules import InvoiceAdjusted
from tally_contracts.usage import UsageRecorded
from tally_messaging import Delivery, Transaction
from tally_messaging.migrations import apply_migrations
from tally_messaging.transaction import RawRecord

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
NOV = dt.datetime(2026, 11, 3, 9, 0, tzinfo=dt.UTC)
Handler = Callable[[Envelope[Any], Transaction], Awaitable[None]]


@dataclass
class Answer:
    """What handling one message left: the events written, or the rejection."""

    events: list[Envelope[Any]]
    rejected: DomainError | None = None
    dead_letters: list[dict[str, Any]] = field(default_factory=list)

    def of(self, type_name: str) -> list[Any]:
        return [e.data for e in self.events if e.type == type_name]

    @property
    def code(self) -> str | None:
        return self.rejected.code if self.rejected else None


class Desk:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def handle(
        self, handler: Handler, data: Any, customer: str | None = "c1", at: dt.datetime = NOV
    ) -> Answer:
        envelope = Envelope.new(data, customer_id=customer, occurred_at=at)
        start = await self.conn.fetchval("select coalesce(max(id), 0) from tally_outbox")
        async with self.conn.transaction():
            tx = Transaction(self.conn, "invoicing-test", "invoicing.events", "")
            try:
                async with self.conn.transaction():
                    await handler(envelope, tx)
                    await tx.flush()
            except DomainError as rejection:
                return Answer([], rejection)
        return await self._written_since(start)

    async def ingest(self, *usage: Envelope[Any]) -> Answer:
        """One batch of usage, as the runtime hands it to the batch handler."""
        batch = [
            Delivery(u, RawRecord(topic="usage", partition=0, offset=n, key=None, value=u.to_json()))
            for n, u in enumerate(usage)
        ]
        start = await self.conn.fetchval("select coalesce(max(id), 0) from tally_outbox")
        async with self.conn.transaction():
            tx = Transaction(self.conn, "invoicing-test", "invoicing.events", "")
            await ingest.record_usage(batch, tx)
            await tx.flush()
        return await self._written_since(start)

    async def _written_since(self, start: int) -> Answer:
        rows = await self.conn.fetch(
            "select type, payload from tally_outbox where id > $1 order by id", start
        )
        return Answer(
            [parse_message(bytes(r["payload"])) for r in rows if r["type"] != "DeadLetter"],
            dead_letters=[json.loads(bytes(r["payload"])) for r in rows if r["type"] == "DeadLetter"],
        )

    async def invoices(self, customer: str = "c1") -> list[asyncpg.Record]:
        return list(
            await self.conn.fetch(
                "select * from invoices where customer_id = $1 order by created_seq", customer
            )
        )


@pytest_asyncio.fixture(loop_scope="session")
async def desk(new_database: Callable[[], Awaitable[str]]) -> AsyncIterator[Desk]:
    conn = await asyncpg.connect(await new_database())
    await apply_migrations(conn, "tally_messaging", "sql")
    await apply_migrations(conn, "invoicing")
    yield Desk(conn)
    await conn.close()


async def customer(desk: Desk, name: str = "c1", currency: str = "USD", billing_day: int = 1) -> None:
    answer = await desk.handle(
        handlers.upsert_customer, UpsertCustomer(currency=currency, billing_day=billing_day), name
    )
    assert answer.rejected is None


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


# -- customers and prices -------------------------------------------------------------


async def test_upsert_customer_needs_a_customer_id(desk: Desk) -> None:
    answer = await desk.handle(handlers.upsert_customer, UpsertCustomer(currency="USD"), None)

    assert answer.code == "customer_id_missing"


async def test_currency_change_is_rejected_while_an_invoice_is_open(desk: Desk) -> None:
    await customer(desk)
    sub = CreateSubscription(subscription_id="s", name="Plan", fee=usd("10"), starts_on=dt.date(2026, 11, 1))
    assert (await desk.handle(handlers.create_subscription, sub)).rejected is None

    answer = await desk.handle(handlers.upsert_customer, UpsertCustomer(currency="EUR"))

    assert answer.code == "currency_change_with_open_invoices"
    assert (await desk.handle(handlers.upsert_customer, UpsertCustomer(currency="USD", name="n"))).of(
        "CustomerUpserted"
    )


async def test_put_price_list_announces_how_many_prices(desk: Desk) -> None:
    prices = [Price(service="voice", unit="minute", unit_price=Decimal("0.02"), currency="USD")]

    answer = await desk.handle(handlers.put_price_list, PutPriceList(price_list_id="pl", prices=prices), None)

    [changed] = answer.of("PriceListChanged")
    assert changed.price_list_id == "pl" and changed.prices == 1


# -- subscriptions ----------------------------------------------------------------------


async def test_commands_for_an_unknown_customer_are_rejected(desk: Desk) -> None:
    sub = CreateSubscription(subscription_id="s", name="Plan", fee=usd("10"), starts_on=dt.date(2026, 11, 1))
    charge = AddCharge(charge_id="x", description="d", amount=usd("1"))
    cancel = CancelSubscription(subscription_id="s", ends_on=dt.date(2026, 11, 1))

    for handler, data in (
        (handlers.create_subscription, sub),
        (handlers.add_charge, charge),
        (handlers.cancel_subscription, cancel),
    ):
        assert (await desk.handle(handler, data, "nobody")).code == "unknown_customer"


async def test_create_subscription_opens_the_period_once_and_refuses_a_duplicate(desk: Desk) -> None:
    await customer(desk)
    sub = CreateSubscription(subscription_id="s", name="Plan", fee=usd("10"), starts_on=dt.date(2026, 11, 16))

    first = await desk.handle(handlers.create_subscription, sub)
    again = await desk.handle(handlers.create_subscription, sub)

    assert [c.period_start for c in first.of("InvoiceCreated")] == [dt.date(2026, 11, 1)]
    assert first.of("SubscriptionCreated")[0].subscription_id == "s"
    assert again.code == "duplicate_subscription"
    assert len(await desk.invoices()) == 1


async def test_subscription_fee_in_another_currency_is_rejected(desk: Desk) -> None:
    await customer(desk)
    sub = CreateSubscription(
        subscription_id="s", name="Plan", fee=Money.of("10", "EUR"), starts_on=dt.date(2026, 11, 1)
    )

    assert (await desk.handle(handlers.create_subscription, sub)).code == "currency_mismatch"


async def test_subscription_starting_past_the_calendar_is_rejected_with_a_reason(desk: Desk) -> None:
    """D7: the domain refuses what the contract's date window would also refuse."""
    await customer(desk)
    far = CreateSubscription.model_construct(
        subscription_id="s", name="Plan", fee=usd("10"), starts_on=dt.date(9999, 12, 15)
    )

    answer = await desk.handle(handlers.create_subscription, far)

    assert answer.code == "date_out_of_range" and "9999-12-15" in answer.rejected.reason  # type: ignore[union-attr]


async def test_cancel_subscription_ends_it_and_the_close_prorates(desk: Desk) -> None:
    await customer(desk)
    sub = CreateSubscription(subscription_id="s", name="Plan", fee=usd("30"), starts_on=dt.date(2026, 11, 1))
    await desk.handle(handlers.create_subscription, sub)

    unknown = await desk.handle(
        handlers.cancel_subscription, CancelSubscription(subscription_id="t", ends_on=dt.date(2026, 11, 10))
    )
    early = await desk.handle(
        handlers.cancel_subscription, CancelSubscription(subscription_id="s", ends_on=dt.date(2026, 10, 31))
    )
    cancelled = await desk.handle(
        handlers.cancel_subscription, CancelSubscription(subscription_id="s", ends_on=dt.date(2026, 11, 10))
    )
    closed = await desk.handle(billing.run_billing, RunBilling(as_of=dt.date(2026, 12, 1)))

    assert unknown.code == "unknown_subscription"
    assert early.code == "ends_before_start"
    assert cancelled.of("SubscriptionCancelled")[0].ends_on == dt.date(2026, 11, 10)
    [invoice] = closed.of("InvoiceClosed")
    assert [ln.amount for ln in invoice.lines] == [usd("10.00")]  # 10 of 30 days


# -- charges ------------------------------------------------------------------------------


async def test_a_repeated_charge_id_is_rejected_as_duplicate_charge(desk: Desk) -> None:
    """D6: the second pending charge with the same id hit a primary key and was dead-lettered."""
    await customer(desk)
    charge = AddCharge(charge_id="c", description="Setup", amount=usd("5"), invoice_now=False)

    first = await desk.handle(handlers.add_charge, charge)
    again = await desk.handle(handlers.add_charge, charge)
    now = await desk.handle(handlers.add_charge, charge.model_copy(update={"invoice_now": True}))

    assert first.of("ChargeAdded")[0].invoice_id is None
    assert again.code == "duplicate_charge" and now.code == "duplicate_charge"


async def test_a_charge_id_billed_already_is_still_a_duplicate(desk: Desk) -> None:
    await customer(desk)
    charge = AddCharge(charge_id="c", description="Setup", amount=usd("5"), invoice_now=False)
    await desk.handle(handlers.add_charge, charge)
    await desk.handle(billing.run_billing, RunBilling(as_of=dt.date(2026, 12, 1)))  # no period: stays pending
    await desk.handle(
        handlers.create_subscription,
        CreateSubscription(subscription_id="s", name="P", fee=usd("1"), starts_on=dt.date(2026, 11, 1)),
    )
    billed = await desk.handle(billing.run_billing, RunBilling(as_of=dt.date(2026, 12, 1)))
    assert [ln.line_id for ln in billed.of("InvoiceClosed")[0].lines] == ["subscription:s", "charge:c"]

    assert (await desk.handle(handlers.add_charge, charge)).code == "duplicate_charge"


async def test_charges_of_two_customers_never_share_an_invoice_id(desk: Desk) -> None:
    """D5: `inv-{customer}-charge-{charge}` of one customer was `inv-{customer}-{date}` of another."""
    await customer(desk, "pabb79fe")
    await customer(desk, "pabb79fe-charge-x")
    charge = AddCharge(charge_id="x-2026-11-01", description="d", amount=usd("5"))
    sub = CreateSubscription(subscription_id="s", name="P", fee=usd("1"), starts_on=dt.date(2026, 11, 1))

    one_time = await desk.handle(handlers.add_charge, charge, "pabb79fe")
    period = await desk.handle(handlers.create_subscription, sub, "pabb79fe-charge-x")

    [a] = one_time.of("InvoiceCreated")
    [b] = period.of("InvoiceCreated")
    assert a.invoice_id != b.invoice_id
    assert [i["invoice_id"] for i in await desk.invoices("pabb79fe-charge-x")] == [b.invoice_id]


async def test_invoices_of_the_old_id_scheme_are_found_not_ignored(desk: Desk) -> None:
    """Periods opened before the new ids keep their ids: the close of November finds December
    already open (the insert conflicts) and usage goes on it, instead of on an id that
    does not exist."""
    await priced(desk)
    for start, end in (("2026-11-01", "2026-11-30"), ("2026-12-01", "2026-12-31")):
        await desk.conn.execute(
            "insert into invoices (invoice_id, customer_id, kind, currency, status, period_start, period_end)"
            " values ($1, 'c1', 'period', 'USD', 'pending', $2, $3)",
            f"inv-c1-{start}",
            dt.date.fromisoformat(start),
            dt.date.fromisoformat(end),
        )
    await desk.ingest(usage("1"))

    closed = await desk.handle(billing.run_billing, RunBilling(as_of=dt.date(2026, 12, 1)))
    await desk.ingest(usage("2", at=NOV + dt.timedelta(days=30)))

    assert closed.of("InvoiceClosed")[0].invoice_id == "inv-c1-2026-11-01" and not closed.of("InvoiceCreated")
    lines = await desk.conn.fetch("select invoice_id, quantity from invoice_lines order by invoice_id")
    assert [(r["invoice_id"], r["quantity"]) for r in lines] == [
        ("inv-c1-2026-11-01", Decimal(1)),
        ("inv-c1-2026-12-01", Decimal(2)),
    ]


async def test_a_pending_charge_that_would_take_the_open_invoice_past_the_sum_cap_is_rejected(
    desk: Desk,
) -> None:
    """D4, where the sum is made: the command is answered, not the close dead-lettered."""
    await customer(desk)
    sub = CreateSubscription(subscription_id="s", name="P", fee=usd("1"), starts_on=dt.date(2026, 11, 1))
    await desk.handle(handlers.create_subscription, sub)
    await desk.conn.execute(  # what many earlier charges added up to
        "insert into pending_charges (customer_id, charge_id, description, amount, currency)"
        " values ('c1', 'many', 'x', 999999999999999999, 'USD')"
    )
    charge = AddCharge(
        charge_id="one-more", description="d", amount=usd("900000000000000.00"), invoice_now=False
    )

    answer = await desk.handle(handlers.add_charge, charge)

    assert answer.code == "total_over_cap" and answer.rejected.reason.startswith("amount:")  # type: ignore[union-attr]


async def test_two_charges_at_the_single_amount_cap_close_to_a_valid_invoice(desk: Desk) -> None:
    """D4, the probe's case: 2 × 900,000,000,000,000.00 is a sum the wire accepts (below 10^18)."""
    await customer(desk)
    for charge_id in ("a", "b"):
        big = AddCharge(
            charge_id=charge_id, description="d", amount=usd("900000000000000.00"), invoice_now=False
        )
        assert (await desk.handle(handlers.add_charge, big)).rejected is None
    await desk.handle(
        handlers.create_subscription,
        CreateSubscription(subscription_id="s", name="P", fee=usd("0"), starts_on=dt.date(2026, 11, 1)),
    )

    closed = await desk.handle(billing.run_billing, RunBilling(as_of=dt.date(2026, 12, 1)))

    [event] = [e for e in closed.events if e.type == "InvoiceClosed"]
    assert parse_message(event.to_json()).data.subtotal == usd("1800000000000000.00")


# -- closing, finalising, voiding, regenerating -------------------------------------------


async def test_close_invoice_closes_a_pending_invoice_once(desk: Desk) -> None:
    await customer(desk)
    sub = CreateSubscription(subscription_id="s", name="P", fee=usd("30"), starts_on=dt.date(2026, 11, 1))
    [created] = (await desk.handle(handlers.create_subscription, sub)).of("InvoiceCreated")

    closed = await desk.handle(billing.close_invoice, CloseInvoice(invoice_id=created.invoice_id))
    again = await desk.handle(billing.close_invoice, CloseInvoice(invoice_id=created.invoice_id))
    unknown = await desk.handle(billing.close_invoice, CloseInvoice(invoice_id="inv-none"))
    someone_else = await desk.handle(billing.close_invoice, CloseInvoice(invoice_id=created.invoice_id), "c2")

    assert closed.of("InvoiceClosed")[0].subtotal == usd("30.00")
    assert [c.period_start for c in closed.of("InvoiceCreated")] == [dt.date(2026, 12, 1)]
    assert again.code == "invoice_closed"
    assert unknown.code == "unknown_invoice" and someone_else.code == "unknown_invoice"


async def test_void_and_regenerate_answer_each_status(desk: Desk) -> None:
    await customer(desk)
    [closed] = (
        await desk.handle(handlers.add_charge, AddCharge(charge_id="c", description="d", amount=usd("40")))
    ).of("InvoiceClosed")
    invoice_id = closed.invoice_id

    not_posted = await desk.handle(handlers.void_invoice, VoidInvoice(invoice_id=invoice_id))
    not_voided = await desk.handle(handlers.regenerate_invoice, RegenerateInvoice(invoice_id=invoice_id))
    adjusted = InvoiceAdjusted(invoice_id=invoice_id, rule_set_id="r", rule_set_version=1, lines=[])
    posted = await desk.handle(handlers.finalize, adjusted)
    repeated = await desk.handle(handlers.finalize, adjusted)
    paid = await desk.handle(
        handlers.balance_changed,
        InvoiceBalanceChanged(
            invoice_id=invoice_id,
            total=usd("40"),
            credits_applied=usd("0"),
            payments_applied=usd("40"),
            amount_due=usd("0"),
            status="paid",
        ),
    )
    voided = await desk.handle(handlers.void_invoice, VoidInvoice(invoice_id=invoice_id, reason="wrong"))
    regenerated = await desk.handle(handlers.regenerate_invoice, RegenerateInvoice(invoice_id=invoice_id))
    twice = await desk.handle(handlers.regenerate_invoice, RegenerateInvoice(invoice_id=invoice_id))

    assert not_posted.code == "invoice_closed" and not_voided.code == "invoice_closed"
    assert posted.of("InvoiceFinalized")[0].total == usd("40.00") and repeated.events == []
    assert [s.status for s in paid.of("InvoiceStatusChanged")] == ["paid"]
    assert voided.of("InvoiceVoided")[0].reason == "wrong"
    [again] = regenerated.of("InvoiceClosed")
    assert again.regenerated_from == invoice_id and again.invoice_id != invoice_id
    assert twice.code == "already_regenerated"


async def test_rules_answer_for_an_unknown_invoice_or_in_another_currency_is_refused(desk: Desk) -> None:
    await customer(desk)
    [closed] = (
        await desk.handle(handlers.add_charge, AddCharge(charge_id="c", description="d", amount=usd("4")))
    ).of("InvoiceClosed")
    euro = Line(line_id="a", kind="adjustment", description="x", amount=Money.of("1", "EUR"))

    unknown = await desk.handle(
        handlers.finalize,
        InvoiceAdjusted(invoice_id="inv-x", rule_set_id=None, rule_set_version=None, lines=[]),
    )
    mixed = await desk.handle(
        handlers.finalize,
        InvoiceAdjusted(invoice_id=closed.invoice_id, rule_set_id=None, rule_set_version=None, lines=[euro]),
    )

    assert unknown.code == "unknown_invoice" and mixed.code == "currency_mismatch"


# -- bill runs isolate failures ----------------------------------------------------------------


async def test_a_bill_run_bills_every_customer_but_the_one_whose_invoice_cannot_close(desk: Desk) -> None:
    for name in ("a", "b", "c"):
        await customer(desk, name)
        sub = CreateSubscription(subscription_id="s", name="P", fee=usd("10"), starts_on=dt.date(2026, 11, 1))
        await desk.handle(handlers.create_subscription, sub, name)
    await desk.conn.execute(  # b's invoice adds up past the sum cap (data from before the checks)
        "insert into pending_charges (customer_id, charge_id, description, amount, currency) values"
        " ('b', 'x', 'x', 999999999999999999.99, 'USD')"
    )

    run = await desk.handle(billing.run_billing, RunBilling(as_of=dt.date(2026, 12, 1)), None)

    assert sorted(str(e.customer_id) for e in run.events if e.type == "InvoiceClosed") == ["a", "c"]
    assert not [e for e in run.events if e.type == "CommandRejected"]  # the others were billed
    [failed] = [e for e in run.events if e.type == "InvoiceCloseFailed"]
    [pending] = await desk.invoices("b")
    assert failed.customer_id == "b" and failed.data.code == "total_over_cap"
    assert failed.data.invoice_id == pending["invoice_id"] and failed.data.as_of == dt.date(2026, 12, 1)
    assert "next RunBilling" in failed.data.reason
    assert pending["status"] == "pending"  # rolled back alone, retried later
    assert [e.customer_id for e in run.events if e.type == "InvoiceCreated"] == ["a", "c"]
    closing = await desk.handle(billing.close_invoice, CloseInvoice(invoice_id=pending["invoice_id"]), "b")
    assert closing.code == "total_over_cap"  # a command on it alone is still refused, changing nothing

    await desk.conn.execute("delete from pending_charges where customer_id = 'b'")
    assert (await desk.conn.fetchval("select count(*) from invoices where status = 'pending'")) == 3
    retried = await desk.handle(billing.run_billing, RunBilling(as_of=dt.date(2026, 12, 1)), None)
    assert [e.customer_id for e in retried.events if e.type == "InvoiceClosed"] == ["b"]


# -- usage -----------------------------------------------------------------------------------


def usage(
    quantity: str, amount: Money | None = None, customer: str = "c1", at: dt.datetime = NOV
) -> Envelope[Any]:
    data = UsageRecorded(service="voice", quantity=Decimal(quantity), unit="minute", amount=amount)
    return Envelope.new(data, customer_id=customer, occurred_at=at)


async def priced(desk: Desk) -> None:
    prices = [Price(service="voice", unit="minute", unit_price=Decimal("0.02"), currency="USD")]
    await desk.handle(handlers.put_price_list, PutPriceList(price_list_id="default", prices=prices), None)
    await customer(desk)


async def test_pre_rated_usage_with_a_non_terminating_unit_price_is_billed_by_its_amount(desk: Desk) -> None:
    """D3: quantity 3, amount 1.00 made a 28-digit unit price that the close refused."""
    await priced(desk)
    await desk.ingest(usage("3", usd("1.00")))

    closed = await desk.handle(billing.run_billing, RunBilling(as_of=dt.date(2026, 12, 1)), None)

    [invoice] = closed.of("InvoiceClosed")
    [line] = invoice.lines
    assert invoice.subtotal == usd("1.00") and line.quantity == Decimal(3)
    assert line.unit_price == Decimal("0.333333333333")


async def test_unit_prices_stored_unrounded_before_the_rule_are_rounded_by_migration(
    new_database: Callable[[], Awaitable[str]],
) -> None:
    """A pending invoice holding a 28-digit unit price (stored before the fix) reads and closes."""
    conn = await asyncpg.connect(await new_database())
    try:
        await apply_migrations(conn, "tally_messaging", "sql")
        folder = files("invoicing").joinpath("migrations")
        for name in ("0001_init.sql", "0002_charge_ids.sql"):  # the schema as it was
            await conn.execute(folder.joinpath(name).read_text())
            await conn.execute("insert into schema_migrations (name) values ($1)", f"invoicing/{name}")
        await conn.execute(
            "insert into invoices (invoice_id, customer_id, kind, currency, status, period_start, period_end)"
            " values ('inv-old', 'c1', 'period', 'USD', 'pending', '2026-11-01', '2026-11-30');"
            " insert into invoice_lines (invoice_id, line_id, kind, raw_amount, quantity, unit_price) values"
            " ('inv-old', 'a', 'usage', 1, 3, 0.3333333333333333333333333333),"
            " ('inv-old', 'b', 'usage', 0, 0, 0.0000000000025),"
            " ('inv-old', 'c', 'usage', 10000, 0.000000000001, 10000000000000000)"
        )

        await apply_migrations(conn, "invoicing")

        lines = await InvoicingStore(conn).lines("inv-old", "USD")
        assert [ln.unit_price for ln in lines] == [Decimal("0.333333333333"), Decimal("0.000000000002"), None]
    finally:
        await conn.close()


async def test_charge_ids_used_before_the_migration_stay_used(
    new_database: Callable[[], Awaitable[str]],
) -> None:
    conn = await asyncpg.connect(await new_database())
    try:
        await apply_migrations(conn, "tally_messaging", "sql")
        await conn.execute(files("invoicing").joinpath("migrations", "0001_init.sql").read_text())
        await conn.execute("insert into schema_migrations (name) values ('invoicing/0001_init.sql')")
        await conn.execute(
            "insert into pending_charges (customer_id, charge_id, description, amount, currency)"
            " values ('c1', 'pending', 'x', 1, 'USD');"
            " insert into invoices (invoice_id, customer_id, kind, currency, status, period_start, period_end)"
            " values ('inv-c1-charge-billed', 'c1', 'one_time', 'USD', 'posted', '2026-11-03', '2026-11-03');"
            " insert into invoice_lines (invoice_id, line_id, kind, amount) values"
            " ('inv-c1-charge-billed', 'charge:billed', 'one_time', 1)"
        )

        await apply_migrations(conn, "invoicing")

        store = InvoicingStore(conn)
        assert not await store.record_charge_id("c1", "pending")
        assert not await store.record_charge_id("c1", "billed")
        assert await store.record_charge_id("c1", "new") and await store.record_charge_id("c2", "billed")
    finally:
        await conn.close()


async def test_usage_past_the_line_quantity_cap_is_dead_lettered_and_the_rest_lands(desk: Desk) -> None:
    """D4: two usages of 9e14 made a line quantity the close could not send."""
    await priced(desk)

    answer = await desk.ingest(usage("900000000000000"), usage("900000000000000"), usage("5"))
    closed = await desk.handle(billing.run_billing, RunBilling(as_of=dt.date(2026, 12, 1)), None)

    [refused] = answer.dead_letters
    assert refused["offset"] == 1 and refused["error"].startswith("quantity_over_cap: quantity:")
    [line] = closed.of("InvoiceClosed")[0].lines
    assert line.quantity == Decimal("900000000000005")


async def test_usage_on_an_invoice_near_the_sum_cap_is_dead_lettered_naming_the_amount(desk: Desk) -> None:
    await priced(desk)
    await desk.ingest(usage("1"))
    await desk.conn.execute("update invoice_lines set raw_amount = 999999999999999999 where kind = 'usage'")

    answer = await desk.ingest(usage("1", usd("5")), usage("0"))

    [refused] = answer.dead_letters
    assert refused["error"].startswith("total_over_cap: amount:")


async def test_usage_dated_past_the_calendar_is_dead_lettered_with_a_reason(desk: Desk) -> None:
    """D7: usage dated 9999-12-31 failed the whole batch repeatedly."""
    await priced(desk)
    far = usage("1")
    far = Envelope.model_construct(**{**dict(far), "occurred_at": dt.datetime(9999, 12, 31, tzinfo=dt.UTC)})

    answer = await desk.ingest(usage("2"), far, usage("3"))
    closed = await desk.handle(billing.run_billing, RunBilling(as_of=dt.date(2026, 12, 1)), None)

    [refused] = answer.dead_letters
    assert refused["error"].startswith("date_out_of_range: 9999-12-31")
    assert closed.of("InvoiceClosed")[0].lines[0].quantity == Decimal(5)


async def test_a_bill_run_reports_an_invoice_whose_close_fails_for_another_reason(desk: Desk) -> None:
    await customer(desk, "a")
    await desk.handle(
        handlers.create_subscription,
        CreateSubscription(subscription_id="s", name="P", fee=usd("10"), starts_on=dt.date(2026, 11, 1)),
        "a",
    )
    await desk.conn.execute(  # an invoice whose customer row is gone
        "insert into invoices (invoice_id, customer_id, kind, currency, status, period_start, period_end)"
        " values ('inv-ghost', 'ghost', 'period', 'USD', 'pending', '2026-11-01', '2026-11-30')"
    )

    run = await desk.handle(billing.run_billing, RunBilling(as_of=dt.date(2026, 12, 1)), None)

    assert [e.customer_id for e in run.events if e.type == "InvoiceClosed"] == ["a"]
    [failed] = [e for e in run.events if e.type == "InvoiceCloseFailed"]
    assert failed.customer_id == "ghost" and failed.data.code == "close_failed"
    assert failed.data.invoice_id == "inv-ghost" and "unknown customer" in failed.data.reason
    closing = await desk.handle(billing.close_invoice, CloseInvoice(invoice_id="inv-ghost"), "ghost")
    assert closing.code == "close_failed" and "unknown customer" in str(closing.rejected)


# -- usage ids on lines ------------------------------------------------------------------------


async def test_each_usage_event_is_recorded_on_the_one_line_that_bills_it(desk: Desk) -> None:
    await priced(desk)
    first, second, refused = usage("2"), usage("3", usd("0.10")), usage("999999999999999")
    late = usage("1", at=NOV)

    answer = await desk.ingest(first, second, refused)
    [invoice] = await desk.invoices()
    await desk.handle(billing.run_billing, RunBilling(as_of=dt.date(2026, 12, 1)), None)
    await desk.ingest(late)

    store = InvoicingStore(desk.conn)
    [next_invoice] = [i for i in await desk.invoices() if i["status"] == "pending"]
    assert len(answer.dead_letters) == 1
    assert await store.usage_ids_by_line(invoice["invoice_id"]) == {
        "usage:voice:minute:*": sorted([str(first.id), str(second.id)])
    }
    assert await store.usage_ids_by_line(next_invoice["invoice_id"]) == {
        "usage:voice:minute:*:late": [str(late.id)]
    }


async def test_a_usage_event_already_on_a_line_is_refused_by_the_database_not_billed_twice(
    desk: Desk,
) -> None:
    """The inbox lets an id through once; were it ever let through again, the batch fails whole
    (the runtime retries it, then dead-letters that message alone) instead of adding it twice."""
    await priced(desk)
    once = usage("2")
    await desk.ingest(once)

    with pytest.raises(asyncpg.UniqueViolationError):
        await desk.ingest(usage("5"), once)

    [invoice] = await desk.invoices()
    store = InvoicingStore(desk.conn)
    assert [line.quantity for line in await store.usage_deltas(invoice["invoice_id"])] == [Decimal(2)]
    assert await store.usage_ids_by_line(invoice["invoice_id"]) == {"usage:voice:minute:*": [str(once.id)]}


async def test_a_regenerated_invoice_takes_the_usage_of_the_voided_one(desk: Desk) -> None:
    await priced(desk)
    billed = usage("4")
    await desk.ingest(billed)
    [closed] = (await desk.handle(billing.run_billing, RunBilling(as_of=dt.date(2026, 12, 1)), None)).of(
        "InvoiceClosed"
    )
    await desk.handle(
        handlers.finalize,
        InvoiceAdjusted(invoice_id=closed.invoice_id, rule_set_id=None, rule_set_version=None, lines=[]),
    )
    await desk.handle(handlers.void_invoice, VoidInvoice(invoice_id=closed.invoice_id, reason="wrong"))
    store = InvoicingStore(desk.conn)
    held_while_voided = await store.usage_ids_by_line(closed.invoice_id)

    [regenerated] = (
        await desk.handle(handlers.regenerate_invoice, RegenerateInvoice(invoice_id=closed.invoice_id))
    ).of("InvoiceClosed")

    assert held_while_voided == {"usage:voice:minute:*": [str(billed.id)]}
    assert await store.usage_ids_by_line(closed.invoice_id) == {}
    assert await store.usage_ids_by_line(regenerated.invoice_id) == {"usage:voice:minute:*": [str(billed.id)]}
