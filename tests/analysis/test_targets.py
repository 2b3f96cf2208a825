from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from codegen_forensics.analysis import Analysis, Thresholds, load_thresholds, targets
from codegen_forensics.errors import ConfigError

from .helpers import DLQ, REQ, RESP, STATUS, at, uid


@pytest.fixture
def measured(analyse: Callable[..., Analysis]) -> Analysis:
    messages = []
    # 20 answered requests: 19 at 1 s, one at 9 s reported; latency 1.5 s and 9.5 s.
    for i in range(20):
        slow = i == 19
        messages.append(
            dict(
                topic=REQ,
                session_id=uid(i),
                correlation_id=uid(100 + i),
                event_timestamp=at(i),
                key=b"k",
                value=b'{"a": 1}' * 50,
            )
        )
        messages.append(
            dict(
                topic=RESP,
                session_id=uid(i),
                correlation_id=uid(100 + i),
                event_timestamp=at(i + (9.5 if slow else 1.5)),
                processing_time_ms=9000 if slow else 1000,
                value=b'{"b": 2}' * 50,
            )
        )
        messages.append(
            dict(
                topic=STATUS,
                session_id=uid(i),
                status="completed",
                event_timestamp=at(i + 10),
                value=b'{"s": 1}' * 50,
            )
        )
    # 12 dead letters for REQ: a DLQ count above 10 and a rate of 12 / 20.
    for i in range(12):
        messages.append(
            dict(
                topic=DLQ,
                dlq_source_topic=REQ,
                dlq_failure_time=at(i),
                session_id=uid(i),
                dlq_error_type="E",
                dlq_error_message="m",
            )
        )
    return analyse(
        messages,
        partitions=[dict(topic=REQ, partition=0, low_watermark=0, high_watermark=20)],
        consumer_offsets=[
            dict(group_id="g", topic=REQ, partition=0, committed_offset=0)
        ],
    )


def test_targets_table_exact(measured: Analysis) -> None:
    frame = targets(measured, Thresholds(consumer_lag_design=10)).set_index("target")
    assert list(frame.index) == [
        "processing_avg_ms",
        "processing_p95_ms",
        "latency_avg_ms",
        "latency_p95_ms",
        "dlq_rate",
        "dlq_count",
        "consumer_lag_design",
        "consumer_lag_deployed",
        "compression_ratio",
        "success_rate",
        "producer_p95_ms",
        "consumer_p95_ms",
    ]
    assert frame.loc["processing_avg_ms", "measured"] == 1400.0
    assert frame.loc["processing_avg_ms", "status"] == "met"
    # p95 of nineteen 1000s and one 9000: 1000 + 0.05 * 8000 = 1400.
    assert frame.loc["processing_p95_ms", "measured"] == pytest.approx(1400.0)
    assert frame.loc["latency_avg_ms", "measured"] == pytest.approx(1900.0)
    # 12 dead letters over the 40 messages of the request and response topics.
    assert frame.loc["dlq_rate", "measured"] == pytest.approx(0.3)
    assert frame.loc["dlq_rate", "status"] == "missed"
    assert frame.loc["dlq_rate", "worst_offenders"] == f"{REQ} (60.00%)"
    assert frame.loc["dlq_count", "measured"] == 12
    assert frame.loc["dlq_count", "comparison"] == "<="
    assert frame.loc["dlq_count", "status"] == "missed"
    assert frame.loc["consumer_lag_design", "measured"] == 20
    assert frame.loc["consumer_lag_design", "status"] == "missed"
    assert frame.loc["consumer_lag_design", "worst_offenders"] == f"g/{REQ}/0 (20)"
    assert frame.loc["consumer_lag_deployed", "status"] == "met"
    assert frame.loc["compression_ratio", "status"] == "met"
    # 40 successes; 12 dead letters are failures: 40 / 52 by our definition, and the
    # status events are successes too (completed): (40 + 20) / (60 + 12).
    assert frame.loc["success_rate", "measured"] == pytest.approx(60 / 72)
    assert frame.loc["success_rate", "status"] == "missed"
    assert frame.loc["producer_p95_ms", "status"] == "not measurable"
    assert frame.loc["consumer_p95_ms", "status"] == "not measurable"


def test_targets_empty_snapshot_reports_no_data(
    analyse: Callable[..., Analysis],
) -> None:
    frame = targets(analyse()).set_index("target")
    assert frame.loc["processing_avg_ms", "status"] == "no data"
    assert frame.loc["consumer_lag_design", "status"] == "no data"
    assert frame.loc["compression_ratio", "status"] == "no data"
    assert frame.loc["success_rate", "status"] == "no data"
    assert frame.loc["dlq_count", "status"] == "met"


def test_targets_fall_back_to_event_logs(analyse: Callable[..., Analysis]) -> None:
    a = analyse(
        event_logs=[
            dict(
                session_id=uid(1),
                event_type="response",
                topic=RESP,
                timestamp=at(0),
                status="received",
                processing_time_ms=2500,
            )
        ]
    )
    row = targets(a).set_index("target").loc["processing_avg_ms"]
    assert (row["measured"], row["source"], row["status"]) == (
        2500.0,
        "event_logs",
        "missed",
    )


def test_thresholds_defaults() -> None:
    t = Thresholds()
    assert (
        t.processing_avg_ms,
        t.processing_p95_ms,
        t.dlq_rate,
        t.dlq_alert_count,
    ) == (2000.0, 5000.0, 0.01, 10)
    assert (t.consumer_lag_design, t.consumer_lag_deployed, t.compression_ratio) == (
        100,
        1000,
        2.0,
    )
    assert (t.success_rate, t.producer_p95_ms, t.consumer_p95_ms) == (0.95, 100.0, 50.0)


def test_load_thresholds_yaml_and_json(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text("dlq_rate: 0.005\nconsumer_lag_deployed: 500\n")
    (tmp_path / "t.json").write_text(
        '{"dlq_rate": 0.005, "consumer_lag_deployed": 500}'
    )
    expected = Thresholds(dlq_rate=0.005, consumer_lag_deployed=500)
    assert load_thresholds(tmp_path / "t.yaml") == expected
    assert load_thresholds(tmp_path / "t.json") == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dlq_rat: 0.01", r"unknown thresholds \['dlq_rat'\]"),
        ("dlq_rate: 5", "dlq_rate=5 is a fraction"),
        ("processing_avg_ms: -1", "processing_avg_ms=-1 must be a positive number"),
        (
            "processing_avg_ms: fast",
            "processing_avg_ms='fast' must be a positive number",
        ),
        ("[1, 2]", "must be a mapping"),
    ],
)
def test_load_thresholds_bad_file_is_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_thresholds(path)


def test_load_thresholds_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_thresholds(tmp_path / "absent.yaml")
