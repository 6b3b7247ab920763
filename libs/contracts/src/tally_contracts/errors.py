"""The one error a domain raises when a message breaks a business rule."""

from __future__ import annotations


class DomainError(Exception):
    """A business rule was broken: `code` is stable (machine-readable), `reason` is a
    sentence a person can act on. The runtime alone answers it: CommandRejected for a
    command (nothing the handler did is kept), the DLQ with the reason for an event."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


__all__ = ["DomainError"]
