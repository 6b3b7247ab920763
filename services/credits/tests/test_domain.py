"""The credits domain, one behaviour per test: the failures billing teams report (seeds
000, 001, 002, 004) and the rules decided in `credits.domain`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from credits import domain
from credits.domain import Cause, CustomerLedger, Outcome, PromotionalGrant
from credits.ledger import LedgerEntry, Posting, UnbalancedEntry, account_balances
from tally_contracts import DomainError, Line, MessageData, Money
from tally_contracts.credits import (
    ApplyCredits,
    ChangeCreditCurrency,
    CreditApplied,
    CreditBalanceChanged,
    CreditEntryDeleted,
    CreditExpired,
    CreditGranted,
    CreditRefunded,
    CreditReleased,
    DeleteCreditEntry,
    ExpireCredits,
    GrantCredit,
    InvoiceBalanceChanged,
    NegativeInvoiceTransferred,
    RefundDeclined,
)
from tally_contracts.invoicing import InvoiceFinalized, InvoiceVoided
from tally_contracts.payments import (
    PaymentRecorded,
    PaymentReversed,
    PromotionalCreditsDeducted,
    RefundRequested,
)

Event = TypeVar("Event", bound=MessageData)
START = dt.date(2026, 11, 1)


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


class Customer:
    """Drives one customer's ledger message by message, as the handler will."""

    def __init__(self) -> None:
        self.state = CustomerLedger("cus_1")
        self.entries: list[LedgerEntry] = []
        self.events: tuple[MessageData, ...] = ()
        self.day = START
        self.messages = 0

    def run(self, operation: Callable[[CustomerLedger, Any, Cause], Outcome], data: Any) -> Outcome:
        self.messages += 1
        outcome = operation(self.state, data, Cause(f"msg-{self.messages}", self.day))
        self.state, self.events = outcome.state, outcome.events
        self.entries.extend(outcome.entries)
        return outcome

    def grant(
        self,
        grant_id: str,
        amount: Money,
        *,
        kind: str = "promotional",
        expires_at: dt.date | None = None,
        apply_to_existing: bool = True,
        priority: int | None = None,
        scope: dict[str, str] | None = None,
    ) -> Outcome:
        command = GrantCredit.model_validate(
            {
                "grant_id": grant_id,
                "kind": kind,
                "amount": amount,
                "source": "promo_code" if kind == "promotional" else "manual",
                "expires_at": expires_at,
                "apply_to_existing": apply_to_existing,
                "priority": priority,
                "scope": scope,
            }
        )
        return self.run(domain.grant_credit, command)

    def finalize(self, invoice_id: str, total: Money, regenerated_from: str | None = None) -> Outcome:
        event = InvoiceFinalized(
            invoice_id=invoice_id,
            currency=total.currency,
            issued_on=self.day,
            lines=[],
            total=total,
            rule_set_id=None,
            rule_set_version=None,
            regenerated_from=regenerated_from,
        )
        return self.run(domain.finalize_invoice, event)

    def pay(self, payment_id: str, amount: Money, invoice_id: str | None = None) -> Outcome:
        event = PaymentRecorded(
            payment_id=payment_id, invoice_id=invoice_id, amount=amount, method="check", received_on=self.day
        )
        return self.run(domain.record_payment, event)

    def reverse(self, payment_id: str, amount: Money) -> Outcome:
        event = PaymentReversed(payment_id=payment_id, amount=amount, reason="check bounced")
        return self.run(domain.reverse_payment, event)

    def void(self, invoice_id: str) -> Outcome:
        return self.run(domain.void_invoice, InvoiceVoided(invoice_id=invoice_id, reason="wrong plan"))

    def refund(self, refund_id: str, amount: Money) -> Outcome:
        event = RefundRequested(refund_id=refund_id, amount=amount, method="bank_transfer")
        return self.run(domain.refund, event)

    def deduct(self, deduction_id: str, amount: Money, grant_id: str | None = None) -> Outcome:
        event = PromotionalCreditsDeducted(
            deduction_id=deduction_id, amount=amount, reason="recorded as offline payment", grant_id=grant_id
        )
        return self.run(domain.deduct_promotional, event)

    def expire(self, as_of: dt.date) -> Outcome:
        return self.run(domain.expire_credits, ExpireCredits(as_of=as_of))

    def apply(self) -> Outcome:
        return self.run(domain.apply_credits, ApplyCredits())

    def apply_to(self, invoice_id: str | None, amount: Money | None = None) -> Outcome:
        return self.run(domain.apply_credits, ApplyCredits(invoice_id=invoice_id, amount=amount))

    def delete(self, grant_id: str) -> Outcome:
        return self.run(domain.delete_credit_entry, DeleteCreditEntry(grant_id=grant_id))

    def change_currency(self, grant_id: str, currency: str, rate: str) -> Outcome:
        command = ChangeCreditCurrency(grant_id=grant_id, currency=currency, rate=Decimal(rate))
        return self.run(domain.change_credit_currency, command)

    def due(self, invoice_id: str) -> Money:
        return self.state.invoice_balance(invoice_id).amount_due

    def status(self, invoice_id: str) -> str:
        invoice = self.state.invoice(invoice_id)
        assert invoice is not None
        return invoice.status

    def published(self, kind: type[Event]) -> list[Event]:
        return [event for event in self.events if isinstance(event, kind)]


@pytest.fixture
def customer() -> Customer:
    return Customer()


# -- promotional credit (seed 000) --------------------------------------------------------


