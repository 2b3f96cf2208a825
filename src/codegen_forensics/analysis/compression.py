"""Compression ratio per topic, estimated by re-batching values as the producer would.

A consumer receives values already decompressed, so the ratio the producer's gzip
achieved cannot be read from a snapshot. It is estimated instead: for each partition,
messages in offset order are packed into record batches the way librdkafka packs
them (a batch closes when its 61-byte header plus, per record, the key, the value and
36 bytes of worst-case framing would pass ``batch_bytes``, 16 KB by default; the
first record always fits), each batch's records are written in the Kafka v2 record
format (headers included) and compressed with gzip at ``level`` (librdkafka's default
is zlib's 6).

- ``ratio``: raw value bytes over the gzip-compressed bytes of the batches.
- ``estimated_disk_bytes``: what the broker would keep: per batch, 61 header bytes
  plus the compressed records. A test compares it with a real broker's log segments.

It assumes full batches: a producer that sends sparsely (one message per
``linger.ms``) makes smaller batches that compress worse than estimated.

Byte-level work streams Arrow record batches from the snapshot's files, holding one
open batch per partition. It covers every message of the snapshot, whatever the
analysis window. ``sample_bytes`` bounds the work on large snapshots: per partition,
only every n-th batch is compressed so that about that many raw bytes are, and the
compressed size of the others is extrapolated from them (columns ``sampled_*`` say
how much was compressed).
"""

from __future__ import annotations

import bisect
import logging
import math
import queue
import threading
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from codegen_forensics.analysis._util import sort_frame
from codegen_forensics.analysis.context import Analysis
from codegen_forensics.errors import InputError

__all__ = ["BATCH_HEADER_BYTES", "compression_by_partition", "compression_ratios"]

logger = logging.getLogger(__name__)

BATCH_HEADER_BYTES = 61  # a v2 record batch's fixed header
RECORD_MAX_OVERHEAD = 36  # librdkafka's worst-case framing per record, for batch.size
_IN_FLIGHT = 64  # batches handed to the compressing threads and not yet collected
_COLUMNS = ("topic", "partition", "offset", "timestamp", "key", "value", "headers")


class _OutOfOrderError(Exception):
    """The files do not list a partition's offsets in increasing order."""


@dataclass
class _Partition:
    stride: int
    batches: int = 0
    messages: int = 0
    duplicates: int = 0
    value_bytes: int = 0
    key_bytes: int = 0
    sampled_batches: int = 0
    sampled_value_bytes: int = 0
    sampled_payload_bytes: int = 0  # keys and values of the compressed batches
    sampled_compressed_bytes: int = 0
    last_offset: int = -1
    # The batch being filled.
    open_records: int = 0
    open_fill: int = 0
    open_first_ts: int = 0
    open_first_offset: int = 0
    open_value_bytes: int = 0
    open_payload_bytes: int = 0
    # Framed records, or (within a run) where the run's framed records fall.
    open_parts: list[bytes | range] = field(default_factory=list)
    open_sampled: bool = False


def _encode_varint(value: int) -> bytes:
    n = (value << 1) ^ (value >> 63)  # zigzag
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Varints of -1 .. 65534, the lengths and deltas nearly every record has.
_SMALL_VARINTS = [_encode_varint(v) for v in range(-1, 1 << 16)]


def _varint(value: int) -> bytes:
    """Kafka's zigzag varint."""
    if -1 <= value < (1 << 16) - 1:
        return _SMALL_VARINTS[value + 1]
    return _encode_varint(value)


def _record(
    offset_delta: int,
    ts_delta: int,
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[dict[str, Any]] | None,
) -> bytes:
    """One record of a v2 record batch (:func:`_frame` frames many at once)."""
    parts = [
        b"\x00",  # attributes
        _varint(ts_delta),
        _varint(offset_delta),
        _SMALL_VARINTS[0] if key is None else _varint(len(key)),
        key or b"",
        _SMALL_VARINTS[0] if value is None else _varint(len(value)),
        value or b"",
        _header_bytes(headers),
    ]
    body = b"".join(parts)
    return _varint(len(body)) + body


