from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace

import pandas as pd
import pytest

from codegen_forensics.analysis import Analysis
from codegen_forensics.analysis._util import bucket

from .helpers import STATUS

# Edges where counting windows from the epoch and truncating could part ways.
TIMES = [
    datetime(1969, 7, 20, 20, 17, 40, 500_000, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(2026, 3, 29, 1, 30, 0, 1, tzinfo=UTC),
    datetime(2026, 10, 25, 2, 59, 59, tzinfo=UTC),
    datetime(2099, 12, 31, 23, 0, tzinfo=UTC),
]


@pytest.mark.parametrize(
    ("unit", "floor"), [("m", "min"), ("h", "h"), ("D", "D"), ("W", None)]
)
def test_bucket_on_duckdb_equals_truncating(
    analyse: Callable[..., Analysis], unit: str, floor: str | None
) -> None:
    a = analyse([dict(topic=STATUS, timestamp=t) for t in TIMES])
    m = a.all_messages
    truncating = SimpleNamespace(backend=SimpleNamespace(name="other"))
    frame = a.execute(
        m.select(
            m.timestamp,
            counted=bucket(a, m.timestamp, unit),
            truncated=bucket(truncating, m.timestamp, unit),  # type: ignore[arg-type]
        )
    ).sort_values("timestamp")
    assert frame["counted"].tolist() == frame["truncated"].tolist()
    stamps = pd.Series(pd.to_datetime(TIMES, utc=True))
    if floor is None:  # weeks start on Mondays
        expected = (stamps - pd.to_timedelta(stamps.dt.weekday, unit="D")).dt.floor("D")
    else:
        expected = stamps.dt.floor(floor)
    assert frame["counted"].tolist() == expected.tolist()
    assert str(frame["counted"].dtype) == "datetime64[us, UTC]"
