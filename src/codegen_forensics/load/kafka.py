"""Read-only snapshots of Kafka topics into the snapshot directory.

The snapshot captures, for every partition, the low watermark, the high watermark and
the last stable offset when it starts, and reads from its start offset up to that
captured end with ``assign()``; it stops on the consumer's position (or the end of the
partition) rather than on seeing a message with the last offset, so transaction
markers, aborted transactions, deleted records, empty partitions and topics still
being written neither hang it nor look like loss. It never joins a consumer group and
never commits an offset.

Rows are written in chunks per partition: a chunk closes after a fixed number of rows
or bytes, so its boundaries depend only on the partition's contents. Each finished
chunk is recorded in ``.progress.json`` with the plan (the captured offsets), so a
snapshot killed at any moment and run again with the same arguments writes exactly
the rows an uninterrupted one would.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue as queue_module
import re
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    TopicPartition,
)
from confluent_kafka import KafkaError as ClientKafkaError
from confluent_kafka.admin import AdminClient

from codegen_forensics.errors import InputError, KafkaError, SnapshotError
from codegen_forensics.events.decode import MessageBatch
from codegen_forensics.events.topics import (
    CONSUMER_GROUPS,
    TopicCatalog,
    TopicNameParser,
    default_parser,
)
from codegen_forensics.settings import KafkaSettings
from codegen_forensics.snapshot import (
    CONSUMER_OFFSETS_SCHEMA,
    KAFKA_MESSAGES_SCHEMA,
    KAFKA_PARTITIONS_SCHEMA,
    ParquetPartWriter,
    SnapshotWriter,
)

__all__ = [
    "IsolationName",
    "KafkaSnapshotOptions",
    "PartitionTask",
    "ProgressCallback",
    "ProgressEvent",
    "select_topics",
    "snapshot_kafka_into",
]

logger = logging.getLogger(__name__)

IsolationName = Literal["read_committed", "read_uncommitted"]
ISOLATION_LEVELS: tuple[str, ...] = ("read_committed", "read_uncommitted")
_PLAN_KEY = "kafka_plan"
_CHUNKS_KEY = "kafka_chunks"
_DONE_KEY = "kafka_done"


@dataclass(frozen=True)
class KafkaSnapshotOptions:
    """What to read and how.

    ``topics`` are exact names, or regular expressions when they start with ``^``
    (librdkafka's convention); empty means every catalog topic plus every topic whose
    name matches a known naming scheme. A chunk file holds at most ``chunk_rows``
    rows and closes once it holds ``chunk_bytes`` of values; it is written a row
    group at a time, and each reader has at most ``partitions_in_flight`` partitions
    open, so memory is bounded by that many row groups whatever the size of the
    topics or of the chunks.
    ``workers`` is the number of reader processes; ``None`` picks one per core (at
    most 4) for large snapshots and reads in this process otherwise.
    """

    topics: tuple[str, ...] = ()
    isolation_level: IsolationName = "read_committed"
    consumer_groups: tuple[str, ...] = ()
    catalog_prefix: str = ""
    chunk_rows: int = 50_000
    chunk_bytes: int = 32 * 1024 * 1024
    workers: int | None = None
    partitions_in_flight: int = 4
    stall_timeout_s: float = 60.0
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.isolation_level not in ISOLATION_LEVELS:
            raise InputError(
                f"isolation_level {self.isolation_level!r} is not known; expected "
                f"one of {', '.join(ISOLATION_LEVELS)}"
            )
        if self.chunk_rows < 1 or self.chunk_bytes < 1:
            raise InputError(
                f"chunk_rows={self.chunk_rows} and chunk_bytes={self.chunk_bytes} "
                "must both be at least 1"
            )
        if self.partitions_in_flight < 1:
            raise InputError(
                f"partitions_in_flight={self.partitions_in_flight} must be at least 1"
            )
        if self.workers is not None and self.workers < 1:
            raise InputError(f"workers={self.workers} must be at least 1 or None")
        for topic in self.topics:
            if topic.startswith("^"):
                try:
                    re.compile(topic)
                except re.error as exc:
                    raise InputError(
                        f"topic pattern {topic!r} is not a valid regular expression: "
                        f"{exc}"
                    ) from exc

    def resume_key(self) -> dict[str, Any]:
        """The settings a resumed run must share with the interrupted one."""
        return {
            "topics": list(self.topics),
            "isolation_level": self.isolation_level,
            "consumer_groups": list(self.consumer_groups),
            "catalog_prefix": self.catalog_prefix,
            "chunk_rows": self.chunk_rows,
            "chunk_bytes": self.chunk_bytes,
        }


@dataclass(frozen=True)
class PartitionTask:
    """One partition to read, with the offsets captured when the snapshot started."""

    topic: str
    partition: int
    low_watermark: int
    high_watermark: int
    last_stable_offset: int
    start_offset: int
    end_offset: int

    @property
    def key(self) -> str:
        return f"{self.topic}|{self.partition}"


@dataclass(frozen=True)
class ProgressEvent:
    """Something the snapshot did: planned a topic, wrote a chunk, ended a partition.

    A ``plan`` event per topic gives the offsets to read (``expected_rows``, an upper
    bound: markers and aborted records take offsets too) and what an interrupted run
    already read.
    """

    kind: Literal["plan", "chunk", "partition"]
    topic: str | None = None
    partition: int | None = None
    rows: int = 0
    value_bytes: int = 0
    expected_rows: int = 0


ProgressCallback = Callable[[ProgressEvent], None]


# Topic selection.


def select_topics(
    available: Iterable[str],
    requested: Sequence[str] = (),
    *,
    catalog_prefix: str = "",
    parser: TopicNameParser | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Pick topics: returns (topic -> why it was chosen, catalog topics not found).

    Exact names must exist; a ``^pattern`` must match at least one topic. Internal
    topics (``__consumer_offsets`` ...) are only taken when named exactly.
    """
    names = set(available)
    visible = sorted(t for t in names if not t.startswith("__"))
    parser = parser or default_parser()
    chosen: dict[str, str] = {}
    missing: list[str] = []
    if not requested:
        for name in TopicCatalog(prefix=catalog_prefix).names():
            if name in names:
                chosen[name] = "catalog"
            else:
                missing.append(name)
        for name in visible:
            if name not in chosen:
                topic_name = parser.parse(name)
                if topic_name.matched:
                    chosen[name] = f"scheme:{topic_name.scheme}"
        return dict(sorted(chosen.items())), missing

    for item in requested:
        if item.startswith("^"):
            pattern = re.compile(item)
            matched = [t for t in visible if pattern.search(t)]
            if not matched:
                raise InputError(
                    f"topic pattern {item!r} matches no topic on the broker "
                    f"({len(visible)} topics)"
                )
            for name in matched:
                chosen.setdefault(name, f"pattern:{item}")
        elif item in names:
            chosen.setdefault(item, "named")
        else:
            close = [t for t in visible if item.lower() in t.lower()][:3]
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise InputError(f"topic {item!r} does not exist on the broker{hint}")
    return dict(sorted(chosen.items())), missing


# Planning: watermarks, start offsets, consumer group offsets.


def _watermarks(
    settings: KafkaSettings,
    partitions: list[TopicPartition],
    isolation_level: str,
    timeout: float,
) -> dict[tuple[str, int], tuple[int, int]]:
    """(low, high) per partition from the broker, as a consumer with this isolation
    level sees them: under read_committed the high mark is the last stable offset.

    A consumer's watermark query is used rather than the admin client's offset
    listing, which here now and then answered an earliest-offset query with the
    latest offset.
    """
    consumer = Consumer(_consumer_config(settings.client_config(), isolation_level))
    try:
        # Watermark queries go to each partition's leader as the client's metadata
        # knows it: ask for the topics first, or a young topic reads as unknown.
        for topic in sorted({tp.topic for tp in partitions}):
            consumer.list_topics(topic, timeout=timeout)
        marks = {}
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(
                tp, timeout=timeout, cached=False
            )
            if low < 0 or high < low:
                raise KafkaError(
                    f"broker gave unusable watermarks low={low} high={high} for "
                    f"topic={tp.topic} partition={tp.partition}"
                )
            marks[(tp.topic, tp.partition)] = (int(low), int(high))
        return marks
    except KafkaException as exc:
        raise KafkaError(f"could not read partition watermarks: {exc}") from exc
    finally:
        consumer.close()


def _capture_group_offsets(
    admin: AdminClient, groups: Sequence[str], timeout: float
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    report: dict[str, Any] = {}
    for group in groups:
        try:
            futures = admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=timeout
            )
            result = futures[group].result(timeout=timeout)
        except KafkaException as exc:
            report[group] = {"found": False, "error": str(exc), "partitions": 0}
            logger.warning("consumer group offsets unreadable group=%s: %s", group, exc)
            continue
        partitions = result.topic_partitions or []
        for tp in partitions:
            offset = tp.offset if tp.offset >= 0 else None
            rows.append(
                {
                    "group_id": group,
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "committed_offset": offset,
                }
            )
        report[group] = {"found": bool(partitions), "partitions": len(partitions)}
    return rows, report


def _previous_ends(incremental_from: Path) -> tuple[dict[str, int], dict[str, Any]]:
    from codegen_forensics.snapshot import Snapshot

    previous = Snapshot.open(incremental_from)
    kafka = previous.manifest.get("kafka")
    if not kafka:
        raise SnapshotError(
            f"snapshot {str(incremental_from)!r} has no Kafka section to continue from"
        )
    ends = {
        f"{p['topic']}|{p['partition']}": int(p["end_offset"])
        for p in kafka["partitions"]
    }
    return ends, {"path": str(incremental_from), "checksum": previous.checksum}


def _settled_metadata(
    admin: AdminClient, metadata: Any, topics: list[str], timeout: float
) -> Any:
    """Metadata in which every chosen topic lists its partitions without an error.

    Right after a topic is created or a leader moves, the broker can answer with an
    error and no partitions; reading then would silently skip the topic.
    """
    deadline = time.monotonic() + timeout
    while True:
        unsettled = [
            t
            for t in topics
            if t not in metadata.topics
            or metadata.topics[t].error is not None
            or not metadata.topics[t].partitions
        ]
        if not unsettled:
            return metadata
        if time.monotonic() > deadline:
            details = ", ".join(
                f"{t}: {getattr(metadata.topics.get(t), 'error', 'missing')}"
                for t in unsettled
            )
            raise KafkaError(f"topic metadata is not available for {details}")
        time.sleep(0.2)
        metadata = admin.list_topics(timeout=timeout)


def _plan(
    settings: KafkaSettings,
    options: KafkaSnapshotOptions,
    parser: TopicNameParser,
    incremental_from: Path | None,
) -> dict[str, Any]:
    admin = AdminClient(settings.client_config())
    try:
        metadata = admin.list_topics(timeout=options.timeout_s)
    except KafkaException as exc:
        admin.poll(0)  # hands the client's log lines of the attempt to its logger
        raise KafkaError(
            f"broker at {settings.describe()} does not answer: {exc}"
        ) from exc
    # A topic created a moment ago can be missing from the first metadata answer:
    # ask again for a few seconds before saying that a named topic does not exist.
    deadline = time.monotonic() + min(options.timeout_s, 5.0)
    while True:
        try:
            chosen, missing = select_topics(
                metadata.topics,
                options.topics,
                catalog_prefix=options.catalog_prefix,
                parser=parser,
            )
            break
        except InputError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)
            metadata = admin.list_topics(timeout=options.timeout_s)
    metadata = _settled_metadata(admin, metadata, list(chosen), options.timeout_s)
    partitions = [
        TopicPartition(topic, p)
        for topic in chosen
        for p in sorted(metadata.topics[topic].partitions)
    ]
    marks = _watermarks(settings, partitions, "read_uncommitted", options.timeout_s)
    stables = (
        _watermarks(settings, partitions, "read_committed", options.timeout_s)
        if options.isolation_level == "read_committed"
        else marks
    )
    # The design's groups, under the catalog's prefix too when there is one.
    known = [
        *CONSUMER_GROUPS,
        *(f"{options.catalog_prefix}{g}" for g in CONSUMER_GROUPS),
    ]
    groups = list(dict.fromkeys([*known, *options.consumer_groups]))
    group_rows, group_report = _capture_group_offsets(admin, groups, options.timeout_s)

    previous: dict[str, int] = {}
    source = None
    if incremental_from is not None:
        previous, source = _previous_ends(incremental_from)
    findings: list[str] = []
    tasks = []
    for tp in partitions:
        key = (tp.topic, tp.partition)
        (low, high), stable = marks[key], stables[key][1]
        start = low
        prior = previous.get(f"{tp.topic}|{tp.partition}")
        if prior is not None:
            if prior < low:
                findings.append(
                    f"topic={tp.topic} partition={tp.partition}: offsets {prior}.."
                    f"{low - 1} were removed (retention or deletion) after the "
                    "previous snapshot ended"
                )
            elif prior > high:
                findings.append(
                    f"topic={tp.topic} partition={tp.partition}: the previous "
                    f"snapshot ended at {prior}, beyond the high watermark {high}; "
                    "the topic was probably recreated, so it is read from the start"
                )
            else:
                start = prior
        tasks.append(
            PartitionTask(
                topic=tp.topic,
                partition=tp.partition,
                low_watermark=low,
                high_watermark=high,
                last_stable_offset=stable,
                start_offset=start,
                end_offset=max(start, stable),
            )
        )
        if stable < high:
            findings.append(
                f"topic={tp.topic} partition={tp.partition}: a transaction was open "
                f"at the snapshot start; read up to the last stable offset {stable} "
                f"of high watermark {high}"
            )
    topics = {}
    for topic, reason in chosen.items():
        name = parser.parse(topic)
        topics[topic] = {
            "reason": reason,
            "category": name.category,
            "operation": name.operation,
            "version": name.version,
            "scheme": name.scheme,
            "partitions": len(metadata.topics[topic].partitions),
        }
    return {
        "settings": options.resume_key(),
        "bootstrap_servers": settings.describe(),
        "started_at": datetime.now(UTC).isoformat(),
        "incremental_from": source,
        "topics": topics,
        "missing_catalog_topics": missing,
        "tasks": [asdict(t) for t in tasks],
        "group_offsets": group_rows,
        "consumer_groups": group_report,
        "findings": findings,
    }


