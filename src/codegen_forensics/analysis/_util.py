"""Small helpers shared by the measures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import ibis
import ibis.expr.types as ir
import pandas as pd

from codegen_forensics.errors import InputError

if TYPE_CHECKING:
    from codegen_forensics.analysis.context import Analysis

UTC_TIMESTAMP = "timestamp('UTC', 6)"

Window = Literal["minute", "hour", "day", "week"]
WINDOW_UNITS: dict[str, str] = {"minute": "m", "hour": "h", "day": "D", "week": "W"}


def check_window(window: str, allowed: Sequence[str] = tuple(WINDOW_UNITS)) -> str:
    if window not in allowed:
        raise InputError(
            f"window={window!r} is not known; expected one of {', '.join(allowed)}"
        )
    return WINDOW_UNITS[window]


# Windows of a fixed length, whose starts are the same counted from the epoch as
# truncated to the unit: in UTC every day has 24 hours.
_FIXED_WINDOWS: dict[str, dict[str, int]] = {
    "m": {"minutes": 1},
    "h": {"hours": 1},
    "D": {"hours": 24},
}


def bucket(a: Analysis, time: ir.TimestampValue, unit: str) -> ir.TimestampValue:
    """The start of the window holding ``time``, still in UTC.

    On DuckDB, minutes, hours and days (as 24 hours: DuckDB's buckets of one day
    were slower than truncating) are counted from the epoch (``TIME_BUCKET``),
    which gives the same starts as truncating a ``TIMESTAMPTZ`` in half the time
    or less; weeks, which start on Mondays, and every unit on other backends, are
    truncated. Ibis types either result without its time zone; casting it back
    keeps pandas from receiving naive values.
    """
    fixed = _FIXED_WINDOWS.get(unit)
    if fixed is not None and getattr(a.backend, "name", "") == "duckdb":
        start = time.bucket(**fixed)
    else:
        start = time.truncate(unit)
    result: ir.TimestampValue = start.cast(UTC_TIMESTAMP)
    return result


def one_of(
    column: ir.StringValue, names: Sequence[str], or_null: bool = False
) -> ir.BooleanValue:
    """``column`` is one of ``names`` (or null, with ``or_null``).

    Measures that know which topics they need name them this way: a backend then
    skips the files and row groups of other topics by their statistics.
    """
    named: ir.BooleanValue = column.isin(list(names)) if names else ibis.literal(False)
    return named | column.isnull() if or_null else named


def ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """numerator / denominator as floats, null where the denominator is 0 or null."""
    num = numerator.astype("float64")
    den = denominator.astype("float64")
    return (num / den).where(den > 0)


def sort_frame(
    frame: pd.DataFrame,
    by: Sequence[str],
    ascending: bool | Sequence[bool] = True,
) -> pd.DataFrame:
    """Sorted with a stable sort and a fresh index, nulls last."""
    if frame.empty:
        return frame.reset_index(drop=True)
    return frame.sort_values(
        list(by), ascending=ascending, kind="stable", na_position="last"
    ).reset_index(drop=True)


def ints(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Count columns as int64 with nulls read as 0 (an outer join's missing side)."""
    for column in columns:
        frame[column] = frame[column].fillna(0).astype("int64")
    return frame
