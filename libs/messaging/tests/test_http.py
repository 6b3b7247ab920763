"""The read API's guard rails (issue 13, D9), on a real Service with a real database.

Every read route registered with `Service.get` gets them: a path parameter with a control
character or over `MAX_ID_LENGTH` characters answers 400 with a JSON reason before the
endpoint runs (PostgreSQL refuses NUL in text, which used to answer 500); an id that is
fine but unknown gets the endpoint's own answer; an unexpected error answers a short JSON
500 and the traceback goes to the log only.
"""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from probe import build
from tally_contracts.identifiers import MAX_ID_LENGTH
from tally_messaging import Service
from tally_messaging.settings import ServiceSettings
from tally_testing import Infra, free_port, service_settings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def probe_with_read_api(settings: ServiceSettings) -> Service:
    service = build(settings)

    @service.get("/grants/{grant_id}")
    async def grant(request: Request) -> Response:
        grant_id = request.path_params["grant_id"]
        async with service.pool.acquire() as conn:
            total = await conn.fetchval("select sum(amount) from probe_applied where grant_id = $1", grant_id)
        if total is None:
            return JSONResponse({"error": "unknown grant"}, status_code=404)
        return JSONResponse({"grant_id": grant_id, "amount": str(total)})

    @service.get("/broken/{thing_id}")
    async def broken(request: Request) -> Response:
        raise RuntimeError("secret detail that must stay in the log")

    return service


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def running(infra: Infra, topic_prefix: str, module_database: Any) -> AsyncIterator[ServiceSettings]:
    settings = service_settings(infra, topic_prefix, await module_database(), http_port=free_port())
    service = probe_with_read_api(settings)
    await service.start()
    yield settings
    await service.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def client(running: ServiceSettings) -> AsyncIterator[httpx.AsyncClient]:
    base_url = f"http://127.0.0.1:{running.http_port}"
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        yield client


async def test_known_id_gets_the_endpoints_answer(
    running: ServiceSettings, client: httpx.AsyncClient
) -> None:
    grant_id = f"g-{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(running.database_url)
    try:
        await conn.execute(
            "insert into probe_applied (message_id, grant_id, amount) values ($1, $2, 12.50)",
            uuid.uuid4(),
            grant_id,
        )
    finally:
        await conn.close()

    response = await client.get(f"/grants/{grant_id}")

    assert response.status_code == 200
    assert response.json() == {"grant_id": grant_id, "amount": "12.50"}


@pytest.mark.parametrize(
    "raw_id",
    ["%00", "abc%00def", "%01", "a%0Ab", "%7F", "%C2%85"],
    ids=["nul", "nul-inside", "soh", "newline", "del", "c1-next-line"],
)
async def test_control_character_in_a_path_id_answers_400_with_a_reason(
    client: httpx.AsyncClient, raw_id: str
) -> None:
    response = await client.get(f"/grants/{raw_id}")

    assert response.status_code == 400
    body = response.json()
    assert body["parameter"] == "grant_id"
    assert "control character" in body["error"]


async def test_over_long_path_id_answers_400_with_the_limit(client: httpx.AsyncClient) -> None:
    response = await client.get("/grants/" + "x" * 10_000)

    assert response.status_code == 400
    body = response.json()
    assert body["parameter"] == "grant_id"
    assert str(MAX_ID_LENGTH) in body["error"]


async def test_id_at_the_length_limit_reaches_the_endpoint(client: httpx.AsyncClient) -> None:
    response = await client.get("/grants/" + "x" * MAX_ID_LENGTH)

    assert response.status_code == 404
    assert response.json() == {"error": "unknown grant"}


async def test_unknown_but_fine_id_gets_the_endpoints_own_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/grants/g-{uuid.uuid4().hex[:8]}")

    assert response.status_code == 404
    assert response.json() == {"error": "unknown grant"}


async def test_unusual_but_printable_id_reaches_the_endpoint(client: httpx.AsyncClient) -> None:
    response = await client.get("/grants/caf%C3%A9%20%E2%82%AC-%F0%9F%98%80")

    assert response.status_code == 404
    assert response.json() == {"error": "unknown grant"}


async def test_unexpected_error_answers_a_short_json_500_without_the_traceback(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/broken/x")

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == "internal error"
    assert "secret detail" not in response.text and "Traceback" not in response.text


async def test_read_route_answers_503_while_the_service_waits_for_its_database(
    infra: Infra, topic_prefix: str
) -> None:
    nothing_listens = f"postgresql://postgres@127.0.0.1:{free_port()}/probe"
    settings = service_settings(infra, topic_prefix, nothing_listens, http_port=free_port())
    service = probe_with_read_api(settings)
    starting = asyncio.create_task(service.start())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}") as client:
            for _ in range(100):
                with contextlib.suppress(httpx.ConnectError):
                    waiting = await client.get("/grants/g-1")
                    bad_id = await client.get("/grants/%00")
                    break
                await asyncio.sleep(0.1)
    finally:
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await service.stop()

    assert waiting.status_code == 503
    assert "starting" in waiting.json()["error"]
    assert bad_id.status_code == 400
