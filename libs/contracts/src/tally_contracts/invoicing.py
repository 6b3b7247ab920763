"""Topics `invoicing.commands` and `invoicing.events`."""

import datetime as dt
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from tally_contracts.base import Command, Line, MessageData
from tally_contracts.dates import BusinessDate
from tally_contracts.identifiers import Identifier
from tally_contracts.money import Amount, CurrencyCode, Money, StrictDecimal

InvoiceStatus = Literal["pending", "closed", "posted", "paid", "voided"]


class UpsertCustomer(Command):
    key_field: ClassVar[str | None] = "price_list_id"
    currency: CurrencyCode = Field(description="Currency the customer is invoiced in.")
    name: str | None = Field(default=None, description="Display name.", max_length=200)
    billing_day: int = Field(default=1, ge=1, le=28, description="Day of month a period starts.")
    price_list_id: Identifier | None = Field(default=None, description='Price list; "default" if unset.')


class Price(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    service: str = Field(description="Service priced.", min_length=1, max_length=100)
    unit: str = Field(description="Unit priced.", min_length=1, max_length=50)
    unit_price: StrictDecimal = Field(description="Price per unit (decimal string).", ge=0)
    currency: CurrencyCode = Field(description="Currency of the price.")
    destination_prefix: str | None = Field(
        default=None, description="Destination prefix; the longest matching prefix wins.", max_length=30
    )


class PutPriceList(Command):
    key_field: ClassVar[str | None] = "price_list_id"
    price_list_id: Identifier = Field(description='Price list id; "default" is the fallback.')
    prices: list[Price] = Field(description="Prices by service, unit and destination prefix.")


class CreateSubscription(Command):
    subscription_id: Identifier = Field(description="Subscription id.")
    name: str = Field(description="Shown on the invoice line.", max_length=200)
    fee: Amount = Field(description="Fee per billing period.")
    starts_on: BusinessDate = Field(description="First day billed.")


class CancelSubscription(Command):
    subscription_id: Identifier = Field(description="Subscription id.")
    ends_on: BusinessDate = Field(description="Last day billed.")


class AddCharge(Command):
    charge_id: Identifier = Field(description="Charge id.")
    description: str = Field(description="Shown on the invoice line.", max_length=500)
    amount: Amount = Field(description="Charge amount (may be negative: a service-break refund).")
    invoice_now: bool = Field(
        default=True, description="True: own invoice, closed at once; false: on the next invoice."
    )


class RunBilling(Command):
    as_of: BusinessDate = Field(description="Close every pending invoice whose period ended by this date.")

    def key_without_customer(self) -> str | None:
        """Every bill run on one key: runs are handled one after the other."""
        return "bill-run"


class CloseInvoice(Command):
    invoice_id: Identifier = Field(description="Invoice to close.")


class VoidInvoice(Command):
    invoice_id: Identifier = Field(description="Posted or paid invoice to void.")
    reason: str = Field(default="", description="Why it is voided.", max_length=500)


class RegenerateInvoice(Command):
    invoice_id: Identifier = Field(description="Voided invoice to regenerate.")


class CustomerUpserted(MessageData):
    key_field: ClassVar[str | None] = "price_list_id"
    currency: CurrencyCode = Field(description="Currency the customer is invoiced in.")
    name: str | None = Field(default=None, description="Display name.")
    billing_day: int = Field(description="Day of month a period starts.")
    price_list_id: Identifier | None = Field(default=None, description="Price list used.")


class InvoiceCreated(MessageData):
    invoice_id: Identifier = Field(description="New invoice.")
    currency: CurrencyCode = Field(description="Invoice currency.")
    status: Literal["pending", "closed"] = Field(description="pending (metered) or closed.")
    period_start: dt.date = Field(description="First day of the period.")
    period_end: dt.date = Field(description="Last day of the period.")
    regenerated_from: Identifier | None = Field(default=None, description="Voided invoice it replaces.")


class InvoiceClosed(MessageData):
    invoice_id: Identifier = Field(description="Closed invoice.")
    currency: CurrencyCode = Field(description="Invoice currency.")
    lines: list[Line] = Field(description="Every line of the invoice.")
    subtotal: Money = Field(description="Sum of the lines.")
    period_start: dt.date | None = Field(default=None, description="First day of the period.")
    period_end: dt.date | None = Field(default=None, description="Last day of the period.")
    regenerated_from: Identifier | None = Field(default=None, description="Voided invoice it replaces.")


class InvoiceFinalized(MessageData):
    key_field: ClassVar[str | None] = "rule_set_id"
    invoice_id: Identifier = Field(description="Posted invoice.")
    currency: CurrencyCode = Field(description="Invoice currency.")
    issued_on: dt.date = Field(description="Date the invoice was posted.")
    lines: list[Line] = Field(description="Every line, adjustments included.")
    total: Money = Field(description="Final total; may be negative.")
    rule_set_id: Identifier | None = Field(description="Rule set evaluated (null: none applied).")
    rule_set_version: int | None = Field(description="Version of that rule set.")
    regenerated_from: Identifier | None = Field(default=None, description="Voided invoice it replaces.")


class InvoiceVoided(MessageData):
    invoice_id: Identifier = Field(description="Voided invoice.")
    reason: str = Field(description="Why.")


class InvoiceStatusChanged(MessageData):
    invoice_id: Identifier = Field(description="Invoice.")
    status: InvoiceStatus = Field(description="New status.")


class InvoiceCloseFailed(MessageData):
    """A bill run could not close this invoice; the run's other customers were billed.

    Nothing of this customer's part of the run was saved: the invoice stays pending and the
    next RunBilling tries it again (a CloseInvoice for it is answered with CommandRejected
    and the same code). Keyed by the invoice's customer; its causation_id is the RunBilling."""

    invoice_id: Identifier = Field(description="Invoice left pending.")
    code: str = Field(description="Stable machine-readable code, e.g. total_over_cap.")
    reason: str = Field(description="Why it could not close: a sentence a person can act on.")
    as_of: dt.date = Field(description="The bill run's as_of date.")


# Extensions to CONTRACTS.md v1 (additive): every invoicing command answers with an event.


class PriceListChanged(MessageData):
    key_field: ClassVar[str | None] = "price_list_id"
    price_list_id: Identifier = Field(description="Price list replaced.")
    prices: int = Field(description="Number of prices in it.")


class SubscriptionCreated(MessageData):
    subscription_id: Identifier = Field(description="Subscription id.")
    name: str = Field(description="Shown on the invoice line.")
    fee: Money = Field(description="Fee per billing period.")
    starts_on: dt.date = Field(description="First day billed.")


class SubscriptionCancelled(MessageData):
    subscription_id: Identifier = Field(description="Subscription id.")
    ends_on: dt.date = Field(description="Last day billed.")


class ChargeAdded(MessageData):
    charge_id: Identifier = Field(description="Charge id.")
    amount: Money = Field(description="Charge amount.")
    invoice_id: Identifier | None = Field(
        description="Its own invoice (invoice_now), or null: the next invoice."
    )
