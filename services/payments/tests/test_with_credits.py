"""Payments and credits together on real Kafka and PostgreSQL; the test plays invoicing's
part (InvoiceFinalized on invoicing.events) and reads credits' ledger through its read API."""

import asyncio
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from credits.app import build as build_credits
from payments.app import build as build_payments
from tally_contracts import Envelope, Money, topics
from tally_contracts.credits import GrantCredit
from tally_contracts.invoicing import InvoiceFinalized
from tally_contracts.payments import (
    DeductPromotionalCredits,
    RecordOfflinePayment,
    RefundCreditBalance,
    ReversePayment,
)
from tally_contracts.topics import dlq
from tally_messaging.settings import ServiceSettings
from tally_testing import Infra, KafkaProbe, free_port, service_settings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.asyncio(loop_scope="session"),
]
NOV = dt.datetime(2026, 11, 3, 9, 0, tzinfo=dt.UTC)


@dataclass
class Stack:
    """Payments and credits, each with its own database, and an HTTP client for their read APIs."""

    payments: ServiceSettings
    credits: ServiceSettings
    http: httpx.AsyncClient

    async def until(self, settings: ServiceSettings, path: str, check: Callable[[Any], bool]) -> Any:
        """The read API's answer once `check` holds on it; fails with the last answer."""
        deadline = time.monotonic() + 30
        last: Any = None
        while time.monotonic() < deadline:
            response = await self.http.get(f"http://127.0.0.1:{settings.http_port}{path}")
            if response.status_code == 200:
                last = response.json()
                if check(last):
                    return last
            await asyncio.sleep(0.1)
        raise AssertionError(f"{path} never satisfied the check; last answer: {last}")

    async def until_balances(
        self, customer: str, currency: str, promotional: str, credit_balance: str
    ) -> None:
        want = (Decimal(promotional), Decimal(credit_balance))

        def check(body: Any) -> bool:
            rows = {r["currency"]: r for r in body["balances"]}
            row = rows.get(currency, {"promotional": "0", "credit_balance": "0"})
            return (Decimal(row["promotional"]), Decimal(row["credit_balance"])) == want

        await self.until(self.credits, f"/customers/{customer}/balances", check)

    async def until_due(self, customer: str, invoice_id: str, amount_due: str) -> dict[str, Any]:
        """Credits' view of one invoice once its amount due is `amount_due`."""

        def check(body: Any) -> bool:
            mine = [i for i in body["invoices"] if i["invoice_id"] == invoice_id]
            return bool(mine) and Decimal(mine[0]["amount_due"]) == Decimal(amount_due)

        body = await self.until(self.credits, f"/customers/{customer}/invoices", check)
        found: dict[str, Any] = next(i for i in body["invoices"] if i["invoice_id"] == invoice_id)
        return found

    async def payments_view(self, customer: str, check: Callable[[Any], bool]) -> Any:
        return await self.until(self.payments, f"/customers/{customer}/payments", check)


@pytest_asyncio.fixture(loop_scope="session")
async def stack(infra: Infra, topic_prefix: str, new_database: Any) -> AsyncIterator[Stack]:
    payments_settings = service_settings(infra, topic_prefix, await new_database(), http_port=free_port())
    credits_settings = service_settings(infra, topic_prefix, await new_database(), http_port=free_port())
    payments, credits = build_payments(payments_settings), build_credits(credits_settings)
    await payments.start()
    await credits.start()
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            yield Stack(payments_settings, credits_settings, http)
    finally:
        await credits.stop()
        await payments.stop()


def cmd(data: Any, customer: str | None, at: dt.datetime = NOV) -> Envelope[Any]:
    return Envelope.new(data, customer_id=customer, occurred_at=at)


def of_type(messages: list[Envelope[Any]], type_name: str, customer: str) -> list[Envelope[Any]]:
    return [m for m in messages if m.type == type_name and m.customer_id == customer]


def a_customer() -> str:
    return f"cus-{uuid.uuid4().hex[:8]}"


async def send(
    kafka: KafkaProbe, data: Any, customer: str, topic: str = topics.PAYMENTS_COMMANDS
) -> Envelope[Any]:
    command = cmd(data, customer)
    await kafka.send(topic, command)
    return command


async def answer(
    kafka: KafkaProbe, command: Envelope[Any], type_name: str, topic: str = topics.PAYMENTS_EVENTS
) -> Envelope[Any]:
    """The first `type_name` on `topic` caused, directly or down the saga, by `command`."""

    def mine(messages: list[Envelope[Any]]) -> list[Envelope[Any]]:
        return [m for m in messages if m.type == type_name and m.correlation_id == command.correlation_id]

    found = await kafka.wait_for(topic, lambda ms: bool(mine(ms)))
    return mine(found)[0]


