"""Identities on the real broker and database server (issue 14): only a topic's owner may
write it, and each service's role may connect to its own database only.

The principals' passwords are the ones deploy/local's scripts made (`.local/kafka-<port>/
credentials`, `.local/pg-<port>/credentials`); on servers without identities (or whose
passwords are elsewhere) the module is skipped. The module has topics of its own, for which
the ACL table's rules are granted (`prepare_topics`); the real topic names carry the same
rules, which `test_the_broker_grants_exactly_the_acl_table` checks.
"""

import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from aiokafka.errors import TopicAuthorizationFailedError

from invoicing.domain import one_time_invoice_id
from tally_contracts import Envelope, Money, topics
from tally_contracts.base import Line
from tally_contracts.invoicing import AddCharge, InvoiceClosed, UpsertCustomer
from tally_messaging.identities import differences, granted, read_table
from tally_messaging.kafka_security import (
    KafkaCredentials,
    client_options,
    credentials_in,
    local_credentials_dir,
)
from tally_testing import (
    ACL_TABLE,
    LOCAL_DIR,
    Infra,
    KafkaProbe,
    ServiceProcess,
    free_port,
    prepare_topics,
    release_topics,
    service_env,
    service_settings,
    with_local_password,
)

from .conftest import answered, send

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

SERVICES = ("invoicing", "rules", "credits", "payments")
PRINCIPALS = (*SERVICES, "usage-producer", "ops")
EVENTS_TOPICS = tuple(t for t in topics.ALL_TOPICS if t.endswith(".events"))


def principal(infra: Infra, name: str) -> KafkaCredentials:
    folder = local_credentials_dir(infra.kafka_bootstrap, LOCAL_DIR)
    found = credentials_in(folder, name) if folder is not None else None
    if infra.kafka_admin is None or found is None:
        pytest.skip(f"the broker at {infra.kafka_bootstrap} has no identities made by deploy/local/kafka.sh")
    return found


def role_dsn(infra: Infra, role: str, database: str) -> str:
    """A DSN for `role` on `database`, with its password from deploy/local/postgres.sh."""
    admin = urlsplit(infra.admin_dsn)
    dsn = with_local_password(f"postgresql://{role}@{admin.hostname}:{admin.port or 5432}/{database}")
    if urlsplit(dsn).password is None:
        pytest.skip(f"no password for role {role}: the server has no roles made by deploy/local/postgres.sh")
    return dsn


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def topic_prefix(infra: Infra) -> AsyncIterator[str]:
    """Topics of this module's own: it sends records no service would."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    await prepare_topics(infra, prefix)
    yield prefix
    await release_topics(infra, prefix)


async def send_as(infra: Infra, who: KafkaCredentials, topic: str, value: bytes, key: bytes = b"k") -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.kafka_bootstrap,
        enable_idempotence=True,
        request_timeout_ms=15_000,
        **client_options(who),
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def test_the_usage_producer_cannot_write_invoicing_events(infra: Infra, topic_prefix: str) -> None:
    producer = principal(infra, "usage-producer")
    forged = Envelope.new(UpsertCustomer(currency="USD"), customer_id=f"cus-{uuid.uuid4().hex[:8]}").to_json()

    for topic in (topics.INVOICING_EVENTS, topic_prefix + topics.INVOICING_EVENTS):
        with pytest.raises(TopicAuthorizationFailedError):
            await send_as(infra, producer, topic, forged)


async def test_the_usage_producer_may_write_usage(infra: Infra, topic_prefix: str) -> None:
    """The counterpart of the refusals: the same identity, connection and producer are fine."""
    await send_as(infra, principal(infra, "usage-producer"), topic_prefix + topics.USAGE, b"not usage")


@pytest.mark.parametrize("writer", PRINCIPALS)
async def test_nobody_but_its_owner_may_write_an_events_topic(
    infra: Infra, topic_prefix: str, writer: str
) -> None:
    who = principal(infra, writer)
    for topic in EVENTS_TOPICS:
        if topic == f"{writer}.events":
            continue
        with pytest.raises(TopicAuthorizationFailedError):
            await send_as(infra, who, topic_prefix + topic, b"{}")


async def test_the_broker_grants_exactly_the_acl_table(infra: Infra) -> None:
    principal(infra, "ops")
    assert infra.kafka_admin is not None

    assert differences(read_table(ACL_TABLE), await granted(infra.kafka_bootstrap, infra.kafka_admin)) == []


@pytest.fixture(scope="module")
def own_roles(infra: Infra) -> Iterator[None]:
    for role in SERVICES:
        role_dsn(infra, role, role)
    yield


@pytest.mark.parametrize("role", SERVICES)
async def test_a_service_role_connects_to_its_own_database_and_to_no_other(
    infra: Infra, own_roles: None, role: str
) -> None:
    conn = await asyncpg.connect(role_dsn(infra, role, role))
    try:
        assert await conn.fetchval("select current_user") == role
    finally:
        await conn.close()
    for other in (s for s in (*SERVICES, "postgres") if s != role):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="CONNECT"):
            await asyncpg.connect(role_dsn(infra, role, other))


async def test_a_wrong_password_is_refused(infra: Infra, own_roles: None) -> None:
    """No `trust`: a login needs its password, the superuser's too."""
    for role in ("invoicing", "postgres"):
        right = urlsplit(role_dsn(infra, role, role if role != "postgres" else "postgres"))
        wrong = right._replace(netloc=f"{role}:not-the-password@{right.hostname}:{right.port}").geturl()
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(wrong)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack_as_principals(
    infra: Infra, topic_prefix: str, own_roles: None
) -> AsyncIterator[dict[str, int]]:
    """The four services as processes, each as its own Kafka principal and its own database
    role (a fresh database it owns); returns their HTTP ports."""
    admin = await asyncpg.connect(infra.admin_dsn)
    databases = {name: f"t_{uuid.uuid4().hex[:12]}" for name in SERVICES}
    processes: dict[str, ServiceProcess] = {}
    try:
        for name, database in databases.items():
            await admin.execute(f'create database "{database}" owner {name}')
            await admin.execute(f'revoke connect, temporary on database "{database}" from public')
        for name in SERVICES:
            who = principal(infra, name)
            settings = service_settings(
                infra,
                topic_prefix,
                role_dsn(infra, name, databases[name]),
                http_port=free_port(),
                kafka_username=who.username,
                kafka_password=who.password,
            )
            processes[name] = ServiceProcess(name, service_env(settings), settings.http_port)
            processes[name].start()
        for process in processes.values():
            await process.wait_healthy()
        yield {name: p.port for name, p in processes.items()}
    finally:
        codes = {name: p.stop() for name, p in processes.items()}
        for database in databases.values():
            await admin.execute(f'drop database if exists "{database}" with (force)')
        await admin.close()
        assert all(code == 0 for code in codes.values()), codes


