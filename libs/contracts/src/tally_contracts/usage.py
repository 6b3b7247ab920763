"""Topic `usage`: what upstream systems measured."""

from typing import Annotated

from pydantic import AfterValidator, Field

from tally_contracts.base import MessageData
from tally_contracts.identifiers import Identifier
from tally_contracts.money import MAX_ABS_AMOUNT, Money, StrictDecimal, within_amount_limit


def _pre_rated(amount: Money) -> Money:
    if not within_amount_limit(amount.amount):
        raise ValueError(f"amount must be smaller than {MAX_ABS_AMOUNT:,} in absolute value")
    if amount.is_negative:
        raise ValueError("a pre-rated usage amount must not be negative; send a negative AddCharge")
    return amount


PreRatedAmount = Annotated[Money, AfterValidator(_pre_rated)]
"""An `Amount` that is zero or positive: usage only adds to an invoice."""


class UsageRecorded(MessageData):
    """Usage of a service; the envelope's `occurred_at` decides the billing period.

    A pre-rated `amount` is never negative: usage only adds to an invoice. A correction
    is a separate negative AddCharge (invoice_now false), which names its reason.
    """

    service: str = Field(description="Service used, e.g. voice, data.", min_length=1, max_length=100)
    quantity: StrictDecimal = Field(description="Quantity used, in `unit`.", ge=0)
    unit: str = Field(description="Unit of the quantity, e.g. minute.", min_length=1, max_length=50)
    destination: str | None = Field(
        default=None, description='Normalised destination prefix, e.g. "44".', max_length=30
    )
    amount: PreRatedAmount | None = Field(
        default=None,
        description="Already rated upstream (zero or positive); otherwise the price list rates it.",
    )
    subscription_id: Identifier | None = Field(default=None, description="Subscription it belongs to.")
