"""Login, CSRF, redirects and formatting: the console app alone (no Kafka, no services)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from console.app import build, kafka_access
from console.formatting import iso_date, iso_time, money
from console.operators import ensure_operator, password_matches
from console.service_reads import ServiceHealth
from console.settings import ConsoleSettings
from tally_testing import free_port

NOWHERE = f"http://127.0.0.1:{free_port()}"
"""A port nothing listens on: pages that would read a service are not asked for here."""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    ensure_operator(tmp_path)
    return tmp_path


@contextlib.asynccontextmanager
async def app_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan run, as uvicorn runs it."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as client,
    ):
        yield client


@pytest.fixture
def settings(folder: Path) -> ConsoleSettings:
    return ConsoleSettings(
        console_dir=folder,
        invoicing_url=NOWHERE,
        rules_url=NOWHERE,
        credits_url=NOWHERE,
        payments_url=NOWHERE,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def client(settings: ConsoleSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(build(settings)) as found:
        yield found


def password(folder: Path) -> str:
    return (folder / "operators" / "operator.password").read_text().strip()


def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html
    return found.group(1)


async def log_in(
    client: httpx.AsyncClient, secret: str, name: str = "operator", next_page: str = "/dead-letters/x"
) -> None:
    form = await client.get("/login")
    done = await client.post(
        "/login", data={"csrf": csrf(form.text), "operator": name, "password": secret, "next": next_page}
    )
    assert done.status_code == 303, done.text


async def test_every_page_sends_a_visitor_without_a_session_to_the_login_form(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/customers", "/invoices/inv-1", "/dead-letters", "/lag", "/rule-sets", "/flows/c-1"):
        response = await client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=")


async def test_a_replay_without_a_session_is_not_done(client: httpx.AsyncClient) -> None:
    response = await client.post("/dead-letters/usage/replay", data={"partition": "0", "offset": "0"})

    assert response.status_code == 303 and response.headers["location"].startswith("/login")


async def test_the_right_password_opens_the_page_asked_for(client: httpx.AsyncClient, folder: Path) -> None:
    form = await client.get("/login?next=/dead-letters/nope")
    done = await client.post(
        "/login",
        data={
            "csrf": csrf(form.text),
            "operator": "operator",
            "password": password(folder),
            "next": "/dead-letters/nope",
        },
    )

    assert done.status_code == 303 and done.headers["location"] == "/dead-letters/nope"
    page = await client.get("/dead-letters/nope")  # an unknown topic: answered without Kafka
    assert page.status_code == 404 and "No topic &#39;nope&#39;" in page.text


async def test_a_wrong_password_is_refused_and_opens_nothing(client: httpx.AsyncClient, folder: Path) -> None:
    form = await client.get("/login")
    refused = await client.post(
        "/login", data={"csrf": csrf(form.text), "operator": "operator", "password": "guess"}
    )

    assert refused.status_code == 401 and "Wrong operator name or password" in refused.text
    assert (await client.get("/dead-letters/nope")).status_code == 303


async def test_an_unknown_operator_is_refused(client: httpx.AsyncClient, folder: Path) -> None:
    form = await client.get("/login")
    refused = await client.post(
        "/login", data={"csrf": csrf(form.text), "operator": "mallory", "password": password(folder)}
    )

    assert refused.status_code == 401


async def test_a_login_form_without_its_csrf_token_is_refused(
    client: httpx.AsyncClient, folder: Path
) -> None:
    await client.get("/login")
    refused = await client.post("/login", data={"operator": "operator", "password": password(folder)})

    assert refused.status_code == 403


async def test_login_never_redirects_to_another_site(client: httpx.AsyncClient, folder: Path) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        form = await client.get("/login")
        done = await client.post(
            "/login",
            data={
                "csrf": csrf(form.text),
                "operator": "operator",
                "password": password(folder),
                "next": target,
            },
        )
        assert done.headers["location"] == "/customers", target


async def test_a_replay_without_the_sessions_csrf_token_is_refused(
    client: httpx.AsyncClient, folder: Path
) -> None:
    await log_in(client, password(folder))

    missing = await client.post("/dead-letters/usage/replay", data={"partition": "0", "offset": "0"})
    wrong = await client.post(
        "/dead-letters/usage/replay", data={"partition": "0", "offset": "0", "csrf": "x" * 43}
    )

    assert missing.status_code == 403 and wrong.status_code == 403
    assert "CSRF" in missing.text


async def test_a_token_from_another_session_does_not_replay(
    client: httpx.AsyncClient, folder: Path, settings: ConsoleSettings
) -> None:
    async with app_client(build(settings)) as other:
        stolen = csrf((await other.get("/login")).text)
    await log_in(client, password(folder))

    refused = await client.post(
        "/dead-letters/usage/replay", data={"partition": "0", "offset": "0", "csrf": stolen}
    )

    assert refused.status_code == 403


async def test_logout_needs_the_token_and_ends_the_session(client: httpx.AsyncClient, folder: Path) -> None:
    await log_in(client, password(folder))
    page = await client.get("/dead-letters/nope")

    assert (await client.post("/logout", data={})).status_code == 403
    assert (await client.post("/logout", data={"csrf": csrf(page.text)})).status_code == 303
    assert (await client.get("/dead-letters/nope")).status_code == 303


async def test_pages_may_not_be_framed_nor_cached(client: httpx.AsyncClient) -> None:
    headers = (await client.get("/login")).headers

    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"


def test_kafka_access_is_the_ops_principal_from_the_credentials_folder(tmp_path: Path) -> None:
    (tmp_path / "ops.password").write_text("s3cret\n")
    (tmp_path / "credits.password").write_text("other\n")

    options = kafka_access(ConsoleSettings(kafka_credentials_dir=tmp_path)).options()

    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("ops", "s3cret")
    assert options["security_protocol"] == "SASL_PLAINTEXT"


def test_kafka_access_without_credentials_is_plaintext(tmp_path: Path) -> None:
    settings = ConsoleSettings(kafka_bootstrap="127.0.0.1:1", kafka_credentials_dir=tmp_path)

    assert kafka_access(settings).options() == {"bootstrap_servers": "127.0.0.1:1"}


async def test_health_answers_without_a_session(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}


def test_password_files_are_made_once_and_only_readable_by_their_owner(tmp_path: Path) -> None:
    first = ensure_operator(tmp_path)
    secret = first.read_text().strip()

    assert ensure_operator(tmp_path).read_text().strip() == secret
    assert first.stat().st_mode & 0o077 == 0
    assert password_matches(tmp_path, "operator", secret)
    assert not password_matches(tmp_path, "../operators/operator", secret)


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        ("12.5", "USD", "12.50 USD"),
        ("0", "EUR", "0.00 EUR"),
        ("-80", "USD", "-80.00 USD"),
        ("1500", "JPY", "1500 JPY"),
        ("1.5", "BHD", "1.500 BHD"),
        ("0.123456", "USD", "0.123456 USD"),
        ("100000000000000", "USD", "100000000000000.00 USD"),
    ],
)
def test_money_is_shown_at_its_currencys_minor_unit(amount: str, currency: str, shown: str) -> None:
    assert money(amount, currency) == shown


def test_money_reads_an_amount_object_and_marks_a_missing_one() -> None:
    assert money({"amount": "3", "currency": "USD"}) == "3.00 USD"
    assert money(None, "USD") == "–"


def test_times_and_dates_are_iso_in_utc() -> None:
    assert iso_time("2026-12-01T10:00:00.123456+01:00") == "2026-12-01T09:00:00Z"
    assert iso_time(1_796_112_000_000) == "2026-12-01T08:00:00Z"
    assert iso_date("2026-11-30T23:30:00-02:00") == "2026-12-01"
    assert iso_date("2026-11-01") == "2026-11-01"


def test_lag_and_backlog_are_read_from_prometheus_text() -> None:
    text = "\n".join(
        [
            "# TYPE tally_consumer_lag gauge",
            'tally_consumer_lag{partition="0",service="credits",topic="t1.credits.commands"} 3.0',
            'tally_consumer_lag{partition="1",service="credits",topic="t1.credits.commands"} 4.0',
            'tally_consumer_lag{partition="0",service="credits",topic="t1.payments.events"} 0.0',
            "# TYPE tally_outbox_backlog gauge",
            'tally_outbox_backlog{service="credits"} 12.0',
            "# TYPE tally_consumer_stalled gauge",
            'tally_consumer_stalled{service="credits",topic="t1.payments.events"} 1.0',
            "# TYPE tally_messages_handled_total counter",
            'tally_messages_handled_total{outcome="dead_lettered",service="credits",topic="t1.credits.commands",type="X"} 2.0',
        ]
    )
    found = ServiceHealth("credits", "http://x")

    found.read_metrics(text, "t1.")

    assert found.lag_by_topic == {"credits.commands": 7, "payments.events": 0}
    assert (found.total_lag, found.outbox_backlog, found.stalled_topics, found.dead_lettered) == (
        7,
        12,
        ["payments.events"],
        2,
    )