@pytest_asyncio.fixture(loop_scope="session")
async def operator(infra: Infra, topic_prefix: str) -> AsyncIterator[KafkaProbe]:
    """Sends commands and reads outcomes as `ops`, as the CLI does."""
    probe = KafkaProbe(infra.kafka_bootstrap, topic_prefix, principal(infra, "ops"))
    await probe.start()
    yield probe
    await probe.stop()


async def test_a_forged_invoice_close_is_refused_and_the_real_close_goes_through(
    infra: Infra, topic_prefix: str, stack_as_principals: dict[str, int], operator: KafkaProbe
) -> None:
    """The probe of issue 14: an InvoiceClosed forged for a real (predictable) invoice id used
    to make rules answer the forgery and ignore the real close, leaving it `closed` for ever."""
    customer, charge_id = f"cus-{uuid.uuid4().hex[:8]}", f"chg-{uuid.uuid4().hex[:8]}"
    invoice_id = one_time_invoice_id(customer, charge_id)
    amount = Money.of("12.50", "USD")
    line = Line(line_id="l1", kind="one_time", description="forged", quantity=Decimal(1), amount=amount)
    forged = Envelope.new(
        InvoiceClosed(invoice_id=invoice_id, currency="USD", lines=[line], subtotal=amount),
        customer_id=customer,
    )
    for forger in ("usage-producer", "ops"):
        with pytest.raises(TopicAuthorizationFailedError):
            await send_as(
                infra, principal(infra, forger), topic_prefix + topics.INVOICING_EVENTS, forged.to_json()
            )

    upsert = await send(operator, topics.INVOICING_COMMANDS, UpsertCustomer(currency="USD"), customer)
    await answered(operator, topics.INVOICING_EVENTS, upsert, "CustomerUpserted")
    charge = AddCharge(charge_id=charge_id, description="the real charge", amount=amount, invoice_now=True)
    command = await send(operator, topics.INVOICING_COMMANDS, charge, customer)

    final = await answered(operator, topics.INVOICING_EVENTS, command, "InvoiceFinalized", timeout=60)
    assert final.data.invoice_id == invoice_id
    adjusted: list[Any] = [
        m
        for m in await operator.messages(topics.RULES_EVENTS)
        if m.type == "InvoiceAdjusted" and m.data.invoice_id == invoice_id
    ]
    assert len(adjusted) == 1 and adjusted[0].correlation_id == (command.correlation_id or str(command.id))
