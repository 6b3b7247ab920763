"""Topics `payments.commands` and `payments.events`."""

import datetime as dt
from typing import Literal

from pydantic import Field

from tally_contracts.base import Command, MessageData
from tally_contracts.dates import BusinessDate
from tally_contracts.identifiers import Identifier
from tally_contracts.money import Amount, Money

PaymentMethod = Literal["cash", "check", "bank_transfer", "other"]


class RecordOfflinePayment(Command):
    payment_id: Identifier = Field(description="Payment id.")
    invoice_id: Identifier | None = Field(default=None, description="Invoice paid; none: credit balance.")
    amount: Amount = Field(description="Amount received (positive).")
    method: PaymentMethod = Field(description="cash, check, bank_transfer or other.")
    reference: str | None = Field(default=None, description="Check number, transfer ref.", max_length=200)
    received_on: BusinessDate = Field(description="Date received.")


class ReversePayment(Command):
    payment_id: Identifier = Field(description="Payment to reverse (a bounced check).")
    reason: str = Field(description="Why.", max_length=500)


class DeductPromotionalCredits(Command):
    deduction_id: Identifier = Field(description="Deduction id.")
    amount: Amount = Field(description="Amount to deduct from promotional credits (positive).")
    reason: str = Field(description="Why.", max_length=500)
    grant_id: Identifier | None = Field(default=None, description="Grant to deduct from; none: any.")


class RefundCreditBalance(Command):
    refund_id: Identifier = Field(description="Refund id.")
    amount: Amount = Field(description="Amount to pay back out of the credit balance (positive).")
    method: PaymentMethod = Field(description="How it is paid out.")
    reference: str | None = Field(default=None, description="Reference.", max_length=200)


class PaymentRecorded(MessageData):
    payment_id: Identifier = Field(description="Payment id.")
    invoice_id: Identifier | None = Field(default=None, description="Invoice named, if any.")
    amount: Money = Field(description="Amount received.")
    method: PaymentMethod = Field(description="Method.")
    reference: str | None = Field(default=None, description="Reference.")
    received_on: dt.date = Field(description="Date received.")


class PaymentReversed(MessageData):
    payment_id: Identifier = Field(description="Payment reversed.")
    amount: Money = Field(description="Its amount.")
    reason: str = Field(description="Why.")


class PromotionalCreditsDeducted(MessageData):
    deduction_id: Identifier = Field(description="Deduction id.")
    amount: Money = Field(description="Amount deducted.")
    reason: str = Field(description="Why.")
    grant_id: Identifier | None = Field(default=None, description="Grant named, if any.")


class RefundRequested(MessageData):
    refund_id: Identifier = Field(description="Refund id.")
    amount: Money = Field(description="Amount asked.")
    method: PaymentMethod = Field(description="Method.")
    reference: str | None = Field(default=None, description="Reference.")


class RefundRecorded(MessageData):
    refund_id: Identifier = Field(description="Refund id.")
    amount: Money = Field(description="Amount paid out.")
    method: PaymentMethod = Field(description="Method.")
    reference: str | None = Field(default=None, description="Reference.")


class RefundFailed(MessageData):
    refund_id: Identifier = Field(description="Refund id.")
    amount: Money = Field(description="Amount asked.")
    reason: str = Field(description="Why it failed.")
