"""The decisions handlers call (accounts, closing, posting), pure: a state and a message in,
what to save out, or DomainError with the code a CommandRejected carries."""

import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoicing import accounts, closing, posting
from invoicing.accounts import Customer, OpenInvoices
from invoicing.closing import PendingCharge
from invoicing.invoices import InvoiceState, regenerated_invoice_id
from invoicing.rating import UsageDelta
from invoicing.subscriptions import Subscription
from tally_contracts import DomainError, Line, Money
from tally_contracts.credits import InvoiceBalanceChanged
from tally_contracts.invoicing import AddCharge, CancelSubscription, CreateSubscription, UpsertCustomer
from tally_contracts.money import MAX_ABS_TOTAL, within_total_limit
from tally_contracts.rules import InvoiceAdjusted

CUSTOMER = Customer("c1", "USD", None, 1, None)
NOV = (dt.date(2026, 11, 1), dt.date(2026, 11, 30))
STATUSES = ("pending", "closed", "posted", "paid", "voided")


def pending(invoice_id: str = "inv-nov", status: str = "pending") -> InvoiceState:
    return InvoiceState(invoice_id, "c1", "USD", status, *NOV)


def usd(amount: str | Decimal) -> Money:
    return Money.of(str(amount), "USD")


def adjustment(amount: str, currency: str = "USD") -> Line:
    return Line(
        line_id=f"adj-{amount}", kind="adjustment", description="rule", amount=Money.of(amount, currency)
    )


cents = st.decimals(min_value=-(10**6), max_value=10**6, places=2, allow_nan=False, allow_infinity=False)
raw_amounts = st.decimals(min_value=0, max_value=10**6, places=6, allow_nan=False, allow_infinity=False)


# -- accounts ------------------------------------------------------------------------


@given(
    current=st.sampled_from(["USD", "EUR"]),
    wanted=st.sampled_from(["USD", "EUR"]),
    open_count=st.integers(min_value=0, max_value=3),
)
def test_a_customer_changes_currency_only_with_nothing_pending_or_closed(
    current: str, wanted: str, open_count: int
) -> None:
    existing = Customer("c1", current, None, 1, None)
    cmd = UpsertCustomer(currency=wanted, billing_day=5)

    try:
        saved = accounts.upsert_customer(existing, open_count, "c1", cmd)
    except DomainError as error:
        assert error.code == "currency_change_with_open_invoices"
        assert current != wanted and open_count > 0
    else:
        assert current == wanted or open_count == 0
        assert (saved.currency, saved.billing_day) == (wanted, 5)


@given(charged=cents, usage=raw_amounts, charge=cents)
def test_a_pending_charge_is_refused_exactly_when_an_open_invoice_would_reach_the_sum_cap(
    charged: Decimal, usage: Decimal, charge: Decimal
) -> None:
    near_cap = MAX_ABS_TOTAL - Decimal(10**6)
    usage_line = UsageDelta("inv-nov", "u", "voice", "minute", None, False, Decimal(1), near_cap + usage)
    state = OpenInvoices([pending()], {"inv-nov": [usage_line]}, [], [usd(charged)])
    cmd = AddCharge(charge_id="ch", description="fee", amount=usd(charge))

    fits = within_total_limit(near_cap + usage + charged + charge)
    try:
        decided = accounts.charge_later(CUSTOMER, state, False, cmd)
    except DomainError as error:
        assert not fits and error.code == "total_over_cap" and error.reason.startswith("amount:")
    else:
        assert fits and decided == PendingCharge("ch", "fee", usd(charge))


def test_a_charge_id_used_before_is_refused_whether_invoiced_now_or_later() -> None:
    cmd = AddCharge(charge_id="ch", description="fee", amount=usd("5"), invoice_now=True)

    with pytest.raises(DomainError) as now:
        accounts.charge_now(CUSTOMER, True, cmd, dt.date(2026, 11, 3))
    with pytest.raises(DomainError) as later:
        accounts.charge_later(CUSTOMER, OpenInvoices(), True, cmd)

    assert now.value.code == later.value.code == "duplicate_charge"


def test_a_charge_in_another_currency_is_refused_before_its_id_is_checked() -> None:
    cmd = AddCharge(charge_id="ch", description="fee", amount=Money.of("5", "EUR"))

    with pytest.raises(DomainError) as error:
        accounts.charge_later(CUSTOMER, OpenInvoices(), True, cmd)

    assert error.value.code == "currency_mismatch"


