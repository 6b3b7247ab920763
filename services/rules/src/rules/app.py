"""The rules service: subscriptions wired to handlers, and its read API."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from rules import handlers
from rules.store import RulesStore, SavedVersion
from tally_contracts import topics
from tally_contracts.invoicing import InvoiceClosed
from tally_contracts.rules import AssignRuleSet, PutRuleSet
from tally_messaging import Service, ServiceSettings


def build(settings: ServiceSettings | None = None) -> Service:
    service = Service("rules", events_topic=topics.RULES_EVENTS, settings=settings)
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


def _summary(saved: SavedVersion) -> dict[str, Any]:
    return {"rule_set_id": saved.rule_set.rule_set_id, "version": saved.rule_set.version}


def _version_json(saved: SavedVersion) -> dict[str, Any]:
    return {**saved.rule_set.model_dump(mode="json"), "created_at": saved.created_at.isoformat()}
