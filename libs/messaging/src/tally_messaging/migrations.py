"""A minimal, documented migration runner: numbered `.sql` files applied once, in order.

Each file runs in its own transaction and is recorded in `schema_migrations`; a
PostgreSQL advisory lock keeps two instances starting at once from racing. Files are
never edited once released: a change is a new file. (We chose this over Alembic or
yoyo because both would add SQLAlchemy or a sync driver to asyncpg-only services.)
"""

from importlib.resources import files
from importlib.resources.abc import Traversable

import structlog

from tally_messaging.db import DbConnection

log = structlog.get_logger()
_LOCK_KEY = 0x7A11_0001


def _sql_files(folder: Traversable) -> list[Traversable]:
    return sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)


async def apply_migrations(conn: DbConnection, package: str, folder: str = "migrations") -> list[str]:
    """Apply `package`'s `<folder>/*.sql` not yet applied; returns the names applied."""
    await conn.execute(
        "create table if not exists schema_migrations ("
        " name text primary key, applied_at timestamptz not null default now())"
    )
    applied: list[str] = []
    await conn.execute("select pg_advisory_lock($1)", _LOCK_KEY)
    try:
        done = {r["name"] for r in await conn.fetch("select name from schema_migrations")}
        for sql_file in _sql_files(files(package).joinpath(folder)):
            name = f"{package}/{sql_file.name}"
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(sql_file.read_text())
                await conn.execute("insert into schema_migrations (name) values ($1)", name)
            applied.append(name)
            log.info("migration applied", migration=name)
    finally:
        await conn.execute("select pg_advisory_unlock($1)", _LOCK_KEY)
    return applied
