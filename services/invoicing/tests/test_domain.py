"""The invoicing domain, pure: periods, rating, aggregation, proration, totals, rounding."""

import datetime as dt
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from invoicing import domain
from invoicing.domain import InvoiceState, Subscription
from tally_contracts import DomainError, Line, Money
from tally_contracts.currencies import minor_unit
from tally_contracts.invoicing import Price
from tally_contracts.money import MAX_ABS_AMOUNT, MAX_ABS_TOTAL

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
    with pytest.raises(DomainError) as error:
        rate("2", amount=Money.of("1", "EUR"))
    assert error.value.code == "currency_mismatch"


def test_usage_with_no_price_and_no_amount_is_refused_with_a_reason() -> None:
    with pytest.raises(DomainError) as error:
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
    sums = domain.InvoiceSums("inv", "USD")
    for quantity, destination in batch:
        domain.fold_usage(deltas, sums, rate(str(quantity), destination), late=False)
    return {k: (d.quantity, d.amount) for k, d in deltas.items()}


@given(usage_batches, st.randoms())
def test_order_of_a_batch_does_not_change_totals(
    batch: list[tuple[Decimal, str | None]], rnd: object
) -> None:
    shuffled = list(batch)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]

    assert fold(shuffled) == fold(batch)


@given(usage_batches, st.booleans())
def test_each_usage_is_placed_on_the_line_that_sums_it(
    batch: list[tuple[Decimal, str | None]], late: bool
) -> None:
    deltas: dict[tuple[str, str], domain.UsageDelta] = {}
    sums = domain.InvoiceSums("inv", "USD")
    placed: dict[str, Decimal] = {}
    for quantity, destination in batch:
        line_id = domain.fold_usage(deltas, sums, rate(str(quantity), destination), late=late)
        placed[line_id] = placed.get(line_id, Decimal(0)) + quantity

    assert placed == {line_id: d.quantity for (_, line_id), d in deltas.items()}
    assert all(line_id.endswith(":late") == late for line_id in placed)


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

    with pytest.raises(DomainError) as error:
        domain.require_status(invoice, ("posted", "paid"), "voided")
    assert error.value.code == f"invoice_{status}" and "inv-1" in error.value.reason


@given(st.lists(st.sampled_from(["1", "44", "4420", "4420123", "33", "9", ""]), max_size=30))
def test_price_list_remembers_the_same_answers_find_price_gives(destinations: list[str]) -> None:
    book = domain.PriceList("default", PRICES)
    for destination in destinations:  # asked repeatedly, in any order
        for currency in ("USD", "EUR"):
            expected = domain.find_price(PRICES, "voice", "minute", destination, currency)
            assert book.price("voice", "minute", destination, currency) is expected


# -- D3: pre-rated usage is billed by its amount ------------------------------------


def test_pre_rated_usage_with_a_non_terminating_unit_price_closes_billed_by_its_amount() -> None:
    rated = rate("3", amount=Money.of("1.00", "USD"))
    deltas: dict[tuple[str, str], domain.UsageDelta] = {}
    domain.fold_usage(deltas, domain.InvoiceSums("inv", "USD"), rated, late=False)

    [closed] = [domain.usage_line(d, "USD") for d in deltas.values()]

    assert closed.amount == Money.of("1.00", "USD")
    assert closed.unit_price == Decimal("0.333333333333")  # 12 places, half-even, informational


def test_a_stored_unrounded_unit_price_is_shown_rounded_at_close() -> None:
    """Invoices opened before the fix hold amount ÷ quantity with 28 digits."""
    delta = domain.UsageDelta(
        "inv", "usage:voice:minute:*", "voice", "minute", None, False, Decimal(3), Decimal(2), Decimal(2) / 3
    )

    line = domain.usage_line(delta, "USD")

    assert line.amount == Money.of("2.00", "USD") and line.unit_price == Decimal("0.666666666667")


@pytest.mark.parametrize(
    ("amount", "quantity", "shown"),
    [
        ("1", "3", "0.333333333333"),
        ("0.000000000005", "10", "0"),  # 5e-13 rounds half-even to 0
        ("0.000000000015", "10", "0.000000000002"),  # 1.5e-12 → 2e-12
        ("10", "4", "2.5"),
        ("999999999999999", "0.000000000001", None),  # not below 10^15: no unit price shown
        ("5", "0", None),
    ],
)
def test_informational_unit_price_rule(amount: str, quantity: str, shown: str | None) -> None:
    price = domain.informational_unit_price(Decimal(amount), Decimal(quantity))

    assert price == (Decimal(shown) if shown is not None else None)


