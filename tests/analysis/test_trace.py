from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from codegen_forensics.analysis import (
    Analysis,
    session_durations,
    trace,
    tracer_correlated_events,
    tracer_session_metrics,
    tracer_session_trace,
)
from codegen_forensics.analysis.trace import tracer_percentile, tracer_session_status
from codegen_forensics.errors import InputError

from .helpers import DLQ, REQ, RESP, STATUS, at, uid

S = uid(1)
C = uid(11)


def row(
    event_type: str,
    seconds: float,
    status: str,
    topic: str = REQ,
    correlation_id: str | None = C,
    processing_time_ms: int | None = None,
) -> dict:
    return dict(
        session_id=S,
        correlation_id=correlation_id,
        event_type=event_type,
        topic=topic,
        timestamp=at(seconds),
        status=status,
        processing_time_ms=processing_time_ms,
    )


@pytest.fixture
def session(analyse: Callable[..., Analysis]) -> Analysis:
    logs = [
        row("request", 0, "sent"),
        row("status", 0.5, "processing", STATUS, None),
        row("response", 2, "received", RESP, processing_time_ms=1800),
        row("request", 3, "sent", correlation_id=uid(12)),
        row(
            "response",
            6,
            "received",
            RESP,
            correlation_id=uid(12).upper(),
            processing_time_ms=2900,
        ),
        row("status", 200, "processing", STATUS, None),
        row("error", 201.25, "failed", STATUS, None),
    ]
    messages = [
        dict(topic=REQ, session_id=S, correlation_id=C, event_timestamp=at(0)),
        dict(topic=STATUS, session_id=S, status="analyzing", event_timestamp=at(0.5)),
        dict(
            topic=RESP,
            session_id=S,
            correlation_id=C,
            event_timestamp=at(2),
            processing_time_ms=1800,
        ),
        dict(
            topic=DLQ,
            session_id=S,
            correlation_id=uid(12),
            dlq_failure_time=at(150),
            dlq_error_type="TimeoutError",
            dlq_error_message="timed out after 9000ms",
        ),
        dict(topic=STATUS, session_id=S, status="failed", event_timestamp=at(201.25)),
    ]
    return analyse(messages, event_logs=logs)


def test_tracer_session_trace_parity(session: Analysis) -> None:
    result = tracer_session_trace(session, S.upper()).iloc[0]
    assert result["total_events"] == 7
    assert result["session_duration_ms"] == 201_250
    assert result["status"] == "failed"
    assert result["start_time"] == at(0)
    assert result["end_time"] == at(201.25)


def test_tracer_session_trace_agrees_with_session_durations(session: Analysis) -> None:
    ours = session_durations(session, "event_logs").iloc[0]
    theirs = tracer_session_trace(session, S).iloc[0]
    assert ours["events"] == theirs["total_events"]
    assert ours["tracer_duration_ms"] == theirs["session_duration_ms"]
    assert ours["final_status"] == theirs["status"]


def test_tracer_session_trace_time_range(session: Analysis) -> None:
    result = tracer_session_trace(
        session, S, time_range_hours=100 / 3600, now=at(250)
    ).iloc[0]
    assert result["total_events"] == 2
    assert result["session_duration_ms"] == 1250


def test_tracer_session_trace_unknown_session(session: Analysis) -> None:
    result = tracer_session_trace(session, uid(404)).iloc[0]
    assert (
        result["total_events"],
        result["session_duration_ms"],
        result["status"],
    ) == (0, 0, "unknown")


