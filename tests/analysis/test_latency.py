from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from codegen_forensics.analysis import (
    Analysis,
    bottleneck_hours,
    bottleneck_topics,
    orphan_responses,
    producer_latency,
    request_response,
    request_response_summary,
    response_time_summary,
)
from codegen_forensics.analysis.latency import severity
from codegen_forensics.errors import InputError

from .helpers import REQ, REQ_V, RESP, RESP_V, at, uid


@pytest.fixture
def pairs(analyse: Callable[..., Analysis]) -> Analysis:
    return analyse(
        [
            # 11: answered twice; the first response's reported time counts.
            dict(
                topic=REQ,
                session_id=uid(1),
                correlation_id=uid(11),
                event_timestamp=at(0),
            ),
            dict(
                topic=RESP,
                session_id=uid(1),
                correlation_id=uid(11).upper(),
                event_timestamp=at(1.5),
                processing_time_ms=1200,
            ),
            dict(
                topic=RESP,
                session_id=uid(1),
                correlation_id=uid(11),
                event_timestamp=at(9),
                processing_time_ms=100,
            ),
            # 12: two responses tie for first: the smaller reported time counts.
            dict(
                topic=REQ,
                session_id=uid(1),
                correlation_id=uid(12),
                event_timestamp=at(10),
            ),
            dict(
                topic=RESP,
                session_id=uid(1),
                correlation_id=uid(12),
                event_timestamp=at(13),
                processing_time_ms=300,
            ),
            dict(
                topic=RESP,
                session_id=uid(1),
                correlation_id=uid(12),
                event_timestamp=at(13),
                processing_time_ms=200,
            ),
            # 13: never answered.
            dict(
                topic=REQ_V,
                session_id=uid(2),
                correlation_id=uid(13),
                event_timestamp=at(3600),
            ),
            # A request without a correlation id, and an undecodable one.
            dict(topic=REQ_V, session_id=uid(2), event_timestamp=at(3601)),
            dict(topic=REQ_V, decode_status="not_json", timestamp=at(3602)),
            # A response to no request in the snapshot, and one with no id.
            dict(
                topic=RESP_V,
                correlation_id=uid(99),
                event_timestamp=at(3603),
                processing_time_ms=50,
            ),
            dict(topic=RESP_V, event_timestamp=at(3604)),
        ]
    )


def test_request_response_pairs_exact(pairs: Analysis) -> None:
    frame = request_response(pairs)
    assert frame["correlation_id"].tolist()[:3] == [uid(11), uid(12), uid(13)]
    assert frame["has_correlation_id"].tolist() == [True, True, True, False]
    assert frame["responses"].tolist() == [2, 2, 0, 0]
    assert frame["duplicate_responses"].tolist() == [1, 1, 0, 0]
    assert frame["answered"].tolist() == [True, True, False, False]
    assert frame["latency_ms"].tolist()[:2] == [1500.0, 3000.0]
    assert frame["reported_processing_ms"].tolist()[:2] == [1200.0, 200.0]
    assert frame["latency_ms"].iloc[2:].isna().all()
    assert frame["operation"].tolist() == ["analyze", "analyze", "validate", "validate"]


def test_request_response_summary_by_operation(pairs: Analysis) -> None:
    frame = request_response_summary(pairs)
    assert frame["operation"].tolist() == ["analyze", "validate"]
    assert frame["requests"].tolist() == [2, 2]
    assert frame["answered"].tolist() == [2, 0]
    assert frame["unanswered"].tolist() == [0, 1]
    assert frame["without_correlation_id"].tolist() == [0, 1]
    assert frame["duplicate_responses"].tolist() == [2, 0]
    assert frame["requests_with_duplicates"].tolist() == [2, 0]
    analyze = frame.iloc[0]
    assert analyze["latency_mean_ms"] == 2250.0
    assert analyze["latency_p95_ms"] == pytest.approx(1500 + 0.95 * 1500)
    assert analyze["processing_mean_ms"] == 700.0


def test_request_response_summary_by_hour(pairs: Analysis) -> None:
    frame = request_response_summary(pairs, by=("hour",))
    assert frame["hour"].tolist() == [
        pd.Timestamp("2026-01-05 10:00", tz="UTC"),
        pd.Timestamp("2026-01-05 11:00", tz="UTC"),
    ]
    assert frame["requests"].tolist() == [2, 2]


