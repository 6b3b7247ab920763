"""Payments on real Kafka and PostgreSQL; the test plays the invoicing and credits services' part."""

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from payments.app import build
from tally_contracts import Envelope, Money, topics
from tally_contracts.credits import CreditRefunded, RefundDeclined
from tally_contracts.invoicing import InvoiceFinalized, InvoiceStatusChanged, InvoiceVoided
from tally_contracts.payments import (
    DeductPromotionalCredits,
    RecordOfflinePayment,
    RefundCreditBalance,
    ReversePayment,
)
from tally_messaging.settings import ServiceSettings
from tally_testing import Infra, KafkaProbe, free_port, service_settings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
NOV = dt.datetime(2026, 11, 3, 9, 0, tzinfo=dt.UTC)


@pytest_asyncio.fixture(loop_scope="session")
async def payments(infra: Infra, topic_prefix: str, new_database: Any) -> AsyncIterator[ServiceSettings]:
    settings = service_settings(infra, topic_prefix, await new_database(), http_port=free_port())
    service = build(settings)
    await service.start()
    yield settings
    await service.stop()


def cmd(data: Any, customer: str | None, at: dt.datetime = NOV) -> Envelope[Any]:
    return Envelope.new(data, customer_id=customer, occurred_at=at)


def of_type(messages: list[Envelope[Any]], type_name: str, customer: str) -> list[Envelope[Any]]:
    return [m for m in messages if m.type == type_name and m.customer_id == customer]


def a_customer() -> str:
    return f"cus-{uuid.uuid4().hex[:8]}"


async def send(kafka: KafkaProbe, command: Envelope[Any]) -> Envelope[Any]:
    await kafka.send(topics.PAYMENTS_COMMANDS, command)
    return command


async def answer(kafka: KafkaProbe, command: Envelope[Any], type_name: str) -> Envelope[Any]:
    """The `type_name` event payments published for `command` (by correlation id)."""

    def mine(messages: list[Envelope[Any]]) -> list[Envelope[Any]]:
        return [m for m in messages if m.type == type_name and m.correlation_id == command.correlation_id]

    found = await kafka.wait_for(topics.PAYMENTS_EVENTS, lambda ms: bool(mine(ms)))
    [event] = mine(found)
    return event


async def invoice_known(settings: ServiceSettings, customer: str, invoice_id: str, status: str) -> None:
    """Wait until payments has taken in invoicing's event (it publishes nothing for it)."""
    conn = await asyncpg.connect(settings.dsn("payments"))
    try:
        for _ in range(300):
            found = await conn.fetchval(
                "select status from known_invoices where customer_id = $1 and invoice_id = $2",
                customer,
                invoice_id,
            )
            if found == status:
                return
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    raise AssertionError(f"payments never saw invoice {invoice_id} as {status}")


async def a_posted_invoice(kafka: KafkaProbe, settings: ServiceSettings, customer: str, currency: str) -> str:
    """Invoicing's part: an invoice posted for `customer`, as InvoiceFinalized announces it."""
    invoice_id = f"inv-{uuid.uuid4().hex[:8]}"
    finalized = InvoiceFinalized(
        invoice_id=invoice_id,
        currency=currency,
        issued_on=NOV.date(),
        lines=[],
        total=Money.of("40.00", currency),
        rule_set_id=None,
        rule_set_version=None,
    )
    await kafka.send(topics.INVOICING_EVENTS, cmd(finalized, customer))
    await invoice_known(settings, customer, invoice_id, "posted")
    return invoice_id


def payment(payment_id: str, amount: str, currency: str = "USD", invoice_id: str | None = None) -> Any:
    return RecordOfflinePayment(
        payment_id=payment_id,
        invoice_id=invoice_id,
        amount=Money.of(amount, currency),
        method="check",
        reference="chk-1001",
        received_on=dt.date(2026, 11, 20),
    )


async def read(settings: ServiceSettings, customer: str) -> Any:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{settings.http_port}/customers/{customer}/payments")
    assert response.status_code == 200
    return response.json()