def test_tracer_session_metrics_parity(session: Analysis) -> None:
    result = tracer_session_metrics(session, S).iloc[0]
    assert result["total_events"] == 7
    assert result["successful_events"] == 4
    assert result["failed_events"] == 1
    assert result["success_rate"] == pytest.approx(4 / 7)
    assert result["avg_response_time_ms"] == 2350.0
    # Two values: p95 = 1800 + 0.95 * 1100 = 2845, truncated as the tracer does.
    assert result["p95_response_time_ms"] == 2845
    assert result["p50_response_time_ms"] == 2350
    assert result["total_processing_time_ms"] == 4700
    assert result["event_type_breakdown"] == {
        "error": 1,
        "request": 2,
        "response": 2,
        "status": 2,
    }
    assert result["bottlenecks"] == [
        {
            "topic": RESP,
            "avg_response_time_ms": 2350.0,
            "count": 2,
            "severity": "medium",
        }
    ]


def test_tracer_session_metrics_empty_session(session: Analysis) -> None:
    result = tracer_session_metrics(session, uid(404)).iloc[0]
    assert (
        result["total_events"],
        result["success_rate"],
        result["p95_response_time_ms"],
    ) == (0, 0.0, 0)


def test_tracer_correlated_events_exclude_status_events(session: Analysis) -> None:
    frame = tracer_correlated_events(session, C)
    assert frame["event_type"].tolist() == ["request", "response"]
    assert tracer_correlated_events(session, uid(12).upper())[
        "event_type"
    ].tolist() == ["request", "response"]


def test_trace_correlation_adds_status_events_without_id(session: Analysis) -> None:
    frame = trace(session, correlation_id=C)
    assert list(
        zip(frame["source"], frame["category"], frame["matched_by"], strict=True)
    ) == [
        ("topics", "request", "correlation_id"),
        ("event_logs", "request", "correlation_id"),
        ("topics", "status", "session_status"),
        ("event_logs", "status", "session_status"),
        ("topics", "response", "correlation_id"),
        ("event_logs", "response", "correlation_id"),
    ]
    assert frame["in_tracer"].tolist() == [False, True, False, False, False, True]
    assert frame["gap_ms"].tolist()[1:] == [0.0, 500.0, 0.0, 1500.0, 0.0]


def test_trace_session_marks_failures_dlq_and_gaps(session: Analysis) -> None:
    frame = trace(session, session_id=S, gap_ms=40_000)
    assert len(frame) == 12
    dlq = frame[frame["is_dlq"]]
    assert dlq["dlq_error_type"].tolist() == ["TimeoutError"]
    assert dlq["is_failure"].tolist() == [True]
    gaps = frame[frame["is_gap"]]
    assert gaps["time"].tolist() == [at(150), at(200)]
    assert gaps["gap_ms"].tolist() == [144_000.0, 50_000.0]
    assert frame["is_failure"].sum() == 3
    assert frame["in_tracer"].sum() == 7


def test_trace_needs_exactly_one_id(session: Analysis) -> None:
    with pytest.raises(
        InputError, match="exactly one of session_id and correlation_id"
    ):
        trace(session)


def test_trace_unknown_id_is_empty(session: Analysis) -> None:
    assert trace(session, correlation_id=uid(404)).empty


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([], 0.95, 0),
        ([7], 0.95, 7),
        ([100, 200, 300, 400], 0.95, 385),
        ([1, 2], 0.5, 1),
        ([400, 100, 300, 200], 0.5, 250),
        ([5, 5, 5], 0.99, 5),
    ],
)
def test_tracer_percentile(values: list[int], p: float, expected: int) -> None:
    assert tracer_percentile(values, p) == expected


def test_tracer_session_status_rules() -> None:
    t = [at(0), at(1)]
    assert tracer_session_status(["sent", "completed"], t) == "completed"
    assert tracer_session_status(["failed", "received"], t) == "failed"
    assert tracer_session_status(["sent", "received"], t) == "in_progress"
    assert tracer_session_status(["sent", "queued"], t) == "unknown"
    assert tracer_session_status([], []) == "unknown"
    assert tracer_session_status(["completed", "error"], [at(0), at(0)]) == "failed"
    assert tracer_session_status(["sent", "x"], [at(0), pd.NaT]) == "in_progress"
