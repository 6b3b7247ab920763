"""What a service declares it handles: typed handlers, and the registrations the runtime
dispatches on and the AsyncAPI documents are built from."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tally_contracts import Envelope, MessageData
from tally_messaging.processing import Delivery
from tally_messaging.transaction import Transaction

M = TypeVar("M", bound=MessageData)

MessageHandler = Callable[[Envelope[M], Transaction], Awaitable[None]]
"""A handler of messages of type `M`: a `MessageHandler[M]` takes an `Envelope[M]`, so its
`message.data` is an `M` without a cast. Registered with `Service.handles(topic, M)`, which
mypy checks against the handler's type."""

BatchMessageHandler = Callable[[list[Delivery[M]], Transaction], Awaitable[None]]
"""A handler of every `M` of a fetched batch at once (`Service.handles_batch(topic, M)`)."""


@dataclass(frozen=True, slots=True)
class Registration:
    """`types` arriving on `topic` go to one handler (all of a fetched batch at once when
    `batch`)."""

    topic: str
    types: tuple[type[MessageData], ...]
    batch: bool = False

    @property
    def type_names(self) -> tuple[str, ...]:
        return tuple(t.message_type() for t in self.types)
