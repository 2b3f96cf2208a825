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
analysis window.

``sample_bytes`` bounds the work on large snapshots, sampling by Parquet row group:

- A first pass reads only each row's topic, partition, offset, ``key_size`` and
  ``value_size`` (null for a null key or value, counted as 0 bytes like the key or
  value) and places every batch boundary: messages, bytes and batches are exact.
- Per partition of ``P`` payload (key and value) bytes, the row groups holding the
  points ``(j + 1/2) * P / m``, ``j < m``, of those bytes are read, ``m`` being
  ``sample_bytes`` over its average payload per row group, rounded up; all of them
  for a partition of no more than ``sample_bytes``. A row group read for one
  partition serves every partition in it. A topic with values and no whole batch
  with values in those also gets the first row group that holds one. Keys, values,
  headers and timestamps are decoded only for the row groups read.
- Of the batches lying wholly in row groups read (a batch running into one not read
  is counted only), one in ``n`` per partition is compressed, ``n`` being its
  payload in the row groups read over ``sample_bytes``, rounded up. A batch is
  compressed when fewer than one in ``n`` of those opened before it were, so one
  lost to an unread row group passes its turn on. The compressed size of the
  partition's other batches is extrapolated by payload bytes.
- A partition with no batch compressed takes its topic's ratio: its payload bytes
  times the topic's compressed bytes over the payload bytes of those batches.

The choice depends only on the files, so a snapshot always gives the same estimate.
Files without the size columns, with offsets out of order or repeated, with a size
that is not its bytes' length (checked in the row groups read), or where a partition
would take its topic's ratio and no compressed batch of the topic holds a value
byte, are sampled by batch instead: every row is read and every n-th batch of a
partition compressed. Columns ``sampled_*`` say what was compressed in either case.
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
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from codegen_forensics.analysis._util import sort_frame
from codegen_forensics.analysis.context import Analysis
from codegen_forensics.errors import InputError
from codegen_forensics.snapshot import system_memory_pool

__all__ = ["BATCH_HEADER_BYTES", "compression_by_partition", "compression_ratios"]

logger = logging.getLogger(__name__)

BATCH_HEADER_BYTES = 61  # a v2 record batch's fixed header
RECORD_MAX_OVERHEAD = 36  # librdkafka's worst-case framing per record, for batch.size
_IN_FLIGHT = 64  # batches handed to the compressing threads and not yet collected
_COLUMNS = ("topic", "partition", "offset", "timestamp", "key", "value", "headers")
# What the first pass over the files reads: enough to place every batch boundary.
_SIZE_COLUMNS = ("topic", "partition", "offset", "key_size", "value_size")
# Sampling by row group needs these in every file; the rest may be missing (null).
_ROW_GROUP_COLUMNS = (
    "topic",
    "partition",
    "offset",
    "key",
    "value",
    *_SIZE_COLUMNS[3:],
)

# Which batches an estimator compresses: every ``stride``-th batch of a partition,
# none (the counting pass), or one in ``stride`` of those opened in the row groups
# read, caught up after a sampled batch is lost to an unread row group.
_Sampling = Literal["stride", "none", "spread"]

_T = TypeVar("_T")


class _OutOfOrderError(Exception):
    """The files do not list a partition's offsets in increasing order."""


def _named(key: tuple[str, int]) -> str:
    """A partition as a log line names it."""
    return f"topic={key[0]} partition={key[1]}"


class _LayoutError(Exception):
    """The files do not allow sampling by row group; every row is read instead."""


@dataclass
class _Partition:
    stride: int
    group: int = -1  # the last row group read with rows of this partition
    opened: int = 0  # batches opened, for the spread sampling
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

    def mark(self) -> _Mark:
        return _Mark(
            self.group,
            self.batches,
            self.open_records,
            self.open_fill,
            self.last_offset,
            self.value_bytes + self.key_bytes,
            self.value_bytes,
        )


