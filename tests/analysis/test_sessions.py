from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from codegen_forensics.analysis import (
    Analysis,
    _events,
    session_duration_quantiles,
    session_durations,
    session_summary,
    unfinished_sessions,
)
from codegen_forensics.errors import InputError

from .helpers import DLQ, REQ, RESP, STATUS, at, uid


def log(session: int, seconds: float, status: str, event_type: str = "status") -> dict:
    return dict(
        session_id=uid(session),
        event_type=event_type,
        topic=STATUS,
        timestamp=at(seconds),
        status=status,
    )


@pytest.fixture
def topic_sessions(analyse: Callable[..., Analysis]) -> Analysis:
    return analyse(
        [
            # 1: request, response, completed: 3.5 s, completed.
            dict(
                topic=REQ,
                session_id=uid(1),
                correlation_id=uid(11),
                event_timestamp=at(0),
            ),
            dict(
                topic=RESP,
                session_id=uid(1),
                correlation_id=uid(11),
                event_timestamp=at(2.5),
                processing_time_ms=2000,
            ),
            dict(
                topic=STATUS,
                session_id=uid(1),
                status="completed",
                event_timestamp=at(3.5),
            ),
            # 2: a dead letter, then work goes on: failed (an earlier event failed).
            dict(
                topic=REQ,
                session_id=uid(2),
                correlation_id=uid(21),
                event_timestamp=at(0),
            ),
            dict(
                topic=DLQ,
                session_id=uid(2),
                correlation_id=uid(21),
                dlq_failure_time=at(1),
            ),
            dict(
                topic=STATUS,
                session_id=uid(2),
                status="analyzing",
                event_timestamp=at(4),
            ),
            # 3: one status event, id in capitals: in progress, 0 ms.
            dict(
                topic=STATUS,
                session_id=uid(3).upper(),
                status="pending",
                event_timestamp=at(7),
            ),
            # No session id: not a session.
            dict(topic=REQ, event_timestamp=at(1)),
        ]
    )


def test_session_durations_topics_exact(topic_sessions: Analysis) -> None:
    frame = session_durations(topic_sessions)
    assert frame["session_id"].tolist() == [uid(1), uid(2), uid(3)]
    assert frame["events"].tolist() == [3, 3, 1]
    assert frame["duration_ms"].tolist() == [3500.0, 4000.0, 0.0]
    assert frame["tracer_duration_ms"].tolist() == [3500, 4000, 0]
    assert frame["final_status"].tolist() == ["completed", "failed", "in_progress"]
    assert frame["finished"].tolist() == [True, True, False]
    assert frame["successful_events"].tolist() == [3, 1, 0]
    assert frame["failed_events"].tolist() == [0, 1, 0]
    assert frame["pending_events"].tolist() == [0, 1, 1]
    assert frame["dlq_entries"].tolist() == [0, 1, 0]
    assert frame["tracer_success_rate"].tolist() == [1.0, 1 / 3, 0.0]
    assert frame["success_rate"].tolist()[:2] == [1.0, 0.5]
    assert pd.isna(frame["success_rate"].iloc[2])


def test_session_durations_event_logs_follow_the_tracer_rule(
    analyse: Callable[..., Analysis],
) -> None:
    a = analyse(
        event_logs=[
            # 1: last event completed.
            log(1, 0, "sent", "request"),
            log(1, 1.2345, "completed"),
            # 2: last event failed.
            log(2, 0, "sent", "request"),
            log(2, 2, "failed"),
            # 3: failed, then processing: failed.
            log(3, 0, "failed"),
            log(3, 1, "processing"),
            # 4: processing only: in progress.
            log(4, 0, "processing"),
            # 5: a status the tracer does not know last: unknown.
            log(5, 0, "sent", "request"),
            log(5, 1, "queued"),
            # 6: error counts as failure.
            log(6, 0, "error"),
        ]
    )
    frame = session_durations(a, "event_logs")
    assert frame["final_status"].tolist() == [
        "completed",
        "failed",
        "failed",
        "in_progress",
        "unknown",
        "failed",
    ]
    # The tracer truncates to whole milliseconds; ours keeps microseconds.
    assert frame["tracer_duration_ms"].tolist() == [1234, 2000, 1000, 0, 1000, 0]
    assert frame["duration_ms"].iloc[0] == pytest.approx(1234.5)


