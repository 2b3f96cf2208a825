"""Open a snapshot for analysis: Ibis tables over its Parquet files, on DuckDB.

:func:`open_analysis` reads every file with Hive partitioning off (each file carries
all of its columns) and casts each file's columns to the snapshot schema, so files
written by older loaders still line up: a timestamp stored without a time zone is
read as UTC, a missing column is null, an extra column (``created_at`` of the older
``event_logs``) is kept only where the schema has it. Files are grouped by their
Parquet schema and each group is read once, then the groups are unioned.

The measures only use Ibis expressions over :class:`Analysis` tables, so another
Ibis backend (PySpark, with ``spark.sql.session.timeZone=UTC``) can be passed in
instead of DuckDB.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from codegen_forensics.errors import InputError, SnapshotError
from codegen_forensics.snapshot import (
    CONSUMER_OFFSETS_SCHEMA,
    EVENT_LOGS_SCHEMA,
    KAFKA_MESSAGES_SCHEMA,
    KAFKA_PARTITIONS_SCHEMA,
    Snapshot,
)

__all__ = ["Analysis", "Source", "normalise_id", "open_analysis", "strip_blanks"]

logger = logging.getLogger(__name__)

Source = Literal["topics", "event_logs"]
SOURCES: tuple[Source, ...] = ("topics", "event_logs")

# Snapshot prefix and schema of each table the analysis reads.
_TABLES: dict[str, tuple[str, pa.Schema]] = {
    "messages": ("kafka/", KAFKA_MESSAGES_SCHEMA),
    "event_logs": ("postgres/table=event_logs/", EVENT_LOGS_SCHEMA),
    "partitions": ("kafka_partitions.parquet", KAFKA_PARTITIONS_SCHEMA),
    "consumer_offsets": ("consumer_offsets.parquet", CONSUMER_OFFSETS_SCHEMA),
}

# Manifest keys that may hold the moment the snapshot was taken, most precise first.
_TIME_KEYS = ("started_at", "snapshot_started_at", "captured_at", "created_at")


def normalise_id(value: ir.StringValue) -> ir.StringValue:
    """Ids compared as lowercase text without surrounding blanks; empty is null."""
    return strip_blanks(value).lower().nullif("")


def strip_blanks(value: ir.StringValue) -> ir.StringValue:
    """``value.strip()``, trimming only values that start or end with a blank.

    The same result, but trimming a set of characters is slow on DuckDB (it took
    eight times as long as lowercasing ten million ids), and ids and statuses
    nearly never need it.
    """
    # Every blank sorts at or before the space: a value not starting or ending at
    # or before it has nothing to trim (the test may admit more, never fewer).
    blank = (value.left(1) <= " ") | (value.right(1) <= " ")
    stripped: ir.StringValue = ibis.ifelse(blank, value.strip(), value)
    return stripped


@dataclass
class Analysis:
    """A snapshot opened for analysis.

    ``messages``, ``event_logs``, ``partitions`` and ``consumer_offsets`` are Ibis
    tables with exactly the snapshot schema's columns (empty when the snapshot has
    none). ``messages`` gains one derived column, ``event_time``: when the event
    happened, read from the event itself where it says (``event_timestamp``, or
    ``dlq_failure_time`` on dead-letter topics) and from the Kafka timestamp
    otherwise. When ``start``/``end`` are given, ``messages`` and ``event_logs``
    hold only events with ``start <= time < end``; ``all_messages`` keeps every row
    (consumer lag needs them).
    """

    snapshot: Snapshot
    backend: Any
    all_messages: ir.Table
    all_event_logs: ir.Table
    partitions: ir.Table
    consumer_offsets: ir.Table
    start: datetime | None = None
    end: datetime | None = None
    _cleanup: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)
    _kept: dict[str, ir.Table] = field(default_factory=dict, repr=False)

    @property
    def messages(self) -> ir.Table:
        if "messages" not in self._cache:
            self._cache["messages"] = self._window(
                self.all_messages, self.all_messages.event_time
            )
        table: ir.Table = self._cache["messages"]
        return table

    @property
    def event_logs(self) -> ir.Table:
        if "event_logs" not in self._cache:
            self._cache["event_logs"] = self._window(
                self.all_event_logs, self.all_event_logs.timestamp
            )
        table: ir.Table = self._cache["event_logs"]
        return table

    def _window(self, table: ir.Table, time: ir.TimestampValue) -> ir.Table:
        if self.start is not None:
            table = table.filter(time >= self.start)
        if self.end is not None:
            table = table.filter(time < self.end)
        return table

    @property
    def root(self) -> Path:
        return self.snapshot.root

    @property
    def snapshot_time(self) -> datetime | None:
        """When the snapshot was taken, from its manifest (UTC), if it says."""
        sections: list[Mapping[str, Any]] = [self.snapshot.manifest]
        kafka = self.snapshot.manifest.get("kafka")
        if isinstance(kafka, Mapping):
            sections.insert(0, kafka)
        for section in sections:
            for key in _TIME_KEYS:
                value = section.get(key)
                if isinstance(value, str):
                    try:
                        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                    except ValueError:
                        continue
                    if parsed.tzinfo is None:
                        parsed = parsed.replace(tzinfo=UTC)
                    return parsed.astimezone(UTC)
        return None

    def execute(self, expr: ir.Expr) -> pd.DataFrame:
        """Run a table expression and return it as a pandas DataFrame."""
        result = self.backend.execute(expr)
        if isinstance(result, pd.DataFrame):
            return result
        return pd.DataFrame(result)

    def scalar(self, expr: ir.Scalar) -> Any:
        return self.backend.execute(expr)

    def batches(
        self, expr: ir.Table, chunk_size: int = 65_536
    ) -> Iterator[pa.RecordBatch]:
        """Stream a table expression as Arrow record batches."""
        if getattr(self.backend, "name", "") != "duckdb":
            yield from self.backend.to_pyarrow_batches(expr, chunk_size=chunk_size)
            return
        # Ibis 12 streams through a cursor method DuckDB 2 no longer has; ask DuckDB
        # for its own reader over the compiled query instead.
        self.backend._run_pre_execute_hooks(expr)
        sql = self.backend.compile(expr)
        yield from self.backend.con.sql(sql).to_arrow_reader(chunk_size)

    def materialise(self, key: str, build: Callable[[], ir.Table]) -> ir.Table:
        """The table ``build()`` describes, computed once per analysis and kept.

        Measures that share an intermediate table (per session, per request) read
        it from here instead of recomputing it from the snapshot's files. On DuckDB
        the table is kept in memory, spilling to the temporary directory beyond
        the memory cap; another backend caches it its own way (``Table.cache``).
        Kept tables are dropped when the analysis closes.
        """
        if key not in self._kept:
            began = time.perf_counter()
            self._kept[key] = self._keep(build())
            logger.debug(
                "analysis kept table=%s seconds=%.2f",
                key,
                time.perf_counter() - began,
            )
        return self._kept[key]

    def _keep(self, expr: ir.Table) -> ir.Table:
        if getattr(self.backend, "name", "") != "duckdb":
            cached: ir.Table = expr.cache()
            self._cleanup.append(cached.release)
            return cached
        name = f"_kept_{len(self._kept)}_{uuid.uuid4().hex[:8]}"
        self.backend.create_table(name, expr)
        # Ibis 12's drop_table renders no table name with the sqlglot installed here.
        self._cleanup.append(lambda: self.backend.raw_sql(f'DROP TABLE "{name}"'))
        table: ir.Table = self.backend.table(name)
        return table

    def has_rows(self, table: ir.Table) -> bool:
        return bool(self.scalar(table.limit(1).count()) > 0)

    def close(self) -> None:
        self._kept.clear()
        for step in reversed(self._cleanup):
            step()
        self._cleanup.clear()

    def __enter__(self) -> Analysis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_analysis(
    snapshot: str | os.PathLike[str] | Snapshot,
    memory_limit: str = "1GB",
    *,
    threads: int | None = None,
    temp_directory: str | os.PathLike[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    backend: Any = None,
) -> Analysis:
    """Open a snapshot directory for analysis.

    By default a fresh in-memory DuckDB runs the queries, capped at ``memory_limit``
    and spilling to ``temp_directory`` (a private temporary directory unless given),
    with ``TimeZone='UTC'`` so timestamps reach pandas in UTC. ``backend`` may be any
    connected Ibis backend with ``read_parquet`` instead, in UTC: a DuckDB one with
    another ``TimeZone`` is refused. ``start``/``end`` (time-zone aware) restrict
    events to a window.
    """
    snap = snapshot if isinstance(snapshot, Snapshot) else Snapshot.open(snapshot)
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise InputError(
                f"{name}={value.isoformat()!r} has no time zone; pass an aware "
                "datetime such as datetime(2026, 1, 5, tzinfo=UTC)"
            )
    cleanup: list[Callable[[], None]] = []
    if backend is None:
        backend, cleanup = _duckdb(memory_limit, threads, temp_directory)
    else:
        _check_time_zone(backend)

    tables = {
        name: _read_table(backend, snap, prefix, schema)
        for name, (prefix, schema) in _TABLES.items()
    }
    messages = tables["messages"]
    messages = messages.mutate(event_time=_event_time(messages))
    logger.info(
        "analysis opened snapshot=%s files=%s memory_limit=%s",
        snap.root,
        len(snap.manifest.get("files", [])),
        memory_limit,
    )
    return Analysis(
        snapshot=snap,
        backend=backend,
        all_messages=messages,
        all_event_logs=tables["event_logs"],
        partitions=tables["partitions"],
        consumer_offsets=tables["consumer_offsets"],
        start=start,
        end=end,
        _cleanup=cleanup,
    )


def _duckdb(
    memory_limit: str,
    threads: int | None,
    temp_directory: str | os.PathLike[str] | None,
) -> tuple[Any, list[Callable[[], None]]]:
    cleanup: list[Callable[[], None]] = []
    if temp_directory is None:
        temp = tempfile.mkdtemp(prefix="forensics-duckdb-")

        def remove() -> None:
            shutil.rmtree(temp, ignore_errors=True)

        # An analysis never closed would leave the directory behind; remove it at
        # exit too (steps run last to first: disconnect, remove, unregister).
        atexit.register(remove)
        cleanup.append(lambda: atexit.unregister(remove))
        cleanup.append(remove)
    else:
        temp = str(temp_directory)
        Path(temp).mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "memory_limit": memory_limit,
        "temp_directory": temp,
        "preserve_insertion_order": False,
    }
    if threads is not None:
        config["threads"] = threads

    # Tables kept between measures live in DuckDB's memory, under the cap, and
    # spill to the temporary directory beyond it. Writing them into a database
    # file instead took a second longer per five million rows (compression and
    # writes), and the weekly review of ten million events 15 % longer.
    try:
        con = ibis.duckdb.connect(**config)
    except Exception as exc:  # duckdb raises its own error types for bad settings
        raise InputError(
            f"DuckDB refused memory_limit={memory_limit!r} threads={threads!r}: {exc}; "
            "a memory limit looks like '512MB' or '2GB'"
        ) from exc
    con.raw_sql("SET TimeZone='UTC'")
    _reuse_blocks(con)
    cleanup.append(con.disconnect)  # steps run last to first: disconnect first
    return con, cleanup


def _reuse_blocks(con: Any) -> None:
    """Let DuckDB draw its buffer blocks, up to the memory cap, from memory it keeps.

    Otherwise blocks freed between operators go back to the system and come back as
    fresh pages: the weekly review of ten million events took 860,000-910,000 page
    faults and 14.1-15.2 s, and with blocks kept 680,000-720,000 and 13.6-14.4 s
    (alternated runs, 512MB cap), with a peak of 792-796 MiB against 801-804 MiB.
    DuckDB refuses it for a cap larger than the machine's address space, which then
    keeps the default.
    """
    limit = con.raw_sql("SELECT current_setting('memory_limit')").fetchone()[0]
    try:
        con.raw_sql(f"SET block_allocator_memory='{limit}'")
    except Exception as exc:  # duckdb raises its own error types
        logger.debug("analysis keeps DuckDB's default block allocator: %s", exc)


# Names DuckDB accepts for UTC itself, compared lowercase.
_UTC_NAMES = frozenset(
    ("utc", "etc/utc", "gmt", "etc/gmt", "universal", "etc/universal", "zulu")
)


def _check_time_zone(backend: Any) -> None:
    """Refuse a DuckDB backend whose session time zone is not UTC.

    DuckDB reads a timestamp without a zone, and truncates or buckets one with a
    zone, in its session's time zone: elsewhere, older files would be read off by
    the offset and hours and days would start at local midnights, not in UTC.
    """
    if getattr(backend, "name", "") != "duckdb":
        return
    row = backend.raw_sql("SELECT current_setting('TimeZone')").fetchone()
    zone = str(row[0]) if row else ""
    if zone.lower() not in _UTC_NAMES:
        raise InputError(
            f"backend has TimeZone={zone!r}; the analysis reads and cuts times in "
            "UTC: run SET TimeZone='UTC' on the connection first"
        )


def _read_table(
    backend: Any, snap: Snapshot, prefix: str, schema: pa.Schema
) -> ir.Table:
    """One Ibis table over every file under ``prefix``, cast to ``schema``."""
    target = ibis.Schema.from_pyarrow(schema)
    paths = [p for p in snap.files(prefix) if p.suffix == ".parquet"]
    if not paths:
        return ibis.memtable(schema.empty_table())

    # Group files by their own schema: one read per group keeps every read uniform.
    groups: dict[str, list[str]] = {}
    for path in paths:
        try:
            file_schema = pq.read_schema(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise SnapshotError(
                f"snapshot file {str(path)!r} is not Parquet: {exc}"
            ) from exc
        groups.setdefault(file_schema.to_string(show_schema_metadata=False), []).append(
            str(path)
        )

    parts = []
    for files in groups.values():
        kwargs: dict[str, Any] = {}
        if getattr(backend, "name", "") == "duckdb":
            kwargs["hive_partitioning"] = False
        raw = backend.read_parquet(files, **kwargs)
        parts.append(
            raw.select(
                **{
                    name: raw[name].cast(dtype)
                    if name in raw.columns
                    else ibis.null(dtype)
                    for name, dtype in target.items()
                }
            )
        )
    table = parts[0]
    for part in parts[1:]:
        table = table.union(part)
    logger.debug(
        "table read prefix=%s files=%s schemas=%s", prefix, len(paths), len(groups)
    )
    return table


def _event_time(messages: ir.Table) -> ir.TimestampValue:
    dead_letter = (messages.category == "dlq") | (messages.decode_status == "dlq")
    time: ir.TimestampValue = ibis.ifelse(
        dead_letter,
        ibis.coalesce(messages.dlq_failure_time, messages.timestamp),
        ibis.coalesce(messages.event_timestamp, messages.timestamp),
    )
    return time


def check_source(source: str) -> Source:
    if source not in SOURCES:
        raise InputError(
            f"source={source!r} is not known; expected one of {', '.join(SOURCES)}"
        )
    return source
