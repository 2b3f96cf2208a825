"""The ground truth of a simulation: what was injected, counted as it was emitted.

:class:`GroundTruth` is written as JSON beside the data (``ground_truth.json`` in a
snapshot directory). Offsets in it are the ones the messages have on fresh topics; a
run against a broker whose topics already held messages shifts them by each
partition's starting offset (``base_offsets``).

Definitions, so analyses can compare exactly:

- latency figures use the ``processing_time_ms`` each response reports, one value per
  answered request (duplicate deliveries excluded), percentiles by linear
  interpolation between closest ranks; the hour of a response is the hour (UTC) of its
  timestamp;
- ``bands`` lists, per response topic, the hours whose average is above 1,000 ms
  (``low``), 2,000 ms (``medium``) or 5,000 ms (``high``), averaged over every
  response message of the hour, duplicate deliveries included (as the tracer
  averages every event that reports a processing time);
- a DLQ rate is dead-letter messages over all messages on the source request topic
  (poison messages and duplicates included);
- a session's duration is its last Kafka event's timestamp minus its first.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from codegen_forensics.events.topics import parse_topic
from codegen_forensics.simulate.content import ERROR_TEMPLATES, ERROR_TYPES

__all__ = [
    "BottleneckTruth",
    "DLQMessageTruth",
    "DuplicateTruth",
    "FailedSession",
    "GroundTruth",
    "LatencyStats",
    "PoisonTruth",
    "TruthBuilder",
    "UnansweredRequest",
    "UnfinishedSession",
    "percentile",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR_MS = 3_600_000
BANDS: tuple[tuple[str, int], ...] = (("high", 5000), ("medium", 2000), ("low", 1000))

# What the loaders' decoder reports for each kind of poison message.
POISON_DECODE_STATUS: dict[str, str] = {
    "not_json": "not_json",
    "not_utf8": "not_utf8",
    "tombstone": "tombstone",
    "naive_timestamp": "naive_timestamp",
    "unknown_schema_version": "unknown_schema_version",
    "missing_field": "schema_invalid",
    "double_encoded": "double_encoded",
    "enveloped": "enveloped",
}


def iso(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC with a ``Z``."""
    when = _EPOCH + timedelta(milliseconds=ms)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def percentile(values: list[int] | list[float], q: float) -> float | None:
    """The q-th percentile (0-100), linear between closest ranks; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LatencyStats(_Model):
    count: int
    avg_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: int | None


class HourAverage(_Model):
    hour: str
    count: int
    avg_ms: float
    band: str | None


class BottleneckTruth(_Model):
    operation: str
    request_topic: str
    response_topic: str
    windows: list[tuple[str, str]]  # [start, end) in UTC
    affected_requests: int
    hourly: list[HourAverage]  # the response topic's hours that the windows touch


class DLQMessageTruth(_Model):
    topic: str
    partition: int
    offset: int
    timestamp: str
    kind: str
    shape: str
    variant: str  # full, or for minimal messages: empty, null_error, missing_error
    scheme: str  # documented or dotted
    operation: str
    source_topic: str
    session_id: str
    correlation_id: str
    error_type: str
    error_message: str
    # What normalise_dlq reads from the message as published.
    normalised_error_type: str | None
    normalised_error_message: str | None


class PoisonTruth(_Model):
    topic: str
    partition: int
    offset: int
    timestamp: str
    kind: str
    expected_decode_status: str
    key: str
    session_id: str
    correlation_id: str


class DuplicateTruth(_Model):
    topic: str
    partition: int
    offsets: list[int]
    session_id: str
    correlation_id: str


class FailedSession(_Model):
    session_id: str
    reason: str  # an error kind, or invalid_code
    operation: str
    correlation_id: str | None
    error_type: str | None
    failed_at: str


class UnfinishedSession(_Model):
    session_id: str
    reason: str  # abandoned or unanswered_request
    last_status: str


class UnansweredRequest(_Model):
    session_id: str
    correlation_id: str
    operation: str
    topic: str
    sent_at: str


class ConsumerOffsetTruth(_Model):
    group_id: str
    topic: str
    partition: int
    committed_offset: int
    end_offset: int
    lag: int


class GroundTruth(_Model):
    """Everything a simulation injected, with exact counts."""

    seed: int
    config: dict[str, Any]
    window_start: str
    window_end: str
    first_event: str | None
    last_event: str | None
    catalog_prefix: str
    topics: list[str]
    messages_per_topic: dict[str, int]
    messages_per_partition: dict[str, dict[str, int]]
    decode_status_per_topic: dict[str, dict[str, int]]
    value_bytes_per_topic: dict[str, int]
    requests: dict[str, int]
    responses: dict[str, int]
    status_events: int
    event_logs_rows: int
    event_logs_by_type_and_status: dict[str, int]
    sessions: int
    session_outcomes: dict[str, int]
    failed_sessions: list[FailedSession]
    unfinished_sessions: list[UnfinishedSession]
    unanswered_requests: list[UnansweredRequest]
    duplicates: list[DuplicateTruth]
    retried_then_answered: int
    dlq_messages: list[DLQMessageTruth]
    dlq_by_kind: dict[str, int]
    dlq_by_shape: dict[str, int]
    dlq_by_kind_and_shape: dict[str, dict[str, int]]
    dlq_by_topic: dict[str, int]
    dlq_by_normalised_error_type: dict[str, int]
    error_kinds: dict[str, dict[str, str]]
    dlq_rates: dict[str, dict[str, Any]]
    poison: list[PoisonTruth]
    poison_by_kind: dict[str, int]
    poison_by_topic: dict[str, int]
    bottleneck: BottleneckTruth | None
    latency: dict[str, LatencyStats]
    bands: dict[str, list[HourAverage]]
    session_duration_ms: LatencyStats
    consumer_offsets: list[ConsumerOffsetTruth]
    base_offsets: dict[str, dict[str, int]]

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the truth as indented JSON, atomically."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(self.model_dump_json(indent=2) + "\n")
        os.replace(tmp, target)
        return target

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> GroundTruth:
        return cls.model_validate(json.loads(Path(path).read_text()))

    def shifted(self, base: dict[str, dict[int, int]]) -> GroundTruth:
        """The truth with offsets moved by each partition's starting offset."""
        if not any(any(v for v in parts.values()) for parts in base.values()):
            return self.model_copy(
                update={
                    "base_offsets": {
                        t: {str(p): o for p, o in parts.items()}
                        for t, parts in base.items()
                    }
                }
            )

        def move(topic: str, partition: int, offset: int) -> int:
            return offset + base.get(topic, {}).get(partition, 0)

        return self.model_copy(
            update={
                "dlq_messages": [
                    m.model_copy(
                        update={"offset": move(m.topic, m.partition, m.offset)}
                    )
                    for m in self.dlq_messages
                ],
                "poison": [
                    p.model_copy(
                        update={"offset": move(p.topic, p.partition, p.offset)}
                    )
                    for p in self.poison
                ],
                "duplicates": [
                    d.model_copy(
                        update={
                            "offsets": [
                                move(d.topic, d.partition, o) for o in d.offsets
                            ]
                        }
                    )
                    for d in self.duplicates
                ],
                "consumer_offsets": [
                    c.model_copy(
                        update={
                            "committed_offset": move(
                                c.topic, c.partition, c.committed_offset
                            ),
                            "end_offset": move(c.topic, c.partition, c.end_offset),
                        }
                    )
                    for c in self.consumer_offsets
                ],
                "base_offsets": {
                    t: {str(p): o for p, o in parts.items()}
                    for t, parts in base.items()
                },
            }
        )


