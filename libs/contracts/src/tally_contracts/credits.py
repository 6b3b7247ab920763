"""Topics `credits.commands` and `credits.events`."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tally_contracts.base import Command, MessageData
from tally_contracts.dates import BusinessDate
from tally_contracts.identifiers import Identifier
from tally_contracts.money import Amount, CurrencyCode, Money, StrictDecimal

GrantKind = Literal["promotional", "manual"]
ScopeLineKind = Literal["usage", "subscription", "one_time"]

LOWEST_PRIORITY = 50
"""Priorities run from 1 (spent first) to 50; a grant without one is spent as priority 50."""


class CreditScope(BaseModel):
    """The invoice lines a promotional grant may pay: of one kind, of one service, or both."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    line_kind: ScopeLineKind | None = Field(
        default=None, description="Only lines of this kind: usage, subscription or one_time."
    )
    service: str | None = Field(
        default=None, description="Only lines of this service, e.g. voice.", min_length=1, max_length=100
    )

    @model_validator(mode="after")
    def _names_something(self) -> CreditScope:
        if self.line_kind is None and self.service is None:
            raise ValueError("a scope names a line_kind, a service or both; leave scope out for any line")
        return self


class GrantCredit(Command):
    grant_id: Identifier = Field(description="Grant id.")
    kind: GrantKind = Field(description="promotional, or a manual credit-balance entry.")
    amount: Amount = Field(description="Amount; a manual entry may be negative.")
    source: Literal["promo_code", "referral", "manual", "refund", "other"] = Field(
        description="Where the credit comes from."
    )
    reason: str | None = Field(default=None, description="Why.", max_length=500)
    expires_at: BusinessDate | None = Field(
        default=None, description="Last day the credit can be used (promotional)."
    )
    apply_to_existing: bool = Field(
        default=True,
        description="Pay unpaid posted invoices at once; false waits for ApplyCredits.",
    )
    priority: int | None = Field(
        default=None,
        ge=1,
        le=LOWEST_PRIORITY,
        description="Promotional: 1 is spent first, 50 last; none is spent as 50. Then nearest expiry, oldest.",
    )
    scope: CreditScope | None = Field(
        default=None, description="Promotional: pays only invoice lines in this scope; none: any line."
    )


class DeleteCreditEntry(Command):
    grant_id: Identifier = Field(description="Grant or manual entry to delete (no part used).")


class ChangeCreditCurrency(Command):
    grant_id: Identifier = Field(description="Unused grant to convert.")
    currency: CurrencyCode = Field(description="New currency.")
    rate: StrictDecimal = Field(description="Units of the new currency per unit of the old.", gt=0)


class ApplyCredits(Command):
    """Apply available credit now: to every open invoice (no invoice_id), lifting holds;
    or to the one invoice named, up to `amount` (default: as much as is available and due)."""

    invoice_id: Identifier | None = Field(
        default=None, description="Apply only to this posted invoice; none: every open invoice."
    )
    amount: Amount | None = Field(
        default=None,
        description="With invoice_id: apply exactly this, at most min(credit available, amount due).",
    )


class ExpireCredits(Command):
    as_of: BusinessDate = Field(description="Expire what is left of grants that expired before this date.")


class CreditGranted(MessageData):
    grant_id: Identifier = Field(description="Grant id.")
    kind: GrantKind = Field(description="promotional or manual.")
    amount: Money = Field(description="Amount granted.")
    source: str = Field(description="Where the credit comes from.")
    reason: str | None = Field(default=None, description="Why.")
    expires_at: dt.date | None = Field(default=None, description="Last day usable.")
    priority: int | None = Field(default=None, description="Burn priority (1 first); none: 50.")
    scope: CreditScope | None = Field(default=None, description="Invoice lines it may pay; none: any.")


class CreditApplied(MessageData):
    application_id: Identifier = Field(description="Application id.")
    invoice_id: Identifier = Field(description="Invoice paid.")
    source_type: Literal["promotional", "credit_balance", "payment"] = Field(description="Source.")
    source_id: Identifier = Field(description="Grant, payment or balance entry applied.")
    amount: Money = Field(description="Amount applied.")


class CreditReleased(MessageData):
    application_id: Identifier = Field(description="Application released.")
    invoice_id: Identifier = Field(description="Invoice it was on.")
    amount: Money = Field(description="Amount released.")
    returned_to: Literal["promotional", "credit_balance", "expired", "payment_reversed"] = Field(
        description="Where the money went."
    )


class NegativeInvoiceTransferred(MessageData):
    invoice_id: Identifier = Field(description="Negative invoice.")
    amount: Money = Field(description="Amount moved to the credit balance (positive).")


class CreditExpired(MessageData):
    grant_id: Identifier = Field(description="Grant.")
    amount: Money = Field(description="Amount expired.")


class CreditEntryDeleted(MessageData):
    grant_id: Identifier = Field(description="Grant or entry deleted.")
    amount: Money = Field(description="Its amount.")


class CreditCurrencyChanged(MessageData):
    grant_id: Identifier = Field(description="Grant converted.")
    from_amount: Money = Field(description="Amount before.")
    to_amount: Money = Field(description="Amount after, rounded to the new currency.")
    rate: StrictDecimal = Field(description="Rate used.")


class CreditRefunded(MessageData):
    refund_id: Identifier = Field(description="Refund.")
    amount: Money = Field(description="Amount debited from the credit balance.")


class RefundDeclined(MessageData):
    refund_id: Identifier = Field(description="Refund.")
    amount: Money = Field(description="Amount asked.")
    reason: str = Field(description="Why it was declined.")


class InvoiceBalanceChanged(MessageData):
    invoice_id: Identifier = Field(description="Invoice.")
    total: Money = Field(description="Invoice total.")
    credits_applied: Money = Field(description="Promotional credit and credit balance applied.")
    payments_applied: Money = Field(description="Payments applied.")
    amount_due: Money = Field(description="total − credits_applied − payments_applied.")
    status: Literal["open", "paid", "voided"] = Field(description="open, paid or voided.")


class CreditBalanceChanged(MessageData):
    currency: CurrencyCode = Field(description="Currency.")
    promotional_available: Money = Field(description="Promotional credit left.")
    balance_available: Money = Field(description="Credit balance left.")