def test_promotional_credit_reaches_an_existing_unpaid_invoice(customer: Customer) -> None:
    customer.finalize("inv-1", usd("100.00"))

    customer.grant("promo-1", usd("30.00"))

    [applied] = customer.published(CreditApplied)
    assert (applied.invoice_id, applied.source_type, applied.source_id, applied.amount) == (
        "inv-1",
        "promotional",
        "promo-1",
        usd("30.00"),
    )
    [balance] = customer.published(InvoiceBalanceChanged)
    assert (balance.credits_applied, balance.amount_due, balance.status) == (
        usd("30.00"),
        usd("70.00"),
        "open",
    )


def test_credit_waits_until_the_invoice_is_posted(customer: Customer) -> None:
    customer.grant("promo-1", usd("30.00"))
    assert customer.published(CreditApplied) == []

    customer.finalize("inv-1", usd("20.00"))

    assert [a.amount for a in customer.published(CreditApplied)] == [usd("20.00")]
    assert customer.status("inv-1") == "paid"
    assert customer.state.promotional_available("USD") == usd("10.00")


def test_credit_never_crosses_currencies_until_its_currency_is_changed(customer: Customer) -> None:
    customer.finalize("inv-1", Money.of("100.00", "HKD"))
    customer.grant("promo-1", usd("10.00"))
    assert customer.published(CreditApplied) == []

    customer.change_currency("promo-1", "HKD", "7.8")

    [applied] = customer.published(CreditApplied)
    assert applied.amount == Money.of("78.00", "HKD")
    assert customer.due("inv-1") == Money.of("22.00", "HKD")
    assert {e.currency for e in customer.published(CreditBalanceChanged)} == {"USD", "HKD"}


def test_currency_change_rounds_half_even_to_the_new_minor_unit(customer: Customer) -> None:
    customer.grant("promo-1", usd("10.25"))

    customer.change_currency("promo-1", "JPY", "150.2")  # 1539.55 → 1540

    grant = customer.state.grant("promo-1")
    assert grant is not None and grant.amount == Money.of("1540", "JPY")


def test_only_an_unused_grant_changes_currency(customer: Customer) -> None:
    customer.finalize("inv-1", usd("5.00"))
    customer.grant("promo-1", usd("10.00"))

    with pytest.raises(DomainError) as raised:
        customer.change_currency("promo-1", "EUR", "0.9")

    assert raised.value.code == "credit_entry_used"


def test_grant_not_applied_to_existing_invoices_waits_for_apply_credits(customer: Customer) -> None:
    customer.finalize("inv-1", usd("100.00"))
    customer.grant("promo-1", usd("80.00"), apply_to_existing=False)
    assert customer.published(CreditApplied) == []

    customer.finalize("inv-2", usd("50.00"))
    assert [(a.invoice_id, a.amount) for a in customer.published(CreditApplied)] == [("inv-2", usd("50.00"))]

    customer.apply()
    assert [(a.invoice_id, a.amount) for a in customer.published(CreditApplied)] == [("inv-1", usd("30.00"))]


# -- credit balance (seeds 001, 002) ------------------------------------------------------


# -- priority and scope -----------------------------------------------------------------


def voice_and_subscription(invoice_id: str, day: dt.date) -> InvoiceFinalized:
    return InvoiceFinalized(
        invoice_id=invoice_id,
        currency="USD",
        issued_on=day,
        lines=[
            Line(line_id="sub:basic", kind="subscription", description="Basic", amount=usd("20.00")),
            Line(
                line_id="usage:voice",
                kind="usage",
                description="Voice",
                amount=usd("12.50"),
                service="voice",
            ),
            Line(line_id="usage:sms", kind="usage", description="SMS", amount=usd("3.00"), service="sms"),
            Line(
                line_id="rule:tax",
                kind="adjustment",
                description="Tax",
                amount=usd("4.50"),
                service="voice",
            ),
        ],
        total=usd("40.00"),
        rule_set_id=None,
        rule_set_version=None,
    )


def test_a_voice_only_grant_pays_voice_usage_and_leaves_the_subscription_unpaid(customer: Customer) -> None:
    customer.grant("promo-voice", usd("50.00"), scope={"service": "voice"})

    customer.run(domain.finalize_invoice, voice_and_subscription("inv-1", customer.day))

    [applied] = customer.published(CreditApplied)
    assert (applied.source_id, applied.amount) == ("promo-voice", usd("12.50"))  # not the voice tax line
    assert customer.due("inv-1") == usd("27.50")
    assert customer.state.promotional_available("USD") == usd("37.50")


def test_a_usage_grant_pays_every_usage_line_in_line_order(customer: Customer) -> None:
    customer.grant("promo-usage", usd("14.00"), scope={"line_kind": "usage"})

    customer.run(domain.finalize_invoice, voice_and_subscription("inv-1", customer.day))

    [application] = customer.state.applications
    assert [(p.line_id, p.amount) for p in application.lines] == [
        ("usage:voice", usd("12.50")),
        ("usage:sms", usd("1.50")),
    ]


def test_two_scoped_grants_never_pay_one_line_twice(customer: Customer) -> None:
    customer.grant("promo-voice", usd("10.00"), scope={"service": "voice"}, priority=1)
    customer.grant("promo-usage", usd("50.00"), scope={"line_kind": "usage"}, priority=2)

    customer.run(domain.finalize_invoice, voice_and_subscription("inv-1", customer.day))

    assert [(a.source_id, a.amount) for a in customer.published(CreditApplied)] == [
        ("promo-voice", usd("10.00")),
        ("promo-usage", usd("5.50")),  # 2.50 left of voice, then 3.00 of SMS
    ]


def test_a_scoped_grant_pays_no_more_than_the_invoice_still_owes(customer: Customer) -> None:
    customer.run(domain.finalize_invoice, voice_and_subscription("inv-1", customer.day))
    customer.pay("p-1", usd("35.00"), "inv-1")

    customer.grant("promo-voice", usd("50.00"), scope={"service": "voice"})

    assert customer.due("inv-1") == usd("0.00")
    assert customer.state.promotional_available("USD") == usd("45.00")