# Reading partitions (in this process or in worker processes).

# Rows of a partition are decoded and written as one Parquet row group once this
# many are pending (or this many value bytes), and when their chunk closes. The
# points depend only on the partition's contents, so files are the same from run
# to run, and a reader holds at most this much per open partition.
_GROUP_ROWS = 8192
_GROUP_BYTES = 4 * 1024 * 1024


@dataclass
class _OpenChunk:
    """The chunk being written for one partition: a file per day, and its totals."""

    files: dict[str, ParquetPartWriter] = field(default_factory=dict)
    rows: int = 0
    first: int | None = None
    last: int | None = None
    key_bytes: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    dlq_unknown: int = 0
    timestamp_min: datetime | None = None
    timestamp_max: datetime | None = None

    def abort(self) -> None:
        for part in self.files.values():
            part.abort()
        self.files.clear()


@dataclass
class _PartitionState:
    task: PartitionTask
    batch: MessageBatch
    chunk: _OpenChunk = field(default_factory=_OpenChunk)
    # Raw fields of the messages not yet decoded, in offset order.
    offsets: list[int] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)
    kinds: list[int] = field(default_factory=list)
    headers: list[Any] = field(default_factory=list)
    pending_bytes: int = 0
    chunk_rows: int = 0
    chunk_bytes: int = 0
    first_seen: int | None = None
    done: bool = False

    def flush(self, root: Path) -> None:
        """Decode the pending messages and write them as a row group per day."""
        if not self.offsets:
            return
        task = self.task
        self.batch.extend(
            task.topic,
            task.partition,
            self.offsets,
            self.values,
            keys=self.keys,
            timestamps=self.stamps,
            timestamp_types=self.kinds,
            headers=self.headers,
        )
        self.offsets, self.values, self.keys = [], [], []
        self.stamps, self.kinds, self.headers = [], [], []
        self.pending_bytes = 0
        _add_to_chunk(root, task, self.chunk, self.batch.to_batch())


