"""Sessions: how long they took, how they ended, and how often their events succeeded.

A session is every event carrying one ``session_id`` (ids compared lowercase), from
the Kafka topics (dead letters included, as failures) or from ``event_logs``.

Definitions, the tracer's where it has one:

- **Duration**: last event time minus first event time (tracer). ``duration_ms`` keeps
  microseconds; ``tracer_duration_ms`` truncates to whole milliseconds as the tracer
  does. A single event lasts 0 ms.
- **Final status** (tracer): from the last event: failed or error means ``failed``,
  completed means ``completed``; processing, sent or received means ``in_progress``
  unless an earlier event failed (then ``failed``); anything else ``unknown``.
  *Ours, where the tracer is silent*: when several events share the last timestamp
  the tracer takes whichever the database returns last; we take failed over
  completed over in progress, so the answer does not depend on row order.
- **Success rate** (tracer): events with status sent, received or completed over all
  events, so ``processing`` counts against it. *Ours*: the same successes over
  successes plus failures (failed, error); processing is pending, not failure, and a
  session with no decided event has no rate.
- **Never finished**: final status neither completed nor failed.
- **Percentiles**: linear interpolation between closest ranks.
"""

from __future__ import annotations

import logging

import ibis
import ibis.expr.types as ir
import pandas as pd

from codegen_forensics.analysis._events import (
    FAILURE_STATUSES,
    PROGRESS_STATUSES,
    SUCCESS_STATUSES,
    events,
)
from codegen_forensics.analysis._util import ratio, sort_frame
from codegen_forensics.analysis.context import (
    SOURCES,
    Analysis,
    Source,
    check_source,
    normalise_id,
)

__all__ = [
    "session_duration_quantiles",
    "session_durations",
    "session_summary",
    "session_table",
    "unfinished_sessions",
]

logger = logging.getLogger(__name__)


def session_table(a: Analysis, source: Source = "topics") -> ir.Table:
    """The per-session expression behind :func:`session_durations`.

    The rows are computed once per analysis and kept, so every session measure
    reads them rather than the snapshot's files.
    """
    source = check_source(source)
    kept = a.materialise(f"sessions:{source}", lambda: _session_rows(a, source))
    # Events without a session fall into one null group, kept but never shown: a
    # filter before grouping, or on the grouping's keys (which DuckDB pushes below
    # it), would normalise every id twice.
    return kept.filter(kept.session_id.notnull())