def payment(payment_id: str, amount: str, invoice_id: str | None = None, currency: str = "USD") -> Any:
    return RecordOfflinePayment(
        payment_id=payment_id,
        invoice_id=invoice_id,
        amount=Money.of(amount, currency),
        method="bank_transfer",
        reference=f"ref-{payment_id}",
        received_on=dt.date(2026, 11, 20),
    )


async def post_invoice(kafka: KafkaProbe, customer: str, total: str, invoice_id: str | None = None) -> str:
    """Invoicing's part: announce a posted invoice of `total` USD."""
    invoice_id = invoice_id or f"inv-{uuid.uuid4().hex[:8]}"
    finalized = InvoiceFinalized(
        invoice_id=invoice_id,
        currency="USD",
        issued_on=NOV.date(),
        lines=[],
        total=Money.of(total, "USD"),
        rule_set_id=None,
        rule_set_version=None,
    )
    await send(kafka, finalized, customer, topics.INVOICING_EVENTS)
    return invoice_id


async def payments_knows(stack: Stack, customer: str, invoice_id: str) -> None:
    """Wait until payments has taken in the invoice (it publishes nothing for it)."""
    conn = await asyncpg.connect(stack.payments.dsn("payments"))
    try:
        for _ in range(300):
            if await conn.fetchval(
                "select status from known_invoices where customer_id = $1 and invoice_id = $2",
                customer,
                invoice_id,
            ):
                return
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    raise AssertionError(f"payments never saw invoice {invoice_id}")


def has_balance(currency: str, credit_balance: str) -> Callable[[Any], bool]:
    """A check on credits' balances: the credit balance in `currency` is `credit_balance`."""

    def check(body: Any) -> bool:
        rows = {r["currency"]: r for r in body["balances"]}
        return currency in rows and Decimal(rows[currency]["credit_balance"]) == Decimal(credit_balance)

    return check


async def test_payment_pays_the_invoice_it_names(stack: Stack, kafka: KafkaProbe) -> None:
    customer = a_customer()
    invoice_id = await post_invoice(kafka, customer, "40.00")
    await stack.until_due(customer, invoice_id, "40.00")
    await payments_knows(stack, customer, invoice_id)
    command = await send(kafka, payment("p1", "40", invoice_id), customer)

    await answer(kafka, command, "PaymentRecorded")
    applied = await answer(kafka, command, "CreditApplied", topics.CREDITS_EVENTS)
    assert (applied.data.invoice_id, applied.data.source_type, applied.data.source_id) == (
        invoice_id,
        "payment",
        "p1",
    )
    assert applied.data.amount == Money.of("40.00", "USD")
    balance = await answer(kafka, command, "InvoiceBalanceChanged", topics.CREDITS_EVENTS)
    assert balance.data.status == "paid" and balance.data.amount_due == Money.zero("USD")
    view = await stack.until_due(customer, invoice_id, "0")
    assert Decimal(view["payments_applied"]) == Decimal("40.00")
    await stack.until_balances(customer, "USD", "0", "0")


async def test_overpayment_becomes_credit_balance(stack: Stack, kafka: KafkaProbe) -> None:
    customer = a_customer()
    invoice_id = await post_invoice(kafka, customer, "40.00")
    await stack.until_due(customer, invoice_id, "40.00")
    await payments_knows(stack, customer, invoice_id)
    await send(kafka, payment("p-over", "100.00", invoice_id), customer)

    await stack.until_due(customer, invoice_id, "0")
    await stack.until_balances(customer, "USD", "0", "60.00")
    later = await post_invoice(kafka, customer, "25.00")  # the credit balance pays the next invoice
    await stack.until_due(customer, later, "0")
    await stack.until_balances(customer, "USD", "0", "35.00")


async def test_payment_before_its_invoice_is_parked_then_applied(stack: Stack, kafka: KafkaProbe) -> None:
    customer = a_customer()
    invoice_id = f"inv-{uuid.uuid4().hex[:8]}"
    command = await send(kafka, payment("p-early", "30.00", invoice_id), customer)
    recorded = await answer(kafka, command, "PaymentRecorded")  # payments does not wait for the invoice
    assert recorded.data.invoice_id == invoice_id
    await send(kafka, payment("p-marker", "1.00", currency="EUR"), customer)  # marker, same key
    body = await stack.until(stack.credits, f"/customers/{customer}/balances", has_balance("EUR", "1.00"))
    assert not has_balance("USD", "30.00")(body)  # parked: not credit balance
    assert [r["currency"] for r in body["balances"]] == ["EUR"]

    await post_invoice(kafka, customer, "50.00", invoice_id)
    view = await stack.until_due(customer, invoice_id, "20.00")
    assert Decimal(view["payments_applied"]) == Decimal("30.00")
    await stack.until_balances(customer, "USD", "0", "0")


