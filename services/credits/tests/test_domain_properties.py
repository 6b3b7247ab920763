"""Properties of the credits domain over random sequences of messages: grants, invoices
posted, voided and regenerated, payments and reversals, refunds, expiry, deductions.

After every message: what is applied to an invoice never exceeds its total; no grant or
lot goes below zero (a shortfall lot excepted); money is conserved; every ledger entry
balances; the balances the ledger derives equal the state's; and no usable credit sits
beside an invoice it may pay. A whole run replays to identical results.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from credits import domain
from credits.domain import Cause, CustomerLedger, LedgerEntry, Outcome, account_balances
from credits.ledger import (
    BILLED,
    DEDUCTED,
    EXPIRED,
    MANUAL_ENTRIES,
    PAYMENTS_RECEIVED,
    PROMO_ISSUED,
    REFUNDS_PAID,
    balance_account,
    invoice_account,
    payment_account,
    promo_account,
)
from credits.open_items import Changes, Wanted, changes, open_items, wanted_by
from tally_contracts import DomainError, MessageData, Money
from tally_contracts.credits import (
    ApplyCredits,
    ChangeCreditCurrency,
    DeleteCreditEntry,
    ExpireCredits,
    GrantCredit,
    InvoiceBalanceChanged,
)
from tally_contracts.invoicing import InvoiceFinalized, InvoiceVoided
from tally_contracts.money import MAX_ABS_AMOUNT, MAX_ABS_TOTAL
from tally_contracts.payments import (
    PaymentRecorded,
    PaymentReversed,
    PromotionalCreditsDeducted,
    RefundRequested,
)

CURRENCIES = ("USD", "EUR", "JPY", "KWD", "BHD")
"""Two, zero (JPY) and three (KWD, BHD) decimal places."""
START = dt.date(2026, 1, 1)
IDS = st.integers(min_value=0, max_value=3)
PICKS = st.integers(min_value=0, max_value=50)
currencies = st.sampled_from(("USD", "USD", "EUR", "JPY", "KWD", "BHD"))


def amounts(most: int) -> st.SearchStrategy[Decimal]:
    """Zero; ordinary amounts up to `most` with 2 or 3 decimal places (3 places are rounded
    in USD and JPY); and amounts just under the single-amount cap."""
    return st.one_of(
        st.just(Decimal(0)),
        *[st.integers(min_value=1, max_value=most * 100).map(lambda c: Decimal(c).scaleb(-2))] * 3,
        st.integers(min_value=1, max_value=most * 1000).map(lambda m: Decimal(m).scaleb(-3)),
        st.integers(min_value=1, max_value=10**6).map(lambda m: MAX_ABS_AMOUNT - Decimal(m).scaleb(-3)),
    )


invoice_totals = st.one_of(
    *[st.integers(min_value=1_000, max_value=30_000).map(lambda c: Decimal(c).scaleb(-2))] * 3,
    st.integers(min_value=-8_000, max_value=0).map(lambda c: Decimal(c).scaleb(-2)),
    st.integers(min_value=1, max_value=10**6).map(lambda m: MAX_ABS_AMOUNT - Decimal(m).scaleb(-3)),
    # sums: a total past the single-amount cap, up to just under the total cap, either sign
    st.integers(min_value=1, max_value=10**6).map(lambda m: -(MAX_ABS_TOTAL - Decimal(m).scaleb(-3))),
    st.integers(min_value=1, max_value=10**6).map(lambda m: MAX_ABS_TOTAL - Decimal(m).scaleb(-3)),
    st.integers(min_value=1, max_value=10**6).map(lambda m: -(2 * MAX_ABS_AMOUNT - Decimal(m))),
)


# -- the steps a run is made of -----------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    index: int
    manual: bool
    currency: str
    amount: Decimal
    negative: bool
    expires_in: int | None
    apply_to_existing: bool
    priority: int | None = None


@dataclass(frozen=True)
class Finalize:
    index: int
    currency: str
    amount: Decimal


@dataclass(frozen=True)
class Regenerate:
    index: int


@dataclass(frozen=True)
class Pay:
    """Pay an invoice by id (maybe not posted yet: parked), or, when `existing`, an invoice
    already posted (an open one if any), in its currency; or no invoice at all."""

    index: int
    invoice: int | None
    existing: bool
    currency: str
    amount: Decimal


@dataclass(frozen=True)
class Reverse:
    index: int


@dataclass(frozen=True)
class Void:
    index: int


@dataclass(frozen=True)
class Refund:
    currency: str
    amount: Decimal


@dataclass(frozen=True)
class Expire:
    days_ahead: int


@dataclass(frozen=True)
class Deduct:
    grant: int | None
    currency: str
    amount: Decimal


@dataclass(frozen=True)
class Delete:
    index: int


@dataclass(frozen=True)
class ChangeCurrency:
    index: int
    rate: str


@dataclass(frozen=True)
class Apply:
    pass


@dataclass(frozen=True)
class ApplyTo:
    """ApplyCredits naming an invoice (maybe unknown), with an amount in cents or none."""

    invoice: int
    cents: int | None


@dataclass(frozen=True)
class Wait:
    days: int


Step = (
    Grant
    | Finalize
    | Regenerate
    | Pay
    | Reverse
    | Void
    | Refund
    | Expire
    | Deduct
    | Delete
    | ChangeCurrency
    | Apply
    | ApplyTo
    | Wait
)

grants = st.builds(
    Grant,
    index=IDS,
    manual=st.booleans(),
    currency=currencies,
    amount=amounts(80),
    negative=st.booleans(),
    expires_in=st.none() | st.integers(min_value=-1, max_value=15),
    apply_to_existing=st.booleans(),
    priority=st.none() | st.integers(min_value=1, max_value=3),
)
finalizations = st.builds(
    Finalize,
    index=st.integers(min_value=0, max_value=7),
    currency=currencies,
    amount=invoice_totals,
)
payments = st.builds(
    Pay,
    index=st.integers(min_value=0, max_value=7),
    invoice=st.integers(min_value=-1, max_value=7).map(lambda i: None if i < 0 else i),
    existing=st.booleans(),
    currency=currencies,
    amount=amounts(200),
)
steps: st.SearchStrategy[Step] = st.one_of(
    grants,
    finalizations,
    payments,
    grants,
    finalizations,
    payments,
    payments,
    st.builds(Regenerate, index=PICKS),
    st.builds(Reverse, index=PICKS),
    st.builds(Void, index=PICKS),
    st.builds(Refund, currency=currencies, amount=amounts(80)),
    st.builds(Expire, days_ahead=st.integers(min_value=0, max_value=10)),
    st.builds(Deduct, grant=st.none() | IDS, currency=currencies, amount=amounts(50)),
    st.builds(Delete, index=IDS),
    st.builds(
        ChangeCurrency,
        index=IDS,
        rate=st.sampled_from(["0.5", "1.1", "7.8123", "0.0001", "1000", "999999999999999"]),
    ),
    st.just(Apply()),
    st.builds(
        ApplyTo,
        invoice=st.integers(min_value=0, max_value=9),
        cents=st.none() | st.integers(min_value=0, max_value=5_000),
    ),
    st.builds(Wait, days=st.integers(min_value=1, max_value=5)),
)


def money(amount: Decimal, currency: str) -> Money:
    return Money.of(amount, currency)


def other(currency: str) -> str:
    return CURRENCIES[(CURRENCIES.index(currency) + 1) % len(CURRENCIES)]


# -- running steps as messages ------------------------------------------------------------

Operation = Callable[[CustomerLedger, Any, Cause], Outcome]


@dataclass
class Run:
    state: CustomerLedger
    day: dt.date
    entries: list[LedgerEntry]
    events: list[MessageData]
    messages: int = 0


def message(run: Run, step: Step) -> tuple[Operation, Any] | None:
    """The message a step stands for, or None when it has no meaning in this state."""
    match step:
        case Grant():
            amount = money(-step.amount if step.manual and step.negative else step.amount, step.currency)
            expires = (
                None if step.manual or step.expires_in is None else run.day + dt.timedelta(step.expires_in)
            )
            return domain.grant_credit, GrantCredit(
                grant_id=f"g-{step.index}",
                kind="manual" if step.manual else "promotional",
                amount=amount,
                source="other",
                expires_at=expires,
                apply_to_existing=step.apply_to_existing,
                priority=None if step.manual else step.priority,
            )
        case Finalize():
            return domain.finalize_invoice, invoice_finalized(
                f"inv-{step.index}", money(step.amount, step.currency), run.day
            )
        case Regenerate():
            voided = [i for i in run.state.invoices if i.status == "voided"]
            if not voided:
                return None
            old = voided[step.index % len(voided)]
            if run.state.invoice(f"{old.invoice_id}-r") is not None:
                return None
            return domain.finalize_invoice, invoice_finalized(
                f"{old.invoice_id}-r", old.total, run.day, old.invoice_id
            )
        case Pay():
            invoice_id, currency = None if step.invoice is None else f"inv-{step.invoice}", step.currency
            targets = [i for i in run.state.invoices if i.status == "open"] or list(run.state.invoices)
            if step.existing and step.invoice is not None and targets:
                target = targets[step.invoice % len(targets)]
                invoice_id, currency = target.invoice_id, target.currency
            return domain.record_payment, PaymentRecorded(
                payment_id=f"p-{step.index}",
                invoice_id=invoice_id,
                amount=money(step.amount, currency),
                method="cash",
                received_on=run.day,
            )
        case Reverse():
            reversible = [p for p in run.state.payments if p.status != "reversed"]
            if not reversible:
                return None
            payment = reversible[step.index % len(reversible)]
            return domain.reverse_payment, PaymentReversed(
                payment_id=payment.payment_id, amount=payment.amount, reason="bounced"
            )
        case Void():
            voidable = [i for i in run.state.invoices if i.status != "voided"]
            if not voidable:
                return None
            invoice = voidable[step.index % len(voidable)]
            return domain.void_invoice, InvoiceVoided(invoice_id=invoice.invoice_id, reason="wrong")
        case Refund():
            return domain.refund, RefundRequested(
                refund_id=f"r-{run.messages}", amount=money(step.amount, step.currency), method="cash"
            )
        case Expire():
            return domain.expire_credits, ExpireCredits(as_of=run.day + dt.timedelta(step.days_ahead))
        case Deduct():
            return domain.deduct_promotional, PromotionalCreditsDeducted(
                deduction_id=f"d-{run.messages}",
                amount=money(step.amount, step.currency),
                reason="by hand",
                grant_id=None if step.grant is None else f"g-{step.grant}",
            )
        case Delete():
            return domain.delete_credit_entry, DeleteCreditEntry(grant_id=f"g-{step.index}")
        case ChangeCurrency():
            grant = run.state.grant(f"g-{step.index}")
            currency = other(grant.currency) if grant else "EUR"
            return domain.change_credit_currency, ChangeCreditCurrency(
                grant_id=f"g-{step.index}", currency=currency, rate=Decimal(step.rate)
            )
        case Apply():
            return domain.apply_credits, ApplyCredits()
        case ApplyTo():
            invoices = list(run.state.invoices)
            if step.invoice < len(invoices):
                invoice_id, currency = invoices[step.invoice].invoice_id, invoices[step.invoice].currency
            else:
                invoice_id, currency = f"inv-unknown-{step.invoice}", "USD"
            wanted = None if step.cents is None else money(Decimal(step.cents).scaleb(-2), currency)
            return domain.apply_credits, ApplyCredits(invoice_id=invoice_id, amount=wanted)
        case Wait():
            run.day += dt.timedelta(step.days)
            return None


def invoice_finalized(
    invoice_id: str, total: Money, day: dt.date, regenerated_from: str | None = None
) -> InvoiceFinalized:
    return InvoiceFinalized(
        invoice_id=invoice_id,
        currency=total.currency,
        issued_on=day,
        lines=[],
        total=total,
        rule_set_id=None,
        rule_set_version=None,
        regenerated_from=regenerated_from,
    )


def play(
    step_list: list[Step], after_each: Callable[[Run, Outcome], None] = lambda run, outcome: None
) -> Run:
    run = Run(CustomerLedger("cus_1"), START, [], [])
    for step in step_list:
        found = message(run, step)
        if found is None:
            continue
        operation, data = found
        run.messages += 1
        try:
            outcome = operation(run.state, data, Cause(f"m{run.messages}", run.day))
        except DomainError as error:
            assert error.code and error.reason
            continue
        run.state = outcome.state
        run.entries.extend(outcome.entries)
        run.events.extend(outcome.events)
        after_each(run, outcome)
    return run


# -- the properties -----------------------------------------------------------------------


def total(amounts: list[Money], currency: str) -> Money:
    result = Money.zero(currency)
    for amount in amounts:
        result = result + amount
    return result


def active_applied(state: CustomerLedger, invoice_id: str) -> list[Money]:
    return [a.amount for a in state.applications if a.invoice_id == invoice_id and a.status == "active"]


def check_never_more_than_total_is_applied(state: CustomerLedger) -> None:
    for invoice in state.invoices:
        applied = total(active_applied(state, invoice.invoice_id), invoice.currency)
        assert applied <= invoice.total.max(Money.zero(invoice.currency)), invoice
        assert all(a.is_positive for a in active_applied(state, invoice.invoice_id))


def check_no_source_below_zero(state: CustomerLedger) -> None:
    for grant in state.grants:
        zero = Money.zero(grant.currency)
        applied = total(
            [
                a.amount
                for a in state.applications
                if a.source_type == "promotional" and a.source_id == grant.grant_id and a.status == "active"
            ],
            grant.currency,
        )
        assert grant.remaining >= zero and grant.expired >= zero and grant.deducted >= zero, grant
        if grant.status == "active":
            assert grant.amount == grant.remaining + applied + grant.expired + grant.deducted, grant
    for lot in state.lots:
        if lot.origin == "shortfall":
            assert lot.remaining <= Money.zero(lot.currency), lot
        elif lot.amount.is_positive:
            assert Money.zero(lot.currency) <= lot.remaining <= lot.amount, lot
        else:
            assert lot.remaining.is_zero, lot
    for currency in CURRENCIES:
        signs = {
            lot.remaining.amount > 0
            for lot in state.lots
            if lot.currency == currency and not lot.remaining.is_zero
        }
        assert len(signs) <= 1, "a debt sits beside credit balance that could settle it"


def check_money_is_conserved(state: CustomerLedger) -> None:
    """In: grants, manual entries, payments, negative invoices. Out: applied, available,
    expired, deducted, refunded, and payments still parked."""
    for currency in CURRENCIES:
        inflow = total(
            [g.amount for g in state.grants if g.status == "active" and g.currency == currency]
            + [
                lot.amount
                for lot in state.lots
                if lot.origin == "manual" and lot.status != "deleted" and lot.currency == currency
            ]
            + [p.amount for p in state.payments if p.status != "reversed" and p.amount.currency == currency]
            + [
                -i.total
                for i in state.invoices
                if i.total.is_negative and i.status != "voided" and i.currency == currency
            ],
            currency,
        )
        outflow = total(
            [a.amount for a in state.applications if a.status == "active" and a.amount.currency == currency]
            + [g.remaining + g.expired + g.deducted for g in state.grants if g.currency == currency]
            + [lot.remaining for lot in state.lots if lot.currency == currency]
            + [r.amount for r in state.refunds if r.status == "refunded" and r.amount.currency == currency]
            + [p.amount for p in state.parked_payments if p.amount.currency == currency],
            currency,
        )
        assert inflow == outflow, currency


def check_entries_balance(entries: tuple[LedgerEntry, ...]) -> None:
    for entry in entries:
        for currency in {p.amount.currency for p in entry.postings}:
            assert total(
                [p.amount for p in entry.postings if p.amount.currency == currency], currency
            ).is_zero
        assert all(not p.amount.is_zero for p in entry.postings)


def expected_balances(state: CustomerLedger) -> dict[tuple[str, str], Money]:
    """What each account must hold for this state, by the chart of accounts."""
    expected: dict[tuple[str, str], Money] = {}

    def add(account: str, amount: Money) -> None:
        key = (account, amount.currency)
        expected[key] = expected.get(key, Money.zero(amount.currency)) + amount

    for grant in state.grants:
        add(promo_account(grant.grant_id), grant.remaining)
        add(EXPIRED, grant.expired)
        add(DEDUCTED, grant.deducted)
        if grant.status == "active":
            add(PROMO_ISSUED, -grant.amount)
    for lot in state.lots:
        add(balance_account(lot.lot_id), lot.remaining)
        if lot.origin == "manual" and lot.status != "deleted":
            add(MANUAL_ENTRIES, -lot.amount)
    for invoice in state.invoices:
        if invoice.status != "voided":
            add(invoice_account(invoice.invoice_id), -state.invoice_balance(invoice.invoice_id).amount_due)
            add(BILLED, invoice.total)
    for payment in state.payments:
        if payment.status != "reversed":
            add(PAYMENTS_RECEIVED, -payment.amount)
        if payment.status == "parked":
            add(payment_account(payment.payment_id), payment.amount)
    for refund in state.refunds:
        if refund.status == "refunded":
            add(REFUNDS_PAID, refund.amount)
    return {key: amount for key, amount in expected.items() if not amount.is_zero}


def check_ledger_agrees_with_state(run: Run) -> None:
    derived = {key: amount for key, amount in account_balances(run.entries).items() if not amount.is_zero}
    assert derived == expected_balances(run.state)


def check_no_credit_sits_beside_an_invoice_it_may_pay(state: CustomerLedger) -> None:
    for invoice in state.invoices:
        if invoice.status == "voided" or not state.invoice_balance(invoice.invoice_id).amount_due.is_positive:
            continue
        idle_grants = [
            g
            for g in state.grants
            if g.status == "active"
            and g.currency == invoice.currency
            and g.remaining.is_positive
            and g.usable_on(invoice.issued_on)
            and g.first_eligible_seq <= invoice.seq
        ]
        idle_lots = [
            lot
            for lot in state.lots
            if lot.status == "active"
            and lot.currency == invoice.currency
            and lot.remaining.is_positive
            and lot.first_eligible_seq <= invoice.seq
        ]
        assert not idle_grants and not idle_lots, invoice


def check_promotional_credit_pays_only_invoices_issued_by_its_last_day(state: CustomerLedger) -> None:
    for application in state.applications:
        if application.source_type != "promotional" or application.status != "active":
            continue
        grant, invoice = state.grant(application.source_id), state.invoice(application.invoice_id)
        assert grant is not None and invoice is not None
        assert grant.usable_on(invoice.issued_on), (grant, invoice)


def check_announced_balances_match_the_state(state: CustomerLedger, outcome: Outcome) -> None:
    for event in outcome.events:
        if isinstance(event, InvoiceBalanceChanged):
            balance = state.invoice_balance(event.invoice_id)
            invoice = state.invoice(event.invoice_id)
            assert invoice is not None
            assert (
                event.total,
                event.credits_applied,
                event.payments_applied,
                event.amount_due,
                event.status,
            ) == (
                balance.total,
                balance.credits_applied,
                balance.payments_applied,
                balance.amount_due,
                invoice.status,
            )


def check_events_survive_the_wire(outcome: Outcome) -> None:
    """Every event parses back as its consumers parse it: none would be dead-lettered."""
    for event in outcome.events:
        assert type(event).model_validate_json(event.model_dump_json()) == event


def check_sums_stay_under_the_total_cap(state: CustomerLedger) -> None:
    for currency in CURRENCIES:
        assert abs(state.promotional_available(currency).amount) < MAX_ABS_TOTAL
        assert abs(state.balance_available(currency).amount) < MAX_ABS_TOTAL


def check_everything(run: Run, outcome: Outcome) -> None:
    check_entries_balance(outcome.entries)
    check_never_more_than_total_is_applied(run.state)
    check_no_source_below_zero(run.state)
    check_money_is_conserved(run.state)
    check_ledger_agrees_with_state(run)
    check_no_credit_sits_beside_an_invoice_it_may_pay(run.state)
    check_promotional_credit_pays_only_invoices_issued_by_its_last_day(run.state)
    check_announced_balances_match_the_state(run.state, outcome)
    check_events_survive_the_wire(outcome)
    check_sums_stay_under_the_total_cap(run.state)


step_lists = st.lists(steps, min_size=15, max_size=50)


@settings(max_examples=300, deadline=None)
@given(step_lists)
def test_invariants_hold_after_every_message(step_list: list[Step]) -> None:
    play(step_list, check_everything)


@settings(max_examples=60, deadline=None)
@given(step_lists)
def test_a_run_replays_to_identical_results(step_list: list[Step]) -> None:
    first, second = play(step_list), play(step_list)

    assert (first.state, first.entries, first.events) == (second.state, second.entries, second.events)


@settings(max_examples=60, deadline=None)
@given(step_lists)
def test_every_entry_and_application_id_is_unique(step_list: list[Step]) -> None:
    run = play(step_list)

    entry_ids = [e.entry_id for e in run.entries]
    application_ids = [a.application_id for a in run.state.applications]
    assert len(set(entry_ids)) == len(entry_ids)
    assert len(set(application_ids)) == len(application_ids)


# -- deciding on the open items alone (issue 15) -------------------------------------------


def written_back(whole: CustomerLedger, done: Changes) -> CustomerLedger:
    """`whole` with what an operation changed on its open items written back, record by
    record, as the store writes rows: changed records in place, new ones appended."""

    def upsert(records: tuple[Any, ...], changed: tuple[Any, ...], key: str) -> tuple[Any, ...]:
        by_id = {getattr(r, key): r for r in records}
        by_id.update({getattr(r, key): r for r in changed})
        return tuple(by_id.values())

    released = {a.application_id for a in done.released}
    applications = tuple(
        replace(a, status="released") if a.application_id in released else a
        for a in (*whole.applications, *done.applications)
    )
    return replace(
        whole,
        grants=upsert(whole.grants, done.grants, "grant_id"),
        lots=upsert(whole.lots, done.lots, "lot_id"),
        invoices=upsert(whole.invoices, done.invoices, "invoice_id"),
        payments=upsert(whole.payments, done.payments, "payment_id"),
        applications=applications,
        refunds=whole.refunds + done.refunds,
        deductions=whole.deductions + done.deductions,
        next_seq=done.next_seq,
    )


def decided(operation: Operation, state: CustomerLedger, data: Any, cause: Cause) -> Outcome | str:
    try:
        return operation(state, data, cause)
    except DomainError as error:
        return f"{error.code}: {error.reason}"


@settings(max_examples=300, deadline=None)
@given(step_lists)
def test_a_message_decided_on_the_open_items_does_what_it_does_on_the_whole_ledger(
    step_list: list[Step],
) -> None:
    """Same events, same ledger entries, same refusals; and the changed records written back
    give the whole ledger's next state."""
    run = Run(CustomerLedger("cus_1"), START, [], [])
    for step in step_list:
        found = message(run, step)
        if found is None:
            continue
        operation, data = found
        run.messages += 1
        cause = Cause(f"m{run.messages}", run.day)
        part = open_items(run.state, wanted_by(data))

        on_whole, on_part = decided(operation, run.state, data, cause), decided(operation, part, data, cause)

        if isinstance(on_whole, str) or isinstance(on_part, str):
            assert on_part == on_whole
            continue
        assert (on_part.events, on_part.entries) == (on_whole.events, on_whole.entries)
        assert written_back(run.state, changes(part, on_part.state)) == on_whole.state
        run.state = on_whole.state


