"""Which invoice lines a scoped promotional grant pays.

A grant's scope names a line kind (usage, subscription, one_time), a service, or both;
adjustment lines (rules: discounts, taxes) are in no scope. Each line in scope can take
its amount less what scoped grants already paid on it; a grant fills those lines in line
order, and never more than the invoice's amount due (the caller caps `most` by it).
Unscoped credit and payments pay the invoice as a whole and are not split by line. Line
amounts are rounded to the currency's minor unit (half to even) when the invoice is
recorded, so the split itself never rounds.
"""

from __future__ import annotations

from credits.change import Change
from credits.customer import GrantScope, Invoice, LinePart
from tally_contracts import Money


def scoped_parts(change: Change, invoice: Invoice, scope: GrantScope, most: Money) -> tuple[LinePart, ...]:
    """Up to `most` spread over the invoice's lines in `scope`, in line order, each line
    taking at most its amount less what scoped grants already paid on it."""
    paid: dict[str, Money] = {}
    for application in change.active_applications(invoice_id=invoice.invoice_id):
        for part in application.lines:
            before = paid.get(part.line_id)
            paid[part.line_id] = part.amount if before is None else before + part.amount
    parts: list[LinePart] = []
    left = most
    for line in invoice.lines:
        if not left.is_positive:
            break
        if not scope.covers(line):
            continue
        before = paid.get(line.line_id)
        room = line.amount if before is None else line.amount - before
        if room.is_positive:
            take = room.min(left)
            parts.append(LinePart(line.line_id, take))
            left = left - take
    return tuple(parts)
