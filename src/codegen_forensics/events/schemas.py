"""The nine event schemas of the code-generation system, as Pydantic v2 models.

Field names, types, bounds and defaults follow the design document. Timestamps must
carry a time zone: a naive datetime is refused with an error naming the field, and
every timestamp serialises as ISO 8601 in UTC with a ``Z`` suffix. Models refuse
unknown fields, so nothing the schema does not know is ever published.

Each schema version we know has its own model; :func:`model_for` picks it by event
name and ``schema_version``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
)

from codegen_forensics.errors import InputError

__all__ = [
    "EVENT_MODELS",
    "AnalysisType",
    "CodegenAnalysisRequest",
    "CodegenAnalysisResponse",
    "CodegenEvent",
    "CodegenMixinRequest",
    "CodegenMixinResponse",
    "CodegenPatternRequest",
    "CodegenPatternResponse",
    "CodegenStatusEvent",
    "CodegenValidationRequest",
    "CodegenValidationResponse",
    "EventLogStatus",
    "EventLogType",
    "NodeType",
    "SessionStatus",
    "ValidationType",
    "format_timestamp",
    "model_for",
    "parse_event",
    "utc_now",
]

Category = Literal["request", "response", "status"]
Operation = Literal["analyze", "validate", "pattern", "mixin", "session"]


class NodeType(StrEnum):
    """Kinds of ONEX node a request can be about."""

    EFFECT = "effect"
    COMPUTE = "compute"
    REDUCER = "reducer"
    ORCHESTRATOR = "orchestrator"


class AnalysisType(StrEnum):
    FULL = "full"
    REQUIREMENTS = "requirements"
    ARCHITECTURE = "architecture"


class ValidationType(StrEnum):
    FULL = "full"
    SYNTAX = "syntax"
    COMPLIANCE = "compliance"
    PERFORMANCE = "performance"


class SessionStatus(StrEnum):
    """Session states published on the status topic.

    The design document names the first six. The deployed tracer also treats ``error``
    as a failure and ``processing`` as in progress, so both are accepted.
    """

    PENDING = "pending"
    ANALYZING = "analyzing"
    GENERATING = "generating"
    VALIDATING = "validating"
    COMPLETED = "completed"
    FAILED = "failed"
    PROCESSING = "processing"
    ERROR = "error"


class EventLogType(StrEnum):
    """The ``event_type`` column of ``event_logs``."""

    REQUEST = "request"
    RESPONSE = "response"
    STATUS = "status"
    ERROR = "error"


class EventLogStatus(StrEnum):
    """The ``status`` column of ``event_logs``."""

    SENT = "sent"
    RECEIVED = "received"
    FAILED = "failed"
    PROCESSING = "processing"
    COMPLETED = "completed"


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a ``Z`` suffix."""
    if value.tzinfo is None:
        raise InputError(f"timestamp {value.isoformat()!r} has no time zone")
    return (
        value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )


