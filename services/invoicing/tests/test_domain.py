"""The invoicing domain, pure: periods, rating, aggregation, proration, totals, rounding."""

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invoicing import domain
from invoicing.domain import InvoiceState, InvoicingError, Subscription
from tally_contracts import Line, Money
from tally_contracts.invoicing import Price

days = st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2100, 12, 31))
billing_days = st.integers(min_value=1, max_value=28)


@pytest.mark.parametrize(
    ("day", "billing_day", "expected"),
    [
        (dt.date(2026, 11, 3), 1, (dt.date(2026, 11, 1), dt.date(2026, 11, 30))),
        (dt.date(2026, 11, 14), 15, (dt.date(2026, 10, 15), dt.date(2026, 11, 14))),
        (dt.date(2026, 11, 15), 15, (dt.date(2026, 11, 15), dt.date(2026, 12, 14))),
        (dt.date(2026, 1, 5), 28, (dt.date(2025, 12, 28), dt.date(2026, 1, 27))),
        (dt.date(2028, 2, 29), 1, (dt.date(2028, 2, 1), dt.date(2028, 2, 29))),
    ],
)
def test_period_of_a_day(day: dt.date, billing_day: int, expected: tuple[dt.date, dt.date]) -> None:
    assert domain.period_of(day, billing_day) == expected


@given(days, billing_days)
def test_consecutive_periods_tile_the_calendar(day: dt.date, billing_day: int) -> None:
    start, end = domain.period_of(day, billing_day)
    following = domain.next_period(end, billing_day)

    assert start <= day <= end
    assert start.day == billing_day
    assert following[0] == end + dt.timedelta(days=1)
    assert domain.period_of(end, billing_day) == (start, end)


PRICES = [
    Price(service="voice", unit="minute", unit_price=Decimal("0.02"), currency="USD"),
    Price(
        service="voice", unit="minute", unit_price=Decimal("0.15"), currency="USD", destination_prefix="44"
    ),
    Price(
        service="voice", unit="minute", unit_price=Decimal("0.12"), currency="USD", destination_prefix="4420"
    ),
    Price(
        service="voice", unit="minute", unit_price=Decimal("0.30"), currency="EUR", destination_prefix="4420"
    ),
    Price(service="sms", unit="message", unit_price=Decimal("0.05"), currency="USD"),
]


@pytest.mark.parametrize(
    ("destination", "expected"),
    [("4420123", "0.12"), ("4412", "0.15"), ("1212", "0.02"), (None, "0.02"), ("4", "0.02")],
)
def test_longest_destination_prefix_wins(destination: str | None, expected: str) -> None:
    price = domain.find_price(PRICES, "voice", "minute", destination, "USD")

    assert price is not None and price.unit_price == Decimal(expected)


@given(st.text(alphabet="0123456789", max_size=8))
def test_found_price_has_the_longest_matching_prefix(destination: str) -> None:
    price = domain.find_price(PRICES, "voice", "minute", destination, "USD")
    matching = [p.destination_prefix or "" for p in PRICES if p.currency == "USD" and p.service == "voice"]
    longest = max((m for m in matching if destination.startswith(m)), key=len)

    assert price is not None and (price.destination_prefix or "") == longest


def rate(quantity: str, destination: str | None = None, amount: Money | None = None) -> domain.RatedUsage:
    return domain.rate_usage(
        service="voice",
        unit="minute",
        destination=destination,
        quantity=Decimal(quantity),
        amount=amount,
        currency="USD",
        price_list=domain.PriceList("default", PRICES),
    )


def test_usage_is_rated_by_the_price_list_unrounded() -> None:
    assert rate("3.3", "4420").amount == Decimal("0.396")


def test_pre_rated_usage_is_taken_as_is() -> None:
    assert rate("2", amount=Money.of("1.234", "USD")).amount == Decimal("1.234")


def test_pre_rated_usage_in_another_currency_is_refused() -> None:
    with pytest.raises(InvoicingError) as error:
        rate("2", amount=Money.of("1", "EUR"))
    assert error.value.code == "currency_mismatch"


def test_usage_with_no_price_and_no_amount_is_refused_with_a_reason() -> None:
    with pytest.raises(InvoicingError) as error:
        domain.rate_usage(
            service="data",
            unit="GB",
            destination=None,
            quantity=Decimal(1),
            amount=None,
            currency="USD",
            price_list=domain.PriceList("gold", PRICES),
        )
    assert error.value.code == "no_price"
    assert "data/GB" in error.value.reason and "'gold'" in error.value.reason


quantities = st.decimals(min_value=0, max_value=10_000, places=3, allow_nan=False, allow_infinity=False)
usage_batches = st.lists(st.tuples(quantities, st.sampled_from(["44", "4420", "1", None])), max_size=30)


def fold(batch: list[tuple[Decimal, str | None]]) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    deltas: dict[tuple[str, str], domain.UsageDelta] = {}
    for quantity, destination in batch:
        domain.fold_usage(deltas, "inv", rate(str(quantity), destination), late=False)
    return {k: (d.quantity, d.amount) for k, d in deltas.items()}


