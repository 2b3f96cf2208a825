"""Progress and summaries of snapshot runs for a terminal (rich)."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from codegen_forensics.load.kafka import ProgressEvent
from codegen_forensics.snapshot import Snapshot

__all__ = ["SnapshotProgress", "summary_tables"]


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


class SnapshotProgress:
    """A live display of messages, bytes and rate per topic; silent off a terminal.

    Use as a context manager and pass the instance as the snapshot's ``progress``.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[bytes]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self.console.is_terminal,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._bytes: dict[str, int] = {}

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def __call__(self, event: ProgressEvent) -> None:
        if event.topic is None:
            return
        if event.kind == "plan":
            self._bytes[event.topic] = event.value_bytes
            self._tasks[event.topic] = self._progress.add_task(
                event.topic,
                total=max(event.expected_rows, event.rows),
                completed=event.rows,
                bytes=_size(event.value_bytes),
                rate="",
            )
            return
        task = self._tasks.get(event.topic)
        if task is None:
            return
        if event.kind == "chunk":
            self._bytes[event.topic] += event.value_bytes
            self._progress.advance(task, event.rows)
            elapsed = self._progress.tasks[task].elapsed or 0.0
            done = self._progress.tasks[task].completed
            rate = f"{done / elapsed:,.0f} msg/s" if elapsed > 0 else ""
            self._progress.update(
                task, bytes=_size(self._bytes[event.topic]), rate=rate
            )


def summary_tables(snapshot: Snapshot) -> list[Table]:
    """Tables summarising a finished snapshot: topics, tables and findings."""
    manifest: Any = snapshot.manifest
    tables: list[Table] = []
    kafka = manifest.get("kafka")
    if kafka:
        table = Table(title=f"Kafka topics ({kafka['rows']:,} messages)")
        for column in ("topic", "partitions", "messages", "value bytes", "not ok"):
            table.add_column(column, justify="left" if column == "topic" else "right")
        for name, topic in kafka["topics"].items():
            statuses = topic["decode_status"]
            other = ", ".join(
                f"{status} {count:,}"
                for status, count in statuses.items()
                if status not in ("ok", "dlq")
            )
            table.add_row(
                name,
                str(topic["partitions"]),
                f"{topic['rows']:,}",
                _size(topic["value_bytes"]),
                other or "-",
            )
        tables.append(table)
    postgres = manifest.get("postgres")
    if postgres:
        table = Table(title=f"Postgres tables ({postgres['rows']:,} rows)")
        for column in ("table", "rows", "variant", "time range"):
            table.add_column(column)
        for name, info in postgres["tables"].items():
            span = info["time_range"]
            table.add_row(
                name,
                f"{info['rows']:,}" if info["exists"] else "missing",
                info["variant"] or "-",
                f"{span['min']} .. {span['max']}" if span["min"] else "-",
            )
        tables.append(table)
    findings = [
        *(kafka or {}).get("findings", []),
        *(postgres or {}).get("findings", []),
    ]
    if findings:
        table = Table(title="Findings")
        table.add_column("finding")
        for finding in findings:
            table.add_row(finding)
        tables.append(table)
    return tables