def test_grants_burn_by_priority_then_nearest_expiry_then_oldest(customer: Customer) -> None:
    customer.grant("late-p2", usd("10.00"), priority=2, expires_at=dt.date(2026, 12, 31))
    customer.grant("never-p1", usd("10.00"), priority=1)
    customer.grant("soon-none", usd("10.00"), expires_at=dt.date(2026, 11, 5))
    customer.grant("soon-p2", usd("10.00"), priority=2, expires_at=dt.date(2026, 11, 30))
    customer.grant("old-p2", usd("10.00"), priority=2, expires_at=dt.date(2026, 11, 30))
    customer.grant("m-1", usd("10.00"), kind="manual")

    customer.finalize("inv-1", usd("55.00"))

    assert [(a.source_id, a.amount) for a in customer.published(CreditApplied)] == [
        ("never-p1", usd("10.00")),
        ("soon-p2", usd("10.00")),
        ("old-p2", usd("10.00")),
        ("late-p2", usd("10.00")),
        ("soon-none", usd("10.00")),  # no priority: spent as 50
        ("manual:m-1", usd("5.00")),  # credit balance after every promotional grant
    ]


def test_a_manual_entry_with_a_priority_or_scope_is_refused(customer: Customer) -> None:
    with pytest.raises(DomainError) as raised:
        customer.grant("m-1", usd("10.00"), kind="manual", priority=3)

    assert raised.value.code == "manual_entry_has_no_priority_or_scope"


def test_the_same_grant_with_another_priority_is_a_conflict(customer: Customer) -> None:
    customer.grant("promo-1", usd("10.00"), priority=3)

    with pytest.raises(DomainError) as raised:
        customer.grant("promo-1", usd("10.00"), priority=4)

    assert raised.value.code == "grant_conflict"


def test_a_granted_event_carries_priority_and_scope(customer: Customer) -> None:
    customer.grant("promo-voice", usd("10.00"), scope={"service": "voice"}, priority=5)

    [granted] = customer.published(CreditGranted)
    assert granted.priority == 5 and granted.scope is not None and granted.scope.service == "voice"


# -- ApplyCredits to an invoice of the customer's choosing ---------------------------------


def held_credit_beside_two_invoices(customer: Customer) -> None:
    customer.finalize("inv-1", usd("40.00"))
    customer.finalize("inv-2", usd("30.00"))
    customer.grant("m-1", usd("50.00"), kind="manual", apply_to_existing=False)


def test_apply_credits_pays_part_of_the_chosen_invoice(customer: Customer) -> None:
    held_credit_beside_two_invoices(customer)

    customer.apply_to("inv-2", usd("20.00"))

    [applied] = customer.published(CreditApplied)
    assert (applied.invoice_id, applied.source_id, applied.amount) == ("inv-2", "manual:m-1", usd("20.00"))
    assert (customer.due("inv-1"), customer.due("inv-2")) == (usd("40.00"), usd("10.00"))
    assert customer.state.balance_available("USD") == usd("30.00")


def test_apply_credits_without_an_amount_pays_as_much_of_the_chosen_invoice_as_it_can(
    customer: Customer,
) -> None:
    held_credit_beside_two_invoices(customer)

    customer.apply_to("inv-2")

    assert (customer.due("inv-1"), customer.due("inv-2")) == (usd("40.00"), usd("0.00"))
    assert customer.status("inv-2") == "paid"
    assert customer.state.balance_available("USD") == usd("20.00")  # held for inv-1 still


def test_apply_credits_to_an_invoice_spends_promotional_credit_first(customer: Customer) -> None:
    customer.finalize("inv-1", usd("40.00"))
    customer.grant("m-1", usd("50.00"), kind="manual", apply_to_existing=False)
    customer.grant("promo-1", usd("15.00"), apply_to_existing=False)

    customer.apply_to("inv-1", usd("25.00"))

    assert [(a.source_id, a.amount) for a in customer.published(CreditApplied)] == [
        ("promo-1", usd("15.00")),
        ("manual:m-1", usd("10.00")),
    ]


def test_apply_credits_to_an_invoice_keeps_a_grant_to_its_scope(customer: Customer) -> None:
    customer.run(domain.finalize_invoice, voice_and_subscription("inv-1", customer.day))
    customer.grant("promo-voice", usd("50.00"), scope={"service": "voice"}, apply_to_existing=False)
    assert customer.due("inv-1") == usd("40.00")  # held

    customer.apply_to("inv-1")

    [applied] = customer.published(CreditApplied)
    assert (applied.source_id, applied.amount) == ("promo-voice", usd("12.50"))
    with pytest.raises(DomainError) as raised:
        customer.apply_to("inv-1", usd("1.00"))  # only out-of-scope lines are left
    assert raised.value.code == "amount_over_available"


@pytest.mark.parametrize(
    ("invoice_id", "amount", "code", "named"),
    [
        ("inv-nope", None, "unknown_invoice", "inv-nope"),
        ("inv-paid", None, "invoice_paid", "inv-paid"),
        ("inv-void", None, "invoice_voided", "inv-void"),
        ("inv-1", Money.of("5.00", "EUR"), "currency_mismatch", "USD"),
        ("inv-1", usd("40.01"), "amount_over_due", "40.00"),
        ("inv-1", usd("30.01"), "amount_over_available", "30.00"),
        ("inv-1", usd("0.00"), "amount_not_positive", "0.00"),
        (None, usd("5.00"), "invoice_id_missing", "invoice_id"),
    ],
)
def test_apply_credits_to_an_invoice_it_cannot_pay_is_refused_with_the_reason(
    customer: Customer, invoice_id: str | None, amount: Money | None, code: str, named: str
) -> None:
    customer.finalize("inv-paid", usd("10.00"))
    customer.pay("p-1", usd("10.00"), "inv-paid")
    customer.finalize("inv-void", usd("10.00"))
    customer.void("inv-void")
    customer.finalize("inv-1", usd("40.00"))
    customer.grant("m-1", usd("30.00"), kind="manual", apply_to_existing=False)
    before = customer.state

    with pytest.raises(DomainError) as raised:
        customer.apply_to(invoice_id, amount)

    assert raised.value.code == code and named in raised.value.reason
    assert customer.state == before


