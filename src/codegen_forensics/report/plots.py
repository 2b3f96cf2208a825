"""Figures for the reports, each from one analysis result table.

Every function returns a :class:`matplotlib.figure.Figure` with a title, labelled
axes and units, or a figure saying there was nothing to plot, so a notebook cell
always shows something a reviewer can read.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import matplotlib.dates as mdates
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = [
    "dlq_rate_figure",
    "dlq_volume_figure",
    "latency_figure",
    "session_duration_figure",
    "session_timeline_figure",
    "short_topic",
    "throughput_figure",
]

BANDS_MS: Sequence[tuple[float, str, str]] = (
    (1_000, "low (1 s)", "#d9a400"),
    (2_000, "medium (2 s)", "#e07000"),
    (5_000, "high (5 s)", "#c00000"),
)


def short_topic(topic: object) -> str:
    """``omninode_codegen_request_analyze_v1`` -> ``request_analyze_v1``."""
    if not isinstance(topic, str) or not topic:
        return "(unknown)"
    for marker in ("omninode_codegen_", "omninode-bridge.codegen."):
        if marker in topic:
            return topic.split(marker, 1)[1]
    return topic


def _figure(width: float = 10, height: float = 4) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    return fig, ax


def _empty(title: str, reason: str) -> Figure:
    fig, ax = _figure(10, 1.6)
    ax.set_axis_off()
    ax.set_title(title, loc="left")
    ax.text(0.0, 0.4, reason, fontsize=11)
    return fig


def _daily_axis(ax: Axes) -> None:
    ax.xaxis.set_major_locator(mdates.DayLocator())
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%a %d %b"))


def dlq_volume_figure(breakdown: pd.DataFrame) -> Figure:
    """Dead letters per day, stacked by source topic (from ``dlq_breakdown``)."""
    title = "Dead letters per day, by source topic"
    if breakdown.empty:
        return _empty(title, "No dead letters in this snapshot.")
    frame = breakdown.assign(source=breakdown["source_topic"].map(short_topic))
    pivot = frame.pivot_table(
        index="day", columns="source", values="messages", aggfunc="sum", fill_value=0
    ).sort_index()
    fig, ax = _figure()
    bottom = np.zeros(len(pivot))
    days = pd.to_datetime(pivot.index)
    for column in pivot.columns:
        values = pivot[column].to_numpy()
        ax.bar(days, values, bottom=bottom, width=0.8, label=column)
        bottom += values
    ax.set_title(title, loc="left")
    ax.set_ylabel("dead letters")
    ax.set_xlabel("day (UTC)")
    _daily_axis(ax)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def dlq_rate_figure(rate_by_day: pd.DataFrame, target: float = 0.01) -> Figure:
    """DLQ rate per source topic and day, with the target line (from ``dlq_rate``)."""
    title = "DLQ rate per day: dead letters / messages on the source topic"
    frame = rate_by_day.dropna(subset=["dlq_rate", "window_start"])
    with_dead_letters = frame.groupby("source_topic")["dlq_messages"].transform("sum")
    frame = frame[with_dead_letters > 0]
    if frame.empty:
        return _empty(title, "No dead letters in this snapshot.")
    fig, ax = _figure()
    for topic, part in frame.groupby("source_topic", sort=True):
        part = part.sort_values("window_start")
        ax.plot(
            pd.to_datetime(part["window_start"]),
            part["dlq_rate"] * 100,
            marker="o",
            label=short_topic(str(topic)),
        )
    ax.axhline(
        target * 100,
        color="#c00000",
        linestyle="--",
        label=f"target {target * 100:g} %",
    )
    ax.set_title(title, loc="left")
    ax.set_ylabel("DLQ rate (%)")
    ax.set_xlabel("day (UTC)")
    ax.set_ylim(bottom=0)
    _daily_axis(ax)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def latency_figure(hours: pd.DataFrame, value: str = "p95_ms") -> Figure:
    """Hourly response time per topic with the tracer's bands (``bottleneck_hours``)."""
    label = {"p95_ms": "p95", "mean_ms": "mean"}.get(value, value)
    title = f"Response time per hour ({label} of processing_time_ms), by topic"
    frame = hours.dropna(subset=[value])
    if frame.empty:
        return _empty(title, "No responses with a processing time in this snapshot.")
    fig, ax = _figure(10, 4.5)
    for topic, part in frame.groupby("topic", sort=True):
        part = part.sort_values("hour")
        ax.plot(
            pd.to_datetime(part["hour"]),
            part[value] / 1000,
            label=short_topic(str(topic)),
            linewidth=1,
        )
    for limit, name, colour in BANDS_MS:
        ax.axhline(limit / 1000, color=colour, linestyle=":", linewidth=1, label=name)
    ax.set_title(title, loc="left")
    ax.set_ylabel("seconds")
    ax.set_xlabel("hour (UTC)")
    ax.set_ylim(bottom=0)
    _daily_axis(ax)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def session_duration_figure(durations: pd.DataFrame) -> Figure:
    """Distribution of session durations (``session_durations``), log scale."""
    title = "Session durations (first to last event)"
    raw = durations["duration_ms"] if len(durations) else pd.Series(dtype=float)
    values = pd.to_numeric(raw, errors="coerce").astype("float64").dropna() / 1000
    values = values[values > 0]
    if values.empty:
        return _empty(title, "No session with more than one event in this snapshot.")
    fig, ax = _figure(10, 3.5)
    bins = np.geomspace(values.min(), values.max() * 1.000001, 40)
    ax.hist(values, bins=list(bins), color="#1f77b4")
    ax.set_xscale("log")
    for q, style in ((0.5, "-"), (0.95, "--"), (0.99, ":")):
        v = float(np.quantile(values, q))
        ax.axvline(
            v,
            color="black",
            linestyle=style,
            linewidth=1,
            label=f"p{int(q * 100)} {v:,.1f} s",
        )
    ax.set_title(title, loc="left")
    ax.set_xlabel("duration (seconds, log scale)")
    ax.set_ylabel("sessions")
    ax.legend(fontsize=8)
    return fig


