"""Credit entries: promotional grants and manual credit-balance entries — granting,
deleting, converting, deducting, expiring. Rules: `credits.domain`."""

from __future__ import annotations

from dataclasses import replace

from credits.allocation import finish, usable_grants
from credits.change import Cause, Change, Outcome
from credits.customer import (
    CreditLot,
    CustomerLedger,
    Deduction,
    GrantScope,
    PromotionalGrant,
    manual_lot_id,
    total_of,
)
from credits.ledger import DEDUCTED, EXPIRED, MANUAL_ENTRIES, PROMO_ISSUED, balance_account, promo_account
from tally_contracts import DomainError, Money
from tally_contracts.credits import (
    ChangeCreditCurrency,
    CreditCurrencyChanged,
    CreditEntryDeleted,
    CreditExpired,
    CreditGranted,
    DeleteCreditEntry,
    ExpireCredits,
    GrantCredit,
)
from tally_contracts.money import MAX_ABS_AMOUNT, MAX_ABS_TOTAL, within_amount_limit, within_total_limit
from tally_contracts.payments import PromotionalCreditsDeducted


def grant_credit(state: CustomerLedger, command: GrantCredit, cause: Cause) -> Outcome:
    amount = command.amount.rounded()
    if _same_grant_exists(state, command, amount):
        return Outcome.unchanged(state)
    if amount.is_zero:
        raise DomainError("zero_amount", f"grant {command.grant_id} is for zero; send a non-zero amount")
    _check_total_after_grant(state, command, amount)
    change = Change(state, cause)
    if command.kind == "promotional":
        _grant_promotional(change, command, amount)
    else:
        _grant_manual(change, command, amount)
    change.publish(
        CreditGranted(
            grant_id=command.grant_id,
            kind=command.kind,
            amount=amount,
            source=command.source,
            reason=command.reason,
            expires_at=command.expires_at,
            priority=command.priority,
            scope=command.scope,
        )
    )
    return finish(change)


def _same_grant_exists(state: CustomerLedger, command: GrantCredit, amount: Money) -> bool:
    """True for a grant already recorded with this content; a different content is refused."""
    grant, lot = state.grant(command.grant_id), state.lot(manual_lot_id(command.grant_id))
    recorded: tuple[object, ...]
    if grant is not None:
        recorded = (
            "promotional",
            grant.granted,
            grant.source,
            grant.reason,
            grant.expires_at,
            grant.priority,
            grant.scope,
        )
    elif lot is not None:
        recorded = ("manual", lot.amount, lot.source, lot.reason, None, None, None)
    else:
        return False
    asked = (
        command.kind,
        amount,
        command.source,
        command.reason,
        command.expires_at,
        command.priority,
        scope_of(command),
    )
    if recorded != asked:
        raise DomainError(
            "grant_conflict",
            f"grant {command.grant_id} already exists with other content; send a new grant_id",
        )
    return True


def scope_of(command: GrantCredit) -> GrantScope | None:
    scope = command.scope
    return None if scope is None else GrantScope(scope.line_kind, scope.service)


def _check_total_after_grant(state: CustomerLedger, command: GrantCredit, amount: Money) -> None:
    """A grant may not take the promotional credit or credit balance to MAX_ABS_TOTAL."""
    if command.kind == "promotional":
        what, total = "promotional credit", state.promotional_available(amount.currency) + amount
    else:
        what, total = "credit balance", state.balance_available(amount.currency) + amount
    if not within_total_limit(total.amount):
        raise DomainError(
            "total_over_limit",
            f"the amount of grant {command.grant_id} ({amount}) would take the {what} to {total}, past "
            f"the limit of {MAX_ABS_TOTAL:,}; grant less",
        )


def _grant_promotional(change: Change, command: GrantCredit, amount: Money) -> None:
    if amount.is_negative:
        raise DomainError(
            "negative_promotional_credit",
            f"promotional credit must be positive, not {amount}; deduct promotional credit instead",
        )
    if command.expires_at is not None and command.expires_at < change.cause.on:
        raise DomainError(
            "grant_already_expired",
            f"grant {command.grant_id} expires on {command.expires_at}, before {change.cause.on}; "
            "send a later expires_at",
        )
    seq = change.take_seq()
    zero = Money.zero(amount.currency)
    change.put_grant(
        PromotionalGrant(
            grant_id=command.grant_id,
            granted=amount,
            amount=amount,
            remaining=amount,
            expired=zero,
            deducted=zero,
            expires_at=command.expires_at,
            seq=seq,
            source=command.source,
            reason=command.reason,
            first_eligible_seq=0 if command.apply_to_existing else seq + 1,
            priority=command.priority,
            scope=scope_of(command),
        )
    )
    change.post(
        f"grant {command.grant_id}", (PROMO_ISSUED, -amount), (promo_account(command.grant_id), amount)
    )