def test_apply_credits_to_an_invoice_with_credit_only_in_another_currency_is_refused(
    customer: Customer,
) -> None:
    customer.finalize("inv-1", usd("40.00"))
    customer.grant("promo-eur", Money.of("30.00", "EUR"))

    with pytest.raises(DomainError) as raised:
        customer.apply_to("inv-1")

    assert raised.value.code == "currency_mismatch"
    assert "EUR" in raised.value.reason and "ChangeCreditCurrency" in raised.value.reason


def test_apply_credits_to_an_invoice_with_no_credit_at_all_is_refused(customer: Customer) -> None:
    customer.finalize("inv-1", usd("40.00"))

    with pytest.raises(DomainError) as raised:
        customer.apply_to("inv-1")

    assert raised.value.code == "no_credit_available"


def test_overpayment_becomes_credit_balance_and_pays_the_next_invoice(customer: Customer) -> None:
    customer.finalize("inv-1", usd("100.00"))
    customer.pay("pay-1", usd("150.00"), invoice_id="inv-1")
    assert customer.status("inv-1") == "paid"
    assert customer.state.balance_available("USD") == usd("50.00")

    customer.finalize("inv-2", usd("80.00"))

    [applied] = customer.published(CreditApplied)
    assert (applied.source_type, applied.source_id, applied.amount) == (
        "credit_balance",
        "payment:pay-1",
        usd("50.00"),
    )
    assert customer.due("inv-2") == usd("30.00")


def test_credit_balance_pays_the_oldest_invoice_first_and_never_more_than_due(customer: Customer) -> None:
    for invoice_id, total in (("inv-1", "40.00"), ("inv-2", "60.00"), ("inv-3", "30.00")):
        customer.finalize(invoice_id, usd(total))

    customer.grant("entry-1", usd("70.00"), kind="manual")

    assert [(a.invoice_id, a.amount) for a in customer.published(CreditApplied)] == [
        ("inv-1", usd("40.00")),
        ("inv-2", usd("30.00")),
    ]
    assert [customer.due(i) for i in ("inv-1", "inv-2", "inv-3")] == [usd("0"), usd("30.00"), usd("30.00")]


def test_promotional_credit_is_spent_before_credit_balance_soonest_expiry_first(customer: Customer) -> None:
    customer.grant("entry-1", usd("50.00"), kind="manual")
    customer.grant("promo-never", usd("50.00"))
    customer.grant("promo-late", usd("50.00"), expires_at=dt.date(2027, 6, 30))
    customer.grant("promo-soon", usd("10.00"), expires_at=dt.date(2026, 12, 31))

    customer.finalize("inv-1", usd("100.00"))

    assert [(a.source_id, a.amount) for a in customer.published(CreditApplied)] == [
        ("promo-soon", usd("10.00")),
        ("promo-late", usd("50.00")),
        ("promo-never", usd("40.00")),
    ]


def test_manual_entries_add_and_subtract_but_never_below_zero(customer: Customer) -> None:
    customer.grant("entry-1", usd("50.00"), kind="manual")
    customer.grant("entry-2", usd("-20.00"), kind="manual")
    assert customer.state.balance_available("USD") == usd("30.00")

    with pytest.raises(DomainError) as raised:
        customer.grant("entry-3", usd("-40.00"), kind="manual")

    assert raised.value.code == "insufficient_credit"
    assert customer.state.balance_available("USD") == usd("30.00")


def test_an_unused_entry_can_be_deleted(customer: Customer) -> None:
    customer.grant("promo-1", usd("30.00"))
    customer.grant("entry-1", usd("20.00"), kind="manual")

    customer.delete("promo-1")
    assert customer.published(CreditEntryDeleted) == [
        CreditEntryDeleted(grant_id="promo-1", amount=usd("30.00"))
    ]
    customer.delete("entry-1")

    assert customer.state.promotional_available("USD") == usd("0")
    assert customer.state.balance_available("USD") == usd("0")


@pytest.mark.parametrize("kind", ["promotional", "manual"])
def test_a_used_entry_cannot_be_deleted(customer: Customer, kind: str) -> None:
    customer.grant("entry-1", usd("30.00"), kind=kind)
    customer.finalize("inv-1", usd("10.00"))

    with pytest.raises(DomainError) as raised:
        customer.delete("entry-1")

    assert raised.value.code == "credit_entry_used"
    assert "20.00 USD of 30.00 USD" in raised.value.reason


def test_a_negative_entry_is_used_at_once_and_cannot_be_deleted(customer: Customer) -> None:
    customer.grant("entry-1", usd("30.00"), kind="manual")
    customer.grant("entry-2", usd("-10.00"), kind="manual")

    with pytest.raises(DomainError) as raised:
        customer.delete("entry-2")

    assert raised.value.code == "credit_entry_used"


def test_a_manual_entry_cannot_expire(customer: Customer) -> None:
    with pytest.raises(DomainError) as raised:
        customer.grant("entry-1", usd("30.00"), kind="manual", expires_at=dt.date(2027, 1, 1))

    assert raised.value.code == "manual_entry_cannot_expire"


# -- negative invoices (seed 004) ---------------------------------------------------------


