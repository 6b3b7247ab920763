"""One function per message type: load → decide (domain) → save → publish."""

from __future__ import annotations

import structlog

from rules.domain import adjust_invoice, put_rule_set, select_rule_set
from rules.rule_sets import RuleSetVersion
from rules.store import RulesStore
from tally_contracts import CurrencyMismatch, DomainError, Envelope
from tally_contracts.invoicing import InvoiceClosed
from tally_contracts.rules import AssignRuleSet, PutRuleSet, RuleSetAssigned
from tally_messaging import Transaction

log = structlog.get_logger()


async def put(message: Envelope[PutRuleSet], tx: Transaction) -> None:
    """Save the next version of a rule set, or reject it naming every rule and field at fault."""
    data = message.data
    store = RulesStore(tx.conn)
    version = put_rule_set(data, await store.latest_version(data.rule_set_id))
    await store.save_version(version)
    tx.publish(message, version.changed())


async def assign(message: Envelope[AssignRuleSet], tx: Transaction) -> None:
    """Assign a known rule set to the envelope's customer."""
    data = message.data
    store = RulesStore(tx.conn)
    if not message.customer_id:
        raise DomainError("customer_id_missing", "AssignRuleSet needs the envelope's customer_id")
    if await store.latest_version(data.rule_set_id) is None:
        raise DomainError(
            "unknown_rule_set",
            f"rule set {data.rule_set_id!r} is not known; send PutRuleSet for it first, then assign it",
        )
    await store.assign(message.customer_id, data.rule_set_id)
    tx.publish(message, RuleSetAssigned(rule_set_id=data.rule_set_id))


async def invoice_closed(message: Envelope[InvoiceClosed], tx: Transaction) -> None:
    """Evaluate a closed invoice once, with the customer's rule set (else the default), and
    answer InvoiceAdjusted, with no lines when nothing applies. An invoice already answered
    gets nothing more: its adjustments never change, whatever happened to the rules since."""
    data = message.data
    store = RulesStore(tx.conn)
    if (earlier := await store.adjustment(data.invoice_id)) is not None:
        log.info(
            "invoice already adjusted; nothing more to say",
            invoice_id=data.invoice_id,
            rule_set_id=earlier.rule_set_id,
            rule_set_version=earlier.rule_set_version,
        )
        return
    rule_set = await _rule_set_for(store, message.customer_id)
    try:
        adjusted = adjust_invoice(data.invoice_id, data.currency, data.lines, rule_set)
    except CurrencyMismatch as error:  # an event, not a command: this sends it to the DLQ
        raise DomainError("currency_mismatch", f"invoice {data.invoice_id!r}: {error}") from None
    if await store.save_adjustment(message.customer_id, adjusted):
        tx.publish(message, adjusted)


async def _rule_set_for(store: RulesStore, customer_id: str | None) -> RuleSetVersion | None:
    assignment = await store.assignment(customer_id) if customer_id else None
    assigned = await store.current(assignment.rule_set_id) if assignment else None
    default = None if assigned else await store.default()
    chosen = select_rule_set(assigned, default)
    return chosen.rule_set if chosen else None
