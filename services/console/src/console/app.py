"""The console's pages (Starlette + Jinja2, plain forms): wiring, login and every route.

Reads only: the four services' read APIs and /metrics, and Kafka topics read from the
oldest record to the current end. The one write is the replay of a dead letter, as
`tally replay` does it, logged with the operator who asked.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import structlog
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from console import views
from console.auth import csrf_ok, csrf_refused, csrf_token, log_in, operator_of, operator_only, safe_next
from console.dry_run import DryRunRefused, as_closed, dry_run, version_of
from console.formatting import iso_date, iso_time, money
from console.operators import password_matches, session_key
from console.replay import ReplayRefused, replay_one
from console.service_reads import SERVICES, ReadApis, ReadFailed
from console.settings import ConsoleSettings
from console.topic_reading import SOURCE_TOPICS, TopicReader
from tally_cli.connection import KafkaAccess
from tally_contracts import topics
from tally_messaging.kafka_security import kafka_credentials

HERE = Path(__file__).parent
SHOWN_CUSTOMERS = 200
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
"""No framing (the replay button cannot be clickjacked), no script from anywhere, nothing cached."""
log = structlog.get_logger("console")


def templates() -> Jinja2Templates:
    found = Jinja2Templates(directory=HERE / "templates")
    found.env.filters.update(money=money, iso_time=iso_time, iso_date=iso_date)
    return found


def kafka_access(settings: ConsoleSettings) -> KafkaAccess:
    """Kafka as the console's principal (`ops` where the broker has identities)."""
    return KafkaAccess(
        settings.kafka_bootstrap, kafka_credentials(settings, settings.console_kafka_principal)
    )


