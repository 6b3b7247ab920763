"""Topic `usage`: what upstream systems measured."""

from pydantic import Field

from tally_contracts.base import MessageData
from tally_contracts.money import Money, StrictDecimal


class UsageRecorded(MessageData):
    """Usage of a service; the envelope's `occurred_at` decides the billing period."""

    service: str = Field(description="Service used, e.g. voice, data.", min_length=1, max_length=100)
    quantity: StrictDecimal = Field(description="Quantity used, in `unit`.", ge=0)
    unit: str = Field(description="Unit of the quantity, e.g. minute.", min_length=1, max_length=50)
    destination: str | None = Field(
        default=None, description='Normalised destination prefix, e.g. "44".', max_length=30
    )
    amount: Money | None = Field(
        default=None, description="Already rated upstream; otherwise the price list rates it."
    )
    subscription_id: str | None = Field(default=None, description="Subscription it belongs to.")
