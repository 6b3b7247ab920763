"""Which invoice a usage goes on (the late-usage rule), pure: decided from a customer's open
period invoices only, it is the answer the rule gives over the customer's whole history."""

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoicing.invoices import InvoiceState
from invoicing.periods import add_months, next_period, period_of
from invoicing.usage_placement import CustomerPeriods, UsageTarget, usage_target
from tally_contracts import DomainError

BILLED = ("closed", "posted", "paid", "voided")


def invoice(start: dt.date, billing_day: int, status: str) -> InvoiceState:
    start, end = period_of(start, billing_day)
    return InvoiceState(f"inv-{start.isoformat()}", "c", "USD", status, start, end)


def rule_over_history(
    history: list[InvoiceState], start: dt.date, end: dt.date, billing_day: int
) -> UsageTarget:
    """The late-usage rule read straight off every period invoice the customer ever had
    (oldest first): what invoicing did before it loaded open items only."""
    exact = next((i for i in history if i.period_start == start), None)
    billed_later = any(i.status != "pending" and i.period_start > start for i in history)
    if exact is not None and exact.status == "pending":
        return UsageTarget(exact.period_start, exact.period_end, False, exact.invoice_id)
    if exact is None and not billed_later:
        return UsageTarget(start, end, False)
    pending = [i for i in history if i.status == "pending"]
    if pending:
        return UsageTarget(pending[-1].period_start, pending[-1].period_end, True, pending[-1].invoice_id)
    newest = max(history, key=lambda i: i.period_start)
    following_start, following_end = next_period(newest.period_end, billing_day)
    return UsageTarget(following_start, following_end, True)


def open_items(history: list[InvoiceState], named: dt.date) -> CustomerPeriods:
    """What the store loads: pending invoices, the newest billed one, the named period's."""
    billed = [i for i in history if i.status != "pending"]
    return CustomerPeriods(
        pending=tuple(i for i in history if i.status == "pending"),
        newest_billed=max(billed, key=lambda i: i.period_start, default=None),
        named={i.period_start: i for i in history if i.period_start == named},
    )


BASE = dt.date(2026, 1, 1)
histories = st.dictionaries(
    st.integers(min_value=0, max_value=40), st.sampled_from(("pending", *BILLED)), max_size=25
)


@given(
    billing_day=st.integers(min_value=1, max_value=28),
    statuses=histories,
    usage_month=st.integers(min_value=-3, max_value=44),
    usage_day=st.integers(min_value=0, max_value=27),
)
def test_open_items_place_usage_as_the_whole_history_would(
    billing_day: int, statuses: dict[int, str], usage_month: int, usage_day: int
) -> None:
    history = [
        invoice(add_months(BASE.replace(day=billing_day), month), billing_day, status)
        for month, status in sorted(statuses.items())
    ]
    day = add_months(BASE.replace(day=billing_day), usage_month) + dt.timedelta(days=usage_day)
    start, end = period_of(day, billing_day)

    target = usage_target(open_items(history, start), start, end, billing_day)

    assert target == rule_over_history(history, start, end, billing_day)


@given(
    billing_day=st.integers(min_value=1, max_value=28),
    statuses=histories,
    usage_month=st.integers(min_value=-3, max_value=44),
)
def test_usage_never_goes_on_a_billed_invoice_and_is_late_only_off_its_own_period(
    billing_day: int, statuses: dict[int, str], usage_month: int
) -> None:
    history = [
        invoice(add_months(BASE.replace(day=billing_day), month), billing_day, status)
        for month, status in sorted(statuses.items())
    ]
    start, end = period_of(add_months(BASE.replace(day=billing_day), usage_month), billing_day)
    periods = open_items(history, start)

    target = usage_target(periods, start, end, billing_day)

    pending_ids = {i.invoice_id for i in periods.pending}
    assert target.invoice_id is None or target.invoice_id in pending_ids
    if target.invoice_id is None:  # opened: a period with no invoice yet
        assert all(i.period_start != target.start for i in history)
    assert target.late == (target.start != start)


def test_usage_of_a_billed_period_goes_on_the_newest_pending_invoice_as_late() -> None:
    october = invoice(dt.date(2026, 10, 1), 1, "posted")
    november = invoice(dt.date(2026, 11, 1), 1, "pending")
    december = invoice(dt.date(2026, 12, 1), 1, "pending")
    periods = CustomerPeriods((november, december), october, {october.period_start: october})

    target = usage_target(periods, october.period_start, october.period_end, 1)

    assert target == UsageTarget(december.period_start, december.period_end, True, december.invoice_id)


def test_usage_of_a_billed_period_with_nothing_pending_opens_the_period_after_the_newest() -> None:
    october = invoice(dt.date(2026, 10, 1), 1, "posted")
    november = invoice(dt.date(2026, 11, 1), 1, "closed")
    periods = CustomerPeriods((), november, {october.period_start: october})

    target = usage_target(periods, october.period_start, october.period_end, 1)

    assert target == UsageTarget(dt.date(2026, 12, 1), dt.date(2026, 12, 31), True)


def test_usage_of_an_old_period_never_invoiced_is_late_once_a_later_period_is_billed() -> None:
    november = invoice(dt.date(2026, 11, 1), 1, "posted")
    periods = CustomerPeriods((), november, {})

    target = usage_target(periods, dt.date(2026, 9, 1), dt.date(2026, 9, 30), 1)

    assert target == UsageTarget(dt.date(2026, 12, 1), dt.date(2026, 12, 31), True)


def test_an_invoice_opened_in_a_batch_takes_later_late_usage_of_the_same_batch() -> None:
    october = invoice(dt.date(2026, 10, 1), 1, "posted")
    periods = CustomerPeriods((), october, {october.period_start: october})
    first = usage_target(periods, dt.date(2026, 12, 1), dt.date(2026, 12, 31), 1)
    opened = periods.with_opened(invoice(first.start, 1, "pending"))

    late = usage_target(opened, october.period_start, october.period_end, 1)

    assert first == UsageTarget(dt.date(2026, 12, 1), dt.date(2026, 12, 31), False)
    assert late == UsageTarget(dt.date(2026, 12, 1), dt.date(2026, 12, 31), True, "inv-2026-12-01")


def test_a_next_period_past_the_calendar_is_refused_with_its_code() -> None:
    last = InvoiceState("inv-last", "c", "USD", "posted", dt.date(9999, 12, 1), dt.date.max)
    periods = CustomerPeriods((), last, {last.period_start: last})

    with pytest.raises(DomainError) as error:
        usage_target(periods, last.period_start, last.period_end, 1)

    assert error.value.code == "date_out_of_range"