@given(amount=cents, day=st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2099, 12, 31)))
def test_a_charge_invoiced_now_is_one_closed_invoice_of_its_day_with_the_rounded_charge(
    amount: Decimal, day: dt.date
) -> None:
    cmd = AddCharge(charge_id="ch", description="fee", amount=usd(amount), invoice_now=True)

    decided = accounts.charge_now(CUSTOMER, False, cmd, day)

    assert (decided.invoice.status, decided.invoice.period_start, decided.invoice.period_end) == (
        "closed",
        day,
        day,
    )
    [line] = decided.lines
    assert (line.line_id, line.kind, line.amount) == ("charge:ch", "one_time", usd(amount))


@given(invoiced=st.booleans(), duplicate=st.booleans())
def test_a_new_subscription_opens_its_first_period_unless_invoiced_and_a_used_id_is_refused(
    invoiced: bool, duplicate: bool
) -> None:
    cmd = CreateSubscription(subscription_id="s", name="Plan", fee=usd("30"), starts_on=dt.date(2026, 11, 16))
    existing = Subscription("s", "Plan", usd("30"), dt.date(2026, 1, 1)) if duplicate else None

    try:
        decided = accounts.create_subscription(CUSTOMER, OpenInvoices(), existing, invoiced, cmd)
    except DomainError as error:
        assert duplicate and error.code == "duplicate_subscription"
    else:
        assert not duplicate
        assert decided.open_period == (None if invoiced else NOV)
        assert decided.subscription == Subscription("s", "Plan", usd("30"), dt.date(2026, 11, 16))


def test_a_fee_that_would_take_an_open_invoice_past_the_cap_is_refused_before_the_duplicate_check() -> None:
    big = UsageDelta("inv-nov", "u", "voice", "minute", None, False, Decimal(1), MAX_ABS_TOTAL - 1)
    state = OpenInvoices([pending()], {"inv-nov": [big]})
    cmd = CreateSubscription(subscription_id="s", name="Plan", fee=usd("30"), starts_on=NOV[0])
    existing = Subscription("s", "Plan", usd("30"), NOV[0])

    with pytest.raises(DomainError) as error:
        accounts.create_subscription(CUSTOMER, state, existing, True, cmd)

    assert error.value.code == "total_over_cap" and error.value.reason.startswith("fee:")


def test_cancelling_an_unknown_subscription_is_refused() -> None:
    with pytest.raises(DomainError) as error:
        accounts.cancel_subscription(None, CancelSubscription(subscription_id="s", ends_on=NOV[1]))

    assert error.value.code == "unknown_subscription"


# -- closing -------------------------------------------------------------------------


@given(
    usage=st.lists(raw_amounts, max_size=6),
    fee_starts=st.integers(min_value=0, max_value=29),
    charges=st.lists(cents, max_size=4),
)
def test_a_period_closes_with_fees_then_usage_then_charges_each_rounded_once_and_summed(
    usage: list[Decimal], fee_starts: int, charges: list[Decimal]
) -> None:
    deltas = [
        UsageDelta("inv-nov", f"usage:{n}", "voice", "minute", None, False, Decimal(1), amount)
        for n, amount in enumerate(usage)
    ]
    sub = Subscription("s", "Plan", usd("30"), NOV[0] + dt.timedelta(days=fee_starts))
    waiting = [PendingCharge(f"ch{n}", "fee", usd(amount)) for n, amount in enumerate(charges)]

    decided = closing.close_period(pending(), 1, deltas, [sub], waiting)

    lines = decided.closing.lines
    assert [ln.kind for ln in lines] == ["subscription"] + ["usage"] * len(usage) + ["one_time"] * len(
        charges
    )
    assert [ln.amount.amount for ln in lines[1 : 1 + len(usage)]] == [
        a.quantize(Decimal("0.01"), ROUND_HALF_EVEN) for a in usage
    ]
    assert decided.closing.subtotal == usd(sum((ln.amount.amount for ln in lines), Decimal(0)))
    assert decided.closing.invoice.status == "closed"
    assert decided.next_period == (dt.date(2026, 12, 1), dt.date(2026, 12, 31))