def test_negative_invoice_becomes_credit_balance_and_pays_another_invoice(customer: Customer) -> None:
    customer.finalize("inv-1", usd("50.00"))

    customer.finalize("inv-2", usd("-20.00"))

    assert customer.published(NegativeInvoiceTransferred) == [
        NegativeInvoiceTransferred(invoice_id="inv-2", amount=usd("20.00"))
    ]
    [applied] = customer.published(CreditApplied)
    assert (applied.invoice_id, applied.source_id, applied.amount) == ("inv-1", "invoice:inv-2", usd("20.00"))
    negative = customer.state.invoice_balance("inv-2")
    assert (negative.credits_applied, negative.amount_due) == (usd("-20.00"), usd("0"))
    assert customer.status("inv-2") == "paid"
    assert customer.due("inv-1") == usd("30.00")


def test_voiding_a_negative_invoice_takes_its_credit_back(customer: Customer) -> None:
    customer.finalize("inv-1", usd("50.00"))
    customer.finalize("inv-2", usd("-20.00"))

    customer.void("inv-2")

    assert customer.due("inv-1") == usd("50.00")
    assert customer.state.balance_available("USD") == usd("0")


# -- void and regenerate (seed 000) -------------------------------------------------------


def test_void_returns_promotional_credit_to_its_grant_and_payments_to_credit_balance(
    customer: Customer,
) -> None:
    customer.finalize("inv-1", usd("100.00"))
    customer.grant("promo-1", usd("30.00"), expires_at=dt.date(2026, 12, 31))
    customer.pay("pay-1", usd("70.00"), invoice_id="inv-1")

    customer.void("inv-1")

    assert sorted(r.returned_to for r in customer.published(CreditReleased)) == [
        "credit_balance",
        "promotional",
    ]
    assert customer.status("inv-1") == "voided"
    assert customer.state.promotional_available("USD") == usd("30.00")
    assert customer.state.balance_available("USD") == usd("70.00")


def test_a_voided_invoice_is_owed_by_no_one(customer: Customer) -> None:
    """Found wiring the service: the event and the read model said a voided invoice still
    had its whole total due, while its ledger account `invoice:<id>` said zero."""
    customer.finalize("inv-1", usd("100.00"))
    customer.grant("promo-1", usd("30.00"))

    customer.void("inv-1")

    [balance] = customer.published(InvoiceBalanceChanged)
    assert (balance.status, balance.credits_applied, balance.payments_applied, balance.amount_due) == (
        "voided",
        usd("0"),
        usd("0"),
        usd("0"),
    )
    assert customer.due("inv-1") == usd("0")
    assert account_balances(customer.entries).get(("invoice:inv-1", "USD"), usd("0")) == usd("0")


def test_a_voided_negative_invoice_is_owed_by_no_one(customer: Customer) -> None:
    customer.finalize("inv-1", usd("-20.00"))

    customer.void("inv-1")

    [balance] = customer.published(InvoiceBalanceChanged)
    assert (balance.status, balance.total, balance.credits_applied, balance.amount_due) == (
        "voided",
        usd("-20.00"),
        usd("0"),
        usd("0"),
    )
    assert account_balances(customer.entries).get(("invoice:inv-1", "USD"), usd("0")) == usd("0")


def test_regenerated_invoice_is_paid_again_from_what_was_released(customer: Customer) -> None:
    customer.finalize("inv-1", usd("100.00"))
    customer.grant("promo-1", usd("30.00"))
    customer.pay("pay-1", usd("70.00"), invoice_id="inv-1")
    customer.void("inv-1")

    customer.finalize("inv-1-r", usd("100.00"), regenerated_from="inv-1")

    assert sorted((a.source_type, a.amount.amount) for a in customer.published(CreditApplied)) == [
        ("credit_balance", Decimal("70.00")),
        ("promotional", Decimal("30.00")),
    ]
    assert customer.status("inv-1-r") == "paid"


def test_void_after_the_grants_last_day_expires_the_released_credit(customer: Customer) -> None:
    customer.finalize("inv-1", usd("100.00"))
    customer.grant("promo-1", usd("30.00"), expires_at=dt.date(2026, 11, 10))
    customer.day = dt.date(2026, 11, 11)

    customer.void("inv-1")

    [released] = customer.published(CreditReleased)
    assert (released.returned_to, released.amount) == ("expired", usd("30.00"))
    grant = customer.state.grant("promo-1")
    assert grant is not None and (grant.remaining, grant.expired) == (usd("0"), usd("30.00"))


def test_released_credit_pays_other_open_invoices_first(customer: Customer) -> None:
    customer.finalize("inv-1", usd("30.00"))
    customer.grant("promo-1", usd("30.00"))
    customer.finalize("inv-2", usd("20.00"))

    customer.void("inv-1")

    assert [(a.invoice_id, a.amount) for a in customer.published(CreditApplied)] == [("inv-2", usd("20.00"))]
    assert customer.state.promotional_available("USD") == usd("10.00")


# -- deduction, refunds, expiry -----------------------------------------------------------


def test_deduction_reduces_the_named_grant(customer: Customer) -> None:
    customer.grant("promo-1", usd("30.00"))
    customer.grant("promo-2", usd("30.00"), expires_at=dt.date(2026, 12, 1))

    customer.deduct("ded-1", usd("10.00"), grant_id="promo-1")

    grant = customer.state.grant("promo-1")
    assert grant is not None and (grant.remaining, grant.deducted) == (usd("20.00"), usd("10.00"))


def test_deduction_without_a_grant_takes_the_soonest_expiring_first(customer: Customer) -> None:
    customer.grant("promo-1", usd("30.00"))
    customer.grant("promo-2", usd("30.00"), expires_at=dt.date(2026, 12, 1))

    customer.deduct("ded-1", usd("40.00"))

    remaining = [g.remaining for g in customer.state.grants]
    assert remaining == [usd("20.00"), usd("0")]


