"""Reports end to end: execute a notebook headless and export what people read.

:func:`weekly_report` and :func:`session_report` check their inputs, run the
notebook on a fresh kernel with papermill, and write into one directory: the HTML
report (self-contained, code hidden), the executed notebook, ``report.json`` (the
parameters, the snapshot manifest's checksum, library versions and the headline
figures) and, for the weekly review, the key tables as CSV and Parquet and the
replay candidates. :func:`review` does the week in one call, from the embedded
default week or from live systems.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from codegen_forensics.errors import ReportError
from codegen_forensics.report.execute import execute_notebook, notebook_path
from codegen_forensics.report.export import export_html, export_pdf
from codegen_forensics.report.redact import check_redaction
from codegen_forensics.report.session import check_uuid
from codegen_forensics.report.weekly import week_window
from codegen_forensics.settings import KafkaSettings, PostgresSettings
from codegen_forensics.snapshot import Snapshot

__all__ = [
    "DEFAULT_WEEK_SEED",
    "DEFAULT_WEEK_START",
    "ReportResult",
    "default_week_snapshot",
    "review",
    "session_report",
    "weekly_report",
]

logger = logging.getLogger(__name__)

# The embedded default week: fixed so every machine generates the same bytes.
DEFAULT_WEEK_START = datetime(2026, 11, 23, tzinfo=UTC)
DEFAULT_WEEK_SEED = 20261123
DEFAULT_WEEK_SESSIONS = 2000


@dataclass(frozen=True)
class ReportResult:
    """Where a report's files are."""

    directory: Path
    html: Path
    notebook: Path
    record: Path
    pdf: Path | None = None
    tables: list[Path] = field(default_factory=list)
    replay: Path | None = None
    snapshot: Path | None = None

    def headline(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.record.read_text())
        return dict(data.get("headline") or data.get("summary") or {})


def _finish(
    executed: Any,
    out: Path,
    stem: str,
    title: str,
    pdf: bool,
) -> tuple[Path, Path | None]:
    html = export_html(executed, out / f"{stem}.html", title)
    pdf_path = export_pdf(html, out / f"{stem}.pdf") if pdf else None
    return html, pdf_path


def weekly_report(
    snapshot: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    week: str | None = None,
    previous: str | os.PathLike[str] | None = None,
    thresholds: str | os.PathLike[str] | None = None,
    overrides: str | os.PathLike[str] | None = None,
    redaction: str = "none",
    pdf: bool = False,
) -> ReportResult:
    """Run the weekly DLQ review notebook on a snapshot and export the report."""
    # Refuse missing input here, before a kernel starts; the notebook's setup cell
    # reads the thresholds and overrides files and names what is wrong in them.
    Snapshot.open(snapshot)
    if previous is not None:
        Snapshot.open(previous)
    week_window(week)
    mode = check_redaction(redaction)
    for name, path in (("thresholds", thresholds), ("overrides", overrides)):
        if path is not None and not Path(path).is_file():
            raise ReportError(f"{name} file {str(path)!r} does not exist")

    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    record = directory / "report.json"
    replay = directory / "replay_candidates.jsonl"
    tables_dir = directory / "tables"
    parameters = {
        "snapshot_dir": str(Path(snapshot).resolve()),
        "week": week,
        "previous_snapshot": str(Path(previous).resolve()) if previous else None,
        "thresholds_file": str(Path(thresholds).resolve()) if thresholds else None,
        "overrides_file": str(Path(overrides).resolve()) if overrides else None,
        "redaction": mode,
        "replay_file": str(replay.resolve()),
        "tables_dir": str(tables_dir.resolve()),
        "record_file": str(record.resolve()),
    }
    executed = execute_notebook(
        notebook_path("weekly"), directory / "weekly_dlq_review.ipynb", parameters
    )
    title = f"Weekly DLQ review{f' – week of {week}' if week else ''}"
    html, pdf_path = _finish(executed, directory, "weekly_dlq_review", title, pdf)
    logger.info("weekly report written path=%s", html)
    return ReportResult(
        directory=directory,
        html=html,
        notebook=directory / "weekly_dlq_review.ipynb",
        record=record,
        pdf=pdf_path,
        tables=sorted(tables_dir.glob("*")),
        replay=replay,
        snapshot=Path(snapshot),
    )