class CodegenEvent(BaseModel):
    """Fields and behaviour shared by every event schema."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    # Where the event is published; set by each concrete schema.
    event_name: ClassVar[str]
    category: ClassVar[Category]
    operation: ClassVar[Operation]

    session_id: UUID = Field(..., description="Code generation session ID")
    timestamp: AwareDatetime = Field(
        default_factory=utc_now, description="Event timestamp (UTC)"
    )
    schema_version: str = Field(default="1.0", description="Event schema version")

    @field_validator("timestamp", mode="after")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @field_serializer("timestamp")
    def _serialise_timestamp(self, value: datetime) -> str:
        return format_timestamp(value)

    @field_validator("schema_version", mode="after")
    @classmethod
    def _known_version(cls, value: str) -> str:
        # A model reads only the versions it is registered for, so an event never
        # claims a version whose fields it does not have.
        known = [v for (_, v), model in EVENT_MODELS.items() if model is cls]
        if known and value not in known:
            raise ValueError(
                f"schema_version {value!r} is not read by {cls.__name__}; it reads "
                f"{', '.join(known)}"
            )
        return value

    def to_json_bytes(self) -> bytes:
        """The event as the UTF-8 JSON a producer publishes."""
        return self.model_dump_json().encode("utf-8")

    def correlation(self) -> UUID | None:
        """The correlation id, or ``None`` for events that have none."""
        return getattr(self, "correlation_id", None)


class _Correlated(CodegenEvent):
    correlation_id: UUID = Field(..., description="Request correlation ID")


class CodegenAnalysisRequest(_Correlated):
    """Ask the intelligence service to analyse a PRD."""

    event_name: ClassVar[str] = "CodegenAnalysisRequest"
    category: ClassVar[Category] = "request"
    operation: ClassVar[Operation] = "analyze"

    prd_content: str = Field(..., description="Raw PRD markdown content")
    analysis_type: AnalysisType = Field(default=AnalysisType.FULL)
    workspace_context: dict[str, Any] = Field(default_factory=dict)


class CodegenAnalysisResponse(_Correlated):
    """The result of a PRD analysis."""

    event_name: ClassVar[str] = "CodegenAnalysisResponse"
    category: ClassVar[Category] = "response"
    operation: ClassVar[Operation] = "analyze"

    analysis_result: dict[str, Any] = Field(...)
    confidence: float = Field(..., ge=0.0, le=1.0)
    processing_time_ms: int = Field(..., description="Processing time in milliseconds")


class CodegenValidationRequest(_Correlated):
    """Ask for generated code to be validated for ONEX compliance."""

    event_name: ClassVar[str] = "CodegenValidationRequest"
    category: ClassVar[Category] = "request"
    operation: ClassVar[Operation] = "validate"

    code_content: str = Field(..., description="Generated code to validate")
    node_type: NodeType = Field(...)
    contracts: list[dict[str, Any]] = Field(default_factory=list)
    validation_type: ValidationType = Field(default=ValidationType.FULL)


class CodegenValidationResponse(_Correlated):
    """Validation results with quality scores."""

    event_name: ClassVar[str] = "CodegenValidationResponse"
    category: ClassVar[Category] = "response"
    operation: ClassVar[Operation] = "validate"

    validation_result: dict[str, Any] = Field(...)
    quality_score: float = Field(..., ge=0.0, le=1.0)
    onex_compliance_score: float = Field(..., ge=0.0, le=1.0)
    is_valid: bool = Field(...)
    processing_time_ms: int = Field(..., description="Processing time in milliseconds")


class CodegenPatternRequest(_Correlated):
    """Ask for node implementations similar to a description."""

    event_name: ClassVar[str] = "CodegenPatternRequest"
    category: ClassVar[Category] = "request"
    operation: ClassVar[Operation] = "pattern"

    node_description: str = Field(...)
    node_type: NodeType = Field(...)
    limit: int = Field(default=5, ge=1, le=20)


class CodegenPatternResponse(_Correlated):
    """Similar node patterns with implementation details."""

    event_name: ClassVar[str] = "CodegenPatternResponse"
    category: ClassVar[Category] = "response"
    operation: ClassVar[Operation] = "pattern"

    pattern_result: list[dict[str, Any]] = Field(...)
    total_matches: int = Field(..., description="Matches found before the limit")
    processing_time_ms: int = Field(..., description="Processing time in milliseconds")


class CodegenMixinRequest(_Correlated):
    """Ask for mixin recommendations for a set of requirements."""

    event_name: ClassVar[str] = "CodegenMixinRequest"
    category: ClassVar[Category] = "request"
    operation: ClassVar[Operation] = "mixin"

    requirements: list[str] = Field(...)
    node_type: NodeType = Field(...)
    existing_mixins: list[str] = Field(default_factory=list)


class CodegenMixinResponse(_Correlated):
    """Recommended mixins with rationale and guidance."""

    event_name: ClassVar[str] = "CodegenMixinResponse"
    category: ClassVar[Category] = "response"
    operation: ClassVar[Operation] = "mixin"

    mixin_recommendations: list[dict[str, Any]] = Field(...)
    total_recommendations: int = Field(...)
    processing_time_ms: int = Field(..., description="Processing time in milliseconds")


class CodegenStatusEvent(CodegenEvent):
    """A session's progress; it carries no correlation id."""

    event_name: ClassVar[str] = "CodegenStatusEvent"
    category: ClassVar[Category] = "status"
    operation: ClassVar[Operation] = "session"

    status: SessionStatus = Field(...)
    progress_percentage: float = Field(..., ge=0.0, le=100.0)
    message: str = Field(..., description="Human-readable status message")
    metadata: dict[str, Any] = Field(default_factory=dict)


_ALL: tuple[type[CodegenEvent], ...] = (
    CodegenAnalysisRequest,
    CodegenAnalysisResponse,
    CodegenValidationRequest,
    CodegenValidationResponse,
    CodegenPatternRequest,
    CodegenPatternResponse,
    CodegenMixinRequest,
    CodegenMixinResponse,
    CodegenStatusEvent,
)

# (event name, schema version) -> model. Version 1.0 is the only one published so far;
# a later version gets its own model here, registered beside the old one.
EVENT_MODELS: dict[tuple[str, str], type[CodegenEvent]] = {
    (model.event_name, "1.0"): model for model in _ALL
}

# (category, operation) -> event name, for finding the schema of a topic.
_BY_TOPIC: dict[tuple[str, str], str] = {
    (model.category, model.operation): model.event_name for model in _ALL
}


def event_name_for(category: str, operation: str) -> str | None:
    """The event published on topics of this category and operation, if any."""
    return _BY_TOPIC.get((category, operation))


def model_for(event_name: str, schema_version: str = "1.0") -> type[CodegenEvent]:
    """The model of one event at one schema version."""
    try:
        return EVENT_MODELS[(event_name, schema_version)]
    except KeyError:
        known = sorted({f"{name} {version}" for name, version in EVENT_MODELS})
        raise InputError(
            f"no schema for event {event_name!r} at schema_version "
            f"{schema_version!r}; known: {', '.join(known)}"
        ) from None


def parse_event(event_name: str, data: dict[str, Any]) -> CodegenEvent:
    """Validate a decoded payload against the schema its ``schema_version`` names.

    Raises :class:`InputError` naming every field that is wrong.
    """
    if not isinstance(data, dict):
        raise InputError(
            f"{event_name} must be a JSON object, got {type(data).__name__}"
        )
    version = data.get("schema_version", "1.0")
    if not isinstance(version, str):
        raise InputError(
            f"{event_name}.schema_version must be a string, got {version!r}"
        )
    model = model_for(event_name, version)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(describe_validation_error(event_name, exc)) from exc


def describe_validation_error(event_name: str, exc: ValidationError) -> str:
    """One line per failing field: ``Model.field: what is wrong (got value)``."""
    lines = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "<event>"
        got = error.get("input")
        shown = repr(got)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        lines.append(f"{event_name}.{field}: {error['msg']} (got {shown})")
    return "; ".join(lines)
