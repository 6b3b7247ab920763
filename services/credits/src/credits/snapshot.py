"""The JSON snapshot of a whole `CustomerLedger`, as migration 0001 stored it (one row per
customer in `customer_ledgers`). No longer written: 0002_open_items turns every snapshot
into rows. Kept so the upgrade is tested against snapshots made exactly as 0001 made them.
"""

from __future__ import annotations

from pydantic import TypeAdapter

from credits.customer import CustomerLedger

SNAPSHOT = TypeAdapter(CustomerLedger)
"""Frozen dataclasses ⇄ JSON; Money amounts are decimal strings, so they survive exactly."""


def dump_state(state: CustomerLedger) -> str:
    return SNAPSHOT.dump_json(state).decode()


def load_state(raw: str | bytes) -> CustomerLedger:
    return SNAPSHOT.validate_json(raw)
