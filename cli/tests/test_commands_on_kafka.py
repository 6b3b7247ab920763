"""`tally usage`, `send --no-wait`, `tail` and `replay` against real Kafka (no services needed).

The CLI runs in this process (in a thread, as it runs its own event loop); what it
published is read back to the topics' end offsets once it has returned: the CLI waits
for every acknowledgement before it exits, so nothing it sent can still be on its way.
"""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition
from typer.testing import CliRunner, Result

from tally_cli.main import app
from tally_contracts import Envelope, parse_message
from tally_contracts.topics import INVOICING_COMMANDS, USAGE, dlq
from tally_contracts.usage import UsageRecorded
from tally_testing import Infra, KafkaProbe, prepare_topics, release_topics

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def topic_prefix(infra: Infra) -> AsyncIterator[str]:
    """Topics of this module's own: it reads whole topics and writes records no service
    would (a DLQ record that is not a dead letter), so it shares them with no other test.
    The CLI is `ops` / `usage-producer` on them when the broker has identities."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    await prepare_topics(infra, prefix)
    yield prefix
    await release_topics(infra, prefix)


async def tally(infra: Infra, prefix: str, *args: str) -> Result:
    options = ("--bootstrap", infra.kafka_bootstrap, "--topic-prefix", prefix)

    def run() -> Result:
        return CliRunner().invoke(app, [*args, *options])

    return await asyncio.to_thread(run)


async def records_until_now(infra: Infra, topic: str) -> list[tuple[bytes | None, bytes]]:
    """Every record on `topic` up to its current end offsets (key, value)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=infra.kafka_bootstrap, enable_auto_commit=False, **infra.kafka_options()
    )
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        assigned = [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or ())]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        found: list[tuple[bytes | None, bytes]] = []
        while [tp for tp in assigned if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend((r.key, r.value or b"") for r in records)
        return found
    finally:
        await consumer.stop()


def usage_value(customer: str, service: str) -> str:
    body = UsageRecorded.model_validate({"service": service, "quantity": "1", "unit": "minute"})
    return Envelope.new(body, customer_id=customer).to_json().decode()


def dead_letter(prefix: str, customer: str, raw: Any, offset: int) -> bytes:
    letter = {
        "topic": prefix + USAGE,
        "partition": 0,
        "offset": offset,
        "key": customer,
        "consumer": "invoicing",
        "error": f"no price for {customer}",
        "failed_at": "2026-11-02T09:00:00+00:00",
        "raw": raw,
    }
    return json.dumps(letter).encode()


async def test_usage_publishes_one_event_keyed_by_the_customer(
    infra: Infra, topic_prefix: str, kafka: KafkaProbe
) -> None:
    customer = f"cli-{uuid.uuid4().hex[:8]}"

    done = await tally(
        infra, topic_prefix, "usage", "-c", customer, "--service", "voice", "--quantity", "12.5",
        "--unit", "minute", "--destination", "44", "--at", "2026-11-02T09:00:00Z",
    )  # fmt: skip

    assert done.exit_code == 0, done.output
    assert f"published 1 usage event(s) to {topic_prefix}{USAGE}" in done.output
    mine = [(k, parse_message(v)) for k, v in await records_until_now(infra, topic_prefix + USAGE)]
    mine = [(k, e) for k, e in mine if e.customer_id == customer]
    assert len(mine) == 1
    key, event = mine[0]
    assert key == customer.encode()
    assert (event.type, str(event.data.quantity), event.data.destination) == ("UsageRecorded", "12.5", "44")
    assert event.occurred_at.isoformat() == "2026-11-02T09:00:00+00:00"


async def test_send_without_waiting_publishes_the_command_with_fields_over_data(
    infra: Infra, topic_prefix: str, kafka: KafkaProbe
) -> None:
    customer = f"cli-{uuid.uuid4().hex[:8]}"

    done = await tally(
        infra, topic_prefix, "send", "UpsertCustomer", "-c", customer,
        "--data", '{"currency": "EUR", "name": "From data"}', "currency=USD", "--no-wait",
    )  # fmt: skip

    assert done.exit_code == 0, done.output
    sent = [parse_message(v) for _, v in await records_until_now(infra, topic_prefix + INVOICING_COMMANDS)]
    [command] = [m for m in sent if m.customer_id == customer]
    assert (command.type, command.data.currency, command.data.name) == ("UpsertCustomer", "USD", "From data")
    assert f"sent UpsertCustomer {command.id}" in done.output


async def test_tail_shows_only_the_customer_and_type_asked_for_and_survives_values_that_are_not_objects(
    infra: Infra, topic_prefix: str, kafka: KafkaProbe
) -> None:
    customer, other = f"cli-{uuid.uuid4().hex[:8]}", f"cli-{uuid.uuid4().hex[:8]}"
    for value, key in (
        (b"[1, 2]", customer),  # hostile: JSON, but not an object
        (b"\xff\xfe", customer),  # hostile: not UTF-8
        (usage_value(other, "other-customer").encode(), other),
        (usage_value(customer, "first").encode(), customer),
        (usage_value(customer, "second").encode(), customer),
    ):
        await kafka.send(USAGE, value, key=key)

    done = await tally(
        infra, topic_prefix, "tail", USAGE, "--customer", customer, "--type", "UsageRecorded",
        "--from-beginning", "--limit", "2",
    )  # fmt: skip

    assert done.exit_code == 0, done.output
    assert done.output.count("UsageRecorded") == 2
    assert '"first"' in done.output and '"second"' in done.output
    assert "other-customer" not in done.output


async def test_tail_of_a_topic_that_does_not_exist_says_so(infra: Infra, topic_prefix: str) -> None:
    done = await tally(infra, topic_prefix, "tail", f"absent-{uuid.uuid4().hex[:8]}", "--limit", "1")

    assert done.exit_code == 2
    assert "start the stack first" in done.output


async def test_replay_yes_republishes_only_the_chosen_dead_letters_into_the_topic_they_came_from(
    infra: Infra, topic_prefix: str, kafka: KafkaProbe
) -> None:
    run = uuid.uuid4().hex[:8]
    chosen = [f"cli-{run}-a", f"cli-{run}-b"]
    left = f"cli-other-{run}"
    letters = {name: usage_value(name, "sms") for name in [*chosen, left]}
    for offset, (name, raw) in enumerate(letters.items()):
        await kafka.send(dlq(USAGE), dead_letter(topic_prefix, name, raw, offset), key=name)
    too_big = {"truncated": f'{{"customer_id": "cli-{run}-big", ', "bytes": 300_000, "sha256": "0" * 64}
    await kafka.send(dlq(USAGE), dead_letter(topic_prefix, f"cli-{run}-big", too_big, 9), key=run)
    await kafka.send(dlq(USAGE), f"not a dead letter cli-{run}-".encode(), key=run)  # never replayed

    listed = await tally(infra, topic_prefix, "replay", USAGE, "--contains", f"cli-{run}-")
    replayed = await tally(infra, topic_prefix, "replay", USAGE, "--contains", f"cli-{run}-", "--yes")

    assert listed.exit_code == 0, listed.output
    assert "2 dead letter(s) would be re-published to usage; add --yes to do it" in listed.output
    assert "the value is not text and cannot be replayed" in listed.output
    assert replayed.exit_code == 0, replayed.output
    assert "re-published 2 dead letter(s) to usage" in replayed.output
    on_usage = [(k, v) for k, v in await records_until_now(infra, topic_prefix + USAGE) if run.encode() in v]
    assert sorted(on_usage) == sorted((name.encode(), letters[name].encode()) for name in chosen)