def _header_bytes(headers: Iterable[dict[str, Any]] | None) -> bytes:
    """A record's headers: their count, then each name and value."""
    items = list(headers or ())
    if not items:
        return _SMALL_VARINTS[1]
    parts = [_varint(len(items))]
    for header in items:
        name = (header.get("key") or "").encode("utf-8")
        parts += [_varint(len(name)), name]
        hv = header.get("value")
        parts += [_SMALL_VARINTS[0]] if hv is None else [_varint(len(hv)), hv]
    return b"".join(parts)


def _varints(values: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Kafka's zigzag varint of each of ``values`` (int64), and their lengths."""
    v = values.astype(np.int64, copy=False)
    z = ((v << 1) ^ (v >> 63)).view(np.uint64)
    groups = (z[:, None] >> np.arange(0, 70, 7, dtype=np.uint64)) & np.uint64(0x7F)

    # One byte per 7 bits up to the highest non-zero group; zero takes one byte.
    nonzero = groups != 0
    lengths = np.where(
        nonzero.any(axis=1), 10 - np.argmax(nonzero[:, ::-1], axis=1), 1
    ).astype(np.int64)
    position = np.arange(10)[None, :]
    more = np.where(position < lengths[:, None] - 1, np.uint64(0x80), np.uint64(0))
    data = (groups | more).astype(np.uint8)[position < lengths[:, None]]
    offsets = np.zeros(len(v) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    array = pa.Array.from_buffers(
        pa.large_binary(), len(v), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
    return array, lengths


@dataclass(frozen=True)
class _Columns:
    """One partition run's columns that framing a record reads."""

    offsets: np.ndarray
    stamps_us: np.ndarray  # 0 where the timestamp is null
    stamped: np.ndarray
    keys: pa.Array
    values: pa.Array
    headers: pa.Array


@dataclass
class _Framing:
    """The rows of one run that sampled batches hold, framed together after it.

    Each piece is rows ``start`` to ``end`` of the run, in a batch whose first
    record has timestamp ``base_ts`` (ms) and offset ``base_offset``.
    """

    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    base_ts: list[int] = field(default_factory=list)
    base_offsets: list[int] = field(default_factory=list)
    rows: int = 0

    def add(self, start: int, end: int, base_ts: int, base_offset: int) -> range:
        """Note a piece; the range is where its records fall among the framed."""
        self.starts.append(start)
        self.ends.append(end)
        self.base_ts.append(base_ts)
        self.base_offsets.append(base_offset)
        first, self.rows = self.rows, self.rows + end - start
        return range(first, self.rows)


def _frame(columns: _Columns, framing: _Framing) -> tuple[pa.Buffer, np.ndarray]:
    """The noted rows as v2 records, back to back, and where each record starts.

    The same bytes as :func:`_record` row by row, in a few Arrow and NumPy passes.
    """
    lengths = np.asarray(framing.ends) - np.asarray(framing.starts)
    starts = np.repeat(
        np.asarray(framing.starts) - np.cumsum(lengths) + lengths, lengths
    )
    rows = starts + np.arange(framing.rows)
    base_ts = np.repeat(np.asarray(framing.base_ts, dtype=np.int64), lengths)
    base_offsets = np.repeat(np.asarray(framing.base_offsets, dtype=np.int64), lengths)
    take = pa.array(rows)

    ts_delta = np.where(
        columns.stamped[rows], columns.stamps_us[rows] // 1000 - base_ts, 0
    )
    offset_delta = columns.offsets[rows] - base_offsets
    keys = columns.keys.take(take).cast(pa.large_binary())
    values = columns.values.take(take).cast(pa.large_binary())
    # A null key or value has length -1 and no bytes.
    klen = pc.binary_length(keys).fill_null(-1).to_numpy().astype(np.int64)
    vlen = pc.binary_length(values).fill_null(-1).to_numpy().astype(np.int64)

    # Headers are rare: those few records are framed in Python.
    headers = columns.headers.take(take)
    counts = pc.list_value_length(headers).fill_null(0).to_numpy()
    encoded = [_SMALL_VARINTS[1]] * len(rows)
    for i in np.flatnonzero(counts).tolist():
        encoded[i] = _header_bytes(headers[i].as_py())
    header_part = pa.array(encoded, pa.large_binary())
    header_len = pc.binary_length(header_part).to_numpy().astype(np.int64)

    parts = [_varints(ts_delta), _varints(offset_delta), _varints(klen)]
    value_len = _varints(vlen)
    body = 1 + sum(n for _, n in parts) + value_len[1] + header_len
    body += np.maximum(klen, 0) + np.maximum(vlen, 0)
    records = pc.binary_join_element_wise(
        _varints(body)[0],
        pa.scalar(b"\x00", pa.large_binary()),  # attributes
        *(array for array, _ in parts),
        keys.fill_null(b""),
        value_len[0],
        values.fill_null(b""),
        header_part,
        pa.scalar(b"", pa.large_binary()),  # no separator
    )
    offsets = np.frombuffer(records.buffers()[1], dtype=np.int64)
    offsets = offsets[records.offset : records.offset + len(records) + 1]
    return records.buffers()[2], offsets


def _topic_codes(table: pa.Table) -> tuple[np.ndarray, list[str | None]]:
    """Each row's topic as a number, and the topics they number.

    Comparing numbers is much cheaper than turning every topic into a Python string.
    """
    encoded = pc.dictionary_encode(table.column("topic")).combine_chunks()
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    names: list[str | None] = encoded.dictionary.to_pylist()
    if encoded.null_count:
        names.append(None)  # code -1
    return codes, names


def _in_order(table: pa.Table) -> bool:
    """Whether the rows already run by topic, partition and offset.

    Snapshot files are usually written in that order; sorting them again would
    copy every value for nothing.
    """
    topics, _ = _topic_codes(table)
    partitions = table.column("partition").to_numpy(zero_copy_only=False)
    offsets = table.column("offset").to_numpy(zero_copy_only=False)
    if len(topics) < 2:
        return True
    if table.column("partition").null_count or table.column("offset").null_count:
        return False
    same_topic = topics[1:] == topics[:-1]
    if not same_topic.all():
        return False
    rising = partitions[1:] > partitions[:-1]
    same = partitions[1:] == partitions[:-1]
    return bool(np.all(rising | (same & (offsets[1:] >= offsets[:-1]))))


@dataclass
class _Estimator:
    batch_bytes: int
    level: int
    strides: dict[tuple[str, int], int]
    parts: dict[tuple[str, int], _Partition] = field(default_factory=dict)
    strict: bool = True  # raise on offsets out of order; else skip duplicates
    _pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="gzip"
        )
    )
    _pending: deque[tuple[_Partition, Future[bytes]]] = field(default_factory=deque)
    # Sampled batches closed in the current run, their records not yet framed.
    _ready: list[tuple[_Partition, list[bytes | range]]] = field(default_factory=list)

    def feed(self, batch: pa.RecordBatch) -> None:
        table = pa.Table.from_batches([batch])
        if table.num_rows == 0:
            return
        if not _in_order(table):
            table = table.sort_by(
                [
                    ("topic", "ascending"),
                    ("partition", "ascending"),
                    ("offset", "ascending"),
                ]
            )
        topics, names = _topic_codes(table)
        partitions = table.column("partition").fill_null(-1).to_numpy()
        starts = np.flatnonzero(
            np.r_[
                True, (topics[1:] != topics[:-1]) | (partitions[1:] != partitions[:-1])
            ]
        )
        ends = np.r_[starts[1:], len(topics)]
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            key = (str(names[topics[start]]), int(partitions[start]))
            self._run(key, table.slice(start, end - start))

    def _state(self, key: tuple[str, int]) -> _Partition:
        state = self.parts.get(key)
        if state is None:
            state = self.parts[key] = _Partition(stride=self.strides.get(key, 1))
        return state

    def _run(self, key: tuple[str, int], run: pa.Table) -> None:
        state = self._state(key)
        offsets = run.column("offset").to_numpy()
        if offsets[0] <= state.last_offset or np.any(np.diff(offsets) <= 0):
            if self.strict:
                raise _OutOfOrderError(key)
            keep = np.r_[offsets[0] > state.last_offset, np.diff(offsets) > 0]
            state.duplicates += int((~keep).sum())
            run = run.filter(pa.array(keep))
            if run.num_rows == 0:
                return
            offsets = run.column("offset").to_numpy()
        state.last_offset = int(offsets[-1])

        keys = run.column("key")
        values = run.column("value")
        klen = pc.binary_length(keys).to_numpy(zero_copy_only=False)
        vlen = pc.binary_length(values).to_numpy(zero_copy_only=False)
        klen = np.nan_to_num(klen.astype("float64"), nan=0).astype("int64")
        vlen = np.nan_to_num(vlen.astype("float64"), nan=0).astype("int64")
        sizes = RECORD_MAX_OVERHEAD + klen + vlen
        csum = np.cumsum(sizes)
        state.messages += len(sizes)
        state.value_bytes += int(vlen.sum())
        state.key_bytes += int(klen.sum())

        # Columns the sampled batches frame, converted once per run, not per batch.
        stamps = run.column("timestamp").cast(pa.int64()).combine_chunks()
        columns = _Columns(
            offsets,
            stamps.fill_null(0).to_numpy(),
            stamps.is_valid().to_numpy(zero_copy_only=False),
            keys.combine_chunks(),
            values.combine_chunks(),
            run.column("headers").combine_chunks(),
        )
        framing = _Framing()
        ends = csum.tolist()
        # Value and payload bytes before each row, for a piece's sums in O(1).
        value_before = np.r_[0, np.cumsum(vlen)]
        payload_before = np.r_[0, np.cumsum(vlen + klen)]
        capacity = self.batch_bytes
        n = len(sizes)
        # Where a batch opened empty at each row would close (the first always fits).
        starts = np.r_[0, csum[:-1]]
        limit = capacity - BATCH_HEADER_BYTES
        closes = np.searchsorted(csum, limit + starts, side="right")
        following = np.maximum(closes, np.arange(1, n + 1)).tolist()
        i, stride = 0, state.stride
        while i < n:
            # Batches left out of the sample, full within the run: count them only.
            if state.open_records == 0:
                batches = state.batches
                while batches % stride and following[i] < n:
                    batches += 1
                    i = following[i]
                state.batches = batches
                self._open(state)
            before = ends[i - 1] if i else 0
            j = bisect.bisect_right(ends, capacity - state.open_fill + before)
            if state.open_records == 0 and j == i:
                j = i + 1  # the first record always fits
            if j > i:
                self._add(state, columns, framing, i, j, ends[j - 1] - before)
                state.open_value_bytes += int(value_before[j] - value_before[i])
                state.open_payload_bytes += int(payload_before[j] - payload_before[i])
            if j < n:
                self._close(state)
            i = j

        # Frame this run's sampled rows at once, then compress its closed batches.
        framed = _frame(columns, framing) if framing.rows else None
        self._flush(framed)
        if state.open_parts:
            state.open_parts = [_resolve(part, framed) for part in state.open_parts]

    def _open(self, state: _Partition) -> None:
        state.open_fill = BATCH_HEADER_BYTES
        state.open_sampled = state.batches % state.stride == 0
        state.open_parts = []
        state.open_value_bytes = 0
        state.open_payload_bytes = 0

    def _add(
        self,
        state: _Partition,
        columns: _Columns,
        framing: _Framing,
        i: int,
        j: int,
        fill: int,
    ) -> None:
        state.open_fill += fill
        if state.open_sampled:
            if state.open_records == 0:
                stamped = bool(columns.stamped[i])
                state.open_first_ts = (
                    int(columns.stamps_us[i]) // 1000 if stamped else 0
                )
                state.open_first_offset = int(columns.offsets[i])
            state.open_parts.append(
                framing.add(i, j, state.open_first_ts, state.open_first_offset)
            )
        state.open_records += j - i

    def _close(self, state: _Partition) -> None:
        if state.open_records == 0:
            return
        state.batches += 1
        if state.open_sampled:
            state.sampled_batches += 1
            state.sampled_value_bytes += state.open_value_bytes
            state.sampled_payload_bytes += state.open_payload_bytes
            self._ready.append((state, state.open_parts))
        state.open_records = 0
        state.open_parts = []

    def _flush(self, framed: tuple[pa.Buffer, np.ndarray] | None) -> None:
        """Compress the batches closed since the last flush."""
        for state, parts in self._ready:
            records = b"".join(_resolve(part, framed) for part in parts)
            self._compress(state, records)
        self._ready.clear()

    def _compress(self, state: _Partition, records: bytes) -> None:
        # zlib releases the GIL: a second thread compresses while this one frames.
        self._pending.append(
            (state, self._pool.submit(zlib.compress, records, self.level, 31))
        )
        if len(self._pending) >= _IN_FLIGHT:
            self._collect(_IN_FLIGHT // 2)

    def _collect(self, keep: int = 0) -> None:
        while len(self._pending) > keep:
            state, future = self._pending.popleft()
            state.sampled_compressed_bytes += len(future.result())

    def discard(self) -> None:
        self._pool.shutdown(cancel_futures=True)
        self._pending.clear()
        self._ready.clear()

    def finish(self) -> None:
        for state in self.parts.values():
            self._close(state)
        self._flush(None)
        self._collect()
        self._pool.shutdown()


def _resolve(part: bytes | range, framed: tuple[pa.Buffer, np.ndarray] | None) -> bytes:
    """A batch's part as bytes: framed already, or a range of a run's records."""
    if isinstance(part, bytes):
        return part
    assert framed is not None, "a run's records are framed before they are read"
    data, offsets = framed
    start, end = int(offsets[part.start]), int(offsets[part.stop])
    return memoryview(data)[start:end].tobytes()


def _read_ahead(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``batches``, the next one decoded by a thread while this one is framed.

    pyarrow releases the GIL while it decodes Parquet, so reading overlaps the
    framing in Python. One batch waits at most, to keep memory bounded.
    """
    ready: queue.Queue[object] = queue.Queue(maxsize=1)
    stop = threading.Event()
    done = object()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in batches:
                if not offer(batch):
                    return
            offer(done)
        except BaseException as exc:  # handed to the reading side, raised there
            offer(exc)

    thread = threading.Thread(target=read, name="parquet-read", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield cast(pa.RecordBatch, item)
    finally:
        stop.set()
        thread.join()


def _file_batches(a: Analysis, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    for path in sorted(a.snapshot.kafka_files()):
        if path.suffix != ".parquet":
            continue
        file = pq.ParquetFile(path)
        names = file.schema_arrow.names
        present = [c for c in _COLUMNS if c in names]
        # One decoding thread: the read-ahead thread already runs beside framing
        # and compressing, and more threads only contended for the two cores.
        batches = file.iter_batches(
            batch_size=chunk_rows, columns=present, use_threads=False
        )
        for batch in batches:
            yield _complete(batch)


def _complete(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch with every column the estimator reads, in the snapshot's types."""
    columns = {}
    types = {
        "topic": pa.string(),
        "partition": pa.int32(),
        "offset": pa.int64(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "key": pa.binary(),
        "value": pa.binary(),
        "headers": pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())])),
    }
    for name, dtype in types.items():
        if name in batch.schema.names:
            column = batch.column(name)
            if pa.types.is_timestamp(column.type) and column.type.tz is None:
                column = pc.assume_timezone(column.cast(pa.timestamp("us")), "UTC")
            columns[name] = column if column.type == dtype else column.cast(dtype)
        else:
            columns[name] = pa.nulls(batch.num_rows, dtype)
    return pa.RecordBatch.from_pydict(columns)