@dataclass(frozen=True)
class _Mark:
    """Where a partition's packing stood at the edge of a row group."""

    group: int  # the last row group before the edge with rows of the partition
    batches: int
    open_records: int
    open_fill: int
    last_offset: int
    payload_bytes: int
    value_bytes: int


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

    # One byte per 7 bits up to the highest non-zero group; zero takes one byte.
    lengths = np.ones(len(z), dtype=np.int64)
    rest = z >> np.uint64(7)
    while rest.any():
        lengths += rest != 0
        rest >>= np.uint64(7)
    offsets = np.zeros(len(v) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])

    # Byte k of each varint long enough to have one, most values having one or two.
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    rows = np.arange(len(z))
    for k in range(int(lengths.max(initial=0))):
        if k:
            rows = rows[lengths[rows] > k]
        group = (z[rows] >> np.uint64(7 * k)) & np.uint64(0x7F)
        more = np.where(lengths[rows] > k + 1, np.uint64(0x80), np.uint64(0))
        data[offsets[rows] + k] = group | more
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
    sampling: _Sampling = "stride"
    # Filled while counting: per row group, each partition's marks on entering and
    # on leaving it.
    pieces: dict[int, dict[tuple[str, int], tuple[_Mark, _Mark]]] | None = None
    # Read while sampling: per row group, each partition's mark on entering it.
    resume: dict[int, dict[tuple[str, int], _Mark]] | None = None
    _group: int = -1
    _entered: dict[tuple[str, int], _Mark] = field(default_factory=dict)
    _pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="gzip"
        )
    )
    _pending: deque[tuple[_Partition, Future[bytes]]] = field(default_factory=deque)
    # Sampled batches closed in the current run, their records not yet framed.
    _ready: list[tuple[_Partition, list[bytes | range]]] = field(default_factory=list)

    def feed(self, batch: pa.RecordBatch, group: int = -1) -> None:
        """Add the rows of ``batch``, read from row group ``group`` of the files."""
        if group != self._group:
            self.end_group()
            self._group = group
        table = pa.Table.from_batches([batch])
        if table.num_rows == 0:
            return
        if not _in_order(table):
            topic = table.column("topic")
            if pa.types.is_dictionary(topic.type):  # Arrow sorts no dictionaries
                index = table.schema.get_field_index("topic")
                table = table.set_column(index, "topic", topic.cast(pa.string()))
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

    def end_group(self) -> None:
        """Note where each partition of the row group just read stands."""
        if self.pieces is not None and self._entered:
            self.pieces[self._group] = {
                key: (entry, self.parts[key].mark())
                for key, entry in self._entered.items()
            }
        self._entered = {}

    def _state(self, key: tuple[str, int]) -> _Partition:
        state = self.parts.get(key)
        if state is None:
            state = self.parts[key] = _Partition(stride=self.strides.get(key, 1))
        return state

    def _enter(self, key: tuple[str, int], state: _Partition) -> None:
        """The partition's first rows in this row group are about to be added."""
        if self.pieces is not None:
            self._entered[key] = state.mark()
        if self.resume is not None:
            entry = self.resume.get(self._group, {}).get(key)
            if entry is None:
                raise _LayoutError(
                    f"row group {self._group} holds rows of {_named(key)} the "
                    f"first pass did not see there"
                )
            if state.group != entry.group:
                _restart(state, entry)
        state.group = self._group

    def _run(self, key: tuple[str, int], run: pa.Table) -> None:
        state = self._state(key)
        if state.group != self._group:
            self._enter(key, state)
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

        columns: _Columns | None = None
        if self.sampling == "none":
            # The counting pass reads the sizes the snapshot stored, not the bytes.
            klen = run.column("key_size").fill_null(0).to_numpy().astype(np.int64)
            vlen = run.column("value_size").fill_null(0).to_numpy().astype(np.int64)
        else:
            keys = run.column("key")
            values = run.column("value")
            klen = pc.binary_length(keys).to_numpy(zero_copy_only=False)
            vlen = pc.binary_length(values).to_numpy(zero_copy_only=False)
            klen = np.nan_to_num(klen.astype("float64"), nan=0).astype("int64")
            vlen = np.nan_to_num(vlen.astype("float64"), nan=0).astype("int64")
            # Columns the sampled batches frame, converted once per run, not per
            # batch.
            stamps = run.column("timestamp").cast(pa.int64()).combine_chunks()
            columns = _Columns(
                offsets,
                stamps.fill_null(0).to_numpy(),
                stamps.is_valid().to_numpy(zero_copy_only=False),
                keys.combine_chunks(),
                values.combine_chunks(),
                run.column("headers").combine_chunks(),
            )
        sizes = RECORD_MAX_OVERHEAD + klen + vlen
        csum = np.cumsum(sizes)
        state.messages += len(sizes)
        state.value_bytes += int(vlen.sum())
        state.key_bytes += int(klen.sum())

        framing = _Framing()
        # Read row by row through memoryviews: lists of every row cost more.
        ends = csum.data
        if self.sampling != "none":
            # Value and payload bytes before each row, for a piece's sums in O(1).
            value_before = np.r_[0, np.cumsum(vlen)]
            payload_before = np.r_[0, np.cumsum(vlen + klen)]
        capacity = self.batch_bytes
        n = len(sizes)
        # Where a batch opened empty at each row would close (the first always fits).
        limit = capacity - BATCH_HEADER_BYTES
        closes = np.searchsorted(csum, csum - sizes + limit, side="right")
        following = np.maximum(closes, np.arange(1, n + 1)).data
        i = 0
        while i < n:
            if state.open_records == 0:
                i = self._pass_over(state, following, i, n)
                self._open(state)
            before = ends[i - 1] if i else 0
            j = bisect.bisect_right(ends, capacity - state.open_fill + before)
            if state.open_records == 0 and j == i:
                j = i + 1  # the first record always fits
            if j > i:
                self._add(state, columns, framing, i, j, ends[j - 1] - before)
                if state.open_sampled:
                    state.open_value_bytes += int(value_before[j] - value_before[i])
                    state.open_payload_bytes += int(
                        payload_before[j] - payload_before[i]
                    )
            if j < n:
                self._close(state)
            i = j

        # Frame this run's sampled rows at once, then compress its closed batches.
        framed = None
        if framing.rows:
            assert columns is not None, "only a sampling estimator frames records"
            framed = _frame(columns, framing)
        self._flush(framed)
        if state.open_parts:
            state.open_parts = [_resolve(part, framed) for part in state.open_parts]

    def _pass_over(
        self, state: _Partition, following: memoryview, i: int, n: int
    ) -> int:
        """Count the batches from row ``i`` that the sample leaves out and that
        close within the run.

        Returns the row where the next batch opens.
        """
        batches = state.batches
        if self.sampling == "stride":
            stride = state.stride
            while batches % stride and following[i] < n:
                batches += 1
                i = following[i]
        elif self.sampling == "none":
            while following[i] < n:
                batches += 1
                i = following[i]
        else:
            opened, wanted = state.opened, state.sampled_batches * state.stride
            while wanted > opened and following[i] < n:
                batches += 1
                opened += 1
                i = following[i]
            state.opened = opened
        state.batches = batches
        return i

    def _open(self, state: _Partition) -> None:
        state.open_fill = BATCH_HEADER_BYTES
        if self.sampling == "stride":
            state.open_sampled = state.batches % state.stride == 0
        elif self.sampling == "none":
            state.open_sampled = False
        else:
            state.open_sampled = state.sampled_batches * state.stride <= state.opened
            state.opened += 1
        state.open_parts = []
        state.open_value_bytes = 0
        state.open_payload_bytes = 0

    def _add(
        self,
        state: _Partition,
        columns: _Columns | None,
        framing: _Framing,
        i: int,
        j: int,
        fill: int,
    ) -> None:
        state.open_fill += fill
        if state.open_sampled:
            assert columns is not None, "a sampled batch's records have their bytes"
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

    def drop_open(self, keys: Iterable[tuple[str, int]]) -> None:
        """Leave out the open batches of ``keys``: their rows go on in files unread."""
        for key in keys:
            state = self.parts[key]
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