async def test_payment_on_a_known_invoice_is_recorded(payments: ServiceSettings, kafka: KafkaProbe) -> None:
    customer = a_customer()
    invoice_id = await a_posted_invoice(kafka, payments, customer, "USD")
    command = await send(kafka, cmd(payment("p1", "25", invoice_id=invoice_id), customer))

    recorded = await answer(kafka, command, "PaymentRecorded")
    assert recorded.customer_id == customer and recorded.causation_id == str(command.id)
    assert recorded.data.invoice_id == invoice_id
    assert recorded.data.amount == Money.of("25.00", "USD")
    assert recorded.data.amount.amount.as_tuple().exponent == -2  # written to the minor unit
    body = await read(payments, customer)
    assert body["customer_id"] == customer
    [row] = body["payments"]
    assert row["payment_id"] == "p1" and row["invoice_id"] == invoice_id
    assert (row["amount"], row["currency"], row["status"]) == ("25.00", "USD", "recorded")
    assert row["method"] == "check" and row["received_on"] == "2026-11-20"


async def test_payment_rules_on_invoices(payments: ServiceSettings, kafka: KafkaProbe) -> None:
    customer = a_customer()
    invoice_id = await a_posted_invoice(kafka, payments, customer, "USD")
    wrong_currency = await send(kafka, cmd(payment("p-eur", "10.00", "EUR", invoice_id), customer))
    rejected = await answer(kafka, wrong_currency, "CommandRejected")
    assert rejected.data.code == "currency_mismatch"
    assert rejected.data.command_id == str(wrong_currency.id)
    assert rejected.data.command_type == "RecordOfflinePayment"

    voided_id = await a_posted_invoice(kafka, payments, customer, "USD")
    await kafka.send(topics.INVOICING_EVENTS, cmd(InvoiceVoided(invoice_id=voided_id, reason="x"), customer))
    await kafka.send(
        topics.INVOICING_EVENTS, cmd(InvoiceStatusChanged(invoice_id=voided_id, status="paid"), customer)
    )  # a late status change does not bring a voided invoice back
    await invoice_known(payments, customer, voided_id, "voided")
    on_voided = await send(kafka, cmd(payment("p-void", "10.00", "USD", voided_id), customer))
    assert (await answer(kafka, on_voided, "CommandRejected")).data.code == "invoice_voided"

    unknown = await send(kafka, cmd(payment("p-early", "12.50", "EUR", "inv-not-yet"), customer))
    recorded = await answer(kafka, unknown, "PaymentRecorded")
    assert recorded.data.invoice_id == "inv-not-yet" and recorded.data.amount == Money.of("12.50", "EUR")

    too_precise = await send(kafka, cmd(payment("p-mills", "1.005"), customer))
    assert (await answer(kafka, too_precise, "CommandRejected")).data.code == "amount_too_precise"
    body = await read(payments, customer)
    assert [p["payment_id"] for p in body["payments"]] == ["p-early"]  # rejections leave nothing


async def test_the_same_payment_twice_is_recorded_once(payments: ServiceSettings, kafka: KafkaProbe) -> None:
    customer = a_customer()
    first = cmd(payment("p-dup", "30.00"), customer)
    await send(kafka, first)
    await send(kafka, first)  # redelivered: same message id
    again = await send(kafka, cmd(payment("p-dup", "30"), customer))  # resent: new id, same content
    other = await send(kafka, cmd(payment("p-dup", "31.00"), customer))  # same id, other content
    marker = await send(kafka, cmd(payment("p-next", "1.00"), customer))
    await answer(kafka, marker, "PaymentRecorded")  # same customer, same partition: all before are done

    events = await kafka.messages(topics.PAYMENTS_EVENTS)
    assert [e.data.payment_id for e in of_type(events, "PaymentRecorded", customer)] == ["p-dup", "p-next"]
    [rejected] = of_type(events, "CommandRejected", customer)
    assert rejected.data.code == "duplicate_payment_id" and rejected.data.command_id == str(other.id)
    [completed] = [e for e in events if e.correlation_id == again.correlation_id]  # nothing more recorded
    assert completed.type == "CommandCompleted"
    assert (completed.data.command_id, completed.data.outcome) == (str(again.id), "nothing_to_do")
    body = await read(payments, customer)
    assert [(p["payment_id"], p["amount"]) for p in body["payments"]] == [
        ("p-dup", "30.00"),
        ("p-next", "1.00"),
    ]