def session_report(
    snapshot: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    session_id: str | None = None,
    correlation_id: str | None = None,
    redaction: str = "none",
    pdf: bool = False,
) -> ReportResult:
    """Run the session analysis notebook for one session or correlation id."""
    Snapshot.open(snapshot)
    sid = check_uuid(session_id, "session_id")
    cid = check_uuid(correlation_id, "correlation_id")
    if (sid is None) == (cid is None):
        raise ReportError("give exactly one of --session-id and --correlation-id")
    mode = check_redaction(redaction)
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    record = directory / "report.json"
    parameters = {
        "snapshot_dir": str(Path(snapshot).resolve()),
        "session_id": sid,
        "correlation_id": cid,
        "redaction": mode,
        "record_file": str(record.resolve()),
    }
    executed = execute_notebook(
        notebook_path("session"), directory / "session_analysis.ipynb", parameters
    )
    subject = f"session {sid}" if sid else f"correlation id {cid}"
    html, pdf_path = _finish(
        executed, directory, "session_analysis", f"Session analysis – {subject}", pdf
    )
    return ReportResult(
        directory=directory,
        html=html,
        notebook=directory / "session_analysis.ipynb",
        record=record,
        pdf=pdf_path,
        snapshot=Path(snapshot),
    )


def _kafka_options(prefix: str) -> Any:
    """Topics to snapshot: every known one, or only those under ``prefix``."""
    from codegen_forensics.load.kafka import KafkaSnapshotOptions

    if not prefix:
        return KafkaSnapshotOptions()
    return KafkaSnapshotOptions(
        catalog_prefix=prefix, topics=(f"^{re.escape(prefix)}",)
    )


def data_dir() -> Path:
    """Where the embedded default week lives: ``FORENSICS_DATA_DIR`` or ``data/``."""
    return Path(os.environ.get("FORENSICS_DATA_DIR", "data"))


def default_week_snapshot(directory: str | os.PathLike[str] | None = None) -> Path:
    """The embedded default week as a snapshot, generated the first time it is asked.

    A fixed seed and start make it the same on every machine: 2,000 sessions over
    the seven days from Monday 2026-11-23 (UTC), with every kind of trouble on.
    """
    from codegen_forensics.simulate.config import SimulationConfig
    from codegen_forensics.simulate.snapshot_sink import write_snapshot

    target = Path(directory) if directory else data_dir() / "default-week"
    if target.exists():
        Snapshot.open(target)
        return target
    logger.info("generating the default week path=%s", target)
    config = SimulationConfig(
        seed=DEFAULT_WEEK_SEED,
        sessions=DEFAULT_WEEK_SESSIONS,
        days=7,
        start=DEFAULT_WEEK_START,
    )
    write_snapshot(config, target)
    return target


def review(
    out: str | os.PathLike[str],
    *,
    snapshot: str | os.PathLike[str] | None = None,
    kafka: KafkaSettings | None = None,
    postgres: PostgresSettings | None = None,
    week: str | None = None,
    previous: str | os.PathLike[str] | None = None,
    thresholds: str | os.PathLike[str] | None = None,
    overrides: str | os.PathLike[str] | None = None,
    redaction: str = "none",
    pdf: bool = False,
    topic_prefix: str = "",
    schema: str | None = None,
) -> ReportResult:
    """The week's review in one call.

    With live systems (``kafka``, ``postgres`` or both), they are snapshotted into
    ``out/snapshot-<UTC time>`` first. With a ``snapshot``, that one is used. With
    neither, the embedded default week is, and ``week`` defaults to its Monday.
    """
    directory = Path(out)
    if kafka is not None or postgres is not None:
        from codegen_forensics.load.postgres import PostgresSnapshotOptions
        from codegen_forensics.load.run import run_snapshot

        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = directory / f"snapshot-{stamp}"
        run_snapshot(
            target,
            kafka=kafka,
            kafka_options=_kafka_options(topic_prefix) if kafka is not None else None,
            postgres=postgres,
            postgres_options=PostgresSnapshotOptions(schema=schema)
            if postgres is not None
            else None,
        )
        source: Path = target
    elif snapshot is not None:
        source = Path(snapshot)
    else:
        source = default_week_snapshot()
        if week is None:
            week = DEFAULT_WEEK_START.date().isoformat()
    return weekly_report(
        source,
        directory,
        week=week,
        previous=previous,
        thresholds=thresholds,
        overrides=overrides,
        redaction=redaction,
        pdf=pdf,
    )
