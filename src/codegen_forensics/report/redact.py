"""Redaction of sensitive content in everything a report exports.

PRD text, generated code and stack traces can hold customer material. With redaction
``drop`` they are removed; with ``truncate`` only their first characters remain. This
applies to columns of those names, to the same keys inside JSON text (payloads and
original events), and to any column that holds such JSON.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import pandas as pd

from codegen_forensics.errors import InputError

__all__ = ["REDACTED_KEYS", "Redaction", "redact_frame", "redact_json", "redact_value"]

Redaction = Literal["none", "truncate", "drop"]
REDACTIONS: tuple[Redaction, ...] = ("none", "truncate", "drop")
REDACTED_KEYS = frozenset(
    {"prd_content", "code_content", "stack_trace", "dlq_stack_trace"}
)
KEEP_CHARS = 24


def check_redaction(mode: str) -> Redaction:
    if mode not in REDACTIONS:
        raise InputError(
            f"redaction {mode!r} is not known; expected one of {', '.join(REDACTIONS)}"
        )
    return mode


def _shorten(text: str) -> str:
    if len(text) <= KEEP_CHARS:
        return text
    return f"{text[:KEEP_CHARS]}… [{len(text) - KEEP_CHARS} characters redacted]"


def redact_value(value: Any, mode: Redaction) -> Any:
    """A copy of a decoded JSON value with sensitive keys dropped or truncated."""
    if mode == "none":
        return value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in REDACTED_KEYS:
                if mode == "truncate" and isinstance(item, str):
                    out[key] = _shorten(item)
                elif mode == "truncate":
                    out[key] = item
                continue
            out[key] = redact_value(item, mode)
        return out
    if isinstance(value, list):
        return [redact_value(item, mode) for item in value]
    return value


def redact_json(text: str | None, mode: Redaction) -> str | None:
    """Redact JSON text; text that is not JSON is returned as it was."""
    if text is None or mode == "none":
        return text
    try:
        decoded = json.loads(text)
    except (TypeError, ValueError):
        return text
    if not isinstance(decoded, dict | list):
        return text
    return json.dumps(
        redact_value(decoded, mode),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def redact_frame(frame: pd.DataFrame, mode: Redaction) -> pd.DataFrame:
    """A copy of ``frame`` safe to export under ``mode``."""
    mode = check_redaction(mode)
    if mode == "none":
        return frame
    out = frame.copy()
    for column in list(out.columns):
        if column in REDACTED_KEYS:
            if mode == "drop":
                out = out.drop(columns=column)
            else:
                out[column] = out[column].map(
                    lambda v: _shorten(v) if isinstance(v, str) else v
                )
            continue
        series = out[column]
        if series.dtype == object or pd.api.types.is_string_dtype(series):
            sample = series.dropna().astype(str)
            if sample.str.startswith(("{", "[")).any():
                out[column] = series.map(
                    lambda v: redact_json(v, mode) if isinstance(v, str) else v
                )
    return out
