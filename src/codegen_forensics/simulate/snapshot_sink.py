"""Simulated traffic written straight into a snapshot directory, no services needed.

The rows are what the loaders would write after the same traffic went through Kafka
and Postgres: Kafka rows are built by the loaders' own
:class:`~codegen_forensics.events.decode.MessageBatch` from the raw message fields
(partition by librdkafka's default partitioner, offsets in produce order from 0), and
``event_logs`` rows carry JSON in the canonical text the Postgres loader writes. Only
``event_id``, which the database would generate, is drawn from the seed instead.
Files follow the loaders' layout and naming; the ground truth is written beside them
as ``ground_truth.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from codegen_forensics.errors import SnapshotError
from codegen_forensics.events.decode import MessageBatch, canonical_json
from codegen_forensics.events.topics import TopicCatalog, parse_topic
from codegen_forensics.simulate.config import SimulationConfig
from codegen_forensics.simulate.sinks import simulate
from codegen_forensics.simulate.traffic import (
    EventLogRow,
    Progress,
    SimMessage,
    Traffic,
)
from codegen_forensics.simulate.truth import GroundTruth
from codegen_forensics.snapshot import (
    CONSUMER_OFFSETS_SCHEMA,
    EVENT_LOGS_SCHEMA,
    KAFKA_PARTITIONS_SCHEMA,
    MANIFEST_NAME,
    SnapshotWriter,
    write_parquet_file,
)

__all__ = ["TRUTH_NAME", "SnapshotSink", "write_snapshot"]

logger = logging.getLogger(__name__)

TRUTH_NAME = "ground_truth.json"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY = timedelta(days=1)
_MILLISECOND = timedelta(milliseconds=1)
_DAY_MS = 86_400_000

# event_logs as the field notes give it, in Postgres' own spelling of the types.
_EVENT_LOGS_COLUMNS = {
    "event_id": "uuid",
    "session_id": "uuid",
    "correlation_id": "uuid",
    "event_type": "character varying(50)",
    "topic": "character varying(255)",
    "timestamp": "timestamp with time zone",
    "status": "character varying(50)",
    "processing_time_ms": "integer",
    "payload": "jsonb",
    "metadata": "jsonb",
}
_ROW_COLUMNS = EVENT_LOGS_SCHEMA.names


class SnapshotSink:
    """Writes messages and rows into a new snapshot directory, manifest last.

    Memory is bounded: a partition's rows are written as a chunk once they reach
    ``chunk_rows`` rows or ``chunk_bytes`` of values, and ``event_logs`` rows every
    ``table_chunk_rows`` rows.
    """

    wants_messages = True
    wants_rows = True
    wants_events = False

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        seed: int = 0,
        chunk_rows: int = 50_000,
        chunk_bytes: int = 16 * 1024 * 1024,
        table_chunk_rows: int = 100_000,
    ) -> None:
        self.root = Path(root)
        if (self.root / MANIFEST_NAME).exists():
            raise SnapshotError(
                f"snapshot {str(self.root)!r} is already complete; write the "
                "simulation into a new directory"
            )
        self.writer = SnapshotWriter(self.root)
        self.chunk_rows = chunk_rows
        self.chunk_bytes = chunk_bytes
        self.table_chunk_rows = table_chunk_rows
        self.started_at = datetime.now(UTC).isoformat()
        self._batches: dict[tuple[str, int], MessageBatch] = {}
        self._partition_values: Counter[tuple[str, int]] = Counter()
        self._topics: dict[str, dict[str, Any]] = {}
        self._ids = random.Random(f"{seed}/event-ids")
        self._columns: dict[str, list[Any]] = {name: [] for name in _ROW_COLUMNS}
        self._table_chunks = 0
        self._table_rows = 0
        self._table_bytes = 0
        self._table_times: list[datetime] = []
        self._canonical: dict[str, str] = {}
        # Messages and rows arrive in time order: when the day changes, everything
        # pending belongs to earlier days and is written, on a background thread.
        self._day = -1
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot")
        self._pending: list[Future[list[dict[str, Any]]]] = []

    # -- messages -------------------------------------------------------------------

    def _roll(self, timestamp_ms: int) -> None:
        day = timestamp_ms // _DAY_MS
        if day != self._day:
            if self._day >= 0:
                for slot in sorted(self._batches):
                    self._write_partition_chunk(slot)
                self._write_table_chunk()
            self._day = day

    def message(self, message: SimMessage) -> None:
        if message.timestamp_ms // _DAY_MS != self._day:
            self._roll(message.timestamp_ms)
        slot = (message.topic, message.partition)
        batch = self._batches.get(slot)
        if batch is None:
            batch = self._batches[slot] = MessageBatch()
        value = message.value
        self._partition_values[slot] += len(value or b"")
        decoded = batch.append(
            message.topic,
            message.partition,
            message.offset,
            message.value,
            key=message.key,
            timestamp=message.timestamp_ms,
            timestamp_type="create_time",
            headers=message.headers,
        )
        # The event_logs rows of this event come next: they reuse its canonical text.
        if value is not None and decoded["payload"] is not None:
            if len(self._canonical) >= 50_000:
                self._canonical.clear()
            with contextlib.suppress(UnicodeDecodeError):
                self._canonical[value.decode()] = decoded["payload"]
        if len(batch) >= self.chunk_rows or batch.value_bytes >= self.chunk_bytes:
            self._write_partition_chunk(slot)

    def _write_partition_chunk(self, slot: tuple[str, int]) -> None:
        batch = self._batches[slot]
        if len(batch) == 0:
            return
        topic, partition = slot
        value_bytes = batch.value_bytes
        table = pa.Table.from_batches([batch.to_batch()])
        self._pending.append(
            self._pool.submit(_write_kafka_chunk, self.root, topic, partition, table)
        )
        self._collect(block=False)

        stats = self._topic_stats(topic)
        stats["rows"] += table.num_rows
        stats["value_bytes"] += value_bytes
        stats["key_bytes"] += pc.sum(table.column("key_size")).as_py() or 0
        for entry in pc.value_counts(table.column("decode_status")).to_pylist():
            stats["decode_status"][entry["values"]] += entry["counts"]
        stats["dlq_unknown"] += (
            pc.sum(pc.equal(table.column("dlq_shape"), "unknown")).as_py() or 0
        )
        span = pc.min_max(table.column("timestamp")).as_py()
        stats["times"] += [span["min"], span["max"]]

    def _topic_stats(self, topic: str) -> dict[str, Any]:
        stats = self._topics.get(topic)
        if stats is None:
            stats = self._topics[topic] = {
                "rows": 0,
                "value_bytes": 0,
                "key_bytes": 0,
                "decode_status": Counter(),
                "dlq_unknown": 0,
                "times": [],
            }
        return stats

    # -- event_logs rows ------------------------------------------------------------

    def row(self, row: EventLogRow) -> None:
        when = row["timestamp"]
        if (when - _EPOCH) // _DAY != self._day:
            self._roll((when - _EPOCH) // _MILLISECOND)
        columns = self._columns
        columns["event_id"].append(str(uuid.UUID(int=self._ids.getrandbits(128))))
        columns["session_id"].append(row["session_id"])
        columns["correlation_id"].append(row["correlation_id"])
        columns["event_type"].append(row["event_type"])
        columns["topic"].append(row["topic"])
        columns["timestamp"].append(row["timestamp"])
        columns["status"].append(row["status"])
        columns["processing_time_ms"].append(row["processing_time_ms"])
        columns["payload"].append(self._canonical_text(row["payload"]))
        columns["metadata"].append(canonical_json(row["metadata"]))
        columns["created_at"].append(None)
        if len(columns["event_id"]) >= self.table_chunk_rows:
            self._write_table_chunk()

    def _canonical_text(self, text: str) -> str:
        cached = self._canonical.get(text)
        if cached is None:
            cached = canonical_json(json.loads(text))
        return cached

    def _write_table_chunk(self) -> None:
        columns = self._columns
        if not columns["event_id"]:
            return
        table = pa.Table.from_pydict(columns, schema=EVENT_LOGS_SCHEMA)
        self._columns = {name: [] for name in _ROW_COLUMNS}
        self._pending.append(
            self._pool.submit(_write_table_chunk, self.root, self._table_chunks, table)
        )
        self._table_chunks += 1
        self._table_rows += table.num_rows
        span = pc.min_max(table.column("timestamp")).as_py()
        self._table_times += [span["min"], span["max"]]
        self._collect(block=False)

    def _collect(self, *, block: bool) -> None:
        """Record the files that background writes finished, in submission order."""
        while self._pending and (block or self._pending[0].done()):
            entries = self._pending.pop(0).result()
            self.writer.add(entries)
            self._table_bytes += sum(
                e["bytes"] for e in entries if e["path"].startswith("postgres/")
            )

    # -- the end --------------------------------------------------------------------

    def finish(self, traffic: Traffic, truth: GroundTruth) -> GroundTruth:
        try:
            for slot in sorted(self._batches):
                self._write_partition_chunk(slot)
            self._write_table_chunk()
            self._collect(block=True)
        finally:
            self._pool.shutdown(wait=True)

        ends = traffic.end_offsets()
        partitions = []
        for (topic, partition), end in sorted(ends.items()):
            partitions.append(
                {
                    "topic": topic,
                    "partition": partition,
                    "low_watermark": 0,
                    "high_watermark": end,
                    "last_stable_offset": end,
                    "start_offset": 0,
                    "end_offset": end,
                    "rows": end,
                    "value_bytes": self._partition_values[(topic, partition)],
                    "first_offset": 0 if end else None,
                    "last_offset": end - 1 if end else None,
                }
            )
        self.writer.write(
            "kafka_partitions.parquet",
            pa.Table.from_pylist(partitions, schema=KAFKA_PARTITIONS_SCHEMA),
        )
        offsets = [
            {
                "group_id": c.group_id,
                "topic": c.topic,
                "partition": c.partition,
                "committed_offset": c.committed_offset,
            }
            for c in truth.consumer_offsets
        ]
        self.writer.write(
            "consumer_offsets.parquet",
            pa.Table.from_pylist(offsets, schema=CONSUMER_OFFSETS_SCHEMA),
        )
        truth.write(self.root / TRUTH_NAME)

        self.writer.finish(
            sources=["kafka", "postgres"],
            kafka=self._kafka_section(traffic, partitions, truth),
            postgres=self._postgres_section(),
            simulation={
                "seed": truth.seed,
                "sessions": truth.sessions,
                "window_start": truth.window_start,
                "window_end": truth.window_end,
                "catalog_prefix": truth.catalog_prefix,
                "trouble": sorted(traffic.config.trouble),
                "ground_truth": TRUTH_NAME,
            },
        )
        logger.info(
            "simulated snapshot written path=%s messages=%s rows=%s",
            self.root,
            sum(truth.messages_per_topic.values()),
            self._table_rows,
        )
        return truth

    def _kafka_section(
        self, traffic: Traffic, partitions: list[dict[str, Any]], truth: GroundTruth
    ) -> dict[str, Any]:
        topics: dict[str, Any] = {}
        statuses: Counter[str] = Counter()
        for topic, count in traffic.partitions.items():
            name = parse_topic(topic)
            stats = self._topic_stats(topic)
            times = [t for t in stats["times"] if t is not None]
            statuses.update(stats["decode_status"])
            topics[topic] = {
                "reason": "simulated",
                "category": name.category,
                "operation": name.operation,
                "version": name.version,
                "scheme": name.scheme,
                "partitions": count,
                "rows": stats["rows"],
                "value_bytes": stats["value_bytes"],
                "key_bytes": stats["key_bytes"],
                "decode_status": dict(sorted(stats["decode_status"].items())),
                "dlq_unknown": stats["dlq_unknown"],
                "timestamp_min": _iso(min(times)) if times else None,
                "timestamp_max": _iso(max(times)) if times else None,
            }
        all_times = [t for stats in self._topics.values() for t in stats["times"] if t]
        groups: Counter[str] = Counter(c.group_id for c in truth.consumer_offsets)
        return {
            "bootstrap_servers": None,
            "simulated": True,
            "settings": {"catalog_prefix": truth.catalog_prefix},
            "started_at": self.started_at,
            "finished_at": datetime.now(UTC).isoformat(),
            "incremental_from": None,
            "topics": topics,
            "partitions": partitions,
            "missing_catalog_topics": [],
            "consumer_groups": {
                group: {"found": True, "partitions": count}
                for group, count in groups.items()
            },
            "rows": sum(p["rows"] for p in partitions),
            "value_bytes": sum(p["value_bytes"] for p in partitions),
            "decode_status": dict(sorted(statuses.items())),
            "dlq_unknown": sum(t["dlq_unknown"] for t in topics.values()),
            "time_range": {
                "min": _iso(min(all_times)) if all_times else None,
                "max": _iso(max(all_times)) if all_times else None,
            },
            "findings": [],
        }

    def _postgres_section(self) -> dict[str, Any]:
        times = [t for t in self._table_times if t is not None]
        low = min(times).isoformat() if times else None
        high = max(times).isoformat() if times else None
        table = {
            "exists": True,
            "rows": self._table_rows,
            "columns": dict(_EVENT_LOGS_COLUMNS),
            "primary_key": ["event_id"],
            "time_column": "timestamp",
            "since": None,
            "until": None,
            "naive_timestamp_columns": [],
            "variant": "current",
            "differences": [],
            "json": {},
            "time_range": {"min": low, "max": high},
            "newest_row": high,
            "findings": [],
            "bytes": self._table_bytes,
        }
        return {
            "database": None,
            "simulated": True,
            "settings": {},
            "started_at": self.started_at,
            "finished_at": datetime.now(UTC).isoformat(),
            "incremental_from": None,
            "tables": {"event_logs": table},
            "rows": self._table_rows,
            "findings": [],
        }


def _write_kafka_chunk(
    root: Path, topic: str, partition: int, table: pa.Table
) -> list[dict[str, Any]]:
    """One file per day, named like the Kafka loader's chunks."""
    days = pc.strftime(table.column("timestamp"), format="%Y-%m-%d")
    unique = sorted(pc.unique(days).to_pylist())
    entries = []
    for day in unique:
        part = table if len(unique) == 1 else table.filter(pc.equal(days, day))
        first = pc.min(part.column("offset")).as_py()
        relative = (
            f"kafka/topic={topic}/day={day}/part-{partition:05d}-{first:020d}.parquet"
        )
        entries.append(write_parquet_file(root, relative, part))
    return entries


