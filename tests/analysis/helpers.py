"""Rows and tables for hand-built snapshots.

The ``build_snapshot`` fixture writes a small, complete snapshot directory from
dict rows with :class:`SnapshotWriter`. Message rows need only the columns a test
cares about: the rest are null, ``category``/``operation`` come from the topic name,
offsets count up per partition and the Kafka timestamp defaults to the event
timestamp.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from codegen_forensics.events.topics import parse_topic
from codegen_forensics.snapshot import EVENT_LOGS_SCHEMA, KAFKA_MESSAGES_SCHEMA

T0 = datetime(2026, 1, 5, 10, 0, 0, tzinfo=UTC)

REQ = "omninode_codegen_request_analyze_v1"
RESP = "omninode_codegen_response_analyze_v1"
STATUS = "omninode_codegen_status_session_v1"
DLQ = "omninode_codegen_dlq_analyze_v1"
REQ_V = "omninode_codegen_request_validate_v1"
RESP_V = "omninode_codegen_response_validate_v1"


def at(seconds: float = 0, **kwargs: float) -> datetime:
    """A time ``seconds`` (plus any timedelta keywords) after T0."""
    return T0 + timedelta(seconds=seconds, **kwargs)


def uid(n: int) -> str:
    """A canonical lowercase UUID made from a small number."""
    return f"00000000-0000-4000-8000-{n:012d}"


def message_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """A KAFKA_MESSAGES_SCHEMA table from dict rows, filling what they leave out."""
    counters: dict[tuple[str, int], itertools.count[int]] = {}
    filled = []
    for row in rows:
        row = dict(row)
        topic = row.setdefault("topic", REQ)
        name = parse_topic(topic)
        row.setdefault("category", name.category)
        row.setdefault("operation", name.operation)
        row.setdefault("partition", 0)
        if "offset" not in row:
            counter = counters.setdefault((topic, row["partition"]), itertools.count())
            row["offset"] = next(counter)
        row.setdefault("timestamp", row.get("event_timestamp"))
        row.setdefault("timestamp_type", "create_time")
        row.setdefault("decode_status", "dlq" if name.category == "dlq" else "ok")
        value = row.get("value")
        if isinstance(value, str):
            row["value"] = value.encode()
        if row.get("value") is not None:
            row.setdefault("value_size", len(row["value"]))
        if row.get("key") is not None:
            row.setdefault("key_size", len(row["key"]))
        unknown = set(row) - set(KAFKA_MESSAGES_SCHEMA.names)
        assert not unknown, f"unknown message columns {unknown}"
        filled.append(row)
    return table_of(filled, KAFKA_MESSAGES_SCHEMA)


def event_log_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """An EVENT_LOGS_SCHEMA table from dict rows, filling what they leave out."""
    filled = []
    for i, row in enumerate(rows):
        row = dict(row)
        row.setdefault("event_id", uid(900_000 + i))
        row.setdefault("payload", "{}")
        row.setdefault("metadata", "{}")
        unknown = set(row) - set(EVENT_LOGS_SCHEMA.names)
        assert not unknown, f"unknown event_logs columns {unknown}"
        filled.append(row)
    return table_of(filled, EVENT_LOGS_SCHEMA)


def table_of(rows: Sequence[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    columns = {
        name: pa.array([row.get(name) for row in rows], type=schema.field(name).type)
        for name in schema.names
    }
    return pa.table(columns, schema=schema)


def naive(table: pa.Table, drop: Sequence[str] = ()) -> pa.Table:
    """The same table as an older writer left it: timestamps without a time zone."""
    fields = []
    for f in table.schema:
        if pa.types.is_timestamp(f.type):
            fields.append(pa.field(f.name, pa.timestamp("us")))
        else:
            fields.append(f)
    out = table.cast(pa.schema(fields))
    return out.drop_columns(list(drop))