def _restart(state: _Partition, entry: _Mark) -> None:
    """Pick a partition up at a row group after one that was not read.

    The batch left open before the gap is dropped, and the batch open on entering
    (its first records in the unread row group) is counted but not sampled.
    """
    state.open_records = entry.open_records
    state.open_fill = entry.open_fill
    state.open_parts = []
    state.open_sampled = False
    state.open_value_bytes = 0
    state.open_payload_bytes = 0
    state.last_offset = entry.last_offset


def _resolve(part: bytes | range, framed: tuple[pa.Buffer, np.ndarray] | None) -> bytes:
    """A batch's part as bytes: framed already, or a range of a run's records."""
    if isinstance(part, bytes):
        return part
    assert framed is not None, "a run's records are framed before they are read"
    data, offsets = framed
    start, end = int(offsets[part.start]), int(offsets[part.stop])
    return memoryview(data)[start:end].tobytes()


def _read_ahead(batches: Iterator[_T]) -> Iterator[_T]:
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
            yield cast(_T, item)
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


def _estimate(
    a: Analysis,
    batch_bytes: int,
    level: int,
    strides: dict[tuple[str, int], int],
    chunk_rows: int,
) -> dict[tuple[str, int], _Partition]:
    """Every row's bytes read, every ``stride``-th batch of a partition compressed."""
    estimator = _Estimator(batch_bytes, level, strides)
    try:
        for batch in _read_ahead(_file_batches(a, chunk_rows)):
            estimator.feed(batch)
    except _OutOfOrderError as exc:
        logger.info(
            "compression: offsets out of order in files, sorting %s",
            _named(exc.args[0]),
        )
        estimator.discard()
        estimator = _Estimator(batch_bytes, level, strides, strict=False)
        for batch in _sorted_batches(a, chunk_rows):
            estimator.feed(batch)
    estimator.finish()
    return estimator.parts


