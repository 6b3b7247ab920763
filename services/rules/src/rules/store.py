"""The rules service's only SQL."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from rules.rule_sets import RuleSetVersion
from tally_contracts.rules import InvoiceAdjusted
from tally_messaging.db import DbConnection


@dataclass(frozen=True, slots=True)
class SavedVersion:
    """A rule set version as stored, with when it was saved."""

    rule_set: RuleSetVersion
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Assignment:
    customer_id: str
    rule_set_id: str
    assigned_at: dt.datetime


def _saved(row: Any) -> SavedVersion:
    return SavedVersion(RuleSetVersion.model_validate_json(row["body"]), row["created_at"])


# The current (highest) version of each rule set.
_CURRENT = (
    "select distinct on (rule_set_id) rule_set_id, version, is_default, body, created_at, put_seq"
    " from rule_set_versions order by rule_set_id, version desc"
)


class RulesStore:
    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn

    # -- rule sets ----------------------------------------------------------------

    async def latest_version(self, rule_set_id: str) -> int | None:
        value = await self.conn.fetchval(
            "select max(version) from rule_set_versions where rule_set_id = $1", rule_set_id
        )
        return int(value) if value is not None else None

    async def save_version(self, version: RuleSetVersion) -> None:
        await self.conn.execute(
            "insert into rule_set_versions (rule_set_id, version, name, is_default, body)"
            " values ($1, $2, $3, $4, $5::jsonb)",
            version.rule_set_id,
            version.version,
            version.name,
            version.is_default,
            version.model_dump_json(),
        )

    async def current(self, rule_set_id: str) -> SavedVersion | None:
        row = await self.conn.fetchrow(
            "select body, created_at from rule_set_versions where rule_set_id = $1"
            " order by version desc limit 1",
            rule_set_id,
        )
        return _saved(row) if row else None

    async def versions(self, rule_set_id: str) -> list[SavedVersion]:
        """Every version of the rule set, oldest first."""
        rows = await self.conn.fetch(
            "select body, created_at from rule_set_versions where rule_set_id = $1 order by version",
            rule_set_id,
        )
        return [_saved(r) for r in rows]

    async def default(self) -> SavedVersion | None:
        """The current version of the default rule set: of the sets whose current version is
        marked default, the one Put last."""
        row = await self.conn.fetchrow(
            f"select body, created_at from ({_CURRENT}) as current_versions"
            " where is_default order by put_seq desc limit 1"
        )
        return _saved(row) if row else None

    # -- assignments --------------------------------------------------------------

    async def assign(self, customer_id: str, rule_set_id: str) -> None:
        await self.conn.execute(
            "insert into assignments (customer_id, rule_set_id) values ($1, $2)"
            " on conflict (customer_id) do update set rule_set_id = $2, assigned_at = now()",
            customer_id,
            rule_set_id,
        )

    async def assignment(self, customer_id: str) -> Assignment | None:
        row = await self.conn.fetchrow(
            "select customer_id, rule_set_id, assigned_at from assignments where customer_id = $1",
            customer_id,
        )
        if row is None:
            return None
        return Assignment(row["customer_id"], row["rule_set_id"], row["assigned_at"])

    # -- answers to closed invoices -----------------------------------------------

    async def adjustment(self, invoice_id: str) -> InvoiceAdjusted | None:
        body = await self.conn.fetchval(
            "select body from invoice_adjustments where invoice_id = $1", invoice_id
        )
        return InvoiceAdjusted.model_validate_json(body) if body is not None else None

    async def save_adjustment(self, customer_id: str | None, adjusted: InvoiceAdjusted) -> bool:
        """Record the answer to an invoice; False when it already had one (nothing changed)."""
        inserted = await self.conn.fetchval(
            "insert into invoice_adjustments (invoice_id, customer_id, rule_set_id, rule_set_version, body)"
            " values ($1, $2, $3, $4, $5::jsonb) on conflict (invoice_id) do nothing returning 1",
            adjusted.invoice_id,
            customer_id,
            adjusted.rule_set_id,
            adjusted.rule_set_version,
            adjusted.model_dump_json(),
        )
        return inserted is not None
