"""The snapshot of a customer's ledger as migration 0001 stored it (`credits.snapshot`),
which the upgrade to rows (0002_open_items) reads: pure, no database, so `make test-fast`
runs it."""

import contextlib
import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from credits import domain
from credits.domain import Cause, CustomerLedger, Outcome
from credits.snapshot import dump_state, load_state
from tally_contracts import DomainError, Line, Money
from tally_contracts.credits import ApplyCredits, ChangeCreditCurrency, ExpireCredits, GrantCredit
from tally_contracts.invoicing import InvoiceFinalized, InvoiceVoided
from tally_contracts.payments import (
    PaymentRecorded,
    PaymentReversed,
    PromotionalCreditsDeducted,
    RefundRequested,
)

NOV = dt.datetime(2026, 11, 3, 9, 0, tzinfo=dt.UTC)


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


def promo(grant_id: str, amount: Money, **extra: Any) -> GrantCredit:
    return GrantCredit(grant_id=grant_id, kind="promotional", amount=amount, source="promo_code", **extra)


def manual(grant_id: str, amount: Money, **extra: Any) -> GrantCredit:
    return GrantCredit(grant_id=grant_id, kind="manual", amount=amount, source="manual", **extra)


def finalized(invoice_id: str, total: Money, regenerated_from: str | None = None) -> InvoiceFinalized:
    return InvoiceFinalized(
        invoice_id=invoice_id,
        currency=total.currency,
        issued_on=NOV.date(),
        lines=[],
        total=total,
        rule_set_id=None,
        rule_set_version=None,
        regenerated_from=regenerated_from,
    )


def paid(payment_id: str, amount: Money, invoice_id: str | None = None) -> PaymentRecorded:
    return PaymentRecorded(
        payment_id=payment_id, invoice_id=invoice_id, amount=amount, method="check", received_on=NOV.date()
    )


def test_the_snapshot_keeps_every_record_and_every_digit() -> None:
    """dump → load gives the same ledger, down to each Decimal's exponent ("5.00" stays
    "5.00"), through grants, lots, parked and reversed payments, voids and shortfalls."""
    jpy, bhd, eur = Money.of("1000", "JPY"), Money.of("12.345", "BHD"), Money.of("1.50", "EUR")
    steps: list[tuple[Callable[[CustomerLedger, Any, Cause], Outcome], Any]] = [
        (domain.grant_credit, promo("g-usd", usd("30.005"), expires_at=dt.date(2026, 12, 31))),
        (domain.grant_credit, promo("g-jpy", jpy)),
        (domain.grant_credit, manual("m-bhd", bhd)),
        (domain.grant_credit, manual("m-held", usd("7.10"), apply_to_existing=False)),
        (domain.record_payment, paid("p-parked", usd("3.333"), "inv-later")),
        (domain.finalize_invoice, finalized("inv-1", usd("45.67"))),
        (domain.finalize_invoice, finalized("inv-neg", Money.of("-2.000", "BHD"))),
        (domain.record_payment, paid("p-1", usd("100"))),
        (domain.refund, RefundRequested(refund_id="r-1", amount=usd("60.00"), method="cash")),
        (domain.reverse_payment, PaymentReversed(payment_id="p-1", amount=usd("100"), reason="bounced")),
        (domain.finalize_invoice, finalized("inv-later", usd("10"))),
        (
            domain.change_credit_currency,
            ChangeCreditCurrency(grant_id="g-jpy", currency="EUR", rate=Decimal("0.0061")),
        ),
        (domain.deduct_promotional, PromotionalCreditsDeducted(deduction_id="d", amount=eur, reason="x")),
        (domain.void_invoice, InvoiceVoided(invoice_id="inv-1", reason="wrong")),
        (domain.finalize_invoice, finalized("inv-1-r", usd("40.00"), regenerated_from="inv-1")),
        (domain.apply_credits, ApplyCredits()),
        (domain.expire_credits, ExpireCredits(as_of=dt.date(2027, 1, 5))),
        (domain.refund, RefundRequested(refund_id="r-2", amount=usd("1000"), method="cash")),
        (domain.finalize_invoice, finalized("inv-sum", Money.of("-999999999999999999.999", "KWD"))),
        (domain.grant_credit, promo("g-kwd", Money.of("999999999999999.999", "KWD"))),
    ]
    state = CustomerLedger("cus-snapshot")
    for n, (operation, data) in enumerate(steps):
        with contextlib.suppress(DomainError):  # a refused step changes nothing
            state = operation(state, data, Cause(f"m{n}", NOV.date())).state
        restored = load_state(dump_state(state))
        assert repr(restored) == repr(state)
    assert state.payments and state.lots and state.applications and state.refunds and state.deductions


def test_a_snapshot_from_before_priority_scope_and_lines_still_loads() -> None:
    """Snapshots stored before issue 18 have no grant priority or scope, no invoice lines and
    no application lines: they load with none, which is what they meant."""
    state = domain.grant_credit(
        CustomerLedger("cus-old"), promo("g-1", usd("5.00")), Cause("m1", NOV.date())
    ).state
    state = domain.finalize_invoice(state, finalized("inv-1", usd("3.00")), Cause("m2", NOV.date())).state
    stored = json.loads(dump_state(state))
    for grant in stored["grants"]:
        del grant["priority"], grant["scope"]
    for invoice in stored["invoices"]:
        del invoice["lines"]
    for application in stored["applications"]:
        del application["lines"]

    restored = load_state(json.dumps(stored))

    assert restored == state


def test_the_snapshot_keeps_scopes_priorities_and_line_parts() -> None:
    voice = GrantCredit.model_validate(
        {
            "grant_id": "g-voice",
            "kind": "promotional",
            "amount": {"amount": "5.00", "currency": "USD"},
            "source": "other",
            "priority": 2,
            "scope": {"service": "voice"},
        }
    )
    lines = [Line(line_id="v", kind="usage", description="Voice", amount=usd("3.00"), service="voice")]
    invoice = finalized("inv-1", usd("3.00")).model_copy(update={"lines": lines})
    state = domain.grant_credit(CustomerLedger("cus-s"), voice, Cause("m1", NOV.date())).state
    state = domain.finalize_invoice(state, invoice, Cause("m2", NOV.date())).state
    assert state.applications[0].lines

    assert repr(load_state(dump_state(state))) == repr(state)