async def test_reversal_takes_the_money_back_from_where_it_went(stack: Stack, kafka: KafkaProbe) -> None:
    customer = a_customer()
    first = await post_invoice(kafka, customer, "40.00")
    await stack.until_due(customer, first, "40.00")
    await payments_knows(stack, customer, first)
    await send(kafka, payment("p-bounce", "100.00", first), customer)
    await stack.until_balances(customer, "USD", "0", "60.00")
    second = await post_invoice(kafka, customer, "50.00")  # paid from p-bounce's excess
    await stack.until_due(customer, second, "0")
    await stack.until_balances(customer, "USD", "0", "10.00")

    reverse = await send(kafka, ReversePayment(payment_id="p-bounce", reason="check bounced"), customer)
    reversed_ = await answer(kafka, reverse, "PaymentReversed")
    assert reversed_.data.amount == Money.of("100.00", "USD")
    await stack.until_due(customer, first, "40.00")
    await stack.until_due(customer, second, "50.00")
    await stack.until_balances(customer, "USD", "0", "0")
    released = await answer(kafka, reverse, "CreditReleased", topics.CREDITS_EVENTS)
    assert released.data.invoice_id in (first, second)
    view = await stack.payments_view(customer, lambda b: b["payments"][0]["status"] == "reversed")
    assert view["payments"][0]["reason"] == "check bounced"

    unknown = await send(kafka, ReversePayment(payment_id="p-never", reason="x"), customer)
    assert (await answer(kafka, unknown, "CommandRejected")).data.code == "unknown_payment"


async def test_deduction_takes_promotional_credit(stack: Stack, kafka: KafkaProbe) -> None:
    customer = a_customer()
    grant = GrantCredit(
        grant_id="g-promo", kind="promotional", amount=Money.of("30.00", "USD"), source="promo_code"
    )
    await send(kafka, grant, customer, topics.CREDITS_COMMANDS)
    await stack.until_balances(customer, "USD", "30.00", "0")

    deduct = DeductPromotionalCredits(
        deduction_id="d1", amount=Money.of("12.50", "USD"), reason="fake payment undone", grant_id="g-promo"
    )
    command = await send(kafka, deduct, customer)
    deducted = await answer(kafka, command, "PromotionalCreditsDeducted")
    assert deducted.data.amount == Money.of("12.50", "USD")
    await stack.until_balances(customer, "USD", "17.50", "0")
    anywhere = DeductPromotionalCredits(deduction_id="d2", amount=Money.of("7.50", "USD"), reason="cleanup")
    await answer(kafka, await send(kafka, anywhere, customer), "PromotionalCreditsDeducted")
    await stack.until_balances(customer, "USD", "10.00", "0")
    view = await stack.payments_view(customer, lambda b: len(b["deductions"]) == 2)
    assert [(d["deduction_id"], d["amount"]) for d in view["deductions"]] == [("d1", "12.50"), ("d2", "7.50")]


async def test_two_refunds_of_the_whole_balance_one_is_declined(stack: Stack, kafka: KafkaProbe) -> None:
    customer = a_customer()
    await send(kafka, payment("p-credit", "50.00"), customer)  # no invoice: all credit balance
    await stack.until_balances(customer, "USD", "0", "50.00")

    asks = [
        RefundCreditBalance(refund_id=refund_id, amount=Money.of("50.00", "USD"), method="check")
        for refund_id in ("r-a", "r-b")
    ]
    commands = await asyncio.gather(*(send(kafka, ask, customer) for ask in asks))
    for command in commands:
        await answer(kafka, command, "RefundRequested")
    asked = {c.correlation_id for c in commands}

    def settled(messages: list[Envelope[Any]]) -> bool:
        finished = {m.correlation_id for m in messages if m.type in ("RefundRecorded", "RefundFailed")}
        return asked <= finished

    events = await kafka.wait_for(topics.PAYMENTS_EVENTS, settled)
    recorded = of_type(events, "RefundRecorded", customer)
    failed = of_type(events, "RefundFailed", customer)
    assert len(recorded) == 1 and len(failed) == 1
    assert recorded[0].data.amount == Money.of("50.00", "USD")
    assert {recorded[0].data.refund_id, failed[0].data.refund_id} == {"r-a", "r-b"}
    assert failed[0].data.reason  # credits' reason, passed on
    await stack.until_balances(customer, "USD", "0", "0")

    view = await stack.payments_view(
        customer, lambda b: sorted(r["status"] for r in b["refunds"]) == ["failed", "recorded"]
    )
    refunds = {r["refund_id"]: r for r in view["refunds"]}
    assert refunds[recorded[0].data.refund_id]["paid_out"] == "50.00"
    assert refunds[failed[0].data.refund_id]["reason"] == failed[0].data.reason


