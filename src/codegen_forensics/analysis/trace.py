"""Traces: every event of a session or a correlation id, across topics and tables.

:func:`trace` lists the events of both sources in time order (ties: topics before
``event_logs``, then topic, partition, offset, event id), with the gap since the
previous event, failures and dead letters marked. A correlation-id trace also brings
in the status events of the same sessions that carry no correlation id (status events
never do) and fall between the first and last correlated event; the tracer's
``find_correlated_events`` misses those, so ``in_tracer`` says which rows the tracer
would have returned.

The ``tracer_*`` functions reproduce the tracer's own answers from ``event_logs``, for
comparing figures with it:

- :func:`tracer_session_trace`: ``trace_session_events`` (total_events,
  session_duration_ms truncated to whole ms, status by the last event's rule);
- :func:`tracer_session_metrics`: ``get_session_metrics`` (success rate over all
  events; response times from every row's ``processing_time_ms``; percentiles by
  linear interpolation, truncated to whole ms);
- :func:`tracer_correlated_events`: ``find_correlated_events`` (rows with that exact
  correlation id, by time).

Where several events share the last timestamp the tracer's status depends on the
order the database returns them in; ours takes failed over completed over in
progress (see :mod:`~codegen_forensics.analysis.sessions`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from codegen_forensics.analysis._events import (
    FAILURE_STATUSES,
    PROGRESS_STATUSES,
    SUCCESS_STATUSES,
    events,
)
from codegen_forensics.analysis.context import SOURCES, Analysis, normalise_id
from codegen_forensics.analysis.latency import severity
from codegen_forensics.errors import InputError

__all__ = [
    "trace",
    "tracer_correlated_events",
    "tracer_percentile",
    "tracer_session_metrics",
    "tracer_session_status",
    "tracer_session_trace",
]

logger = logging.getLogger(__name__)

_ORDER = ["time", "_source_order", "topic", "partition", "offset", "event_id"]


def _clean_id(value: str | uuid.UUID, name: str) -> str:
    text = str(value).strip().lower()
    if not text:
        raise InputError(f"{name} is empty; pass a UUID such as {uuid.UUID(int=0)}")
    return text


def trace(
    a: Analysis,
    *,
    session_id: str | uuid.UUID | None = None,
    correlation_id: str | uuid.UUID | None = None,
    gap_ms: float = 60_000.0,
) -> pd.DataFrame:
    """Every event of one session or one correlation id, in time order.

    Give exactly one of ``session_id`` and ``correlation_id``. Columns: the event
    view's (source, topic, partition, offset, event_id, category, operation,
    event_name, session_id, correlation_id, time, status, raw_status,
    processing_time_ms, is_dlq, decode_status, decode_message, dlq_source_topic,
    dlq_error_type, dlq_error_message, dlq_retry_count), then matched_by
    (session_id, correlation_id, or session_status for the status events a
    correlation trace adds), is_failure (status failed or error, dead letters
    included), gap_ms (since the previous event), is_gap (gap above ``gap_ms``) and
    in_tracer.
    """
    if (session_id is None) == (correlation_id is None):
        raise InputError(
            "trace needs exactly one of session_id and correlation_id; "
            f"got session_id={session_id!r}, correlation_id={correlation_id!r}"
        )
    parts = []
    if session_id is not None:
        sid = _clean_id(session_id, "session_id")
        for source in SOURCES:
            ev = events(a, source)
            frame = a.execute(ev.filter(ev.session_id == sid))
            frame["matched_by"] = "session_id"
            parts.append(frame)
    else:
        cid = _clean_id(correlation_id, "correlation_id")  # type: ignore[arg-type]
        found = []
        for source in SOURCES:
            ev = events(a, source)
            frame = a.execute(ev.filter(ev.correlation_id == cid))
            frame["matched_by"] = "correlation_id"
            found.append(frame)
        matched = pd.concat(found, ignore_index=True)
        parts.extend(found)
        sessions = sorted(matched["session_id"].dropna().unique().tolist())
        times = matched["time"].dropna()
        if sessions and len(times):
            first, last = times.min().to_pydatetime(), times.max().to_pydatetime()
            for source in SOURCES:
                ev = events(a, source)
                extra = ev.filter(
                    (ev.category == "status")
                    & ev.correlation_id.isnull()
                    & ev.session_id.isin(sessions)
                    & (ev.time >= first)
                    & (ev.time <= last)
                )
                frame = a.execute(extra)
                frame["matched_by"] = "session_status"
                parts.append(frame)

    out = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
    out["_source_order"] = out["source"].map({"topics": 0, "event_logs": 1})
    out = out.sort_values(_ORDER, kind="stable", na_position="last").reset_index(
        drop=True
    )
    out = out.drop(columns=["_source_order"])
    out["is_failure"] = out["status"].isin(FAILURE_STATUSES) | out["is_dlq"].astype(
        bool
    )
    gaps = out["time"].diff().dt.total_seconds() * 1000.0
    out["gap_ms"] = gaps.astype("float64")
    out["is_gap"] = (out["gap_ms"] > gap_ms).astype(bool)
    if session_id is not None:
        out["in_tracer"] = out["source"] == "event_logs"
    else:
        out["in_tracer"] = (out["source"] == "event_logs") & (
            out["matched_by"] == "correlation_id"
        )
    return out


def tracer_session_status(statuses: Sequence[str | None], times: Sequence[Any]) -> str:
    """The tracer's session status for events given with their times.

    The last event decides: failed or error means failed, completed means completed,
    processing, sent or received means in_progress unless some event failed, any
    other status unknown; no events, unknown. Ties at the last time: failed over
    completed over in progress.
    """
    if not len(statuses):
        return "unknown"
    frame = pd.DataFrame({"status": list(statuses), "time": list(times)})
    frame = frame[frame["time"].notna()]
    if frame.empty:
        return "unknown"
    last = set(frame.loc[frame["time"] == frame["time"].max(), "status"])
    any_failed = frame["status"].isin(FAILURE_STATUSES).any()
    if last & set(FAILURE_STATUSES):
        return "failed"
    if "completed" in last:
        return "completed"
    if last & set(PROGRESS_STATUSES):
        return "failed" if any_failed else "in_progress"
    return "unknown"


def tracer_percentile(values: Iterable[float], p: float) -> int:
    """The tracer's percentile: linear between closest ranks, truncated to an int."""
    data = sorted(values)
    if not data:
        return 0
    k = (len(data) - 1) * p
    low = int(k)
    if low + 1 >= len(data):
        return int(data[-1])
    return int(data[low] + (data[low + 1] - data[low]) * (k - low))


