"""The snapshot directory: the Parquet layout shared by loaders, simulator and analysis.

A snapshot is a directory::

    manifest.json                          written last; its presence marks completion
    kafka/topic=<topic>/day=<YYYY-MM-DD>/part-<n>.parquet       one row per message
    postgres/table=<table>/day=<YYYY-MM-DD>/part-<n>.parquet    one row per table row
    kafka_partitions.parquet               watermarks and offsets read, per partition
    consumer_offsets.parquet               committed offsets of the consumer groups

Directories are Hive-style so engines can prune by topic, table and day, and every file
also carries all of its columns, so readers should read files with Hive partitioning
off and never depend on directory names for values. Files are zstd-compressed and
appear only when complete (written to a temporary name, then renamed).

The manifest lists every file with its rows, bytes and SHA-256; :class:`Snapshot`
refuses a directory whose manifest is missing, incomplete or contradicted by the files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from codegen_forensics.errors import SnapshotError

if TYPE_CHECKING:
    import pyarrow.dataset as ds

__all__ = [
    "CONSUMER_OFFSETS_SCHEMA",
    "DECODE_STATUSES",
    "EVENT_LOGS_SCHEMA",
    "KAFKA_MESSAGES_SCHEMA",
    "KAFKA_PARTITIONS_SCHEMA",
    "MANIFEST_NAME",
    "ParquetPartWriter",
    "Snapshot",
    "SnapshotWriter",
    "conform",
    "library_versions",
    "write_parquet_file",
]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "codegen-forensics-snapshot"
FORMAT_VERSION = 1
TS = pa.timestamp("us", tz="UTC")

# What happened when a Kafka message value was decoded. ``ok`` and the two unwrapped
# statuses carry a payload that validated against its schema.
DECODE_STATUSES: tuple[str, ...] = (
    "ok",  # JSON object that validated against the topic's schema
    "tombstone",  # null value
    "not_utf8",  # bytes that are not UTF-8
    "not_json",  # UTF-8 text that is not JSON
    "double_encoded",  # a JSON string holding JSON; unwrapped
    "enveloped",  # an event under an envelope's ``payload``; unwrapped
    "schema_invalid",  # JSON that failed schema validation; errors in decode_message
    "unknown_schema_version",  # a schema_version we have no model for
    "naive_timestamp",  # a timestamp without a time zone
    "dlq",  # a dead-letter message; see the dlq_* columns
    "unparsed_topic",  # a topic whose name matches no scheme; kept raw
)

HEADER = pa.struct([("key", pa.string()), ("value", pa.binary())])

KAFKA_MESSAGES_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("timestamp", TS),  # the Kafka message timestamp; null when the broker has none
        ("timestamp_type", pa.string()),  # create_time, log_append_time or null
        ("key", pa.binary()),
        ("value", pa.binary()),
        ("headers", pa.list_(HEADER)),  # in order, duplicates kept, values nullable
        ("key_size", pa.int32()),
        ("value_size", pa.int32()),
        # From the topic name.
        ("category", pa.string()),  # request, response, status, dlq or unknown
        ("operation", pa.string()),
        ("topic_version", pa.int32()),
        # From the value.
        ("decode_status", pa.string()),
        ("decode_message", pa.string()),
        ("payload", pa.string()),  # canonical JSON of the (unwrapped) event
        ("event_name", pa.string()),
        ("schema_version", pa.string()),
        ("session_id", pa.string()),  # canonical lowercase UUID
        ("correlation_id", pa.string()),
        ("event_timestamp", TS),
        ("processing_time_ms", pa.int64()),
        ("status", pa.string()),  # status events only
        # Dead-letter topics only: the normalised record.
        ("dlq_shape", pa.string()),
        ("dlq_source_topic", pa.string()),
        ("dlq_consumer_group", pa.string()),
        ("dlq_error_type", pa.string()),
        ("dlq_error_message", pa.string()),
        ("dlq_stack_trace", pa.string()),
        ("dlq_retry_count", pa.int32()),
        ("dlq_max_retries", pa.int32()),
        ("dlq_failure_time", TS),
    ]
)

EVENT_LOGS_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("session_id", pa.string()),
        ("correlation_id", pa.string()),
        ("event_type", pa.string()),
        ("topic", pa.string()),
        ("timestamp", TS),
        ("status", pa.string()),
        ("processing_time_ms", pa.int64()),
        ("payload", pa.string()),  # canonical JSON text
        ("metadata", pa.string()),  # canonical JSON text
        ("created_at", TS),  # older table variants only
    ]
)

KAFKA_PARTITIONS_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("low_watermark", pa.int64()),
        ("high_watermark", pa.int64()),
        ("start_offset", pa.int64()),  # first offset this snapshot read from
        ("end_offset", pa.int64()),  # offset it read up to (exclusive)
        ("rows", pa.int64()),
        ("value_bytes", pa.int64()),
        # Added later; readers select columns by name.
        ("last_stable_offset", pa.int64()),  # end for read_committed readers
        ("first_offset", pa.int64()),  # first offset with a row; null when none
        ("last_offset", pa.int64()),  # last offset with a row; null when none
    ]
)

CONSUMER_OFFSETS_SCHEMA = pa.schema(
    [
        ("group_id", pa.string()),
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("committed_offset", pa.int64()),  # null when the group never committed
    ]
)


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in (
        "codegen-forensics",
        "pyarrow",
        "pandas",
        "confluent-kafka",
        "sqlalchemy",
        "psycopg",
        "pydantic",
        "duckdb",
    ):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


# The pool in use before the first of the blocks now running entered, and how many
# run: Arrow's default pool belongs to the process, not to a thread.
_pool_lock = threading.Lock()
_pool_users = 0
_pool_before: pa.MemoryPool | None = None


@contextmanager
def system_memory_pool() -> Iterator[None]:
    """Make the C library's allocator Arrow's default pool while the block runs.

    Loaders and the compression estimate allocate and free many short-lived
    buffers of a few megabytes, often on different threads. With Arrow's default
    pool (mimalloc) that memory is slow to be reused: converting and writing
    500,000 rows of a Postgres table, timed alone in a fresh process, took 1.7x
    the CPU time they took on the system pool. The previous pool is restored when
    the last of the blocks running at once ends, whatever their order; buffers
    remember the pool they came from.
    """
    global _pool_users, _pool_before
    with _pool_lock:
        if _pool_users == 0:
            _pool_before = pa.default_memory_pool()
            pa.set_memory_pool(pa.system_memory_pool())
        _pool_users += 1
    try:
        yield
    finally:
        with _pool_lock:
            _pool_users -= 1
            if _pool_users == 0 and _pool_before is not None:
                pa.set_memory_pool(_pool_before)
                _pool_before = None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with the columns of ``schema`` in order, cast to its types.

    A nullable column the table lacks is added as nulls, so tables built for an
    earlier version of a schema still write.
    """
    columns = []
    for schema_field in schema:
        if schema_field.name in table.column_names:
            columns.append(table.column(schema_field.name).cast(schema_field.type))
        elif schema_field.nullable:
            columns.append(pa.nulls(table.num_rows, schema_field.type))
        else:
            raise SnapshotError(
                f"table lacks the column {schema_field.name!r}, which the schema "
                "requires"
            )
    return pa.Table.from_arrays(columns, schema=schema)