def _grant_manual(change: Change, command: GrantCredit, amount: Money) -> None:
    if command.priority is not None or command.scope is not None:
        raise DomainError(
            "manual_entry_has_no_priority_or_scope",
            f"manual entry {command.grant_id} has a priority or a scope; the credit balance pays any "
            "invoice line, after promotional credit — send it without them or grant promotional credit",
        )
    if command.expires_at is not None:
        raise DomainError(
            "manual_entry_cannot_expire",
            f"manual entry {command.grant_id} has an expires_at; the credit balance does not expire, "
            "send it without expires_at or grant promotional credit",
        )
    available = change.balance_available(amount.currency)
    if amount.is_negative and available + amount < Money.zero(amount.currency):
        raise DomainError(
            "insufficient_credit",
            f"manual entry {command.grant_id} of {amount} would take the credit balance of {available} "
            "below zero; enter at most the balance",
        )
    seq = change.take_seq()
    lot = CreditLot(
        lot_id=manual_lot_id(command.grant_id),
        origin="manual",
        origin_id=command.grant_id,
        amount=amount,
        remaining=amount,
        seq=seq,
        first_eligible_seq=0 if command.apply_to_existing else seq + 1,
        source=command.source,
        reason=command.reason,
    )
    change.put_lot(lot)
    change.post(
        f"manual entry {command.grant_id}", (MANUAL_ENTRIES, -amount), (balance_account(lot.lot_id), amount)
    )


def delete_credit_entry(state: CustomerLedger, command: DeleteCreditEntry, cause: Cause) -> Outcome:
    """Delete a grant or manual entry no part of which is used; deleting twice changes nothing."""
    grant, lot = state.grant(command.grant_id), state.lot(manual_lot_id(command.grant_id))
    change = Change(state, cause)
    if grant is not None:
        if grant.status == "deleted":
            return Outcome.unchanged(state)
        if grant.remaining != grant.amount:
            raise DomainError(
                "credit_entry_used",
                f"grant {grant.grant_id} is used: only {grant.remaining} of {grant.amount} is left; "
                "an entry can be deleted only while no part of it is used — deduct the rest instead",
            )
        change.put_grant(replace(grant, remaining=Money.zero(grant.currency), status="deleted"))
        change.post(
            f"delete {grant.grant_id}",
            (promo_account(grant.grant_id), -grant.amount),
            (PROMO_ISSUED, grant.amount),
        )
        deleted = grant.amount
    elif lot is not None:
        if lot.status == "deleted":
            return Outcome.unchanged(state)
        if lot.amount.is_negative:
            raise DomainError(
                "credit_entry_used",
                f"manual entry {command.grant_id} of {lot.amount} has already reduced the credit balance; "
                f"grant a manual entry of {-lot.amount} to undo it",
            )
        if lot.remaining != lot.amount:
            raise DomainError(
                "credit_entry_used",
                f"manual entry {command.grant_id} is used: only {lot.remaining} of {lot.amount} is left; "
                f"an entry can be deleted only while no part of it is used — enter a negative manual entry instead",
            )
        change.put_lot(replace(lot, remaining=Money.zero(lot.currency), status="deleted"))
        change.post(
            f"delete {lot.lot_id}", (balance_account(lot.lot_id), -lot.amount), (MANUAL_ENTRIES, lot.amount)
        )
        deleted = lot.amount
    else:
        raise _unknown_entry(command.grant_id)
    change.publish(CreditEntryDeleted(grant_id=command.grant_id, amount=deleted))
    return finish(change)


def _unknown_entry(grant_id: str) -> DomainError:
    return DomainError(
        "unknown_credit_entry", f"no credit entry {grant_id!r} for this customer; check the grant_id"
    )


