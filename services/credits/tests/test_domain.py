"""The credits domain, one behaviour per test: the failures billing teams report (seeds
000, 001, 002, 004) and the rules decided in `credits.domain`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from credits import domain
from credits.domain import Cause, CreditsError, CustomerLedger, Outcome
from credits.ledger import LedgerEntry, Posting, UnbalancedEntry, account_balances
from tally_contracts import MessageData, Money
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
    ) -> Outcome:
        command = GrantCredit.model_validate(
            {
                "grant_id": grant_id,
                "kind": kind,
                "amount": amount,
                "source": "promo_code" if kind == "promotional" else "manual",
                "expires_at": expires_at,
                "apply_to_existing": apply_to_existing,
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

    with pytest.raises(CreditsError) as raised:
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

    with pytest.raises(CreditsError) as raised:
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

    with pytest.raises(CreditsError) as raised:
        customer.delete("entry-1")

    assert raised.value.code == "credit_entry_used"
    assert "20.00 USD of 30.00 USD" in raised.value.reason


def test_a_negative_entry_is_used_at_once_and_cannot_be_deleted(customer: Customer) -> None:
    customer.grant("entry-1", usd("30.00"), kind="manual")
    customer.grant("entry-2", usd("-10.00"), kind="manual")

    with pytest.raises(CreditsError) as raised:
        customer.delete("entry-2")

    assert raised.value.code == "credit_entry_used"


def test_a_manual_entry_cannot_expire(customer: Customer) -> None:
    with pytest.raises(CreditsError) as raised:
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

    with pytest.raises(CreditsError) as raised:
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


def test_granting_credit_already_past_its_last_day_is_refused(customer: Customer) -> None:
    with pytest.raises(CreditsError) as raised:
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
    with pytest.raises(CreditsError) as raised:
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

    with pytest.raises(CreditsError) as raised:
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