def write_parquet_file(
    root: Path,
    relative: str,
    table: pa.Table,
    *,
    schema: pa.Schema | None = None,
    row_group_size: int = 128_000,
) -> dict[str, Any]:
    """Write ``table`` to ``root/relative`` atomically; return its manifest entry.

    The file appears only when complete: it is written under a hidden temporary name
    in the same directory and renamed. Usable from worker processes; the entry is
    recorded by a :class:`SnapshotWriter` with :meth:`SnapshotWriter.add`.
    """
    if schema is not None:
        table = conform(table, schema)
    path = Path(root) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd", row_group_size=row_group_size)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return {
        "path": relative,
        "rows": table.num_rows,
        "bytes": path.stat().st_size,
        "sha256": _sha256(path),
    }


class ParquetPartWriter:
    """One Parquet file written a row group at a time, appearing only when closed.

    For files too large to hold in memory at once: each :meth:`write` adds the
    batch as one row group to a hidden temporary file in the target directory, and
    :meth:`close` renames it and returns its manifest entry, like
    :func:`write_parquet_file`. A file never closed leaves only the temporary name.
    """

    def __init__(self, root: Path, relative: str, schema: pa.Schema) -> None:
        self.root = Path(root)
        self.relative = relative
        self.rows = 0
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        self._writer = pq.ParquetWriter(self._tmp, schema, compression="zstd")

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def close(self) -> dict[str, Any]:
        try:
            self._writer.close()
            os.replace(self._tmp, self._path)
        finally:
            self._tmp.unlink(missing_ok=True)
        return {
            "path": self.relative,
            "rows": self.rows,
            "bytes": self._path.stat().st_size,
            "sha256": _sha256(self._path),
        }

    def abort(self) -> None:
        """Drop the unfinished file."""
        try:
            self._writer.close()
        finally:
            self._tmp.unlink(missing_ok=True)