def throughput_figure(series: pd.DataFrame) -> Figure:
    """Messages per hour per topic (``throughput_series_hour``)."""
    title = "Messages per hour, by topic"
    if series.empty:
        return _empty(title, "No messages in this snapshot.")
    fig, ax = _figure(10, 3.5)
    # More topics than the default cycle has colours: twenty keeps each line its own.
    colours = matplotlib.colormaps["tab20"]
    for i, (topic, part) in enumerate(series.groupby("topic", sort=True)):
        part = part.sort_values("window_start")
        ax.plot(
            pd.to_datetime(part["window_start"]),
            part["messages"],
            linewidth=1,
            color=colours(i % colours.N),
            label=short_topic(str(topic)),
        )
    ax.set_title(title, loc="left")
    # The status topic carries most messages; a log scale keeps the quiet ones visible.
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_ylabel("messages per hour (log scale)")
    ax.set_xlabel("hour (UTC)")
    _daily_axis(ax)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def session_timeline_figure(trace: pd.DataFrame, title: str) -> Figure:
    """Every event of a trace on one time axis, one row per topic or table.

    Failures are red crosses, dead letters black squares, other events dots.
    """
    if trace.empty:
        return _empty(title, "No events found.")
    frame = trace.copy()
    frame["lane"] = np.where(
        frame["source"] == "event_logs",
        "event_logs: " + frame["topic"].map(short_topic),
        frame["topic"].map(short_topic),
    )
    lanes = list(dict.fromkeys(frame.sort_values("time")["lane"]))
    position = {lane: i for i, lane in enumerate(lanes)}
    frame["y"] = frame["lane"].map(position)
    fig, ax = _figure(11, max(2.5, 0.35 * len(lanes) + 1.5))
    kinds = (
        ("events", ~frame["is_failure"] & ~frame["is_dlq"], "o", "#1f77b4"),
        ("failures", frame["is_failure"] & ~frame["is_dlq"], "x", "#c00000"),
        ("dead letters", frame["is_dlq"], "s", "black"),
    )
    for name, mask, marker, colour in kinds:
        part = frame[mask.fillna(False).astype(bool)]
        if len(part):
            ax.scatter(
                pd.to_datetime(part["time"]),
                part["y"],
                marker=marker,
                color=colour,
                label=name,
                zorder=3,
            )
    ax.set_yticks(range(len(lanes)), lanes, fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title, loc="left")
    ax.set_xlabel("time (UTC)")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig
