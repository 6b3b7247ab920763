"""The credits domain: one customer's ledger of promotional credit, credit balance, and
what is applied to which invoice. Pure: a state and a message in, an `Outcome` out (the
next state, the events to publish, the ledger entries to append); no I/O.

A handler loads the customer's open items as a `CustomerLedger` (`credits.open_items`:
what the message can still change, never the settled history), calls one operation with
the message's data and its `Cause` (message id and the envelope's `occurred_at` day),
saves what `outcome.state` changed, appends `outcome.entries` and publishes
`outcome.events`. An operation decides the same on the open items as on the whole ledger. A broken
business rule raises `DomainError(code, reason)` and changes nothing; the handler
answers a command with CommandRejected. Allocation rules are in `credits.allocation`,
the chart of accounts in `credits.ledger`.

Rules decided here (for billing teams):

- **Rounding.** Every amount that enters the ledger is rounded to its currency's minor
  unit first (`Money.rounded`, half to even); a converted grant is amount × rate, rounded.
- **Caps.** A single amount (a grant, a payment, a refund) is below `MAX_ABS_AMOUNT`
  (10^15) by contract; sums may pass it but stay below `MAX_ABS_TOTAL` (10^18): a grant
  that would take the promotional credit or the credit balance to the total cap is
  refused (`total_over_limit`, naming the amount); a payment, a negative invoice or a
  release that would is refused the same way, so the event goes to the DLQ with that
  reason and no CreditBalanceChanged carries a sum its consumers would refuse. An
  invoice total that rounds to the total cap is refused (`total_over_limit`); a currency
  change that would make a grant reach the single-amount cap is refused
  (`amount_over_limit`, naming the rate).
- **Duplicates.** A grant, invoice or payment id seen before with the same content
  changes nothing; with other content it is refused (`*_conflict`). A refund or
  deduction id seen before, and a second void, deletion or reversal, change nothing.
- **Events.** What happened (CreditGranted, CreditApplied, …) in order, then one
  InvoiceBalanceChanged per invoice touched, then one CreditBalanceChanged per currency
  whose promotional credit or credit balance changed.
- **Dates.** `expires_at` is the last day a grant can be used. A grant pays an invoice
  whose `issued_on` is on or before that day, whatever order the grant and the invoice
  arrive in (a late, backdated grant does not pay an invoice issued after its last day;
  an invoice issued by that day but delivered later is paid). ExpireCredits(as_of)
  expires what is left of grants whose last day is before `as_of`. A deduction takes only
  grants usable on its message's date. Voiding an invoice on a day after a grant's last
  day expires the promotional credit it releases at once (`returned_to: expired`).
  Granting credit whose last day is before its message's date is refused.
- **Burn order.** Promotional grants first: by `priority` (1 first … 50; a grant without
  one counts as 50), then the nearest last day (never-expiring last), then the oldest;
  then the credit balance, oldest lot first. Without priorities this is the old order.
- **Scope.** A grant with a scope (`line_kind` usage, subscription or one_time, and/or a
  `service`) pays only the invoice's lines in that scope: at most each line's amount less
  what scoped grants already paid on it, lines filled in line order, and never more than
  the invoice's amount due. Adjustment lines (rules: discounts, taxes) are in no scope.
  Line amounts are rounded to the minor unit (half to even) when the invoice is recorded;
  the split itself needs no rounding. A manual entry has no priority and no scope.
- **ApplyCredits.** Without fields: lift every hold and apply what can be applied (a
  command with nothing to apply changes nothing). With `invoice_id`: pay that invoice
  only, from every source that may pay it (held ones too, in the burn order), as much as
  is available and due, or exactly `amount`. Refused, changing nothing: an unknown,
  voided or paid invoice; an amount in another currency, not positive, over the amount
  due or over the credit that can pay it; credit only in another currency; no credit;
  an `amount` without `invoice_id`.
- **Manual entries** are credit-balance lots. A negative entry takes the credit balance
  down at once (oldest lot first) and is refused if the balance would go below zero. An
  entry (promotional or manual) can be deleted only while no part of it was used; a
  negative entry is used the moment it is made (grant a positive entry to undo it).
- **Currency change** converts only an unused promotional grant; a manual entry is
  deleted and granted again in the new currency instead.
- **Negative invoices.** Their |total| moves to the credit balance at once (lot
  `invoice:<id>`) and the invoice is paid; voiding one takes that credit back.
- **Payments.** A payment pays the invoice it names up to its amount due; the excess, or
  a payment naming no invoice, becomes credit balance and pays other open invoices. A
  payment naming an invoice credits has not seen is parked and pays it when the invoice
  is posted, after credit is applied (nothing is published while it waits): the same
  split as when the payment arrives after the invoice, whatever order the topics deliver
  in. A payment
  whose currency differs from its invoice's never pays that invoice: it becomes credit
  balance in its own currency, whole (also when it was parked).
- **Void.** Every application on the invoice is released: promotional credit to its
  grant (or expired), credit balance to its lot, a payment to a new credit-balance lot.
  Released credit then pays the customer's other open invoices, oldest first; what is
  left pays the regenerated invoice when it is posted. A regenerated invoice takes the
  place in "oldest first" of the invoice it replaces.
- **Reversal.** A reversed payment is taken off the invoices it paid (they reopen) and
  its credit-balance lots are withdrawn, after releasing whatever they paid. The part
  already refunded (or used to settle a debt) cannot be taken back: it becomes a
  shortfall, a negative lot `shortfall:payment:<payment_id>` that later credit balance
  settles before it pays any invoice. So the credit balance can be negative (the
  customer owes it); promotional grants never go below zero. Voiding a negative invoice
  whose credit was already refunded works the same way.
- **Refunds** debit the credit balance, oldest lot first, when it covers the amount;
  otherwise they are declined with the reason and the balance is untouched.
- **Deduction** (PromotionalCreditsDeducted) takes promotional credit off the named
  grant, or off usable grants in the order they are spent; more than is there is refused.
"""

from credits.applying import apply_credits
from credits.change import Cause, Outcome
from credits.customer import (
    Application,
    CreditLot,
    CustomerLedger,
    Deduction,
    Invoice,
    InvoiceBalance,
    Payment,
    PromotionalGrant,
    Refund,
)
from credits.grants import (
    change_credit_currency,
    deduct_promotional,
    delete_credit_entry,
    expire_credits,
    grant_credit,
)
from credits.invoices import finalize_invoice, void_invoice
from credits.ledger import LedgerEntry, Posting, account_balances
from credits.payments import record_payment, refund, reverse_payment

__all__ = [
    "Application",
    "Cause",
    "CreditLot",
    "CustomerLedger",
    "Deduction",
    "Invoice",
    "InvoiceBalance",
    "LedgerEntry",
    "Outcome",
    "Payment",
    "Posting",
    "PromotionalGrant",
    "Refund",
    "account_balances",
    "apply_credits",
    "change_credit_currency",
    "deduct_promotional",
    "delete_credit_entry",
    "expire_credits",
    "finalize_invoice",
    "grant_credit",
    "record_payment",
    "refund",
    "reverse_payment",
    "void_invoice",
]
