"""The dead-letter path cannot fail on content, and its size cap holds after encoding.

Found by the hostile probe of issue 13 (D1, D2): a NUL in a key made the dead-letter
row unwritable (PostgreSQL `text`), which lost the rest of the fetched batch; 180,000
control bytes became a 1 MB dead letter Kafka refused, which wedged the relay.
"""

import asyncio
import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from tally_contracts import Envelope, Money, topics
from tally_contracts.credits import GrantCredit
from tally_contracts.topics import dlq
from tally_contracts.usage import UsageRecorded
from tally_messaging import Service
from tally_messaging.dead_letters import MAX_DEAD_LETTER_BYTES, dead_letter_row
from tally_messaging.settings import ServiceSettings
from tally_messaging.transaction import RawRecord
from tally_testing import Infra, KafkaProbe, free_port, service_settings


def grant(customer: str) -> Envelope[Any]:
    data = GrantCredit(
        grant_id=f"g-{uuid.uuid4().hex[:8]}",
        kind="promotional",
        amount=Money.of("10.00", "USD"),
        source="promo_code",
    )
    return Envelope.new(data, customer_id=customer)


def usage(customer: str) -> Envelope[Any]:
    return Envelope.new(
        UsageRecorded(service="voice", quantity=Decimal(1), unit="minute"), customer_id=customer
    )


def granted_for(messages: list[Envelope[Any]], causes: list[Envelope[Any]]) -> set[str]:
    wanted = {str(c.id) for c in causes}
    return {m.causation_id or "" for m in messages if m.type == "CreditGranted" and m.causation_id in wanted}


async def fetch_count(dsn: str, sql: str, *args: Any) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


@pytest_asyncio.fixture(loop_scope="session")
async def probe_settings(infra: Infra, topic_prefix: str, new_database: Any) -> ServiceSettings:
    return service_settings(infra, topic_prefix, await new_database(), http_port=free_port())


@pytest_asyncio.fixture(loop_scope="session")
async def start_probe(probe_settings: ServiceSettings) -> AsyncIterator[Callable[[], Awaitable[Service]]]:
    """Starts the probe service when the test says so (after it sent a whole fetch's worth)."""
    from probe import build

    started: list[Service] = []

    async def start() -> Service:
        service = build(probe_settings)
        await service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        await service.stop()