def test_deducting_more_than_is_available_is_refused(customer: Customer) -> None:
    customer.grant("promo-1", usd("30.00"))

    with pytest.raises(DomainError) as raised:
        customer.deduct("ded-1", usd("30.01"))

    assert raised.value.code == "insufficient_promotional_credit"


def test_refund_covered_by_the_credit_balance_is_paid_out(customer: Customer) -> None:
    customer.pay("pay-1", usd("50.00"))

    customer.refund("ref-1", usd("40.00"))

    assert customer.published(CreditRefunded) == [CreditRefunded(refund_id="ref-1", amount=usd("40.00"))]
    assert customer.state.balance_available("USD") == usd("10.00")


def test_refund_larger_than_the_credit_balance_is_declined(customer: Customer) -> None:
    customer.pay("pay-1", usd("50.00"))

    customer.refund("ref-1", usd("60.00"))

    [declined] = customer.published(RefundDeclined)
    assert "50.00 USD" in declined.reason
    assert customer.state.balance_available("USD") == usd("50.00")


def test_promotional_credit_is_not_a_refundable_balance(customer: Customer) -> None:
    customer.grant("promo-1", usd("50.00"))

    customer.refund("ref-1", usd("10.00"))

    assert len(customer.published(RefundDeclined)) == 1


def test_expiry_writes_off_what_is_left_after_the_last_day(customer: Customer) -> None:
    customer.grant("promo-1", usd("30.00"), expires_at=dt.date(2026, 11, 10))
    customer.finalize("inv-1", usd("10.00"))

    customer.expire(dt.date(2026, 11, 10))
    assert customer.published(CreditExpired) == []

    customer.expire(dt.date(2026, 11, 11))
    assert customer.published(CreditExpired) == [CreditExpired(grant_id="promo-1", amount=usd("20.00"))]
    assert customer.state.promotional_available("USD") == usd("0")


def test_credit_past_its_last_day_is_not_applied(customer: Customer) -> None:
    customer.grant("promo-1", usd("30.00"), expires_at=dt.date(2026, 11, 10))
    customer.day = dt.date(2026, 11, 11)

    customer.finalize("inv-1", usd("10.00"))

    assert customer.published(CreditApplied) == []


def test_a_late_backdated_grant_does_not_pay_an_invoice_issued_after_its_last_day(customer: Customer) -> None:
    customer.day = dt.date(2026, 12, 1)
    customer.finalize("inv-1", usd("40.00"))  # issued on 1 Dec

    customer.day = dt.date(2026, 11, 1)  # the grant's message, delayed: dated 30 days back
    customer.grant("promo-1", usd("25.00"), expires_at=dt.date(2026, 11, 21))

    assert customer.published(CreditApplied) == []
    assert customer.due("inv-1") == usd("40.00")
    assert customer.state.promotional_available("USD") == usd("25.00")


def test_a_grant_arriving_after_an_invoice_it_covers_pays_it(customer: Customer) -> None:
    customer.day = dt.date(2026, 11, 15)
    customer.finalize("inv-1", usd("40.00"))

    customer.day = dt.date(2026, 11, 20)
    customer.grant("promo-1", usd("25.00"), expires_at=dt.date(2026, 11, 21))

    assert customer.due("inv-1") == usd("15.00")


def test_an_invoice_issued_before_the_last_day_is_paid_even_when_handled_after_it(customer: Customer) -> None:
    customer.grant("promo-1", usd("25.00"), expires_at=dt.date(2026, 11, 21))

    customer.day = dt.date(2026, 11, 25)  # the invoice's message is handled late
    customer.run(domain.finalize_invoice, invoice_issued("inv-1", usd("40.00"), dt.date(2026, 11, 20)))

    assert customer.due("inv-1") == usd("15.00")


def invoice_issued(invoice_id: str, total: Money, issued_on: dt.date) -> InvoiceFinalized:
    return InvoiceFinalized(
        invoice_id=invoice_id,
        currency=total.currency,
        issued_on=issued_on,
        lines=[],
        total=total,
        rule_set_id=None,
        rule_set_version=None,
    )


def test_granting_credit_already_past_its_last_day_is_refused(customer: Customer) -> None:
    with pytest.raises(DomainError) as raised:
        customer.grant("promo-1", usd("30.00"), expires_at=START - dt.timedelta(days=1))

    assert raised.value.code == "grant_already_expired"


# -- payments: parking and reversal -------------------------------------------------------


def test_parked_payment_pays_its_invoice_after_credit_when_it_is_posted(customer: Customer) -> None:
    customer.grant("promo-1", usd("30.00"))
    customer.pay("pay-1", usd("50.00"), invoice_id="inv-1")
    assert [p.payment_id for p in customer.state.parked_payments] == ["pay-1"]

    customer.finalize("inv-1", usd("60.00"))

    assert [(a.source_type, a.amount) for a in customer.published(CreditApplied)] == [
        ("promotional", usd("30.00")),
        ("payment", usd("30.00")),
    ]
    assert customer.state.parked_payments == ()
    assert customer.due("inv-1") == usd("0")


def test_payment_and_invoice_split_the_same_in_either_order() -> None:
    """Found by the fault run (seed 11): the split once depended on which topic came first."""

    def split(payment_first: bool) -> tuple[Money, Money, object]:
        who = Customer()
        who.grant("lot-1", usd("56.63"), kind="manual")
        if payment_first:
            who.pay("pay-1", usd("21.79"), invoice_id="inv-1")
            who.finalize("inv-1", usd("45.75"))
        else:
            who.finalize("inv-1", usd("45.75"))
            who.pay("pay-1", usd("21.79"), invoice_id="inv-1")
        balance = who.state.invoice_balance("inv-1")
        return balance.credits_applied, balance.payments_applied, account_balances(who.entries)

    assert split(payment_first=True) == split(payment_first=False)


