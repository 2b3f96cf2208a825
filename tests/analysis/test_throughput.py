from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from codegen_forensics.analysis import Analysis, throughput, throughput_series
from codegen_forensics.errors import InputError

from .helpers import REQ, RESP, at


@pytest.fixture
def traffic(analyse: Callable[..., Analysis]) -> Analysis:
    # REQ: 3 messages in minute 0, none in minute 1, 1 in minute 2, 2 an hour later.
    seconds = [0, 10, 59, 130, 3600, 3601]
    return analyse(
        [dict(topic=REQ, timestamp=at(s)) for s in seconds]
        + [dict(topic=RESP, timestamp=None, event_timestamp=at(5))]
    )


def test_throughput_per_minute_counts_empty_minutes(traffic: Analysis) -> None:
    frame = throughput(traffic).set_index("topic")
    req = frame.loc[REQ]
    assert req["messages"] == 6
    assert req["windows"] == 61
    assert req["active_windows"] == 3
    assert req["mean_per_window"] == pytest.approx(6 / 61)
    assert req["peak_per_window"] == 3
    assert req["peak_window"] == pd.Timestamp("2026-01-05 10:00", tz="UTC")
    assert req["peak_per_second"] == pytest.approx(3 / 60)
    assert req["mean_per_second"] == pytest.approx(6 / (61 * 60))
    # No Kafka timestamp: placed by the event time.
    assert frame.loc[RESP, "messages"] == 1


def test_throughput_per_hour(traffic: Analysis) -> None:
    req = throughput(traffic, "hour").set_index("topic").loc[REQ]
    assert (req["windows"], req["peak_per_window"], req["mean_per_window"]) == (
        2,
        4,
        3.0,
    )


def test_throughput_series_per_minute(traffic: Analysis) -> None:
    frame = throughput_series(traffic)
    req = frame[frame["topic"] == REQ]
    assert req["messages"].tolist() == [3, 1, 2]


def test_throughput_ties_take_the_first_peak(analyse: Callable[..., Analysis]) -> None:
    a = analyse(
        [dict(topic=REQ, timestamp=at(s)) for s in (0, 60, 120, 121)]
        + [dict(topic=REQ, timestamp=at(s)) for s in (180, 181)]
    )
    row = throughput(a).iloc[0]
    assert row["peak_per_window"] == 2
    assert row["peak_window"] == pd.Timestamp("2026-01-05 10:02", tz="UTC")


def test_throughput_empty(analyse: Callable[..., Analysis]) -> None:
    assert throughput(analyse()).empty


def test_throughput_unknown_window_is_refused(traffic: Analysis) -> None:
    with pytest.raises(InputError, match="window='day' is not known"):
        throughput(traffic, "day")
