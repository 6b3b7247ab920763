"""The seed scenarios (../shared/seeds), end to end: four services as separate processes on
real Kafka and PostgreSQL, driven only through topics, checked through the read APIs."""

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest

from tally_contracts import Money, topics
from tally_contracts.credits import ChangeCreditCurrency, DeleteCreditEntry, GrantCredit
from tally_contracts.invoicing import (
    AddCharge,
    CreateSubscription,
    Price,
    PutPriceList,
    RegenerateInvoice,
    RunBilling,
    UpsertCustomer,
    VoidInvoice,
)
from tally_contracts.payments import DeductPromotionalCredits, RecordOfflinePayment, RefundCreditBalance
from tally_contracts.rules import Analyze, AssignRuleSet, Condition, PutRuleSet, Rule
from tally_contracts.usage import UsageRecorded
from tally_testing import KafkaProbe

from .conftest import Stack, answered, send

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


async def customer(kafka: KafkaProbe, stack: Stack, currency: str = "USD") -> str:
    name = f"cus-{uuid.uuid4().hex[:8]}"
    command = await send(kafka, topics.INVOICING_COMMANDS, UpsertCustomer(currency=currency), name)
    await answered(kafka, topics.INVOICING_EVENTS, command, "CustomerUpserted")
    return name


async def charge_now(kafka: KafkaProbe, stack: Stack, who: str, amount: Money, day: int) -> str:
    """A one-time charge on its own invoice; returns the invoice id once it is posted."""
    charge_id = f"chg-{uuid.uuid4().hex[:8]}"
    command = await send(
        kafka,
        topics.INVOICING_COMMANDS,
        AddCharge(charge_id=charge_id, description=f"charge {charge_id}", amount=amount, invoice_now=True),
        who,
        day,
    )
    final = await answered(kafka, topics.INVOICING_EVENTS, command, "InvoiceFinalized")
    invoice_id: str = final.data.invoice_id
    return invoice_id


async def grant(
    kafka: KafkaProbe, who: str, amount: Money, kind: str = "promotional", day: int = 2, **extra: Any
) -> str:
    grant_id = f"g-{uuid.uuid4().hex[:8]}"
    source = "promo_code" if kind == "promotional" else "manual"
    await send(
        kafka,
        topics.CREDITS_COMMANDS,
        GrantCredit(grant_id=grant_id, kind=kind, amount=amount, source=extra.pop("source", source), **extra),
        who,
        day,
    )
    return grant_id


async def test_promotional_credit_reaches_recurring_and_one_time_invoices(
    stack: Stack, kafka: KafkaProbe
) -> None:
    who = await customer(kafka, stack)
    await send(
        kafka,
        topics.INVOICING_COMMANDS,
        CreateSubscription(
            subscription_id=f"s-{who}", name="Plan", fee=usd("30.00"), starts_on=dt.date(2026, 11, 1)
        ),
        who,
    )
    await grant(kafka, who, usd("50.00"))
    one_time = await charge_now(kafka, stack, who, usd("15.00"), day=3)
    await stack.until_due(who, one_time, "0")

    await send(kafka, topics.INVOICING_COMMANDS, RunBilling(as_of=dt.date(2026, 12, 1)), who, day=31)

    invoices = await stack.until_invoices(
        who, lambda invs: any(i["kind"] != "one_time" and i["status"] in ("posted", "paid") for i in invs)
    )
    [monthly] = [i for i in invoices if i["kind"] != "one_time" and i["period_start"] == "2026-11-01"]
    await stack.until_due(who, monthly["invoice_id"], "0")
    await stack.until_balances(who, "USD", promotional="5.00", credit_balance="0")