def test_session_durations_tie_at_last_time_takes_failure_first(
    analyse: Callable[..., Analysis],
) -> None:
    # Completed and failed share the last timestamp: failed, whatever the row order.
    a = analyse(
        event_logs=[
            log(1, 0, "sent", "request"),
            log(1, 5, "completed"),
            log(1, 5, "failed"),
            log(2, 0, "sent", "request"),
            log(2, 5, "processing"),
            log(2, 5, "completed"),
        ]
    )
    frame = session_durations(a, "event_logs")
    assert frame["final_status"].tolist() == ["failed", "completed"]


def test_session_durations_merge_ids_written_differently(
    analyse: Callable[..., Analysis],
) -> None:
    # One session under three spellings of its id; the tie at the last time falls
    # between two of them. An empty id is no session.
    a = analyse(
        [
            dict(topic=REQ, session_id=uid(5), event_timestamp=at(0)),
            dict(
                topic=STATUS,
                session_id=uid(5).upper(),
                status="completed",
                event_timestamp=at(2),
            ),
            dict(
                topic=STATUS,
                session_id=f"  {uid(5)}\t",
                status="failed",
                event_timestamp=at(2),
            ),
            dict(topic=STATUS, session_id="", status="failed", event_timestamp=at(9)),
        ]
    )
    frame = session_durations(a)
    assert frame["session_id"].tolist() == [uid(5)]
    assert frame["events"].tolist() == [3]
    assert frame["duration_ms"].tolist() == [2000.0]
    assert frame["final_status"].tolist() == ["failed"]
    assert frame["successful_events"].tolist() == [2]
    assert frame["failed_events"].tolist() == [1]
    assert frame["first_event"].tolist() == [at(0)]
    assert frame["last_event"].tolist() == [at(2)]


