"""The connection type stores and handlers receive."""

import asyncpg
from asyncpg.pool import PoolConnectionProxy

DbConnection = asyncpg.Connection | PoolConnectionProxy
"""A connection, direct or from a pool."""