amounts_near_cap = st.decimals(
    min_value=Decimal("-999999999999999.999999999999"),
    max_value=Decimal("999999999999999.999999999999"),
    places=12,
    allow_nan=False,
    allow_infinity=False,
)
positive_quantities = st.decimals(
    min_value=Decimal("0.000000000001"), max_value=Decimal("999999999999999"), places=12
)


@given(amounts_near_cap, positive_quantities, st.sampled_from(["USD", "JPY", "KWD", "BHD"]))
def test_any_pre_rated_usage_closes_to_a_valid_line(
    amount: Decimal, quantity: Decimal, currency: str
) -> None:
    rated = domain.rate_usage(
        service="voice",
        unit="minute",
        destination=None,
        quantity=quantity,
        amount=Money.of(amount, currency),
        currency=currency,
        price_list=domain.PriceList("default", []),
    )
    deltas: dict[tuple[str, str], domain.UsageDelta] = {}
    domain.fold_usage(deltas, domain.InvoiceSums("inv", currency), rated, late=False)

    [closed] = [domain.usage_line(d, currency) for d in deltas.values()]
    Line.model_validate(closed.model_dump(mode="json"))  # what the other services parse

    assert closed.amount == Money.of(amount, currency).rounded()


# -- D4: sums are checked where they are made --------------------------------------


def test_usage_that_would_take_a_line_quantity_past_the_cap_is_refused_and_changes_nothing() -> None:
    sums = domain.InvoiceSums("inv", "USD")
    deltas: dict[tuple[str, str], domain.UsageDelta] = {}
    domain.fold_usage(deltas, sums, rate("900000000000000"), late=False)

    with pytest.raises(DomainError) as error:
        domain.fold_usage(deltas, sums, rate("900000000000000"), late=False)

    assert error.value.code == "quantity_over_cap" and error.value.reason.startswith("quantity:")
    [delta] = deltas.values()
    assert delta.quantity == Decimal("900000000000000")
    assert sums.line_quantities[delta.line_id] == Decimal("900000000000000")


def test_an_amount_that_would_take_an_open_invoice_past_the_sum_cap_is_refused() -> None:
    sums = domain.InvoiceSums("inv", "USD", total=MAX_ABS_TOTAL - Decimal("900000000000000"))

    with pytest.raises(DomainError) as error:
        sums.add_amount(Decimal("900000000000000.00"), "amount")

    assert error.value.code == "total_over_cap" and error.value.reason.startswith("amount:")
    assert sums.total == MAX_ABS_TOTAL - Decimal("900000000000000")


def test_two_charges_at_the_single_amount_cap_make_a_valid_subtotal() -> None:
    big = domain.one_time_line("a", "x", Money.of("999999999999999.99", "USD"))

    total = domain.subtotal([big, big.model_copy(update={"line_id": "charge:b"})], "USD")

    assert total == Money.of("1999999999999999.98", "USD")
    Money.model_validate(total.model_dump(mode="json"))


def test_a_subtotal_past_the_sum_cap_is_refused_at_close() -> None:
    lines = [line("one_time", "999999999999999.99")] * 1001

    with pytest.raises(DomainError) as error:
        domain.subtotal(lines, "USD")

    assert error.value.code == "total_over_cap" and error.value.reason.startswith("subtotal:")


def test_open_invoice_sums_count_usage_prorated_subscriptions_and_pending_charges() -> None:
    invoice = InvoiceState("inv", "c", "USD", "pending", dt.date(2026, 11, 1), dt.date(2026, 11, 30))
    usage = [domain.UsageDelta("inv", "u", "voice", "minute", None, False, Decimal(2), Decimal("0.5"))]
    half = Subscription("s", "Plan", FEE, dt.date(2026, 11, 16))

    sums = domain.open_invoice_sums(invoice, usage, [half], [Money.of("-1.25", "USD")])

    assert sums.total == Decimal("0.5") + Decimal("15.00") - Decimal("1.25")
    assert sums.line_quantities == {"u": Decimal(2)}


# -- D5: invoice ids are unique by construction -------------------------------------


def test_invoice_ids_of_different_customers_never_collide() -> None:
    """The probe's case: charge `x-2026-11-01` of `pabb79fe` vs the period of `pabb79fe-charge-x`."""
    one_time = domain.one_time_invoice_id("pabb79fe", "x-2026-11-01")
    period = domain.period_invoice_id("pabb79fe-charge-x", dt.date(2026, 11, 1))

    assert one_time != period