@pytest.fixture(params=[1000, 1], ids=["looked-up", "normalised"])
def spellings(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Statuses looked up by their spellings, or (one spelling allowed) each
    normalised."""
    monkeypatch.setattr(_events, "_STATUS_SPELLINGS", request.param)


@pytest.mark.usefixtures("spellings")
def test_session_durations_read_statuses_in_any_case_and_blanks(
    analyse: Callable[..., Analysis],
) -> None:
    statuses = [" COMPLETED\n", "Failed", "\terror ", "Generating", "complete"]
    a = analyse(
        [
            dict(
                topic=STATUS,
                session_id=uid(i),
                status=status,
                event_timestamp=at(i),
            )
            for i, status in enumerate(statuses, start=1)
        ]
    )
    frame = session_durations(a)
    assert frame["final_status"].tolist() == [
        "completed",
        "failed",
        "failed",
        "in_progress",
        "in_progress",
    ]
    assert frame["successful_events"].tolist() == [1, 0, 0, 0, 0]
    assert frame["failed_events"].tolist() == [0, 1, 1, 0, 0]


@pytest.mark.usefixtures("spellings")
def test_session_durations_event_logs_read_any_spelling(
    analyse: Callable[..., Analysis],
) -> None:
    rows = [
        log(1, 0, " SENT", " Request\t"),
        log(1, 1, "Completed\n"),
        log(2, 0, "sent", "REQUEST"),
        log(2, 3, " FAILED "),
        log(3, 0, "Processing"),
        log(3, 2, "odd"),
    ]
    frame = session_durations(analyse(event_logs=rows), "event_logs")
    assert frame["final_status"].tolist() == ["completed", "failed", "unknown"]
    assert frame["successful_events"].tolist() == [2, 1, 0]
    assert frame["failed_events"].tolist() == [0, 1, 0]
    assert frame["pending_events"].tolist() == [0, 0, 2]


def test_session_durations_before_1970_and_unknown_last_status(
    analyse: Callable[..., Analysis],
) -> None:
    # Times before the epoch rank like any other; a last status outside the
    # tracer's vocabulary is unknown, even after a failure.
    early = datetime(1969, 12, 31, 23, 59, 58, 250_000, tzinfo=UTC)
    a = analyse(
        event_logs=[
            dict(log(1, 0, "failed"), timestamp=early),
            dict(log(1, 0, "completed"), timestamp=early + timedelta(seconds=1)),
            log(2, 0, "failed"),
            log(2, 3, "paused"),
        ]
    )
    frame = session_durations(a, "event_logs")
    assert frame["final_status"].tolist() == ["completed", "unknown"]
    assert frame["last_event"].tolist() == [
        pd.Timestamp(early + timedelta(seconds=1)),
        pd.Timestamp(at(3)),
    ]
    assert frame["duration_ms"].tolist() == [1000.0, 3000.0]


def test_session_summary_exact(topic_sessions: Analysis) -> None:
    frame = session_summary(topic_sessions)
    topics = frame.set_index("source").loc["topics"]
    assert topics["sessions"] == 3
    assert topics["events"] == 7
    assert (topics["completed"], topics["failed"], topics["in_progress"]) == (1, 1, 1)
    assert topics["never_finished"] == 1
    # Durations 0, 3500, 4000 ms; linear interpolation between closest ranks.
    assert topics["duration_p50_ms"] == 3500.0
    assert topics["duration_p95_ms"] == pytest.approx(3500 + 0.9 * 500)
    assert topics["duration_p99_ms"] == pytest.approx(3500 + 0.98 * 500)
    assert topics["duration_mean_ms"] == pytest.approx(7500 / 3)
    # 4 successes of 7 events (tracer); 4 of 5 decided (ours); 1 of 2 finished sessions.
    assert topics["tracer_success_rate"] == pytest.approx(4 / 7)
    assert topics["success_rate"] == pytest.approx(4 / 5)
    assert topics["session_success_rate"] == 0.5


def test_session_summary_empty_snapshot(analyse: Callable[..., Analysis]) -> None:
    frame = session_summary(analyse())
    assert frame["source"].tolist() == ["topics", "event_logs"]
    assert frame["sessions"].tolist() == [0, 0]
    assert frame["events"].tolist() == [0, 0]
    assert frame["duration_p95_ms"].isna().all()
    assert frame["success_rate"].isna().all()


def test_session_summary_ties_in_durations(analyse: Callable[..., Analysis]) -> None:
    a = analyse(
        event_logs=[log(s, 0, "sent", "request") for s in range(4)]
        + [log(s, 2, "completed") for s in range(4)]
    )
    row = session_summary(a).set_index("source").loc["event_logs"]
    assert row["duration_p50_ms"] == 2000.0
    assert row["duration_p99_ms"] == 2000.0


def test_unfinished_sessions_lists_the_latest_first(topic_sessions: Analysis) -> None:
    frame = unfinished_sessions(topic_sessions)
    assert frame["session_id"].tolist() == [uid(3)]
    assert frame["final_status"].tolist() == ["in_progress"]


def test_session_duration_quantiles_exact(topic_sessions: Analysis) -> None:
    frame = session_duration_quantiles(topic_sessions, steps=4)
    assert frame["quantile"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert frame["duration_ms"].tolist() == [0.0, 1750.0, 3500.0, 3750.0, 4000.0]


def test_session_duration_quantiles_empty(analyse: Callable[..., Analysis]) -> None:
    assert session_duration_quantiles(analyse()).empty


def test_session_durations_unknown_source_is_refused(topic_sessions: Analysis) -> None:
    with pytest.raises(InputError, match="source='kafka' is not known"):
        session_durations(topic_sessions, "kafka")  # type: ignore[arg-type]
