"""The rules service: subscriptions wired to handlers, and its read API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from rules import handlers
from rules.evaluation import evaluate
from rules.store import RulesStore, SavedVersion
from tally_contracts import CurrencyMismatch, Line, topics
from tally_contracts.invoicing import InvoiceClosed
from tally_contracts.read_apis import DEFAULT_READ_API_PORTS
from tally_contracts.rules import AssignRuleSet, PutRuleSet
from tally_messaging import Service, ServiceSettings


def build(settings: ServiceSettings | None = None) -> Service:
    service = Service(
        "rules",
        events_topic=topics.RULES_EVENTS,
        default_http_port=DEFAULT_READ_API_PORTS["rules"],
        settings=settings,
    )
    service.consumes(topics.RULES_COMMANDS, topics.INVOICING_EVENTS)
    service.handles(topics.RULES_COMMANDS, PutRuleSet)(handlers.put)
    service.handles(topics.RULES_COMMANDS, AssignRuleSet)(handlers.assign)
    # Every other invoicing event has no handler: the runtime counts it as ignored.
    service.handles(topics.INVOICING_EVENTS, InvoiceClosed)(handlers.invoice_closed)

    @service.get("/rule-sets/{rule_set_id}")
    async def get_rule_set(request: Request) -> Response:
        async with service.pool.acquire() as conn:
            versions = await RulesStore(conn).versions(request.path_params["rule_set_id"])
        if not versions:
            return JSONResponse({"error": "unknown rule set"}, status_code=404)
        return JSONResponse(
            {
                "rule_set_id": versions[-1].rule_set.rule_set_id,
                "current": _version_json(versions[-1]),
                "versions": [_version_json(v) for v in versions],
            }
        )

    @service.query("/rule-sets/{rule_set_id}/versions/{version}/dry-run")
    async def dry_run(request: Request) -> Response:
        """The adjustment lines a version would add to an invoice with the given lines, in
        the given currency: the pure evaluation, nothing stored or published."""
        version = request.path_params["version"]
        if not version.isdigit():
            return JSONResponse({"error": f"version must be a number, not {version!r}"}, status_code=400)
        try:
            asked = DryRunRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            return JSONResponse({"error": f"not a dry run request: {_first_problem(exc)}"}, status_code=400)
        async with service.pool.acquire() as conn:
            versions = await RulesStore(conn).versions(request.path_params["rule_set_id"])
        chosen = next((v for v in versions if v.rule_set.version == int(version)), None)
        if chosen is None:
            return JSONResponse({"error": "unknown rule set or version"}, status_code=404)
        try:
            lines = evaluate(chosen.rule_set, asked.lines, asked.currency)
        except CurrencyMismatch as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(
            {
                "rule_set_id": chosen.rule_set.rule_set_id,
                "version": chosen.rule_set.version,
                "lines": [line.model_dump(mode="json") for line in lines],
            }
        )

    @service.get("/customers/{customer_id}/rule-set")
    async def customer_rule_set(request: Request) -> Response:
        customer_id = request.path_params["customer_id"]
        async with service.pool.acquire() as conn:
            store = RulesStore(conn)
            assignment = await store.assignment(customer_id)
            assigned = await store.current(assignment.rule_set_id) if assignment else None
            default = await store.default()
        applies = assigned or default
        return JSONResponse(
            {
                "customer_id": customer_id,
                "assigned": None
                if assignment is None
                else {
                    "rule_set_id": assignment.rule_set_id,
                    "version": assigned.rule_set.version if assigned else None,
                    "assigned_at": assignment.assigned_at.isoformat(),
                },
                "default": None if default is None else _summary(default),
                "applies": None if applies is None else _summary(applies),
            }
        )

    return service


class DryRunRequest(BaseModel):
    """An invoice's lines as closed (no adjustment lines) and its currency."""

    model_config = ConfigDict(extra="forbid")
    currency: str
    lines: list[Line]


def _first_problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    return f"{'.'.join(str(part) for part in first['loc'])}: {first['msg']}"


def _summary(saved: SavedVersion) -> dict[str, Any]:
    return {"rule_set_id": saved.rule_set.rule_set_id, "version": saved.rule_set.version}


def _version_json(saved: SavedVersion) -> dict[str, Any]:
    return {**saved.rule_set.model_dump(mode="json"), "created_at": saved.created_at.isoformat()}