def test_payment_in_another_currency_than_its_invoice_becomes_credit_balance(customer: Customer) -> None:
    customer.pay("pay-1", Money.of("50.00", "EUR"), invoice_id="inv-1")

    customer.finalize("inv-1", usd("60.00"))

    assert customer.published(CreditApplied) == []
    assert customer.due("inv-1") == usd("60.00")
    assert customer.state.balance_available("EUR") == Money.of("50.00", "EUR")


def test_reversal_reopens_the_invoice_and_the_invoices_its_excess_paid(customer: Customer) -> None:
    customer.finalize("inv-1", usd("100.00"))
    customer.pay("pay-1", usd("150.00"), invoice_id="inv-1")
    customer.finalize("inv-2", usd("40.00"))
    assert customer.status("inv-2") == "paid"

    customer.reverse("pay-1", usd("150.00"))

    assert sorted(r.returned_to for r in customer.published(CreditReleased)) == [
        "credit_balance",
        "payment_reversed",
    ]
    assert [customer.due("inv-1"), customer.due("inv-2")] == [usd("100.00"), usd("40.00")]
    assert customer.state.balance_available("USD") == usd("0")


def test_reopened_invoices_are_paid_by_other_credit(customer: Customer) -> None:
    customer.finalize("inv-1", usd("100.00"))
    customer.pay("pay-1", usd("100.00"), invoice_id="inv-1")
    customer.grant("entry-1", usd("25.00"), kind="manual")

    customer.reverse("pay-1", usd("100.00"))

    assert customer.due("inv-1") == usd("75.00")


def test_reversal_of_a_refunded_overpayment_leaves_a_shortfall_that_later_credit_settles(
    customer: Customer,
) -> None:
    customer.pay("pay-1", usd("50.00"))
    customer.refund("ref-1", usd("30.00"))

    customer.reverse("pay-1", usd("50.00"))
    assert customer.state.balance_available("USD") == usd("-30.00")

    customer.grant("entry-1", usd("40.00"), kind="manual")
    customer.finalize("inv-1", usd("25.00"))

    assert customer.state.balance_available("USD") == usd("0")
    assert customer.due("inv-1") == usd("15.00")


def test_reversal_of_a_parked_payment_only_unparks_it(customer: Customer) -> None:
    customer.pay("pay-1", usd("50.00"), invoice_id="inv-1")
    customer.reverse("pay-1", usd("50.00"))

    customer.finalize("inv-1", usd("60.00"))

    assert customer.due("inv-1") == usd("60.00")


def test_reversing_an_unknown_payment_is_refused(customer: Customer) -> None:
    with pytest.raises(DomainError) as raised:
        customer.reverse("pay-404", usd("1.00"))

    assert raised.value.code == "unknown_payment"


# -- duplicates, replay, ledger -----------------------------------------------------------


def test_the_same_grant_twice_changes_nothing(customer: Customer) -> None:
    customer.grant("promo-1", usd("30.00"))
    before = customer.state

    outcome = customer.grant("promo-1", usd("30.00"))

    assert (outcome.state, outcome.events, outcome.entries) == (before, (), ())


def test_a_grant_id_reused_with_other_content_is_refused(customer: Customer) -> None:
    customer.grant("promo-1", usd("30.00"))

    with pytest.raises(DomainError) as raised:
        customer.grant("promo-1", usd("31.00"))

    assert raised.value.code == "grant_conflict"


def test_replaying_a_message_gives_the_same_ids_and_results() -> None:
    state = CustomerLedger("cus_1")
    invoice = InvoiceFinalized(
        invoice_id="inv-1",
        currency="USD",
        issued_on=START,
        lines=[],
        total=usd("10.00"),
        rule_set_id=None,
        rule_set_version=None,
    )
    state = domain.finalize_invoice(state, invoice, Cause("m-1", START)).state
    grant = GrantCredit(grant_id="promo-1", kind="promotional", amount=usd("5.00"), source="referral")

    first = domain.grant_credit(state, grant, Cause("m-2", START))
    second = domain.grant_credit(state, grant, Cause("m-2", START))

    assert first == second
    assert [e.entry_id for e in first.entries] == ["m-2/1", "m-2/3"]
    assert [e.application_id for e in first.events if isinstance(e, CreditApplied)] == ["m-2/2"]


def test_every_change_announces_the_invoice_balance_and_the_credit_balance(customer: Customer) -> None:
    customer.finalize("inv-1", usd("100.00"))

    customer.grant("promo-1", usd("30.00"))

    assert [type(e) for e in customer.events] == [
        CreditGranted,
        CreditApplied,
        InvoiceBalanceChanged,
        CreditBalanceChanged,
    ]
    assert customer.published(CreditBalanceChanged) == [
        CreditBalanceChanged(currency="USD", promotional_available=usd("0"), balance_available=usd("0"))
    ]


def test_ledger_balances_agree_with_the_state(customer: Customer) -> None:
    customer.finalize("inv-1", usd("100.00"))
    customer.grant("promo-1", usd("30.00"))
    customer.pay("pay-1", usd("120.00"), invoice_id="inv-1")
    customer.refund("ref-1", usd("10.00"))

    balances = account_balances(customer.entries)

    assert balances[("promo:promo-1", "USD")] == usd("0")
    assert balances[("invoice:inv-1", "USD")] == usd("0")
    assert balances[("balance:payment:pay-1", "USD")] == usd("40.00")
    assert balances[("refunds_paid", "USD")] == usd("10.00")
    assert balances[("payments_received", "USD")] == usd("-120.00")