async def test_credit_waits_for_a_pending_metered_invoice(stack: Stack, kafka: KafkaProbe) -> None:
    who = await customer(kafka, stack)
    prices = await send(
        kafka,
        topics.INVOICING_COMMANDS,
        PutPriceList(
            price_list_id="default",
            prices=[Price(service="data", unit="GB", unit_price=Decimal("2.00"), currency="USD")],
        ),
        None,
    )
    await answered(kafka, topics.INVOICING_EVENTS, prices, "PriceListChanged")
    await grant(kafka, who, usd("10.00"))
    await stack.until_balances(who, "USD", promotional="10.00", credit_balance="0")
    await send(kafka, topics.USAGE, UsageRecorded(service="data", quantity=Decimal(3), unit="GB"), who, day=5)
    [pending] = await stack.until_invoices(
        who, lambda invs: len(invs) == 1 and invs[0]["status"] == "pending"
    )
    await stack.until(
        "invoicing",
        f"/invoices/{pending['invoice_id']}",
        lambda body: [Decimal(ln["quantity"]) for ln in body["lines"] if ln["kind"] == "usage"] == [3],
    )
    # Marker: a one-time invoice of the same customer, posted after the usage landed. Credits reads
    # invoicing's events in order per customer, so once credit reaches this invoice, any event the
    # pending invoice caused has been handled too: had it been offered credit, the oldest-first
    # order would have given it 6.00 and left 10 - 6 - 3 = 1.00.
    marker = await charge_now(kafka, stack, who, usd("3.00"), day=6)
    await stack.until_due(who, marker, "0")

    assert await stack.balances(who, "USD") == (Decimal("7.00"), Decimal(0))
    seen_by_credits = await stack.get("credits", f"/customers/{who}/invoices")
    assert pending["invoice_id"] not in [i["invoice_id"] for i in seen_by_credits["invoices"]]
    [still_pending] = [i for i in await stack.invoices(who) if i["invoice_id"] == pending["invoice_id"]]
    assert still_pending["status"] == "pending"

    await send(kafka, topics.INVOICING_COMMANDS, RunBilling(as_of=dt.date(2026, 12, 1)), who, day=31)

    closed = await stack.until_due(who, pending["invoice_id"], "0")
    assert (Decimal(closed["total"]), Decimal(closed["credits_applied"])) == (
        Decimal("6.00"),
        Decimal("6.00"),
    )
    await stack.until_balances(who, "USD", promotional="1.00", credit_balance="0")


async def test_currency_mismatch_then_currency_change(stack: Stack, kafka: KafkaProbe) -> None:
    who = await customer(kafka, stack, currency="EUR")
    grant_id = await grant(kafka, who, usd("10.00"))
    invoice = await charge_now(kafka, stack, who, Money.of("12.00", "EUR"), day=3)
    await stack.until_balances(who, "USD", promotional="10.00", credit_balance="0")
    await stack.until_due(who, invoice, "12.00")  # never across currencies

    await send(
        kafka,
        topics.CREDITS_COMMANDS,
        ChangeCreditCurrency(grant_id=grant_id, currency="EUR", rate=Decimal("0.9")),
        who,
    )

    await stack.until_due(who, invoice, "3.00")  # 10 USD × 0.9 = 9.00 EUR applied
    await stack.until_balances(who, "EUR", promotional="0", credit_balance="0")


async def test_credit_granted_while_an_unpaid_invoice_exists_pays_it(stack: Stack, kafka: KafkaProbe) -> None:
    who = await customer(kafka, stack)
    invoice = await charge_now(kafka, stack, who, usd("25.00"), day=3)
    await stack.until_due(who, invoice, "25.00")

    await grant(kafka, who, usd("40.00"), day=4)

    await stack.until_due(who, invoice, "0")
    await stack.until_balances(who, "USD", promotional="15.00", credit_balance="0")


