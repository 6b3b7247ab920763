"""Start-up that waits for what it needs.

A service started while PostgreSQL restarts or the broker elects a leader must not exit:
each dependency is retried with exponential backoff (every failed attempt logged) until
it answers or the start-up time (`TALLY_STARTUP_TIMEOUT_SECONDS`) runs out. Meanwhile
`/health` answers 503 with what is awaited and the last error. Only "not reachable yet"
errors are retried; anything else (a bad migration, a bad password) fails at once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import structlog
from aiokafka.errors import KafkaError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from tally_messaging.processing import INFRASTRUCTURE_ERRORS
from tally_messaging.transaction import describe_exception

log = structlog.get_logger()
T = TypeVar("T")

DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    *INFRASTRUCTURE_ERRORS,
    asyncpg.InvalidCatalogNameError,  # the server is up, its databases not created yet
)
"""PostgreSQL errors that mean "not there yet": retried at start."""

KAFKA_UNAVAILABLE: tuple[type[BaseException], ...] = (KafkaError, OSError)
"""Broker errors that mean "not there yet" (no connection, no leader or controller yet)."""

MAX_BACKOFF_SECONDS = 5.0
"""Longest pause between two attempts: a dependency back is noticed within this."""


class StartupTimedOut(RuntimeError):
    """A dependency did not answer within the start-up time."""


class Startup:
    """Waits for each dependency in turn; what it waits for is what `/health` reports."""

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        self.ready = False
        self.waiting_for: str | None = None
        self.last_error: str | None = None
        self.attempts = 0
        self._began = time.monotonic()
        self._backoff = wait_exponential(multiplier=0.2, max=MAX_BACKOFF_SECONDS)

    def begin(self) -> None:
        """Start the clock: the start-up time counts from here, across all dependencies."""
        self._began = time.monotonic()

    def _seconds_left(self) -> float:
        return self.timeout_seconds - (time.monotonic() - self._began)

    def status(self) -> dict[str, Any]:
        """The body of `/health` while starting."""
        return {
            "status": "starting",
            "waiting_for": self.waiting_for,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "seconds_starting": round(time.monotonic() - self._began, 1),
            "gives_up_after_seconds": self.timeout_seconds,
        }

    async def wait_for(
        self,
        dependency: str,
        attempt: Callable[[], Awaitable[T]],
        unavailable: tuple[type[BaseException], ...],
    ) -> T:
        """`attempt()`'s result once it succeeds; retried while it raises `unavailable`.

        Raises StartupTimedOut when it still fails once the start-up time (counted from
        `begin`, across all dependencies) is over; the last attempt is made at that time.
        """
        self.waiting_for, self.last_error, self.attempts = dependency, None, 0
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(unavailable),
            wait=lambda state: max(0.0, min(self._backoff(state), self._seconds_left())),
            stop=lambda state: self._seconds_left() <= 0,
            before_sleep=lambda state: self._failed(dependency, state),
            reraise=True,
        )
        try:
            async for try_ in retrying:
                with try_:
                    self.attempts += 1
                    result = await attempt()
        except unavailable as exc:
            log.error(
                "gave up waiting at start-up",
                dependency=dependency,
                attempts=self.attempts,
                after_seconds=round(time.monotonic() - self._began, 1),
                error=describe_exception(exc),
            )
            raise StartupTimedOut(
                f"{dependency} did not answer within {self.timeout_seconds:g} s "
                f"({self.attempts} attempts); last error: {describe_exception(exc)}"
            ) from exc
        if self.attempts > 1:
            log.info("dependency ready", dependency=dependency, attempts=self.attempts)
        return result

    def _failed(self, dependency: str, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        self.last_error = describe_exception(error)[:500] if error is not None else None
        log.warning(
            "waiting for a dependency at start-up",
            dependency=dependency,
            attempt=self.attempts,
            retry_in_seconds=round(state.upcoming_sleep, 1),
            error=self.last_error,
        )

    def done(self) -> None:
        self.ready, self.waiting_for, self.last_error = True, None, None