@dataclass
class SnapshotWriter:
    """Writes Parquet files into a snapshot directory and the manifest at the end.

    Files are written under a temporary name and renamed when complete. Files that
    already exist from an interrupted run are kept and listed: a resumed run picks
    them up from ``.progress.json``, which records each finished file and the
    loaders' own resume state (their plan and finished chunks).
    """

    root: Path
    _files: dict[str, dict[str, Any]] = field(default_factory=dict)
    _state: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        progress = self.root / ".progress.json"
        if progress.exists():
            saved = json.loads(progress.read_text())
            self._files = saved["files"]
            self._state = saved.get("state", {})

    @property
    def resumed(self) -> bool:
        """Whether this writer continues an interrupted snapshot."""
        return bool(self._files or self._state)

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        """Finished files so far, by relative path."""
        return dict(self._files)

    def state(self, key: str) -> Any:
        """Resume state a loader saved under ``key``, or ``None``."""
        return self._state.get(key)

    def save_state(self, key: str, value: Any) -> None:
        """Save resume state (JSON-serialisable) durably, with the files so far."""
        self._state[key] = value
        self._save_progress()

    def add(
        self,
        entries: Iterable[Mapping[str, Any]],
        state: Mapping[str, Any] | None = None,
    ) -> None:
        """Record files written by :func:`write_parquet_file`, and state, at once."""
        for entry in entries:
            self._files[entry["path"]] = dict(entry)
        if state:
            self._state.update(state)
        self._save_progress()

    def forget(self, relatives: Iterable[str]) -> None:
        """Drop files from the record and from disk (parts of an unfinished chunk)."""
        for relative in relatives:
            self._files.pop(relative, None)
            (self.root / relative).unlink(missing_ok=True)
        self._save_progress()

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    def has_file(self, relative: str) -> bool:
        return relative in self._files and (self.root / relative).exists()

    def write(
        self,
        relative: str,
        table: pa.Table,
        *,
        schema: pa.Schema | None = None,
        row_group_size: int = 128_000,
    ) -> dict[str, Any]:
        """Write ``table`` to ``relative`` atomically and record it."""
        entry = write_parquet_file(
            self.root, relative, table, schema=schema, row_group_size=row_group_size
        )
        self._files[relative] = entry
        self._save_progress()
        return entry

    def record(self, relative: str) -> dict[str, Any]:
        """Record a file that another writer (a ParquetWriter) already completed."""
        path = self.root / relative
        entry = {
            "path": relative,
            "rows": pq.ParquetFile(path).metadata.num_rows,
            "bytes": path.stat().st_size,
            "sha256": _sha256(path),
        }
        self._files[relative] = entry
        self._save_progress()
        return entry

    def _save_progress(self) -> None:
        progress = self.root / ".progress.json"
        tmp = progress.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"files": self._files, "state": self._state}, default=str)
        )
        os.replace(tmp, progress)

    def finish(self, **sections: Any) -> Path:
        """Write the manifest (last), making the snapshot complete and readable."""
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "complete": True,
            "created_at": datetime.now(UTC).isoformat(),
            "library_versions": library_versions(),
            **sections,
            "files": sorted(self._files.values(), key=lambda e: e["path"]),
        }
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        os.replace(tmp, self.manifest_path)
        (self.root / ".progress.json").unlink(missing_ok=True)
        logger.info("snapshot complete path=%s files=%s", self.root, len(self._files))
        return self.manifest_path


