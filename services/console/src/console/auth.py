"""Login, the session cookie and CSRF tokens.

The session (Starlette's SessionMiddleware: a cookie signed with itsdangerous, HttpOnly,
SameSite=Lax) holds the operator's name and a CSRF token made at login; every form that
changes something (replay, logout) sends the token back and is refused without it."""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

Endpoint = Callable[[Request], Awaitable[Response]]


def operator_of(request: Request) -> str | None:
    name = request.session.get("operator")
    return name if isinstance(name, str) else None


def log_in(request: Request, operator: str) -> None:
    request.session.clear()
    request.session.update(operator=operator, csrf=secrets.token_urlsafe(32))


def csrf_token(request: Request) -> str:
    """The session's token (one is made for a visitor not logged in yet: the login form)."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def csrf_ok(request: Request, sent: object) -> bool:
    token = request.session.get("csrf")
    return isinstance(token, str) and isinstance(sent, str) and hmac.compare_digest(token, sent)


def csrf_refused() -> Response:
    return PlainTextResponse(
        "refused: the form's CSRF token is missing or wrong; reload the page and try again", status_code=403
    )


def operator_only(endpoint: Endpoint) -> Endpoint:
    """The page for a logged-in operator; anyone else goes to the login form, then back."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        if operator_of(request) is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return await endpoint(request)

    return guarded


def safe_next(target: str | None) -> str:
    """Only a path on this console (no other host, no scheme): an open redirect otherwise."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/customers"
    return target
