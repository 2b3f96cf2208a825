"""The weekly DLQ review, section by section, for the notebook to display.

:class:`WeeklyReview` computes every measure once through
:func:`~codegen_forensics.analysis.weekly.weekly_review` and offers one method per
section of the notebook, each returning what the cell displays. The notebook holds no
logic of its own; everything here is tested.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from codegen_forensics.analysis.context import open_analysis
from codegen_forensics.analysis.replay import replay_candidates, write_replay_candidates
from codegen_forensics.analysis.sessions import session_durations
from codegen_forensics.analysis.targets import Thresholds, load_thresholds
from codegen_forensics.analysis.weekly import weekly_review
from codegen_forensics.errors import InputError
from codegen_forensics.report import plots
from codegen_forensics.report.display import KeyNumbers, Note, Table, format_value
from codegen_forensics.report.redact import Redaction, check_redaction, redact_frame
from codegen_forensics.snapshot import Snapshot, library_versions

__all__ = ["HEADLINE_KEYS", "KEY_TABLES", "WeeklyReview", "week_window"]

logger = logging.getLogger(__name__)

# The figures at the top of the report, in order, from the ``headline`` table.
HEADLINE_KEYS = (
    "messages",
    "sessions",
    "success_rate",
    "tracer_success_rate",
    "unfinished_sessions",
    "requests",
    "unanswered_requests",
    "dlq_messages",
    "dlq_groups",
    "new_dlq_groups",
    "growing_dlq_groups",
    "poison_messages",
    "targets_met",
    "targets_missed",
)
HEADLINE_NOTES = {
    "success_rate": "ours: successful / (successful + failed) events",
    "tracer_success_rate": "the tracer's: successful / all events",
    "unfinished_sessions": "last status neither completed nor failed",
    "unanswered_requests": "no response, no dead letter, and the request decoded",
    "new_dlq_groups": "error groups absent from the previous snapshot",
    "poison_messages": "messages that could not be decoded or needed repair",
}

# Result tables exported beside the report, as CSV and Parquet.
KEY_TABLES = (
    "headline",
    "targets",
    "dlq_groups",
    "dlq_diff",
    "dlq_breakdown",
    "dlq_counts",
    "dlq_rate_total",
    "dlq_rate_day",
    "bottleneck_topics",
    "bottleneck_hours",
    "latency_by_operation",
    "sessions",
    "unfinished_sessions",
    "consumer_lag",
    "compression",
    "poison",
    "replay_candidates",
)


def week_window(week: str | None) -> tuple[datetime | None, datetime | None]:
    """The seven days starting at ``week`` (an ISO date, UTC), or no window."""
    if week is None or week == "":
        return None, None
    try:
        day = date.fromisoformat(week)
    except ValueError as exc:
        raise InputError(
            f"week {week!r} is not an ISO date; pass the first day of the week as "
            "YYYY-MM-DD, such as 2026-11-23"
        ) from exc
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=7)


@dataclass
class WeeklyReview:
    """Every table of one week's review, and the sections built from them."""

    snapshot_dir: Path
    tables: dict[str, pd.DataFrame]
    parameters: dict[str, Any]
    snapshot_checksum: str
    thresholds: Thresholds
    redaction: Redaction = "none"
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def compute(
        cls,
        snapshot_dir: str | os.PathLike[str],
        *,
        week: str | None = None,
        previous: str | os.PathLike[str] | None = None,
        thresholds: str | os.PathLike[str] | None = None,
        overrides: str | os.PathLike[str] | None = None,
        redaction: str = "none",
        memory_limit: str = "1GB",
    ) -> WeeklyReview:
        mode = check_redaction(redaction)
        start, end = week_window(week)
        snapshot = Snapshot.open(snapshot_dir)
        limits = load_thresholds(Path(thresholds)) if thresholds else Thresholds()
        with open_analysis(snapshot, memory_limit, start=start, end=end) as a:
            tables = weekly_review(
                a, previous=previous, thresholds=limits, overrides=overrides
            )
            tables["replay_candidates"] = replay_candidates(a)
            tables["session_durations"] = session_durations(a)
        parameters = {
            "snapshot": str(snapshot_dir),
            "week": week,
            "window_start": start.isoformat() if start else None,
            "window_end": end.isoformat() if end else None,
            "previous": str(previous) if previous else None,
            "thresholds": str(thresholds) if thresholds else None,
            "overrides": str(overrides) if overrides else None,
            "redaction": mode,
        }
        return cls(
            snapshot_dir=Path(snapshot_dir),
            tables=tables,
            parameters=parameters,
            snapshot_checksum=snapshot.checksum,
            thresholds=limits,
            redaction=mode,
        )

    # ------------------------------------------------------------- sections

    def header(self) -> list[Any]:
        week = self.parameters["week"]
        span = (
            f"the week of {week} (UTC, seven days)"
            if week
            else "every event in the snapshot"
        )
        return [
            Note(
                f"Snapshot {self.snapshot_dir} covering {span}. "
                f"Generated {self.generated_at:%Y-%m-%d %H:%M} UTC. "
                f"Snapshot manifest SHA-256 {self.snapshot_checksum[:16]}…; "
                f"redaction: {self.redaction}."
            )
        ]

    def headline_numbers(self) -> dict[str, Any]:
        row = self.tables["headline"].iloc[0]
        return {key: _plain(row[key]) for key in HEADLINE_KEYS if key in row.index}

    def headline(self) -> list[Any]:
        targets = self.tables["targets"]
        missed = targets[targets["status"] == "missed"]
        items: list[Any] = [
            KeyNumbers("Headline", self.headline_numbers(), HEADLINE_NOTES)
        ]
        items.append(
            Table(
                "Targets",
                _targets_for_reading(targets),
                note=(
                    f"{len(missed)} of {len(targets)} targets missed. Thresholds from "
                    f"{self.parameters['thresholds'] or 'the defaults'}."
                ),
                columns=[
                    "target",
                    "measured",
                    "unit",
                    "comparison",
                    "threshold",
                    "status",
                    "worst_offenders",
                ],
                limit=None,
            )
        )
        return items

    def dlq_volume(self) -> list[Any]:
        t = self.tables
        return [
            plots.dlq_volume_figure(t["dlq_breakdown"]),
            plots.dlq_rate_figure(t["dlq_rate_day"], self.thresholds.dlq_rate),
            Table(
                "DLQ rate over the whole window, per source topic",
                t["dlq_rate_total"].sort_values("dlq_rate", ascending=False),
                note="dead letters naming the topic / messages on the topic",
                columns=["source_topic", "dlq_messages", "source_messages", "dlq_rate"],
            ),
            Table(
                "Dead letters per DLQ topic and shape",
                t["dlq_counts"],
                note=f"alert above {self.thresholds.dlq_alert_count} per topic",
            ),
        ]

    def taxonomy(self) -> list[Any]:
        diff = self.tables["dlq_diff"]
        groups = self.tables["dlq_groups"]
        detail = groups[
            [
                "group_id",
                "sessions",
                "max_retry_count",
                "first_seen",
                "last_seen",
                "example_message",
            ]
        ]
        merged = diff.merge(detail, on="group_id", how="left")
        previous = self.parameters["previous"]
        note = (
            f"compared with {previous}; new and growing groups first"
            if previous
            else "no previous snapshot given, so every group counts as new"
        )
        return [
            Table(
                "DLQ error groups",
                merged,
                note=note,
                columns=[
                    "state",
                    "group_id",
                    "error_type",
                    "messages",
                    "previous_messages",
                    "change",
                    "sessions",
                    "max_retry_count",
                    "first_seen",
                    "last_seen",
                ],
                redaction=self.redaction,
            ),
            Table(
                "What each group looks like",
                merged,
                note="the masked template, and one message as it arrived",
                columns=["group_id", "template", "example_message"],
                redaction=self.redaction,
            ),
        ]

    def latency(self) -> list[Any]:
        t = self.tables
        bands = "bands: low above 1 s, medium above 2 s, high above 5 s (mean)"
        return [
            Table(
                "Bottleneck topics (processing_time_ms reported by responses)",
                t["bottleneck_topics"],
                note=bands,
            ),
            plots.latency_figure(t["bottleneck_hours"]),
            Table(
                "Hours in which a topic entered a band",
                t["bottleneck_hours"][
                    t["bottleneck_hours"]["entered_band"].fillna(False)
                ],
                note="hours in a higher band than the hour before, highest band first",
                columns=["topic", "hour", "responses", "mean_ms", "p95_ms", "severity"],
                limit=15,
            ),
            Table(
                "Request to response, per operation",
                t["latency_by_operation"],
                note=(
                    "latency: response timestamp minus request timestamp; processing: "
                    "the time the response reports"
                ),
                columns=[
                    "operation",
                    "requests",
                    "answered",
                    "unanswered",
                    "dead_lettered",
                    "duplicate_responses",
                    "latency_p50_ms",
                    "latency_p95_ms",
                    "processing_mean_ms",
                    "processing_p95_ms",
                ],
            ),
        ]

    def sessions(self) -> list[Any]:
        t = self.tables
        return [
            Table(
                "Sessions, from the topics and from event_logs",
                t["sessions"],
                note="durations are last event minus first event",
                columns=[
                    "source",
                    "sessions",
                    "completed",
                    "failed",
                    "never_finished",
                    "duration_p50_ms",
                    "duration_p95_ms",
                    "duration_p99_ms",
                    "success_rate",
                    "tracer_success_rate",
                ],
            ),
            plots.session_duration_figure(t["session_durations"]),
            Table(
                "Sessions that never finished (most recent first)",
                t["unfinished_sessions"],
                columns=[
                    "session_id",
                    "events",
                    "first_event",
                    "last_event",
                    "final_status",
                ],
                limit=15,
            ),
        ]

    def lag(self) -> list[Any]:
        t = self.tables
        return [
            Table(
                "Consumer lag per group",
                t["consumer_lag_by_group"],
                note=(
                    f"alert at {self.thresholds.consumer_lag_design} messages "
                    f"(design) and {self.thresholds.consumer_lag_deployed} (deployed "
                    "alert rules)"
                ),
            ),
            Table(
                "Consumer lag per partition (largest first)",
                t["consumer_lag"],
                columns=[
                    "group_id",
                    "topic",
                    "partition",
                    "committed_offset",
                    "end_offset",
                    "lag_messages",
                    "age_s",
                ],
                limit=20,
            ),
        ]

    def compression(self) -> list[Any]:
        return [
            Table(
                "Compression ratio per topic (gzip, 16 KB batches per partition)",
                self.tables["compression"],
                note=f"target: above {self.thresholds.compression_ratio:g}x",
                columns=[
                    "topic",
                    "messages",
                    "value_bytes",
                    "compressed_bytes",
                    "ratio",
                    "sampled_fraction",
                ],
            )
        ]

    def poison(self) -> list[Any]:
        return [
            Table(
                "Messages that could not be decoded or needed repair",
                self.tables["poison"],
                columns=[
                    "topic",
                    "decode_status",
                    "kind",
                    "messages",
                    "example_offset",
                    "example_reason",
                    "example_value",
                ],
                redaction=self.redaction,
            )
        ]

    def replay(self, path: str | os.PathLike[str] | None = None) -> list[Any]:
        frame = self.tables["replay_candidates"]
        items: list[Any] = []
        if path:
            written = write_replay_candidates(
                redact_frame(frame, self.redaction), Path(path)
            )
            items.append(
                Note(
                    f"{len(frame):,} replay candidates written to {written}; nothing "
                    "was produced to Kafka."
                )
            )
        items.append(
            Table(
                "Replay candidates: transient failures whose original event is intact",
                frame,
                columns=[
                    "replay_topic",
                    "error_type",
                    "error_message",
                    "retry_count",
                    "failure_time",
                    "session_id",
                ],
                limit=20,
                redaction=self.redaction,
            )
        )
        return items

    def throughput(self) -> list[Any]:
        t = self.tables
        return [
            plots.throughput_figure(t["throughput_series_hour"]),
            Table(
                "Throughput per topic (messages per minute)",
                t["throughput_minute"],
                note=(
                    "mean over every minute from the topic's first message to its "
                    "last, empty minutes included; peak: the busiest minute"
                ),
                columns=[
                    "topic",
                    "messages",
                    "mean_per_window",
                    "peak_per_window",
                    "peak_window",
                ],
            ),
        ]

    # ------------------------------------------------------------- export

    def export_tables(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write the key tables as CSV and Parquet, redacted, plus ``report.json``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in KEY_TABLES:
            frame = redact_frame(self.tables[name], self.redaction)
            frame = _exportable(frame)
            csv = out / f"{name}.csv"
            frame.to_csv(csv, index=False)
            parquet = out / f"{name}.parquet"
            frame.to_parquet(parquet, index=False)
            written += [csv, parquet]
        return written

    def record(self) -> dict[str, Any]:
        """What the report records about itself: parameters, snapshot, versions."""
        return {
            "report": "weekly",
            "parameters": self.parameters,
            "snapshot_manifest_sha256": self.snapshot_checksum,
            "generated_at": self.generated_at.isoformat(),
            "library_versions": library_versions(),
            "headline": self.headline_numbers(),
        }

    def write_record(self, path: str | os.PathLike[str]) -> Path:
        out = Path(path)
        out.write_text(json.dumps(self.record(), indent=2, default=str))
        return out


_UNIT_COLUMNS = {"ms": "value_ms", "fraction": "rate", "x": "ratio", "s": "value_s"}


def _targets_for_reading(targets: pd.DataFrame) -> pd.DataFrame:
    """Measured values and thresholds written in their units (ms, %, x)."""
    out = targets.copy()
    for column in ("measured", "threshold"):
        out[column] = [
            format_value(_UNIT_COLUMNS.get(str(unit), column), value)
            for value, unit in zip(out[column], out["unit"], strict=True)
        ]
    return out


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return value


def _exportable(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns holding lists or dicts become JSON text, which CSV and Parquet keep."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype != object:
            continue
        if any(isinstance(v, list | dict | tuple) for v in out[column]):
            out[column] = out[column].map(
                lambda v: json.dumps(v, default=str) if v is not None else None
            )
    return out
