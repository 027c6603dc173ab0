"""What a publisher promises (contract §9): the `Publisher` protocol and its outcomes."""

from __future__ import annotations

from typing import Final, Literal, Protocol

from app.models.events import Event

PublishOutcome = Literal["confirmed", "outboxed", "logged"]
DEFAULT_EXCHANGE: Final = "users"
DEFAULT_CONFIRM_DEADLINE_S: Final = 0.5
DEFAULT_FLUSH_DEADLINE_S: Final = 5.0


class Publisher(Protocol):
    """Publishes domain events; implementations decide where they go.

    `publish` answers:
      * ``"confirmed"``: the broker confirmed the event;
      * ``"outboxed"``: it waits in the durable outbox and is delivered, in order, once the
        broker takes it;
      * ``"logged"``: it went to the log (the embedded default, or the last resort when the
        outbox itself failed).
    """

    @property
    def state(self) -> str:
        """``connected``, ``connecting``, ``disconnected`` or ``embedded``."""

    async def start(self) -> None: ...

    async def stop(self, flush_deadline_s: float = DEFAULT_FLUSH_DEADLINE_S) -> None:
        """Flush what can be flushed within the deadline; what is left stays in the outbox."""

    async def publish(self, event: Event, *, confirm_deadline_s: float = DEFAULT_CONFIRM_DEADLINE_S) -> PublishOutcome:
        """Hand `event` over; never raises for a broker problem."""

    async def ready(self) -> bool:
        """Whether events currently reach their destination directly."""
