"""The rules domain: rule set versions, their validation, and evaluating them on a closed
invoice. Pure: values in, values out; no I/O, no async. Handlers import from here.

Rules this package enforces (documented for billing teams):

- **Versions.** Every valid PutRuleSet makes a new immutable `RuleSetVersion` (1, 2, ...);
  an invalid one is rejected whole with every problem at once (a `DomainError`, code
  `invalid_rule_set`), each naming the rule, the field and what to do.
- **Selection.** An invoice is evaluated with the customer's assigned rule set, else the
  default one (`select_rule_set`); with neither it gets no adjustments, and
  `InvoiceAdjusted` records no rule set. Which set is "the default" when several were put
  with `is_default` is the store's choice (the latest such Put), not the domain's.
- **Currency.** A rule set has no currency: its money thresholds and amounts are read in
  the invoice's currency. Every invoice line must be in that currency.
- **Analyze.** `total` is every line (usage, subscriptions, one-time charges, adjustments
  already on the invoice, and lines added by earlier rules). `transaction_type` is the
  lines of that kind. `service` is the lines of that service, optionally only those whose
  destination belongs to a destination group (the group owning the destination's longest
  matching prefix across all groups). Money sums amounts; units (one service only) sum
  quantities.
- **Order.** Rules run in their listed order; each sees the lines earlier rules added. A
  rule's line belongs to the scope it charged (its apply_to, or the analysed scope), so a
  later rule on that scope, or on the total, sees it.
- **Promotion.** The highest threshold reached (measure >= threshold) applies: a credit of
  its amount, or its percentage of the apply_to charges. Never more than those charges, so
  the apply_to scope never goes below zero; nothing when they are zero or less.
- **Penalty.** The lowest threshold not reached (measure < threshold) applies: a charge of
  its amount, or its percentage of the apply_to charges (nothing when those are zero or
  less). A penalty percentage may exceed 100; a promotion's may not.
- **Minimum amount.** When the analysed charges are below the threshold, a line for the
  difference. The threshold is an amount the bill is topped up to, so it is rounded to
  the currency's minor unit first; the analysed charges then equal it exactly.
- **apply_to.** Optional. Omitted, it is the analysed scope, destination group included
  ("10% of international voice when international voice reaches 50"). A minimum takes
  none: it tops up what it analysed.
- **Lines.** One `adjustment` line per rule at most, id `adj-<rule_id>`, the rule's title
  as description, its tax_code and rule_id, and the service or subscription_id it charged.
  Amounts are rounded once, half-even, to the currency's minor unit; a percentage is taken
  of the exact charges and then rounded. An adjustment that rounds to zero adds no line.
  Money thresholds are compared as written.
"""

from rules.destinations import DestinationGroups
from rules.evaluation import adjust_invoice, evaluate
from rules.rule_sets import RuleSetVersion, put_rule_set, select_rule_set
from rules.running_invoice import Scope
from rules.validation import RuleSetProblem, validate_rule_set

__all__ = [
    "DestinationGroups",
    "RuleSetProblem",
    "RuleSetVersion",
    "Scope",
    "adjust_invoice",
    "evaluate",
    "put_rule_set",
    "select_rule_set",
    "validate_rule_set",
]