async def test_reversal(payments: ServiceSettings, kafka: KafkaProbe) -> None:
    customer = a_customer()
    await answer(kafka, await send(kafka, cmd(payment("p-chk", "75.00"), customer)), "PaymentRecorded")
    reverse = await send(kafka, cmd(ReversePayment(payment_id="p-chk", reason="bounced"), customer))
    reversed_ = await answer(kafka, reverse, "PaymentReversed")
    assert reversed_.data.payment_id == "p-chk" and reversed_.data.amount == Money.of("75.00", "USD")
    assert reversed_.data.reason == "bounced"

    twice = await send(kafka, cmd(ReversePayment(payment_id="p-chk", reason="bounced"), customer))
    unknown = await send(kafka, cmd(ReversePayment(payment_id="p-nope", reason="bounced"), customer))
    rejected = await answer(kafka, unknown, "CommandRejected")
    assert rejected.data.code == "unknown_payment"
    events = await kafka.messages(topics.PAYMENTS_EVENTS)
    [completed] = [e for e in events if e.correlation_id == twice.correlation_id]  # reversed once only
    assert completed.type == "CommandCompleted"
    assert (completed.data.command_id, completed.data.outcome) == (str(twice.id), "nothing_to_do")
    [row] = (await read(payments, customer))["payments"]
    assert (row["status"], row["reason"]) == ("reversed", "bounced")


async def test_deduction(payments: ServiceSettings, kafka: KafkaProbe) -> None:
    customer = a_customer()
    deduct = DeductPromotionalCredits(
        deduction_id="d1", amount=Money.of("5", "USD"), reason="manual fix", grant_id="g1"
    )
    command = await send(kafka, cmd(deduct, customer))
    deducted = await answer(kafka, command, "PromotionalCreditsDeducted")
    assert deducted.data.deduction_id == "d1" and deducted.data.amount == Money.of("5.00", "USD")
    assert deducted.data.grant_id == "g1" and deducted.data.reason == "manual fix"
    zero = DeductPromotionalCredits(deduction_id="d2", amount=Money.of("0", "USD"), reason="oops")
    rejected = await answer(kafka, await send(kafka, cmd(zero, customer)), "CommandRejected")
    assert rejected.data.code == "amount_not_positive"
    body = await read(payments, customer)
    assert body["deductions"] == [
        {
            "deduction_id": "d1",
            "amount": "5.00",
            "currency": "USD",
            "reason": "manual fix",
            "grant_id": "g1",
            "status": "recorded",
        }
    ]


