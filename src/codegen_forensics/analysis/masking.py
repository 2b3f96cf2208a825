"""Error-message templates: the variable parts of a message masked by fixed rules.

:func:`mask_message` replaces, in this order, quoted values, UUIDs, timestamps and
dates, URLs, IP addresses (with their port), host:port pairs, file paths, hex
strings, numbers with a unit (the unit is kept: ``30s`` becomes ``<num>s``), ids
(tokens of six or more characters mixing letters and at least two digits) and other
numbers, then collapses blanks. The rules are plain regular expressions applied
in a fixed order, so the same message always gives the same template, today and next
week; :func:`group_id` hashes an error type and a template into a short stable id.
Changing a rule changes ids: :data:`MASKER_VERSION` says which rules made an id.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

__all__ = ["MASKER_VERSION", "NO_MESSAGE", "group_id", "mask_message"]

MASKER_VERSION = 1
NO_MESSAGE = "<no message>"

# Tokens with two or more digits that name a format or type, not an instance.
_KEEP_TOKENS = frozenset(
    {
        "base64",
        "float16",
        "float32",
        "float64",
        "int16",
        "int32",
        "int64",
        "latin1",
        "sha224",
        "sha256",
        "sha384",
        "sha512",
        "uint16",
        "uint32",
        "uint64",
        "utf16",
        "utf32",
        "x86_64",
    }
)

_UNITS = (
    r"ms|us|µs|ns|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?"
    r"|b|bytes?|kb|mb|gb|tb|kib|mib|gib|tib"
)


def _ip(match: re.Match[str]) -> str:
    return "<ip>:<port>" if match.group("port") else "<ip>"


def _id(match: re.Match[str]) -> str:
    token = match.group(0)
    digits = sum(c.isdigit() for c in token)
    if (
        len(token) >= 6
        and digits >= 2
        and any(c.isalpha() for c in token)
        and token.lower() not in _KEEP_TOKENS
    ):
        return "<id>"
    return token


def _unit(match: re.Match[str]) -> str:
    return "<num>" + match.group("unit")


_Replacement = str | Callable[[re.Match[str]], str]

_RULES: tuple[tuple[str, re.Pattern[str], _Replacement], ...] = (
    ("single-quoted", re.compile(r"(?<![\w\\])'[^'\n]*'(?!\w)"), "'<value>'"),
    ("double-quoted", re.compile(r'(?<![\w\\])"[^"\n]*"(?!\w)'), '"<value>"'),
    (
        "uuid",
        re.compile(
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}"
            r"-[0-9a-fA-F]{12}\b"
        ),
        "<uuid>",
    ),
    (
        "timestamp",
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
            r"(?:Z|[+-]\d{2}:?\d{2}\b)?"
        ),
        "<timestamp>",
    ),
    ("date", re.compile(r"\b\d{4}-\d{2}-\d{2}\b"), "<date>"),
    ("url", re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+"), "<url>"),
    (
        "ip",
        re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::(?P<port>\d{1,5}))?\b"),
        _ip,
    ),
    (
        "host:port",
        re.compile(
            r"\b(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
            r"|[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)+):\d{1,5}\b"
        ),
        "<host>:<port>",
    ),
    (
        "path",
        re.compile(r"(?<![\w/<])(?:/[\w.@+-]+){2,}/?|\b[A-Za-z]:\\[^\s'\"]+"),
        "<path>",
    ),
    (
        "hex",
        re.compile(
            r"\b0[xX][0-9a-fA-F]+\b"
            r"|\b(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b"
        ),
        "<hex>",
    ),
    (
        "number with unit",
        re.compile(
            r"(?<![\w.])\d+(?:\.\d+)?(?P<unit>\s?(?:" + _UNITS + r")\b|%)",
            re.IGNORECASE,
        ),
        _unit,
    ),
    ("id", re.compile(r"\b[A-Za-z0-9]+(?:[_-][A-Za-z0-9]+)*\b"), _id),
    ("number", re.compile(r"(?<![\w.])(?<!utf-)\d+(?:\.\d+)?(?!\w|\.\d)"), "<num>"),
    ("blanks", re.compile(r"\s+"), " "),
)


def mask_message(message: str | None) -> str:
    """The template of an error message: its variable parts masked."""
    if message is None or not message.strip():
        return NO_MESSAGE
    text = message
    for _name, pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text.strip()


def group_id(error_type: str | None, template: str) -> str:
    """A 12-character id for an (error type, template) pair, stable across runs."""
    key = f"{error_type or ''}\x00{template}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
