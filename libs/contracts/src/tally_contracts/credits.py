"""Topics `credits.commands` and `credits.events`."""

import datetime as dt
from typing import Literal

from pydantic import Field

from tally_contracts.base import Command, Identifier, MessageData
from tally_contracts.money import CurrencyCode, Money, StrictDecimal

GrantKind = Literal["promotional", "manual"]


class GrantCredit(Command):
    grant_id: Identifier = Field(description="Grant id.")
    kind: GrantKind = Field(description="promotional, or a manual credit-balance entry.")
    amount: Money = Field(description="Amount; a manual entry may be negative.")
    source: Literal["promo_code", "referral", "manual", "refund", "other"] = Field(
        description="Where the credit comes from."
    )
    reason: str | None = Field(default=None, description="Why.", max_length=500)
    expires_at: dt.date | None = Field(
        default=None, description="Last day the credit can be used (promotional)."
    )
    apply_to_existing: bool = Field(
        default=True,
        description="Pay unpaid posted invoices at once; false waits for ApplyCredits.",
    )


class DeleteCreditEntry(Command):
    grant_id: Identifier = Field(description="Grant or manual entry to delete (no part used).")


class ChangeCreditCurrency(Command):
    grant_id: Identifier = Field(description="Unused grant to convert.")
    currency: CurrencyCode = Field(description="New currency.")
    rate: StrictDecimal = Field(description="Units of the new currency per unit of the old.", gt=0)


class ApplyCredits(Command):
    """Apply available credit to the customer's open invoices now."""


class ExpireCredits(Command):
    as_of: dt.date = Field(description="Expire what is left of grants that expired before this date.")


class CreditGranted(MessageData):
    grant_id: str = Field(description="Grant id.")
    kind: GrantKind = Field(description="promotional or manual.")
    amount: Money = Field(description="Amount granted.")
    source: str = Field(description="Where the credit comes from.")
    reason: str | None = Field(default=None, description="Why.")
    expires_at: dt.date | None = Field(default=None, description="Last day usable.")


class CreditApplied(MessageData):
    application_id: str = Field(description="Application id.")
    invoice_id: str = Field(description="Invoice paid.")
    source_type: Literal["promotional", "credit_balance", "payment"] = Field(description="Source.")
    source_id: str = Field(description="Grant, payment or balance entry applied.")
    amount: Money = Field(description="Amount applied.")


class CreditReleased(MessageData):
    application_id: str = Field(description="Application released.")
    invoice_id: str = Field(description="Invoice it was on.")
    amount: Money = Field(description="Amount released.")
    returned_to: Literal["promotional", "credit_balance", "expired", "payment_reversed"] = Field(
        description="Where the money went."
    )


class NegativeInvoiceTransferred(MessageData):
    invoice_id: str = Field(description="Negative invoice.")
    amount: Money = Field(description="Amount moved to the credit balance (positive).")


class CreditExpired(MessageData):
    grant_id: str = Field(description="Grant.")
    amount: Money = Field(description="Amount expired.")


class CreditEntryDeleted(MessageData):
    grant_id: str = Field(description="Grant or entry deleted.")
    amount: Money = Field(description="Its amount.")


class CreditCurrencyChanged(MessageData):
    grant_id: str = Field(description="Grant converted.")
    from_amount: Money = Field(description="Amount before.")
    to_amount: Money = Field(description="Amount after, rounded to the new currency.")
    rate: StrictDecimal = Field(description="Rate used.")


class CreditRefunded(MessageData):
    refund_id: str = Field(description="Refund.")
    amount: Money = Field(description="Amount debited from the credit balance.")


class RefundDeclined(MessageData):
    refund_id: str = Field(description="Refund.")
    amount: Money = Field(description="Amount asked.")
    reason: str = Field(description="Why it was declined.")


class InvoiceBalanceChanged(MessageData):
    invoice_id: str = Field(description="Invoice.")
    total: Money = Field(description="Invoice total.")
    credits_applied: Money = Field(description="Promotional credit and credit balance applied.")
    payments_applied: Money = Field(description="Payments applied.")
    amount_due: Money = Field(description="total − credits_applied − payments_applied.")
    status: Literal["open", "paid", "voided"] = Field(description="open, paid or voided.")


class CreditBalanceChanged(MessageData):
    currency: CurrencyCode = Field(description="Currency.")
    promotional_available: Money = Field(description="Promotional credit left.")
    balance_available: Money = Field(description="Credit balance left.")
