"""The report notebooks executed headless on a simulated week."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from typer.testing import CliRunner

from codegen_forensics.analysis.context import open_analysis
from codegen_forensics.analysis.replay import replay_candidates
from codegen_forensics.analysis.trace import trace, tracer_session_trace
from codegen_forensics.analysis.weekly import weekly_review
from codegen_forensics.cli import app
from codegen_forensics.errors import ReportError
from codegen_forensics.report import export
from codegen_forensics.report.run import (
    ReportResult,
    session_report,
    weekly_report,
)
from codegen_forensics.report.weekly import HEADLINE_KEYS, KEY_TABLES
from codegen_forensics.simulate.truth import GroundTruth

WEEK = "2026-11-23"
START = datetime(2026, 11, 23, tzinfo=UTC)
END = datetime(2026, 11, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def weekly(
    week_snapshot: Path,
    earlier_snapshot: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> ReportResult:
    out = tmp_path_factory.mktemp("weekly-report")
    return weekly_report(week_snapshot, out, week=WEEK, previous=earlier_snapshot)


@pytest.fixture(scope="module")
def weekly_dropped(
    week_snapshot: Path, tmp_path_factory: pytest.TempPathFactory
) -> ReportResult:
    out = tmp_path_factory.mktemp("weekly-redacted")
    return weekly_report(week_snapshot, out, week=WEEK, redaction="drop")


def _cell_json(notebook: Path, cell_id: str) -> dict[str, object]:
    nb = nbformat.read(notebook, as_version=4)
    cell = next(c for c in nb.cells if c.get("id") == cell_id)
    for output in cell.outputs:
        data = output.get("data", {})
        if "application/json" in data:
            return dict(data["application/json"])
    raise AssertionError(f"cell {cell_id} has no JSON output")


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, rel=1e-12)
    return a == b


def test_weekly_report_headline_equals_the_analysis(
    weekly: ReportResult, week_snapshot: Path, earlier_snapshot: Path
) -> None:
    with open_analysis(week_snapshot, start=START, end=END) as a:
        expected = weekly_review(a, previous=earlier_snapshot)["headline"].iloc[0]
    shown = _cell_json(weekly.notebook, "headline")["numbers"]
    recorded = weekly.headline()
    assert isinstance(shown, dict)
    assert sorted(shown) == sorted(HEADLINE_KEYS)
    for key in HEADLINE_KEYS:
        value = expected[key]
        value = value.item() if hasattr(value, "item") else value
        assert _same(shown[key], value), key
        assert _same(recorded[key], value), key
    assert shown["messages"] > 0
    assert shown["dlq_messages"] > 0


def test_weekly_report_html_is_self_contained_with_plots(weekly: ReportResult) -> None:
    page = weekly.html.read_text(encoding="utf-8")
    fetched = re.findall(
        r"<(?:script|link|img)[^>]*(?:src|href)=\"(?!data:)[^\"]+\"", page
    )
    assert fetched == []
    nb = nbformat.read(weekly.notebook, as_version=4)
    figures = sum(
        "image/png" in output.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert figures == 5  # DLQ volume, DLQ rate, latency, durations, throughput
    assert len(re.findall(r"<img [^>]*src=\"data:image/png;base64,", page)) == figures
    # Code is hidden: no cell source reaches the page.
    assert "WeeklyReview.compute(" not in page
    assert "Weekly DLQ review" in page


def test_weekly_report_exports_key_tables(
    weekly: ReportResult, week_snapshot: Path, earlier_snapshot: Path
) -> None:
    tables = weekly.directory / "tables"
    assert sorted(p.name for p in tables.iterdir()) == sorted(
        [f"{name}.csv" for name in KEY_TABLES]
        + [f"{name}.parquet" for name in KEY_TABLES]
    )
    with open_analysis(week_snapshot, start=START, end=END) as a:
        expected = weekly_review(a, previous=earlier_snapshot)
    groups = pd.read_parquet(tables / "dlq_groups.parquet")
    assert groups["group_id"].tolist() == expected["dlq_groups"]["group_id"].tolist()
    assert groups["messages"].tolist() == expected["dlq_groups"]["messages"].tolist()
    targets = pd.read_csv(tables / "targets.csv")
    assert targets["status"].tolist() == expected["targets"]["status"].tolist()


def test_weekly_report_writes_replay_candidates(
    weekly: ReportResult, week_snapshot: Path
) -> None:
    with open_analysis(week_snapshot, start=START, end=END) as a:
        expected = replay_candidates(a)
    assert weekly.replay is not None
    lines = [json.loads(line) for line in weekly.replay.read_text().splitlines()]
    assert len(lines) == len(expected) > 0
    assert [(r["dlq_topic"], r["offset"]) for r in lines] == list(
        zip(expected["dlq_topic"], expected["offset"], strict=True)
    )
    assert all(isinstance(r["original_event"], dict) for r in lines)


def test_weekly_report_records_parameters_and_snapshot(
    weekly: ReportResult, week_snapshot: Path
) -> None:
    from codegen_forensics.snapshot import Snapshot

    record = json.loads(weekly.record.read_text())
    assert record["parameters"]["week"] == WEEK
    assert record["parameters"]["window_start"] == "2026-11-23T00:00:00+00:00"
    assert record["snapshot_manifest_sha256"] == Snapshot.open(week_snapshot).checksum
    assert {"pandas", "pyarrow", "duckdb"} <= set(record["library_versions"])


def test_weekly_report_dlq_diff_against_previous_week(
    weekly: ReportResult,
) -> None:
    diff = pd.read_parquet(weekly.directory / "tables" / "dlq_diff.parquet")
    # The earlier week had failures of the same kinds: some groups carry over.
    assert (
        set(diff["state"]) - {"new", "gone", "growing", "shrinking", "steady"} == set()
    )
    assert (diff["state"] != "new").any()


def _sensitive_texts(snapshot: Path) -> set[str]:
    """The first 40 characters of every PRD and code text the requests carry."""
    from codegen_forensics.snapshot import Snapshot

    payloads = Snapshot.open(snapshot).read("kafka/", columns=["payload"])
    texts = set()
    for payload in payloads.column("payload").to_pylist():
        event = json.loads(payload) if payload else None
        if not isinstance(event, dict):
            continue
        for key in ("prd_content", "code_content"):
            if isinstance(event.get(key), str) and len(event[key]) > 40:
                texts.add(json.dumps(event[key][:40])[1:-1])
    return texts


def _all_text(directory: Path) -> str:
    parts = []
    for path in sorted(directory.rglob("*")):
        if path.suffix == ".parquet":
            parts.append(pd.read_parquet(path).to_json(date_format="iso"))
        elif path.is_file():
            parts.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(parts)


def test_redaction_drop_removes_prd_and_code_from_everything_exported(
    week_snapshot: Path, weekly: ReportResult, weekly_dropped: ReportResult
) -> None:
    texts = _sensitive_texts(week_snapshot)
    unredacted = _all_text(weekly.directory)
    redacted = _all_text(weekly_dropped.directory)
    leaked_without = {t for t in texts if t in unredacted}
    # Without redaction the report shows some (replay candidates, poison examples).
    assert len(leaked_without) >= 1
    assert {t for t in texts if t in redacted} == set()
    assert "Traceback (most recent call last)" not in redacted


def test_report_pdf_prints_the_html(weekly: ReportResult, tmp_path: Path) -> None:
    pdf = export.export_pdf(weekly.html, tmp_path / "weekly.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert pdf.stat().st_size > 50_000


def test_report_pdf_without_chromium_says_how_to_install(
    weekly: ReportResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "find_chromium", lambda: None)
    with pytest.raises(ReportError, match="apt-get install chromium"):
        export.export_pdf(weekly.html, tmp_path / "weekly.pdf")


def test_weekly_report_names_the_failing_cell(
    week_snapshot: Path, tmp_path: Path
) -> None:
    # Thresholds that parse as YAML but are not valid fail inside the notebook.
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text("dlq_rate: 5\n")
    with pytest.raises(ReportError, match=r"failed in cell 2 'setup': ConfigError"):
        weekly_report(week_snapshot, tmp_path / "out", thresholds=thresholds)
    assert (tmp_path / "out" / "weekly_dlq_review.ipynb").exists()


def test_report_weekly_command_fails_with_the_cell_name(
    week_snapshot: Path, tmp_path: Path
) -> None:
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text("not_a_threshold: 1\n")
    result = CliRunner().invoke(
        app,
        [
            "report",
            "weekly",
            "--snapshot",
            str(week_snapshot),
            "--out",
            str(tmp_path / "out"),
            "--thresholds",
            str(thresholds),
        ],
    )
    assert result.exit_code == 2
    assert "'setup'" in result.output
    assert "not_a_threshold" in result.output


def test_report_weekly_refuses_an_incomplete_snapshot(tmp_path: Path) -> None:
    (tmp_path / "snap").mkdir()
    with pytest.raises(Exception, match=r"has no manifest\.json"):
        weekly_report(tmp_path / "snap", tmp_path / "out")


def test_session_report_numbers_equal_the_trace(
    week_snapshot: Path, tmp_path: Path
) -> None:
    truth = GroundTruth.read(week_snapshot / "ground_truth.json")
    session = truth.failed_sessions[0].session_id
    result = session_report(week_snapshot, tmp_path, session_id=session)

    with open_analysis(week_snapshot) as a:
        events = trace(a, session_id=session)
        tracer = tracer_session_trace(a, session).iloc[0]
    shown = _cell_json(result.notebook, "summary")["numbers"]
    assert isinstance(shown, dict)
    assert shown["events"] == len(events) > 0
    assert shown["failures"] == int(events["is_failure"].sum()) > 0
    assert shown["dead_letters"] == int(events["is_dlq"].sum())
    assert shown["tracer_status"] == tracer["status"] == "failed"
    assert shown["tracer_total_events"] == tracer["total_events"]
    page = result.html.read_text(encoding="utf-8")
    assert len(re.findall(r"<img [^>]*src=\"data:image/png;base64,", page)) == 1
    assert session in page


def test_session_report_needs_exactly_one_id(
    week_snapshot: Path, tmp_path: Path
) -> None:
    with pytest.raises(ReportError, match="exactly one of --session-id and"):
        session_report(week_snapshot, tmp_path)
