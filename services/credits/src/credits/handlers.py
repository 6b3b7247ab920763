"""One function per message type: load → decide (domain) → save → publish.

Every handler runs inside the runtime's transaction, which already holds the advisory
lock of the message's key (the customer); the customer row is also read FOR UPDATE. Only
the customer's open items (and the records the message names) are loaded, and only what
the operation changed is written (`credits.open_items`). A broken business rule
(`DomainError`) changes nothing: a command is answered by CommandRejected, another
service's event goes to the DLQ with the reason — except a deduction
(PromotionalCreditsDeducted), which payments asked for on a person's behalf: credits
answers it with CommandRejected on `credits.events`, correlated with the
DeductPromotionalCredits command that started it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

import structlog

from credits import domain
from credits.change import Cause, Outcome
from credits.customer import CustomerLedger
from credits.open_items import changes, wanted_by
from credits.store import CreditsStore, save_arguments
from tally_contracts import DomainError, Envelope, MessageData
from tally_contracts.invoicing import InvoiceFinalized
from tally_contracts.payments import PromotionalCreditsDeducted
from tally_messaging import Delivery, MessageHandler, Transaction

log = structlog.get_logger()

M = TypeVar("M", bound=MessageData)
Operation = Callable[[CustomerLedger, M, Cause], Outcome]
"""A domain function deciding what a message of type `M` does to the customer's ledger."""


def cause_of(message: Envelope[Any]) -> Cause:
    """The message id seeds every id the operation makes; its UTC day decides expiry."""
    return Cause(str(message.id), message.occurred_at.astimezone(dt.UTC).date())


def _customer_id(message: Envelope[Any]) -> str:
    if not message.customer_id:
        raise DomainError("customer_id_missing", f"{message.type} needs the envelope's customer_id")
    return message.customer_id


async def _run(message: Envelope[M], tx: Transaction, operation: Operation[M]) -> None:
    customer_id = _customer_id(message)
    store = CreditsStore(tx.conn)
    state = await store.load(customer_id, wanted_by(message.data))
    cause = cause_of(message)
    outcome = operation(state, message.data, cause)  # a DomainError is answered by the runtime
    await _save_and_publish(store, tx, message, cause, state, outcome)


async def _save_and_publish(
    store: CreditsStore,
    tx: Transaction,
    message: Envelope[Any],
    cause: Cause,
    before: CustomerLedger,
    outcome: Outcome,
) -> None:
    await store.save_many(_writes(message, cause, before, outcome))
    _publish(tx, message, outcome)


def _writes(
    message: Envelope[Any], cause: Cause, before: CustomerLedger, outcome: Outcome
) -> list[list[Any]]:
    """What `outcome` changed, as `CreditsStore.save_many` takes it (nothing: no write)."""
    if outcome.state is before:
        return []
    done = changes(before, outcome.state)
    return [save_arguments(done, outcome.state, outcome.entries, outcome.events, cause, message.type)]


def _publish(tx: Transaction, message: Envelope[Any], outcome: Outcome) -> None:
    for event in outcome.events:
        tx.publish(message, event, customer_id=outcome.state.customer_id)


def _handler(operation: Operation[M]) -> MessageHandler[M]:
    """The handler of `M` messages that runs `operation` on the customer's ledger."""

    async def handle(message: Envelope[M], tx: Transaction) -> None:
        await _run(message, tx, operation)

    handle.__name__ = handle.__qualname__ = operation.__name__
    handle.__doc__ = operation.__doc__
    return handle


# credits.commands
grant_credit = _handler(domain.grant_credit)
delete_credit_entry = _handler(domain.delete_credit_entry)
change_credit_currency = _handler(domain.change_credit_currency)
apply_credits = _handler(domain.apply_credits)
expire_credits = _handler(domain.expire_credits)

# invoicing.events
void_invoice = _handler(domain.void_invoice)


async def finalize_invoices(batch: list[Delivery[InvoiceFinalized]], tx: Transaction) -> None:
    """Posted invoices by the batch (a bill run posts thousands at once): the customers of a
    round are loaded together (`CreditsStore.load_many`: the same round trips for one
    customer or a thousand), then each invoice is decided and saved in offset order, as one
    handled alone would be. A customer's next invoice in the batch goes in the next round,
    loaded after the one before it is saved. A refused invoice (a DomainError) changes
    nothing and is dead-lettered with the reason, as the runtime does for a lone event."""
    store = CreditsStore(tx.conn)
    pending = batch
    while pending:
        this_round: list[Delivery[InvoiceFinalized]] = []
        later: list[Delivery[InvoiceFinalized]] = []
        customers: set[str] = set()
        for delivery in pending:
            customer_id = delivery.envelope.customer_id
            if customer_id in customers:
                later.append(delivery)
                continue
            if customer_id:
                customers.add(customer_id)
            this_round.append(delivery)
        states = await store.load_many(
            {d.envelope.customer_id: wanted_by(d.envelope.data) for d in this_round if d.envelope.customer_id}
        )
        saves: list[list[Any]] = []
        for delivery in this_round:
            message = delivery.envelope
            try:
                state = states[_customer_id(message)]
                cause = cause_of(message)
                outcome = domain.finalize_invoice(state, message.data, cause)
            except DomainError as rejection:
                tx.dead_letter_rejected(delivery.record, rejection)
                log.info(
                    "event rejected", message_id=str(message.id), code=rejection.code, reason=rejection.reason
                )
                continue
            saves += _writes(message, cause, state, outcome)
            _publish(tx, message, outcome)
        await store.save_many(saves)  # one round trip for the round
        pending = later


# payments.events
record_payment = _handler(domain.record_payment)
reverse_payment = _handler(domain.reverse_payment)
refund = _handler(domain.refund)


async def deduct_promotional(message: Envelope[PromotionalCreditsDeducted], tx: Transaction) -> None:
    """A deduction payments recorded: taken off promotional credit, or answered with
    CommandRejected (more than there is, an unknown grant) and nothing changed."""
    customer_id = _customer_id(message)
    store = CreditsStore(tx.conn)
    state = await store.load(customer_id, wanted_by(message.data))
    cause = cause_of(message)
    try:
        outcome = domain.deduct_promotional(state, message.data, cause)
    except DomainError as error:
        tx.reject(message, error.code, error.reason)
        return
    await _save_and_publish(store, tx, message, cause, state, outcome)
