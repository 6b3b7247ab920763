"""The invoicing domain: billing periods, rating, aggregation, proration, closing and
finalising invoices. Pure: values in, values out; no I/O.

A handler loads the customer's open items (never its posted history), calls one decision
and saves and publishes what it returns: `accounts` (customers, subscriptions, charges),
`usage_placement` (which invoice a usage goes on), `closing` (what an invoice closes
with), `posting` (post, void, paid). A broken business rule raises
`DomainError(code, reason)` and changes nothing; the handler answers a command with
CommandRejected and dead-letters an event. The values they share are in `periods`,
`rating`, `subscriptions` and `invoices`; this module names them all.

Rules this module enforces (documented for billing teams):

- **Periods.** A customer's period starts on its `billing_day` (1–28) and ends the day
  before the same day next month. A day belongs to exactly one period.
- **Rating.** Usage with an `amount` is pre-rated and taken as is (its currency must be
  the customer's). Otherwise the price list rates it: same service, unit and currency;
  among prices whose `destination_prefix` starts the destination (no prefix matches
  everything), the longest prefix wins. No price and no amount: the usage is refused.
- **Aggregation.** Usage adds to one line per (service, unit, destination, late) of the
  period's invoice. Quantities and unrounded amounts are summed exactly; the line amount is
  rounded (half-even, minor unit) once, when the invoice closes. So the order and
  batching of usage never change a total.
- **Usage ids.** Each usage event (by its message id) is on exactly one usage line: the
  line it was folded into. A regeneration takes the usage of the voided invoice with it.
- **Late usage.** Usage for a period whose invoice is already closed (or for a period
  never invoiced, once a later period is billed) goes on the customer's newest pending
  invoice — or, when none is pending, on the invoice of the period after the newest
  period invoice, opened for it — on a line marked `late` (`usage_placement`).
- **Proration.** A subscription's line for a period is fee × days active in the period ÷
  days in the period, both ends inclusive, computed exactly and rounded half-even to the
  minor unit. A full period is the fee.
- **Unit price shown.** Usage is billed by its amount: pre-rated usage by the amount sent,
  the rest by quantity × price; the line amount is their sum, rounded half-even to the
  minor unit at close. The unit price on a usage line is informational only: the line's
  unrounded amount ÷ its quantity, rounded half-even to 12 decimal places (the price
  itself for usage rated by one price; for pre-rated usage 1.00 for 3 units, 0.333333333333).
  None when the quotient is not below 10^15; for a quantity of 0, the last price rated.
- **Totals.** subtotal = sum of the rounded charge lines; total = subtotal + adjustment
  lines from the rules service (it may be negative). A sum stays below `MAX_ABS_TOTAL` and
  a line's quantity below `MAX_ABS_AMOUNT`: the usage, charge or subscription that would
  take an open invoice past them is refused where it is added, and an invoice that would
  still pass them at close is not closed (the bill run reports it and goes on).
- **Invoice ids.** `inv-` + a UUID 5 of (kind, customer, charge id / period start / voided
  invoice): unique by construction across customers, kinds and periods, and always 40
  characters, so a command can name it.
- **Dates.** Date arithmetic near the ends of the calendar is refused with
  `date_out_of_range`, never raised as a bug.
"""

from invoicing.invoices import (
    CHARGE_KINDS,
    INVOICE_ID_NAMESPACE,
    InvoiceState,
    check_currency_change,
    check_same_currency,
    finalized_total,
    invoice_id,
    one_time_invoice_id,
    one_time_line,
    open_invoice_sums,
    period_invoice_id,
    regenerated_invoice_id,
    regenerated_lines,
    require_status,
    subtotal,
    usage_line,
)
from invoicing.periods import add_months, next_period, period_of
from invoicing.rating import (
    EXACT,
    MAX_LINE_QUANTITY,
    UNIT_PRICE_PLACES,
    InvoiceSums,
    PriceList,
    RatedUsage,
    UsageDelta,
    find_price,
    fold_usage,
    informational_unit_price,
    rate_usage,
    usage_line_id,
)
from invoicing.subscriptions import Subscription, cancelled, prorated_fee, share_of, subscription_lines

__all__ = [
    "CHARGE_KINDS",
    "EXACT",
    "INVOICE_ID_NAMESPACE",
    "MAX_LINE_QUANTITY",
    "UNIT_PRICE_PLACES",
    "InvoiceState",
    "InvoiceSums",
    "PriceList",
    "RatedUsage",
    "Subscription",
    "UsageDelta",
    "add_months",
    "cancelled",
    "check_currency_change",
    "check_same_currency",
    "finalized_total",
    "find_price",
    "fold_usage",
    "informational_unit_price",
    "invoice_id",
    "next_period",
    "one_time_invoice_id",
    "one_time_line",
    "open_invoice_sums",
    "period_invoice_id",
    "period_of",
    "prorated_fee",
    "rate_usage",
    "regenerated_invoice_id",
    "regenerated_lines",
    "require_status",
    "share_of",
    "subscription_lines",
    "subtotal",
    "usage_line",
    "usage_line_id",
]