def latency_stats(values: list[int]) -> LatencyStats:
    if not values:
        return LatencyStats(
            count=0, avg_ms=None, p50_ms=None, p95_ms=None, p99_ms=None, max_ms=None
        )
    ordered = sorted(values)
    return LatencyStats(
        count=len(ordered),
        avg_ms=sum(ordered) / len(ordered),
        p50_ms=percentile(ordered, 50),
        p95_ms=percentile(ordered, 95),
        p99_ms=percentile(ordered, 99),
        max_ms=ordered[-1],
    )


def band_of(avg_ms: float) -> str | None:
    for name, threshold in BANDS:
        if avg_ms > threshold:
            return name
    return None


@dataclass
class TruthBuilder:
    """Collects the truth while the generator emits; :meth:`build` freezes it."""

    topics: list[str]
    partitions: dict[str, int]
    messages: Counter[str] = field(default_factory=Counter)
    per_partition: dict[str, Counter[int]] = field(
        default_factory=lambda: defaultdict(Counter)
    )
    decode: dict[str, Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter)
    )
    value_bytes: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    responses: Counter[str] = field(default_factory=Counter)
    status_events: int = 0
    rows: int = 0
    rows_by: Counter[tuple[str, str]] = field(default_factory=Counter)
    latencies: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    hourly: dict[tuple[str, int], list[int]] = field(
        default_factory=lambda: defaultdict(list)
    )
    failed: list[FailedSession] = field(default_factory=list)
    unfinished: list[UnfinishedSession] = field(default_factory=list)
    unanswered: list[UnansweredRequest] = field(default_factory=list)
    completed: int = 0
    duplicates: dict[tuple[str, str], DuplicateTruth] = field(default_factory=dict)
    retried: int = 0
    dlq: list[DLQMessageTruth] = field(default_factory=list)
    poison: list[PoisonTruth] = field(default_factory=list)
    bottleneck_hits: int = 0
    session_spans: dict[str, list[int]] = field(default_factory=dict)
    first_ms: int | None = None
    last_ms: int | None = None

    # -- collecting -----------------------------------------------------------------

    def on_message(self, message: Any) -> None:
        """Count one placed message (a traffic ``SimMessage``)."""
        topic = message.topic
        self.messages[topic] += 1
        self.per_partition[topic][message.partition] += 1
        self.value_bytes[topic] += len(message.value or b"")
        timestamp = message.timestamp_ms
        if self.first_ms is None or timestamp < self.first_ms:
            self.first_ms = timestamp
        if self.last_ms is None or timestamp > self.last_ms:
            self.last_ms = timestamp

        role = message.role
        if role == "request":
            self.requests[message.info] += 1
            self.decode[topic]["ok"] += 1
        elif role == "response":
            operation, took = message.info
            self.responses[operation] += 1
            self.latencies[operation].append(took)
            self.hourly[(topic, timestamp // _HOUR_MS)].append(took)
            self.decode[topic]["ok"] += 1
        elif role == "status":
            self.status_events += 1
            self.decode[topic]["ok"] += 1
        elif role == "duplicate":
            session_id, correlation_id, took = message.info
            self.decode[topic]["ok"] += 1
            # A second delivery reports its processing time again: a topic's
            # hourly average counts it, as the tracer's does every response event.
            self.hourly[(topic, timestamp // _HOUR_MS)].append(took)
            # A duplicate follows its original directly on the same partition: both
            # carry the session's key, and nothing else is due in between.
            self.duplicates[(topic, correlation_id)] = DuplicateTruth(
                topic=topic,
                partition=message.partition,
                offsets=[message.offset - 1, message.offset],
                session_id=session_id,
                correlation_id=correlation_id,
            )
        elif role == "dlq":
            self.decode[topic]["dlq"] += 1
            self.dlq.append(
                DLQMessageTruth(
                    topic=topic,
                    partition=message.partition,
                    offset=message.offset,
                    **message.info,
                )
            )
        else:
            info = message.info
            self.decode[topic][info["expected_decode_status"]] += 1
            self.poison.append(
                PoisonTruth(
                    topic=topic,
                    partition=message.partition,
                    offset=message.offset,
                    **info,
                )
            )

    def on_row(self, row: dict[str, Any]) -> None:
        self.count_row(row["event_type"], row["status"])

    def count_row(self, event_type: str, status: str) -> None:
        """Count one ``event_logs`` row, whether or not it was generated."""
        self.rows += 1
        self.rows_by[(event_type, status)] += 1

    # -- freezing -------------------------------------------------------------------

    def build(self, traffic: Any) -> GroundTruth:
        """The finished truth of a fully iterated ``Traffic`` stream."""
        config = traffic.config
        catalog = traffic.catalog
        topics = list(self.partitions)
        operations = list(config.timings)

        dlq_by_kind: Counter[str] = Counter(m.kind for m in self.dlq)
        dlq_by_shape: Counter[str] = Counter(m.shape for m in self.dlq)
        by_kind_shape: dict[str, Counter[str]] = defaultdict(Counter)
        for m in self.dlq:
            by_kind_shape[m.kind][m.shape] += 1
        dlq_by_topic: Counter[str] = Counter(m.topic for m in self.dlq)
        normalised: Counter[str] = Counter(
            str(m.normalised_error_type) for m in self.dlq
        )

        # DLQ rates: per operation over both naming schemes, and per DLQ topic.
        rates: dict[str, dict[str, Any]] = {}
        for operation in operations:
            request_topic = catalog.for_operation(operation).request
            source = self.messages[request_topic]
            count = sum(1 for m in self.dlq if m.operation == operation)
            rates[operation] = {
                "source_topic": request_topic,
                "source_messages": source,
                "dlq_messages": count,
                "rate": count / source if source else None,
            }
        for topic in topics:
            if topic not in dlq_by_topic and not _is_dlq(topic, catalog):
                continue
            operations_here = {m.operation for m in self.dlq if m.topic == topic}
            operation = (
                operations_here.pop() if operations_here else _dlq_operation(topic)
            )
            request_topic = catalog.for_operation(operation).request
            source = self.messages[request_topic]
            rates[topic] = {
                "source_topic": request_topic,
                "source_messages": source,
                "dlq_messages": dlq_by_topic[topic],
                "rate": dlq_by_topic[topic] / source if source else None,
            }

        bottleneck = None
        if config.has("bottleneck"):
            bottleneck = self._bottleneck_truth(traffic)

        bands: dict[str, list[HourAverage]] = {}
        for (topic, hour), values in sorted(self.hourly.items()):
            average = sum(values) / len(values)
            band = band_of(average)
            if band is not None:
                bands.setdefault(topic, []).append(
                    HourAverage(
                        hour=iso(hour * _HOUR_MS),
                        count=len(values),
                        avg_ms=average,
                        band=band,
                    )
                )

        latency = {op: latency_stats(self.latencies.get(op, [])) for op in operations}
        latency["all"] = latency_stats(
            [v for op in operations for v in self.latencies.get(op, [])]
        )
        spans = [last - first for first, last in self.session_spans.values()]

        outcomes: Counter[str] = Counter({"completed": self.completed})
        for failed in self.failed:
            outcomes[f"failed:{failed.reason}"] += 1
        for unfinished in self.unfinished:
            outcomes[f"unfinished:{unfinished.reason}"] += 1

        offsets = [
            ConsumerOffsetTruth(
                group_id=group,
                topic=topic,
                partition=partition,
                committed_offset=committed,
                end_offset=end,
                lag=end - committed,
            )
            for group, topic, partition, committed, end in traffic.consumer_offsets()
        ]
        return GroundTruth(
            seed=config.seed,
            config=config.model_dump(mode="json"),
            window_start=traffic.window_start.isoformat().replace("+00:00", "Z"),
            window_end=traffic.window_end.isoformat().replace("+00:00", "Z"),
            first_event=None if self.first_ms is None else iso(self.first_ms),
            last_event=None if self.last_ms is None else iso(self.last_ms),
            catalog_prefix=catalog.prefix,
            topics=topics,
            messages_per_topic={t: self.messages[t] for t in topics},
            messages_per_partition={
                t: {str(p): self.per_partition[t][p] for p in range(n)}
                for t, n in self.partitions.items()
            },
            decode_status_per_topic={
                t: dict(sorted(self.decode[t].items())) for t in topics
            },
            value_bytes_per_topic={t: self.value_bytes[t] for t in topics},
            requests={op: self.requests[op] for op in operations},
            responses={op: self.responses[op] for op in operations},
            status_events=self.status_events,
            event_logs_rows=self.rows,
            event_logs_by_type_and_status=dict(
                sorted(
                    (f"{kind}/{status}", n)
                    for (kind, status), n in self.rows_by.items()
                )
            ),
            sessions=config.sessions,
            session_outcomes=dict(sorted(outcomes.items())),
            failed_sessions=self.failed,
            unfinished_sessions=self.unfinished,
            unanswered_requests=self.unanswered,
            duplicates=list(self.duplicates.values()),
            retried_then_answered=self.retried,
            dlq_messages=self.dlq,
            dlq_by_kind=dict(sorted(dlq_by_kind.items())),
            dlq_by_shape=dict(sorted(dlq_by_shape.items())),
            dlq_by_kind_and_shape={
                k: dict(sorted(v.items())) for k, v in sorted(by_kind_shape.items())
            },
            dlq_by_topic=dict(sorted(dlq_by_topic.items())),
            dlq_by_normalised_error_type=dict(sorted(normalised.items())),
            error_kinds={
                kind: {"error_type": ERROR_TYPES[kind], "template": template}
                for kind, template in ERROR_TEMPLATES.items()
            },
            dlq_rates=rates,
            poison=self.poison,
            poison_by_kind=dict(sorted(Counter(p.kind for p in self.poison).items())),
            poison_by_topic=dict(sorted(Counter(p.topic for p in self.poison).items())),
            bottleneck=bottleneck,
            latency=latency,
            bands=bands,
            session_duration_ms=latency_stats(spans),
            consumer_offsets=offsets,
            base_offsets={},
        )

    def _bottleneck_truth(self, traffic: Any) -> BottleneckTruth:
        config = traffic.config.bottleneck
        topics = traffic.catalog.for_operation(config.operation)
        windows: list[tuple[str, str]] = []
        hours: set[int] = set()
        for day in sorted(traffic._bottleneck_days or ()):
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            begin = start + timedelta(hours=config.start_hour)
            end = start + timedelta(hours=config.end_hour)
            if end <= traffic.window_start or begin >= traffic.window_end:
                continue
            windows.append((_iso_dt(begin), _iso_dt(end)))
            first = (begin - _EPOCH) // timedelta(hours=1)
            last = (end - _EPOCH) // timedelta(hours=1)
            hours.update(range(first, last + 1))
        hourly = []
        for hour in sorted(hours):
            values = self.hourly.get((topics.response, hour))
            if not values:
                continue
            average = sum(values) / len(values)
            hourly.append(
                HourAverage(
                    hour=iso(hour * _HOUR_MS),
                    count=len(values),
                    avg_ms=average,
                    band=band_of(average),
                )
            )
        return BottleneckTruth(
            operation=config.operation,
            request_topic=topics.request,
            response_topic=topics.response,
            windows=windows,
            affected_requests=self.bottleneck_hits,
            hourly=hourly,
        )


def _iso_dt(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _is_dlq(topic: str, catalog: Any) -> bool:
    return parse_topic(topic).category == "dlq"


def _dlq_operation(topic: str) -> str:
    operation = parse_topic(topic).operation
    assert operation is not None
    return operation
