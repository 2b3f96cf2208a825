"""What the ``simulate`` command shows: a progress bar and a summary of the truth."""

from __future__ import annotations

import time
from collections import Counter
from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from codegen_forensics.simulate.traffic import Progress as TrafficProgress
from codegen_forensics.simulate.truth import GroundTruth

__all__ = ["SimulationProgress", "summary_tables"]


class _RateColumn(ProgressColumn):
    """Messages per second so far."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        messages = int(task.fields.get("messages", 0))
        rate = messages / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:,.0f} msg/s", style="progress.data.speed")


class SimulationProgress:
    """A live bar of sessions generated, with message and row counts and the rate.

    Quiet when the console is not a terminal; use it as a context manager and pass
    it as the ``progress`` callback.
    """

    def __init__(self, console: Console, sessions: int) -> None:
        self._progress = Progress(
            TextColumn("[bold]simulating"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("sessions, {task.fields[messages]:,} messages, "),
            TextColumn("{task.fields[rows]:,} rows"),
            _RateColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not console.is_terminal,
            transient=False,
        )
        self._task = self._progress.add_task(
            "simulate", total=sessions, messages=0, rows=0
        )
        self.started = time.monotonic()
        self.elapsed = 0.0

    def __call__(self, update: TrafficProgress) -> None:
        self._progress.update(
            self._task,
            completed=update.sessions,
            messages=update.messages,
            rows=update.rows,
        )

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.elapsed = time.monotonic() - self.started
        self._progress.stop()


def summary_tables(truth: GroundTruth, elapsed: float) -> list[Table]:
    """Overview, messages per topic, dead letters and poison, as rich tables."""
    messages = sum(truth.messages_per_topic.values())
    overview = Table(title="Simulation", show_header=False)
    overview.add_column("what")
    overview.add_column("value", justify="right")
    overview.add_row("seed", str(truth.seed))
    overview.add_row("window (UTC)", f"{truth.window_start} to {truth.window_end}")
    overview.add_row("sessions", f"{truth.sessions:,}")
    for outcome, count in truth.session_outcomes.items():
        overview.add_row(f"  {outcome}", f"{count:,}")
    overview.add_row("Kafka messages", f"{messages:,}")
    overview.add_row("event_logs rows", f"{truth.event_logs_rows:,}")
    if elapsed > 0:
        overview.add_row("elapsed", f"{elapsed:,.1f} s")
        overview.add_row("messages per second", f"{messages / elapsed:,.0f}")
        overview.add_row("rows per second", f"{truth.event_logs_rows / elapsed:,.0f}")
    if truth.bottleneck is not None:
        bottleneck = truth.bottleneck
        hours = ", ".join(f"{a[11:16]}-{b[11:16]}" for a, b in bottleneck.windows[:1])
        overview.add_row(
            "bottleneck",
            f"{bottleneck.operation} {hours} UTC on {len(bottleneck.windows)} days, "
            f"{bottleneck.affected_requests:,} requests",
        )

    poison = Counter(p.topic for p in truth.poison)
    duplicates = Counter(d.topic for d in truth.duplicates)
    topics = Table(title="Messages per topic")
    topics.add_column("topic", overflow="fold")
    for name in ("messages", "poison", "duplicates", "DLQ rate"):
        topics.add_column(name, justify="right")
    for topic, count in truth.messages_per_topic.items():
        rate = truth.dlq_rates.get(topic, {}).get("rate")
        topics.add_row(
            topic,
            f"{count:,}",
            f"{poison[topic]:,}" if poison[topic] else "-",
            f"{duplicates[topic]:,}" if duplicates[topic] else "-",
            f"{rate:.2%}" if rate is not None else "-",
        )

    tables = [overview, topics]
    if truth.dlq_messages:
        shapes = sorted(truth.dlq_by_shape)
        dlq = Table(title="Dead letters by error kind and shape")
        dlq.add_column("error kind")
        for shape in shapes:
            dlq.add_column(shape, justify="right")
        dlq.add_column("total", justify="right")
        for kind, per_shape in truth.dlq_by_kind_and_shape.items():
            dlq.add_row(
                kind,
                *(f"{per_shape.get(s, 0):,}" for s in shapes),
                f"{truth.dlq_by_kind[kind]:,}",
            )
        tables.append(dlq)
    if truth.poison:
        table = Table(title="Poison messages on request topics")
        table.add_column("kind")
        table.add_column("decodes as")
        table.add_column("messages", justify="right")
        statuses = {p.kind: p.expected_decode_status for p in truth.poison}
        for kind, count in truth.poison_by_kind.items():
            table.add_row(kind, statuses[kind], f"{count:,}")
        tables.append(table)
    return tables
