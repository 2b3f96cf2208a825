"""Every target of the design document and the field notes, measured, met or missed.

Thresholds default to the documented values and can be read from a YAML or JSON
file (:func:`load_thresholds`) naming any of the :class:`Thresholds` fields::

    processing_avg_ms: 2000
    dlq_rate: 0.005

Time, lag and DLQ-count targets are measured at their worst topic (or partition),
so they are met only when every one meets them. The DLQ rate and the compression
ratio are the system's own figures, measured over all topics together (a DLQ topic
holding three messages compresses badly and says nothing about storage); topics
that fall short of the target on their own are listed as offenders either way,
worst first. A target the snapshot
cannot measure says so (``not measurable``), one with no data says ``no data``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from codegen_forensics.analysis.compression import compression_ratios
from codegen_forensics.analysis.context import Analysis
from codegen_forensics.analysis.dlq import dlq_counts, dlq_rate
from codegen_forensics.analysis.lag import consumer_lag
from codegen_forensics.analysis.latency import (
    bottleneck_topics,
    producer_latency,
    request_response_summary,
    response_time_summary,
)
from codegen_forensics.analysis.sessions import session_summary
from codegen_forensics.errors import ConfigError

__all__ = ["TARGET_COLUMNS", "Thresholds", "load_thresholds", "targets"]

logger = logging.getLogger(__name__)

TARGET_COLUMNS = [
    "target",
    "description",
    "measured",
    "unit",
    "comparison",
    "threshold",
    "status",
    "worst_offenders",
    "source",
    "detail",
]


@dataclass(frozen=True)
class Thresholds:
    """Target thresholds; defaults from the design document and the field notes."""

    processing_avg_ms: float = 2000.0
    processing_p95_ms: float = 5000.0
    dlq_rate: float = 0.01
    dlq_alert_count: int = 10
    consumer_lag_design: int = 100
    consumer_lag_deployed: int = 1000
    compression_ratio: float = 2.0
    success_rate: float = 0.95
    producer_p95_ms: float = 100.0
    consumer_p95_ms: float = 50.0

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], origin: str = "thresholds"
    ) -> Thresholds:
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{origin} must be a mapping of threshold names to numbers"
            )
        allowed = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ConfigError(
                f"{origin} has unknown thresholds {unknown}; allowed: "
                f"{', '.join(sorted(allowed))}"
            )
        values: dict[str, Any] = {}
        for name, value in data.items():
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or value <= 0
            ):
                raise ConfigError(
                    f"{origin}: {name}={value!r} must be a positive number"
                )
            if name in ("dlq_rate", "success_rate") and value > 1:
                raise ConfigError(
                    f"{origin}: {name}={value!r} is a fraction; use 0.01 for 1 %"
                )
            values[name] = value
        return cls(**values)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def load_thresholds(path: str | os.PathLike[str]) -> Thresholds:
    """Thresholds from a YAML (``.yaml``/``.yml``) or JSON file.

    Thresholds the file does not name keep their defaults.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"thresholds file {str(file)!r} cannot be read: {exc}"
        ) from exc
    try:
        if file.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"thresholds file {str(file)!r} is not valid: {exc}") from exc
    return Thresholds.from_mapping(data, origin=f"thresholds file {str(file)!r}")


class _Measures:
    """Measures passed in by the caller, computed here only when missing."""

    def __init__(
        self, a: Analysis, given: Mapping[str, pd.DataFrame] | None, th: Thresholds
    ) -> None:
        self.a = a
        self.given = dict(given or {})
        self.th = th

    def get(self, name: str, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        if name not in self.given:
            self.given[name] = compute()
        return self.given[name]


def _offenders(
    frame: pd.DataFrame,
    key: str | list[str],
    value: str,
    bad: pd.Series,
    fmt: str,
    ascending: bool = False,
    limit: int = 3,
) -> str | None:
    rows = frame[bad.fillna(False).astype(bool)]
    if rows.empty:
        return None
    rows = rows.sort_values(value, ascending=ascending, kind="stable").head(limit)
    keys = [key] if isinstance(key, str) else key
    parts = []
    for _, row in rows.iterrows():
        name = "/".join(str(row[k]) for k in keys)
        parts.append(f"{name} ({fmt.format(row[value])})")
    more = int(bad.fillna(False).sum()) - len(parts)
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def _row(
    target: str,
    description: str,
    measured: float | None,
    unit: str,
    comparison: str,
    threshold: float,
    offenders: str | None = None,
    source: str | None = None,
    detail: str | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    if status is None:
        if measured is None or pd.isna(measured):
            status = "no data"
        elif comparison == "<":
            status = "met" if measured < threshold else "missed"
        elif comparison == "<=":
            status = "met" if measured <= threshold else "missed"
        else:
            status = "met" if measured > threshold else "missed"
    return {
        "target": target,
        "description": description,
        "measured": None if measured is None or pd.isna(measured) else float(measured),
        "unit": unit,
        "comparison": comparison,
        "threshold": float(threshold),
        "status": status,
        "worst_offenders": offenders,
        "source": source,
        "detail": detail,
    }


def targets(
    a: Analysis,
    thresholds: Thresholds | None = None,
    *,
    measures: Mapping[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """One row per target: measured value, threshold, met or missed, worst offenders.

    Columns: target, description, measured, unit, comparison (``<``, ``<=`` or
    ``>``: what meeting it takes), threshold, status (met, missed, no data, not
    measurable), worst_offenders (up to three, worst first), source (topics or
    event_logs) and detail. Response times, latency and success rate come from the
    topics, or from ``event_logs`` when the topics have none.

    ``measures`` may pass results already computed, under the names
    :func:`~codegen_forensics.analysis.weekly.weekly_review` uses: sessions,
    response_times, bottleneck_topics, latency_overall, latency_by_operation,
    dlq_rate_total, dlq_counts, consumer_lag, compression, producer_latency.
    """
    th = thresholds or Thresholds()
    m = _Measures(a, measures, th)
    rows: list[dict[str, Any]] = []

    # Reported processing time, from the topics unless only event_logs have any.
    source = "topics"
    overall = m.get("response_times", lambda: response_time_summary(a, "topics"))
    if int(overall["responses"].iloc[0]) == 0:
        source = "event_logs"
        overall = response_time_summary(a, "event_logs")
        per_topic = bottleneck_topics(a, "event_logs")
    else:
        per_topic = m.get("bottleneck_topics", lambda: bottleneck_topics(a, "topics"))
    mean = overall["mean_ms"].iloc[0]
    p95 = overall["p95_ms"].iloc[0]
    rows.append(
        _row(
            "processing_avg_ms",
            "Processing time reported by responses, mean (the tracer's response time)",
            mean,
            "ms",
            "<",
            th.processing_avg_ms,
            _offenders(
                per_topic,
                "topic",
                "mean_ms",
                per_topic["mean_ms"] >= th.processing_avg_ms,
                "{:.0f} ms",
            ),
            source,
            f"{int(overall['responses'].iloc[0])} responses",
        )
    )
    rows.append(
        _row(
            "processing_p95_ms",
            "Processing time reported by responses, p95",
            p95,
            "ms",
            "<",
            th.processing_p95_ms,
            _offenders(
                per_topic,
                "topic",
                "p95_ms",
                per_topic["p95_ms"] >= th.processing_p95_ms,
                "{:.0f} ms",
            ),
            source,
        )
    )

    # Request to response latency from timestamps, against the same targets.
    lat = m.get("latency_overall", lambda: request_response_summary(a, by=()))
    by_op = m.get("latency_by_operation", lambda: request_response_summary(a))
    lat_mean = lat["latency_mean_ms"].iloc[0] if len(lat) else None
    lat_p95 = lat["latency_p95_ms"].iloc[0] if len(lat) else None
    answered = int(lat["answered"].iloc[0]) if len(lat) else 0
    rows.append(
        _row(
            "latency_avg_ms",
            "Request to response latency from timestamps, mean",
            lat_mean,
            "ms",
            "<",
            th.processing_avg_ms,
            _offenders(
                by_op,
                "operation",
                "latency_mean_ms",
                by_op["latency_mean_ms"] >= th.processing_avg_ms,
                "{:.0f} ms",
            ),
            "topics",
            f"{answered} answered requests",
        )
    )
    rows.append(
        _row(
            "latency_p95_ms",
            "Request to response latency from timestamps, p95",
            lat_p95,
            "ms",
            "<",
            th.processing_p95_ms,
            _offenders(
                by_op,
                "operation",
                "latency_p95_ms",
                by_op["latency_p95_ms"] >= th.processing_p95_ms,
                "{:.0f} ms",
            ),
            "topics",
        )
    )

    # Dead letters: the rate over all source messages; topics above it offend.
    rates = m.get("dlq_rate_total", lambda: dlq_rate(a))
    known = rates[rates["dlq_rate"].notna()]
    total_dlq = int(rates["dlq_messages"].sum()) if len(rates) else 0
    total_src = int(known["source_messages"].sum()) if len(known) else 0
    unplaced = int(rates.loc[rates["dlq_rate"].isna(), "dlq_messages"].sum())
    detail = None
    if total_src:
        detail = f"{total_dlq} dead letters over {total_src} source messages"
        if len(known):
            worst = known.iloc[known["dlq_rate"].argmax()]
            detail += f"; worst topic {worst['source_topic']} ({worst['dlq_rate']:.2%})"
        if unplaced:
            detail += f"; {unplaced} with no known source topic"
    rows.append(
        _row(
            "dlq_rate",
            "Dead letters over messages on their source topics, all topics",
            total_dlq / total_src if total_src else None,
            "fraction",
            "<",
            th.dlq_rate,
            _offenders(
                known,
                "source_topic",
                "dlq_rate",
                known["dlq_rate"] >= th.dlq_rate,
                "{:.2%}",
            ),
            "topics",
            detail,
        )
    )
    counts = m.get("dlq_counts", lambda: dlq_counts(a, th.dlq_alert_count))
    worst_count = counts["messages"].max() if len(counts) else 0
    rows.append(
        _row(
            "dlq_count",
            "Dead letters per DLQ topic, worst topic (the monitor alerts above it)",
            worst_count,
            "messages",
            "<=",
            th.dlq_alert_count,
            _offenders(
                counts,
                "dlq_topic",
                "messages",
                counts["messages"] > th.dlq_alert_count,
                "{:.0f}",
            ),
            "topics",
        )
    )

    # Consumer lag, against the design's and the deployed alert's thresholds.
    lag = m.get("consumer_lag", lambda: consumer_lag(a))
    worst_lag = lag["lag_messages"].max() if len(lag) else None
    for name, limit, what in (
        ("consumer_lag_design", th.consumer_lag_design, "design document"),
        ("consumer_lag_deployed", th.consumer_lag_deployed, "deployed alert rules"),
    ):
        rows.append(
            _row(
                name,
                f"Consumer lag per group and partition, worst ({what})",
                worst_lag,
                "messages",
                "<",
                limit,
                _offenders(
                    lag,
                    ["group_id", "topic", "partition"],
                    "lag_messages",
                    lag["lag_messages"] >= limit,
                    "{:.0f}",
                ),
                "topics",
            )
        )

    # Compression over every topic's bytes; topics below the target offend.
    comp = m.get("compression", lambda: compression_ratios(a))
    with_bytes = comp[comp["ratio"].notna()] if len(comp) else comp
    compressed = float(with_bytes["compressed_bytes"].sum()) if len(with_bytes) else 0.0
    overall_ratio = (
        float(with_bytes["value_bytes"].sum()) / compressed if compressed else None
    )
    rows.append(
        _row(
            "compression_ratio",
            "gzip compression ratio of values re-batched as the producer would, "
            "all topics",
            overall_ratio,
            "x",
            ">",
            th.compression_ratio,
            _offenders(
                with_bytes,
                "topic",
                "ratio",
                with_bytes["ratio"] <= th.compression_ratio,
                "{:.2f}x",
                ascending=True,
            )
            if len(with_bytes)
            else None,
            "topics",
            f"{len(with_bytes)} topics; worst "
            f"{with_bytes.iloc[0]['topic']} ({with_bytes.iloc[0]['ratio']:.2f}x)"
            if len(with_bytes)
            else None,
        )
    )

    # Success rate: ours, with the tracer's in the detail.
    sessions = m.get("sessions", lambda: session_summary(a))
    pick = sessions[sessions["sessions"] > 0]
    if len(pick):
        first = pick.iloc[0]
        rows.append(
            _row(
                "success_rate",
                "Successful events over decided ones (processing is pending, not "
                "failure)",
                first["success_rate"],
                "fraction",
                ">",
                th.success_rate,
                None,
                str(first["source"]),
                f"tracer's definition (processing counts against): "
                f"{_pct(first['tracer_success_rate'])}; sessions completed: "
                f"{_pct(first['session_success_rate'])}",
            )
        )
    else:
        rows.append(
            _row(
                "success_rate",
                "Successful events over decided ones",
                None,
                "fraction",
                ">",
                th.success_rate,
            )
        )

    # Producer and consumer latency.
    prod = m.get("producer_latency", lambda: producer_latency(a))
    if len(prod) and int(prod["messages"].sum()) > 0:
        overall_prod = producer_latency(a, by_topic=False)
        rows.append(
            _row(
                "producer_p95_ms",
                "Publish latency p95 (broker append time minus event time)",
                overall_prod["p95_ms"].iloc[0],
                "ms",
                "<",
                th.producer_p95_ms,
                _offenders(
                    prod,
                    "topic",
                    "p95_ms",
                    prod["p95_ms"] >= th.producer_p95_ms,
                    "{:.0f} ms",
                ),
                "topics",
                f"{int(prod['messages'].sum())} messages with LogAppendTime",
            )
        )
    else:
        rows.append(
            _row(
                "producer_p95_ms",
                "Publish latency p95",
                None,
                "ms",
                "<",
                th.producer_p95_ms,
                status="not measurable",
                detail="needs topics with message.timestamp.type=LogAppendTime",
            )
        )
    rows.append(
        _row(
            "consumer_p95_ms",
            "Consumption latency p95",
            None,
            "ms",
            "<",
            th.consumer_p95_ms,
            status="not measurable",
            detail="a snapshot holds no consumer timings",
        )
    )
    return pd.DataFrame(rows, columns=TARGET_COLUMNS)


def _pct(value: Any) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{float(value):.1%}"
