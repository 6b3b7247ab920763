"""Single-message handlers share a transaction per fetch (issue 16): one start and one
commit for a group of records, each handler called in offset order. A rejection or a bug
keeps nothing of its group: the records before it are handled again, it alone is
answered (or retried and dead-lettered), the records after it go on, and no record is
applied twice or out of order."""

import uuid
from typing import Any

import asyncpg
import pytest

from tally_contracts import DomainError, Envelope, Money, topics
from tally_contracts.credits import CreditGranted, GrantCredit
from tally_messaging import Service, Transaction
from tally_messaging.settings import ServiceSettings
from tally_testing import KafkaProbe

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def build(settings: ServiceSettings) -> Service:
    """GrantCredit one by one: a row naming its transaction, and CreditGranted. The reason
    "reject" is refused with a domain error, "bug" fails every time."""
    service = Service(
        "groupprobe",
        events_topic=topics.CREDITS_EVENTS,
        default_http_port=8080,
        migrations_package="probe",
        settings=settings,
    )

    @service.handles(topics.CREDITS_COMMANDS, GrantCredit)
    async def grant(message: Envelope[GrantCredit], tx: Transaction) -> None:
        data = message.data
        await tx.conn.execute(
            "insert into probe_grouped (message_id, txid) values ($1, txid_current())", message.id
        )
        if data.reason == "reject":
            raise DomainError("probe_rejected", "the probe refuses this grant")
        if data.reason == "bug":
            raise RuntimeError("a handler bug")
        tx.publish(
            message,
            CreditGranted(grant_id=data.grant_id, kind=data.kind, amount=data.amount, source=data.source),
        )

    return service


def grant(customer: str, reason: str | None = None) -> Envelope[Any]:
    data = GrantCredit(
        grant_id=f"g-{uuid.uuid4().hex[:8]}",
        kind="promotional",
        amount=Money.of("1.00", "USD"),
        source="promo_code",
        reason=reason,
    )
    return Envelope.new(data, customer_id=customer)


def answers(messages: list[Envelope[Any]], command: Envelope[Any]) -> list[Envelope[Any]]:
    return [m for m in messages if m.causation_id == str(command.id)]


async def test_a_fetch_of_commands_shares_transactions_and_a_rejection_or_bug_keeps_the_rest_once_in_order(
    isolated: tuple[ServiceSettings, KafkaProbe],
) -> None:
    settings, kafka = isolated
    customer = f"cus-{uuid.uuid4().hex[:6]}"  # one key: one partition, one order
    commands = [grant(customer) for _ in range(40)]
    rejected, buggy = grant(customer, "reject"), grant(customer, "bug")
    commands[10], commands[20] = rejected, buggy
    good = [c for c in commands if c not in (rejected, buggy)]
    for n, command in enumerate(commands):
        await kafka.send(topics.CREDITS_COMMANDS, command)
        if n == 25:
            await kafka.send(topics.CREDITS_COMMANDS, command)  # a re-sent copy
    service = build(settings)

    await service.start()  # one fetch holds them all
    try:
        [dead] = await kafka.dead_letters(
            topics.CREDITS_COMMANDS, lambda d: str(buggy.id) in str(d["raw"]), timeout=60
        )
        events = await kafka.wait_for(
            topics.CREDITS_EVENTS, lambda seen: bool(answers(seen, commands[-1])), timeout=60
        )
        conn = await asyncpg.connect(settings.database_url)
        try:
            rows = await conn.fetch("select message_id, txid from probe_grouped order by seq")
        finally:
            await conn.close()
    finally:
        await service.stop()

    assert [r["message_id"] for r in rows] == [c.id for c in good]  # each once, in offset order
    per_tx: dict[int, int] = {}
    for row in rows:
        per_tx[row["txid"]] = per_tx.get(row["txid"], 0) + 1
    assert max(per_tx.values()) > 1, "every command had a transaction of its own"
    for command in good:
        assert [m.type for m in answers(events, command)] == ["CreditGranted"]
    [rejection] = answers(events, rejected)
    assert rejection.type == "CommandRejected"
    assert rejection.data.code == "probe_rejected"
    assert answers(events, buggy) == []
    assert dead["error"].startswith("handler failed: RuntimeError: a handler bug")