async def test_duplicate_commands_move_money_once(stack: Stack, kafka: KafkaProbe) -> None:
    customer = a_customer()
    first = cmd(payment("p-dup", "25.00"), customer)
    await kafka.send(topics.PAYMENTS_COMMANDS, first)
    await kafka.send(topics.PAYMENTS_COMMANDS, first)  # redelivered: same message id
    await send(kafka, payment("p-dup", "25"), customer)  # resent: new message id, same content
    await send(kafka, payment("p-marker", "1.00"), customer)
    await stack.until_balances(customer, "USD", "0", "26.00")

    ask = RefundCreditBalance(refund_id="r-dup", amount=Money.of("6.00", "USD"), method="cash")
    await send(kafka, ask, customer)
    await send(kafka, ask, customer)
    await send(kafka, payment("p-marker-2", "2.00"), customer)
    await stack.until_balances(customer, "USD", "0", "22.00")  # 26 − 6 + 2

    events = await kafka.messages(topics.PAYMENTS_EVENTS)
    paid = [e.data.payment_id for e in of_type(events, "PaymentRecorded", customer)]
    assert paid == ["p-dup", "p-marker", "p-marker-2"]
    assert len(of_type(events, "RefundRequested", customer)) == 1
    view = await stack.payments_view(customer, lambda b: [r["status"] for r in b["refunds"]] == ["recorded"])
    assert [p["payment_id"] for p in view["payments"]] == ["p-dup", "p-marker", "p-marker-2"]


# -- amounts and sums past the single-amount cap (issue 13, D4) ------------------------------

JUST_UNDER_AMOUNT = "999999999999999.99"


async def dead_letters_of(kafka: KafkaProbe, topic: str, customer: str) -> list[dict[str, Any]]:
    return [d for _, v in await kafka.raw(dlq(topic)) if (d := json.loads(v))["key"] == customer]


async def test_a_grant_and_a_payment_past_the_amount_cap_are_dead_lettered_by_no_one(
    stack: Stack, kafka: KafkaProbe
) -> None:
    """Found by the probe: the credit balance they make (> 10^15) was refused by every
    consumer of credits.events (130 dead-lettered CreditBalanceChanged)."""
    customer = a_customer()
    grant = GrantCredit(
        grant_id="m-big", kind="manual", amount=Money.of(JUST_UNDER_AMOUNT, "USD"), source="manual"
    )
    await send(kafka, grant, customer, topics.CREDITS_COMMANDS)
    await answer(kafka, await send(kafka, payment("p-big", JUST_UNDER_AMOUNT), customer), "PaymentRecorded")
    await stack.until_balances(customer, "USD", "0", "1999999999999999.98")

    # marker: payments handles credits' answer to this refund after the balances above
    ask = RefundCreditBalance(refund_id="r-marker", amount=Money.of("1.00", "USD"), method="cash")
    recorded = await answer(kafka, await send(kafka, ask, customer), "RefundRecorded")
    assert recorded.data.amount == Money.of("1.00", "USD")
    assert await dead_letters_of(kafka, topics.CREDITS_EVENTS, customer) == []
    await stack.until_balances(customer, "USD", "0", "1999999999999998.98")


async def test_an_invoice_past_the_amount_cap_takes_a_payment(stack: Stack, kafka: KafkaProbe) -> None:
    customer = a_customer()
    invoice_id = await post_invoice(kafka, customer, "1800000000000000.00")
    await stack.until_due(customer, invoice_id, "1800000000000000.00")
    await payments_knows(stack, customer, invoice_id)

    await send(kafka, payment("p-part", JUST_UNDER_AMOUNT, invoice_id), customer)

    await stack.until_due(customer, invoice_id, "800000000000000.01")
    assert await dead_letters_of(kafka, topics.INVOICING_EVENTS, customer) == []
