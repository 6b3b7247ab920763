"""The payments domain, pure: validation, the refund saga, idempotency, the invoice
read model, and properties over arbitrary message sequences."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payments.domain import (
    ErrorCode,
    InvoiceEvent,
    KnownInvoice,
    Outcome,
    Payment,
    PaymentsState,
    Refund,
    RefundStatus,
    deduct_promotional_credits,
    record_offline_payment,
    refund_credit_balance,
    reverse_payment,
    settle_refund,
    track_invoice,
)
from tally_contracts import DomainError, MessageData, Money
from tally_contracts.credits import CreditRefunded, RefundDeclined
from tally_contracts.currencies import minor_unit
from tally_contracts.invoicing import (
    InvoiceClosed,
    InvoiceCreated,
    InvoiceFinalized,
    InvoiceStatus,
    InvoiceStatusChanged,
    InvoiceVoided,
)
from tally_contracts.money import MAX_ABS_AMOUNT
from tally_contracts.payments import (
    DeductPromotionalCredits,
    PaymentRecorded,
    PaymentReversed,
    PromotionalCreditsDeducted,
    RecordOfflinePayment,
    RefundCreditBalance,
    RefundFailed,
    RefundRecorded,
    RefundRequested,
    ReversePayment,
)

DAY = dt.date(2026, 12, 3)
EMPTY = PaymentsState()


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


def payment_cmd(**changes: Any) -> RecordOfflinePayment:
    fields: dict[str, Any] = {
        "payment_id": "pay-1",
        "invoice_id": "inv-1",
        "amount": usd("25.00"),
        "method": "check",
        "reference": "CHK-1001",
        "received_on": DAY,
    }
    return RecordOfflinePayment(**{**fields, **changes})


def deduction_cmd(**changes: Any) -> DeductPromotionalCredits:
    fields: dict[str, Any] = {"deduction_id": "ded-1", "amount": usd("5.00"), "reason": "Promo abuse"}
    return DeductPromotionalCredits(**{**fields, **changes})


def refund_cmd(**changes: Any) -> RefundCreditBalance:
    fields: dict[str, Any] = {"refund_id": "ref-1", "amount": usd("15.00"), "method": "bank_transfer"}
    return RefundCreditBalance(**{**fields, **changes})


def invoice(
    status: InvoiceStatus = "posted", currency: str | None = "USD", invoice_id: str = "inv-1"
) -> KnownInvoice:
    return KnownInvoice(invoice_id, currency, status)


def with_invoice(known: KnownInvoice) -> PaymentsState:
    return EMPTY.put(known)


def error_of(action: Callable[[], Outcome]) -> DomainError:
    with pytest.raises(DomainError) as caught:
        action()
    return caught.value


def recorded(state: PaymentsState, cmd: RecordOfflinePayment | None = None) -> PaymentsState:
    return record_offline_payment(state, cmd or payment_cmd()).state


def requested(refund_status: RefundStatus) -> PaymentsState:
    return EMPTY.put(Refund("ref-1", usd("15.00"), "bank_transfer", None, status=refund_status))


# -- the error type ------------------------------------------------------------------


def test_an_error_carries_a_stable_code_and_a_reason() -> None:
    error = DomainError("unknown_payment", "payment p was never recorded")

    assert (error.code, error.reason) == ("unknown_payment", "payment p was never recorded")
    assert str(error) == "unknown_payment: payment p was never recorded"


# -- validation ----------------------------------------------------------------------

DUPLICATE_PAYMENT = recorded(EMPTY)
DUPLICATE_DEDUCTION = deduct_promotional_credits(EMPTY, deduction_cmd()).state
DUPLICATE_REFUND = refund_credit_balance(EMPTY, refund_cmd()).state

REFUSED: list[tuple[str, PaymentsState, Callable[[PaymentsState], Outcome], ErrorCode, str]] = [
    # label, state, action, code, a phrase the reason must contain
    ("zero payment", EMPTY, lambda s: record_offline_payment(s, payment_cmd(amount=usd("0"))), "amount_not_positive", "above zero"),
    ("negative payment", EMPTY, lambda s: record_offline_payment(s, payment_cmd(amount=usd("-25.00"))), "amount_not_positive", "not -25.00 USD"),
    ("payment below a cent", EMPTY, lambda s: record_offline_payment(s, payment_cmd(amount=usd("12.345"))), "amount_too_precise", "e.g. 12.34 USD"),
    ("yen with decimals", EMPTY, lambda s: record_offline_payment(s, payment_cmd(amount=Money.of("100.5", "JPY"), invoice_id=None)), "amount_too_precise", "JPY's 0"),
    ("payment in another currency than its invoice", with_invoice(invoice(currency="EUR")), lambda s: record_offline_payment(s, payment_cmd()), "currency_mismatch", "record it in EUR"),
    ("payment to a voided invoice", with_invoice(invoice("voided")), lambda s: record_offline_payment(s, payment_cmd()), "invoice_voided", "invoice inv-1 is voided"),
    ("same payment id, other amount", DUPLICATE_PAYMENT, lambda s: record_offline_payment(s, payment_cmd(amount=usd("26.00"))), "duplicate_payment_id", "new payment_id"),
    ("same payment id, other invoice", DUPLICATE_PAYMENT, lambda s: record_offline_payment(s, payment_cmd(invoice_id="inv-2")), "duplicate_payment_id", "25.00 USD by check for invoice inv-1"),
    ("same payment id, no invoice", DUPLICATE_PAYMENT, lambda s: record_offline_payment(s, payment_cmd(invoice_id=None)), "duplicate_payment_id", "pay-1"),
    ("same payment id, other method", DUPLICATE_PAYMENT, lambda s: record_offline_payment(s, payment_cmd(method="cash")), "duplicate_payment_id", "pay-1"),
    ("same payment id, other reference", DUPLICATE_PAYMENT, lambda s: record_offline_payment(s, payment_cmd(reference="CHK-1002")), "duplicate_payment_id", "pay-1"),
    ("same payment id, other day", DUPLICATE_PAYMENT, lambda s: record_offline_payment(s, payment_cmd(received_on=DAY + dt.timedelta(days=1))), "duplicate_payment_id", "received on 2026-12-03"),
    ("same payment id, other currency", DUPLICATE_PAYMENT, lambda s: record_offline_payment(s, payment_cmd(amount=Money.of("25.00", "EUR"))), "duplicate_payment_id", "pay-1"),
    ("same payment id, sub-cent amount", DUPLICATE_PAYMENT, lambda s: record_offline_payment(s, payment_cmd(amount=usd("25.004"))), "duplicate_payment_id", "pay-1"),
    ("reversing an unknown payment", EMPTY, lambda s: reverse_payment(s, ReversePayment(payment_id="pay-9", reason="bounced")), "unknown_payment", "payment pay-9 was never recorded"),
    ("zero deduction", EMPTY, lambda s: deduct_promotional_credits(s, deduction_cmd(amount=usd("0.00"))), "amount_not_positive", "deduction ded-1"),
    ("negative deduction", EMPTY, lambda s: deduct_promotional_credits(s, deduction_cmd(amount=usd("-5"))), "amount_not_positive", "above zero"),
    ("deduction below a fils", EMPTY, lambda s: deduct_promotional_credits(s, deduction_cmd(amount=Money.of("1.0005", "KWD"))), "amount_too_precise", "KWD's 3"),
    ("same deduction id, other amount", DUPLICATE_DEDUCTION, lambda s: deduct_promotional_credits(s, deduction_cmd(amount=usd("6.00"))), "duplicate_deduction_id", "new deduction_id"),
    ("same deduction id, other grant", DUPLICATE_DEDUCTION, lambda s: deduct_promotional_credits(s, deduction_cmd(grant_id="grant-1")), "duplicate_deduction_id", "ded-1"),
    ("same deduction id, other reason", DUPLICATE_DEDUCTION, lambda s: deduct_promotional_credits(s, deduction_cmd(reason="other")), "duplicate_deduction_id", "ded-1"),
    ("zero refund", EMPTY, lambda s: refund_credit_balance(s, refund_cmd(amount=usd("0"))), "amount_not_positive", "refund ref-1"),
    ("negative refund", EMPTY, lambda s: refund_credit_balance(s, refund_cmd(amount=usd("-15.00"))), "amount_not_positive", "above zero"),
    ("refund below a cent", EMPTY, lambda s: refund_credit_balance(s, refund_cmd(amount=usd("0.001"))), "amount_too_precise", "USD's 2"),
    ("same refund id, other amount", DUPLICATE_REFUND, lambda s: refund_credit_balance(s, refund_cmd(amount=usd("16.00"))), "duplicate_refund_id", "new refund_id"),
    ("same refund id, other method", DUPLICATE_REFUND, lambda s: refund_credit_balance(s, refund_cmd(method="check")), "duplicate_refund_id", "now requested"),
    ("same refund id, other reference", DUPLICATE_REFUND, lambda s: refund_credit_balance(s, refund_cmd(reference="X")), "duplicate_refund_id", "ref-1"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("state", "action", "code", "phrase"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_a_command_that_breaks_a_rule_is_refused_with_code_and_reason(
    state: PaymentsState, action: Callable[[PaymentsState], Outcome], code: ErrorCode, phrase: str
) -> None:
    error = error_of(lambda: action(state))

    assert error.code == code
    assert phrase in error.reason


def test_the_validation_table_covers_every_error_code() -> None:
    assert {row[3] for row in REFUSED} == set(get_args(ErrorCode))


ACCEPTED: list[tuple[str, PaymentsState, RecordOfflinePayment]] = [
    ("no invoice: credit balance", EMPTY, payment_cmd(invoice_id=None)),
    ("an invoice not heard of yet", EMPTY, payment_cmd()),
    ("another invoice is voided", with_invoice(invoice("voided", invoice_id="inv-2")), payment_cmd()),
    ("another invoice is in EUR", with_invoice(invoice(currency="EUR", invoice_id="inv-2")), payment_cmd()),
    ("a pending invoice", with_invoice(invoice("pending")), payment_cmd()),
    ("a closed invoice", with_invoice(invoice("closed")), payment_cmd()),
    ("a posted invoice", with_invoice(invoice("posted")), payment_cmd()),
    ("a paid invoice: overpayment", with_invoice(invoice("paid")), payment_cmd()),
    ("an invoice of unknown currency", with_invoice(invoice("posted", currency=None)), payment_cmd()),
    ("yen", with_invoice(invoice(currency="JPY")), payment_cmd(amount=Money.of("2500", "JPY"))),
    ("dinar to the fils", EMPTY, payment_cmd(amount=Money.of("1.005", "KWD"), invoice_id=None)),
    ("one cent", EMPTY, payment_cmd(amount=usd("0.01"))),
]


@pytest.mark.parametrize(("state", "cmd"), [r[1:] for r in ACCEPTED], ids=[r[0] for r in ACCEPTED])
def test_a_valid_payment_is_recorded_and_published(state: PaymentsState, cmd: RecordOfflinePayment) -> None:
    outcome = record_offline_payment(state, cmd)

    assert outcome.events == (
        PaymentRecorded(
            payment_id=cmd.payment_id,
            invoice_id=cmd.invoice_id,
            amount=cmd.amount,
            method=cmd.method,
            reference=cmd.reference,
            received_on=cmd.received_on,
        ),
    )
    assert outcome.saved == outcome.state.payments[cmd.payment_id]
    assert outcome.state.payments[cmd.payment_id].status == "recorded"


def test_a_payment_for_an_invoice_not_heard_of_is_accepted_without_inventing_the_invoice() -> None:
    outcome = record_offline_payment(EMPTY, payment_cmd(invoice_id="inv-later"))

    assert [type(e) for e in outcome.events] == [PaymentRecorded]
    assert outcome.state.invoices == {}


def test_amounts_are_published_to_the_minor_unit() -> None:
    outcome = record_offline_payment(EMPTY, payment_cmd(amount=usd("25")))

    event = outcome.events[0]
    assert isinstance(event, PaymentRecorded)
    assert event.model_dump(mode="json")["amount"] == {"amount": "25.00", "currency": "USD"}


def test_trailing_zeros_beyond_the_minor_unit_are_not_too_precise() -> None:
    outcome = record_offline_payment(EMPTY, payment_cmd(amount=usd("25.000")))

    assert outcome.state.payments["pay-1"].amount.model_dump(mode="json")["amount"] == "25.00"


def test_a_refused_command_leaves_the_state_as_it_was() -> None:
    state = with_invoice(invoice("voided"))
    before = copy.deepcopy(state)

    error_of(lambda: record_offline_payment(state, payment_cmd()))

    assert state == before
    assert state.payments == {}


# -- payments: idempotency and reversal ----------------------------------------------


def test_the_same_payment_twice_publishes_once() -> None:
    first = record_offline_payment(EMPTY, payment_cmd())

    second = record_offline_payment(first.state, payment_cmd())

    assert second == Outcome.unchanged(first.state)


def test_the_same_payment_with_the_same_value_written_otherwise_is_the_same_payment() -> None:
    state = recorded(EMPTY)

    assert record_offline_payment(state, payment_cmd(amount=usd("25"))).events == ()


def test_the_same_payment_again_after_its_invoice_was_voided_is_still_a_duplicate() -> None:
    state = recorded(EMPTY).put(invoice("voided"))

    assert record_offline_payment(state, payment_cmd()).events == ()


def test_a_recorded_payment_is_reversed_with_its_amount() -> None:
    state = recorded(EMPTY)

    outcome = reverse_payment(state, ReversePayment(payment_id="pay-1", reason="The check bounced"))

    assert outcome.events == (
        PaymentReversed(payment_id="pay-1", amount=usd("25.00"), reason="The check bounced"),
    )
    assert outcome.saved == Payment(
        "pay-1", "inv-1", usd("25.00"), "check", "CHK-1001", DAY, "reversed", "The check bounced"
    )


def test_reversing_twice_publishes_once() -> None:
    reversed_once = reverse_payment(
        recorded(EMPTY), ReversePayment(payment_id="pay-1", reason="bounced")
    ).state

    again = reverse_payment(reversed_once, ReversePayment(payment_id="pay-1", reason="bounced again"))

    assert again == Outcome.unchanged(reversed_once)
    assert reversed_once.payments["pay-1"].reversal_reason == "bounced"


def test_recording_a_reversed_payment_again_does_not_revive_it() -> None:
    state = reverse_payment(recorded(EMPTY), ReversePayment(payment_id="pay-1", reason="bounced")).state

    outcome = record_offline_payment(state, payment_cmd())

    assert outcome.events == ()
    assert outcome.state.payments["pay-1"].status == "reversed"


# -- deductions ----------------------------------------------------------------------


def test_a_deduction_is_recorded_and_published() -> None:
    outcome = deduct_promotional_credits(EMPTY, deduction_cmd(grant_id="grant-1"))

    assert outcome.events == (
        PromotionalCreditsDeducted(
            deduction_id="ded-1", amount=usd("5.00"), reason="Promo abuse", grant_id="grant-1"
        ),
    )
    assert outcome.state.deductions["ded-1"].status == "recorded"


def test_the_same_deduction_twice_publishes_once() -> None:
    state = deduct_promotional_credits(EMPTY, deduction_cmd()).state

    assert deduct_promotional_credits(state, deduction_cmd()) == Outcome.unchanged(state)


# -- the refund saga -----------------------------------------------------------------


def test_a_refund_is_requested() -> None:
    outcome = refund_credit_balance(EMPTY, refund_cmd(reference="SEPA-77"))

    assert outcome.events == (
        RefundRequested(refund_id="ref-1", amount=usd("15.00"), method="bank_transfer", reference="SEPA-77"),
    )
    assert outcome.state.refunds["ref-1"].status == "requested"


@pytest.mark.parametrize("status", ["requested", "recorded", "failed"])
def test_the_same_refund_twice_requests_once_whatever_its_state(status: RefundStatus) -> None:
    state = requested(status)

    assert refund_credit_balance(state, refund_cmd()) == Outcome.unchanged(state)


REFUNDED = CreditRefunded(refund_id="ref-1", amount=usd("15.00"))
DECLINED = RefundDeclined(refund_id="ref-1", amount=usd("15.00"), reason="The credit balance is 5.00 USD")
SAGA: list[tuple[RefundStatus | None, CreditRefunded | RefundDeclined, RefundStatus | None, MessageData | None]] = [
    # state before, answer, state after, event published
    (None, REFUNDED, None, None),
    (None, DECLINED, None, None),
    ("requested", REFUNDED, "recorded",
     RefundRecorded(refund_id="ref-1", amount=usd("15.00"), method="bank_transfer", reference=None)),
    ("requested", DECLINED, "failed",
     RefundFailed(refund_id="ref-1", amount=usd("15.00"), reason="The credit balance is 5.00 USD")),
    ("recorded", REFUNDED, "recorded", None),
    ("recorded", DECLINED, "recorded", None),
    ("failed", REFUNDED, "failed", None),
    ("failed", DECLINED, "failed", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("before", "answer", "after", "event"),
    SAGA,
    ids=[f"{before or 'unknown'}-{type(answer).__name__}" for before, answer, _, _ in SAGA],
)
def test_refund_saga_answer_in_every_state(
    before: RefundStatus | None,
    answer: CreditRefunded | RefundDeclined,
    after: RefundStatus | None,
    event: MessageData | None,
) -> None:
    state = EMPTY if before is None else requested(before)

    outcome = settle_refund(state, answer)

    assert outcome.events == (() if event is None else (event,))
    refund = outcome.state.refunds.get("ref-1")
    assert (refund.status if refund else None) == after
    assert (outcome.saved is None) == (event is None)


def test_the_saga_table_covers_every_state_and_answer() -> None:
    covered = {(before, type(answer)) for before, answer, _, _ in SAGA}

    assert covered == {
        (s, a) for s in (None, *get_args(RefundStatus)) for a in (CreditRefunded, RefundDeclined)
    }


def test_a_recorded_refund_keeps_what_credits_paid_out() -> None:
    outcome = settle_refund(requested("requested"), REFUNDED)

    assert outcome.state.refunds["ref-1"].paid_out == usd("15.00")


def test_a_failed_refund_keeps_the_reason() -> None:
    outcome = settle_refund(requested("requested"), DECLINED)

    assert outcome.state.refunds["ref-1"].failure_reason == "The credit balance is 5.00 USD"


def test_a_refund_from_command_to_answer() -> None:
    asked = refund_credit_balance(EMPTY, refund_cmd(reference="SEPA-77"))

    paid = settle_refund(asked.state, REFUNDED)
    late_decline = settle_refund(paid.state, DECLINED)

    assert [type(e) for e in (*asked.events, *paid.events, *late_decline.events)] == [
        RefundRequested,
        RefundRecorded,
    ]
    assert paid.events[0] == RefundRecorded(
        refund_id="ref-1", amount=usd("15.00"), method="bank_transfer", reference="SEPA-77"
    )


# -- the invoice read model ----------------------------------------------------------

START, END = dt.date(2026, 11, 1), dt.date(2026, 11, 30)
CREATED = InvoiceCreated(
    invoice_id="inv-1", currency="EUR", status="pending", period_start=START, period_end=END
)
CLOSED = InvoiceClosed(invoice_id="inv-1", currency="EUR", lines=[], subtotal=Money.of("0", "EUR"))
FINALIZED = InvoiceFinalized(
    invoice_id="inv-1",
    currency="EUR",
    issued_on=END,
    lines=[],
    total=Money.of("0", "EUR"),
    rule_set_id=None,
    rule_set_version=None,
)
VOIDED = InvoiceVoided(invoice_id="inv-1", reason="twice")


def status_changed(status: InvoiceStatus) -> InvoiceStatusChanged:
    return InvoiceStatusChanged(invoice_id="inv-1", status=status)


def tracked(events: Sequence[InvoiceEvent]) -> KnownInvoice | None:
    state = EMPTY
    for event in events:
        state = track_invoice(state, event).state
    return state.invoices.get("inv-1")


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([CREATED], invoice("pending", "EUR")),
        ([CREATED, CLOSED], invoice("closed", "EUR")),
        ([CREATED, CLOSED, FINALIZED], invoice("posted", "EUR")),
        ([CREATED, CLOSED, FINALIZED, status_changed("paid")], invoice("paid", "EUR")),
        ([CREATED, CLOSED, FINALIZED, VOIDED], invoice("voided", "EUR")),
        ([FINALIZED, status_changed("voided")], invoice("voided", "EUR")),
        ([status_changed("posted")], invoice("posted", None)),
        ([status_changed("posted"), CLOSED], invoice("closed", "EUR")),
        ([VOIDED], invoice("voided", None)),
        ([VOIDED, FINALIZED], invoice("voided", "EUR")),
        ([FINALIZED, VOIDED, status_changed("paid")], invoice("voided", "EUR")),
    ],
    ids=lambda v: "-".join(type(e).__name__ for e in v) if isinstance(v, list) else None,
)
def test_invoices_are_known_by_currency_and_latest_status(
    events: list[InvoiceEvent], expected: KnownInvoice
) -> None:
    assert tracked(events) == expected


def test_an_invoice_event_publishes_nothing_and_saves_the_invoice() -> None:
    outcome = track_invoice(EMPTY, CREATED)

    assert outcome.events == ()
    assert outcome.saved == invoice("pending", "EUR")


def test_an_invoice_event_that_changes_nothing_saves_nothing() -> None:
    state = track_invoice(EMPTY, FINALIZED).state

    assert track_invoice(state, status_changed("posted")) == Outcome.unchanged(state)


def test_a_payment_follows_what_invoicing_said_of_its_invoice() -> None:
    state = track_invoice(track_invoice(EMPTY, FINALIZED).state, VOIDED).state

    assert error_of(lambda: record_offline_payment(state, payment_cmd(amount=Money.of("5", "EUR")))).code == (
        "invoice_voided"
    )


# -- properties over message sequences -----------------------------------------------

ids = st.sampled_from(["a", "b"])
maybe_ids = st.none() | ids
currencies = st.sampled_from(["USD", "USD", "EUR", "JPY", "KWD", "BHD"])
"""Two, zero (JPY) and three (KWD, BHD) decimal places."""


def _in_minor_units(lowest: int, highest: int, extra_places: int = 0) -> st.SearchStrategy[Money]:
    """A count of minor units (of a tenth of one, with `extra_places`) in a drawn currency."""
    return currencies.flatmap(
        lambda currency: st.integers(min_value=lowest, max_value=highest).map(
            lambda n: Money.of(Decimal(n).scaleb(-minor_unit(currency) - extra_places), currency)
        )
    )


def _near_the_cap(extra_places: int = 0) -> st.SearchStrategy[Money]:
    """Just under the single-amount cap, to the minor unit (or one digit past it)."""
    return currencies.flatmap(
        lambda currency: st.integers(min_value=1, max_value=1_000).map(
            lambda n: Money.of(
                MAX_ABS_AMOUNT - Decimal(n).scaleb(-minor_unit(currency) - extra_places), currency
            )
        )
    )


# Amounts that repeat (so duplicates meet), zero, refused ones (negative, too precise for
# the currency), any count of minor units, and amounts just under the cap.
amounts = st.one_of(
    st.builds(Money.of, st.sampled_from(["7", "25", "12.50"]), currencies),
    st.builds(Money.of, st.just("0"), currencies),
    st.builds(Money.of, st.sampled_from(["-1", "0.005", "0.0005"]), currencies),
    _in_minor_units(1, 10**7),
    _in_minor_units(1, 10**7, extra_places=1),
    _near_the_cap(),
    _near_the_cap(extra_places=1),
)
methods = st.sampled_from(["cash", "check", "bank_transfer", "other"])
references = st.none() | st.just("r1")
days = st.sampled_from([DAY, DAY + dt.timedelta(days=1)])

commands = st.one_of(
    st.builds(
        RecordOfflinePayment,
        payment_id=ids,
        invoice_id=maybe_ids,
        amount=amounts,
        method=methods,
        reference=references,
        received_on=days,
    ),
    st.builds(ReversePayment, payment_id=ids, reason=st.just("bounced")),
    st.builds(
        DeductPromotionalCredits, deduction_id=ids, amount=amounts, reason=st.just("r"), grant_id=maybe_ids
    ),
    st.builds(RefundCreditBalance, refund_id=ids, amount=amounts, method=methods, reference=references),
)
answers = st.one_of(
    st.builds(CreditRefunded, refund_id=ids, amount=amounts),
    st.builds(RefundDeclined, refund_id=ids, amount=amounts, reason=st.just("no balance")),
)
invoice_events = st.one_of(
    st.builds(
        InvoiceCreated,
        invoice_id=ids,
        currency=currencies,
        status=st.sampled_from(["pending", "closed"]),
        period_start=st.just(START),
        period_end=st.just(END),
    ),
    st.builds(
        InvoiceFinalized,
        invoice_id=ids,
        currency=currencies,
        issued_on=st.just(DAY),
        lines=st.just([]),
        total=st.one_of(amounts, st.builds(Money.of, st.just("1800000000000000.00"), currencies)),
        rule_set_id=st.none(),
        rule_set_version=st.none(),
    ),
    st.builds(InvoiceVoided, invoice_id=ids, reason=st.just("void")),
    st.builds(
        InvoiceStatusChanged,
        invoice_id=ids,
        status=st.sampled_from(["pending", "closed", "posted", "paid", "voided"]),
    ),
)
messages = st.lists(st.one_of(commands, commands, answers, answers, invoice_events), min_size=4, max_size=30)


def handle(state: PaymentsState, message: MessageData) -> Outcome:
    """What a handler would call for `message`; a refused command changes nothing."""
    try:
        match message:
            case RecordOfflinePayment():
                return record_offline_payment(state, message)
            case ReversePayment():
                return reverse_payment(state, message)
            case DeductPromotionalCredits():
                return deduct_promotional_credits(state, message)
            case RefundCreditBalance():
                return refund_credit_balance(state, message)
            case CreditRefunded() | RefundDeclined():
                return settle_refund(state, message)
            case (
                InvoiceCreated()
                | InvoiceClosed()
                | InvoiceFinalized()
                | InvoiceVoided()
                | InvoiceStatusChanged()
            ):
                return track_invoice(state, message)
    except DomainError:
        return Outcome.unchanged(state)
    raise AssertionError(f"no handler for {type(message).__name__}")


def run(sequence: Sequence[MessageData]) -> tuple[PaymentsState, list[MessageData]]:
    state = EMPTY
    published: list[MessageData] = []
    for message in sequence:
        outcome = handle(state, message)
        state = outcome.state
        published.extend(outcome.events)
    return state, published


@given(st.one_of(commands, answers, invoice_events), messages)
def test_any_message_handled_twice_changes_nothing_the_second_time(
    message: MessageData, history: list[MessageData]
) -> None:
    state, _ = run(history)
    once = handle(state, message)

    twice = handle(once.state, message)

    assert twice == Outcome.unchanged(once.state)


@given(messages)
def test_redelivering_every_message_publishes_the_same_events(sequence: list[MessageData]) -> None:
    redelivered = [m for message in sequence for m in (message, message)]

    assert run(redelivered) == run(sequence)


@given(messages)
def test_an_outcome_saves_exactly_when_it_changes_the_state(sequence: list[MessageData]) -> None:
    state = EMPTY
    for message in sequence:
        outcome = handle(state, message)
        assert (outcome.saved is None) == (outcome.state == state)
        if outcome.saved is not None:
            assert outcome.state == state.put(outcome.saved)
        state = outcome.state


def subject_of(event: MessageData) -> str:
    """The payment, deduction or refund an event is about."""
    for name in ("payment_id", "deduction_id", "refund_id"):
        if name in type(event).model_fields:
            return str(getattr(event, name))
    raise AssertionError(f"{type(event).__name__} is about nothing")


@given(messages)
def test_every_fact_is_published_at_most_once_and_after_its_cause(sequence: list[MessageData]) -> None:
    state, published = run(sequence)

    seen: set[tuple[str, str]] = set()
    for event in published:
        fact = (type(event).__name__, subject_of(event))
        assert fact not in seen, f"{fact} published twice"
        match event:
            case PaymentReversed():
                assert ("PaymentRecorded", event.payment_id) in seen
            case RefundRecorded() | RefundFailed():
                assert ("RefundRequested", event.refund_id) in seen
                assert not {("RefundRecorded", event.refund_id), ("RefundFailed", event.refund_id)} & seen
        seen.add(fact)
    for payment in state.payments.values():
        assert (payment.status == "reversed") == (("PaymentReversed", payment.payment_id) in seen)
    for refund in state.refunds.values():
        finished = {"recorded": "RefundRecorded", "failed": "RefundFailed"}.get(refund.status)
        assert finished is None or (finished, refund.refund_id) in seen


@given(messages)
def test_every_published_amount_is_positive_and_to_the_minor_unit(sequence: list[MessageData]) -> None:
    _, published = run(sequence)

    for event in published:
        if isinstance(
            event, PaymentRecorded | PaymentReversed | PromotionalCreditsDeducted | RefundRequested
        ):
            assert event.amount.is_positive
            assert event.amount.rounded().model_dump_json() == event.amount.model_dump_json()


@given(messages)
def test_every_published_event_survives_the_wire(sequence: list[MessageData]) -> None:
    """Consumers parse what payments publishes: nothing it sends would be dead-lettered."""
    _, published = run(sequence)

    for event in published:
        assert type(event).model_validate_json(event.model_dump_json()) == event


@given(messages)
def test_no_payment_is_recorded_against_a_voided_invoice_or_in_its_wrong_currency(
    sequence: list[MessageData],
) -> None:
    state = EMPTY
    for message in sequence:
        outcome = handle(state, message)
        for event in outcome.events:
            known = state.invoices.get(event.invoice_id or "") if isinstance(event, PaymentRecorded) else None
            if isinstance(event, PaymentRecorded) and known is not None:
                assert known.status != "voided"
                assert known.currency in (None, event.amount.currency)
        state = outcome.state
