"""Which invoice a usage goes on: its period's, or — when that period is billed — the
customer's pending invoice as late usage. Pure: a customer's open period invoices in, a
`UsageTarget` out.

The rule (the domain's **late usage**):

- The usage's period has a pending invoice: it goes there.
- The period has no invoice and no later period is billed yet: its invoice is opened.
- Otherwise (the period is billed, or a later one is) the usage is late: it goes on the
  customer's newest pending invoice, or on the invoice of the period after the newest
  period invoice, opened for it, on a line marked `late`.

What the rule needs is bounded by open items, never by history: the pending period
invoices, the newest billed one (whether a later period is billed, and where the next
period starts), and the invoices of the periods the usage names."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from invoicing.invoices import InvoiceState
from invoicing.periods import next_period


@dataclass(frozen=True, slots=True)
class CustomerPeriods:
    """One customer's period invoices as far as placing usage needs them.

    `pending`: the pending period invoices, oldest period first. `newest_billed`: the
    period invoice with the latest start among those no longer pending. `named`: the
    period invoices (any status) of the periods the usage names, by period start."""

    pending: tuple[InvoiceState, ...] = ()
    newest_billed: InvoiceState | None = None
    named: Mapping[dt.date, InvoiceState] = field(default_factory=dict)

    def of_period(self, start: dt.date) -> InvoiceState | None:
        found = self.named.get(start)
        if found is None:
            found = next((i for i in self.pending if i.period_start == start), None)
        return found

    def with_opened(self, invoice: InvoiceState) -> CustomerPeriods:
        """These periods once `invoice` (pending) is opened."""
        pending = tuple(sorted((*self.pending, invoice), key=lambda i: i.period_start))
        return replace(self, pending=pending, named={**self.named, invoice.period_start: invoice})

    def newest(self) -> InvoiceState | None:
        """The period invoice with the latest start, whatever its status."""
        candidates = [*self.pending, *self.named.values()]
        if self.newest_billed is not None:
            candidates.append(self.newest_billed)
        return max(candidates, key=lambda i: i.period_start, default=None)


@dataclass(frozen=True, slots=True)
class UsageTarget:
    """Where a usage goes: the invoice of the period `start`–`end` (`invoice_id` None: open it
    first), on a late line or not."""

    start: dt.date
    end: dt.date
    late: bool
    invoice_id: str | None = None


def usage_target(periods: CustomerPeriods, start: dt.date, end: dt.date, billing_day: int) -> UsageTarget:
    """The invoice usage of the period `start`–`end` goes on (the module's rule). Raises
    DomainError (`date_out_of_range`) when the next period is past the calendar."""
    exact = periods.of_period(start)
    billed_later = periods.newest_billed is not None and periods.newest_billed.period_start > start
    if exact is not None and exact.status == "pending":
        return UsageTarget(exact.period_start, exact.period_end, False, exact.invoice_id)
    if exact is None and not billed_later:
        return UsageTarget(start, end, False)
    if periods.pending:
        newest_pending = periods.pending[-1]
        return UsageTarget(
            newest_pending.period_start, newest_pending.period_end, True, newest_pending.invoice_id
        )
    newest = periods.newest()
    if newest is None:  # exact or billed_later is set, so there is one
        raise AssertionError("a billed period without a period invoice")
    following_start, following_end = next_period(newest.period_end, billing_day)
    return UsageTarget(following_start, following_end, True)