@given(
    st.tuples(
        st.sampled_from(["period", "one_time", "regenerated"]), st.text(max_size=12), st.text(max_size=12)
    ),
    st.tuples(
        st.sampled_from(["period", "one_time", "regenerated"]), st.text(max_size=12), st.text(max_size=12)
    ),
)
def test_invoice_ids_are_equal_only_for_the_same_kind_customer_and_key(
    first: tuple[str, str, str], second: tuple[str, str, str]
) -> None:
    same_id = domain.invoice_id(*first) == domain.invoice_id(*second)

    assert same_id == (first == second)
    assert len(domain.invoice_id(*first)) == 40


# -- D7: date arithmetic never raises as a bug --------------------------------------


@pytest.mark.parametrize(
    ("day", "billing_day"),
    [(dt.date(9999, 12, 15), 1), (dt.date(9999, 12, 31), 28), (dt.date(1, 1, 1), 28), (dt.date(1, 1, 5), 15)],
)
def test_a_period_past_the_calendar_is_refused_with_a_reason(day: dt.date, billing_day: int) -> None:
    with pytest.raises(DomainError) as error:
        domain.period_of(day, billing_day)

    assert error.value.code == "date_out_of_range" and day.isoformat() in error.value.reason


@given(st.dates(), billing_days)
def test_periods_of_any_date_are_found_or_refused_never_raised(day: dt.date, billing_day: int) -> None:
    try:
        start, end = domain.period_of(day, billing_day)
        domain.next_period(end, billing_day)
    except DomainError as error:
        assert error.code == "date_out_of_range"
    else:
        assert start <= day <= end


# -- command decisions ---------------------------------------------------------------


def test_currency_change_with_open_invoices_is_refused() -> None:
    with pytest.raises(DomainError) as error:
        domain.check_currency_change("USD", "EUR", open_invoices=2)

    assert (
        error.value.code == "currency_change_with_open_invoices"
        and "2 pending or closed" in error.value.reason
    )


@pytest.mark.parametrize(
    ("current", "wanted", "open_invoices"), [(None, "EUR", 3), ("USD", "USD", 3), ("USD", "EUR", 0)]
)
def test_currency_change_is_allowed_without_open_invoices(
    current: str | None, wanted: str, open_invoices: int
) -> None:
    domain.check_currency_change(current, wanted, open_invoices)


def test_amount_in_another_currency_is_refused_naming_what() -> None:
    with pytest.raises(DomainError) as error:
        domain.check_same_currency("fee", Money.of("1", "EUR"), "USD")

    assert error.value.code == "currency_mismatch" and error.value.reason.startswith("fee is in EUR")


def test_a_subscription_cannot_end_before_it_starts() -> None:
    sub = Subscription("s", "Plan", FEE, dt.date(2026, 11, 10))

    with pytest.raises(DomainError) as error:
        domain.cancelled(sub, dt.date(2026, 11, 9))

    assert error.value.code == "ends_before_start"
    assert domain.cancelled(sub, dt.date(2026, 11, 10)).ends_on == dt.date(2026, 11, 10)


# -- currencies with 0 and 3 decimal places, zero, amounts near the cap ------------

currencies = st.sampled_from(["USD", "JPY", "KWD", "BHD"])


@given(
    days,
    billing_days,
    st.integers(min_value=0, max_value=40),
    st.decimals(min_value=0, max_value=Decimal("999999999999999"), places=3),
    currencies,
)
@settings(max_examples=200)
def test_prorated_fee_in_any_currency_is_rounded_to_its_minor_unit_and_at_most_the_fee(
    day: dt.date, billing_day: int, offset: int, fee: Decimal, currency: str
) -> None:
    start, end = domain.period_of(day, billing_day)
    sub = Subscription("s", "Plan", Money.of(fee, currency), start + dt.timedelta(days=offset))

    prorated = domain.prorated_fee(sub, start, end)

    if prorated is not None:
        assert Money.zero(currency) <= prorated <= Money.of(fee, currency).rounded()
        assert prorated == prorated.rounded()