def change_credit_currency(state: CustomerLedger, command: ChangeCreditCurrency, cause: Cause) -> Outcome:
    grant = state.grant(command.grant_id)
    if grant is None:
        if state.lot(manual_lot_id(command.grant_id)) is not None:
            raise DomainError(
                "not_promotional",
                f"{command.grant_id} is a manual entry; delete it and grant a new one in {command.currency}",
            )
        raise _unknown_entry(command.grant_id)
    if grant.status == "deleted":
        raise DomainError("credit_entry_deleted", f"grant {grant.grant_id} was deleted; grant a new one")
    if grant.currency == command.currency:
        raise DomainError("same_currency", f"grant {grant.grant_id} is already in {command.currency}")
    if grant.remaining != grant.amount:
        raise DomainError(
            "credit_entry_used",
            f"grant {grant.grant_id} is used ({grant.remaining} of {grant.amount} left); "
            "only an unused grant can change currency — deduct the rest and grant a new one",
        )
    product = Money.computed(grant.amount.amount * command.rate, command.currency)
    if not within_amount_limit(product.amount) or not within_amount_limit(product.rounded().amount):
        raise DomainError(
            "amount_over_limit",
            f"rate {command.rate} would make grant {grant.grant_id} of {grant.amount} worth "
            # normalized: the same words whatever the stored amount's trailing zeros
            f"{format(product.amount.normalize(), ',f')} {command.currency}, past the limit of {MAX_ABS_AMOUNT:,} "
            "for one grant; check the rate",
        )
    converted = product.rounded()
    if not converted.is_positive:
        raise DomainError(
            "amount_too_small",
            f"{grant.amount} at {command.rate} is {converted}, nothing in {command.currency}; check the rate",
        )
    change = Change(state, cause)
    zero = Money.zero(command.currency)
    change.put_grant(replace(grant, amount=converted, remaining=converted, expired=zero, deducted=zero))
    change.touch_currency(grant.currency)
    account = promo_account(grant.grant_id)
    change.post(
        f"convert {grant.grant_id} at {command.rate}",
        (account, -grant.amount),
        (PROMO_ISSUED, grant.amount),
        (PROMO_ISSUED, -converted),
        (account, converted),
    )
    change.publish(
        CreditCurrencyChanged(
            grant_id=grant.grant_id, from_amount=grant.amount, to_amount=converted, rate=command.rate
        )
    )
    return finish(change)


def expire_credits(state: CustomerLedger, command: ExpireCredits, cause: Cause) -> Outcome:
    """Expire what is left of grants whose last day is before `as_of`."""
    change = Change(state, cause)
    for grant in state.grants:
        expired = grant.expires_at is not None and grant.expires_at < command.as_of
        if grant.status != "active" or not expired or not grant.remaining.is_positive:
            continue
        left = grant.remaining
        change.put_grant(replace(grant, remaining=Money.zero(grant.currency), expired=grant.expired + left))
        change.post(f"expire {grant.grant_id}", (promo_account(grant.grant_id), -left), (EXPIRED, left))
        change.publish(CreditExpired(grant_id=grant.grant_id, amount=left))
    return finish(change)


def deduct_promotional(state: CustomerLedger, event: PromotionalCreditsDeducted, cause: Cause) -> Outcome:
    if any(d.deduction_id == event.deduction_id for d in state.deductions):
        return Outcome.unchanged(state)
    amount = event.amount.rounded()
    if not amount.is_positive:
        raise DomainError(
            "amount_not_positive", f"deduction {event.deduction_id} must be positive, not {amount}"
        )
    change = Change(state, cause)
    if event.grant_id is not None:
        grants = [_deductible_grant(state, event.grant_id, amount, cause)]
    else:
        grants = usable_grants(change, amount.currency, cause.on)
    available = total_of((g.remaining for g in grants), amount.currency)
    if available < amount:
        raise DomainError(
            "insufficient_promotional_credit",
            f"deduction {event.deduction_id} of {amount} is more than the {available} of usable "
            "promotional credit; deduct at most that",
        )
    postings: list[tuple[str, Money]] = []
    left = amount
    for grant in grants:
        take = grant.remaining.min(left)
        if take.is_zero:
            break
        change.put_grant(replace(grant, remaining=grant.remaining - take, deducted=grant.deducted + take))
        postings.append((promo_account(grant.grant_id), -take))
        left = left - take
    change.post(f"deduction {event.deduction_id}", *postings, (DEDUCTED, amount))
    change.put_deduction(Deduction(event.deduction_id, amount))
    return finish(change)


def _deductible_grant(state: CustomerLedger, grant_id: str, amount: Money, cause: Cause) -> PromotionalGrant:
    grant = state.grant(grant_id)
    if grant is None or grant.status != "active":
        raise _unknown_entry(grant_id)
    if grant.currency != amount.currency:
        raise DomainError(
            "currency_mismatch", f"grant {grant_id} is in {grant.currency}; deduct in {grant.currency}"
        )
    if not grant.usable_on(cause.on):
        raise DomainError(
            "grant_expired", f"grant {grant_id} expired on {grant.expires_at}; nothing to deduct"
        )
    return grant
