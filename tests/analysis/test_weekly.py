from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from codegen_forensics.analysis import (
    dlq_groups,
    group_id,
    open_analysis,
    targets,
    weekly_review,
)
from codegen_forensics.snapshot import SnapshotWriter

from .helpers import DLQ, REQ, RESP, STATUS, at, message_table, uid

TABLES = [
    "headline",
    "targets",
    "bottleneck_hours",
    "bottleneck_topics",
    "compression",
    "compression_by_partition",
    "consumer_lag",
    "consumer_lag_by_group",
    "decode_status",
    "dlq_breakdown",
    "dlq_counts",
    "dlq_diff",
    "dlq_groups",
    "dlq_rate_day",
    "dlq_rate_total",
    "latency_by_hour",
    "latency_by_operation",
    "latency_overall",
    "orphan_responses",
    "poison",
    "producer_latency",
    "response_times",
    "session_duration_quantiles",
    "sessions",
    "throughput_hour",
    "throughput_minute",
    "throughput_series_hour",
    "unfinished_sessions",
]


def week(timeouts: int) -> list[dict]:
    rows: list[dict] = []
    for i in range(3):
        rows += [
            dict(
                topic=REQ,
                session_id=uid(i),
                correlation_id=uid(10 + i),
                event_timestamp=at(i * 60),
                value=b'{"x": 1}' * 20,
            ),
            dict(
                topic=RESP,
                session_id=uid(i),
                correlation_id=uid(10 + i),
                event_timestamp=at(i * 60 + 2),
                processing_time_ms=1500,
                value=b'{"y": 2}' * 20,
            ),
            dict(
                topic=STATUS,
                session_id=uid(i),
                status="completed",
                event_timestamp=at(i * 60 + 3),
                value=b'{"z": 3}' * 20,
            ),
        ]
    rows += [
        dict(
            topic=DLQ,
            dlq_source_topic=REQ,
            dlq_error_type="TimeoutError",
            dlq_error_message=f"timed out after {100 + i}ms",
            dlq_failure_time=at(i),
        )
        for i in range(timeouts)
    ]
    rows.append(
        dict(topic=REQ, decode_status="not_json", value="oops", timestamp=at(5))
    )
    return rows


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One review of a week against the week before, shared by the tests below."""
    root = tmp_path_factory.mktemp("weekly")
    previous = _write(root / "previous", week(timeouts=1))
    current = _write(root / "current", week(timeouts=2))
    result = weekly_review(
        current, previous=previous, memory_limit="256MB", compression_sample_bytes=None
    )
    with open_analysis(current, memory_limit="256MB") as a:
        expected_targets = targets(a)
    return {"result": result, "targets": expected_targets}


def _write(root: Path, rows: list[dict]) -> Path:
    writer = SnapshotWriter(root)
    writer.write("kafka/topic=all/part-0.parquet", message_table(rows))
    writer.finish()
    return root


def test_weekly_review_tables_and_headline(reviewed: dict[str, Any]) -> None:
    result = reviewed["result"]
    assert list(result) == TABLES
    headline = result["headline"].iloc[0]
    assert headline["messages"] == 12
    assert headline["sessions"] == 3
    assert headline["requests"] == 3
    assert headline["unanswered_requests"] == 0
    assert headline["dlq_messages"] == 2
    assert headline["dlq_groups"] == 1
    assert headline["new_dlq_groups"] == 0
    assert headline["growing_dlq_groups"] == 1
    assert headline["poison_messages"] == 1
    assert headline["targets_met"] + headline["targets_missed"] == (
        result["targets"]["status"].isin(["met", "missed"]).sum()
    )
    diff = result["dlq_diff"].iloc[0]
    assert diff["group_id"] == group_id(None, "timed out after <num>ms")
    assert (diff["messages"], diff["previous_messages"], diff["state"]) == (
        2,
        1,
        "growing",
    )
    assert result["bottleneck_topics"]["severity"].tolist() == ["low"]


def test_weekly_review_targets_equal_the_targets_function(
    reviewed: dict[str, Any],
) -> None:
    assert reviewed["result"]["targets"].equals(reviewed["targets"])


def test_weekly_review_thresholds_and_overrides_from_files(
    build_snapshot: Callable[..., Path], tmp_path: Path
) -> None:
    root = build_snapshot(week(timeouts=2))
    (tmp_path / "thresholds.yaml").write_text("processing_avg_ms: 1000\n")
    gid = group_id(None, "timed out after <num>ms")
    (tmp_path / "overrides.json").write_text(f'{{"labels": {{"{gid}": "Timeouts"}}}}')
    result = weekly_review(
        root,
        thresholds=tmp_path / "thresholds.yaml",
        overrides=tmp_path / "overrides.json",
    )
    row = result["targets"].set_index("target").loc["processing_avg_ms"]
    assert (row["threshold"], row["status"]) == (1000.0, "missed")
    assert result["dlq_groups"]["label"].tolist() == ["Timeouts"]


def test_weekly_review_window_and_previous_groups_table(
    build_snapshot: Callable[..., Path],
) -> None:
    before = build_snapshot(week(timeouts=3))
    with open_analysis(before, memory_limit="256MB") as a:
        groups = dlq_groups(a)
    root = build_snapshot(week(timeouts=2))
    result = weekly_review(root, previous=groups, start=at(0), end=at(120))
    assert result["headline"].iloc[0]["sessions"] == 2
    assert result["headline"].iloc[0]["window_start"] == at(0)
    assert result["dlq_diff"]["state"].tolist() == ["shrinking"]


def test_weekly_review_empty_snapshot(build_snapshot: Callable[..., Path]) -> None:
    result = weekly_review(build_snapshot())
    headline = result["headline"].iloc[0]
    assert (headline["messages"], headline["sessions"], headline["dlq_groups"]) == (
        0,
        0,
        0,
    )
    assert result["dlq_diff"].empty
    # Empty tables still carry their columns, so notebooks can select them.
    for name in (
        "compression",
        "consumer_lag",
        "poison",
        "dlq_groups",
        "throughput_hour",
    ):
        assert len(result[name].columns) > 0, name