@given(
    st.lists(st.decimals(min_value=0, max_value=Decimal("999999999999999"), places=3), max_size=20),
    currencies,
)
def test_usage_lines_near_the_cap_close_to_rounded_amounts_the_wire_accepts(
    quantities_: list[Decimal], currency: str
) -> None:
    sums = domain.InvoiceSums("inv", currency)
    deltas: dict[tuple[str, str], domain.UsageDelta] = {}
    prices = [Price(service="voice", unit="minute", unit_price=Decimal("0.5"), currency=currency)]
    for quantity in quantities_:
        rated = domain.rate_usage(
            service="voice",
            unit="minute",
            destination=None,
            quantity=quantity,
            amount=None,
            currency=currency,
            price_list=domain.PriceList("p", prices),
        )
        try:
            domain.fold_usage(deltas, sums, rated, late=False)
        except DomainError as error:
            assert error.code == "quantity_over_cap"

    lines = [domain.usage_line(d, currency) for d in deltas.values()]
    total = domain.subtotal(lines, currency)

    for closed in lines:
        Line.model_validate(closed.model_dump(mode="json"))
        assert closed.quantity is not None and closed.quantity < MAX_ABS_AMOUNT
    assert total == total.rounded() and total.amount == sum((ln.amount.amount for ln in lines), Decimal(0))


def test_the_unit_price_shown_is_the_average_when_a_line_was_rated_at_two_prices() -> None:
    delta = domain.UsageDelta(
        "inv",
        "usage:voice:minute:*",
        "voice",
        "minute",
        None,
        False,
        Decimal(4),
        Decimal("0.10"),
        Decimal("0.02"),
    )

    assert domain.usage_line(delta, "USD").unit_price == Decimal("0.025")


def test_a_line_of_zero_quantity_shows_the_price_rated() -> None:
    delta = domain.UsageDelta(
        "inv", "usage:voice:minute:*", "voice", "minute", None, False, Decimal(0), Decimal(0), Decimal("0.02")
    )

    line = domain.usage_line(delta, "USD")

    assert line.unit_price == Decimal("0.02") and line.amount == Money.of("0.00", "USD")


@given(
    days,
    billing_days,
    st.integers(min_value=1, max_value=27),
    st.decimals(min_value=0, max_value=Decimal("999999999999999.999999999999"), places=12),
    currencies,
)
@settings(max_examples=300)
@example(dt.date(2027, 1, 1), 1, 26, Decimal("2287651677506.237"), "USD")  # a tie 28 digits missed
def test_prorated_fee_is_the_exact_share_rounded_half_even(
    day: dt.date, billing_day: int, offset: int, fee: Decimal, currency: str
) -> None:
    start, end = domain.period_of(day, billing_day)
    sub = Subscription("s", "Plan", Money.of(fee, currency), start + dt.timedelta(days=offset))
    active, length = (end - sub.starts_on).days + 1, (end - start).days + 1
    places = minor_unit(currency)

    prorated = domain.prorated_fee(sub, start, end)

    exact = round(Fraction(fee) * active / length * 10**places)  # round() of a Fraction: half to even
    assert prorated == Money.of(Decimal(exact).scaleb(-places), currency)


wide_quantities = st.decimals(min_value=0, max_value=Decimal("999999999999999.999999999999"), places=12)
wide_prices = st.decimals(min_value=0, max_value=Decimal("999.999999999999"), places=12)


@given(st.lists(st.tuples(wide_quantities, wide_prices), min_size=1, max_size=5), currencies)
@example([(Decimal("123456789012345.123456789012"), Decimal("0.123456789012"))], "USD")
def test_usage_is_rated_and_summed_exactly_then_rounded_once(
    usages: list[tuple[Decimal, Decimal]], currency: str
) -> None:
    sums = domain.InvoiceSums("inv", currency)
    deltas: dict[tuple[str, str], domain.UsageDelta] = {}
    exact = Fraction(0)
    for quantity, price in usages:
        prices = [Price(service="voice", unit="minute", unit_price=price, currency=currency)]
        rated = domain.rate_usage(
            service="voice",
            unit="minute",
            destination=None,
            quantity=quantity,
            amount=None,
            currency=currency,
            price_list=domain.PriceList("p", prices),
        )
        try:
            domain.fold_usage(deltas, sums, rated, late=False)
        except DomainError:
            continue
        exact += Fraction(quantity) * Fraction(price)

    places = minor_unit(currency)
    for delta in deltas.values():
        assert Fraction(delta.amount) == exact
        closed = domain.usage_line(delta, currency)
        assert closed.amount.amount == Decimal(round(exact * 10**places)).scaleb(-places)