def test_request_response_summary_overall(pairs: Analysis) -> None:
    frame = request_response_summary(pairs, by=())
    assert frame[["requests", "answered", "unanswered"]].iloc[0].tolist() == [4, 2, 1]


def test_request_response_summary_by_request_topic_exact(pairs: Analysis) -> None:
    frame = request_response_summary(pairs, by=("request_topic",))
    assert frame["request_topic"].tolist() == [REQ, REQ_V]
    assert frame["requests"].tolist() == [2, 2]
    assert frame["answered"].tolist() == [2, 0]
    assert frame["latency_mean_ms"].iloc[0] == 2250.0
    assert frame["processing_mean_ms"].iloc[0] == 700.0


def test_request_response_summary_columns_in_documented_order(
    pairs: Analysis,
) -> None:
    frame = request_response_summary(pairs, by=("operation", "hour"))
    assert list(frame.columns) == [
        "operation",
        "hour",
        "requests",
        "answered",
        "unanswered",
        "dead_lettered",
        "poison_unanswered",
        "without_correlation_id",
        "duplicate_responses",
        "requests_with_duplicates",
        "latency_mean_ms",
        "latency_p50_ms",
        "latency_p95_ms",
        "latency_p99_ms",
        "latency_max_ms",
        "processing_mean_ms",
        "processing_p50_ms",
        "processing_p95_ms",
        "processing_p99_ms",
    ]
    analyze = frame[frame["operation"] == "analyze"].iloc[0]
    assert analyze["latency_p50_ms"] == 2250.0
    assert analyze["processing_p99_ms"] == pytest.approx(200 + 0.99 * 1000)


def test_request_response_summary_unknown_key_is_refused(pairs: Analysis) -> None:
    with pytest.raises(InputError, match=r"by=\['topic'\] is not allowed"):
        request_response_summary(pairs, by=("topic",))


def test_request_response_empty(analyse: Callable[..., Analysis]) -> None:
    a = analyse()
    assert request_response(a).empty
    assert request_response_summary(a).empty
    assert request_response_summary(a, by=())["requests"].tolist() == [0]


def test_orphan_responses_exact(pairs: Analysis) -> None:
    frame = orphan_responses(pairs)
    assert frame["response_topic"].tolist() == [RESP, RESP_V]
    assert frame["responses"].tolist() == [4, 2]
    assert frame["without_request"].tolist() == [0, 1]
    assert frame["without_correlation_id"].tolist() == [0, 1]


def test_response_time_summary_exact(pairs: Analysis) -> None:
    row = response_time_summary(pairs).iloc[0]
    assert row["responses"] == 5
    assert row["mean_ms"] == pytest.approx((1200 + 100 + 300 + 200 + 50) / 5)
    assert row["p50_ms"] == 200.0
    assert row["max_ms"] == 1200


@pytest.mark.parametrize(
    ("mean", "band"),
    [
        (5000.5, "high"),
        (5000, "medium"),
        (2000.1, "medium"),
        (2000, "low"),
        (1000.1, "low"),
        (1000, None),
        (None, None),
    ],
)
def test_severity_bands_are_strictly_above(
    mean: float | None, band: str | None
) -> None:
    assert severity(mean) == band


def _responses(topic: str, hour: int, times: list[int]) -> list[dict]:
    return [
        dict(
            topic=topic,
            correlation_id=uid(hour * 100 + i),
            event_timestamp=at(hours=hour, seconds=i),
            processing_time_ms=t,
        )
        for i, t in enumerate(times)
    ]


def test_bottleneck_topics_sorted_by_severity_then_mean(
    analyse: Callable[..., Analysis],
) -> None:
    a = analyse(
        _responses(RESP, 0, [1500, 1700])  # low, 1600
        + _responses(RESP_V, 0, [6000, 5000])  # high, 5500
        + _responses("omninode_codegen_response_mixin_v1", 0, [1000])  # none
        + _responses("omninode_codegen_response_pattern_v1", 0, [2500, 2600])  # medium
    )
    frame = bottleneck_topics(a)
    assert frame["severity"].tolist() == ["high", "medium", "low", None]
    assert frame["mean_ms"].tolist() == [5500.0, 2550.0, 1600.0, 1000.0]
    assert frame["bottleneck"].tolist() == [True, True, True, False]
    assert frame["p95_ms"].tolist()[0] == pytest.approx(5000 + 0.95 * 1000)


