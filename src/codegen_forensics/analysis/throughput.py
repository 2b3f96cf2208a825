"""Throughput: messages per topic per minute and per hour, average and peak.

A message is placed by its Kafka timestamp (when it was produced or appended), or
by its event time where the broker gave none. The average is taken over every
window from the topic's first message to its last, empty windows included, so a
topic busy for one minute of an hour does not look busy all hour.
"""

from __future__ import annotations

import logging

import ibis
import pandas as pd

from codegen_forensics.analysis._util import bucket, check_window, sort_frame
from codegen_forensics.analysis.context import Analysis

__all__ = ["throughput", "throughput_series"]

logger = logging.getLogger(__name__)

_SECONDS = {"minute": 60, "hour": 3600}


def throughput_series(a: Analysis, window: str = "minute") -> pd.DataFrame:
    """Messages per topic and window (minute or hour); windows with none are absent.

    Columns: topic, window_start, messages.
    """
    unit = check_window(window, tuple(_SECONDS))
    m = a.messages
    time = ibis.coalesce(m.timestamp, m.event_time)
    t = m.filter(time.notnull()).mutate(window_start=bucket(a, time, unit))
    frame = a.execute(
        t.group_by(["topic", "window_start"]).aggregate(messages=t.count())
    )
    return sort_frame(frame, ["topic", "window_start"])


def throughput(
    a: Analysis, window: str = "minute", *, series: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Average and peak messages per window (minute or hour), per topic.

    Columns: topic, messages, first_window, last_window, windows (from first to last,
    empty ones included), active_windows, mean_per_window, peak_per_window,
    peak_window (the first window that reached the peak), mean_per_second,
    peak_per_second. ``series`` may pass a :func:`throughput_series` result already
    computed for the same window.
    """
    check_window(window, tuple(_SECONDS))
    counts = series if series is not None else throughput_series(a, window)
    step = pd.Timedelta(seconds=_SECONDS[window])
    rows = []
    for topic, part in counts.groupby("topic", sort=True):
        first = part["window_start"].min()
        last = part["window_start"].max()
        windows = int((last - first) / step) + 1
        total = int(part["messages"].sum())
        peak = int(part["messages"].max())
        peak_at = part.loc[part["messages"] == peak, "window_start"].min()
        rows.append(
            {
                "topic": topic,
                "messages": total,
                "first_window": first,
                "last_window": last,
                "windows": windows,
                "active_windows": len(part),
                "mean_per_window": total / windows,
                "peak_per_window": peak,
                "peak_window": peak_at,
                "mean_per_second": total / (windows * step.total_seconds()),
                "peak_per_second": peak / step.total_seconds(),
            }
        )
    columns = [
        "topic",
        "messages",
        "first_window",
        "last_window",
        "windows",
        "active_windows",
        "mean_per_window",
        "peak_per_window",
        "peak_window",
        "mean_per_second",
        "peak_per_second",
    ]
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    return sort_frame(pd.DataFrame(rows, columns=columns), ["topic"])