def test_settled_history_is_not_among_the_open_items() -> None:
    """A paid invoice, its applications and the exhausted grant that paid it stay out; the
    grant with credit left, the open invoice and a parked payment are in."""
    day = Cause("m1", START)
    state = domain.grant_credit(
        CustomerLedger("cus_1"),
        GrantCredit(grant_id="g-1", kind="promotional", amount=money(Decimal(10), "USD"), source="other"),
        day,
    ).state
    state = domain.finalize_invoice(
        state, invoice_finalized("inv-paid", money(Decimal(10), "USD"), START), Cause("m2", START)
    ).state
    state = domain.finalize_invoice(
        state, invoice_finalized("inv-open", money(Decimal(5), "USD"), START), Cause("m3", START)
    ).state
    state = domain.grant_credit(
        state,
        GrantCredit(
            grant_id="g-2",
            kind="promotional",
            amount=money(Decimal(1), "USD"),
            source="other",
            apply_to_existing=False,
        ),
        Cause("m4", START),
    ).state
    state = domain.record_payment(
        state,
        PaymentRecorded(
            payment_id="p-1",
            invoice_id="inv-later",
            amount=money(Decimal(3), "USD"),
            method="cash",
            received_on=START,
        ),
        Cause("m5", START),
    ).state

    part = open_items(state, Wanted())

    assert [i.invoice_id for i in part.invoices] == ["inv-open"]
    assert [g.grant_id for g in part.grants] == ["g-2"]
    assert part.applications == ()
    assert [p.payment_id for p in part.payments] == ["p-1"]
    assert [
        i.invoice_id for i in open_items(state, Wanted(invoice_ids=frozenset({"inv-paid"}))).invoices
    ] == [
        "inv-paid",
        "inv-open",
    ]