def _session_rows(a: Analysis, session_id: str | uuid.UUID) -> pd.DataFrame:
    sid = _clean_id(session_id, "session_id")
    e = a.event_logs
    frame = a.execute(e.filter(normalise_id(e.session_id) == sid))
    frame["status"] = frame["status"].str.strip().str.lower()
    frame = frame.sort_values(["timestamp", "event_id"], kind="stable")
    return frame.reset_index(drop=True)


def tracer_session_trace(
    a: Analysis,
    session_id: str | uuid.UUID,
    *,
    time_range_hours: float | None = None,
    now: datetime | None = None,
) -> pd.DataFrame:
    """What the tracer's ``trace_session_events`` reports, as one row.

    Columns: session_id, total_events, session_duration_ms, status, start_time,
    end_time. The tracer looks back ``time_range_hours`` from now; here ``now``
    defaults to the snapshot's time, and no range means every event.
    """
    rows = _session_rows(a, session_id)
    if time_range_hours is not None:
        reference = now or a.snapshot_time
        if reference is None:
            raise InputError(
                "time_range_hours needs now=...: "
                "the snapshot's manifest records no time"
            )
        rows = rows[rows["timestamp"] >= reference - timedelta(hours=time_range_hours)]
    if rows.empty:
        duration, start, end = 0, None, None
    else:
        start, end = rows["timestamp"].min(), rows["timestamp"].max()
        duration = int((end - start) / pd.Timedelta(milliseconds=1))
    return pd.DataFrame(
        [
            {
                "session_id": _clean_id(session_id, "session_id"),
                "total_events": len(rows),
                "session_duration_ms": duration,
                "status": tracer_session_status(
                    rows["status"].tolist(), rows["timestamp"].tolist()
                ),
                "start_time": start,
                "end_time": end,
            }
        ]
    )


