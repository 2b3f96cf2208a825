"""Ad hoc analysis of one session or one correlation id, for the session notebook.

:class:`SessionReport` gathers the trace across topics and ``event_logs``, the
tracer's own figures for the session, request-to-response latencies and the failures
with their error details; each method returns what one notebook cell displays.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from codegen_forensics.analysis.context import open_analysis
from codegen_forensics.analysis.latency import request_response
from codegen_forensics.analysis.trace import (
    trace,
    tracer_session_metrics,
    tracer_session_trace,
)
from codegen_forensics.errors import InputError
from codegen_forensics.report import plots
from codegen_forensics.report.display import KeyNumbers, Note, Table
from codegen_forensics.report.redact import Redaction, check_redaction
from codegen_forensics.snapshot import Snapshot, library_versions

__all__ = ["SessionReport", "check_uuid"]

TRACE_COLUMNS = [
    "time",
    "source",
    "topic",
    "event_name",
    "status",
    "correlation_id",
    "processing_time_ms",
    "gap_ms",
    "is_failure",
    "is_dlq",
    "decode_status",
]


def check_uuid(value: str | None, name: str) -> str | None:
    if value is None or value == "":
        return None
    try:
        return str(uuid.UUID(str(value).strip()))
    except ValueError as exc:
        raise InputError(
            f"{name} {value!r} is not a UUID; pass one such as "
            "123e4567-e89b-12d3-a456-426614174000"
        ) from exc


@dataclass
class SessionReport:
    """Everything known about one session or one correlation id."""

    snapshot_dir: Path
    session_ids: list[str]
    correlation_id: str | None
    events: pd.DataFrame
    tracer_traces: pd.DataFrame
    tracer_metrics: pd.DataFrame
    requests: pd.DataFrame
    parameters: dict[str, Any]
    snapshot_checksum: str
    redaction: Redaction = "none"
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def compute(
        cls,
        snapshot_dir: str | os.PathLike[str],
        *,
        session_id: str | None = None,
        correlation_id: str | None = None,
        redaction: str = "none",
        memory_limit: str = "1GB",
    ) -> SessionReport:
        mode = check_redaction(redaction)
        sid = check_uuid(session_id, "session_id")
        cid = check_uuid(correlation_id, "correlation_id")
        if (sid is None) == (cid is None):
            raise InputError(
                "give exactly one of session_id and correlation_id; got "
                f"session_id={session_id!r}, correlation_id={correlation_id!r}"
            )
        snapshot = Snapshot.open(snapshot_dir)
        with open_analysis(snapshot, memory_limit) as a:
            events = trace(a, session_id=sid, correlation_id=cid)
            sessions = (
                [sid]
                if sid
                else sorted(events["session_id"].dropna().unique().tolist())
            )
            traces = pd.concat(
                [tracer_session_trace(a, s) for s in sessions] or [pd.DataFrame()],
                ignore_index=True,
            )
            metrics = pd.concat(
                [tracer_session_metrics(a, s) for s in sessions] or [pd.DataFrame()],
                ignore_index=True,
            )
            rr = request_response(a)
        if sid:
            requests = rr[rr["session_id"] == sid]
        else:
            requests = rr[rr["correlation_id"] == cid]
        return cls(
            snapshot_dir=Path(snapshot_dir),
            session_ids=sessions,
            correlation_id=cid,
            events=events,
            tracer_traces=traces,
            tracer_metrics=metrics,
            requests=requests.reset_index(drop=True),
            parameters={
                "snapshot": str(snapshot_dir),
                "session_id": sid,
                "correlation_id": cid,
                "redaction": mode,
            },
            snapshot_checksum=snapshot.checksum,
            redaction=mode,
        )

    @property
    def subject(self) -> str:
        if self.correlation_id:
            return f"correlation id {self.correlation_id}"
        return f"session {self.session_ids[0]}"

    def key_numbers(self) -> dict[str, Any]:
        """Figures of the trace, and the tracer's where it has the session."""
        ev = self.events
        numbers: dict[str, Any] = {
            "events": len(ev),
            "events_on_topics": int((ev["source"] == "topics").sum()) if len(ev) else 0,
            "events_in_event_logs": int((ev["source"] == "event_logs").sum())
            if len(ev)
            else 0,
            "failures": int(ev["is_failure"].sum()) if len(ev) else 0,
            "dead_letters": int(ev["is_dlq"].astype(bool).sum()) if len(ev) else 0,
            "first_event": ev["time"].min() if len(ev) else None,
            "last_event": ev["time"].max() if len(ev) else None,
        }
        if len(ev):
            span = ev["time"].max() - ev["time"].min()
            numbers["duration_ms"] = span.total_seconds() * 1000.0
        if len(self.tracer_traces) == 1:
            row = self.tracer_traces.iloc[0]
            numbers["tracer_status"] = row["status"]
            numbers["tracer_total_events"] = int(row["total_events"])
            numbers["tracer_session_duration_ms"] = int(row["session_duration_ms"])
        if len(self.tracer_metrics) == 1:
            row = self.tracer_metrics.iloc[0]
            numbers["tracer_success_rate"] = float(row["success_rate"])
            numbers["tracer_avg_response_time_ms"] = float(row["avg_response_time_ms"])
            numbers["tracer_p95_response_time_ms"] = float(row["p95_response_time_ms"])
        return numbers

    # ------------------------------------------------------------- sections

    def header(self) -> list[Any]:
        return [
            Note(
                f"{self.subject.capitalize()} in snapshot {self.snapshot_dir}. "
                f"Sessions involved: {', '.join(self.session_ids) or 'none'}. "
                f"Generated {self.generated_at:%Y-%m-%d %H:%M} UTC; snapshot "
                f"manifest SHA-256 {self.snapshot_checksum[:16]}…; redaction: "
                f"{self.redaction}."
            )
        ]

    def summary(self) -> list[Any]:
        if self.events.empty:
            return [Note(f"No event of {self.subject} is in this snapshot.")]
        return [
            KeyNumbers(
                "Summary",
                self.key_numbers(),
                {
                    "tracer_status": "the tracer's rule: from the last event",
                    "tracer_success_rate": "successful / all events in event_logs",
                },
            )
        ]

    def timeline(self) -> list[Any]:
        return [
            plots.session_timeline_figure(
                self.events, f"Every event of {self.subject}, by topic"
            )
        ]

    def event_table(self) -> list[Any]:
        gaps = int(self.events["is_gap"].sum()) if len(self.events) else 0
        # The common topic prefix takes a third of the table's width.
        shown = self.events.copy()
        if "topic" in shown.columns:
            shown["topic"] = shown["topic"].map(plots.short_topic)
        return [
            Table(
                "Events in time order",
                shown,
                note=(
                    f"{gaps} gaps over a minute; gap = time since the previous event; "
                    "topics without their omninode_codegen_ prefix"
                ),
                columns=TRACE_COLUMNS,
                limit=200,
            )
        ]

    def latencies(self) -> list[Any]:
        return [
            Table(
                "Requests and their responses",
                self.requests,
                note=(
                    "latency: response minus request timestamp; reported: the "
                    "processing_time_ms of the response"
                ),
                columns=[
                    "request_time",
                    "operation",
                    "correlation_id",
                    "answered",
                    "responses",
                    "latency_ms",
                    "reported_processing_ms",
                ],
                limit=None,
            )
        ]

    def failures(self) -> list[Any]:
        ev = self.events
        failed = ev[ev["is_failure"]] if len(ev) else ev
        return [
            Table(
                "Failures and dead letters, with their error details",
                failed,
                columns=[
                    "time",
                    "topic",
                    "status",
                    "dlq_source_topic",
                    "dlq_error_type",
                    "dlq_error_message",
                    "dlq_retry_count",
                    "decode_message",
                ],
                limit=None,
                redaction=self.redaction,
            )
        ]

    def record(self) -> dict[str, Any]:
        return {
            "report": "session",
            "parameters": self.parameters,
            "snapshot_manifest_sha256": self.snapshot_checksum,
            "generated_at": self.generated_at.isoformat(),
            "library_versions": library_versions(),
            "summary": self.key_numbers(),
        }

    def write_record(self, path: str | os.PathLike[str]) -> Path:
        out = Path(path)
        out.write_text(json.dumps(self.record(), indent=2, default=str))
        return out