async def test_offline_payment_then_deduction_of_promotional_credit(stack: Stack, kafka: KafkaProbe) -> None:
    who = await customer(kafka, stack)
    invoice = await charge_now(kafka, stack, who, usd("30.00"), day=3)
    await stack.until_due(who, invoice, "30.00")  # credits has it: the grant comes after
    await grant(kafka, who, usd("30.00"), apply_to_existing=False)
    await stack.until_balances(who, "USD", promotional="30.00", credit_balance="0")
    await stack.until_due(who, invoice, "30.00")

    await send(
        kafka,
        topics.PAYMENTS_COMMANDS,
        RecordOfflinePayment(
            payment_id=f"p-{who}",
            invoice_id=invoice,
            amount=usd("30.00"),
            method="check",
            received_on=dt.date(2026, 11, 5),
        ),
        who,
        day=5,
    )
    await send(
        kafka,
        topics.PAYMENTS_COMMANDS,
        DeductPromotionalCredits(deduction_id=f"d-{who}", amount=usd("30.00"), reason="paid offline"),
        who,
        day=5,
    )

    await stack.until_due(who, invoice, "0")
    await stack.until_balances(who, "USD", promotional="0", credit_balance="0")
    payments = await stack.get("payments", f"/customers/{who}/payments")
    assert [p["payment_id"] for p in payments["payments"]] == [f"p-{who}"]
    assert [d["deduction_id"] for d in payments["deductions"]] == [f"d-{who}"]


async def test_void_and_regenerate(stack: Stack, kafka: KafkaProbe) -> None:
    who = await customer(kafka, stack)
    await grant(kafka, who, usd("50.00"))
    invoice = await charge_now(kafka, stack, who, usd("20.00"), day=3)
    await stack.until_balances(who, "USD", promotional="30.00", credit_balance="0")

    void = await send(
        kafka, topics.INVOICING_COMMANDS, VoidInvoice(invoice_id=invoice, reason="wrong"), who, 4
    )
    await answered(kafka, topics.INVOICING_EVENTS, void, "InvoiceVoided")
    await stack.until_balances(who, "USD", promotional="50.00", credit_balance="0")  # released
    await send(kafka, topics.INVOICING_COMMANDS, RegenerateInvoice(invoice_id=invoice), who, 4)

    [again] = [
        i
        for i in await stack.until_invoices(
            who,
            lambda invs: any(
                i.get("regenerated_from") == invoice and i["status"] in ("posted", "paid") for i in invs
            ),
        )
        if i.get("regenerated_from") == invoice
    ]
    await stack.until_due(who, again["invoice_id"], "0")
    await stack.until_balances(who, "USD", promotional="30.00", credit_balance="0")
    voided = {i["invoice_id"]: i for i in await stack.invoices(who)}[invoice]
    assert (voided["status"], Decimal(voided["amount_due"])) == ("voided", Decimal(0))


async def test_overpayment_pays_the_next_invoice_and_the_rest_is_refunded(
    stack: Stack, kafka: KafkaProbe
) -> None:
    who = await customer(kafka, stack)
    first = await charge_now(kafka, stack, who, usd("40.00"), day=3)
    await send(
        kafka,
        topics.PAYMENTS_COMMANDS,
        RecordOfflinePayment(
            payment_id=f"p-{who}",
            invoice_id=first,
            amount=usd("100.00"),
            method="bank_transfer",
            received_on=dt.date(2026, 11, 4),
        ),
        who,
        day=4,
    )
    await stack.until_balances(who, "USD", promotional="0", credit_balance="60.00")
    second = await charge_now(kafka, stack, who, usd("25.00"), day=6)
    await stack.until_due(who, second, "0")  # no payment run needed
    await stack.until_balances(who, "USD", promotional="0", credit_balance="35.00")

    refund = await send(
        kafka,
        topics.PAYMENTS_COMMANDS,
        RefundCreditBalance(refund_id=f"r-{who}", amount=usd("35.00"), method="bank_transfer"),
        who,
        day=7,
    )

    recorded = await answered(kafka, topics.PAYMENTS_EVENTS, refund, "RefundRecorded")
    assert recorded.data.amount == usd("35.00")
    await stack.until_balances(who, "USD", promotional="0", credit_balance="0")