def tracer_session_metrics(a: Analysis, session_id: str | uuid.UUID) -> pd.DataFrame:
    """What the tracer's ``get_session_metrics`` reports, as one row.

    Columns: session_id, total_events, successful_events, failed_events,
    success_rate, avg_response_time_ms, min_response_time_ms, max_response_time_ms,
    p50_response_time_ms, p95_response_time_ms, p99_response_time_ms,
    total_processing_time_ms, duration_ms, event_type_breakdown, topic_breakdown,
    bottlenecks (dicts of topic, avg_response_time_ms, count, severity; worst
    first). A session with no event gives zeros, as the tracer does.
    """
    rows = _session_rows(a, session_id)
    total = len(rows)
    successful = int(rows["status"].isin(SUCCESS_STATUSES).sum())
    failed = int(rows["status"].isin(FAILURE_STATUSES).sum())
    times = rows.loc[
        rows["processing_time_ms"].notna(), ["topic", "processing_time_ms"]
    ]
    values = [int(v) for v in times["processing_time_ms"]]
    bottlenecks: list[dict[str, Any]] = []
    for topic, part in times.groupby("topic", sort=True):
        mean = float(np.mean(part["processing_time_ms"].astype("float64")))
        band = severity(mean)
        if band:
            bottlenecks.append(
                {
                    "topic": topic,
                    "avg_response_time_ms": mean,
                    "count": len(part),
                    "severity": band,
                }
            )
    rank = {"high": 0, "medium": 1, "low": 2}
    bottlenecks.sort(key=lambda b: (rank[b["severity"]], -b["avg_response_time_ms"]))
    if total:
        start, end = rows["timestamp"].min(), rows["timestamp"].max()
        duration = int((end - start) / pd.Timedelta(milliseconds=1))
    else:
        duration = 0
    return pd.DataFrame(
        [
            {
                "session_id": _clean_id(session_id, "session_id"),
                "total_events": total,
                "successful_events": successful,
                "failed_events": failed,
                "success_rate": successful / total if total else 0.0,
                "avg_response_time_ms": float(np.mean(values)) if values else 0.0,
                "min_response_time_ms": min(values) if values else 0,
                "max_response_time_ms": max(values) if values else 0,
                "p50_response_time_ms": tracer_percentile(values, 0.50),
                "p95_response_time_ms": tracer_percentile(values, 0.95),
                "p99_response_time_ms": tracer_percentile(values, 0.99),
                "total_processing_time_ms": sum(values),
                "duration_ms": duration,
                "event_type_breakdown": rows["event_type"]
                .value_counts()
                .sort_index()
                .to_dict(),
                "topic_breakdown": rows["topic"].value_counts().sort_index().to_dict(),
                "bottlenecks": bottlenecks,
            }
        ]
    )


def tracer_correlated_events(
    a: Analysis, correlation_id: str | uuid.UUID
) -> pd.DataFrame:
    """What the tracer's ``find_correlated_events`` returns: ``event_logs`` rows.

    Rows whose correlation id equals the given one (compared lowercase), by time,
    with the table's columns. Status events, which carry no correlation id, are not
    among them; :func:`trace` adds them.
    """
    cid = _clean_id(correlation_id, "correlation_id")
    e = a.event_logs
    frame = a.execute(e.filter(normalise_id(e.correlation_id) == cid))
    return frame.sort_values(["timestamp", "event_id"], kind="stable").reset_index(
        drop=True
    )
