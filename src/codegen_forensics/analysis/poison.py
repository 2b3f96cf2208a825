"""Poison messages: what could not be decoded, per topic and decode status.

The loader keeps every message and records how its value decoded. Statuses fall in
three kinds: ``poison`` (not_utf8, not_json, tombstone, schema_invalid,
unknown_schema_version: no consumer can use the value; no topic of the catalog is
compacted, so a null value is no deletion marker), ``recovered`` (double_encoded,
enveloped, naive_timestamp: unwrapped or repaired on the way in, worth knowing about)
and ``other`` (unparsed_topic, anything new). ``ok`` and ``dlq`` rows are the
normal case and appear only in :func:`decode_status_counts`.
"""

from __future__ import annotations

import logging
from typing import cast

import ibis
import pandas as pd

from codegen_forensics.analysis._util import sort_frame
from codegen_forensics.analysis.context import Analysis

__all__ = [
    "POISON_STATUSES",
    "RECOVERED_STATUSES",
    "decode_status_counts",
    "poison_messages",
]

logger = logging.getLogger(__name__)

POISON_STATUSES = (
    "not_utf8",
    "not_json",
    "tombstone",
    "schema_invalid",
    "unknown_schema_version",
)
RECOVERED_STATUSES = ("double_encoded", "enveloped", "naive_timestamp")
NORMAL_STATUSES = ("ok", "dlq")
_PREVIEW_BYTES = 200


def kind(status: str | None) -> str:
    if status in POISON_STATUSES:
        return "poison"
    if status in RECOVERED_STATUSES:
        return "recovered"
    return "other"


def decode_status_counts(a: Analysis) -> pd.DataFrame:
    """Messages per topic and decode status, ok included.

    Columns: topic, decode_status (null when the loader recorded none), messages.
    """
    m = a.messages
    frame = a.execute(
        m.group_by(["topic", "decode_status"]).aggregate(messages=m.count())
    )
    return sort_frame(frame, ["topic", "decode_status"])


def poison_messages(a: Analysis, examples: int = 1) -> pd.DataFrame:
    """Counts of undecodable and repaired messages per topic and status, with examples.

    Columns: topic, decode_status, kind, messages, first_seen, last_seen, then for
    the ``examples`` lowest (partition, offset) of each pair: example_partition,
    example_offset, example_reason (the loader's decode message) and example_value
    (the first 200 bytes as text, or as ``0x`` hex when they are not UTF-8).
    Poison first, then by count.
    """
    m = a.messages
    bad = m.filter(~m.decode_status.isin(NORMAL_STATUSES) | m.decode_status.isnull())
    counts = a.execute(
        bad.group_by(["topic", "decode_status"]).aggregate(
            messages=bad.count(),
            first_seen=bad.timestamp.min(),
            last_seen=bad.timestamp.max(),
        )
    )
    rank = ibis.row_number().over(
        group_by=[bad.topic, bad.decode_status], order_by=[bad.partition, bad.offset]
    )
    picked = bad.mutate(_rank=rank)
    picked = picked.filter(picked._rank < examples).select(
        "topic",
        "decode_status",
        "_rank",
        example_partition=picked.partition,
        example_offset=picked.offset,
        example_reason=picked.decode_message,
        _value=picked.value,
    )
    found = a.execute(picked)
    found["example_value"] = found["_value"].map(_preview)
    found = found.drop(columns=["_value"])

    frame = counts.merge(found, on=["topic", "decode_status"], how="left")
    frame.insert(2, "kind", frame["decode_status"].map(kind))
    frame["_kind"] = frame["kind"].map({"poison": 0, "recovered": 1, "other": 2})
    frame = sort_frame(
        frame,
        ["_kind", "messages", "topic", "decode_status", "_rank"],
        [True, False, True, True, True],
    )
    return frame.drop(columns=["_kind", "_rank"])


def _preview(value: object) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    # a cell of the binary value column: bytes unless null (handled above)
    raw = bytes(cast("bytes", value))
    data = raw[:_PREVIEW_BYTES]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        cut = len(raw) > len(data) and exc.reason == "unexpected end of data"
        if cut:  # the preview ends inside a character of valid text
            return data[: exc.start].decode("utf-8")
        return "0x" + data.hex()