async def test_oldest_invoice_first_with_partial_application(stack: Stack, kafka: KafkaProbe) -> None:
    who = await customer(kafka, stack)
    oldest = await charge_now(kafka, stack, who, usd("10.00"), day=3)
    middle = await charge_now(kafka, stack, who, usd("20.00"), day=4)
    newest = await charge_now(kafka, stack, who, usd("30.00"), day=5)
    await stack.until_due(who, newest, "30.00")

    await grant(kafka, who, usd("25.00"), day=6)

    await stack.until_due(who, oldest, "0")
    await stack.until_due(who, middle, "5.00")
    await stack.until_due(who, newest, "30.00")
    await stack.until_balances(who, "USD", promotional="0", credit_balance="0")


async def test_manual_entries_positive_negative_and_deletion(stack: Stack, kafka: KafkaProbe) -> None:
    who = await customer(kafka, stack)
    plus = await grant(kafka, who, usd("50.00"), kind="manual")
    await grant(kafka, who, usd("-20.00"), kind="manual")
    await stack.until_balances(who, "USD", promotional="0", credit_balance="30.00")

    too_much = await send(
        kafka,
        topics.CREDITS_COMMANDS,
        GrantCredit(
            grant_id=f"g-{uuid.uuid4().hex[:8]}", kind="manual", amount=usd("-40.00"), source="manual"
        ),
        who,
    )
    rejected = await answered(kafka, topics.CREDITS_EVENTS, too_much, "CommandRejected")
    assert "below zero" in rejected.data.reason or "balance" in rejected.data.reason

    used = await send(kafka, topics.CREDITS_COMMANDS, DeleteCreditEntry(grant_id=plus), who)
    refused = await answered(kafka, topics.CREDITS_EVENTS, used, "CommandRejected")
    assert refused.data.reason
    spare = await grant(kafka, who, usd("10.00"), kind="manual")
    await stack.until_balances(who, "USD", promotional="0", credit_balance="40.00")
    deleted = await send(kafka, topics.CREDITS_COMMANDS, DeleteCreditEntry(grant_id=spare), who)
    await answered(kafka, topics.CREDITS_EVENTS, deleted, "CreditEntryDeleted")
    await stack.until_balances(who, "USD", promotional="0", credit_balance="30.00")


