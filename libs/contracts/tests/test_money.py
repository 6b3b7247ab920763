"""Money: exact arithmetic in one currency, one place that rounds, and a wire format
that refuses floats and hostile input."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tally_contracts import CurrencyMismatch, Money
from tally_contracts.currencies import MINOR_UNITS, minor_unit
from tally_contracts.money import MAX_DECIMAL_PLACES

CURRENCIES = sorted(MINOR_UNITS)
# |amount| below 10^14 with up to 12 places: 26 digits, so sums of three stay exact
# in Decimal's default 28-digit context.
LIMIT = Decimal(10) ** 14

currencies = st.sampled_from(CURRENCIES)


@st.composite
def amounts(draw: st.DrawFn) -> Decimal:
    places = draw(st.integers(min_value=0, max_value=MAX_DECIMAL_PLACES))
    return draw(
        st.decimals(
            min_value=-LIMIT + 1, max_value=LIMIT - 1, places=places, allow_nan=False, allow_infinity=False
        )
    )


@st.composite
def monies(draw: st.DrawFn, currency: str | None = None) -> Money:
    return Money(amount=draw(amounts()), currency=currency or draw(currencies))


@st.composite
def same_currency(draw: st.DrawFn, count: int) -> list[Money]:
    currency = draw(currencies)
    return [draw(monies(currency)) for _ in range(count)]


@st.composite
def two_currencies(draw: st.DrawFn) -> tuple[Money, Money]:
    first, second = draw(st.lists(currencies, min_size=2, max_size=2, unique=True))
    return draw(monies(first)), draw(monies(second))


def validation_message(amount: Any, currency: Any = "USD") -> str:
    with pytest.raises(ValidationError) as caught:
        Money(amount=amount, currency=currency)
    return str(caught.value)


# -- arithmetic ----------------------------------------------------------------------


@given(same_currency(2))
def test_addition_is_commutative(pair: list[Money]) -> None:
    a, b = pair
    assert a + b == b + a


@given(same_currency(3))
def test_addition_is_associative(triple: list[Money]) -> None:
    a, b, c = triple
    assert (a + b) + c == a + (b + c)


@given(monies())
def test_money_plus_its_negation_is_zero(a: Money) -> None:
    total = a + (-a)
    assert total.is_zero
    assert total.currency == a.currency


@given(same_currency(2))
def test_subtraction_undoes_addition(pair: list[Money]) -> None:
    a, b = pair
    assert (a + b) - b == a


@given(two_currencies())
def test_combining_two_currencies_raises_currency_mismatch(pair: tuple[Money, Money]) -> None:
    a, b = pair
    for combine in (
        lambda: a + b,
        lambda: a - b,
        lambda: a < b,
        lambda: a <= b,
        lambda: a > b,
        lambda: a >= b,
        lambda: a.min(b),
        lambda: a.max(b),
    ):
        with pytest.raises(CurrencyMismatch, match=f"{a.currency} with {b.currency}"):
            combine()


def test_currency_mismatch_is_a_value_error() -> None:
    assert issubclass(CurrencyMismatch, ValueError)


def test_equal_amounts_with_different_digits_are_equal_and_hash_alike() -> None:
    assert Money.of("1.0", "USD") == Money.of("1.00", "USD")
    assert hash(Money.of("1.0", "USD")) == hash(Money.of("1.00", "USD"))
    assert Money.of("1", "USD") != Money.of("1", "EUR")


# -- rounding ------------------------------------------------------------------------


@given(monies())
def test_rounded_is_idempotent(m: Money) -> None:
    once = m.rounded()
    assert once.rounded().model_dump_json() == once.model_dump_json()


@given(monies())
def test_rounded_has_exactly_the_currency_minor_unit(m: Money) -> None:
    assert m.rounded().amount.as_tuple().exponent == -minor_unit(m.currency)


@given(monies())
def test_rounded_is_within_half_a_minor_unit(m: Money) -> None:
    half_unit = Decimal(1).scaleb(-minor_unit(m.currency)) / 2
    assert abs(m.rounded().amount - m.amount) <= half_unit


@pytest.mark.parametrize(
    ("currency", "digits"),
    [("USD", 2), ("EUR", 2), ("JPY", 0), ("KRW", 0), ("KWD", 3), ("BHD", 3), ("CLF", 4)],
)
def test_minor_units_of_known_currencies(currency: str, digits: int) -> None:
    assert minor_unit(currency) == digits


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("1.23456", "USD", "1.23"),
        ("1.23456", "JPY", "1"),
        ("1.23456", "KWD", "1.235"),
        ("7", "USD", "7.00"),
        ("7", "KWD", "7.000"),
        ("7.00", "JPY", "7"),
    ],
)
def test_rounded_goes_to_the_currency_minor_unit(amount: str, currency: str, expected: str) -> None:
    assert format(Money.of(amount, currency).rounded().amount, "f") == expected


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("0.125", "USD", "0.12"),
        ("0.135", "USD", "0.14"),
        ("-0.125", "USD", "-0.12"),
        ("-0.135", "USD", "-0.14"),
        ("2.5", "JPY", "2"),
        ("3.5", "JPY", "4"),
        ("0.0005", "KWD", "0.000"),
        ("0.0015", "KWD", "0.002"),
        ("0.1250000001", "USD", "0.13"),
    ],
)
def test_rounding_is_half_to_even_on_ties(amount: str, currency: str, expected: str) -> None:
    assert format(Money.of(amount, currency).rounded().amount, "f") == expected


# -- what the model refuses ----------------------------------------------------------


@pytest.mark.parametrize("amount", [1.5, 0.5, 12.0, float("nan")])
def test_a_float_amount_is_refused(amount: float) -> None:
    assert "not a float" in validation_message(amount)


def test_a_float_amount_in_json_is_refused() -> None:
    with pytest.raises(ValidationError, match="not a float"):
        Money.model_validate_json('{"amount": 12.5, "currency": "USD"}')


def test_a_float_is_refused_by_money_of() -> None:
    with pytest.raises(ValidationError, match="not a float"):
        Money.of(0.5, "USD")  # type: ignore[arg-type]


@pytest.mark.parametrize("factor", [1.5, 2.0])
def test_multiplying_by_a_float_is_refused(factor: float) -> None:
    with pytest.raises(TypeError, match="not a float"):
        Money.of("10", "USD") * factor  # type: ignore[operator]


def test_multiplying_by_a_decimal_or_int_is_exact() -> None:
    assert Money.of("10.10", "USD") * Decimal("0.5") == Money.of("5.05", "USD")
    assert Money.of("10.10", "USD") * 3 == Money.of("30.30", "USD")


def test_a_bool_amount_is_refused() -> None:
    assert "not a float" in validation_message(True)


@pytest.mark.parametrize("amount", ["NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf", Decimal("NaN")])
def test_nan_and_infinity_are_refused(amount: Any) -> None:
    assert "must be a finite number" in validation_message(amount)


@pytest.mark.parametrize("amount", ["twelve", "", "1.2.3", "12,50"])
def test_text_that_is_no_number_is_refused(amount: str) -> None:
    assert "is not a decimal number" in validation_message(amount)


@pytest.mark.parametrize("currency", ["XXX", "usd", "", "US", "EURO", "ABC", 840, None])
def test_unknown_currencies_are_refused(currency: Any) -> None:
    assert "is not an ISO 4217 currency code" in validation_message("1.00", currency)


def test_twelve_decimal_places_are_accepted() -> None:
    assert Money.of("0.000000000001", "USD").amount == Decimal("1e-12")


@pytest.mark.parametrize("amount", ["0.0000000000001", "1e-13", "1e-999999999999999999"])
def test_more_than_twelve_decimal_places_are_refused(amount: str) -> None:
    assert "at most 12 decimal places" in validation_message(amount)


def test_the_largest_total_is_accepted() -> None:
    assert Money.of("999999999999999999.99", "USD").is_positive


@pytest.mark.parametrize(
    "amount",
    ["1000000000000000000", "-1000000000000000000", "1e18", "1e999999999999999999", "-1E+999999999", 10**100],
)
def test_absurd_sizes_are_refused(amount: Any) -> None:
    assert "must be smaller than 1,000,000,000,000,000,000 in absolute value" in validation_message(amount)


def test_an_absurd_size_in_json_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="must be smaller than"):
        Money.model_validate_json('{"amount": "9e999999999999999999", "currency": "USD"}')


def test_money_has_no_other_fields() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Money.model_validate({"amount": "1", "currency": "USD", "note": "x"})


def test_money_is_immutable() -> None:
    m = Money.of("1", "USD")
    with pytest.raises(ValidationError, match="frozen"):
        m.amount = Decimal(2)  # type: ignore[misc]


# -- the wire format -----------------------------------------------------------------


@given(monies())
def test_json_amount_is_a_string_that_round_trips_exactly(m: Money) -> None:
    wire = m.model_dump_json()
    assert isinstance(json.loads(wire)["amount"], str)
    again = Money.model_validate_json(wire)
    assert again == m
    assert again.model_dump_json() == wire


@pytest.mark.parametrize("amount", ["12.50", "12.500", "0.00", "-3.10", "100.00", "0.000000000001"])
def test_json_keeps_the_digits_it_was_given(amount: str) -> None:
    wire = Money.model_validate_json(json.dumps({"amount": amount, "currency": "USD"})).model_dump_json()
    assert json.loads(wire) == {"amount": amount, "currency": "USD"}


def test_an_integer_amount_is_accepted_as_exact() -> None:
    assert Money.model_validate_json('{"amount": 12, "currency": "JPY"}').amount == Decimal(12)


def test_str_shows_amount_and_currency() -> None:
    assert str(Money.of("12.50", "USD")) == "12.50 USD"


@pytest.mark.parametrize(
    ("amount", "currency", "wire"),
    [
        ("0", "USD", "0.00"),
        ("100", "USD", "100.00"),
        ("1E+2", "USD", "100.00"),
        ("-3.1", "KWD", "-3.100"),
        ("0", "JPY", "0"),
        ("-0", "USD", "-0.00"),
    ],
)
def test_json_amount_has_at_least_the_currency_minor_unit(amount: str, currency: str, wire: str) -> None:
    assert json.loads(Money.of(amount, currency).model_dump_json())["amount"] == wire


def test_a_computed_zero_reads_at_the_minor_unit_on_the_wire() -> None:
    assert json.loads(Money.zero("USD").model_dump_json()) == {"amount": "0.00", "currency": "USD"}
    total = Money.computed(Decimal(0), "BHD") + Money.computed(Decimal(0), "BHD")
    assert json.loads(total.model_dump_json())["amount"] == "0.000"


@given(monies())
def test_writing_an_amount_never_rounds_it(m: Money) -> None:
    written = Decimal(json.loads(m.model_dump_json())["amount"])
    assert written == m.amount
    assert -written.as_tuple().exponent >= minor_unit(m.currency)  # type: ignore[operator]


@pytest.mark.parametrize(("currency", "text"), [("USD", "0.00"), ("JPY", "0"), ("BHD", "0.000")])
def test_zero_is_at_the_currency_minor_unit(currency: str, text: str) -> None:
    assert format(Money.zero(currency).amount, "f") == text
    assert str(Money.zero(currency)) == f"{text} {currency}"