@dataclass(frozen=True)
class Snapshot:
    """A complete snapshot directory, opened for reading."""

    root: Path
    manifest: Mapping[str, Any]

    @classmethod
    def open(cls, root: str | os.PathLike[str], *, verify: bool = False) -> Snapshot:
        """Open a snapshot, refusing it if its manifest is missing or contradicted.

        Every listed file must exist with its recorded size; ``verify`` also checks
        each file's SHA-256.
        """
        path = Path(root)
        if not path.is_dir():
            raise SnapshotError(f"snapshot directory {str(path)!r} does not exist")
        manifest_path = path / MANIFEST_NAME
        if not manifest_path.exists():
            hint = (
                " it looks interrupted: run the same snapshot command again to resume"
                if (path / ".progress.json").exists()
                else ""
            )
            raise SnapshotError(
                f"snapshot {str(path)!r} has no {MANIFEST_NAME}, so it is incomplete;"
                + hint
            )
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise SnapshotError(
                f"manifest {str(manifest_path)!r} is not valid JSON: {exc}"
            ) from exc
        if manifest.get("format") != FORMAT_NAME or not manifest.get("complete"):
            raise SnapshotError(
                f"manifest {str(manifest_path)!r} is not a complete {FORMAT_NAME} "
                "manifest"
            )
        for entry in manifest.get("files", []):
            file = path / entry["path"]
            if not file.exists():
                raise SnapshotError(
                    f"snapshot {str(path)!r} lists {entry['path']!r}, which is missing"
                )
            if file.stat().st_size != entry["bytes"]:
                raise SnapshotError(
                    f"snapshot file {entry['path']!r} has {file.stat().st_size} bytes; "
                    f"the manifest recorded {entry['bytes']}"
                )
            if verify and _sha256(file) != entry["sha256"]:
                raise SnapshotError(
                    f"snapshot file {entry['path']!r} does not match its checksum"
                )
        return cls(root=path, manifest=manifest)

    def files(self, prefix: str) -> list[Path]:
        """Files listed in the manifest under a path prefix such as ``kafka/``."""
        return [
            self.root / e["path"]
            for e in self.manifest.get("files", [])
            if e["path"].startswith(prefix)
        ]

    def kafka_files(self) -> list[Path]:
        return self.files("kafka/")

    def table_files(self, table: str) -> list[Path]:
        return self.files(f"postgres/table={table}/")

    def read(self, prefix: str, columns: Iterable[str] | None = None) -> pa.Table:
        """Read every file under a prefix into one Arrow table (small inputs only)."""
        paths = self.files(prefix)
        if not paths:
            schema = _schema_for(prefix)
            if schema is None:
                raise SnapshotError(f"snapshot {str(self.root)!r} has no {prefix!r}")
            table = schema.empty_table()
            return table.select(list(columns)) if columns else table
        tables = [
            pq.read_table(p, columns=list(columns) if columns else None) for p in paths
        ]
        return pa.concat_tables(tables, promote_options="default")

    def dataset(self, prefix: str) -> ds.Dataset:
        """The files under a prefix as one Arrow dataset, read lazily (large inputs).

        Hive partitioning is off: every file carries all of its columns.
        """
        # Imported here: pyarrow.dataset brings pandas, which the loaders' reader
        # processes never need.
        import pyarrow.dataset as ds

        paths = [str(p) for p in self.files(prefix)]
        schema = _schema_for(prefix)
        if not paths:
            if schema is None:
                raise SnapshotError(f"snapshot {str(self.root)!r} has no {prefix!r}")
            return ds.dataset(schema.empty_table())
        return ds.dataset(paths, format="parquet", schema=schema)

    @property
    def checksum(self) -> str:
        """SHA-256 of the manifest: one value that identifies this snapshot."""
        return _sha256(self.root / MANIFEST_NAME)


def _schema_for(prefix: str) -> pa.Schema | None:
    if prefix.startswith("kafka/"):
        return KAFKA_MESSAGES_SCHEMA
    if prefix.startswith("postgres/table=event_logs"):
        return EVENT_LOGS_SCHEMA
    if prefix == "kafka_partitions.parquet":
        return KAFKA_PARTITIONS_SCHEMA
    if prefix == "consumer_offsets.parquet":
        return CONSUMER_OFFSETS_SCHEMA
    return None
