"""Every command is answered: a command whose handler published no event gets
CommandCompleted "nothing_to_do" from the runtime (issue 21: "no event" is not an answer).

Before, ApplyCredits with nothing to apply, RunBilling with nothing due and the like
published nothing, so a sender could not tell "done, nothing to do" from "lost"."""

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tally_contracts import Envelope, Money, topics
from tally_contracts.credits import ApplyCredits, CreditGranted, GrantCredit
from tally_messaging import Delivery, Service, Transaction
from tally_messaging.processing import NOTHING_TO_DO
from tally_messaging.settings import ServiceSettings
from tally_messaging.topic_admin import ensure_topics
from tally_testing import Infra, KafkaProbe, free_port, service_settings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def build(settings: ServiceSettings) -> Service:
    """GrantCredit one by one: CreditGranted, except with reason "nothing" (no event).
    ApplyCredits in batches: never an event of its own."""
    service = Service(
        "answers",
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
        if data.reason != "nothing":
            tx.publish(
                message,
                CreditGranted(grant_id=data.grant_id, kind=data.kind, amount=data.amount, source=data.source),
            )

    @service.handles_batch(topics.CREDITS_COMMANDS, ApplyCredits)
    async def apply(batch: list[Delivery[ApplyCredits]], tx: Transaction) -> None:
        await tx.conn.executemany(
            "insert into probe_usage (message_id, batch_size) values ($1, $2)",
            [(d.envelope.id, len(batch)) for d in batch],
        )

    return service


def grant(customer: str, reason: str | None = None) -> Envelope[Any]:
    data = GrantCredit(
        grant_id=f"g-{uuid.uuid4().hex[:8]}",
        kind="promotional",
        amount=Money.of("5.00", "USD"),
        source="promo_code",
        reason=reason,
    )
    return Envelope.new(data, customer_id=customer)


def completed(messages: list[Envelope[Any]], command: Envelope[Any]) -> list[Envelope[Any]]:
    return [m for m in messages if m.type == "CommandCompleted" and m.data.command_id == str(command.id)]


def granted(messages: list[Envelope[Any]], command: Envelope[Any]) -> bool:
    return any(m.type == "CreditGranted" and m.causation_id == str(command.id) for m in messages)


@pytest_asyncio.fixture(loop_scope="session")
async def answering(infra: Infra, new_database: Any) -> AsyncIterator[KafkaProbe]:
    """The service running on topics of its own."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    await ensure_topics(infra.kafka_bootstrap, prefix, credentials=infra.kafka_admin)
    probe = KafkaProbe(infra.kafka_bootstrap, prefix, infra.kafka_admin)
    await probe.start()
    service = build(service_settings(infra, prefix, await new_database(), http_port=free_port()))
    await service.start()
    yield probe
    await service.stop()
    await probe.stop()


async def test_a_command_with_no_event_is_answered_once_with_command_completed_even_when_delivered_twice(
    answering: KafkaProbe,
) -> None:
    kafka = answering
    customer = f"cus-{uuid.uuid4().hex[:6]}"
    quiet, marker = grant(customer, reason="nothing"), grant(customer)

    await kafka.send(topics.CREDITS_COMMANDS, quiet)
    await kafka.send(topics.CREDITS_COMMANDS, quiet)  # a redelivery: same id, same body
    await kafka.send(topics.CREDITS_COMMANDS, marker)  # same key: handled after both copies
    seen = await kafka.wait_for(topics.CREDITS_EVENTS, lambda ms: granted(ms, marker))

    [answer] = completed(seen, quiet)
    assert answer.data.command_type == "GrantCredit"
    assert answer.data.outcome == NOTHING_TO_DO
    assert answer.causation_id == str(quiet.id)
    assert answer.customer_id == customer
    assert completed(seen, marker) == []


async def test_a_command_answered_by_an_event_gets_no_command_completed(answering: KafkaProbe) -> None:
    kafka = answering
    customer = f"cus-{uuid.uuid4().hex[:6]}"
    loud, marker = grant(customer), grant(customer)

    await kafka.send(topics.CREDITS_COMMANDS, loud)
    await kafka.send(topics.CREDITS_COMMANDS, marker)
    seen = await kafka.wait_for(topics.CREDITS_EVENTS, lambda ms: granted(ms, marker))

    assert granted(seen, loud)
    assert completed(seen, loud) == []


async def test_commands_handled_in_a_batch_with_no_event_are_each_answered_once(
    answering: KafkaProbe,
) -> None:
    kafka = answering
    customer = f"cus-{uuid.uuid4().hex[:6]}"
    applies = [Envelope.new(ApplyCredits(), customer_id=customer) for _ in range(3)]

    for command in [*applies, applies[0]]:  # the first one twice
        await kafka.send(topics.CREDITS_COMMANDS, command)
    await kafka.wait_for(topics.CREDITS_EVENTS, lambda ms: all(completed(ms, a) for a in applies))
    marker = Envelope.new(ApplyCredits(), customer_id=customer)  # batched too: handled after the copy
    await kafka.send(topics.CREDITS_COMMANDS, marker)
    seen = await kafka.wait_for(topics.CREDITS_EVENTS, lambda ms: bool(completed(ms, marker)))

    assert [len(completed(seen, a)) for a in applies] == [1, 1, 1]
    assert {m.data.command_type for a in applies for m in completed(seen, a)} == {"ApplyCredits"}