def test_an_unbalanced_entry_cannot_be_made() -> None:
    with pytest.raises(UnbalancedEntry):
        LedgerEntry("e-1", "m-1", "broken", (Posting("a", usd("1.00")), Posting("b", usd("-0.99"))))


def test_an_entry_balances_per_currency() -> None:
    with pytest.raises(UnbalancedEntry):
        LedgerEntry(
            "e-1", "m-1", "broken", (Posting("a", usd("1.00")), Posting("b", Money.of("-1.00", "EUR")))
        )


# -- the caps on amounts and sums (issue 13, D4) --------------------------------------------

JUST_UNDER_AMOUNT = "999999999999999.99"
JUST_UNDER_TOTAL = "999999999999999999.99"


def on_the_wire(event: MessageData) -> MessageData:
    """The event as a consumer parses it: fails like the consumer's DLQ would."""
    return type(event).model_validate_json(event.model_dump_json())


def test_a_grant_and_a_payment_past_the_amount_cap_make_a_balance_consumers_accept(
    customer: Customer,
) -> None:
    customer.grant("m-big", usd(JUST_UNDER_AMOUNT), kind="manual")

    customer.pay("pay-big", usd(JUST_UNDER_AMOUNT))

    [changed] = customer.published(CreditBalanceChanged)
    assert changed.balance_available == usd("1999999999999999.98")
    assert on_the_wire(changed) == changed


def a_grant(grant_id: str, seq: int) -> PromotionalGrant:
    amount, zero = usd(JUST_UNDER_AMOUNT), usd("0")
    return PromotionalGrant(grant_id, amount, amount, amount, zero, zero, None, seq, "promo_code")


@pytest.mark.parametrize("kind", ["promotional", "manual"])
def test_a_grant_that_would_take_a_balance_to_the_total_cap_is_refused_naming_the_amount(
    customer: Customer, kind: str
) -> None:
    if kind == "promotional":  # 1,000 grants just under the amount cap: 10.00 under the total cap
        customer.state = replace(customer.state, grants=tuple(a_grant(f"g-{n}", n) for n in range(1000)))
    else:
        customer.finalize("inv-neg", usd("-999999999999999999.99"))
    before = customer.state

    with pytest.raises(DomainError) as raised:
        customer.grant("g-over", usd("10.00"), kind=kind)

    assert raised.value.code == "total_over_limit"
    assert "amount of grant g-over" in raised.value.reason
    assert "1,000,000,000,000,000,000" in raised.value.reason
    assert customer.state is before


def test_a_negative_invoice_that_would_take_the_credit_balance_past_the_total_cap_is_refused(
    customer: Customer,
) -> None:
    customer.finalize("inv-neg-1", usd(f"-{JUST_UNDER_TOTAL}"))

    with pytest.raises(DomainError) as raised:
        customer.finalize("inv-neg-2", usd("-0.02"))

    assert raised.value.code == "total_over_limit"
    assert "credit balance in USD" in raised.value.reason
    assert customer.state.invoice("inv-neg-2") is None


def test_a_payment_that_would_take_the_credit_balance_past_the_total_cap_is_refused(
    customer: Customer,
) -> None:
    customer.finalize("inv-neg", usd(f"-{JUST_UNDER_TOTAL}"))

    with pytest.raises(DomainError) as raised:
        customer.pay("pay-1", usd("0.01"))

    assert raised.value.code == "total_over_limit"
    assert customer.state.payment("pay-1") is None


def test_a_payment_that_pays_an_invoice_does_not_count_against_the_cap(customer: Customer) -> None:
    customer.finalize("inv-neg", usd(f"-{JUST_UNDER_TOTAL}"))
    customer.finalize("inv-due", usd(JUST_UNDER_AMOUNT))  # paid from the credit balance
    customer.finalize("inv-due-2", usd("5.00"))  # the credit balance keeps paying what is due

    customer.pay("pay-1", usd("0.02"), "inv-due-2")

    assert customer.state.balance_available("USD") < usd(JUST_UNDER_TOTAL)
    assert customer.status("inv-due") == "paid"


def test_a_currency_change_past_the_amount_cap_is_refused_naming_the_rate(customer: Customer) -> None:
    customer.grant("promo-1", Money.of("1000000000000", "JPY"))

    with pytest.raises(DomainError) as raised:
        customer.change_currency("promo-1", "KWD", "1000")

    assert raised.value.code == "amount_over_limit"
    assert "rate 1000" in raised.value.reason


def test_a_currency_change_with_an_absurd_product_is_refused_not_raised(customer: Customer) -> None:
    customer.grant("promo-1", usd(JUST_UNDER_AMOUNT))

    with pytest.raises(DomainError) as raised:
        customer.change_currency("promo-1", "BHD", "999999999999999")

    assert raised.value.code == "amount_over_limit"


@pytest.mark.parametrize(("currency", "amount"), [("JPY", "999999999999999"), ("KWD", "999999999999999.999")])
def test_the_largest_single_amount_in_any_minor_unit_is_granted_whole(
    customer: Customer, currency: str, amount: str
) -> None:
    customer.grant("promo-1", Money.of(amount, currency))

    [granted] = customer.published(CreditGranted)
    assert granted.amount == Money.of(amount, currency)
    assert on_the_wire(granted) == granted


def test_an_invoice_total_that_rounds_up_to_the_total_cap_is_refused(customer: Customer) -> None:
    """Found by the property test: 999,999,999,999,999,999.999 USD is valid on the wire but
    rounds to 10^18, which no InvoiceBalanceChanged may carry."""
    with pytest.raises(DomainError) as raised:
        customer.finalize("inv-huge", usd("999999999999999999.999"))

    assert raised.value.code == "total_over_limit"
    assert "invoice inv-huge" in raised.value.reason
