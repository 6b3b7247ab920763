"""Money: a Decimal amount with an ISO 4217 currency. Floats are refused everywhere.

Rounding happens in one place, `Money.rounded()`, to the currency's minor unit with
ROUND_HALF_EVEN. Arithmetic between two currencies raises `CurrencyMismatch`.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from tally_contracts.currencies import MINOR_UNITS, minor_unit

# Bounds that keep hostile input out of the ledgers: 10^15 in any currency is more
# than any invoice, and 12 decimal places are more than any unit price needs.
MAX_ABS_AMOUNT = Decimal(10) ** 15
MAX_DECIMAL_PLACES = 12


class CurrencyMismatch(ValueError):
    """Two amounts in different currencies were combined."""


def _strict_decimal(value: Any) -> Decimal:
    if isinstance(value, (bool, float)):
        raise ValueError('must be a decimal string such as "12.50", not a float')
    if isinstance(value, int):
        value = Decimal(value)
    if isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
    if not isinstance(value, Decimal):
        raise ValueError('must be a decimal string such as "12.50"')
    if not value.is_finite():
        raise ValueError("must be a finite number")
    if value.copy_abs() >= MAX_ABS_AMOUNT:  # copy_abs: no context, so no Overflow
        raise ValueError(f"must be smaller than {MAX_ABS_AMOUNT:,} in absolute value")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_DECIMAL_PLACES:
        raise ValueError(f"must have at most {MAX_DECIMAL_PLACES} decimal places")
    return value


def _currency_code(value: Any) -> str:
    if not isinstance(value, str) or value not in MINOR_UNITS:
        raise ValueError(f"{value!r} is not an ISO 4217 currency code")
    return value


StrictDecimal = Annotated[
    Decimal,
    BeforeValidator(_strict_decimal),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
]
"""A Decimal that refuses floats, NaN and absurd sizes; a string on the wire."""

CurrencyCode = Annotated[str, BeforeValidator(_currency_code)]
"""An ISO 4217 alphabetic code such as "USD"."""


class Money(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: StrictDecimal = Field(description='Decimal amount as a string, e.g. "12.50".')
    currency: CurrencyCode = Field(description="ISO 4217 currency code, e.g. USD.")

    @classmethod
    def of(cls, amount: Decimal | int | str, currency: str) -> Money:
        return cls(amount=amount, currency=currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(amount=Decimal(0), currency=currency)

    @classmethod
    def computed(cls, amount: Decimal, currency: str) -> Money:
        """An arithmetic result: its inputs were validated, its digits are not limited."""
        return cls.model_construct(amount=amount, currency=currency)

    def rounded(self) -> Money:
        """This amount rounded to the currency's minor unit, half to even."""
        quantum = Decimal(1).scaleb(-minor_unit(self.currency))
        return Money.computed(self.amount.quantize(quantum, rounding=ROUND_HALF_EVEN), self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money.computed(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money.computed(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money.computed(-self.amount, self.currency)

    def __mul__(self, factor: Decimal | int) -> Money:
        if isinstance(factor, float):
            raise TypeError("multiply Money by a Decimal, not a float")
        return Money.computed(self.amount * factor, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount >= other.amount

    def __eq__(self, other: object) -> bool:
        """Equal when the currency and the numeric value agree ("1.0" == "1.00")."""
        if not isinstance(other, Money):
            return NotImplemented
        return self.currency == other.currency and self.amount == other.amount

    def __hash__(self) -> int:
        return hash((self.currency, self.amount))

    @property
    def is_zero(self) -> bool:
        return self.amount == 0

    @property
    def is_negative(self) -> bool:
        return self.amount < 0

    @property
    def is_positive(self) -> bool:
        return self.amount > 0

    def min(self, other: Money) -> Money:
        return self if self <= other else other

    def max(self, other: Money) -> Money:
        return self if self >= other else other

    def __str__(self) -> str:
        return f"{format(self.amount, 'f')} {self.currency}"
