"""Objects a notebook displays: titled tables and key numbers.

Each renders as HTML in JupyterLab and in exported reports. :class:`KeyNumbers` also
renders as JSON, so tests and tools can read a report's headline figures from the
executed notebook without parsing HTML.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from codegen_forensics.report.redact import Redaction, redact_frame

__all__ = [
    "KeyNumbers",
    "Note",
    "Table",
    "format_frame",
    "format_value",
    "html_table",
    "label",
    "show",
]

MAX_TEXT = 160


def format_value(column: str, value: Any) -> str:
    """A cell as a reader wants it: units on durations, rates as percentages."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value is pd.NaT:
        return "–"
    if isinstance(value, pd.Timestamp | datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return "yes" if value else "no"
    name = column.lower()
    if isinstance(value, int | float) and not isinstance(value, bool):
        if name.endswith("_ms"):
            if abs(value) < 1000:
                return f"{value:,.0f} ms"
            return _duration(value / 1000, f"{value / 1000:,.2f} s")
        if name.endswith("_s"):
            return _duration(value, f"{value:,.1f} s")
        if "rate" in name or name in ("share", "sampled_fraction"):
            return f"{value * 100:.2f} %"
        if name == "ratio":
            return f"{value:.2f}x"
        if float(value).is_integer():
            return f"{int(value):,}"
        return f"{value:,.3f}"
    text = str(value)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _duration(seconds: float, short: str) -> str:
    """Seconds in the unit a reader takes in at a glance: s, min, h or d."""
    size = abs(seconds)
    if size < 120:
        return short
    if size < 2 * 3600:
        return f"{seconds / 60:,.1f} min"
    if size < 2 * 86400:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds / 86400:,.1f} d"


def format_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell formatted for reading, column names with spaces."""
    out = pd.DataFrame(
        {
            column.replace("_", " "): [format_value(column, v) for v in frame[column]]
            for column in frame.columns
        }
    )
    return out


def _is_number(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(
        series
    )


def _is_time(series: pd.Series) -> bool:
    return pd.api.types.is_datetime64_any_dtype(series)


def header(column: str, series: pd.Series) -> str:
    """A column's title: words, not underscores; no unit suffix where the cells
    carry their own unit (durations are shown in ms or s as they fit)."""
    return label(column, _is_number(series))


def label(name: str, numeric: bool = True) -> str:
    """A figure's name for reading: words, and no ``_ms``/``_s`` suffix on a
    number, whose formatted value carries its own unit."""
    if numeric and name.endswith(("_ms", "_s")):
        name = name.rsplit("_", 1)[0]
    return name.replace("_", " ")


# Text columns holding one name each: broken mid-name they read badly.
_NAME_COLUMNS = frozenset(
    {"source", "status", "event_name", "decode_status", "kind", "operation"}
)


def _is_name(column: str) -> bool:
    return column.endswith(("_id", "topic", "error_type")) or column in _NAME_COLUMNS


def html_table(frame: pd.DataFrame) -> str:
    """An HTML table: numbers right-aligned, text left, times on one line."""
    styles = []
    for column in frame.columns:
        series = frame[column]
        if _is_number(series):
            styles.append("text-align:right;white-space:nowrap")
        elif _is_time(series) or _is_name(str(column)):
            styles.append("text-align:left;white-space:nowrap")
        else:
            styles.append("text-align:left")
    head = "".join(
        f"<th style='{style}'>{html.escape(header(str(column), frame[column]))}</th>"
        for column, style in zip(frame.columns, styles, strict=True)
    )
    body = []
    for row in frame.itertuples(index=False):
        cells = "".join(
            f"<td style='{style}'>{html.escape(format_value(str(column), value))}</td>"
            for column, value, style in zip(frame.columns, row, styles, strict=True)
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        "<table class='forensics'><thead><tr>"
        + head
        + "</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table>"
    )


@dataclass
class Table:
    """A titled table, formatted and redacted, with an optional note below the title."""

    title: str
    frame: pd.DataFrame
    note: str = ""
    columns: Sequence[str] | None = None
    limit: int | None = 50
    redaction: Redaction = "none"

    def shown(self) -> pd.DataFrame:
        frame = self.frame
        if self.columns is not None:
            frame = frame[[c for c in self.columns if c in frame.columns]]
        frame = redact_frame(frame, self.redaction)
        if self.limit is not None:
            frame = frame.head(self.limit)
        return frame

    def _repr_html_(self) -> str:
        parts = [f"<h4>{html.escape(self.title)}</h4>"]
        if self.note:
            parts.append(f"<p><em>{html.escape(self.note)}</em></p>")
        if self.frame.empty:
            parts.append("<p>None.</p>")
            return "\n".join(parts)
        shown = self.shown()
        parts.append(html_table(shown))
        if self.limit is not None and len(self.frame) > self.limit:
            parts.append(
                f"<p><em>First {self.limit} of {len(self.frame):,} rows; every row "
                "is in the exported tables.</em></p>"
            )
        return "\n".join(parts)

    def __repr__(self) -> str:
        return f"{self.title}\n{format_frame(self.shown()).to_string(index=False)}"


@dataclass
class KeyNumbers:
    """Named figures shown as a compact table, and readable as JSON."""

    title: str
    numbers: Mapping[str, Any]
    notes: Mapping[str, str] = field(default_factory=dict)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(_key_label(k, v))}</th>"
            f"<td>{html.escape(format_value(k, v))}</td>"
            f"<td><em>{html.escape(self.notes.get(k, ''))}</em></td></tr>"
            for k, v in self.numbers.items()
        )
        return f"<h4>{html.escape(self.title)}</h4><table>{rows}</table>"

    def _repr_json_(self) -> dict[str, Any]:
        return {"title": self.title, "numbers": _jsonable(dict(self.numbers))}

    def __repr__(self) -> str:
        return "\n".join(
            [self.title]
            + [
                f"  {_key_label(k, v)}: {format_value(k, v)}"
                for k, v in self.numbers.items()
            ]
        )


def _key_label(key: str, value: Any) -> str:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return label(key, numeric)


@dataclass
class Note:
    """A paragraph of text, for context a table or plot needs."""

    text: str

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(self.text)}</p>"

    def __repr__(self) -> str:
        return self.text


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def show(items: Sequence[Any]) -> None:
    """Display each item of a report section in the notebook."""
    from IPython.display import display

    for item in items:
        display(item)
