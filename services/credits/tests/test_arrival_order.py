"""Expiry is judged at the invoice's issue date, so where a grant's message falls among the
invoices' messages does not change which grant pays which invoice.

A run is a list of promotional grants (each with a last usable day and the day its message
was made, on or before that day) and a list of invoices (each with its issue date). The
grants come in the order they are spent (priority, then nearest last day, then oldest),
the invoices in their own order; only how the two lists are interleaved varies. Every
interleaving gives the same applications as the one with every grant first.

(When grants come in another order than they are spent, a grant that arrives first pays
first: that is arrival order among grants, not expiry, and is not claimed here.)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from credits import domain
from credits.domain import Cause, CustomerLedger
from tally_contracts import Money
from tally_contracts.credits import GrantCredit
from tally_contracts.invoicing import InvoiceFinalized

START = dt.date(2026, 11, 1)


@dataclass(frozen=True)
class Grant:
    grant_id: str
    amount: Decimal
    priority: int | None
    last_day: dt.date | None
    made_on: dt.date

    def burn_order(self) -> tuple[int, bool, dt.date]:
        return (
            self.priority if self.priority is not None else 50,
            self.last_day is None,
            self.last_day or dt.date.max,
        )


@dataclass(frozen=True)
class Invoice:
    invoice_id: str
    total: Decimal
    issued_on: dt.date


cents = st.integers(min_value=100, max_value=5_000).map(lambda c: Decimal(c).scaleb(-2))
days = st.integers(min_value=0, max_value=30).map(lambda n: START + dt.timedelta(n))


@st.composite
def a_grant(draw: st.DrawFn, n: int) -> Grant:
    last_day = draw(st.none() | days)
    made_on = draw(days if last_day is None else st.dates(START, last_day))
    priority = draw(st.none() | st.integers(min_value=1, max_value=3))
    return Grant(f"g-{n}", draw(cents), priority, last_day, made_on)


@st.composite
def runs(draw: st.DrawFn) -> tuple[list[Grant], list[Invoice], list[bool]]:
    grant_count = draw(st.integers(min_value=1, max_value=4))
    grants = sorted((draw(a_grant(n)) for n in range(grant_count)), key=Grant.burn_order)
    invoice_count = draw(st.integers(min_value=1, max_value=5))
    invoices = [Invoice(f"inv-{n}", draw(cents), draw(days)) for n in range(invoice_count)]
    interleaving = draw(st.permutations([True] * grant_count + [False] * invoice_count))
    return grants, invoices, interleaving


def grant_message(grant: Grant) -> GrantCredit:
    return GrantCredit(
        grant_id=grant.grant_id,
        kind="promotional",
        amount=Money.of(grant.amount, "USD"),
        source="promo_code",
        expires_at=grant.last_day,
        priority=grant.priority,
    )


def invoice_message(invoice: Invoice) -> InvoiceFinalized:
    return InvoiceFinalized(
        invoice_id=invoice.invoice_id,
        currency="USD",
        issued_on=invoice.issued_on,
        lines=[],
        total=Money.of(invoice.total, "USD"),
        rule_set_id=None,
        rule_set_version=None,
    )


def who_paid_what(grants: list[Grant], invoices: list[Invoice], interleaving: list[bool]) -> dict[Any, Money]:
    """Each message is handled on its own date: a grant's on the day it was made, an
    invoice's on its issue date. The answer: amount applied per (grant, invoice)."""
    state = CustomerLedger("cus_1")
    next_grant, next_invoice = iter(grants), iter(invoices)
    for n, is_grant in enumerate(interleaving):
        if is_grant:
            grant = next(next_grant)
            outcome = domain.grant_credit(state, grant_message(grant), Cause(f"m{n}", grant.made_on))
        else:
            invoice = next(next_invoice)
            cause = Cause(f"m{n}", invoice.issued_on)
            outcome = domain.finalize_invoice(state, invoice_message(invoice), cause)
        state = outcome.state
    paid: dict[Any, Money] = {}
    for application in state.applications:
        key = (application.source_id, application.invoice_id)
        paid[key] = paid.get(key, Money.zero("USD")) + application.amount
    return paid


@settings(max_examples=400, deadline=None)
@given(runs())
def test_which_grant_pays_which_invoice_does_not_depend_on_arrival_order(
    run: tuple[list[Grant], list[Invoice], list[bool]],
) -> None:
    grants, invoices, interleaving = run
    grants_first = [True] * len(grants) + [False] * len(invoices)

    assert who_paid_what(grants, invoices, interleaving) == who_paid_what(grants, invoices, grants_first)


@settings(max_examples=400, deadline=None)
@given(runs())
def test_a_grant_pays_only_invoices_issued_on_or_before_its_last_day(
    run: tuple[list[Grant], list[Invoice], list[bool]],
) -> None:
    grants, invoices, interleaving = run
    last_day = {g.grant_id: g.last_day for g in grants}
    issued_on = {i.invoice_id: i.issued_on for i in invoices}

    for grant_id, invoice_id in who_paid_what(grants, invoices, interleaving):
        day = last_day[grant_id]
        assert day is None or issued_on[invoice_id] <= day