def test_bottleneck_hours_marks_band_entries(analyse: Callable[..., Analysis]) -> None:
    a = analyse(
        _responses(RESP, 0, [500])  # 10:00 none
        + _responses(RESP, 1, [2500])  # 11:00 medium: entered
        + _responses(RESP, 2, [2600])  # 12:00 medium: stays
        + _responses(RESP, 3, [1500])  # 13:00 low: lower, not entered
        + _responses(RESP, 5, [1500])  # 15:00 low after an empty hour: entered
        + _responses(RESP, 6, [6000])  # 16:00 high: entered
    )
    frame = bottleneck_hours(a).sort_values("hour").reset_index(drop=True)
    assert [h.hour for h in frame["hour"]] == [10, 11, 12, 13, 15, 16]
    assert frame["severity"].tolist() == [
        None,
        "medium",
        "medium",
        "low",
        "low",
        "high",
    ]
    assert frame["entered_band"].tolist() == [False, True, False, False, True, True]
    ordered = bottleneck_hours(a)
    assert [h.hour for h in ordered["hour"]] == [16, 12, 11, 13, 15, 10]


def test_bottleneck_hours_empty(analyse: Callable[..., Analysis]) -> None:
    assert bottleneck_hours(analyse()).empty
    assert bottleneck_topics(analyse()).empty


def test_producer_latency_only_with_log_append_time(
    analyse: Callable[..., Analysis],
) -> None:
    a = analyse(
        [
            dict(
                topic=REQ,
                event_timestamp=at(0),
                timestamp=at(0.05),
                timestamp_type="log_append_time",
            ),
            dict(
                topic=REQ,
                event_timestamp=at(1),
                timestamp=at(1.15),
                timestamp_type="log_append_time",
            ),
            dict(
                topic=REQ,
                event_timestamp=at(2),
                timestamp=at(9),
                timestamp_type="create_time",
            ),
        ]
    )
    frame = producer_latency(a)
    assert frame["messages"].tolist() == [2]
    assert frame["mean_ms"].tolist() == [pytest.approx(100.0)]
    assert frame["p95_ms"].tolist() == [pytest.approx(50 + 0.95 * 100)]


def test_producer_latency_not_measurable_is_empty(
    analyse: Callable[..., Analysis],
) -> None:
    a = analyse([dict(topic=REQ, event_timestamp=at(0))])
    assert producer_latency(a).empty
    assert producer_latency(a, by_topic=False).empty


def test_missing_responses_explained_by_dead_letters_and_poison(
    analyse: Callable[..., Analysis],
) -> None:
    dlq = "omninode_codegen_dlq_analyze_v1"
    a = analyse(
        [
            # 21: answered.
            dict(topic=REQ, correlation_id=uid(21), event_timestamp=at(0)),
            dict(
                topic=RESP,
                correlation_id=uid(21),
                event_timestamp=at(1),
                processing_time_ms=900,
            ),
            # 22: dead-lettered, so no response.
            dict(topic=REQ, correlation_id=uid(22), event_timestamp=at(2)),
            dict(
                topic=dlq,
                correlation_id=uid(22),
                dlq_source_topic=REQ,
                dlq_failure_time=at(5),
            ),
            # 23: a request that decoded only after repair: its consumer choked.
            dict(
                topic=REQ,
                correlation_id=uid(23),
                event_timestamp=at(3),
                decode_status="double_encoded",
            ),
            # 24: nothing explains the silence.
            dict(topic=REQ, correlation_id=uid(24), event_timestamp=at(4)),
            # Not JSON at all: no request.
            dict(topic=REQ, decode_status="not_json", value=b"<html>"),
        ]
    )
    row = request_response_summary(a, by=()).iloc[0]
    assert row[
        ["requests", "answered", "unanswered", "dead_lettered", "poison_unanswered"]
    ].tolist() == [4, 1, 1, 1, 1]
    per_request = request_response(a).set_index("correlation_id")
    assert per_request.loc[uid(22), "dead_lettered"]
    assert per_request.loc[uid(23), "poison"]
    assert not per_request.loc[uid(24), ["answered", "dead_lettered", "poison"]].any()
