"""A rule set's dry run: the adjustment lines one of its versions would add to a closed
invoice. The rules service evaluates (its read-only `POST .../dry-run`: nothing stored or
published); this module picks the version and the invoice's lines as closed — its own
adjustments left out, as they were not there when it closed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tally_contracts import Line


class DryRunRefused(Exception):
    """The dry run cannot be done; the message says what to choose instead."""


@dataclass(frozen=True)
class ClosedInvoice:
    invoice: dict[str, Any]
    lines: list[dict[str, Any]]
    """The invoice's lines as closed (no adjustments), as the read API gave them."""
    applied: list[dict[str, Any]]
    """The adjustment lines the invoice really has (from the version it was evaluated with)."""


@dataclass(frozen=True)
class DryRun:
    version: int
    invoice: dict[str, Any]
    lines: list[dict[str, Any]]
    would_add: list[Line]
    applied: list[dict[str, Any]]


def version_of(rule_set: dict[str, Any], version: int | None) -> int:
    """`version` of the rules service's `/rule-sets/{id}` answer (None: the current one),
    checked to exist."""
    wanted = rule_set["current"]["version"] if version is None else version
    if any(found["version"] == wanted for found in rule_set["versions"]):
        return int(wanted)
    raise DryRunRefused(f"rule set {rule_set['rule_set_id']!r} has no version {version}")


def as_closed(invoice: dict[str, Any]) -> ClosedInvoice:
    """The invoice's lines as they were when it closed; a pending invoice is refused."""
    if invoice["status"] == "pending":
        raise DryRunRefused(
            f"invoice {invoice['invoice_id']!r} is still pending: choose a closed one (closed, posted, paid or voided)"
        )
    lines: list[dict[str, Any]] = []
    applied: list[dict[str, Any]] = []
    for line in invoice.get("lines", []):
        if line.get("kind") == "adjustment":
            applied.append(line)
        else:
            lines.append({k: v for k, v in line.items() if k != "usage_ids"})
    return ClosedInvoice(invoice, lines, applied)


def dry_run(version: int, closed: ClosedInvoice, answer: dict[str, Any]) -> DryRun:
    """The rules service's `answer` for `closed`, read back into lines."""
    return DryRun(
        version,
        closed.invoice,
        closed.lines,
        [Line.model_validate(line) for line in answer["lines"]],
        closed.applied,
    )