@dataclass(frozen=True)
class _RowGroup:
    path: Path
    index: int  # within its file


def _row_groups(a: Analysis) -> list[_RowGroup]:
    """The row groups of the message files, in the order they are read."""
    groups = []
    for path in sorted(a.snapshot.kafka_files()):
        if path.suffix != ".parquet":
            continue
        file = pq.ParquetFile(path)
        missing = [c for c in _ROW_GROUP_COLUMNS if c not in file.schema_arrow.names]
        if missing:
            raise _LayoutError(f"path={str(path)!r} has no column {missing[0]}")
        metadata = file.metadata
        leaves = {
            metadata.schema.column(i).path: i for i in range(metadata.num_columns)
        }
        for index in range(metadata.num_row_groups):
            # A size left null beside bytes that are there would count them as 0.
            chunks = metadata.row_group(index)
            for data, size in (("key", "key_size"), ("value", "value_size")):
                data_nulls = _null_count(chunks.column(leaves[data]))
                size_nulls = _null_count(chunks.column(leaves[size]))
                if data_nulls is None or size_nulls is None:
                    continue
                if size_nulls > data_nulls:
                    raise _LayoutError(
                        f"path={str(path)!r} row group {index} has {size} "
                        f"null for {size_nulls - data_nulls} non-null {data}s"
                    )
            groups.append(_RowGroup(path, index))
    return groups


def _null_count(column: pq.ColumnChunkMetaData) -> int | None:
    statistics = column.statistics
    if statistics is None or not statistics.has_null_count:
        return None
    return int(statistics.null_count)


