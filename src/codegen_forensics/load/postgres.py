"""Read-only snapshots of Postgres tables into the snapshot directory.

Each table is streamed with ``COPY (SELECT ...) TO STDOUT`` as CSV inside one
read-only, repeatable-read transaction, ordered by its time column and primary key;
a thread hands it to Arrow's CSV reader in blocks of rows, and it is written in chunks
of a fixed number of rows, so memory is bounded by the chunk size. Values are
normalised on the way:

- ``timestamptz`` becomes time-zone-aware UTC whatever the session time zone;
  ``timestamp`` without time zone is read as UTC, and the manifest flags the column;
- ``json`` and ``jsonb`` become canonical JSON text whatever their shape (object,
  array, scalar, JSON null); a JSON string that holds JSON text is unwrapped and
  counted; SQL NULL stays null;
- ``uuid`` becomes the canonical lowercase string.

``event_logs`` is written with the columns of
:data:`~codegen_forensics.snapshot.EVENT_LOGS_SCHEMA` first; the older variant
(``correlation_id`` not null, an extra ``created_at``) is accepted and its differences
reported. A missing, empty or stale table is a finding in the manifest, not an error.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import sqlalchemy as sa
from psycopg import sql

from codegen_forensics.errors import InputError, PostgresError, SnapshotError
from codegen_forensics.events.decode import canonical_json, parse_canonical
from codegen_forensics.settings import PostgresSettings
from codegen_forensics.snapshot import (
    EVENT_LOGS_SCHEMA,
    TS,
    SnapshotWriter,
    system_memory_pool,
    write_parquet_file,
)

__all__ = ["PostgresSnapshotOptions", "snapshot_postgres_into"]

logger = logging.getLogger(__name__)

_PLAN_KEY = "postgres_plan"
_CHUNKS_KEY = "postgres_chunks"
_TIME_COLUMNS = ("timestamp", "created_at", "session_start")

# The event_logs columns as the field notes give them: (type, nullable).
_EVENT_LOGS_EXPECTED: dict[str, tuple[str, bool]] = {
    "event_id": ("uuid", False),
    "session_id": ("uuid", False),
    "correlation_id": ("uuid", True),
    "event_type": ("varchar", False),
    "topic": ("varchar", False),
    "timestamp": ("timestamptz", False),
    "status": ("varchar", False),
    "processing_time_ms": ("int4", True),
    "payload": ("jsonb", False),
    "metadata": ("jsonb", False),
}


@dataclass(frozen=True)
class PostgresSnapshotOptions:
    """Which tables to read, over which time window.

    ``since`` is inclusive and ``until`` exclusive, on each table's time column
    (``timestamp``, else ``created_at``, else ``session_start``, or as given in
    ``time_columns``). ``until`` defaults to the database's clock when the snapshot
    starts. A table whose newest row is older than ``stale_after`` is reported stale.
    """

    tables: tuple[str, ...] = ("event_logs",)
    schema: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    time_columns: Mapping[str, str] = field(default_factory=dict)
    chunk_rows: int = 100_000
    stale_after: timedelta = timedelta(hours=24)

    def __post_init__(self) -> None:
        for name, value in (("since", self.since), ("until", self.until)):
            if value is not None and value.tzinfo is None:
                raise InputError(
                    f"{name}={value.isoformat()!r} has no time zone; give an aware "
                    "datetime such as 2025-10-14T00:00:00+00:00"
                )
        if self.since and self.until and self.since >= self.until:
            raise InputError(
                f"since={self.since.isoformat()} must be before "
                f"until={self.until.isoformat()}"
            )
        if self.chunk_rows < 1:
            raise InputError(f"chunk_rows={self.chunk_rows} must be at least 1")
        if not self.tables:
            raise InputError("tables is empty; name at least one table")

    def resume_key(self) -> dict[str, Any]:
        return {
            "tables": list(self.tables),
            "schema": self.schema,
            "since": _iso(self.since),
            "until": _iso(self.until),
            "time_columns": dict(self.time_columns),
            "chunk_rows": self.chunk_rows,
        }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


@dataclass(frozen=True)
class _Column:
    name: str
    type_name: str  # pg_type.typname: int4, timestamptz, _text ...
    formatted: str  # format_type(): integer, timestamp with time zone ...
    not_null: bool
    category: str  # pg_type.typcategory: A for arrays ...


# How each Postgres type is selected, read from CSV and stored: (SQL expression,
# the Arrow type COPY's CSV text is read as, the kind of conversion after that).
# Timestamps travel as epoch microseconds, which no session setting (DateStyle,
# TimeZone) changes; values Arrow cannot read from CSV travel as text or JSON.
_CSV_TYPES: dict[str, pa.DataType] = {
    "time": pa.int64(),
    "date": pa.int32(),
    "json": pa.string(),
    "bytea": pa.string(),
    "array": pa.string(),
}


def _column_plan(column: _Column) -> tuple[sql.Composable, pa.DataType, str]:
    ident = sql.Identifier(column.name)
    kind = column.type_name
    if kind in ("timestamptz", "timestamp"):
        # extract(epoch) of a timestamp without time zone reads it as UTC.
        expr = sql.SQL(
            "CASE WHEN isfinite({c}) THEN (extract(epoch FROM {c}) * 1000000)::int8 END"
        )
        return expr.format(c=ident), _CSV_TYPES["time"], "time"
    if kind in ("json", "jsonb"):
        return sql.SQL("{c}::text").format(c=ident), _CSV_TYPES["json"], "json"
    if kind in ("int2", "int4", "int8"):
        return sql.SQL("{c}::int8").format(c=ident), pa.int64(), "plain"
    if kind in ("float4", "float8"):
        return sql.SQL("{c}::float8").format(c=ident), pa.float64(), "plain"
    if kind == "bool":
        return ident, pa.bool_(), "plain"
    if kind == "bytea":
        hex_text = sql.SQL("encode({c}, 'hex')").format(c=ident)
        return hex_text, _CSV_TYPES["bytea"], "bytea"
    if kind == "date":
        expr = sql.SQL("CASE WHEN isfinite({c}) THEN {c} - DATE '1970-01-01' END")
        return expr.format(c=ident), _CSV_TYPES["date"], "date"
    if column.category == "A":
        as_json = sql.SQL("to_json({c}::text[])::text").format(c=ident)
        return as_json, _CSV_TYPES["array"], "array"
    return sql.SQL("{c}::text").format(c=ident), pa.string(), "plain"


_STORED_TYPES: dict[str, pa.DataType] = {
    "time": TS,
    "date": pa.date32(),
    "json": pa.string(),
    "bytea": pa.binary(),
    "array": pa.list_(pa.string()),
}

# Texts that need more than orjson. A JSON text holding a float, or an integer too
# long for 64 bits, has a digit before ".", "e" or "E", or 19 digits in a row,
# inside a string or not; a text with neither holds only integers orjson reads as
# ints, so its quick canonical text is right without looking for floats. A JSON
# string (the last alternative) may hold JSON text to unwrap.
_NOT_QUICK = r'[0-9][.eE]|[0-9]{19}|^[ \t\n\r]*"'


class _JsonCanonicaliser:
    """Canonical JSON text of one json/jsonb column's values, read as text.

    Oddities are counted into ``counts``, which the caller sets per chunk.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def column(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The canonical text of every value, each distinct value worked out once.

        Texts that hold no float, long integer or string take orjson alone, with no
        Python code of ours per value; the others take :meth:`__call__`'s way.
        """
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        encoded = values.dictionary_encode()
        distinct = encoded.dictionary
        slow = pc.match_substring_regex(distinct, _NOT_QUICK)
        quick = pc.invert(slow)
        slow_at = pc.indices_nonzero(slow).to_pylist()
        canonical: list[bytes | None]
        sort = orjson.OPT_SORT_KEYS
        try:
            done = [
                orjson.dumps(orjson.loads(text), option=sort)
                for text in distinct.filter(quick).to_pylist()
            ]
        except (ValueError, TypeError):
            # orjson refuses one of them: each goes the way that decides.
            canonical = [None] * len(distinct)
            slow_at = list(range(len(distinct)))
        else:
            if slow_at:
                canonical = [None] * len(distinct)
                for i, text in zip(
                    pc.indices_nonzero(quick).to_pylist(), done, strict=True
                ):
                    canonical[i] = text
            else:
                canonical = list(done)
        if slow_at:
            self._slow(canonical, slow_at, distinct, encoded.indices)
        text_array = pa.array(canonical, type=pa.binary()).cast(pa.string())
        return text_array.take(encoded.indices)

    def _slow(
        self,
        canonical: list[bytes | None],
        at: list[int],
        distinct: pa.Array,
        indices: pa.Array,
    ) -> None:
        """Fill ``canonical`` at ``at``, counting oddities once per row."""
        occurrences: dict[int, int] | None = None
        for i, text in zip(at, distinct.take(at).to_pylist(), strict=True):
            found: Counter[str] = Counter()
            result = self._one(text, found)
            canonical[i] = None if result is None else result.encode()
            if not found:
                continue
            if occurrences is None:
                counted = pc.value_counts(indices)
                occurrences = dict(
                    zip(
                        counted.field("values").to_pylist(),
                        counted.field("counts").to_pylist(),
                        strict=True,
                    )
                )
            for key, count in found.items():
                self.counts[key] += count * occurrences[i]

    def __call__(self, text: str | None) -> str | None:
        return self._one(text, self.counts)

    @staticmethod
    def _one(text: str | None, counts: Counter[str]) -> str | None:
        if text is None:
            return None
        parsed = parse_canonical(text)
        if parsed is None or type(parsed[0]) is str:
            # Strings (which may hold JSON text) and anything unusual.
            return _canonical(text, counts)
        return parsed[1]


def _canonical(text: str | None, counts: Counter[str]) -> str | None:
    """Canonical JSON text of a json/jsonb value read as text."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        counts["json_unparseable"] += 1
        return text
    if isinstance(value, str):
        try:
            inner = json.loads(value)
        except ValueError:
            inner = None
        if isinstance(inner, dict | list):
            counts["json_text_unwrapped"] += 1
            value = inner
    try:
        return canonical_json(value)
    except ValueError:
        counts["json_not_canonical"] += 1
        return text


@dataclass
class _TablePlan:
    name: str
    exists: bool
    columns: list[_Column]
    primary_key: list[str]
    time_column: str | None
    since: str | None
    until: str | None
    findings: list[str]
    differences: list[str]
    newest: str | None
    has_rows: bool


def _introspect(
    conn: sa.Connection, schema: str | None, table: str
) -> tuple[str | None, list[_Column], list[str]]:
    qualified = f'"{schema}"."{table}"' if schema else f'"{table}"'
    oid = conn.execute(
        sa.text("SELECT to_regclass(:name)::oid"), {"name": qualified}
    ).scalar()
    if oid is None:
        return None, [], []
    rows = conn.execute(
        sa.text(
            "SELECT a.attname, t.typname, format_type(a.atttypid, a.atttypmod), "
            "a.attnotnull, t.typcategory FROM pg_attribute a "
            "JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE a.attrelid = :oid AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum"
        ),
        {"oid": oid},
    ).all()
    columns = [_Column(r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows]
    pk = conn.execute(
        sa.text(
            "SELECT a.attname FROM pg_index i "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = :oid AND i.indisprimary ORDER BY a.attnum"
        ),
        {"oid": oid},
    ).scalars()
    return qualified, columns, list(pk)


def _event_logs_differences(columns: Sequence[_Column]) -> list[str]:
    have = {c.name: c for c in columns}
    differences = []
    for name, (kind, nullable) in _EVENT_LOGS_EXPECTED.items():
        column = have.get(name)
        if column is None:
            differences.append(f"column {name} is missing (read as null)")
            continue
        if column.type_name != kind and not (
            kind == "varchar" and column.type_name == "text"
        ):
            differences.append(f"column {name} is {column.formatted}, not {kind}")
        if nullable and column.not_null:
            differences.append(f"column {name} is NOT NULL (older variant)")
    for name in have:
        if name not in _EVENT_LOGS_EXPECTED:
            note = " (older variant)" if name == "created_at" else ""
            differences.append(f"extra column {name}{note}")
    return differences


def _plan_table(
    conn: sa.Connection,
    options: PostgresSnapshotOptions,
    table: str,
    now: datetime,
    previous: Mapping[str, Any] | None,
) -> _TablePlan:
    qualified, columns, pk = _introspect(conn, options.schema, table)
    if qualified is None:
        return _TablePlan(
            table,
            False,
            [],
            [],
            None,
            None,
            None,
            [f"table {table} does not exist"],
            [],
            None,
            False,
        )
    findings: list[str] = []
    differences = _event_logs_differences(columns) if table == "event_logs" else []
    by_name = {c.name: c for c in columns}
    wanted = options.time_columns.get(table)
    if wanted is not None and wanted not in by_name:
        raise InputError(
            f"time column {wanted!r} is not a column of {table}; it has "
            f"{', '.join(by_name)}"
        )
    candidates = [wanted] if wanted else list(_TIME_COLUMNS)
    time_column = next(
        (
            c
            for c in candidates
            if c in by_name and by_name[c].type_name in ("timestamptz", "timestamp")
        ),
        None,
    )
    for column in columns:
        if column.type_name == "timestamp":
            findings.append(
                f"column {column.name} stores timestamps without time zone; read as UTC"
            )

    since = options.since
    until = options.until or now
    if previous and previous.get("until") and options.since is None:
        since = datetime.fromisoformat(previous["until"])
    if time_column is None and (options.since or options.until):
        findings.append(f"{table} has no time column; the time window is not applied")

    newest = None
    has_rows = bool(
        conn.execute(sa.text(f"SELECT EXISTS (SELECT 1 FROM {qualified})")).scalar()
    )
    if not has_rows:
        findings.append(f"table {table} is empty")
    elif time_column is not None:
        expr = _utc_expr(by_name[time_column])
        newest_value = conn.execute(
            sa.text(f"SELECT max({expr}) FROM {qualified}")
        ).scalar()
        if newest_value is not None:
            newest_utc = newest_value.replace(tzinfo=UTC)
            newest = newest_utc.isoformat()
            if now - newest_utc > options.stale_after:
                findings.append(
                    f"table {table} is stale: its newest row ({newest}) is "
                    f"{_hours(now - newest_utc)} older than the snapshot"
                )
    return _TablePlan(
        table,
        True,
        columns,
        pk,
        time_column,
        _iso(since) if time_column else None,
        _iso(until) if time_column else None,
        findings,
        differences,
        newest,
        has_rows,
    )


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} hours" if hours < 48 else f"{hours / 24:.1f} days"


def _utc_expr(column: _Column) -> str:
    name = '"' + column.name.replace('"', '""') + '"'
    if column.type_name == "timestamptz":
        return f"({name} AT TIME ZONE 'UTC')"
    return name


Output = tuple[str, pa.DataType, str]  # column name, CSV type, conversion


def _table_select(
    plan: _TablePlan, schema: str | None, resume: list[Any] | None
) -> tuple[sql.Composed, list[Output]]:
    exprs, outputs = [], []
    for column in plan.columns:
        expr, csv_type, kind = _column_plan(column)
        exprs.append(
            sql.SQL("{e} AS {n}").format(e=expr, n=sql.Identifier(column.name))
        )
        outputs.append((column.name, csv_type, kind))
    by_name = {c.name: c for c in plan.columns}
    target = sql.Identifier(schema, plan.name) if schema else sql.Identifier(plan.name)
    src = "src"
    where: list[sql.Composable] = []
    key_columns: list[str] = []
    if plan.time_column:
        key_columns.append(plan.time_column)
    key_columns += [k for k in plan.primary_key if k not in key_columns]
    if plan.time_column:
        tc = by_name[plan.time_column]
        ident = sql.Identifier(src, tc.name)
        cast = sql.SQL("timestamptz" if tc.type_name == "timestamptz" else "timestamp")
        for bound, op in ((plan.since, ">="), (plan.until, "<")):
            if bound is not None:
                value = datetime.fromisoformat(bound)
                if tc.type_name == "timestamp":
                    value = value.astimezone(UTC).replace(tzinfo=None)
                where.append(
                    sql.SQL("{c} " + op + " {v}::{t}").format(
                        c=ident, v=sql.Literal(value), t=cast
                    )
                )
    if resume is not None and key_columns:
        left = sql.SQL(", ").join(sql.Identifier(src, k) for k in key_columns)
        right = []
        for name, value in zip(key_columns, resume, strict=True):
            column = by_name[name]
            if column.type_name == "timestamptz":
                right.append(sql.SQL("{v}::timestamptz").format(v=sql.Literal(value)))
            elif column.type_name == "timestamp":
                right.append(sql.SQL("{v}::timestamp").format(v=sql.Literal(value)))
            elif column.type_name == "bytea":
                # Read as hex text, like the column itself.
                right.append(sql.SQL("decode({v}, 'hex')").format(v=sql.Literal(value)))
            else:
                right.append(
                    sql.SQL("{v}::{t}").format(
                        v=sql.Literal(value), t=sql.SQL(column.formatted)
                    )
                )
        where.append(
            sql.SQL("({l}) > ({r})").format(l=left, r=sql.SQL(", ").join(right))
        )
    order = [sql.Identifier(src, k) for k in key_columns]
    query = sql.SQL("SELECT {exprs} FROM {target} AS {src}").format(
        exprs=sql.SQL(", ").join(exprs), target=target, src=sql.Identifier(src)
    )
    if where:
        query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
    if order:
        query += sql.SQL(" ORDER BY ") + sql.SQL(", ").join(order)
    copy = sql.SQL("COPY ({q}) TO STDOUT (FORMAT csv, ENCODING 'UTF8')").format(q=query)
    return copy, outputs


def _key_text(value: Any, column: _Column) -> Any:
    """A key value as read from CSV, as JSON-safe text or number for the next query."""
    if value is None:
        return None
    if column.type_name in ("timestamptz", "timestamp"):
        # Epoch microseconds as read; written back as ISO text.
        moment = _EPOCH + timedelta(microseconds=value)
        if column.type_name == "timestamptz":
            return moment.replace(tzinfo=UTC).isoformat()
        return moment.isoformat()
    if column.type_name == "date":
        return (_EPOCH.date() + timedelta(days=value)).isoformat()
    return value


_EPOCH = datetime(1970, 1, 1)


def _arrow_table(
    raw: pa.Table,
    outputs: list[Output],
    table: str,
    canonicalisers: Mapping[str, _JsonCanonicaliser],
) -> pa.Table:
    """The rows as stored: values converted from their CSV form, columns ordered."""
    arrays: dict[str, pa.Array | pa.ChunkedArray] = {}
    for name, _, kind in outputs:
        column = raw.column(name)
        stored = _STORED_TYPES.get(kind)
        if kind == "json":
            arrays[name] = canonicalisers[name].column(column)
        elif kind == "bytea":
            arrays[name] = pa.array(
                [None if v is None else bytes.fromhex(v) for v in column.to_pylist()],
                type=stored,
            )
        elif kind == "array":
            arrays[name] = pa.array(
                [None if v is None else orjson.loads(v) for v in column.to_pylist()],
                type=stored,
            )
        elif stored is not None:
            arrays[name] = column.cast(stored)
        else:
            arrays[name] = column
    if table == "event_logs":
        names = list(EVENT_LOGS_SCHEMA.names)
        fields = list(EVENT_LOGS_SCHEMA)
        for name, _, _ in outputs:
            if name not in EVENT_LOGS_SCHEMA.names:
                names.append(name)
                fields.append(pa.field(name, arrays[name].type))
        columns_out = []
        for schema_field in fields:
            if schema_field.name in arrays:
                columns_out.append(arrays[schema_field.name].cast(schema_field.type))
            else:
                columns_out.append(pa.nulls(raw.num_rows, schema_field.type))
        return pa.Table.from_arrays(columns_out, schema=pa.schema(fields))
    return pa.table(arrays)


@dataclass(frozen=True)
class _Chunk:
    """Rows of one chunk as stored, their JSON oddities, and the last row as read."""

    table: pa.Table
    counts: Counter[str]
    last: pa.Table | None  # one row, in its CSV types; None when there are no rows


Convert = Callable[[pa.Table], tuple[pa.Table, Counter[str]]]


def _converter(outputs: list[Output], table: str) -> Convert:
    """Rows as read to rows as stored, with the oddities of their JSON values."""
    canonicalisers = {
        name: _JsonCanonicaliser() for name, _, kind in outputs if kind == "json"
    }

    def convert(raw: pa.Table) -> tuple[pa.Table, Counter[str]]:
        counts: Counter[str] = Counter()
        for canonicaliser in canonicalisers.values():
            canonicaliser.counts = counts
        return _arrow_table(raw, outputs, table, canonicalisers), counts

    return convert


def _record(
    writer: SnapshotWriter,
    chunks: dict[str, list[dict[str, Any]]],
    table: str,
    entry: dict[str, Any],
) -> None:
    """Add a written chunk to the snapshot's state, so a resume starts after it."""
    chunks.setdefault(table, []).append(entry)
    writer.add(entry["files"], state={_CHUNKS_KEY: chunks})


def _write_keyed_chunk(
    root: Path, plan: _TablePlan, index: int, chunk: _Chunk, last_key: Any
) -> dict[str, Any]:
    """A full chunk's files, with the key to resume after it."""
    entry = _write_table_chunk(root, plan, index, chunk)
    entry["last_key"] = last_key
    return entry


def _write_table_chunk(
    root: Path, plan: _TablePlan, index: int, chunk: _Chunk
) -> dict[str, Any]:
    table = chunk.table
    files = []
    span: dict[str, Any] = {"min": None, "max": None}
    dates: pa.ChunkedArray | None = None
    days: dict[str, Any] = {"unknown": None}
    if plan.time_column and table.num_rows:
        times = table.column(plan.time_column)
        span = pc.min_max(times).as_py()
        # The UTC day of each row; only the distinct days are formatted.
        dates = times.cast(pa.date32())
        distinct = pc.unique(dates)
        labels = pc.strftime(distinct, format="%Y-%m-%d").to_pylist()
        days = {
            "unknown" if label is None else label: day
            for label, day in zip(labels, distinct, strict=True)
        }
    for day in sorted(days):
        if len(days) == 1 or dates is None:
            part = table
        elif day == "unknown":
            part = table.filter(pc.is_null(dates))
        else:
            part = table.filter(pc.equal(dates, days[day]))
        relative = f"postgres/table={plan.name}/day={day}/part-{index:06d}.parquet"
        files.append(write_parquet_file(root, relative, part))
    return {
        "table": plan.name,
        "index": index,
        "rows": table.num_rows,
        "counts": dict(chunk.counts),
        "time_min": None if span["min"] is None else span["min"].isoformat(),
        "time_max": None if span["max"] is None else span["max"].isoformat(),
        "files": files,
    }


_CSV_PARSE = pv.ParseOptions(newlines_in_values=True)
# Arrow's CSV reader takes blocks of at least this size; a block is made larger
# when one of its rows would not fit.
_CSV_BLOCK = 4 * 1024 * 1024
# COPY hands over one row per protocol message: rows are taken this many at a time
# and parsed as one CSV text, so Arrow, not Python, splits them into values.
_BLOCK_ROWS = 8192
# Blocks read ahead of the conversion at most: enough to keep the server sending
# while a chunk is written.
_BLOCKS_AHEAD = 8


def _parse_rows(
    rows: list[Any], names: list[str], csv_types: pv.ConvertOptions
) -> pa.Table:
    """Whole CSV rows from COPY, parsed at once."""
    # Each row fits in a block, whatever its length, so Arrow never has to
    # split one.
    longest = max(map(len, rows))
    read = pv.ReadOptions(
        column_names=names, block_size=max(_CSV_BLOCK, 2 * longest), use_threads=False
    )
    # The blocks are freed by the consumer's thread. With Arrow's default pool
    # (mimalloc) memory freed by another thread is slow to be reused: parsing took
    # twice the CPU time in a fresh process, most of it in page faults.
    return pv.read_csv(
        pa.py_buffer(b"".join(rows)),
        read_options=read,
        parse_options=_CSV_PARSE,
        convert_options=csv_types,
        memory_pool=pa.system_memory_pool(),
    )


# Seconds a stopped reading thread has to end before its COPY is cancelled.
_READER_GRACE = 0.5


class _CopyAbandonedError(Exception):
    """The consumer of a COPY stream went away; the COPY is cancelled."""


def _stream(
    conn: sa.Connection,
    copy_sql: sql.Composed,
    outputs: list[Output],
    chunk_rows: int,
    convert: Convert,
) -> Generator[_Chunk, None, None]:
    """The rows of the query in chunks of exactly ``chunk_rows`` rows (the last one
    shorter), read with COPY as CSV and parsed by Arrow, never value by value.

    A thread reads and parses blocks of rows, at most ``_BLOCKS_AHEAD`` ahead; each
    block is converted as it comes, while the thread reads the next ones and the
    server goes on sending. Close the generator before using the connection again:
    that stops the thread, cancelling the COPY if it has not finished.
    """
    raw = conn.connection.driver_connection
    assert raw is not None
    schema = pa.schema([(name, csv_type) for name, csv_type, _ in outputs])
    csv_types = pv.ConvertOptions(
        column_types=schema,
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        true_values=["t"],
        false_values=["f"],
    )
    parts: queue.Queue[pa.Table | BaseException | None] = queue.Queue(
        maxsize=_BLOCKS_AHEAD
    )
    stop = threading.Event()

    def put(item: pa.Table | BaseException | None) -> None:
        while not stop.is_set():
            try:
                parts.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _CopyAbandonedError

    def read() -> None:
        try:
            with raw.cursor() as cursor, cursor.copy(copy_sql) as copy:
                # Each row comes as a memoryview, which the cyclic garbage collector
                # tracks; thousands held at once set off full collections, which
                # took a quarter of a snapshot's time. Copied to bytes, each view
                # is freed at once.
                rows = map(bytes, copy)
                filled = 0  # rows of the current chunk; no block spans two chunks
                while block := list(
                    islice(rows, min(_BLOCK_ROWS, chunk_rows - filled))
                ):
                    filled = (filled + len(block)) % chunk_rows
                    put(_parse_rows(block, schema.names, csv_types))
            put(None)
        except _CopyAbandonedError:
            return
        except BaseException as exc:  # raised again by the consumer
            try:
                put(exc)
            except _CopyAbandonedError:
                return

    reader = threading.Thread(target=read, name="postgres-copy", daemon=True)
    reader.start()
    try:
        pending: list[pa.Table] = []
        counts: Counter[str] = Counter()
        last: pa.Table | None = None
        while (block := parts.get()) is not None:
            if isinstance(block, BaseException):
                raise block
            table, block_counts = convert(block)
            pending.append(table)
            counts.update(block_counts)
            last = block.slice(block.num_rows - 1)
            if sum(t.num_rows for t in pending) == chunk_rows:
                yield _Chunk(_joined(pending), counts, last)
                pending, counts = [], Counter()
        if pending:
            yield _Chunk(_joined(pending), counts, last)
    finally:
        stop.set()
        # A thread waiting for the server's next rows sees the stop only once they
        # come, which a slow query may take minutes over: cancel the COPY then.
        reader.join(_READER_GRACE)
        if reader.is_alive():
            try:
                raw.cancel_safe()
            except psycopg.Error as exc:  # the error that stopped us matters more
                logger.warning("could not cancel the COPY: %s", exc)
            reader.join()


def _joined(tables: list[pa.Table]) -> pa.Table:
    # Blocks start at fixed rows of a chunk, so the files depend on the rows alone.
    return pa.concat_tables(tables)


def _empty_raw(outputs: list[Output]) -> pa.Table:
    return pa.schema([(name, csv_type) for name, csv_type, _ in outputs]).empty_table()


def snapshot_postgres_into(
    writer: SnapshotWriter,
    settings: PostgresSettings,
    options: PostgresSnapshotOptions | None = None,
    *,
    incremental_from: Path | None = None,
) -> dict[str, Any]:
    """Snapshot tables into ``writer``'s directory; returns the manifest section.

    An interrupted run in the same directory is resumed from its last recorded chunk
    per table; its settings must match.
    """
    options = options or PostgresSnapshotOptions()
    engine = sa.create_engine(settings.url.get_secret_value(), pool_pre_ping=True)
    try:
        with system_memory_pool():
            return _snapshot(writer, engine, settings, options, incremental_from)
    except sa.exc.SQLAlchemyError as exc:
        raise PostgresError(
            f"snapshot of {settings.describe()} failed: {exc.__class__.__name__}: "
            f"{getattr(exc, 'orig', exc)}"
        ) from exc
    finally:
        engine.dispose()


def _previous_tables(path: Path | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    if path is None:
        return {}, None
    from codegen_forensics.snapshot import Snapshot

    previous = Snapshot.open(path)
    section = previous.manifest.get("postgres")
    if not section:
        raise SnapshotError(
            f"snapshot {str(path)!r} has no Postgres section to continue from"
        )
    return section["tables"], {"path": str(path), "checksum": previous.checksum}


def _snapshot(
    writer: SnapshotWriter,
    engine: sa.Engine,
    settings: PostgresSettings,
    options: PostgresSnapshotOptions,
    incremental_from: Path | None,
) -> dict[str, Any]:
    saved = writer.state(_PLAN_KEY)
    key = options.resume_key()
    source_path = str(incremental_from) if incremental_from else None
    if saved is not None and (
        saved["settings"] != key
        or (saved["incremental_from"] or {}).get("path") != source_path
    ):
        raise SnapshotError(
            f"snapshot {str(writer.root)!r} was started with other Postgres settings "
            f"({saved['settings']}); run it again with those, or write into a new "
            "directory"
        )
    chunks: dict[str, list[dict[str, Any]]] = dict(writer.state(_CHUNKS_KEY) or {})
    _discard_unfinished(writer, chunks)

    with engine.connect() as conn:
        conn = conn.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
        if saved is None:
            previous, source = _previous_tables(incremental_from)
            now = conn.execute(sa.text("SELECT clock_timestamp()")).scalar()
            assert isinstance(now, datetime)
            now = now.astimezone(UTC)
            plans = {
                t: _plan_table(conn, options, t, now, previous.get(t))
                for t in options.tables
            }
            saved = {
                "settings": key,
                "database": settings.describe(),
                "started_at": now.isoformat(),
                "incremental_from": source,
                "tables": {t: _plan_to_json(p) for t, p in plans.items()},
            }
            writer.save_state(_PLAN_KEY, saved)
            conn.commit()
        plans = {t: _plan_from_json(p) for t, p in saved["tables"].items()}

        for name, plan in plans.items():
            if not plan.exists:
                continue
            recorded = chunks.get(name, [])
            if recorded and recorded[-1].get("final"):
                continue
            resume = recorded[-1]["last_key"] if recorded else None
            if recorded and resume is None:
                # No ordering key to resume from: read the table again.
                writer.forget(f["path"] for c in recorded for f in c["files"])
                chunks[name] = recorded = []
            copy_sql, outputs = _table_select(plan, options.schema, resume)
            by_name = {c.name: c for c in plan.columns}
            key_columns = ([plan.time_column] if plan.time_column else []) + [
                k for k in plan.primary_key if k != plan.time_column
            ]
            convert = _converter(outputs, name)
            # A chunk's last row is a place to resume from only when the key is
            # unique: without a primary key, rows sharing its time would be lost,
            # so a cut snapshot of such a table reads it again.
            key_index = [
                plan.columns.index(by_name[k])
                for k in (key_columns if plan.primary_key else [])
            ]
            index = len(recorded)
            logger.info("reading table=%s resume=%s", name, resume)
            final: _Chunk | None = None
            stream = _stream(conn, copy_sql, outputs, options.chunk_rows, convert)
            # A chunk's files are written on a thread while the next chunk is
            # converted (Parquet encoding releases the GIL); each is recorded here,
            # in order, once its files are complete.
            pending: Future[dict[str, Any]] | None = None
            # Closed before the connection is used again, even on an error.
            with (
                _reading(name, settings),
                closing(stream),
                ThreadPoolExecutor(1, "parquet-writer") as files,
            ):
                for read in stream:
                    if read.table.num_rows < options.chunk_rows:
                        final = read  # the rest, always last
                        break
                    assert read.last is not None
                    last_key = (
                        [
                            _key_text(read.last.column(i)[0].as_py(), plan.columns[i])
                            for i in key_index
                        ]
                        if key_index
                        else None
                    )
                    if pending is not None:
                        _record(writer, chunks, name, pending.result())
                    pending = files.submit(
                        _write_keyed_chunk, writer.root, plan, index, read, last_key
                    )
                    index += 1
                if pending is not None:
                    _record(writer, chunks, name, pending.result())
            recorded = chunks.get(name, [])
            if final is not None or index == 0:
                # An empty table still gets one file, so its columns are known.
                if final is None:
                    final = _Chunk(*convert(_empty_raw(outputs)), last=None)
                chunk = _write_table_chunk(writer.root, plan, index, final)
            else:
                chunk = {
                    "table": name,
                    "index": index,
                    "rows": 0,
                    "counts": {},
                    "time_min": None,
                    "time_max": None,
                    "files": [],
                }
            chunk["last_key"] = None
            chunk["final"] = True
            recorded.append(chunk)
            chunks[name] = recorded
            writer.add(chunk["files"], state={_CHUNKS_KEY: chunks})
            conn.commit()

    return _section(saved, plans, chunks)


@contextmanager
def _reading(table: str, settings: PostgresSettings) -> Iterator[None]:
    """Turn a failure of the COPY of ``table`` into the package's error.

    The COPY runs on psycopg's connection, below SQLAlchemy, so its errors (the
    server's, or a lost connection) arrive as psycopg's own.
    """
    try:
        yield
    except psycopg.Error as exc:
        raise PostgresError(
            f"reading table={table} from {settings.describe()} failed: "
            f"{exc.__class__.__name__}: {exc}; run the same snapshot again to "
            "resume it"
        ) from exc


def _plan_to_json(plan: _TablePlan) -> dict[str, Any]:
    return {
        "name": plan.name,
        "exists": plan.exists,
        "columns": [vars(c) for c in plan.columns],
        "primary_key": plan.primary_key,
        "time_column": plan.time_column,
        "since": plan.since,
        "until": plan.until,
        "findings": plan.findings,
        "differences": plan.differences,
        "newest": plan.newest,
        "has_rows": plan.has_rows,
    }


def _plan_from_json(data: Mapping[str, Any]) -> _TablePlan:
    return _TablePlan(
        name=data["name"],
        exists=data["exists"],
        columns=[_Column(**c) for c in data["columns"]],
        primary_key=list(data["primary_key"]),
        time_column=data["time_column"],
        since=data["since"],
        until=data["until"],
        findings=list(data["findings"]),
        differences=list(data["differences"]),
        newest=data["newest"],
        has_rows=data["has_rows"],
    )


def _discard_unfinished(
    writer: SnapshotWriter, chunks: Mapping[str, list[dict[str, Any]]]
) -> None:
    kept = {f["path"] for cs in chunks.values() for c in cs for f in c["files"]}
    stale = [p for p in writer.files if p.startswith("postgres/") and p not in kept]
    if stale:
        writer.forget(stale)
    base = writer.root / "postgres"
    if base.exists():
        for path in base.rglob("*"):
            relative = path.relative_to(writer.root).as_posix()
            if path.is_file() and relative not in kept:
                path.unlink()


def _section(
    saved: Mapping[str, Any],
    plans: Mapping[str, _TablePlan],
    chunks: Mapping[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    tables = {}
    findings = []
    for name, plan in plans.items():
        recorded = chunks.get(name, [])
        counts: Counter[str] = Counter()
        for chunk in recorded:
            counts.update(chunk["counts"])
        times = [c for c in recorded if c["time_min"]]
        rows = sum(c["rows"] for c in recorded)
        table_findings = list(plan.findings)
        if plan.exists and plan.has_rows and rows == 0 and plan.time_column:
            table_findings.append(
                f"table {name} has no rows between {plan.since or 'the start'} and "
                f"{plan.until}"
            )
        findings += table_findings
        tables[name] = {
            "exists": plan.exists,
            "rows": rows,
            "columns": {c.name: c.formatted for c in plan.columns},
            "primary_key": plan.primary_key,
            "time_column": plan.time_column,
            "since": plan.since,
            "until": plan.until,
            "naive_timestamp_columns": [
                c.name for c in plan.columns if c.type_name == "timestamp"
            ],
            "variant": (
                (
                    "legacy"
                    if any("older variant" in d for d in plan.differences)
                    else "current"
                )
                if name == "event_logs" and plan.exists
                else None
            ),
            "differences": plan.differences,
            "json": dict(sorted(counts.items())),
            "time_range": {
                "min": min((c["time_min"] for c in times), default=None),
                "max": max((c["time_max"] for c in times), default=None),
            },
            "newest_row": plan.newest,
            "findings": table_findings,
            "bytes": sum(f["bytes"] for c in recorded for f in c["files"]),
        }
    return {
        "database": saved["database"],
        "settings": saved["settings"],
        "started_at": saved["started_at"],
        "finished_at": datetime.now(UTC).isoformat(),
        "incremental_from": saved["incremental_from"],
        "tables": tables,
        "rows": sum(t["rows"] for t in tables.values()),
        "findings": findings,
    }