async def test_refund_saga(payments: ServiceSettings, kafka: KafkaProbe) -> None:
    customer = a_customer()
    ask = RefundCreditBalance(
        refund_id="r1", amount=Money.of("20", "USD"), method="bank_transfer", reference="t1"
    )
    command = await send(kafka, cmd(ask, customer))
    requested = await answer(kafka, command, "RefundRequested")
    assert requested.data.refund_id == "r1" and requested.data.amount == Money.of("20.00", "USD")
    assert (await read(payments, customer))["refunds"][0]["status"] == "requested"

    # Credits' part: it debited the credit balance.
    refunded = requested.reply(CreditRefunded(refund_id="r1", amount=Money.of("20.00", "USD")))
    await kafka.send(topics.CREDITS_EVENTS, refunded)
    recorded = await answer(kafka, command, "RefundRecorded")
    assert recorded.data.amount == Money.of("20.00", "USD") and recorded.data.method == "bank_transfer"
    assert recorded.causation_id == str(refunded.id)

    ask2 = RefundCreditBalance(refund_id="r2", amount=Money.of("500.00", "USD"), method="check")
    command2 = await send(kafka, cmd(ask2, customer))
    requested2 = await answer(kafka, command2, "RefundRequested")
    reason = "credit balance is 0.00 USD, less than the 500.00 USD asked"
    declined = requested2.reply(
        RefundDeclined(refund_id="r2", amount=Money.of("500.00", "USD"), reason=reason)
    )
    await kafka.send(topics.CREDITS_EVENTS, declined)
    failed = await answer(kafka, command2, "RefundFailed")
    assert failed.data.refund_id == "r2" and failed.data.reason == reason
    assert failed.data.amount == Money.of("500.00", "USD")

    # A late or repeated answer for a finished refund changes nothing.
    await kafka.send(
        topics.CREDITS_EVENTS, requested2.reply(CreditRefunded(refund_id="r2", amount=Money.of("500", "USD")))
    )
    await kafka.send(topics.CREDITS_EVENTS, refunded)  # redelivered
    ask3 = RefundCreditBalance(refund_id="r3", amount=Money.of("1.00", "USD"), method="cash")
    command3 = await send(kafka, cmd(ask3, customer))
    requested3 = await answer(kafka, command3, "RefundRequested")
    await kafka.send(
        topics.CREDITS_EVENTS,
        requested3.reply(CreditRefunded(refund_id="r3", amount=Money.of("1.00", "USD"))),
    )
    await answer(kafka, command3, "RefundRecorded")  # same customer, same partition: all before are done
    events = await kafka.messages(topics.PAYMENTS_EVENTS)
    assert [e.data.refund_id for e in of_type(events, "RefundRecorded", customer)] == ["r1", "r3"]
    assert [e.data.refund_id for e in of_type(events, "RefundFailed", customer)] == ["r2"]

    refunds = {r["refund_id"]: r for r in (await read(payments, customer))["refunds"]}
    assert (refunds["r1"]["status"], refunds["r1"]["paid_out"], refunds["r1"]["reason"]) == (
        "recorded",
        "20.00",
        None,
    )
    assert (refunds["r2"]["status"], refunds["r2"]["paid_out"], refunds["r2"]["reason"]) == (
        "failed",
        None,
        reason,
    )
    assert Decimal(refunds["r2"]["amount"]) == Decimal(500) and refunds["r2"]["method"] == "check"


async def test_read_api_of_an_unknown_customer_is_empty(payments: ServiceSettings) -> None:
    body = await read(payments, "cus-nobody")
    assert body == {"customer_id": "cus-nobody", "payments": [], "deductions": [], "refunds": []}


# -- input validation (issue 13): ids, dates, amounts --------------------------------------


def tampered(command: Envelope[Any], **data: Any) -> bytes:
    """The command's wire JSON with `data` fields replaced: what an upstream bug would send."""
    document = json.loads(command.to_json())
    document["data"].update(data)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("invoice_id", "i" * 201, "at most 200 characters"),
        ("invoice_id", "inv\x00-1", "must not contain the NUL character"),
        ("payment_id", "p\n1", "must not contain control characters"),
        ("received_on", "9999-12-15", "less than or equal to 2099-12-31"),
        ("received_on", "0001-01-01", "greater than or equal to 2000-01-01"),
        (
            "amount",
            {"amount": "1000000000000000.00", "currency": "USD"},
            "smaller than 1,000,000,000,000,000",
        ),
        ("reference", "chk\x00", "must not contain the NUL character"),
    ],
)
async def test_a_payment_with_a_bad_field_is_dead_lettered_naming_the_field(
    payments: ServiceSettings, kafka: KafkaProbe, field: str, value: Any, reason: str
) -> None:
    customer = a_customer()
    bad = cmd(payment("p-bad", "10.00"), customer)
    await kafka.send(topics.PAYMENTS_COMMANDS, tampered(bad, **{field: value}), key=customer)
    marker = await send(kafka, cmd(payment("p-good", "1.00"), customer))  # the consumer goes on

    [dead] = await kafka.dead_letters(topics.PAYMENTS_COMMANDS, lambda d: d["key"] == customer)
    assert field in dead["error"] and reason in dead["error"]
    await answer(kafka, marker, "PaymentRecorded")
    body = await read(payments, customer)
    assert [p["payment_id"] for p in body["payments"]] == ["p-good"]