def _group_batches(
    groups: list[_RowGroup],
    chosen: Iterable[int],
    columns: tuple[str, ...],
    chunk_rows: int,
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """The chosen row groups' ``columns``, with each batch's row group."""
    files: dict[Path, pq.ParquetFile] = {}
    for g in sorted(chosen):
        group = groups[g]
        file = files.get(group.path)
        if file is None:
            files.clear()  # one file open at a time
            file = files[group.path] = pq.ParquetFile(
                group.path, read_dictionary=["topic"]
            )
        present = [c for c in columns if c in file.schema_arrow.names]
        batches = file.iter_batches(
            batch_size=chunk_rows,
            row_groups=[group.index],
            columns=present,
            use_threads=False,
        )
        for batch in batches:
            yield g, batch


def _sizes_of(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The first pass's columns, in the types the estimator reads."""
    partition = batch.column("partition").cast(pa.int32())
    offset = batch.column("offset").cast(pa.int64())
    arrays = [batch.column("topic"), partition, offset]
    arrays += [batch.column(name).cast(pa.int64()) for name in _SIZE_COLUMNS[3:]]
    return pa.RecordBatch.from_arrays(arrays, names=list(_SIZE_COLUMNS))


def _check_sizes(batch: pa.RecordBatch, group: _RowGroup) -> None:
    """Refuse a batch whose stored sizes are not its keys' and values' lengths."""
    for data, size in (("key", "key_size"), ("value", "value_size")):
        lengths = pc.binary_length(batch.column(data)).cast(pa.int64()).fill_null(0)
        stored = batch.column(size).cast(pa.int64()).fill_null(0)
        if not pc.all(pc.equal(lengths, stored)).as_py():
            raise _LayoutError(
                f"path={str(group.path)!r} row group {group.index} has a {size} "
                f"that is not the length of its {data}"
            )


@dataclass(frozen=True)
class _Piece:
    """One partition's rows in one row group, as the counting pass found them."""

    group: int
    entry: _Mark
    exit: _Mark
    whole_batches: int  # opened and closed within the row group

    @property
    def payload_bytes(self) -> int:
        return self.exit.payload_bytes - self.entry.payload_bytes

    @property
    def value_bytes(self) -> int:
        return self.exit.value_bytes - self.entry.value_bytes


def _pieces(
    marks: dict[int, dict[tuple[str, int], tuple[_Mark, _Mark]]],
) -> dict[tuple[str, int], list[_Piece]]:
    """Each partition's pieces, in row group order."""
    pieces: dict[tuple[str, int], list[_Piece]] = {}
    for g in sorted(marks):
        for key, (entry, exit) in marks[g].items():
            closed = exit.batches - entry.batches
            carried = entry.open_records > 0
            whole = max(0, closed - carried)
            pieces.setdefault(key, []).append(_Piece(g, entry, exit, whole))
    for items in pieces.values():
        # The last batch closes with the partition: whole if it opened in the piece.
        last = items[-1]
        closed = last.exit.batches - last.entry.batches
        if last.exit.open_records and (closed or not last.entry.open_records):
            items[-1] = _Piece(
                last.group, last.entry, last.exit, last.whole_batches + 1
            )
    return pieces


def _choose(
    pieces: dict[tuple[str, int], list[_Piece]], sample_bytes: int
) -> tuple[set[int], dict[tuple[str, int], int]]:
    """The row groups to read, and per partition the stride among their batches.

    See the module docstring. Raises :class:`_LayoutError` for a topic with values
    whose every batch runs over a row group's edge.
    """
    chosen: set[int] = set()
    for items in pieces.values():
        total = sum(p.payload_bytes for p in items)
        if total <= sample_bytes:
            chosen.update(p.group for p in items)
            continue
        ends = np.cumsum([p.payload_bytes for p in items])
        points = min(len(items), math.ceil(sample_bytes * len(items) / total))
        for j in range(points):
            at = (j + 0.5) * total / points
            chosen.add(items[int(np.searchsorted(ends, at, side="right"))].group)

    topics: dict[str, list[_Piece]] = {}
    for (topic, _), items in sorted(pieces.items()):
        topics.setdefault(topic, []).extend(items)
    for topic, items in topics.items():
        if not sum(p.value_bytes for p in items):
            continue
        # A batch of null or empty values gives no ratio for the topic's values.
        if any(p.whole_batches and p.value_bytes and p.group in chosen for p in items):
            continue
        candidates = [p.group for p in items if p.whole_batches and p.value_bytes]
        if not candidates:
            raise _LayoutError(f"topic={topic} has no batch within one row group")
        chosen.add(min(candidates))

    strides = {}
    for key, items in pieces.items():
        read = sum(p.payload_bytes for p in items if p.group in chosen)
        strides[key] = max(1, math.ceil(read / sample_bytes))
    return chosen, strides


def _estimate_by_row_group(
    a: Analysis,
    batch_bytes: int,
    level: int,
    sample_bytes: int,
    chunk_rows: int,
) -> dict[tuple[str, int], _Partition]:
    """Batches counted from the stored sizes; some row groups' batches compressed.

    Raises :class:`_LayoutError` where the files do not allow it.
    """
    groups = _row_groups(a)
    everything = range(len(groups))

    # Every batch boundary, from the sizes alone.
    marks: dict[int, dict[tuple[str, int], tuple[_Mark, _Mark]]] = {}
    counter = _Estimator(batch_bytes, level, {}, sampling="none", pieces=marks)
    try:
        for g, batch in _read_ahead(
            _group_batches(groups, everything, _SIZE_COLUMNS, chunk_rows)
        ):
            counter.feed(_sizes_of(batch), g)
    except _OutOfOrderError as exc:
        counter.discard()
        raise _LayoutError(f"offsets out of order in {_named(exc.args[0])}") from exc
    counter.end_group()
    counter.finish()

    pieces = _pieces(marks)
    chosen, strides = _choose(pieces, sample_bytes)
    resume = {g: {key: entry for key, (entry, _) in marks[g].items()} for g in marks}
    logger.debug("compression: sampling row_groups=%s of %s", len(chosen), len(groups))

    # The chosen row groups' batches, framed and compressed.
    sampler = _Estimator(batch_bytes, level, strides, sampling="spread", resume=resume)
    try:
        columns = _COLUMNS + _SIZE_COLUMNS[3:]
        for g, batch in _read_ahead(
            _group_batches(groups, chosen, columns, chunk_rows)
        ):
            _check_sizes(batch, groups[g])
            sampler.feed(_complete(batch), g)
        sampler.end_group()
        sampler.drop_open(
            key for key, s in sampler.parts.items() if s.group != pieces[key][-1].group
        )
    except _OutOfOrderError as exc:
        sampler.discard()
        raise _LayoutError(f"offsets out of order in {_named(exc.args[0])}") from exc
    except _LayoutError:
        sampler.discard()
        raise
    sampler.finish()

    parts = counter.parts
    for key, sampled in sampler.parts.items():
        state = parts[key]
        state.sampled_batches = sampled.sampled_batches
        state.sampled_value_bytes = sampled.sampled_value_bytes
        state.sampled_payload_bytes = sampled.sampled_payload_bytes
        state.sampled_compressed_bytes = sampled.sampled_compressed_bytes

    # A partition left to its topic's ratio needs compressed values to take it from.
    sampled_values: dict[str, int] = {}
    for (topic, _), state in parts.items():
        sampled_values[topic] = sampled_values.get(topic, 0) + state.sampled_value_bytes
    for (topic, partition), state in sorted(parts.items()):
        if (
            state.value_bytes
            and not state.sampled_batches
            and not sampled_values[topic]
        ):
            raise _LayoutError(
                f"topic={topic} partition={partition} has values and no "
                "compressed batch of its topic holds any"
            )
    return parts


def _compressed(
    parts: dict[tuple[str, int], _Partition],
) -> dict[tuple[str, int], float]:
    """Each partition's compressed bytes, measured or extrapolated."""
    topic_compressed: dict[str, int] = {}
    topic_payload: dict[str, int] = {}
    for (topic, _), s in parts.items():
        topic_compressed[topic] = (
            topic_compressed.get(topic, 0) + s.sampled_compressed_bytes
        )
        topic_payload[topic] = topic_payload.get(topic, 0) + s.sampled_payload_bytes
    out = {}
    for key, s in parts.items():
        payload = s.value_bytes + s.key_bytes
        if not s.sampled_batches and s.batches and topic_payload[key[0]]:
            # No batch of the partition was read whole: its topic's ratio.
            out[key] = payload * topic_compressed[key[0]] / topic_payload[key[0]]
        elif s.sampled_batches < s.batches and s.sampled_payload_bytes:
            out[key] = s.sampled_compressed_bytes * payload / s.sampled_payload_bytes
        else:
            out[key] = float(s.sampled_compressed_bytes)
    return out


def compression_by_partition(
    a: Analysis,
    *,
    batch_bytes: int = 16_384,
    level: int = 6,
    sample_bytes: int | None = None,
    chunk_rows: int = 16_384,
) -> pd.DataFrame:
    """The compression estimate per topic and partition (see the module docstring).

    ``chunk_rows`` rows are decoded at a time. On ten million messages, sampled,
    16,384 took about 0.85x the time of 65,536, with smaller buffers.

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
    # Batches are decoded on one thread and freed on another, which the system
    # allocator takes better than Arrow's default: on ten million messages the
    # estimate took 0.65x the CPU time.
    with system_memory_pool():
        if sample_bytes is None:
            parts = _estimate(a, batch_bytes, level, {}, chunk_rows)
        else:
            try:
                parts = _estimate_by_row_group(
                    a, batch_bytes, level, sample_bytes, chunk_rows
                )
            except _LayoutError as exc:
                logger.info("compression: %s; sampling every n-th batch instead", exc)
                strides = _strides(a, sample_bytes)
                parts = _estimate(a, batch_bytes, level, strides, chunk_rows)
        # Hand the decoded values' memory back, so later measures do not stack on
        # it.
        pa.default_memory_pool().release_unused()

    compressed_bytes = _compressed(parts)
    rows = []
    for (topic, partition), s in sorted(parts.items()):
        compressed = compressed_bytes[topic, partition]
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