def build(settings: ConsoleSettings | None = None) -> Starlette:
    settings = settings or ConsoleSettings()
    folder = settings.folder()
    pages = templates()
    reader = TopicReader(
        kafka_access(settings),
        settings.topic_prefix,
        settings.console_scan_limit,
        settings.console_scan_seconds,
    )
    http = httpx.AsyncClient(timeout=10)
    reads = ReadApis(settings, http)

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        flash = request.session.pop("flash", None) if operator_of(request) else None
        return pages.TemplateResponse(
            request,
            name,
            {"operator": operator_of(request), "csrf": csrf_token(request), "flash": flash, **context},
            status_code=status_code,
        )

    def failed(request: Request, reason: str, status_code: int = 502) -> Response:
        return page(request, "error.html", status_code=status_code, reason=reason)

    async def login_form(request: Request) -> Response:
        return page(request, "login.html", next=safe_next(request.query_params.get("next")))

    async def login(request: Request) -> Response:
        form = await request.form()
        target = safe_next(str(form.get("next") or ""))
        if not csrf_ok(request, form.get("csrf")):
            return csrf_refused()
        name, password = str(form.get("operator") or "").strip(), str(form.get("password") or "")
        if not password_matches(folder, name, password):
            log.warning("console login refused", operator=name, client=_client(request))
            return page(
                request, "login.html", status_code=401, next=target, error="Wrong operator name or password."
            )
        log_in(request, name)
        log.info("console login", operator=name, client=_client(request))
        return RedirectResponse(target, status_code=303)

    async def logout(request: Request) -> Response:
        form = await request.form()
        if not csrf_ok(request, form.get("csrf")):
            return csrf_refused()
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @operator_only
    async def customers(request: Request) -> Response:
        query = request.query_params.get("q", "")
        upserts = await reader.of_type(topics.INVOICING_EVENTS, "CustomerUpserted")
        found = views.matching_customers(upserts, query)
        return page(request, "customers.html", q=query, found=found[:SHOWN_CUSTOMERS], matched=len(found))

    @operator_only
    async def customer(request: Request) -> Response:
        customer_id = request.path_params["customer_id"]
        found = await reads.customer(customer_id)
        found["credit_view"] = {i["invoice_id"]: i for i in found["credit_view"]}
        return page(request, "customer.html", customer_id=customer_id, **found)

    @operator_only
    async def invoice(request: Request) -> Response:
        invoice_id = request.path_params["invoice_id"]
        found = await reads.invoice(invoice_id)
        if found is None:
            return failed(request, f"No invoice {invoice_id!r}: invoicing does not know it.", 404)
        customer_id = found["customer_id"]
        customer = await reads.customer(customer_id)
        messages, truncated = await reader.customer_messages(customer_id)
        paid = [p for p in customer["payments"]["payments"] if p.get("invoice_id") == invoice_id]
        return page(
            request,
            "invoice.html",
            invoice=found,
            credit=views.credit_view_of(customer["credit_view"], invoice_id),
            payments=paid,
            timeline=views.invoice_timeline(messages, invoice_id),
            truncated=truncated,
            rule_set=customer["rule_set"],
        )

    @operator_only
    async def grant(request: Request) -> Response:
        customer_id, grant_id = request.path_params["customer_id"], request.path_params["grant_id"]
        messages, truncated = await reader.customer_messages(customer_id)
        return page(
            request,
            "grant.html",
            customer_id=customer_id,
            grant=views.grant_view(messages, grant_id),
            truncated=truncated,
        )

    @operator_only
    async def ledger(request: Request) -> Response:
        customer_id = request.path_params["customer_id"]
        entries = await reads.ledger(customer_id)
        messages, truncated = await reader.customer_messages(customer_id)
        return page(
            request,
            "ledger.html",
            customer_id=customer_id,
            rows=views.ledger_rows(entries, messages),
            truncated=truncated,
        )

    @operator_only
    async def flow(request: Request) -> Response:
        correlation_id = request.path_params["correlation_id"]
        messages, truncated = await reader.flow(correlation_id)
        return page(
            request, "flow.html", correlation_id=correlation_id, messages=messages, truncated=truncated
        )

    @operator_only
    async def rule_sets(request: Request) -> Response:
        changes = await reader.of_type(topics.RULES_EVENTS, "RuleSetChanged")
        latest = {m.data.get("rule_set_id"): m for m in changes}
        return page(
            request,
            "rule_sets.html",
            rule_sets=sorted(latest.values(), key=lambda m: str(m.data.get("rule_set_id"))),
        )

    @operator_only
    async def rule_set(request: Request) -> Response:
        rule_set_id = request.path_params["rule_set_id"]
        found = await reads.rule_set(rule_set_id)
        if found is None:
            return failed(request, f"No rule set {rule_set_id!r}: the rules service does not know it.", 404)
        outcome, refusal = None, None
        invoice_id = request.query_params.get("invoice_id", "").strip()
        chosen_version = request.query_params.get("version", "")
        if invoice_id:
            try:
                version = version_of(found, int(chosen_version) if chosen_version.isdigit() else None)
                closed = await reads.invoice(invoice_id)
                if closed is None:
                    raise DryRunRefused(f"no invoice {invoice_id!r}: invoicing does not know it")
                before = as_closed(closed)
                answer = await reads.dry_run(rule_set_id, version, closed["currency"], before.lines)
                outcome = dry_run(version, before, answer)
            except (DryRunRefused, ReadFailed) as exc:
                refusal = str(exc)
        return page(
            request,
            "rule_set.html",
            rule_set=found,
            invoice_id=invoice_id,
            chosen_version=chosen_version,
            outcome=outcome,
            refusal=refusal,
        )

    @operator_only
    async def dead_letter_topics(request: Request) -> Response:
        return page(request, "dead_letters.html", counts=await reader.dead_letter_counts())

    @operator_only
    async def dead_letters(request: Request) -> Response:
        topic = request.path_params["topic"]
        if topic not in SOURCE_TOPICS:
            return failed(request, f"No topic {topic!r}; the topics are {', '.join(SOURCE_TOPICS)}.", 404)
        letters = await reader.dead_letters(topic)
        return page(request, "dead_letter_list.html", topic=topic, letters=letters)

    @operator_only
    async def replay(request: Request) -> Response:
        topic = request.path_params["topic"]
        form = await request.form()
        if not csrf_ok(request, form.get("csrf")):
            log.warning("replay refused: bad CSRF token", operator=operator_of(request), topic=topic)
            return csrf_refused()
        if topic not in SOURCE_TOPICS:
            return failed(request, f"No topic {topic!r}.", 404)
        try:
            partition, offset = int(str(form.get("partition"))), int(str(form.get("offset")))
        except ValueError:
            return failed(request, "The replay form names no dead letter (partition and offset).", 400)
        try:
            done = await replay_one(reader, topic, partition, offset)
        except (ReplayRefused, KafkaError) as exc:
            reason = _refusal(exc) if isinstance(exc, KafkaError) else str(exc)
            log.warning(
                "replay refused",
                operator=operator_of(request),
                dead_letter=f"{topic}.dlq[{partition}]@{offset}",
                reason=reason,
            )
            request.session["flash"] = f"Not replayed: {reason}"
            return RedirectResponse(f"/dead-letters/{topic}", status_code=303)
        log.info(
            "dead letter replayed",
            operator=operator_of(request),
            client=_client(request),
            dead_letter=f"{topic}.dlq[{partition}]@{offset}",
            origin=done.letter.origin,
            to_topic=done.replay.topic,
            key=done.replay.key.decode(errors="replace") if done.replay.key else None,
            error=done.replay.error[:500],
        )
        request.session["flash"] = (
            f"Re-published {done.letter.origin} to {topic} (dead letter {topic}.dlq[{partition}]@{offset})."
        )
        return RedirectResponse(f"/dead-letters/{topic}", status_code=303)

    @operator_only
    async def lag(request: Request) -> Response:
        found = [await reads.service_health(s) for s in SERVICES]
        return page(request, "lag.html", services=found)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def home(request: Request) -> Response:
        return RedirectResponse("/customers", status_code=303)

    async def read_failed(request: Request, exc: Exception) -> Response:
        return failed(request, str(exc))

    async def kafka_failed(request: Request, exc: Exception) -> Response:
        return failed(request, f"Kafka did not answer: {exc!r}")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await http.aclose()

    return Starlette(
        routes=[
            Route("/", home),
            Route("/health", health),
            Route("/login", login_form, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/customers", customers),
            Route("/customers/{customer_id}", customer),
            Route("/customers/{customer_id}/ledger", ledger),
            Route("/customers/{customer_id}/grants/{grant_id}", grant),
            Route("/invoices/{invoice_id}", invoice),
            Route("/flows/{correlation_id}", flow),
            Route("/rule-sets", rule_sets),
            Route("/rule-sets/{rule_set_id}", rule_set),
            Route("/dead-letters", dead_letter_topics),
            Route("/dead-letters/{topic}", dead_letters, methods=["GET"]),
            Route("/dead-letters/{topic}/replay", replay, methods=["POST"]),
            Route("/lag", lag),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=session_key(folder),
                session_cookie="tally_console",
                max_age=settings.console_session_max_age,
                same_site="lax",
                https_only=False,
            ),
        ],
        exception_handlers={ReadFailed: read_failed, KafkaError: kafka_failed},
        lifespan=lifespan,
    )


class SecurityHeaders:
    """Adds `SECURITY_HEADERS` to every response (a pure ASGI middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def _refusal(exc: KafkaError) -> str:
    """Why the broker refused a replay, in words an operator can act on."""
    if isinstance(exc, TopicAuthorizationFailedError):
        return (
            f"the broker refused: the console's principal may not write that topic ({exc}). As `ops` it "
            "replays usage and commands; only a service writes its own *.events topic, so an events "
            "dead letter is replayed by fixing its consumer, not by re-publishing it"
        )
    return f"Kafka error: {exc!r}"


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None