def _session_rows(a: Analysis, source: Source) -> ir.Table:
    # Grouped twice: by the ids as stored, then by the normalised ids of those
    # groups, which merges ids that differ only in case or blanks. Normalising the
    # ids of a million sessions costs much less than those of ten million events.
    ev = events(a, source, stored_ids=True)
    is_success = ev.status.isin(SUCCESS_STATUSES)
    is_failure = ev.status.isin(FAILURE_STATUSES)
    stored = ev.group_by(stored_id=ev.session_id).aggregate(
        events=ev.count(),
        successful_events=ev.count(where=is_success),
        failed_events=ev.count(where=is_failure),
        dlq_entries=ev.count(where=ev.is_dlq),
        first_event=ev.time.min(),
        last_event=ev.time.max(),
        _last_failed=ev.time.max(where=is_failure),
        _last_completed=ev.time.max(where=ev.status == "completed"),
        _last_progress=ev.time.max(where=ev.status.isin(PROGRESS_STATUSES)),
    )
    s = stored.mutate(session_id=normalise_id(stored.stored_id))
    g = s.group_by("session_id").aggregate(
        events=s.events.sum(),
        successful_events=s.successful_events.sum(),
        failed_events=s.failed_events.sum(),
        dlq_entries=s.dlq_entries.sum(),
        first_event=s.first_event.min(),
        last_event=s.last_event.max(),
        _last_failed=s._last_failed.max(),
        _last_completed=s._last_completed.max(),
        _last_progress=s._last_progress.max(),
    )
    duration_us = g.last_event.delta(g.first_event, unit="microsecond")
    final_status = ibis.cases(
        (g._last_failed == g.last_event, "failed"),
        (g._last_completed == g.last_event, "completed"),
        (
            g._last_progress == g.last_event,
            ibis.ifelse(g.failed_events > 0, "failed", "in_progress"),
        ),
        else_="unknown",
    )
    decided = g.successful_events + g.failed_events
    return g.select(
        "session_id",
        "events",
        "successful_events",
        "failed_events",
        pending_events=g.events - decided,
        dlq_entries=g.dlq_entries,
        first_event=g.first_event,
        last_event=g.last_event,
        duration_ms=duration_us.cast("float64") / 1000.0,
        tracer_duration_ms=(duration_us // 1000).cast("int64"),
        final_status=final_status,
        finished=final_status.isin(("completed", "failed")),
        tracer_success_rate=g.successful_events.cast("float64") / g.events,
        success_rate=ibis.ifelse(
            decided > 0, g.successful_events.cast("float64") / decided, ibis.null()
        ),
    )


def session_durations(a: Analysis, source: Source = "topics") -> pd.DataFrame:
    """One row per session: events, duration, final status and success rates.

    Columns: session_id, events, successful_events, failed_events, pending_events,
    dlq_entries, first_event, last_event, duration_ms, tracer_duration_ms,
    final_status, finished, tracer_success_rate, success_rate (see the module
    docstring for each definition). Sorted by first event, then session id.
    """
    table = session_table(a, check_source(source))
    return sort_frame(a.execute(table), ["first_event", "session_id"])


def unfinished_sessions(
    a: Analysis, source: Source = "topics", limit: int | None = None
) -> pd.DataFrame:
    """Sessions that never finished (final status in progress or unknown).

    Same columns as :func:`session_durations`; the most recently active first.
    """
    table = session_table(a, check_source(source)).filter(lambda t: ~t.finished)
    table = table.order_by([ibis.desc("last_event"), "session_id"])
    if limit is not None:
        table = table.limit(limit)
    return sort_frame(
        a.execute(table), ["last_event", "session_id"], ascending=[False, True]
    )


def session_summary(a: Analysis) -> pd.DataFrame:
    """Session figures per source: one row for the topics, one for ``event_logs``.

    Columns: source, sessions, events, completed, failed, in_progress, unknown,
    never_finished, duration_mean_ms, duration_p50_ms, duration_p95_ms,
    duration_p99_ms, duration_max_ms (linear interpolation), tracer_success_rate
    (successful events over all events, across every session), success_rate (ours:
    successful over successful plus failed events), session_success_rate (completed
    sessions over completed plus failed sessions). A source with no session has
    ``sessions`` 0 and nulls elsewhere.
    """
    frames = []
    for source in SOURCES:
        s = session_table(a, source)
        summary = s.aggregate(
            sessions=s.count(),
            events=s.events.sum(),
            completed=s.count(where=s.final_status == "completed"),
            failed=s.count(where=s.final_status == "failed"),
            in_progress=s.count(where=s.final_status == "in_progress"),
            unknown=s.count(where=s.final_status == "unknown"),
            duration_mean_ms=s.duration_ms.mean(),
            duration_p50_ms=s.duration_ms.quantile(0.50),
            duration_p95_ms=s.duration_ms.quantile(0.95),
            duration_p99_ms=s.duration_ms.quantile(0.99),
            duration_max_ms=s.duration_ms.max(),
            _successful=s.successful_events.sum(),
            _failed_events=s.failed_events.sum(),
        )
        frame = a.execute(summary)
        frame.insert(0, "source", source)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    for column in ("events", "_successful", "_failed_events"):
        out[column] = out[column].fillna(0).astype("int64")
    out["never_finished"] = out["in_progress"] + out["unknown"]
    out["tracer_success_rate"] = ratio(out["_successful"], out["events"])
    out["success_rate"] = ratio(
        out["_successful"], out["_successful"] + out["_failed_events"]
    )
    out["session_success_rate"] = ratio(
        out["completed"], out["completed"] + out["failed"]
    )
    columns = [
        "source",
        "sessions",
        "events",
        "completed",
        "failed",
        "in_progress",
        "unknown",
        "never_finished",
        "duration_mean_ms",
        "duration_p50_ms",
        "duration_p95_ms",
        "duration_p99_ms",
        "duration_max_ms",
        "tracer_success_rate",
        "success_rate",
        "session_success_rate",
    ]
    return out[columns]


def session_duration_quantiles(
    a: Analysis, source: Source = "topics", steps: int = 100
) -> pd.DataFrame:
    """The distribution of session durations as ``steps + 1`` quantiles, for plots.

    Columns: quantile (0 to 1), duration_ms (linear interpolation). Empty when the
    source has no session.
    """
    s = session_table(a, check_source(source))
    levels = [i / steps for i in range(steps + 1)]
    values = a.scalar(s.duration_ms.quantile(levels))
    if values is None or (isinstance(values, float) and pd.isna(values)):
        return pd.DataFrame(
            {
                "quantile": pd.Series(dtype="float64"),
                "duration_ms": pd.Series(dtype="float64"),
            }
        )
    return pd.DataFrame({"quantile": levels, "duration_ms": list(values)})