def _add_to_chunk(
    root: Path, task: PartitionTask, chunk: _OpenChunk, batch: pa.RecordBatch
) -> None:
    offsets = batch.column("offset")
    timestamps = batch.column("timestamp")
    days = _day_of(timestamps)
    unique = sorted(pc.unique(days).to_pylist())
    for day in unique:
        part = batch if len(unique) == 1 else batch.filter(pc.equal(days, day))
        writer = chunk.files.get(day)
        if writer is None:
            # Named by the first offset of the day in the chunk, as before.
            first = part.column("offset")[0].as_py()
            relative = (
                f"kafka/topic={task.topic}/day={day}/"
                f"part-{task.partition:05d}-{first:020d}.parquet"
            )
            writer = chunk.files[day] = ParquetPartWriter(
                root, relative, KAFKA_MESSAGES_SCHEMA
            )
        writer.write(part)

    if chunk.first is None:
        chunk.first = offsets[0].as_py()
    chunk.last = offsets[-1].as_py()
    chunk.rows += batch.num_rows
    chunk.key_bytes += pc.sum(batch.column("key_size")).as_py() or 0
    for entry in pc.value_counts(batch.column("decode_status")).to_pylist():
        chunk.statuses[entry["values"]] += entry["counts"]
    chunk.dlq_unknown += (
        pc.sum(pc.equal(batch.column("dlq_shape"), "unknown")).as_py() or 0
    )
    span = pc.min_max(timestamps).as_py()
    chunk.timestamp_min = _earliest(chunk.timestamp_min, span["min"])
    chunk.timestamp_max = _latest(chunk.timestamp_max, span["max"])


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def _consumer_config(
    client_config: Mapping[str, Any], isolation_level: str
) -> dict[str, Any]:
    config = dict(client_config)
    config.update(
        {
            # A group id is required by the client; no group is joined (assign())
            # and nothing is ever committed.
            "group.id": f"codegen-forensics-snapshot-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "isolation.level": isolation_level,
            # The client's prefetch queue is the other half of a reader's memory;
            # 16 MB keeps the reader ahead of decoding on a local broker.
            "queued.max.messages.kbytes": 16384,
            "fetch.wait.max.ms": 100,
        }
    )
    return config


