"""Money: a Decimal amount with an ISO 4217 currency. Floats are refused everywhere.

Rounding happens in one place, `Money.rounded()`, to the currency's minor unit with
ROUND_HALF_EVEN. Arithmetic between two currencies raises `CurrencyMismatch`.

On the wire a Money amount has at least its currency's minor unit of decimal places
(`at_minor_unit`): a zero or a whole sum reads "0.00", never "0"; an amount with more
places keeps them (nothing is rounded by writing it).

Two caps keep hostile input out of the ledgers. A single amount (what a command or a
usage carries: a charge, a fee, a grant, a payment, a refund) is below
`MAX_ABS_AMOUNT`; sums (invoice subtotals and totals, balances, what is applied to an
invoice) may grow past it, up to `MAX_ABS_TOTAL`. A domain that adds amounts checks
the sum against `MAX_ABS_TOTAL` where it makes it, so no message carries a sum its
consumers would refuse.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_serializer,
)

from tally_contracts.currencies import MINOR_UNITS, minor_unit

MAX_ABS_AMOUNT = Decimal(10) ** 15
"""A single amount, quantity, unit price or rate is smaller than this in absolute value.

10^15 in any currency is more than any invoice line; `Amount` fields and
`StrictDecimal` fields enforce it.
"""

MAX_ABS_TOTAL = Decimal(10) ** 18
"""A sum (an invoice total, a credit balance, a grant, what was applied) is smaller than this.

It leaves room for 1,000 amounts at the single-amount cap. Every `Money` on the wire
respects it; the domains check it where they add amounts (`within_total_limit`).
"""

MAX_DECIMAL_PLACES = 12
"""12 decimal places are more than any unit price needs."""


class CurrencyMismatch(ValueError):
    """Two amounts in different currencies were combined."""


def within_amount_limit(amount: Decimal) -> bool:
    """True when a single amount is below MAX_ABS_AMOUNT in absolute value."""
    return amount.copy_abs() < MAX_ABS_AMOUNT  # copy_abs: no context, so no Overflow


def within_total_limit(amount: Decimal) -> bool:
    """True when a sum is below MAX_ABS_TOTAL in absolute value."""
    return amount.copy_abs() < MAX_ABS_TOTAL


def _decimal(value: Any, limit: Decimal) -> Decimal:
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
    if value.copy_abs() >= limit:  # copy_abs: no context, so no Overflow
        raise ValueError(f"must be smaller than {limit:,} in absolute value")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_DECIMAL_PLACES:
        raise ValueError(f"must have at most {MAX_DECIMAL_PLACES} decimal places")
    return value


def at_minor_unit(amount: Decimal, currency: str) -> Decimal:
    """`amount` with at least the currency's minor unit of decimal places: "0" → "0.00" in USD.

    Only pads with zeros: an amount with more places than the minor unit keeps them.
    """
    places = minor_unit(currency)
    sign, digits, exponent = amount.as_tuple()
    if not isinstance(exponent, int) or -exponent >= places:
        return amount
    # built digit by digit, not quantized: exact at any size, no context to overflow
    return Decimal((sign, digits + (0,) * (exponent + places), -places))


def _strict_decimal(value: Any) -> Decimal:
    return _decimal(value, MAX_ABS_AMOUNT)


def _total_decimal(value: Any) -> Decimal:
    return _decimal(value, MAX_ABS_TOTAL)


def _currency_code(value: Any) -> str:
    if not isinstance(value, str) or value not in MINOR_UNITS:
        raise ValueError(f"{value!r} is not an ISO 4217 currency code")
    return value


StrictDecimal = Annotated[
    Decimal,
    BeforeValidator(_strict_decimal),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
]
"""A Decimal below MAX_ABS_AMOUNT that refuses floats, NaN and absurd sizes; a string on the wire."""

TotalDecimal = Annotated[
    Decimal,
    BeforeValidator(_total_decimal),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
]
"""As StrictDecimal, for sums: below MAX_ABS_TOTAL."""

CurrencyCode = Annotated[str, BeforeValidator(_currency_code)]
"""An ISO 4217 alphabetic code such as "USD"."""


class Money(BaseModel):
    """An amount and its currency; a sum below MAX_ABS_TOTAL (a single amount: see `Amount`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: TotalDecimal = Field(
        description='Decimal amount as a string, e.g. "12.50"; below 10^18 in absolute value.'
    )
    currency: CurrencyCode = Field(description="ISO 4217 currency code, e.g. USD.")

    @field_serializer("amount", when_used="json")
    def _amount_at_minor_unit(self, amount: Decimal) -> str:
        return format(at_minor_unit(amount, self.currency), "f")

    @classmethod
    def of(cls, amount: Decimal | int | str, currency: str) -> Money:
        return cls(amount=amount, currency=currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        """Zero at the currency's minor unit ("0.00" in USD), so a sum that starts from it
        and an amount nothing was added to read like every other amount."""
        return cls(amount=at_minor_unit(Decimal(0), currency), currency=currency)

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


def _single_amount(money: Money) -> Money:
    if not within_amount_limit(money.amount):
        raise ValueError(f"amount must be smaller than {MAX_ABS_AMOUNT:,} in absolute value")
    return money


Amount = Annotated[Money, AfterValidator(_single_amount)]
"""Money that is one amount (a charge, fee, grant, payment, refund): below MAX_ABS_AMOUNT."""