@given(status=st.sampled_from(STATUSES), regenerated=st.booleans())
def test_only_a_voided_invoice_not_yet_regenerated_is_regenerated_with_its_charges(
    status: str, regenerated: bool
) -> None:
    old = pending("inv-old", status)
    lines = [
        Line(line_id="charge:a", kind="one_time", description="a", amount=usd("5")),
        adjustment("-1.00"),
    ]

    try:
        decided = closing.regenerate(old, "inv-new" if regenerated else None, lines)
    except DomainError as error:
        assert error.code == ("already_regenerated" if status == "voided" else f"invoice_{status}")
    else:
        assert status == "voided" and not regenerated
        assert decided.invoice.invoice_id == regenerated_invoice_id("c1", "inv-old")
        assert decided.invoice.regenerated_from == "inv-old" and decided.invoice.status == "closed"
        assert [ln.line_id for ln in decided.lines] == ["charge:a"] and decided.subtotal == usd("5")


@given(status=st.sampled_from(STATUSES))
def test_only_a_pending_invoice_is_closed_on_demand(status: str) -> None:
    try:
        closing.check_closable(pending(status=status))
    except DomainError as error:
        assert status != "pending" and error.code == f"invoice_{status}"
    else:
        assert status == "pending"


# -- posting -------------------------------------------------------------------------


@given(charges=st.lists(cents, max_size=5), adjustments=st.lists(cents, max_size=3))
def test_a_closed_invoice_is_posted_with_total_charges_plus_adjustments(
    charges: list[Decimal], adjustments: list[Decimal]
) -> None:
    charge_lines = [
        Line(line_id=f"charge:{n}", kind="one_time", description="x", amount=usd(a))
        for n, a in enumerate(charges)
    ]
    answer = InvoiceAdjusted(
        invoice_id="inv-nov",
        lines=[adjustment(str(a)) for a in adjustments],
        rule_set_id="rs",
        rule_set_version=2,
    )

    posted = posting.post(pending(status="closed"), charge_lines, answer, dt.date(2026, 12, 1))

    assert posted is not None
    assert posted.total == usd(sum(charges, Decimal(0)) + sum(adjustments, Decimal(0)))
    assert [ln.line_id for ln in posted.lines] == [ln.line_id for ln in (*charge_lines, *answer.lines)]
    assert (posted.rule_set_id, posted.rule_set_version, posted.issued_on) == ("rs", 2, dt.date(2026, 12, 1))


@given(status=st.sampled_from(STATUSES))
def test_a_repeated_rules_answer_changes_nothing(status: str) -> None:
    answer = InvoiceAdjusted(invoice_id="inv-nov", lines=[], rule_set_id=None, rule_set_version=None)

    posted = posting.post(pending(status=status), [], answer, dt.date(2026, 12, 1))

    assert (posted is None) == (status != "closed")


def test_a_rules_answer_for_an_unknown_invoice_or_in_another_currency_is_refused() -> None:
    answer = InvoiceAdjusted(
        invoice_id="inv-nov", lines=[adjustment("1.00", "EUR")], rule_set_id=None, rule_set_version=None
    )

    with pytest.raises(DomainError) as unknown:
        posting.post(None, [], answer, dt.date(2026, 12, 1))
    with pytest.raises(DomainError) as mismatch:
        posting.post(pending(status="closed"), [], answer, dt.date(2026, 12, 1))

    assert (unknown.value.code, mismatch.value.code) == ("unknown_invoice", "currency_mismatch")


@given(status=st.sampled_from(STATUSES))
def test_only_a_posted_or_paid_invoice_is_voided_and_then_owes_nothing(status: str) -> None:
    try:
        owed = posting.void(pending(status=status))
    except DomainError as error:
        assert status not in ("posted", "paid") and error.code == f"invoice_{status}"
    else:
        assert status in ("posted", "paid") and owed == 0


@given(status=st.sampled_from(STATUSES), paid=st.booleans(), due=cents)
def test_only_a_posted_or_paid_invoice_follows_the_credits_balance(
    status: str, paid: bool, due: Decimal
) -> None:
    balance = InvoiceBalanceChanged(
        invoice_id="inv-nov",
        total=usd("10"),
        credits_applied=usd("0"),
        payments_applied=usd("0"),
        amount_due=usd(due),
        status="paid" if paid else "open",
    )

    update = posting.balance_update(pending(status=status), balance)

    if status not in ("posted", "paid"):
        assert update is None
    else:
        assert update is not None
        assert update.status == ("paid" if paid else "posted") and update.amount_due == usd(due).amount
        assert update.status_changed == (update.status != status)
