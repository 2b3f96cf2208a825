"""Dead-letter messages: the documented envelope, and every shape seen in the wild.

:class:`DLQEnvelope` is the envelope of the design document and
:func:`build_envelope` makes one from a failed event. :func:`normalise_dlq` reads any
dead-letter message, whatever its shape, into one :class:`DLQRecord`; a shape it does
not know is reported as ``unknown`` with the raw message kept by the caller.
"""

from __future__ import annotations

import traceback
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer

from codegen_forensics.events.schemas import CodegenEvent, format_timestamp, utc_now

__all__ = [
    "DLQ_SHAPES",
    "DLQEnvelope",
    "DLQError",
    "DLQRecord",
    "DLQShape",
    "build_envelope",
    "normalise_dlq",
]

DLQShape = Literal["envelope", "flat", "client", "minimal", "unknown"]
DLQ_SHAPES: tuple[DLQShape, ...] = ("envelope", "flat", "client", "minimal", "unknown")


class DLQError(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    error_type: str
    error_message: str
    stack_trace: str | None = None
    timestamp: AwareDatetime = Field(default_factory=utc_now)

    @field_serializer("timestamp")
    def _ts(self, value: datetime) -> str:
        return format_timestamp(value)


class DLQEnvelope(BaseModel):
    """The dead-letter envelope of the design document."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    original_event: dict[str, Any]
    error: DLQError
    retry_count: int = Field(..., ge=0)
    max_retries: int = Field(..., ge=0)
    dlq_timestamp: AwareDatetime = Field(default_factory=utc_now)
    source_topic: str
    consumer_group: str | None = None

    @field_serializer("dlq_timestamp")
    def _ts(self, value: datetime) -> str:
        return format_timestamp(value)

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode("utf-8")


def build_envelope(
    original_event: CodegenEvent | dict[str, Any],
    error: BaseException,
    *,
    source_topic: str,
    consumer_group: str | None,
    retry_count: int,
    max_retries: int,
    failed_at: datetime | None = None,
    stack_trace: str | None = None,
) -> DLQEnvelope:
    """The envelope for an event whose processing failed ``retry_count`` times.

    The stack trace is taken from the exception's traceback unless one is given.
    """
    if isinstance(original_event, CodegenEvent):
        event = original_event.model_dump(mode="json")
    else:
        event = dict(original_event)
    if stack_trace is None:
        stack_trace = "".join(
            traceback.format_exception(type(error), error, error.__traceback__)
        )
    when = failed_at or datetime.now(UTC)
    return DLQEnvelope(
        original_event=event,
        error=DLQError(
            error_type=type(error).__name__,
            error_message=str(error),
            stack_trace=stack_trace,
            timestamp=when,
        ),
        retry_count=retry_count,
        max_retries=max_retries,
        dlq_timestamp=when,
        source_topic=source_topic,
        consumer_group=consumer_group,
    )


class DLQRecord(BaseModel):
    """A dead-letter message of any shape, normalised."""

    model_config = ConfigDict(frozen=True)

    shape: DLQShape
    source_topic: str | None = None
    consumer_group: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    stack_trace: str | None = None
    retry_count: int | None = None
    max_retries: int | None = None
    failure_time: datetime | None = None
    correlation_id: str | None = None
    session_id: str | None = None
    original_event: dict[str, Any] | None = None


def normalise_dlq(message: Any) -> DLQRecord:
    """Read a decoded dead-letter message of any known shape into one record.

    Shapes, tried in this order:

    - ``envelope``: the documented one, with ``original_event`` and an ``error`` object;
    - ``client``: the production client's ``original_topic`` / ``original_data`` /
      ``failure_reason`` / ``retry_attempts``;
    - ``flat``: ``envelope_version`` with ``error`` as a plain string and the event
      under ``payload``;
    - ``minimal``: little more than ``error`` and ``correlation_id``, including ``{}``
      and a null or missing error.

    Anything else (a JSON array or scalar, an object with none of these keys) is
    ``unknown``.
    """
    if not isinstance(message, dict):
        return DLQRecord(shape="unknown")

    if "original_event" in message:
        # The documented envelope; its error is sometimes a string or null, and the
        # original event must survive that.
        original = _as_dict(message.get("original_event"))
        raw_error = message.get("error")
        err = raw_error if isinstance(raw_error, dict) else {}
        error_type, error_message = _split_error(raw_error)
        return DLQRecord(
            shape="envelope",
            source_topic=_as_str(message.get("source_topic")),
            consumer_group=_as_str(message.get("consumer_group")),
            error_type=error_type,
            error_message=error_message,
            stack_trace=_as_str(err.get("stack_trace")),
            retry_count=_as_int(message.get("retry_count")),
            max_retries=_as_int(message.get("max_retries")),
            failure_time=_as_time(message.get("dlq_timestamp"))
            or _as_time(err.get("timestamp")),
            correlation_id=_as_uuid(_get(original, "correlation_id")),
            session_id=_as_uuid(_get(original, "session_id")),
            original_event=original,
        )

    if "original_topic" in message or "original_data" in message:
        original = _as_dict(message.get("original_data"))
        return DLQRecord(
            shape="client",
            source_topic=_as_str(message.get("original_topic")),
            error_type=_as_str(message.get("failure_reason", "max_retries_exceeded")),
            error_message=_as_str(message.get("error_message"))
            or _as_str(message.get("failure_reason", "max_retries_exceeded")),
            retry_count=_as_int(message.get("retry_attempts")),
            failure_time=_as_time(message.get("failure_timestamp")),
            correlation_id=_as_uuid(_get(original, "correlation_id")),
            session_id=_as_uuid(_get(original, "session_id"))
            or _as_uuid(message.get("original_key")),
            original_event=original,
        )

    if "envelope_version" in message or "dlq_timestamp" in message:
        payload = _as_dict(message.get("payload"))
        error_type, error_message = _split_error(message.get("error"))
        return DLQRecord(
            shape="flat",
            source_topic=_as_str(message.get("source_topic")),
            error_type=error_type,
            error_message=error_message,
            retry_count=_as_int(message.get("retry_count")),
            failure_time=_as_time(message.get("dlq_timestamp"))
            or _as_time(message.get("timestamp")),
            correlation_id=_as_uuid(message.get("correlation_id"))
            or _as_uuid(_get(payload, "correlation_id")),
            session_id=_as_uuid(_get(payload, "session_id")),
            original_event=payload,
        )

    if not message or set(message) <= {"error", "correlation_id", "session_id"}:
        error_type, error_message = _split_error(message.get("error"))
        return DLQRecord(
            shape="minimal",
            error_type=error_type,
            error_message=error_message,
            correlation_id=_as_uuid(message.get("correlation_id")),
            session_id=_as_uuid(message.get("session_id")),
        )

    return DLQRecord(shape="unknown")


def _split_error(error: Any) -> tuple[str | None, str | None]:
    """``"TimeoutError: took 31s"`` -> (``TimeoutError``, ``took 31s``)."""
    if error is None:
        return None, None
    if isinstance(error, dict):
        return _as_str(error.get("error_type")), _as_str(error.get("error_message"))
    text = str(error)
    head, sep, tail = text.partition(": ")
    if sep and head.isidentifier():
        return head, tail
    return None, text


def _get(obj: dict[str, Any] | None, key: str) -> Any:
    return None if obj is None else obj.get(key)


def _as_dict(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _as_str(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _as_uuid(value: Any) -> str | None:
    """A canonical lowercase UUID string, or ``None`` when the value is not one."""
    if value is None:
        return None
    try:
        return str(UUID(str(value)))
    except ValueError:
        return None


def _as_time(value: Any) -> datetime | None:
    """A UTC datetime from ISO 8601 text or epoch seconds/milliseconds.

    Naive text is read as UTC; numbers above 10^11 are read as milliseconds.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000.0 if abs(value) > 1e11 else float(value)
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
