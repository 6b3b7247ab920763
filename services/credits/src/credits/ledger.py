"""The double-entry ledger of one customer's credit.

Every movement of money is one `LedgerEntry` whose postings sum to zero in each
currency. A balance is the sum of an account's postings; nothing is edited in place.

Postings are written from the customer's side: a positive balance is value the
customer holds (credit it can spend), a negative one is value the customer owes.
The accounts outside the customer (the counter-accounts) mirror that.

Chart of accounts
-----------------
The customer's own accounts, one per record, each equal to a field of the state:

- ``promo:<grant_id>`` — promotional credit left on a grant (``remaining``, never < 0).
- ``balance:<lot_id>`` — credit balance left in a lot (``remaining``; never < 0 except
  a shortfall lot, whose negative balance is what the customer owes after a reversed
  payment that had already been refunded).
- ``invoice:<invoice_id>`` — minus the amount still due on a posted invoice; 0 once
  it is paid, or voided.
- ``payment:<payment_id>`` — a received payment not yet allocated: a parked payment
  waiting for its invoice; 0 otherwise.

The counter-accounts, one per kind of flow across the customer's boundary:

- ``promo_issued`` — minus the promotional credit granted (and not deleted).
- ``manual_entries`` — minus the manual credit-balance entries (a negative entry adds).
- ``billed`` — the totals of posted invoices that are not voided.
- ``payments_received`` — minus the payments received and not reversed.
- ``refunds_paid`` — credit balance paid back out to the customer.
- ``expired`` — promotional credit that expired unused.
- ``deducted`` — promotional credit deducted by hand (PromotionalCreditsDeducted).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tally_contracts import Money

PROMO_ISSUED = "promo_issued"
MANUAL_ENTRIES = "manual_entries"
BILLED = "billed"
PAYMENTS_RECEIVED = "payments_received"
REFUNDS_PAID = "refunds_paid"
EXPIRED = "expired"
DEDUCTED = "deducted"


def promo_account(grant_id: str) -> str:
    return f"promo:{grant_id}"


def balance_account(lot_id: str) -> str:
    return f"balance:{lot_id}"


def invoice_account(invoice_id: str) -> str:
    return f"invoice:{invoice_id}"


def payment_account(payment_id: str) -> str:
    return f"payment:{payment_id}"


class UnbalancedEntry(ValueError):
    """An entry's postings do not sum to zero in some currency: a bug, never user input."""


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    amount: Money


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One movement of money. `cause_id` is the message that made it."""

    entry_id: str
    cause_id: str
    memo: str
    postings: tuple[Posting, ...]

    def __post_init__(self) -> None:
        for currency, total in _sums(self.postings).items():
            if not total.is_zero:
                raise UnbalancedEntry(f"entry {self.entry_id} ({self.memo}) is off by {total} in {currency}")


def _sums(postings: Iterable[Posting]) -> dict[str, Money]:
    sums: dict[str, Money] = {}
    for posting in postings:
        currency = posting.amount.currency
        sums[currency] = sums.get(currency, Money.zero(currency)) + posting.amount
    return sums


def account_balances(entries: Iterable[LedgerEntry]) -> dict[tuple[str, str], Money]:
    """Balance of every (account, currency) the entries touch: the sum of its postings."""
    balances: dict[tuple[str, str], Money] = {}
    for entry in entries:
        for posting in entry.postings:
            key = (posting.account, posting.amount.currency)
            balances[key] = balances.get(key, Money.zero(posting.amount.currency)) + posting.amount
    return balances