def _day_of(timestamps: pa.Array | pa.ChunkedArray) -> pa.Array:
    days = pc.strftime(timestamps, format="%Y-%m-%d")
    return pc.fill_null(days, "unknown")


def _write_chunk(
    root: Path, state: _PartitionState, next_offset: int
) -> dict[str, Any] | None:
    """Finish the partition's open chunk (one file per day) and start a new one."""
    state.flush(root)
    chunk = state.chunk
    value_bytes = state.chunk_bytes
    state.chunk, state.chunk_rows, state.chunk_bytes = _OpenChunk(), 0, 0
    if not chunk.rows:
        return None
    task = state.task
    files = [chunk.files[day].close() for day in sorted(chunk.files)]
    return {
        "topic": task.topic,
        "partition": task.partition,
        "first": chunk.first,
        "last": chunk.last,
        "next": next_offset,
        "rows": chunk.rows,
        "value_bytes": value_bytes,
        "key_bytes": chunk.key_bytes,
        "statuses": dict(chunk.statuses),
        "dlq_unknown": chunk.dlq_unknown,
        "timestamp_min": _iso(chunk.timestamp_min),
        "timestamp_max": _iso(chunk.timestamp_max),
        "files": files,
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds")


Emit = Callable[[tuple[Any, ...]], None]


def read_partitions(
    client_config: Mapping[str, Any],
    root: Path,
    tasks: Sequence[PartitionTask],
    isolation_level: str,
    chunk_rows: int,
    chunk_bytes: int,
    stall_timeout_s: float,
    parser: TopicNameParser | None,
    emit: Emit,
    in_flight: int = 4,
) -> None:
    """Read partitions from their start up to their captured end, writing chunks.

    At most ``in_flight`` partitions are assigned at once, and each holds at most
    one row group of undecoded messages, so memory is bounded whatever the size of
    the topics. ``emit`` receives ``("chunk", chunk)`` for every chunk written and
    ``("partition", key, info)`` when a partition is finished.
    """
    waiting: list[PartitionTask] = []
    for task in tasks:
        if task.start_offset >= task.end_offset:
            emit(("partition", task.key, {"first_seen": None}))
        else:
            waiting.append(task)
    if not waiting:
        return
    waiting.reverse()
    states: dict[tuple[str, int], _PartitionState] = {}
    group_rows = min(chunk_rows, _GROUP_ROWS)

    consumer = Consumer(_consumer_config(client_config, isolation_level))
    eof_code = ClientKafkaError._PARTITION_EOF
    try:
        last_progress = time.monotonic()
        while states or waiting:
            # Keep up to in_flight partitions assigned.
            added = []
            while waiting and len(states) < in_flight:
                task = waiting.pop()
                states[(task.topic, task.partition)] = _PartitionState(
                    task, MessageBatch(parser)
                )
                added.append(
                    TopicPartition(task.topic, task.partition, task.start_offset)
                )
            if added:
                consumer.incremental_assign(added)
            # Typed loosely: the client's stubs make every field optional.
            messages: list[Any] = consumer.consume(num_messages=10_000, timeout=0.5)
            if messages:
                last_progress = time.monotonic()
            # Messages come in runs from one partition: look its state up per run.
            current: tuple[str, int] | None = None
            state: _PartitionState | None = None
            for message in messages:
                error = message.error()
                if error is not None:
                    state = states.get((message.topic(), message.partition()))
                    current = None
                    _on_error(message, error, state, eof_code)
                    continue
                slot = (message.topic(), message.partition())
                if slot != current:
                    current, state = slot, states.get(slot)
                if state is None or state.done:
                    continue
                offset = message.offset()
                if offset >= state.task.end_offset:
                    logger.debug(
                        "past the captured end topic=%s partition=%s offset=%s",
                        slot[0],
                        slot[1],
                        offset,
                    )
                    state.done = True
                    continue
                if state.first_seen is None:
                    state.first_seen = offset
                value = message.value()
                kind, millis = message.timestamp()
                state.offsets.append(offset)
                state.values.append(value)
                state.keys.append(message.key())
                state.stamps.append(millis)
                state.kinds.append(kind)
                state.headers.append(message.headers())
                size = 0 if value is None else len(value)
                state.pending_bytes += size
                state.chunk_bytes += size
                state.chunk_rows += 1
                if state.chunk_rows >= chunk_rows or state.chunk_bytes >= chunk_bytes:
                    emit(("chunk", _write_chunk(root, state, offset + 1)))
                elif (
                    len(state.offsets) >= group_rows
                    or state.pending_bytes >= _GROUP_BYTES
                ):
                    state.flush(root)

            # Stop on the consumer's position: it passes transaction markers and
            # aborted records that are never delivered.
            active = [s for s in states.values() if not s.done]
            if active:
                positions = consumer.position(
                    [TopicPartition(s.task.topic, s.task.partition) for s in active]
                )
                for state, tp in zip(active, positions, strict=True):
                    if tp.offset >= state.task.end_offset:
                        logger.debug(
                            "position at the end topic=%s partition=%s position=%s",
                            tp.topic,
                            tp.partition,
                            tp.offset,
                        )
                        state.done = True
            finished = [s for s in states.values() if s.done]
            for state in finished:
                task = state.task
                chunk = _write_chunk(root, state, task.end_offset)
                if chunk is not None:
                    emit(("chunk", chunk))
                consumer.incremental_unassign(
                    [TopicPartition(task.topic, task.partition)]
                )
                del states[(task.topic, task.partition)]
                emit(("partition", task.key, {"first_seen": state.first_seen}))
                last_progress = time.monotonic()
            if states and time.monotonic() - last_progress > stall_timeout_s:
                stuck = ", ".join(
                    f"topic={s.task.topic} partition={s.task.partition} "
                    f"end={s.task.end_offset}"
                    for s in states.values()
                )
                raise KafkaError(
                    f"no progress for {stall_timeout_s:.0f}s reading {stuck}; is the "
                    "broker reachable?"
                )
    finally:
        for state in states.values():
            state.chunk.abort()
        consumer.close()


def _on_error(
    message: Any, error: Any, state: _PartitionState | None, eof_code: int
) -> None:
    """End a partition on its end-of-partition event; raise on any other error."""
    if error.code() != eof_code:
        raise KafkaError(
            f"reading topic={message.topic()} partition={message.partition()} "
            f"failed: {error.str()}"
        )
    if state is not None and message.offset() >= state.task.end_offset:
        logger.debug(
            "end of partition topic=%s partition=%s offset=%s",
            message.topic(),
            message.partition(),
            message.offset(),
        )
        state.done = True


def _worker_main(
    index: int,
    client_config: dict[str, Any],
    root: str,
    tasks: list[PartitionTask],
    isolation_level: str,
    chunk_rows: int,
    chunk_bytes: int,
    stall_timeout_s: float,
    parser: TopicNameParser | None,
    out: Any,
    in_flight: int,
) -> None:
    try:
        read_partitions(
            client_config,
            Path(root),
            tasks,
            isolation_level,
            chunk_rows,
            chunk_bytes,
            stall_timeout_s,
            parser,
            out.put,
            in_flight,
        )
    except BaseException as exc:
        out.put(
            ("error", index, f"{exc.__class__.__name__}: {exc}", traceback.format_exc())
        )
        return
    out.put(("worker_done", index))


def _split(tasks: list[PartitionTask], workers: int) -> list[list[PartitionTask]]:
    """Spread partitions over workers, largest first, to balance their sizes."""
    groups: list[list[PartitionTask]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for task in sorted(
        tasks, key=lambda t: t.end_offset - t.start_offset, reverse=True
    ):
        target = loads.index(min(loads))
        groups[target].append(task)
        loads[target] += task.end_offset - task.start_offset
    return [g for g in groups if g]


# The whole Kafka part of a snapshot.


@dataclass
class _Run:
    writer: SnapshotWriter
    plan: dict[str, Any]
    chunks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    progress: ProgressCallback | None = None

    def on_event(self, event: tuple[Any, ...]) -> None:
        if event[0] == "chunk":
            chunk = event[1]
            key = f"{chunk['topic']}|{chunk['partition']}"
            self.chunks.setdefault(key, []).append({k: v for k, v in chunk.items()})
            self.writer.add(chunk["files"], state={_CHUNKS_KEY: self.chunks})
            if self.progress:
                self.progress(
                    ProgressEvent(
                        "chunk",
                        chunk["topic"],
                        chunk["partition"],
                        rows=chunk["rows"],
                        value_bytes=chunk["value_bytes"],
                    )
                )
        elif event[0] == "partition":
            key, info = event[1], event[2]
            self.done[key] = info
            self.writer.save_state(_DONE_KEY, self.done)
            if self.progress:
                topic, _, partition = key.rpartition("|")
                self.progress(ProgressEvent("partition", topic, int(partition)))


def snapshot_kafka_into(
    writer: SnapshotWriter,
    settings: KafkaSettings,
    options: KafkaSnapshotOptions | None = None,
    *,
    incremental_from: str | Path | None = None,
    parser: TopicNameParser | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Snapshot topics into ``writer``'s directory; returns the manifest section.

    A directory with an interrupted Kafka snapshot is resumed from its recorded plan
    and chunks; its settings must match. The caller writes the manifest.
    """
    options = options or KafkaSnapshotOptions()
    parser = parser or default_parser()
    previous = Path(incremental_from) if incremental_from is not None else None

    # The plan: captured once, reused when resuming.
    plan = writer.state(_PLAN_KEY)
    if plan is not None:
        if plan["settings"] != options.resume_key() or (
            (plan["incremental_from"] or {}).get("path")
            != (str(previous) if previous else None)
        ):
            raise SnapshotError(
                f"snapshot {str(writer.root)!r} was started with other Kafka "
                f"settings ({plan['settings']}); run it again with those, or write "
                "into a new directory"
            )
        logger.info("resuming kafka snapshot path=%s", writer.root)
    else:
        plan = _plan(settings, options, parser, previous)
        writer.save_state(_PLAN_KEY, plan)
    run = _Run(
        writer,
        plan,
        chunks=dict(writer.state(_CHUNKS_KEY) or {}),
        done=dict(writer.state(_DONE_KEY) or {}),
        progress=progress,
    )
    _discard_unfinished(writer, run.chunks)

    # What is left to read.
    tasks = [PartitionTask(**t) for t in plan["tasks"]]
    pending = []
    for task in tasks:
        if task.key in run.done:
            continue
        recorded = run.chunks.get(task.key)
        if recorded:
            resume_at = max(c["next"] for c in recorded)
            task = PartitionTask(**{**asdict(task), "start_offset": resume_at})
        pending.append(task)
    if progress:
        # One event per topic: offsets to read, and rows already read before a resume.
        for topic in plan["topics"]:
            progress(
                ProgressEvent(
                    "plan",
                    topic,
                    rows=sum(
                        c["rows"]
                        for t in tasks
                        if t.topic == topic
                        for c in run.chunks.get(t.key, [])
                    ),
                    value_bytes=sum(
                        c["value_bytes"]
                        for t in tasks
                        if t.topic == topic
                        for c in run.chunks.get(t.key, [])
                    ),
                    expected_rows=sum(
                        t.end_offset - t.start_offset for t in tasks if t.topic == topic
                    ),
                )
            )

    total = sum(t.end_offset - t.start_offset for t in pending)
    workers = options.workers
    if workers is None:
        workers = min(4, mp.cpu_count()) if total >= 500_000 else 1
    groups = _split(pending, workers)
    client_config = settings.client_config()
    if len(groups) <= 1:
        read_partitions(
            client_config,
            writer.root,
            pending,
            options.isolation_level,
            options.chunk_rows,
            options.chunk_bytes,
            options.stall_timeout_s,
            parser,
            run.on_event,
            options.partitions_in_flight,
        )
    else:
        _read_in_processes(client_config, writer.root, groups, options, parser, run)
    unfinished = [t.key for t in pending if t.key not in run.done]
    if unfinished:
        raise SnapshotError(
            f"partitions {', '.join(unfinished)} were not read to their end; run the "
            "snapshot again to resume"
        )

    return _finish(writer, run, tasks, options)


def _read_in_processes(
    client_config: dict[str, Any],
    root: Path,
    groups: list[list[PartitionTask]],
    options: KafkaSnapshotOptions,
    parser: TopicNameParser,
    run: _Run,
) -> None:
    context = mp.get_context("spawn")
    out = context.Queue()
    processes = [
        context.Process(
            target=_worker_main,
            args=(
                index,
                client_config,
                str(root),
                group,
                options.isolation_level,
                options.chunk_rows,
                options.chunk_bytes,
                options.stall_timeout_s,
                parser,
                out,
                options.partitions_in_flight,
            ),
            daemon=True,
        )
        for index, group in enumerate(groups)
    ]
    for process in processes:
        process.start()
    running = set(range(len(processes)))
    try:
        while running:
            try:
                event = out.get(timeout=1.0)
            except queue_module.Empty:
                dead = [i for i in running if not processes[i].is_alive()]
                if dead:
                    # A worker may have exited right after its last message.
                    try:
                        event = out.get(timeout=2.0)
                    except queue_module.Empty:
                        raise SnapshotError(
                            f"snapshot reader process {dead[0]} exited without "
                            f"finishing (exit code {processes[dead[0]].exitcode}); "
                            "run the snapshot again to resume"
                        ) from None
                else:
                    continue
            if event[0] == "worker_done":
                running.discard(event[1])
            elif event[0] == "error":
                raise KafkaError(
                    f"snapshot reader process {event[1]} failed: {event[2]}\n{event[3]}"
                )
            else:
                run.on_event(event)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join(timeout=10)


def _discard_unfinished(
    writer: SnapshotWriter, chunks: Mapping[str, list[dict[str, Any]]]
) -> None:
    """Remove files of chunks that were not recorded before an interruption."""
    kept = {f["path"] for cs in chunks.values() for c in cs for f in c["files"]}
    stale = [p for p in writer.files if p.startswith("kafka/") and p not in kept]
    if stale:
        writer.forget(stale)
    base = writer.root / "kafka"
    if base.exists():
        for path in base.rglob("*"):
            relative = path.relative_to(writer.root).as_posix()
            if path.is_file() and relative not in kept:
                logger.info("removing unfinished file path=%s", relative)
                path.unlink()


def _finish(
    writer: SnapshotWriter,
    run: _Run,
    tasks: list[PartitionTask],
    options: KafkaSnapshotOptions,
) -> dict[str, Any]:
    """Partition and group tables, and the manifest section."""
    plan = run.plan
    findings = list(plan["findings"])
    partition_rows = []
    per_topic: dict[str, dict[str, Any]] = {}
    statuses_total: Counter[str] = Counter()
    for task in tasks:
        chunks = sorted(run.chunks.get(task.key, []), key=lambda c: c["first"])
        rows = sum(c["rows"] for c in chunks)
        value_bytes = sum(c["value_bytes"] for c in chunks)
        first = chunks[0]["first"] if chunks else None
        last = chunks[-1]["last"] if chunks else None
        partition_rows.append(
            {
                **asdict(task),
                "rows": rows,
                "value_bytes": value_bytes,
                "first_offset": first,
                "last_offset": last,
            }
        )
        topic = per_topic.setdefault(
            task.topic,
            {
                **plan["topics"][task.topic],
                "rows": 0,
                "value_bytes": 0,
                "key_bytes": 0,
                "decode_status": Counter(),
                "dlq_unknown": 0,
                "timestamp_min": None,
                "timestamp_max": None,
            },
        )
        topic["rows"] += rows
        topic["value_bytes"] += value_bytes
        for chunk in chunks:
            topic["key_bytes"] += chunk["key_bytes"]
            topic["decode_status"].update(chunk["statuses"])
            topic["dlq_unknown"] += chunk["dlq_unknown"]
            topic["timestamp_min"] = _min(
                topic["timestamp_min"], chunk["timestamp_min"]
            )
            topic["timestamp_max"] = _max(
                topic["timestamp_max"], chunk["timestamp_max"]
            )
    for name, topic in per_topic.items():
        statuses_total.update(topic["decode_status"])
        topic["decode_status"] = dict(sorted(topic["decode_status"].items()))
        if topic["dlq_unknown"]:
            findings.append(
                f"topic={name}: {topic['dlq_unknown']} dead-letter messages of an "
                "unknown shape, kept raw"
            )

    writer.write(
        "kafka_partitions.parquet",
        pa.Table.from_pylist(partition_rows, schema=KAFKA_PARTITIONS_SCHEMA),
    )
    writer.write(
        "consumer_offsets.parquet",
        pa.Table.from_pylist(plan["group_offsets"], schema=CONSUMER_OFFSETS_SCHEMA),
    )
    times = [t for t in per_topic.values() if t["timestamp_min"]]
    return {
        "bootstrap_servers": plan["bootstrap_servers"],
        "settings": plan["settings"],
        "started_at": plan["started_at"],
        "finished_at": datetime.now(UTC).isoformat(),
        "incremental_from": plan["incremental_from"],
        "topics": per_topic,
        "partitions": partition_rows,
        "missing_catalog_topics": plan["missing_catalog_topics"],
        "consumer_groups": plan["consumer_groups"],
        "rows": sum(p["rows"] for p in partition_rows),
        "value_bytes": sum(p["value_bytes"] for p in partition_rows),
        "decode_status": dict(sorted(statuses_total.items())),
        "dlq_unknown": sum(t["dlq_unknown"] for t in per_topic.values()),
        "time_range": {
            "min": min((t["timestamp_min"] for t in times), default=None),
            "max": max((t["timestamp_max"] for t in times), default=None),
        },
        "findings": findings,
    }


def _min(a: str | None, b: str | None) -> str | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: str | None, b: str | None) -> str | None:
    return b if a is None else a if b is None else max(a, b)
