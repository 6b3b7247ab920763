"""Scoped grants over random invoices (lines of every kind and a few services), payments and
grants with and without scope and priority, in any order.

After every message: a scoped grant pays only lines in its scope, each line at most its
amount, its parts adding up to what it applied; nothing pays more than an invoice's
total; and no grant with credit left sits beside an invoice that still owes something
on a line in its scope.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from credits import domain
from credits.customer import CustomerLedger, InvoiceLine, total_of
from credits.domain import Cause
from tally_contracts import DomainError, Line, Money
from tally_contracts.credits import CreditScope, GrantCredit
from tally_contracts.invoicing import InvoiceFinalized
from tally_contracts.payments import PaymentRecorded

DAY = dt.date(2026, 11, 3)
cents = st.integers(min_value=1, max_value=3_000).map(lambda c: Decimal(c).scaleb(-2))
kinds = st.sampled_from(["usage", "subscription", "one_time", "adjustment"])
services = st.sampled_from([None, "voice", "sms"])


def usd(amount: Decimal) -> Money:
    return Money.of(amount, "USD")


@st.composite
def invoices(draw: st.DrawFn, n: int) -> InvoiceFinalized:
    lines = [
        Line(
            line_id=f"l{k}",
            kind=draw(kinds),
            description="x",
            amount=usd(draw(cents) * draw(st.sampled_from([1, 1, 1, -1]))),
            service=draw(services),
        )
        for k in range(draw(st.integers(min_value=1, max_value=4)))
    ]
    total = total_of((line.amount for line in lines), "USD")
    return InvoiceFinalized(
        invoice_id=f"inv-{n}",
        currency="USD",
        issued_on=DAY,
        lines=lines,
        total=total,
        rule_set_id=None,
        rule_set_version=None,
    )


@st.composite
def grants(draw: st.DrawFn, n: int) -> GrantCredit:
    scope = draw(
        st.none()
        | st.builds(
            CreditScope,
            line_kind=st.sampled_from(["usage", "subscription", "one_time"]),
            service=services,
        )
        | st.builds(CreditScope, service=st.sampled_from(["voice", "sms"]))
    )
    return GrantCredit(
        grant_id=f"g-{n}",
        kind="promotional",
        amount=usd(draw(cents)),
        source="other",
        priority=draw(st.none() | st.integers(min_value=1, max_value=3)),
        scope=scope,
    )


@st.composite
def payments(draw: st.DrawFn, n: int) -> PaymentRecorded:
    return PaymentRecorded(
        payment_id=f"p-{n}",
        invoice_id=f"inv-{draw(st.integers(min_value=0, max_value=3))}",
        amount=usd(draw(cents)),
        method="cash",
        received_on=DAY,
    )


@st.composite
def messages(draw: st.DrawFn) -> list[Any]:
    count = draw(st.integers(min_value=2, max_value=14))
    return [draw(st.one_of(invoices(n), grants(n), payments(n))) for n in range(count)]


def covered_line(invoice_lines: tuple[InvoiceLine, ...], line_id: str) -> InvoiceLine:
    return next(line for line in invoice_lines if line.line_id == line_id)


def check_scopes(state: CustomerLedger) -> None:
    grants_by_id = {g.grant_id: g for g in state.grants}
    for invoice in state.invoices:
        active = [
            a for a in state.applications if a.invoice_id == invoice.invoice_id and a.status == "active"
        ]
        assert total_of((a.amount for a in active), "USD") <= invoice.total.max(Money.zero("USD"))
        paid_per_line: dict[str, Money] = {}
        for application in active:
            grant = (
                grants_by_id.get(application.source_id) if application.source_type == "promotional" else None
            )
            scope = grant.scope if grant is not None else None
            if scope is None:
                assert application.lines == ()
                continue
            assert total_of((p.amount for p in application.lines), "USD") == application.amount
            for part in application.lines:
                line = covered_line(invoice.lines, part.line_id)
                assert scope.covers(line) and line.kind != "adjustment", (scope, line)
                paid_per_line[part.line_id] = paid_per_line.get(part.line_id, Money.zero("USD")) + part.amount
        for line_id, paid in paid_per_line.items():
            assert paid <= covered_line(invoice.lines, line_id).amount
        due = state.invoice_balance(invoice.invoice_id).amount_due
        if not due.is_positive:
            continue
        for grant in state.grants:
            if not grant.remaining.is_positive:
                continue
            assert grant.scope is not None, (grant, invoice)  # an unscoped grant would have paid
            assert not any(
                _room(line, paid_per_line) and grant.scope.covers(line) for line in invoice.lines
            ), (grant, invoice)


def _room(line: InvoiceLine, paid: dict[str, Money]) -> bool:
    return (line.amount - paid.get(line.line_id, Money.zero("USD"))).is_positive


OPERATIONS: dict[str, Any] = {
    "InvoiceFinalized": domain.finalize_invoice,
    "GrantCredit": domain.grant_credit,
    "PaymentRecorded": domain.record_payment,
}


@settings(max_examples=300, deadline=None)
@given(messages())
def test_scoped_grants_pay_only_their_lines_and_never_sit_beside_one_they_may_pay(
    message_list: list[Any],
) -> None:
    state = CustomerLedger("cus_1")
    for n, message in enumerate(message_list):
        operation: Any = OPERATIONS[type(message).__name__]
        try:
            state = operation(state, message, Cause(f"m{n}", DAY)).state
        except DomainError as error:
            assert error.code and error.reason
            continue
        check_scopes(state)
