"""A tiny service on the runtime, used to prove the runtime's guarantees.

It consumes `credits.commands` GrantCredit (adds the amount to a total, one row per
application, so a double application shows) and `usage` UsageRecorded in batches,
and publishes CreditGranted.
"""

from decimal import Decimal

from tally_contracts import DomainError, Envelope, topics
from tally_contracts.credits import CreditGranted, GrantCredit
from tally_contracts.usage import UsageRecorded
from tally_messaging import Delivery, Service, ServiceSettings, Transaction


def build(settings: ServiceSettings | None = None) -> Service:
    service = Service(
        "probe",
        events_topic=topics.CREDITS_EVENTS,
        default_http_port=8080,
        migrations_package="probe",
        settings=settings,
    )

    @service.handles(topics.CREDITS_COMMANDS, GrantCredit)
    async def grant(message: Envelope[GrantCredit], tx: Transaction) -> None:
        data = message.data
        await tx.conn.execute(
            "insert into probe_applied (message_id, grant_id, amount) values ($1, $2, $3)",
            message.id,
            data.grant_id,
            data.amount.amount,
        )
        if data.amount.amount <= Decimal(0):
            raise DomainError("amount_not_positive", "A grant must be positive; send a positive amount.")
        if data.reason == "bug":
            raise RuntimeError("a handler bug")
        tx.publish(
            message,
            CreditGranted(grant_id=data.grant_id, kind=data.kind, amount=data.amount, source=data.source),
        )

    @service.handles_batch(topics.USAGE, UsageRecorded)
    async def usage(batch: list[Delivery[UsageRecorded]], tx: Transaction) -> None:
        await tx.conn.executemany(
            "insert into probe_usage (message_id, batch_size) values ($1, $2)",
            [(d.envelope.id, len(batch)) for d in batch],
        )

    return service
