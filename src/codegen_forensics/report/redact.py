"""Redaction of sensitive content in everything a report exports.

PRD text, generated code and stack traces can hold customer material. With redaction
``drop`` they are removed; with ``truncate`` only their first characters remain. This
applies to columns of those names, to the same keys inside JSON text (payloads and
original events), and to any column that holds such JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import pandas as pd

from codegen_forensics.errors import InputError

__all__ = [
    "REDACTED_KEYS",
    "Redaction",
    "redact_frame",
    "redact_json",
    "redact_text",
    "redact_value",
]

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


# A sensitive key and its string value inside text that is not whole JSON (a value
# cut short for display, a message that failed to decode). The value may be cut off.
_KEY_IN_TEXT = re.compile(
    r'("(?:' + "|".join(sorted(REDACTED_KEYS)) + r')"\s*:\s*)"(?:[^"\\]|\\.)*(?:"|$)'
)


def redact_text(text: str, mode: Redaction) -> str:
    """Redact sensitive key-value pairs found in text that is not valid JSON."""
    if mode == "none":
        return text

    def replace(match: re.Match[str]) -> str:
        if mode == "drop":
            return f'{match.group(1)}"[redacted]"'
        value = match.group(0)[len(match.group(1)) :]
        return f"{match.group(1)}{_shorten(value)}"

    return _KEY_IN_TEXT.sub(replace, text)


def redact_json(text: str | None, mode: Redaction) -> str | None:
    """Redact JSON text; in other text, redact the sensitive pairs it contains."""
    if text is None or mode == "none":
        return text
    try:
        decoded = json.loads(text)
    except (TypeError, ValueError):
        return redact_text(text, mode)
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
            text = series.dropna().astype(str)
            mentions = text.str.contains("|".join(REDACTED_KEYS), regex=True)
            if text.str.startswith(("{", "[")).any() or mentions.any():
                out[column] = series.map(
                    lambda v: redact_json(v, mode) if isinstance(v, str) else v
                )
    return out
