"""Topic names, partition counts, and which message types each topic carries."""

from typing import Final

from tally_contracts import credits, invoicing, payments, rules, usage
from tally_contracts.base import CommandCompleted, CommandRejected, MessageData

USAGE: Final = "usage"
INVOICING_COMMANDS: Final = "invoicing.commands"
INVOICING_EVENTS: Final = "invoicing.events"
RULES_COMMANDS: Final = "rules.commands"
RULES_EVENTS: Final = "rules.events"
CREDITS_COMMANDS: Final = "credits.commands"
CREDITS_EVENTS: Final = "credits.events"
PAYMENTS_COMMANDS: Final = "payments.commands"
PAYMENTS_EVENTS: Final = "payments.events"

PARTITIONS: Final = 6
"""Every topic has several partitions so that ordering by key is really exercised."""


def dlq(topic: str) -> str:
    """The dead-letter topic of `topic`."""
    return f"{topic}.dlq"


def _types(*models: type[MessageData]) -> frozenset[str]:
    return frozenset(m.message_type() for m in models)


TOPIC_MESSAGES: Final[dict[str, frozenset[str]]] = {
    USAGE: _types(usage.UsageRecorded),
    INVOICING_COMMANDS: _types(
        invoicing.UpsertCustomer,
        invoicing.PutPriceList,
        invoicing.CreateSubscription,
        invoicing.CancelSubscription,
        invoicing.AddCharge,
        invoicing.RunBilling,
        invoicing.CloseInvoice,
        invoicing.VoidInvoice,
        invoicing.RegenerateInvoice,
    ),
    INVOICING_EVENTS: _types(
        invoicing.CustomerUpserted,
        invoicing.InvoiceCreated,
        invoicing.InvoiceClosed,
        invoicing.InvoiceFinalized,
        invoicing.InvoiceVoided,
        invoicing.InvoiceStatusChanged,
        invoicing.InvoiceCloseFailed,
        invoicing.PriceListChanged,
        invoicing.SubscriptionCreated,
        invoicing.SubscriptionCancelled,
        invoicing.ChargeAdded,
        CommandRejected,
        CommandCompleted,
    ),
    RULES_COMMANDS: _types(rules.PutRuleSet, rules.AssignRuleSet),
    RULES_EVENTS: _types(
        rules.RuleSetChanged, rules.RuleSetAssigned, rules.InvoiceAdjusted, CommandRejected, CommandCompleted
    ),
    CREDITS_COMMANDS: _types(
        credits.GrantCredit,
        credits.DeleteCreditEntry,
        credits.ChangeCreditCurrency,
        credits.ApplyCredits,
        credits.ExpireCredits,
    ),
    CREDITS_EVENTS: _types(
        credits.CreditGranted,
        credits.CreditApplied,
        credits.CreditReleased,
        credits.NegativeInvoiceTransferred,
        credits.CreditExpired,
        credits.CreditEntryDeleted,
        credits.CreditCurrencyChanged,
        credits.CreditRefunded,
        credits.RefundDeclined,
        credits.InvoiceBalanceChanged,
        credits.CreditBalanceChanged,
        CommandRejected,
        CommandCompleted,
    ),
    PAYMENTS_COMMANDS: _types(
        payments.RecordOfflinePayment,
        payments.ReversePayment,
        payments.DeductPromotionalCredits,
        payments.RefundCreditBalance,
    ),
    PAYMENTS_EVENTS: _types(
        payments.PaymentRecorded,
        payments.PaymentReversed,
        payments.PromotionalCreditsDeducted,
        payments.RefundRequested,
        payments.RefundRecorded,
        payments.RefundFailed,
        CommandRejected,
        CommandCompleted,
    ),
}

ALL_TOPICS: Final = tuple(TOPIC_MESSAGES)
ALL_TOPICS_WITH_DLQ: Final = ALL_TOPICS + tuple(dlq(t) for t in ALL_TOPICS)
