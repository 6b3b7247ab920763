"""Credits on real Kafka and PostgreSQL; the test plays invoicing (InvoiceCreated, InvoiceClosed,
InvoiceFinalized, InvoiceVoided on invoicing.events) and payments (PaymentRecorded, … on
payments.events) and reads the ledger back through the read API.

One service instance serves the whole module; every test has its own customer."""

import asyncio
import datetime as dt
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
import pytest_asyncio

from credits.app import build
from tally_contracts import Envelope, Line, MessageData, Money, topics
from tally_contracts.credits import (
    ApplyCredits,
    ChangeCreditCurrency,
    CreditScope,
    DeleteCreditEntry,
    ExpireCredits,
    GrantCredit,
)
from tally_contracts.invoicing import InvoiceClosed, InvoiceCreated, InvoiceFinalized, InvoiceVoided
from tally_contracts.payments import (
    PaymentRecorded,
    PaymentReversed,
    PromotionalCreditsDeducted,
    RefundRequested,
)
from tally_messaging.settings import ServiceSettings
from tally_testing import Infra, KafkaProbe, free_port, service_settings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
NOV = dt.datetime(2026, 11, 3, 9, 0, tzinfo=dt.UTC)


@dataclass
class Credits:
    """The running service's read API, polled until an answer satisfies a check."""

    settings: ServiceSettings
    http: httpx.AsyncClient

    async def until(self, path: str, check: Callable[[Any], bool], timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            response = await self.http.get(f"http://127.0.0.1:{self.settings.http_port}{path}")
            if response.status_code == 200:
                last = response.json()
                if check(last):
                    return last
            await asyncio.sleep(0.1)
        raise AssertionError(f"{path} never satisfied the check; last answer: {last}")

    async def get(self, path: str) -> Any:
        response = await self.http.get(f"http://127.0.0.1:{self.settings.http_port}{path}")
        assert response.status_code == 200
        return response.json()

    async def balances(self, customer: str, currency: str, promotional: str, credit_balance: str) -> None:
        """Wait until the customer's balances in `currency` are these."""
        want = (Decimal(promotional), Decimal(credit_balance))
        await self.until(f"/customers/{customer}/balances", lambda b: _balance(b, currency) == want)

    async def due(self, customer: str, invoice_id: str, amount_due: str, status: str | None = None) -> Any:
        """Credits' view of one invoice, once its amount due (and status) are these."""

        def check(body: Any) -> bool:
            mine = [i for i in body["invoices"] if i["invoice_id"] == invoice_id]
            return (
                bool(mine)
                and Decimal(mine[0]["amount_due"]) == Decimal(amount_due)
                and (status is None or mine[0]["status"] == status)
            )

        body = await self.until(f"/customers/{customer}/invoices", check)
        return next(i for i in body["invoices"] if i["invoice_id"] == invoice_id)


def _balance(body: Any, currency: str) -> tuple[Decimal, Decimal]:
    rows = {r["currency"]: r for r in body["balances"]}
    row = rows.get(currency, {"promotional": "0", "credit_balance": "0"})
    return Decimal(row["promotional"]), Decimal(row["credit_balance"])


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def credits(infra: Infra, topic_prefix: str, module_database: Any) -> AsyncIterator[Credits]:
    settings = service_settings(infra, topic_prefix, await module_database(), http_port=free_port())
    service = build(settings)
    await service.start()
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            yield Credits(settings, http)
    finally:
        await service.stop()


# -- messages, as invoicing, payments and ops would send them ----------------------------


def a_customer() -> str:
    return f"cus-{uuid.uuid4().hex[:8]}"


def envelope(data: MessageData, customer: str, at: dt.datetime = NOV) -> Envelope[Any]:
    return Envelope.new(data, customer_id=customer, occurred_at=at)


TOPIC_OF = {
    "credits": topics.CREDITS_COMMANDS,
    "invoicing": topics.INVOICING_EVENTS,
    "payments": topics.PAYMENTS_EVENTS,
}


def topic_for(data: MessageData) -> str:
    return TOPIC_OF[type(data).__module__.rsplit(".", 1)[-1]]


async def send(kafka: KafkaProbe, data: MessageData, customer: str, at: dt.datetime = NOV) -> Envelope[Any]:
    message = envelope(data, customer, at)
    await kafka.send(topic_for(data), message)
    return message


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


def promo(grant_id: str, amount: Money, **extra: Any) -> GrantCredit:
    return GrantCredit(grant_id=grant_id, kind="promotional", amount=amount, source="promo_code", **extra)


def manual(grant_id: str, amount: Money, **extra: Any) -> GrantCredit:
    return GrantCredit(grant_id=grant_id, kind="manual", amount=amount, source="manual", **extra)


def finalized(
    invoice_id: str,
    total: Money,
    regenerated_from: str | None = None,
    *,
    issued_on: dt.date | None = None,
    lines: list[Line] | None = None,
) -> InvoiceFinalized:
    return InvoiceFinalized(
        invoice_id=invoice_id,
        currency=total.currency,
        issued_on=issued_on or NOV.date(),
        lines=lines or [],
        total=total,
        rule_set_id=None,
        rule_set_version=None,
        regenerated_from=regenerated_from,
    )


def paid(payment_id: str, amount: Money, invoice_id: str | None = None) -> PaymentRecorded:
    return PaymentRecorded(
        payment_id=payment_id, invoice_id=invoice_id, amount=amount, method="check", received_on=NOV.date()
    )


async def answers(
    kafka: KafkaProbe, cause: Envelope[Any], type_name: str, count: int = 1
) -> list[Envelope[Any]]:
    """The `type_name` events credits published because of `cause` (at least `count`)."""

    def mine(messages: list[Envelope[Any]]) -> list[Envelope[Any]]:
        return [m for m in messages if m.type == type_name and m.causation_id == str(cause.id)]

    found = await kafka.wait_for(topics.CREDITS_EVENTS, lambda ms: len(mine(ms)) >= count)
    return mine(found)


# -- applying credit ---------------------------------------------------------------------


async def test_promotional_credit_pays_a_finalized_invoice(credits: Credits, kafka: KafkaProbe) -> None:
    customer = a_customer()
    await send(kafka, promo("g-1", usd("30.00")), customer)
    await credits.balances(customer, "USD", "30.00", "0")
    posted = await send(kafka, finalized("inv-1", usd("40.00")), customer)

    [applied] = await answers(kafka, posted, "CreditApplied")
    assert (applied.data.invoice_id, applied.data.source_type, applied.data.source_id) == (
        "inv-1",
        "promotional",
        "g-1",
    )
    assert applied.data.amount == usd("30.00")
    assert applied.customer_id == customer and applied.correlation_id == posted.correlation_id
    keys = {key for key, value in await kafka.raw(topics.CREDITS_EVENTS) if customer.encode() in value}
    assert keys == {customer.encode()}  # keyed by customer: one customer's events stay in order
    [balance] = await answers(kafka, posted, "InvoiceBalanceChanged")
    assert balance.data.amount_due == usd("10.00") and balance.data.status == "open"
    view = await credits.due(customer, "inv-1", "10.00", "open")
    assert (view["total"], view["applied"], view["credits_applied"]) == ("40.00", "30.00", "30.00")
    await credits.balances(customer, "USD", "0", "0")

    ledger = await credits.get(f"/customers/{customer}/ledger")
    causes = [(e["cause"]["type"], e["memo"]) for e in ledger["entries"]]
    assert causes == [
        ("GrantCredit", "grant g-1"),
        ("InvoiceFinalized", "invoice inv-1 posted"),
        ("InvoiceFinalized", "apply promotional g-1 to invoice inv-1"),
    ]
    for entry in ledger["entries"]:
        assert sum(Decimal(p["amount"]) for p in entry["postings"]) == 0
        assert entry["cause"]["day"] == "2026-11-03"
    assert ledger["entries"][1]["cause"]["message_id"] == str(posted.id)


async def test_no_credit_on_a_pending_invoice_until_it_is_finalized(
    credits: Credits, kafka: KafkaProbe
) -> None:
    customer = a_customer()
    await send(kafka, promo("g-p", usd("25.00")), customer)
    created = InvoiceCreated(
        invoice_id="inv-p",
        currency="USD",
        status="pending",
        period_start=dt.date(2026, 11, 1),
        period_end=dt.date(2026, 11, 30),
    )
    await send(kafka, created, customer)
    closed = InvoiceClosed(invoice_id="inv-p", currency="USD", lines=[], subtotal=usd("20.00"))
    await send(kafka, closed, customer)
    await credits.balances(customer, "USD", "25.00", "0")
    # marker: a zero invoice on the same topic and key, handled after the two above
    await send(kafka, finalized("inv-marker", usd("0.00")), customer)
    body = await credits.until(f"/customers/{customer}/invoices", lambda b: bool(b["invoices"]))
    assert [i["invoice_id"] for i in body["invoices"]] == ["inv-marker"]  # pending, closed: ignored
    balances = await credits.get(f"/customers/{customer}/balances")
    assert _balance(balances, "USD") == (Decimal("25.00"), Decimal(0))  # nothing applied

    await send(kafka, finalized("inv-p", usd("20.00")), customer)
    await credits.due(customer, "inv-p", "0", "paid")
    await credits.balances(customer, "USD", "5.00", "0")


async def test_credit_never_crosses_currencies_until_converted(credits: Credits, kafka: KafkaProbe) -> None:
    customer = a_customer()
    await send(kafka, promo("g-eur", Money.of("50.00", "EUR")), customer)
    await send(kafka, finalized("inv-usd", usd("40.00")), customer)
    await credits.due(customer, "inv-usd", "40.00", "open")
    await credits.balances(customer, "EUR", "50.00", "0")

    change = await send(
        kafka, ChangeCreditCurrency(grant_id="g-eur", currency="USD", rate=Decimal("1.1")), customer
    )
    [changed] = await answers(kafka, change, "CreditCurrencyChanged")
    assert changed.data.to_amount == usd("55.00")
    await credits.due(customer, "inv-usd", "0", "paid")
    await credits.balances(customer, "USD", "15.00", "0")
    await credits.balances(customer, "EUR", "0", "0")


async def test_a_grant_pays_unpaid_invoices_oldest_first(credits: Credits, kafka: KafkaProbe) -> None:
    customer = a_customer()
    await send(kafka, finalized("inv-old", usd("10.00")), customer)
    await send(kafka, finalized("inv-new", usd("20.00")), customer)
    await credits.due(customer, "inv-new", "20.00")
    await send(kafka, promo("g-late", usd("25.00")), customer)
    await credits.due(customer, "inv-old", "0", "paid")
    await credits.due(customer, "inv-new", "5.00", "open")
    await credits.balances(customer, "USD", "0", "0")


async def test_a_held_grant_waits_for_apply_credits(credits: Credits, kafka: KafkaProbe) -> None:
    customer = a_customer()
    await send(kafka, finalized("inv-h", usd("12.00")), customer)
    await credits.due(customer, "inv-h", "12.00")
    await send(kafka, manual("m-held", usd("20.00"), apply_to_existing=False), customer)
    await credits.balances(customer, "USD", "0", "20.00")
    await send(kafka, manual("m-marker", Money.of("1.00", "EUR")), customer)  # marker, same topic and key
    await credits.balances(customer, "EUR", "0", "1.00")
    [held] = (await credits.get(f"/customers/{customer}/invoices"))["invoices"]
    assert (held["invoice_id"], Decimal(held["amount_due"]), held["status"]) == ("inv-h", Decimal(12), "open")

    await send(kafka, ApplyCredits(), customer)
    await credits.due(customer, "inv-h", "0", "paid")
    await credits.balances(customer, "USD", "0", "8.00")


async def test_overpayment_becomes_credit_balance_and_pays_the_next_invoice(
    credits: Credits, kafka: KafkaProbe
) -> None:
    customer = a_customer()
    await send(kafka, finalized("inv-a", usd("40.00")), customer)
    await send(kafka, paid("p-over", usd("100.00"), "inv-a"), customer)
    view = await credits.due(customer, "inv-a", "0", "paid")
    assert view["payments_applied"] == "40.00"
    await credits.balances(customer, "USD", "0", "60.00")

    await send(kafka, finalized("inv-b", usd("25.00")), customer)
    await credits.due(customer, "inv-b", "0", "paid")
    await credits.balances(customer, "USD", "0", "35.00")


async def test_a_payment_before_its_invoice_is_parked(credits: Credits, kafka: KafkaProbe) -> None:
    customer = a_customer()
    await send(kafka, paid("p-early", usd("30.00"), "inv-later"), customer)
    await send(kafka, paid("p-marker", Money.of("1.00", "EUR")), customer)  # marker, same topic and key
    await credits.balances(customer, "EUR", "0", "1.00")
    assert _balance(await credits.get(f"/customers/{customer}/balances"), "USD") == (
        Decimal(0),
        Decimal(0),
    )  # parked
    await send(kafka, finalized("inv-later", usd("50.00")), customer)
    view = await credits.due(customer, "inv-later", "20.00", "open")
    assert view["payments_applied"] == "30.00"


async def test_a_negative_invoice_moves_to_the_credit_balance(credits: Credits, kafka: KafkaProbe) -> None:
    customer = a_customer()
    await send(kafka, finalized("inv-due", usd("10.00")), customer)
    await credits.due(customer, "inv-due", "10.00")
    posted = await send(kafka, finalized("inv-neg", usd("-15.00")), customer)

    [moved] = await answers(kafka, posted, "NegativeInvoiceTransferred")
    assert moved.data.amount == usd("15.00")
    await credits.due(customer, "inv-due", "0", "paid")
    neg = await credits.due(customer, "inv-neg", "0", "paid")
    assert neg["total"] == "-15.00"
    await credits.balances(customer, "USD", "0", "5.00")


async def test_void_releases_credit_and_the_regenerated_invoice_is_paid_again(
    credits: Credits, kafka: KafkaProbe
) -> None:
    customer = a_customer()
    await send(kafka, promo("g-v", usd("30.00")), customer)
    await send(kafka, finalized("inv-v", usd("50.00")), customer)
    await credits.due(customer, "inv-v", "20.00")
    voided = await send(kafka, InvoiceVoided(invoice_id="inv-v", reason="wrong usage"), customer)

    [released] = await answers(kafka, voided, "CreditReleased")
    assert released.data.amount == usd("30.00") and released.data.returned_to == "promotional"
    view = await credits.due(customer, "inv-v", "0", "voided")
    assert (view["total"], view["applied"]) == ("50.00", "0.00")
    await credits.balances(customer, "USD", "30.00", "0")

    await send(kafka, finalized("inv-v-r", usd("45.00"), regenerated_from="inv-v"), customer)
    await credits.due(customer, "inv-v-r", "15.00", "open")
    await credits.balances(customer, "USD", "0", "0")
    await ledger_agrees(credits, customer)


async def test_a_reversed_payment_is_taken_back_from_where_it_went(
    credits: Credits, kafka: KafkaProbe
) -> None:
    customer = a_customer()
    await send(kafka, finalized("inv-r1", usd("40.00")), customer)
    await send(kafka, paid("p-bounce", usd("100.00"), "inv-r1"), customer)
    await credits.balances(customer, "USD", "0", "60.00")
    await send(kafka, finalized("inv-r2", usd("50.00")), customer)  # paid from p-bounce's excess
    await credits.due(customer, "inv-r2", "0", "paid")

    reversal = PaymentReversed(payment_id="p-bounce", amount=usd("100.00"), reason="check bounced")
    await send(kafka, reversal, customer)
    await credits.due(customer, "inv-r1", "40.00", "open")
    await credits.due(customer, "inv-r2", "50.00", "open")
    await credits.balances(customer, "USD", "0", "0")


async def test_a_reversal_after_a_refund_leaves_a_debt_that_the_next_credit_settles(
    credits: Credits, kafka: KafkaProbe
) -> None:
    customer = a_customer()
    await send(kafka, paid("p-gone", usd("50.00")), customer)
    await send(kafka, RefundRequested(refund_id="r-gone", amount=usd("30.00"), method="check"), customer)
    await credits.balances(customer, "USD", "0", "20.00")
    reversal = PaymentReversed(payment_id="p-gone", amount=usd("50.00"), reason="check bounced")
    await send(kafka, reversal, customer)
    await credits.balances(customer, "USD", "0", "-30.00")  # refunded money the customer owes

    await send(kafka, paid("p-next", usd("40.00")), customer)
    await credits.balances(customer, "USD", "0", "10.00")
    await send(kafka, finalized("inv-after", usd("25.00")), customer)
    await credits.due(customer, "inv-after", "15.00", "open")
    await ledger_agrees(credits, customer)


async def test_an_event_that_breaks_a_rule_goes_to_the_dlq(credits: Credits, kafka: KafkaProbe) -> None:
    customer = a_customer()
    await send(kafka, finalized("inv-c", usd("10.00")), customer)
    await credits.due(customer, "inv-c", "10.00")
    await send(kafka, finalized("inv-c", usd("99.00")), customer)  # same invoice, another total

    [dead] = await kafka.dead_letters(
        topics.INVOICING_EVENTS, lambda d: d["key"] == customer and "invoice_conflict" in d["error"]
    )
    assert dead["consumer"] == "credits:invoicing.events"
    await send(kafka, promo("g-after", usd("4.00")), customer)  # the consumer goes on
    await credits.due(customer, "inv-c", "6.00", "open")


# -- manual entries, deletion, deduction, refunds, expiry ----------------------------------


async def test_manual_entries_and_the_deletion_rules(credits: Credits, kafka: KafkaProbe) -> None:
    customer = a_customer()
    await send(kafka, manual("m-plus", usd("20.00")), customer)
    await send(kafka, manual("m-minus", usd("-5.00")), customer)
    await credits.balances(customer, "USD", "0", "15.00")

    too_much = await send(kafka, manual("m-big", usd("-50.00")), customer)
    [rejected] = await answers(kafka, too_much, "CommandRejected")
    assert rejected.data.code == "insufficient_credit" and rejected.data.command_id == str(too_much.id)
    undo = await send(kafka, DeleteCreditEntry(grant_id="m-minus"), customer)
    [rejected] = await answers(kafka, undo, "CommandRejected")
    assert rejected.data.code == "credit_entry_used"

    await send(kafka, promo("g-del", usd("10.00")), customer)
    await credits.balances(customer, "USD", "10.00", "15.00")
    delete = await send(kafka, DeleteCreditEntry(grant_id="g-del"), customer)
    [deleted] = await answers(kafka, delete, "CreditEntryDeleted")
    assert deleted.data.amount == usd("10.00")
    await credits.balances(customer, "USD", "0", "15.00")

    await send(kafka, finalized("inv-m", usd("8.00")), customer)  # uses part of m-plus
    await credits.due(customer, "inv-m", "0", "paid")
    used = await send(kafka, DeleteCreditEntry(grant_id="m-plus"), customer)
    [rejected] = await answers(kafka, used, "CommandRejected")
    assert rejected.data.code == "credit_entry_used" and "m-plus" in rejected.data.reason
    unknown = await send(kafka, DeleteCreditEntry(grant_id="nope"), customer)
    assert (await answers(kafka, unknown, "CommandRejected"))[0].data.code == "unknown_credit_entry"
    await credits.balances(customer, "USD", "0", "7.00")
    await ledger_agrees(credits, customer)


async def test_deduction_takes_promotional_credit_or_is_rejected(credits: Credits, kafka: KafkaProbe) -> None:
    customer = a_customer()
    await send(kafka, promo("g-d", usd("30.00")), customer)
    await credits.balances(customer, "USD", "30.00", "0")
    deduction = PromotionalCreditsDeducted(
        deduction_id="d1", amount=usd("12.50"), reason="undo", grant_id="g-d"
    )
    await send(kafka, deduction, customer)
    await credits.balances(customer, "USD", "17.50", "0")

    greedy = PromotionalCreditsDeducted(deduction_id="d2", amount=usd("100.00"), reason="too much")
    asked = await send(kafka, greedy, customer)
    [rejected] = await answers(kafka, asked, "CommandRejected")
    assert rejected.data.code == "insufficient_promotional_credit"
    assert rejected.data.command_type == "PromotionalCreditsDeducted"
    assert rejected.correlation_id == asked.correlation_id
    await credits.balances(customer, "USD", "17.50", "0")


async def test_refund_is_credited_or_declined(credits: Credits, kafka: KafkaProbe) -> None:
    customer = a_customer()
    await send(kafka, paid("p-credit", usd("50.00")), customer)  # no invoice: all credit balance
    await credits.balances(customer, "USD", "0", "50.00")
    first = await send(kafka, RefundRequested(refund_id="r-1", amount=usd("30.00"), method="check"), customer)
    [refunded] = await answers(kafka, first, "CreditRefunded")
    assert refunded.data.amount == usd("30.00")
    await credits.balances(customer, "USD", "0", "20.00")

    second = await send(
        kafka, RefundRequested(refund_id="r-2", amount=usd("30.00"), method="check"), customer
    )
    [declined] = await answers(kafka, second, "RefundDeclined")
    assert declined.data.refund_id == "r-2" and declined.data.reason
    await credits.balances(customer, "USD", "0", "20.00")


async def test_expire_credits_expires_what_is_left(credits: Credits, kafka: KafkaProbe) -> None:
    customer = a_customer()
    await send(kafka, promo("g-short", usd("10.00"), expires_at=dt.date(2026, 11, 10)), customer)
    await send(kafka, promo("g-long", usd("5.00"), expires_at=dt.date(2027, 1, 31)), customer)
    await credits.balances(customer, "USD", "15.00", "0")
    expire = await send(
        kafka, ExpireCredits(as_of=dt.date(2026, 11, 15)), customer, NOV + dt.timedelta(days=12)
    )
    [expired] = await answers(kafka, expire, "CreditExpired")
    assert (expired.data.grant_id, expired.data.amount) == ("g-short", usd("10.00"))
    await credits.balances(customer, "USD", "5.00", "0")
    await ledger_agrees(credits, customer)


# -- delivery: duplicates and any order ----------------------------------------------------


async def test_duplicates_and_shuffled_order_give_the_same_balances(
    credits: Credits, kafka: KafkaProbe
) -> None:
    """Grants, invoices and payments from three topics, every message twice (and a grant
    resent as a new message), in two different orders: the same final figures."""

    def story() -> list[MessageData]:
        return [
            promo("g-a", usd("30.00")),
            promo("g-b", usd("20.00")),
            finalized("inv-1", usd("10.00")),
            finalized("inv-2", usd("15.00")),
            finalized("inv-3", usd("20.00")),
            paid("p-eur", Money.of("100.00", "EUR")),
            finalized("inv-e1", Money.of("30.00", "EUR")),
            finalized("inv-e2", Money.of("50.00", "EUR")),
        ]

    customers = [a_customer(), a_customer()]
    for seed, customer in enumerate(customers):
        messages = [envelope(data, customer) for data in story()]
        deliveries = messages + messages + [envelope(promo("g-a", usd("30.00")), customer)]
        random.Random(seed).shuffle(deliveries)
        for message in deliveries:
            await kafka.send(topic_for(message.data), message)

    for customer in customers:
        await credits.balances(customer, "USD", "5.00", "0")
        await credits.balances(customer, "EUR", "0", "20.00")
        body = await credits.until(
            f"/customers/{customer}/invoices",
            lambda b: len(b["invoices"]) == 5 and all(i["status"] == "paid" for i in b["invoices"]),
        )
        assert sum(Decimal(i["amount_due"]) for i in body["invoices"]) == 0
    first, second = [await credits.get(f"/customers/{c}/balances") for c in customers]
    assert first["balances"] == second["balances"]
    for customer in customers:
        await ledger_agrees(credits, customer)


async def ledger_agrees(credits: Credits, customer: str) -> None:
    """Every entry balances, and the ledger's accounts sum to the balances the API shows."""
    ledger = await credits.get(f"/customers/{customer}/ledger")
    sums: dict[tuple[str, str], Decimal] = {}
    for entry in ledger["entries"]:
        per_currency: dict[str, Decimal] = {}
        for posting in entry["postings"]:
            currency, amount = posting["currency"], Decimal(posting["amount"])
            per_currency[currency] = per_currency.get(currency, Decimal(0)) + amount
            kind = posting["account"].split(":", 1)[0]
            sums[kind, currency] = sums.get((kind, currency), Decimal(0)) + amount
        assert all(total == 0 for total in per_currency.values()), entry
    body = await credits.get(f"/customers/{customer}/balances")
    for row in body["balances"]:
        currency = row["currency"]
        assert sums.get(("promo", currency), Decimal(0)) == Decimal(row["promotional"])
        assert sums.get(("balance", currency), Decimal(0)) == Decimal(row["credit_balance"])


# -- amounts and sums past the single-amount cap (issue 13, D4) ------------------------------


async def test_a_grant_and_a_payment_past_the_amount_cap_make_a_balance_on_the_wire(
    credits: Credits, kafka: KafkaProbe
) -> None:
    customer = a_customer()
    await send(kafka, manual("m-big", usd("999999999999999.99")), customer)
    await credits.balances(customer, "USD", "0", "999999999999999.99")  # two topics: one order
    paying = await send(kafka, paid("p-big", usd("999999999999999.99")), customer)

    [changed] = await answers(kafka, paying, "CreditBalanceChanged")  # parsed as a consumer would
    assert changed.data.balance_available == usd("1999999999999999.98")
    await credits.balances(customer, "USD", "0", "1999999999999999.98")


async def test_a_grant_past_the_total_cap_is_rejected_and_a_payment_past_it_dead_lettered(
    credits: Credits, kafka: KafkaProbe
) -> None:
    customer = a_customer()
    await send(kafka, finalized("inv-refund", usd("-999999999999999999.99")), customer)
    await credits.balances(customer, "USD", "0", "999999999999999999.99")

    grant = await send(kafka, manual("m-over", usd("10.00")), customer)
    [rejected] = await answers(kafka, grant, "CommandRejected")
    assert rejected.data.code == "total_over_limit"
    assert "amount of grant m-over" in rejected.data.reason

    await send(kafka, paid("p-over", usd("0.01")), customer)
    [dead] = await kafka.dead_letters(
        topics.PAYMENTS_EVENTS, lambda d: d["key"] == customer and "total_over_limit" in d["error"]
    )
    assert dead["consumer"] == "credits:payments.events"
    await send(kafka, finalized("inv-after", usd("5.00")), customer)  # the consumer goes on
    await credits.due(customer, "inv-after", "0", "paid")
    await credits.balances(customer, "USD", "0", "999999999999999994.99")


async def test_a_currency_change_past_the_amount_cap_is_rejected_naming_the_rate(
    credits: Credits, kafka: KafkaProbe
) -> None:
    customer = a_customer()
    await send(kafka, promo("g-jpy", Money.of("100000000000000", "JPY")), customer)
    await credits.balances(customer, "JPY", "100000000000000", "0")

    change = await send(
        kafka, ChangeCreditCurrency(grant_id="g-jpy", currency="KWD", rate=Decimal("1000")), customer
    )
    [rejected] = await answers(kafka, change, "CommandRejected")
    assert rejected.data.code == "amount_over_limit" and "rate 1000" in rejected.data.reason
    await credits.balances(customer, "JPY", "100000000000000", "0")


async def test_an_invoice_total_that_rounds_to_the_total_cap_is_dead_lettered_with_the_reason(
    credits: Credits, kafka: KafkaProbe
) -> None:
    customer = a_customer()
    await send(kafka, finalized("inv-huge", usd("999999999999999999.999")), customer)

    [dead] = await kafka.dead_letters(
        topics.INVOICING_EVENTS, lambda d: d["key"] == customer and "total_over_limit" in d["error"]
    )
    assert "inv-huge" in dead["error"]
    await send(kafka, finalized("inv-next", usd("1.00")), customer)  # the consumer goes on
    await credits.due(customer, "inv-next", "1.00", "open")


# -- expiry at the invoice's issue date ------------------------------------------------------

DEC_1 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


async def test_a_late_backdated_grant_does_not_pay_an_invoice_issued_after_its_last_day(
    credits: Credits, kafka: KafkaProbe
) -> None:
    customer = a_customer()
    await send(kafka, finalized("inv-dec", usd("40.00"), issued_on=DEC_1.date()), customer, at=DEC_1)
    await credits.due(customer, "inv-dec", "40.00", "open")

    late = promo("g-nov", usd("25.00"), expires_at=dt.date(2026, 11, 21))
    await send(kafka, late, customer, at=DEC_1 - dt.timedelta(days=30))  # delayed, dated 1 Nov

    await credits.balances(customer, "USD", "25.00", "0")  # recorded, and nothing applied
    view = await credits.due(customer, "inv-dec", "40.00", "open")
    assert (view["credits_applied"], view["payments_applied"], view["applied"]) == ("0.00", "0.00", "0.00")
    balances = await credits.get(f"/customers/{customer}/balances")
    assert balances["balances"] == [{"currency": "USD", "promotional": "25.00", "credit_balance": "0.00"}]
    ledger = await credits.get(f"/customers/{customer}/ledger")
    assert [e["memo"] for e in ledger["entries"]] == ["invoice inv-dec posted", "grant g-nov"]


async def test_a_grant_usable_on_the_issue_date_pays_the_invoice_whatever_arrives_first(
    credits: Credits, kafka: KafkaProbe
) -> None:
    customer = a_customer()
    last_day = dt.date(2026, 11, 21)
    issued = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
    # the invoice first, the grant after it (dated on its last day)
    await send(kafka, finalized("inv-a", usd("40.00"), issued_on=issued.date()), customer, at=issued)
    await credits.due(customer, "inv-a", "40.00")
    await send(kafka, promo("g-a", usd("25.00"), expires_at=last_day), customer, at=issued + dt.timedelta(1))
    await credits.due(customer, "inv-a", "15.00", "open")
    # another customer: the grant first, the invoice handled after the grant's last day
    # (delivered late, issued before it)
    other = a_customer()
    await send(kafka, promo("g-b", usd("25.00"), expires_at=last_day), other, at=issued)
    await credits.balances(other, "USD", "25.00", "0")
    handled_late = issued + dt.timedelta(days=5)
    await send(kafka, finalized("inv-b", usd("30.00"), issued_on=issued.date()), other, at=handled_late)
    await credits.due(other, "inv-b", "5.00", "open")
    await credits.balances(other, "USD", "0", "0")


# -- ApplyCredits to a chosen invoice ----------------------------------------------------------


async def held_credit_beside_two_invoices(credits: Credits, kafka: KafkaProbe, customer: str) -> None:
    await send(kafka, finalized("inv-1", usd("40.00")), customer)
    await send(kafka, finalized("inv-2", usd("30.00")), customer)
    await credits.due(customer, "inv-2", "30.00")  # posted before the grant (another topic)
    await send(kafka, manual("m-held", usd("50.00"), apply_to_existing=False), customer)
    await credits.balances(customer, "USD", "0", "50.00")


async def test_apply_credits_pays_part_then_all_of_the_chosen_invoice_once(
    credits: Credits, kafka: KafkaProbe
) -> None:
    customer = a_customer()
    await held_credit_beside_two_invoices(credits, kafka, customer)

    partial = await send(kafka, ApplyCredits(invoice_id="inv-2", amount=usd("20.00")), customer)
    [applied] = await answers(kafka, partial, "CreditApplied")
    assert (applied.data.invoice_id, applied.data.amount) == ("inv-2", usd("20.00"))
    await credits.due(customer, "inv-2", "10.00", "open")
    await kafka.send(topics.CREDITS_COMMANDS, partial)  # delivered twice: applied once

    full = await send(kafka, ApplyCredits(invoice_id="inv-2"), customer)
    [applied] = await answers(kafka, full, "CreditApplied")
    assert applied.data.amount == usd("10.00")
    view = await credits.due(customer, "inv-2", "0", "paid")
    assert view["credits_applied"] == "30.00"
    assert [(a["source_type"], a["source_id"], a["amount"]) for a in view["applications"]] == [
        ("credit_balance", "manual:m-held", "20.00"),
        ("credit_balance", "manual:m-held", "10.00"),
    ]
    await credits.due(customer, "inv-1", "40.00", "open")  # still held for inv-1
    await credits.balances(customer, "USD", "0", "20.00")
    assert len(await answers(kafka, partial, "CreditApplied")) == 1


@pytest.mark.parametrize(
    ("invoice_id", "amount", "code"),
    [
        ("inv-nope", None, "unknown_invoice"),
        ("inv-paid", None, "invoice_paid"),
        ("inv-void", None, "invoice_voided"),
        ("inv-1", Money.of("5.00", "EUR"), "currency_mismatch"),
        ("inv-1", usd("40.01"), "amount_over_due"),
        ("inv-1", usd("30.01"), "amount_over_available"),
    ],
)
async def test_apply_credits_to_an_invoice_it_cannot_pay_is_rejected_with_the_reason(
    credits: Credits, kafka: KafkaProbe, invoice_id: str, amount: Money | None, code: str
) -> None:
    customer = a_customer()
    await send(kafka, finalized("inv-paid", usd("10.00")), customer)
    await send(kafka, paid("p-1", usd("10.00"), "inv-paid"), customer)
    await send(kafka, finalized("inv-void", usd("10.00")), customer)
    await send(kafka, InvoiceVoided(invoice_id="inv-void", reason="wrong plan"), customer)
    await send(kafka, finalized("inv-1", usd("40.00")), customer)
    await credits.due(customer, "inv-void", "0", "voided")
    await credits.due(customer, "inv-paid", "0", "paid")
    await credits.due(customer, "inv-1", "40.00")  # posted before the grant (another topic)
    await send(kafka, manual("m-held", usd("30.00"), apply_to_existing=False), customer)
    await credits.balances(customer, "USD", "0", "30.00")

    asked = await send(kafka, ApplyCredits(invoice_id=invoice_id, amount=amount), customer)

    [rejected] = await answers(kafka, asked, "CommandRejected")
    assert (rejected.data.code, rejected.data.command_id) == (code, str(asked.id))
    assert rejected.data.reason
    await credits.due(customer, "inv-1", "40.00", "open")
    await credits.balances(customer, "USD", "0", "30.00")


# -- priority and scope -------------------------------------------------------------------------


def voice_and_subscription_lines() -> list[Line]:
    return [
        Line(line_id="sub:basic", kind="subscription", description="Basic plan", amount=usd("20.00")),
        Line(line_id="usage:voice", kind="usage", description="Voice", amount=usd("12.50"), service="voice"),
    ]


async def test_a_voice_only_grant_pays_voice_usage_and_leaves_the_subscription_unpaid(
    credits: Credits, kafka: KafkaProbe
) -> None:
    customer = a_customer()
    await send(kafka, promo("g-voice", usd("50.00"), scope=CreditScope(service="voice")), customer)
    await credits.balances(customer, "USD", "50.00", "0")

    posted = await send(
        kafka, finalized("inv-v", usd("32.50"), lines=voice_and_subscription_lines()), customer
    )

    [applied] = await answers(kafka, posted, "CreditApplied")
    assert (applied.data.source_id, applied.data.amount) == ("g-voice", usd("12.50"))
    await credits.due(customer, "inv-v", "20.00", "open")  # the subscription line
    await credits.balances(customer, "USD", "37.50", "0")


async def test_two_grants_burn_lower_priority_number_first(credits: Credits, kafka: KafkaProbe) -> None:
    customer = a_customer()
    await send(kafka, promo("g-p9", usd("30.00"), priority=9, expires_at=dt.date(2026, 11, 10)), customer)
    await send(kafka, promo("g-p1", usd("30.00"), priority=1), customer)  # never expires, but priority 1
    await credits.balances(customer, "USD", "60.00", "0")

    posted = await send(kafka, finalized("inv-p", usd("40.00")), customer)

    applied = await answers(kafka, posted, "CreditApplied", count=2)
    assert [(a.data.source_id, a.data.amount) for a in applied] == [
        ("g-p1", usd("30.00")),
        ("g-p9", usd("10.00")),
    ]
    await credits.balances(customer, "USD", "20.00", "0")


async def test_every_amount_reads_at_the_currency_minor_unit(credits: Credits, kafka: KafkaProbe) -> None:
    customer = a_customer()
    await send(kafka, manual("m-jpy", Money.of("500", "JPY")), customer)
    granted = await send(kafka, promo("g-bhd", Money.of("1.5", "BHD")), customer)

    [changed] = await answers(kafka, granted, "CreditBalanceChanged")
    wire = [v for k, v in await kafka.raw(topics.CREDITS_EVENTS) if str(granted.id).encode() in v]
    assert b'"balance_available":{"amount":"0.000","currency":"BHD"}' in b"".join(wire)
    assert changed.data.promotional_available == Money.of("1.500", "BHD")
    await credits.balances(customer, "BHD", "1.500", "0")
    balances = await credits.get(f"/customers/{customer}/balances")
    assert {r["currency"]: (r["promotional"], r["credit_balance"]) for r in balances["balances"]} == {
        "BHD": ("1.500", "0.000"),
        "JPY": ("0", "500"),
    }
    ledger = await credits.get(f"/customers/{customer}/ledger")
    assert {p["amount"] for e in ledger["entries"] for p in e["postings"]} == {
        "500",
        "-500",
        "1.500",
        "-1.500",
    }
