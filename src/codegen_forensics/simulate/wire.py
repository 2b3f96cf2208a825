"""Event payloads built as plain JSON, byte for byte what the schema models publish.

The simulator builds every event it sends itself, and validating each one through
its Pydantic model and serialising it through the model again cost more than the
rest of generation. Here an event is a :class:`Payload`: the model it belongs to and
the dict ``model_dump(mode="json")`` would give, with the fields in the model's
order, every default written out and every float a float. :func:`encode` gives the
bytes the model's ``to_json_bytes`` would: it is pydantic-core's own serialiser,
given the dict instead of the model.

:class:`PayloadCheck` parses payloads back through their models and compares the
bytes: the first of each model and then a regular sample during a run, every one
when the events themselves are wanted. A payload that drifts from its schema stops
the run with :class:`~codegen_forensics.errors.SimulationError`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NamedTuple

from pydantic import ValidationError
from pydantic_core import to_json

from codegen_forensics.errors import InputError, SimulationError
from codegen_forensics.events.schemas import CodegenEvent

__all__ = ["Payload", "PayloadCheck", "check_payload", "encode", "timestamp_text"]

_NAIVE_EPOCH = datetime(1970, 1, 1)
_MINUTE_MS = 60_000
# "2026-03-16T09:30:" by epoch minute; a simulated week has about 10,000.
_MINUTES: dict[int, str] = {}
_MINUTES_KEPT = 200_000


class Payload(NamedTuple):
    """One event: its model and its JSON-mode fields, in the model's order."""

    model: type[CodegenEvent]
    data: dict[str, Any]

    @property
    def event_name(self) -> str:
        return self.model.event_name


def encode(data: dict[str, Any]) -> bytes:
    """The UTF-8 JSON of a payload's fields, as the models serialise them:
    compact, with text as UTF-8 rather than escaped."""
    return to_json(data)


def timestamp_text(ms: int) -> str:
    """Epoch milliseconds the way the models write timestamps: ISO 8601 in UTC
    with microseconds and a ``Z``."""
    minute, rest = divmod(ms, _MINUTE_MS)
    head = _MINUTES.get(minute)
    if head is None:
        if len(_MINUTES) >= _MINUTES_KEPT:
            _MINUTES.clear()
        when = _NAIVE_EPOCH + timedelta(minutes=minute)
        head = when.isoformat(timespec="minutes") + ":"
        _MINUTES[minute] = head
    seconds, millis = divmod(rest, 1000)
    return f"{head}{seconds:02d}.{millis:03d}000Z"


def check_payload(payload: Payload, value: bytes) -> CodegenEvent:
    """Parse ``value`` through the payload's model; it must give the same bytes."""
    try:
        event = payload.model.model_validate_json(value)
    except ValidationError as exc:
        raise SimulationError(
            f"the simulator built an invalid {payload.event_name}: {exc}"
        ) from exc
    again = event.to_json_bytes()
    if again != value:
        raise SimulationError(
            f"the simulator's {payload.event_name} does not serialise as its model "
            f"does: built {value[:200]!r}, the model gives {again[:200]!r}"
        )
    return event


class PayloadCheck:
    """Checks the first payload of each model, then one in every ``every``."""

    def __init__(self, every: int = 1000) -> None:
        if every < 1:
            raise InputError(f"every must be 1 or more, got {every}")
        self.every = every
        self.seen = 0
        self.checked = 0
        self._models: set[type[CodegenEvent]] = set()

    def __call__(self, payload: Payload, value: bytes) -> None:
        self.seen += 1
        if payload.model in self._models and self.seen % self.every:
            return
        self._models.add(payload.model)
        check_payload(payload, value)
        self.checked += 1
