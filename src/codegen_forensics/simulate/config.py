"""What a simulation produces: volume, timing and the trouble it injects.

:class:`SimulationConfig` is a small frozen object; every kind of trouble has its own
section and is switched on or off by name in ``trouble``. The defaults describe a week
that mostly meets the design document's targets (processing average under 2 s, p95
under 5 s) with a little of every kind of trouble to find.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from codegen_forensics.errors import InputError
from codegen_forensics.events.topics import OPERATIONS

__all__ = [
    "DLQ_SHAPES_USED",
    "ERROR_KINDS",
    "POISON_KINDS",
    "TROUBLE_NAMES",
    "BottleneckConfig",
    "DLQShapeName",
    "ErrorKind",
    "FailureConfig",
    "OperationTiming",
    "PoisonKind",
    "SimulationConfig",
    "TroubleName",
    "default_window_start",
    "parse_trouble",
]

TroubleName = Literal[
    "bottleneck", "failures", "unanswered", "unfinished", "duplicates", "poison"
]
TROUBLE_NAMES: tuple[TroubleName, ...] = get_args(TroubleName)

ErrorKind = Literal[
    "validation", "timeout", "connection_refused", "json_decode", "missing_key"
]
ERROR_KINDS: tuple[ErrorKind, ...] = get_args(ErrorKind)

PoisonKind = Literal[
    "not_json",
    "not_utf8",
    "tombstone",
    "naive_timestamp",
    "unknown_schema_version",
    "missing_field",
    "double_encoded",
    "enveloped",
]
POISON_KINDS: tuple[PoisonKind, ...] = get_args(PoisonKind)

DLQShapeName = Literal["envelope", "flat", "client", "minimal"]
DLQ_SHAPES_USED: tuple[DLQShapeName, ...] = get_args(DLQShapeName)

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class OperationTiming(BaseModel):
    """How long the intelligence service takes for one operation.

    A lognormal body (``median_ms``, ``sigma``) with a Pareto tail: a fraction
    ``tail_probability`` of requests is multiplied by a Pareto(``tail_alpha``) factor,
    capped at ``tail_cap`` so one request cannot swamp an hour's average.
    """

    model_config = _FROZEN

    median_ms: float = Field(gt=0)
    sigma: float = Field(ge=0, le=3)
    tail_probability: float = Field(default=0.03, ge=0, le=1)
    tail_alpha: float = Field(default=1.5, gt=0)
    tail_cap: float = Field(default=12.0, ge=1)


def _default_timings() -> dict[str, OperationTiming]:
    return {
        "analyze": OperationTiming(median_ms=550, sigma=0.6),
        "validate": OperationTiming(median_ms=380, sigma=0.7),
        "pattern": OperationTiming(median_ms=250, sigma=0.5),
        "mixin": OperationTiming(median_ms=180, sigma=0.5),
    }


class BottleneckConfig(BaseModel):
    """One operation slowed down during chosen hours (UTC) of chosen days.

    Requests whose processing starts in ``[start_hour, end_hour)`` on one of ``days``
    (indexes into the window, 0 = its first day; ``None`` = every day) take an extra
    lognormal delay of median ``extra_median_ms``.
    """

    model_config = _FROZEN

    operation: str = "validate"
    start_hour: int = Field(default=13, ge=0, le=23)
    end_hour: int = Field(default=16, ge=1, le=24)
    days: tuple[int, ...] | None = None
    extra_median_ms: float = Field(default=7000.0, gt=0)
    extra_sigma: float = Field(default=0.3, ge=0, le=3)

    @field_validator("operation")
    @classmethod
    def _known_operation(cls, value: str) -> str:
        if value not in OPERATIONS:
            raise ValueError(
                f"operation {value!r} is not known; expected one of "
                f"{', '.join(OPERATIONS)}"
            )
        return value

    @model_validator(mode="after")
    def _hours_in_order(self) -> BottleneckConfig:
        if self.end_hour <= self.start_hour:
            raise ValueError(
                f"end_hour {self.end_hour} must be after start_hour {self.start_hour}"
            )
        return self


def _default_failure_rates() -> dict[str, float]:
    # validate misses the 1 % DLQ-rate target on purpose: something to find.
    return {"analyze": 0.004, "validate": 0.015, "pattern": 0.003, "mixin": 0.002}


def _default_kinds() -> dict[str, float]:
    return {
        "validation": 0.3,
        "timeout": 0.25,
        "connection_refused": 0.2,
        "json_decode": 0.15,
        "missing_key": 0.1,
    }


def _default_shapes() -> dict[str, float]:
    return {"envelope": 0.7, "flat": 0.1, "client": 0.1, "minimal": 0.1}


class FailureConfig(BaseModel):
    """Requests whose processing fails, is retried, and is dead-lettered.

    ``rates`` is the fraction of each operation's requests that fail for good; kinds
    and DLQ shapes are dealt out in the proportions of ``kinds`` and ``shapes`` (a
    smooth weighted round robin, so small runs see every kind early). A fraction
    ``dotted_rate`` of dead letters goes to the dotted scheme's ``.dlq`` topics, and
    ``malformed_minimal_rate`` of minimal messages lose their error (``{}``, a null
    or a missing ``error``). ``transient_rate`` of requests fail once or twice and
    then succeed; they reach no DLQ.
    """

    model_config = _FROZEN

    rates: dict[str, float] = Field(default_factory=_default_failure_rates)
    kinds: dict[str, float] = Field(default_factory=_default_kinds)
    shapes: dict[str, float] = Field(default_factory=_default_shapes)
    dotted_rate: float = Field(default=0.15, ge=0, le=1)
    malformed_minimal_rate: float = Field(default=0.3, ge=0, le=1)
    transient_rate: float = Field(default=0.01, ge=0, le=1)
    max_retries: int = Field(default=3, ge=0, le=10)
    consumer_group: str = "omniarchon_codegen_intelligence"

    @field_validator("rates")
    @classmethod
    def _rates(cls, value: dict[str, float]) -> dict[str, float]:
        return _check_weights("rates", value, OPERATIONS, fractions=True)

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, value: dict[str, float]) -> dict[str, float]:
        return _check_weights("kinds", value, ERROR_KINDS)

    @field_validator("shapes")
    @classmethod
    def _shapes(cls, value: dict[str, float]) -> dict[str, float]:
        return _check_weights("shapes", value, DLQ_SHAPES_USED)


def _check_weights(
    name: str,
    value: dict[str, float],
    allowed: tuple[str, ...],
    fractions: bool = False,
) -> dict[str, float]:
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ValueError(
            f"{name} has unknown keys {unknown}; allowed: {', '.join(allowed)}"
        )
    for key, weight in value.items():
        if weight < 0 or (fractions and weight > 1):
            bound = "between 0 and 1" if fractions else "0 or more"
            raise ValueError(f"{name}[{key!r}] must be {bound}, got {weight}")
    if not fractions and value and sum(value.values()) <= 0:
        raise ValueError(f"{name} needs at least one positive weight")
    return dict(value)


def _default_lag() -> dict[str, int]:
    return {"omniclaude_codegen_consumer": 2, "omniarchon_codegen_intelligence": 40}


class SimulationConfig(BaseModel):
    """A simulated stretch of code-generation traffic; same config, same bytes.

    Sessions arrive over ``days`` days from ``start`` (default: the last ``days`` full
    days, UTC), following a daily cycle peaking at ``peak_hour`` UTC with relative
    amplitude ``daily_amplitude``; weekend days see ``weekend_factor`` of a weekday's
    traffic. ``consumer_lag`` is how many messages each consumer group stays behind
    the end of each partition it reads.
    """

    model_config = _FROZEN

    seed: int = 0
    sessions: int = Field(default=2000, ge=1, le=10_000_000)
    days: int = Field(default=7, ge=1, le=366)
    start: AwareDatetime | None = None
    daily_amplitude: float = Field(default=0.6, ge=0, le=1)
    peak_hour: float = Field(default=15.0, ge=0, lt=24)
    weekend_factor: float = Field(default=0.5, gt=0, le=1)
    timings: dict[str, OperationTiming] = Field(default_factory=_default_timings)
    trouble: frozenset[TroubleName] = frozenset(TROUBLE_NAMES)
    bottleneck: BottleneckConfig = Field(default_factory=BottleneckConfig)
    failures: FailureConfig = Field(default_factory=FailureConfig)
    unanswered_rate: float = Field(default=0.003, ge=0, le=1)
    unfinished_rate: float = Field(default=0.01, ge=0, le=1)
    duplicate_rate: float = Field(default=0.01, ge=0, le=1)
    poison_per_session: float = Field(default=0.01, ge=0, le=10)
    consumer_lag: dict[str, int] = Field(default_factory=_default_lag)
    dotted_environment: str = Field(default="dev", pattern=r"^[A-Za-z0-9_-]+$")

    @field_serializer("trouble", when_used="json")
    def _sorted_trouble(self, value: frozenset[str]) -> list[str]:
        return sorted(value)

    @field_validator("timings")
    @classmethod
    def _timings(cls, value: dict[str, OperationTiming]) -> dict[str, OperationTiming]:
        missing = sorted(set(OPERATIONS) - set(value))
        unknown = sorted(set(value) - set(OPERATIONS))
        if missing or unknown:
            raise ValueError(
                f"timings must name exactly the operations {', '.join(OPERATIONS)}; "
                f"missing {missing}, unknown {unknown}"
            )
        return value

    @field_validator("consumer_lag")
    @classmethod
    def _lag(cls, value: dict[str, int]) -> dict[str, int]:
        for group, lag in value.items():
            if lag < 0:
                raise ValueError(
                    f"consumer_lag[{group!r}] must be 0 or more, got {lag}"
                )
        return value

    @classmethod
    def build(cls, **fields: Any) -> SimulationConfig:
        """Like the constructor, but bad values raise :class:`InputError`."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            raise InputError(_describe(exc)) from exc

    def with_trouble(self, trouble: str | frozenset[TroubleName]) -> SimulationConfig:
        """A copy with ``trouble`` switched on and every other kind off."""
        names = parse_trouble(trouble) if isinstance(trouble, str) else trouble
        return self.model_copy(update={"trouble": frozenset(names)})

    def has(self, trouble: TroubleName) -> bool:
        return trouble in self.trouble

    def window(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        """The simulated window, start inclusive and end exclusive, in UTC."""
        start = self.start or default_window_start(self.days, now)
        start = start.astimezone(UTC)
        return start, start + timedelta(days=self.days)


def default_window_start(days: int, now: datetime | None = None) -> datetime:
    """Midnight UTC ``days`` days before today's midnight: the last full days."""
    current = (now or datetime.now(UTC)).astimezone(UTC)
    today = current.replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days)


def parse_trouble(text: str) -> frozenset[TroubleName]:
    """``"bottleneck,failures"`` -> those names; ``"all"`` and ``"none"`` too."""
    words = [w.strip() for w in text.split(",") if w.strip()]
    if words == ["all"]:
        return frozenset(TROUBLE_NAMES)
    if words in ([], ["none"]):
        return frozenset()
    unknown = [w for w in words if w not in TROUBLE_NAMES]
    if unknown:
        raise InputError(
            f"trouble {', '.join(repr(w) for w in unknown)} is not known; expected a "
            f"comma-separated list of {', '.join(TROUBLE_NAMES)}, or all, or none"
        )
    return frozenset(w for w in TROUBLE_NAMES if w in words)


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "<config>"
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(
            f"SimulationConfig.{field}: {message} (got {error.get('input')!r})"
        )
    return "; ".join(lines)