async def test_tiered_promotion_minimum_and_penalty_with_destination_groups(
    stack: Stack, kafka: KafkaProbe
) -> None:
    who = await customer(kafka, stack)
    rule_set_id = f"rs-{who}"
    prices = await send(
        kafka,
        topics.INVOICING_COMMANDS,
        PutPriceList(
            price_list_id="default",
            prices=[
                Price(service="voice", unit="minute", unit_price=Decimal("0.02"), currency="USD"),
                Price(
                    service="voice",
                    unit="minute",
                    unit_price=Decimal("0.10"),
                    currency="USD",
                    destination_prefix="44",
                ),
                Price(service="data", unit="GB", unit_price=Decimal("2.00"), currency="USD"),
            ],
        ),
        None,
    )
    await answered(kafka, topics.INVOICING_EVENTS, prices, "PriceListChanged")
    put = await send(
        kafka,
        topics.RULES_COMMANDS,
        PutRuleSet(
            rule_set_id=rule_set_id,
            name="tiers",
            destination_groups={"international": ["44", "33"]},
            rules=[
                Rule(
                    rule_id="intl",
                    type="promotion",
                    title="International voice discount",
                    analyze=Analyze(scope="service", service="voice", destination_group="international"),
                    measure="units",
                    value_type="percentage",
                    conditions=[
                        Condition(threshold=Decimal(100), value=Decimal(5)),
                        Condition(threshold=Decimal(300), value=Decimal(10)),
                    ],
                ),
                Rule(
                    rule_id="commit",
                    type="penalty",
                    title="Data commitment",
                    analyze=Analyze(scope="service", service="data"),
                    measure="units",
                    value_type="amount",
                    conditions=[Condition(threshold=Decimal(10), value=Decimal("7.50"))],
                ),
                Rule(
                    rule_id="minimum",
                    type="minimum_amount",
                    title="Monthly minimum",
                    analyze=Analyze(scope="total"),
                    conditions=[Condition(threshold=Decimal(60))],
                ),
            ],
        ),
        None,
    )
    await answered(kafka, topics.RULES_EVENTS, put, "RuleSetChanged")
    assign = await send(kafka, topics.RULES_COMMANDS, AssignRuleSet(rule_set_id=rule_set_id), who)
    await answered(kafka, topics.RULES_EVENTS, assign, "RuleSetAssigned")
    # 350 international minutes (35.00), 200 domestic (4.00), 4 GB (8.00): subtotal 47.00
    for destination, minutes in (("44", 200), ("4420", 150), ("1", 200)):
        await send(
            kafka,
            topics.USAGE,
            UsageRecorded(service="voice", quantity=Decimal(minutes), unit="minute", destination=destination),
            who,
            day=5,
        )
    await send(kafka, topics.USAGE, UsageRecorded(service="data", quantity=Decimal(4), unit="GB"), who, day=6)
    [pending] = await stack.until_invoices(who, lambda invs: len(invs) == 1)

    def all_usage_on(body: Any) -> bool:
        quantities = [Decimal(ln["quantity"]) for ln in body["lines"] if ln["kind"] == "usage"]
        return sum(quantities, Decimal(0)) == 554  # 550 minutes and 4 GB: usage and commands race

    await stack.until("invoicing", f"/invoices/{pending['invoice_id']}", all_usage_on)
    bill = await send(kafka, topics.INVOICING_COMMANDS, RunBilling(as_of=dt.date(2026, 12, 1)), who, day=31)

    final = await answered(kafka, topics.INVOICING_EVENTS, bill, "InvoiceFinalized", timeout=45)

    adjustments = {ln.rule_id: ln.amount for ln in final.data.lines if ln.kind == "adjustment"}
    # 10% of 35.00 international voice; 4 GB < 10 GB commitment: 7.50; 47 - 3.50 + 7.50 = 51 < 60: 9.00
    assert adjustments == {"intl": usd("-3.50"), "commit": usd("7.50"), "minimum": usd("9.00")}
    assert final.data.total == usd("60.00")
    assert (final.data.rule_set_id, final.data.rule_set_version) == (rule_set_id, 1)


async def test_negative_invoice_moves_to_credit_balance_and_pays_another(
    stack: Stack, kafka: KafkaProbe
) -> None:
    who = await customer(kafka, stack)
    open_invoice = await charge_now(kafka, stack, who, usd("30.00"), day=3)
    await stack.until_due(who, open_invoice, "30.00")

    command = await send(
        kafka,
        topics.INVOICING_COMMANDS,
        AddCharge(
            charge_id=f"brk-{who}", description="service break", amount=usd("-50.00"), invoice_now=True
        ),
        who,
        day=4,
    )

    moved = await answered(kafka, topics.CREDITS_EVENTS, command, "NegativeInvoiceTransferred")
    assert moved.data.amount == usd("50.00")
    await stack.until_due(who, open_invoice, "0")
    await stack.until_balances(who, "USD", promotional="0", credit_balance="20.00")


async def test_refund_kept_as_credit_pays_a_future_invoice(stack: Stack, kafka: KafkaProbe) -> None:
    who = await customer(kafka, stack)
    await grant(kafka, who, usd("15.00"), kind="manual", source="refund", reason="refund kept as credit")
    await stack.until_balances(who, "USD", promotional="0", credit_balance="15.00")

    invoice = await charge_now(kafka, stack, who, usd("12.00"), day=8)

    await stack.until_due(who, invoice, "0")
    await stack.until_balances(who, "USD", promotional="0", credit_balance="3.00")