@given(usage_batches, st.randoms())
def test_order_of_a_batch_does_not_change_totals(
    batch: list[tuple[Decimal, str | None]], rnd: object
) -> None:
    shuffled = list(batch)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]

    assert fold(shuffled) == fold(batch)


@given(usage_batches, st.integers(min_value=0, max_value=30))
def test_splitting_a_batch_gives_the_same_lines(batch: list[tuple[Decimal, str | None]], cut: int) -> None:
    first, second = fold(batch[:cut]), fold(batch[cut:])
    merged = {
        k: (
            first.get(k, (0, 0))[0] + second.get(k, (0, 0))[0],
            first.get(k, (0, 0))[1] + second.get(k, (0, 0))[1],
        )
        for k in {*first, *second}
    }

    assert merged == fold(batch)


def test_usage_line_is_rounded_half_even_at_close() -> None:
    delta = domain.UsageDelta(
        "inv", "usage:voice:minute:*", "voice", "minute", None, False, Decimal(1), Decimal("0.125")
    )

    assert domain.usage_line(delta, "USD").amount == Money.of("0.12", "USD")


FEE = Money.of("30.00", "USD")


@pytest.mark.parametrize(
    ("starts_on", "ends_on", "expected"),
    [
        (dt.date(2026, 11, 1), None, "30.00"),  # whole period
        (dt.date(2026, 11, 16), None, "15.00"),  # 15 of 30 days
        (dt.date(2026, 11, 1), dt.date(2026, 11, 10), "10.00"),  # 10 of 30 days
        (dt.date(2026, 11, 30), None, "1.00"),
        (dt.date(2026, 12, 1), None, None),  # not active in November
    ],
)
def test_subscription_proration(starts_on: dt.date, ends_on: dt.date | None, expected: str | None) -> None:
    fee = domain.prorated_fee(
        Subscription("s", "Plan", FEE, starts_on, ends_on), dt.date(2026, 11, 1), dt.date(2026, 11, 30)
    )

    assert fee == (Money.of(expected, "USD") if expected else None)


@given(
    days,
    billing_days,
    st.integers(min_value=0, max_value=40),
    st.decimals(min_value=0, max_value=100_000, places=2),
)
@settings(max_examples=200)
def test_prorated_fee_is_never_more_than_the_fee(
    day: dt.date, billing_day: int, offset: int, fee: Decimal
) -> None:
    start, end = domain.period_of(day, billing_day)
    sub = Subscription("s", "Plan", Money.of(fee, "USD"), start + dt.timedelta(days=offset))

    prorated = domain.prorated_fee(sub, start, end)

    if prorated is not None:
        assert Money.zero("USD") <= prorated <= Money.of(fee, "USD")
        assert prorated == prorated.rounded()


@given(
    days,
    billing_days,
    st.integers(min_value=1, max_value=27),
    st.decimals(min_value=0, max_value=100_000, places=2),
)
def test_a_period_split_in_two_sums_to_the_fee_within_a_cent_per_part(
    day: dt.date, billing_day: int, split: int, fee: Decimal
) -> None:
    start, end = domain.period_of(day, billing_day)
    cut = start + dt.timedelta(days=split)
    first = domain.prorated_fee(
        Subscription("a", "P", Money.of(fee, "USD"), start, cut - dt.timedelta(days=1)), start, end
    )
    second = domain.prorated_fee(Subscription("b", "P", Money.of(fee, "USD"), cut), start, end)

    assert first is not None and second is not None
    assert abs((first + second).amount - fee) <= Decimal("0.02")


def line(kind: str, amount: str) -> Line:
    return Line(line_id=f"{kind}-{amount}", kind=kind, description="x", amount=Money.of(amount, "USD"))


def test_total_adds_adjustments_and_may_be_negative() -> None:
    charges = [line("usage", "10.00"), line("one_time", "-25.00")]

    assert domain.finalized_total(charges, [line("adjustment", "-1.50")], "USD") == Money.of("-16.50", "USD")


def test_regenerate_keeps_charges_and_drops_adjustments() -> None:
    lines = [line("subscription", "30.00"), line("usage", "1.00"), line("adjustment", "-3.00")]

    assert [ln.kind for ln in domain.regenerated_lines(lines)] == ["subscription", "usage"]


@pytest.mark.parametrize("status", ["pending", "closed", "voided"])
def test_only_posted_or_paid_invoices_can_be_voided(status: str) -> None:
    invoice = InvoiceState("inv-1", "c", "USD", status, dt.date(2026, 11, 1), dt.date(2026, 11, 30))

    with pytest.raises(InvoicingError) as error:
        domain.require_status(invoice, ("posted", "paid"), "voided")
    assert error.value.code == f"invoice_{status}" and "inv-1" in error.value.reason


@given(st.lists(st.sampled_from(["1", "44", "4420", "4420123", "33", "9", ""]), max_size=30))
def test_price_list_remembers_the_same_answers_find_price_gives(destinations: list[str]) -> None:
    book = domain.PriceList("default", PRICES)
    for destination in destinations:  # asked repeatedly, in any order
        for currency in ("USD", "EUR"):
            expected = domain.find_price(PRICES, "voice", "minute", destination, currency)
            assert book.price("voice", "minute", destination, currency) is expected