def _write_table_chunk(root: Path, index: int, table: pa.Table) -> list[dict[str, Any]]:
    """One file per day, named like the Postgres loader's chunks."""
    days = pc.strftime(table.column("timestamp"), format="%Y-%m-%d")
    unique = sorted(pc.unique(days).to_pylist())
    entries = []
    for day in unique:
        part = table if len(unique) == 1 else table.filter(pc.equal(days, day))
        relative = f"postgres/table=event_logs/day={day}/part-{index:06d}.parquet"
        entries.append(write_parquet_file(root, relative, part))
    return entries


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="microseconds")


def write_snapshot(
    config: SimulationConfig,
    out_dir: str | os.PathLike[str],
    *,
    catalog: TopicCatalog | None = None,
    now: datetime | None = None,
    progress: Callable[[Progress], None] | None = None,
    overwrite: bool = False,
    parallel: bool | None = None,
) -> GroundTruth:
    """Simulate ``config`` straight into a snapshot directory; return the truth.

    The directory appears complete or not at all: everything is written into a
    hidden sibling and renamed into place. An existing directory is refused unless
    ``overwrite`` replaces it.
    """
    target = Path(out_dir)
    if target.exists() and not overwrite and any(target.iterdir()):
        raise SnapshotError(
            f"snapshot directory {str(target)!r} already exists and is not "
            "empty; choose a new directory, or replace it with --overwrite "
            "(overwrite=True)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        sink = SnapshotSink(staging, seed=config.seed)
        truth = simulate(
            config,
            sink,
            catalog=catalog,
            now=now,
            progress=progress,
            parallel=parallel,
        )
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return truth