def _sorted_batches(a: Analysis, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    m = a.all_messages
    expr = m.select(*_COLUMNS).order_by(["topic", "partition", "offset"])
    for batch in a.batches(expr, chunk_size=chunk_rows):
        yield _complete(batch)


def _strides(a: Analysis, sample_bytes: int | None) -> dict[tuple[str, int], int]:
    if sample_bytes is None:
        return {}
    m = a.all_messages
    sizes = a.execute(
        m.group_by(["topic", "partition"]).aggregate(
            raw=(m.value_size.fill_null(0) + m.key_size.fill_null(0)).sum()
        )
    )
    return {
        (str(t), int(p)): max(1, math.ceil(int(raw or 0) / sample_bytes))
        for t, p, raw in zip(
            sizes["topic"], sizes["partition"], sizes["raw"], strict=True
        )
    }


def compression_by_partition(
    a: Analysis,
    *,
    batch_bytes: int = 16_384,
    level: int = 6,
    sample_bytes: int | None = None,
    chunk_rows: int = 65_536,
) -> pd.DataFrame:
    """The compression estimate per topic and partition (see the module docstring).

    Columns: topic, partition, messages, value_bytes, key_bytes, batches,
    compressed_bytes, estimated_disk_bytes, ratio, sampled_batches,
    sampled_value_bytes, sampled_compressed_bytes, duplicate_offsets.
    """
    if batch_bytes <= BATCH_HEADER_BYTES + RECORD_MAX_OVERHEAD:
        raise InputError(
            f"batch_bytes={batch_bytes} is too small; a batch needs more than "
            f"{BATCH_HEADER_BYTES + RECORD_MAX_OVERHEAD} bytes"
        )
    if not -1 <= level <= 9:
        raise InputError(f"level={level} is not a gzip level; allowed: -1 to 9")
    if sample_bytes is not None and sample_bytes <= 0:
        raise InputError(f"sample_bytes={sample_bytes} must be positive, or None")
    strides = _strides(a, sample_bytes)
    estimator = _Estimator(batch_bytes, level, strides)
    try:
        for batch in _read_ahead(_file_batches(a, chunk_rows)):
            estimator.feed(batch)
    except _OutOfOrderError as exc:
        logger.info(
            "compression: offsets out of order in files, sorting partition=%s",
            exc.args[0],
        )
        estimator.discard()
        estimator = _Estimator(batch_bytes, level, strides, strict=False)
        for batch in _sorted_batches(a, chunk_rows):
            estimator.feed(batch)
    estimator.finish()
    # Hand the decoded values' memory back, so later measures do not stack on it.
    pa.default_memory_pool().release_unused()

    rows = []
    for (topic, partition), s in sorted(estimator.parts.items()):
        payload = s.value_bytes + s.key_bytes
        if s.sampled_batches < s.batches and s.sampled_payload_bytes:
            compressed = s.sampled_compressed_bytes * payload / s.sampled_payload_bytes
        else:
            compressed = float(s.sampled_compressed_bytes)
        rows.append(
            {
                "topic": topic,
                "partition": partition,
                "messages": s.messages,
                "value_bytes": s.value_bytes,
                "key_bytes": s.key_bytes,
                "batches": s.batches,
                "compressed_bytes": compressed,
                "estimated_disk_bytes": s.batches * BATCH_HEADER_BYTES + compressed,
                "ratio": s.value_bytes / compressed if compressed else None,
                "sampled_batches": s.sampled_batches,
                "sampled_value_bytes": s.sampled_value_bytes,
                "sampled_compressed_bytes": s.sampled_compressed_bytes,
                "duplicate_offsets": s.duplicates,
            }
        )
    columns = [
        "topic",
        "partition",
        "messages",
        "value_bytes",
        "key_bytes",
        "batches",
        "compressed_bytes",
        "estimated_disk_bytes",
        "ratio",
        "sampled_batches",
        "sampled_value_bytes",
        "sampled_compressed_bytes",
        "duplicate_offsets",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    frame["ratio"] = frame["ratio"].astype("float64")
    return frame


def compression_ratios(
    a: Analysis,
    *,
    batch_bytes: int = 16_384,
    level: int = 6,
    sample_bytes: int | None = None,
    by_partition: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The compression estimate per topic: raw value bytes over gzip bytes.

    Columns: topic, partitions, messages, value_bytes, batches, compressed_bytes,
    estimated_disk_bytes, ratio (null for a topic with no value bytes),
    sampled_fraction (the share of value bytes actually compressed). Sorted by
    ratio, lowest first. ``by_partition`` may pass a
    :func:`compression_by_partition` result already computed.
    """
    parts = by_partition
    if parts is None:
        parts = compression_by_partition(
            a, batch_bytes=batch_bytes, level=level, sample_bytes=sample_bytes
        )
    columns = [
        "topic",
        "partitions",
        "messages",
        "value_bytes",
        "batches",
        "compressed_bytes",
        "estimated_disk_bytes",
        "ratio",
        "sampled_fraction",
    ]
    if parts.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    grouped = (
        parts.groupby("topic", sort=True)
        .agg(
            partitions=("partition", "size"),
            messages=("messages", "sum"),
            value_bytes=("value_bytes", "sum"),
            batches=("batches", "sum"),
            compressed_bytes=("compressed_bytes", "sum"),
            estimated_disk_bytes=("estimated_disk_bytes", "sum"),
            sampled_value_bytes=("sampled_value_bytes", "sum"),
        )
        .reset_index()
    )
    value = grouped["value_bytes"].astype("float64")
    grouped["ratio"] = (value / grouped["compressed_bytes"]).where(value > 0)
    grouped["sampled_fraction"] = (grouped["sampled_value_bytes"] / value).where(
        value > 0
    )
    return sort_frame(grouped[columns], ["ratio", "topic"])
