from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from codegen_forensics.analysis import Analysis, consumer_lag, consumer_lag_by_group
from codegen_forensics.errors import InputError

from .helpers import REQ, RESP, at


@pytest.fixture
def lagging(analyse: Callable[..., Analysis]) -> Analysis:
    # REQ partition 0: offsets 0..4 written one a minute; RESP partition 1: 0..1.
    messages = [dict(topic=REQ, partition=0, timestamp=at(minutes=i)) for i in range(5)]
    messages += [
        dict(topic=RESP, partition=1, timestamp=at(minutes=i)) for i in range(2)
    ]
    return analyse(
        messages,
        partitions=[
            dict(topic=REQ, partition=0, low_watermark=0, high_watermark=5),
            dict(topic=RESP, partition=1, low_watermark=0, high_watermark=2),
        ],
        consumer_offsets=[
            dict(group_id="readers", topic=REQ, partition=0, committed_offset=2),
            dict(group_id="readers", topic=RESP, partition=1, committed_offset=2),
            dict(group_id="late", topic=REQ, partition=0, committed_offset=None),
        ],
        manifest={"started_at": at(minutes=10).isoformat()},
    )


def test_consumer_lag_messages_and_time(lagging: Analysis) -> None:
    frame = consumer_lag(lagging)
    assert frame["group_id"].tolist() == ["late", "readers", "readers"]
    assert frame["lag_messages"].tolist() == [5, 3, 0]
    assert frame["oldest_unconsumed_offset"].tolist()[:2] == [0, 2]
    assert frame["oldest_unconsumed_time"].tolist()[:2] == [at(0), at(minutes=2)]
    # Age up to the snapshot (10 minutes in) and distance behind the newest message.
    assert frame["age_s"].tolist()[:2] == [600.0, 480.0]
    assert frame["behind_head_s"].tolist()[:2] == [240.0, 120.0]
    assert frame[["age_s", "behind_head_s"]].iloc[2].isna().all()


def test_consumer_lag_as_of(lagging: Analysis) -> None:
    frame = consumer_lag(lagging, as_of=at(minutes=20))
    assert frame["age_s"].tolist()[:2] == [1200.0, 1080.0]


def test_consumer_lag_naive_as_of_is_refused(lagging: Analysis) -> None:
    with pytest.raises(
        InputError, match="as_of='2026-01-05T10:00:00' has no time zone"
    ):
        consumer_lag(lagging, as_of=datetime(2026, 1, 5, 10))


def test_consumer_lag_without_partitions_uses_the_last_offset(
    analyse: Callable[..., Analysis],
) -> None:
    a = analyse(
        [dict(topic=REQ, timestamp=at(i)) for i in range(4)],
        consumer_offsets=[
            dict(group_id="g", topic=REQ, partition=0, committed_offset=1)
        ],
    )
    frame = consumer_lag(a)
    assert frame[["end_offset", "lag_messages"]].iloc[0].tolist() == [4, 3]
    assert frame["behind_head_s"].tolist() == [2.0]
    # Without started_at the manifest's created_at (when the snapshot completed) is
    # the reference time.
    assert a.snapshot_time is not None
    assert frame["age_s"].tolist() == [(a.snapshot_time - at(1)).total_seconds()]


def test_consumer_lag_by_group(lagging: Analysis) -> None:
    frame = consumer_lag_by_group(consumer_lag(lagging))
    assert frame["group_id"].tolist() == ["late", "readers"]
    assert frame["partitions"].tolist() == [1, 2]
    assert frame["lag_messages"].tolist() == [5, 3]
    assert frame["max_lag_messages"].tolist() == [5, 3]
    assert frame["max_age_s"].tolist() == [600.0, 480.0]


def test_consumer_lag_empty(analyse: Callable[..., Analysis]) -> None:
    frame = consumer_lag(analyse())
    assert frame.empty
    assert consumer_lag_by_group(frame).empty