# -- against Kafka and PostgreSQL ----------------------------------------------------------


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="session")
async def test_nul_in_customer_id_is_dead_lettered_and_the_rest_of_the_fetch_is_applied(
    start_probe: Callable[[], Awaitable[Service]], kafka: KafkaProbe
) -> None:
    bad_customer = f"bad-{uuid.uuid4().hex[:6]}"
    bad = grant(bad_customer)
    raw = bad.to_json().replace(bad_customer.encode(), b"bad\\u0000" + bad_customer.encode())
    good = [grant(f"cus-{uuid.uuid4().hex[:6]}") for _ in range(20)]

    await kafka.send(topics.CREDITS_COMMANDS, raw, key="bad\x00" + bad_customer)
    for message in good:
        await kafka.send(topics.CREDITS_COMMANDS, message)
    await start_probe()  # one fetch holds them all
    await kafka.wait_for(topics.CREDITS_EVENTS, lambda ms: len(granted_for(ms, good)) == 20, timeout=60)

    [dead] = await kafka.dead_letters(topics.CREDITS_COMMANDS, lambda d: str(bad.id) in str(d["raw"]))
    assert dead["error"]
    assert base64.b64decode(dead["key"]["base64"]) == ("bad\x00" + bad_customer).encode()


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="session")
async def test_non_json_with_a_nul_key_is_dead_lettered_and_the_whole_batch_lands(
    start_probe: Callable[[], Awaitable[Service]], probe_settings: ServiceSettings, kafka: KafkaProbe
) -> None:
    marker = uuid.uuid4().hex
    customer = f"cus-{uuid.uuid4().hex[:6]}"
    usages = [usage(customer) for _ in range(50)]

    await kafka.send(topics.USAGE, f"not json {marker}".encode(), key="k\x00")
    for message in usages:
        await kafka.send(topics.USAGE, message)
    await start_probe()
    [dead] = await kafka.dead_letters(topics.USAGE, lambda d: marker in str(d["raw"]), timeout=60)
    ids = [u.id for u in usages]
    applied = 0
    for _ in range(300):
        applied = await fetch_count(
            probe_settings.database_url, "select count(*) from probe_usage where message_id = any($1)", ids
        )
        if applied == 50:
            break
        await asyncio.sleep(0.1)

    assert applied == 50
    assert dead["raw"] == f"not json {marker}"
    assert "Invalid JSON" in dead["error"] or "invalid message" in dead["error"]
    assert dead["key"] == {"base64": base64.b64encode(b"k\x00").decode()}


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="session")
async def test_180k_control_bytes_make_a_capped_dead_letter_and_later_messages_flow(
    start_probe: Callable[[], Awaitable[Service]], probe_settings: ServiceSettings, kafka: KafkaProbe
) -> None:
    customer = f"cus-{uuid.uuid4().hex[:6]}"
    hostile = b"\x01" * 180_000
    later = grant(customer)
    await start_probe()

    await kafka.send(topics.CREDITS_COMMANDS, hostile, key=customer)
    await kafka.send(topics.CREDITS_COMMANDS, later)
    await kafka.wait_for(topics.CREDITS_EVENTS, lambda ms: bool(granted_for(ms, [later])), timeout=60)

    [published] = [
        value
        for key, value in await kafka.raw(dlq(topics.CREDITS_COMMANDS))
        if key == customer.encode() and b'"base64"' in value
    ]
    dead = json.loads(published)
    assert len(published) <= MAX_DEAD_LETTER_BYTES
    assert base64.b64decode(dead["raw"]["base64"]) == hostile  # exact bytes, in 240 KB not 1 MB


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="session")
async def test_a_value_that_grows_past_the_cap_when_escaped_is_truncated_after_encoding(
    start_probe: Callable[[], Awaitable[Service]], kafka: KafkaProbe
) -> None:
    customer = f"cus-{uuid.uuid4().hex[:6]}"
    marker = uuid.uuid4().hex
    hostile = (marker + "\\" * 200_000).encode()  # clean text: 200 KB raw, 400 KB as a JSON string
    later = grant(customer)
    await start_probe()

    await kafka.send(topics.CREDITS_COMMANDS, hostile, key=customer)
    await kafka.send(topics.CREDITS_COMMANDS, later)
    await kafka.wait_for(topics.CREDITS_EVENTS, lambda ms: bool(granted_for(ms, [later])), timeout=60)

    [published] = [v for _, v in await kafka.raw(dlq(topics.CREDITS_COMMANDS)) if marker.encode() in v]
    dead = json.loads(published)
    assert len(published) <= MAX_DEAD_LETTER_BYTES
    assert dead["raw"]["bytes"] == len(hostile)
    assert dead["raw"]["sha256"] == hashlib.sha256(hostile).hexdigest()
    assert dead["raw"]["truncated"].startswith(marker)


# -- the encoding alone --------------------------------------------------------------------


def record(value: bytes, key: bytes | None = b"k") -> RawRecord:
    return RawRecord("t.usage", 2, 7, key, value)


@settings(max_examples=60, deadline=None)
@given(
    value=st.one_of(
        st.binary(max_size=2000),
        st.builds(
            lambda b, n: b * n,
            st.sampled_from([b"\x00", b"\x01", b'"', b"\\", "€".encode(), b"a"]),
            st.integers(0, 400_000),
        ),
    ),
    key=st.one_of(st.none(), st.binary(max_size=2000)),
)
def test_a_dead_letter_is_within_the_cap_and_keeps_or_digests_every_byte(
    value: bytes, key: bytes | None
) -> None:
    row = dead_letter_row(record(value, key), "error \x00 text", "probe:usage")
    body = json.loads(row.payload)

    assert len(row.payload) <= MAX_DEAD_LETTER_BYTES
    assert "\x00" not in row.key
    raw = body["raw"]
    if isinstance(raw, str):
        assert raw.encode() == value
    elif "base64" in raw:
        assert base64.b64decode(raw["base64"]) == value
    else:
        assert raw["bytes"] == len(value) and raw["sha256"] == hashlib.sha256(value).hexdigest()


def test_a_dirty_key_is_hex_in_the_dead_letters_kafka_key() -> None:
    assert dead_letter_row(record(b"x", b"k\x00"), "e", "c").key == "hex:6b00"
    assert dead_letter_row(record(b"x", b"cus-1"), "e", "c").key == "cus-1"
    assert dead_letter_row(record(b"x", None), "e", "c").key == "2/7"


def test_clean_text_stays_text_so_it_can_be_replayed() -> None:
    value = '{"id": "é\\n", "tab": "\t"}'.encode()

    body = json.loads(dead_letter_row(record(value), "e", "c").payload)

    assert body["raw"] == value.decode()
