from __future__ import annotations

import itertools
import json
import logging
import os
import random
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from codegen_forensics.analysis import (
    Analysis,
    compression,
    compression_by_partition,
    compression_ratios,
    open_analysis,
)
from codegen_forensics.analysis.compression import (
    BATCH_HEADER_BYTES,
    _Columns,
    _encode_varint,
    _frame,
    _Framing,
    _read_ahead,
    _record,
    _varints,
)
from codegen_forensics.errors import InputError
from codegen_forensics.settings import KafkaSettings
from codegen_forensics.snapshot import SnapshotWriter

from .helpers import REQ, RESP, at, message_table

ROOT = Path(__file__).resolve().parents[2]
_HEADERS = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))


def rows() -> list[dict]:
    # Partition 0: forty 1000-byte values. A record counts 36 + 1000 bytes towards
    # the 16384-byte batch after its 61-byte header, so 15 fit: batches of 15, 15, 10.
    out = [
        dict(topic=REQ, partition=0, value=b"a" * 1000, timestamp=at(i))
        for i in range(40)
    ]
    # Partition 1: a value larger than a batch takes a batch alone; then one more.
    out.append(dict(topic=REQ, partition=1, value=b"b" * 20_000, timestamp=at(0)))
    out += [
        dict(topic=REQ, partition=1, value=b"c" * 10, key=b"k", timestamp=at(1 + i))
        for i in range(2)
    ]
    out.append(dict(topic=RESP, partition=0, value=None, timestamp=at(0)))
    return out


def test_compression_by_partition_batches_like_the_producer(
    analyse: Callable[..., Analysis],
) -> None:
    frame = compression_by_partition(analyse(rows()))
    assert list(zip(frame["topic"], frame["partition"], strict=True)) == [
        (REQ, 0),
        (REQ, 1),
        (RESP, 0),
    ]
    assert frame["messages"].tolist() == [40, 3, 1]
    assert frame["batches"].tolist() == [3, 2, 1]
    assert frame["value_bytes"].tolist() == [40_000, 20_020, 0]
    assert frame["key_bytes"].tolist() == [0, 2, 0]
    assert frame["sampled_batches"].tolist() == [3, 2, 1]
    req = frame.iloc[0]
    assert req["compressed_bytes"] == req["sampled_compressed_bytes"]
    assert (
        req["estimated_disk_bytes"] == 3 * BATCH_HEADER_BYTES + req["compressed_bytes"]
    )
    assert req["ratio"] == req["value_bytes"] / req["compressed_bytes"]
    assert req["ratio"] > 50  # a thousand identical bytes compress well


def test_compression_ratios_per_topic(analyse: Callable[..., Analysis]) -> None:
    a = analyse(rows())
    parts = compression_by_partition(a)
    frame = compression_ratios(a, by_partition=parts).set_index("topic")
    req = parts[parts["topic"] == REQ]
    assert frame.loc[REQ, "partitions"] == 2
    assert frame.loc[REQ, "value_bytes"] == 60_020
    assert frame.loc[REQ, "compressed_bytes"] == req["compressed_bytes"].sum()
    assert frame.loc[REQ, "ratio"] == 60_020 / req["compressed_bytes"].sum()
    assert frame.loc[REQ, "sampled_fraction"] == 1.0
    assert frame.loc[RESP, "value_bytes"] == 0
    assert frame["ratio"].isna().tolist() == [False, True]


def test_compression_runs_on_the_system_pool_and_restores_the_default(
    analyse: Callable[..., Analysis], monkeypatch: pytest.MonkeyPatch
) -> None:
    a = analyse(rows())
    before = pa.default_memory_pool().backend_name
    pools = []
    feed = compression._Estimator.feed

    def watch(self: compression._Estimator, *args: object) -> None:
        pools.append(pa.default_memory_pool().backend_name)
        feed(self, *args)

    monkeypatch.setattr(compression._Estimator, "feed", watch)
    compression_by_partition(a, sample_bytes=1_000)
    assert pools
    assert set(pools) == {"system"}
    assert pa.default_memory_pool().backend_name == before


def test_compression_sampling_extrapolates_from_every_nth_batch(
    analyse: Callable[..., Analysis],
) -> None:
    a = analyse(rows())
    frame = compression_by_partition(a, sample_bytes=15_000)
    req = frame.iloc[0]
    # 40000 raw bytes over 15000 per sample: every third batch, so batch 0 only.
    assert req["sampled_batches"] == 1
    assert req["sampled_value_bytes"] == 15_000
    assert req["compressed_bytes"] == pytest.approx(
        req["sampled_compressed_bytes"] * 40_000 / 15_000
    )


def test_compression_files_out_of_offset_order_give_the_same_result(
    analyse: Callable[..., Analysis],
) -> None:
    table = message_table(rows())
    in_order = compression_by_partition(analyse(table))
    # The later half of the offsets in the first file, and one offset twice.
    late, early = table.slice(20, table.num_rows - 20), table.slice(0, 21)
    shuffled = compression_by_partition(analyse([late, early]))
    assert shuffled["duplicate_offsets"].tolist() == [1, 0, 0]
    columns = ["messages", "batches", "value_bytes", "compressed_bytes"]
    assert shuffled[columns].equals(in_order[columns])


def test_compression_empty_snapshot(analyse: Callable[..., Analysis]) -> None:
    a = analyse()
    assert compression_by_partition(a).empty
    assert compression_ratios(a).empty


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_bytes": 50}, "batch_bytes=50 is too small"),
        ({"level": 12}, "level=12 is not a gzip level"),
        ({"sample_bytes": 0}, "sample_bytes=0 must be positive"),
    ],
)
def test_compression_bad_settings_are_refused(
    analyse: Callable[..., Analysis], kwargs: dict, message: str
) -> None:
    a = analyse()
    with pytest.raises(InputError, match=message):
        compression_by_partition(a, **kwargs)


@pytest.mark.kafka
def test_compression_estimate_matches_the_brokers_log_segments(
    kafka_settings: KafkaSettings,
    topic_factory: Callable[..., str],
    build_snapshot: Callable[..., Path],
) -> None:
    topic = topic_factory("omninode_codegen_request_analyze_v1", partitions=2)
    producer = Producer(
        kafka_settings.client_config(
            **{"compression.type": "gzip", "batch.size": 16384, "linger.ms": 10}
        )
    )
    rnd = random.Random(7)
    words = [
        "analyze",
        "validate",
        "pattern",
        "mixin",
        "node",
        "effect",
        "compute",
        "reducer",
        "contract",
    ]
    for i in range(3000):
        session = str(uuid.UUID(int=rnd.getrandbits(128)))
        value = {
            "session_id": session,
            "correlation_id": str(uuid.UUID(int=rnd.getrandbits(128))),
            "prd_content": " ".join(
                rnd.choice(words) for _ in range(rnd.randint(5, 150))
            ),
            "score": rnd.random(),
        }
        producer.produce(
            topic,
            key=session.encode(),
            value=json.dumps(value).encode(),
            partition=i % 2,
        )
        if i % 500 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0

    consumer = Consumer(
        kafka_settings.client_config(
            **{"group.id": f"{topic}-reader", "enable.auto.commit": False}
        )
    )
    consumed = []
    try:
        for partition in range(2):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), 10
            )
            consumer.assign([TopicPartition(topic, partition, low)])
            while (
                consumer.position([TopicPartition(topic, partition)])[0].offset < high
            ):
                for message in consumer.consume(500, timeout=5):
                    assert message.error() is None
                    consumed.append(
                        dict(
                            topic=topic,
                            partition=partition,
                            offset=message.offset(),
                            key=message.key(),
                            value=message.value(),
                            timestamp=datetime.fromtimestamp(
                                message.timestamp()[1] / 1000, UTC
                            ),
                        )
                    )
    finally:
        consumer.close()
    assert len(consumed) == 3000

    with open_analysis(build_snapshot(consumed), memory_limit="256MB") as a:
        estimate = compression_by_partition(a)
    log_dir = Path(
        os.environ.get("FORENSICS_KAFKA_LOG_DIR", ROOT / ".services/kafka/data")
    )
    for partition in range(2):
        on_disk = sum(
            f.stat().st_size for f in (log_dir / f"{topic}-{partition}").glob("*.log")
        )
        row = estimate[estimate["partition"] == partition].iloc[0]
        assert row["estimated_disk_bytes"] == pytest.approx(on_disk, rel=0.15)
        assert row["ratio"] > 2


def test_compression_record_bytes_of_one_small_record() -> None:
    # Length 8, attributes, ts delta 2, offset delta 1, key "k", value "v", 0 headers.
    assert _record(1, 2, b"k", b"v", None) == b"\x10\x00\x04\x02\x02k\x02v\x00"


def test_compression_varints_match_the_python_encoding() -> None:
    values = [0, 1, -1, 63, 64, -64, -65, 8191, 8192, 65_534, 65_535, 2**31, -(2**31)]
    values += [2**62, -(2**62), 2**63 - 1, -(2**63)]
    array, lengths = _varints(np.array(values, dtype=np.int64))
    assert array.to_pylist() == [_encode_varint(v) for v in values]
    assert lengths.tolist() == [len(_encode_varint(v)) for v in values]


def test_compression_framing_a_run_gives_the_bytes_of_record_by_record() -> None:
    # Null and empty keys, a null value, a null timestamp, headers, an offset jump,
    # a timestamp before the batch's first and deltas past one varint byte.
    stamps = [5_000_123, None, 4_000_000, 9_000_000_999, 5_001_000, 5_002_000]
    offsets = [10, 11, 12, 300_000, 300_001, 300_002]
    keys = [b"key", None, b"", b"k" * 200, b"x", None]
    values = [b"v" * 3, b"w", None, b"z" * 70_000, b"", b"last"]
    headers = [
        None,
        [],
        [{"key": "trace", "value": b"abc"}, {"key": "empty", "value": None}],
        None,
        [{"key": "", "value": b""}],
        None,
    ]
    stamp_array = pa.array(stamps, pa.int64())
    columns = _Columns(
        np.array(offsets, dtype=np.int64),
        stamp_array.fill_null(0).to_numpy(),
        stamp_array.is_valid().to_numpy(zero_copy_only=False),
        pa.array(keys, pa.binary()),
        pa.array(values, pa.binary()),
        pa.array(headers, _HEADERS),
    )
    # Two pieces of one batch (rows 0-1, 3-5) framed against its first record, and
    # row 2 against an earlier batch's base.
    framing = _Framing()
    first = framing.add(0, 2, 5_000, 10)
    second = framing.add(3, 6, 5_000, 10)
    third = framing.add(2, 3, 7, 3)
    data, starts = _frame(columns, framing)

    def expected(row: int, base_ts: int, base_offset: int) -> bytes:
        ts = stamps[row]
        delta = ts // 1000 - base_ts if ts is not None else 0
        return _record(
            offsets[row] - base_offset, delta, keys[row], values[row], headers[row]
        )

    framed = bytes(memoryview(data))
    assert starts.tolist()[0] == 0
    assert framed[starts[first.start] : starts[first.stop]] == b"".join(
        expected(r, 5_000, 10) for r in (0, 1)
    )
    assert framed[starts[second.start] : starts[second.stop]] == b"".join(
        expected(r, 5_000, 10) for r in (3, 4, 5)
    )
    assert framed[starts[third.start] : starts[third.stop]] == expected(2, 7, 3)
    assert len(framed) == starts[-1]


@pytest.mark.parametrize("sample_bytes", [None, 15_000, 1])
def test_compression_small_record_batches_give_the_same_estimate(
    analyse: Callable[..., Analysis], sample_bytes: int | None
) -> None:
    # Batches of the estimate then span several runs of 3 rows, sampled or not.
    a = analyse(rows())
    whole = compression_by_partition(a, sample_bytes=sample_bytes)
    split = compression_by_partition(a, sample_bytes=sample_bytes, chunk_rows=3)
    assert split.equals(whole)
    assert whole["batches"].tolist() == [3, 2, 1]
    expected = {None: [3, 2, 1], 15_000: [1, 1, 1], 1: [1, 1, 1]}[sample_bytes]
    assert whole["sampled_batches"].tolist() == expected


def test_compression_read_ahead_keeps_order_and_passes_errors_on() -> None:
    batches = [pa.record_batch({"n": [i]}) for i in range(5)]
    assert [b["n"][0].as_py() for b in _read_ahead(iter(batches))] == list(range(5))

    def failing() -> Iterator[pa.RecordBatch]:
        yield batches[0]
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(_read_ahead(failing()))


def test_compression_read_ahead_stops_its_thread_when_left_early() -> None:
    def endless() -> Iterator[pa.RecordBatch]:
        while True:
            yield pa.record_batch({"n": [1]})

    reader = _read_ahead(endless())
    next(reader)
    reader.close()
    assert not [t for t in threading.enumerate() if t.name == "parquet-read"]


Files = dict[str, tuple[pa.Table, int]]


@pytest.fixture
def grouped(tmp_path: Path) -> Iterator[Callable[[Files], Analysis]]:
    """Opens a snapshot of message files, each with its own rows per row group."""
    serial = itertools.count()
    opened: list[Analysis] = []

    def make(files: Files) -> Analysis:
        root = tmp_path / f"grouped{next(serial)}"
        writer = SnapshotWriter(root)
        for relative, (table, row_group_size) in files.items():
            writer.write(relative, table, row_group_size=row_group_size)
        writer.finish()
        analysis = open_analysis(root, memory_limit="256MB", threads=1)
        opened.append(analysis)
        return analysis

    yield make
    for analysis in opened:
        analysis.close()


def _part(topic: str, partition: int, day: int = 5) -> str:
    return f"kafka/topic={topic}/day=2026-01-{day:02d}/part-{partition:05d}.parquet"


def _distinct(n: int, start: int = 0) -> list[dict]:
    # 1000-byte values, each different: 15 to a batch, and no two batches alike.
    return [
        dict(value=f"{i:04d}".encode() * 250, timestamp=at(i), offset=i)
        for i in range(start, start + n)
    ]


def _gzip_of(rows: Sequence[dict]) -> int:
    """The gzip bytes of one batch holding ``rows``, framed as the estimate does."""
    first = rows[0]
    records = b"".join(
        _record(
            row["offset"] - first["offset"],
            int((row["timestamp"] - first["timestamp"]).total_seconds() * 1000),
            row.get("key"),
            row["value"],
            None,
        )
        for row in rows
    )
    return len(zlib.compress(records, 6, 31))


def _counts(frame: pd.DataFrame) -> pd.DataFrame:
    columns = ["topic", "partition", "messages", "value_bytes", "key_bytes"]
    return frame[[*columns, "batches", "duplicate_offsets"]]


def _mixed_rows(rnd: random.Random, topic: str, partition: int, n: int) -> list[dict]:
    out = []
    for i in range(n):
        key = None if i % 7 == 0 else f"session-{rnd.randrange(50)}".encode()
        value = (
            None
            if i % 11 == 0
            else bytes(rnd.choices(b"abcd{}:,", k=rnd.randint(50, 4000)))
        )
        headers = [{"key": "trace", "value": b"t"}] if i % 5 == 0 else None
        out.append(
            dict(
                topic=topic,
                partition=partition,
                key=key,
                value=value,
                headers=headers,
                timestamp=at(i),
            )
        )
    return out


def test_compression_row_group_sampling_counts_every_message_exactly(
    grouped: Callable[[Files], Analysis], caplog: pytest.LogCaptureFixture
) -> None:
    # Two days of files per topic, partitions one after another in each, row groups
    # of 40 rows holding the end of one partition and the start of the next.
    rnd = random.Random(11)
    files: Files = {}
    for topic, partitions in ((REQ, 3), (RESP, 2)):
        for day in (5, 6):
            rows = []
            for partition in range(partitions):
                rows += _mixed_rows(rnd, topic, partition, 90)
            table = message_table(rows)
            if day == 6:  # offsets go on from the first day's
                offsets = pa.array([o + 90 for o in table.column("offset").to_pylist()])
                table = table.set_column(2, "offset", offsets.cast(pa.int64()))
            files[_part(topic, 0, day)] = (table, 40)
    a = grouped(files)

    exact = compression_by_partition(a)
    with caplog.at_level(logging.INFO, "codegen_forensics.analysis.compression"):
        sampled = compression_by_partition(a, sample_bytes=60_000)
    assert "instead" not in caplog.text
    assert _counts(sampled).equals(_counts(exact))
    assert sampled["messages"].tolist() == [180, 180, 180, 180, 180]
    assert sampled["duplicate_offsets"].tolist() == [0, 0, 0, 0, 0]
    assert (sampled["sampled_batches"] > 0).all()
    assert (sampled["sampled_batches"] < exact["batches"]).all()
    assert sampled["sampled_value_bytes"].sum() < exact["value_bytes"].sum() / 2
    # Row groups read in pieces of 7 rows give the same sample.
    assert compression_by_partition(a, sample_bytes=60_000, chunk_rows=7).equals(
        sampled
    )


@pytest.mark.parametrize(
    ("sample_bytes", "compressed"),
    [
        # The middle row group holds no whole batch: the first one is read too, and
        # of the two batches wholly in them (0 and 1), one in two is compressed.
        (20_000, [0]),
        # The first and last row groups: batch 1 runs into the second, unread, and
        # batch 2 in from it; batches 0 and 3 are compressed.
        (40_000, [0, 3]),
        # No more than the sample: every row group, every batch.
        (60_000, [0, 1, 2, 3]),
    ],
)
def test_compression_row_group_sampling_compresses_whole_batches_of_groups_read(
    grouped: Callable[[Files], Analysis], sample_bytes: int, compressed: list[int]
) -> None:
    # Sixty 1000-byte values in row groups of 20 rows: batches are rows 0-14,
    # 15-29, 30-44 and 45-59, so batches 1 and 2 straddle row groups.
    rows = _distinct(60)
    a = grouped({_part(REQ, 0): (message_table(rows), 20)})
    frame = compression_by_partition(a, sample_bytes=sample_bytes)
    batches = [rows[i : i + 15] for i in range(0, 60, 15)]
    row = frame.iloc[0]
    assert row["batches"] == 4
    assert row["sampled_batches"] == len(compressed)
    assert row["sampled_value_bytes"] == 15_000 * len(compressed)
    assert row["sampled_compressed_bytes"] == sum(
        _gzip_of(batches[i]) for i in compressed
    )
    expected = row["sampled_compressed_bytes"] * 60_000 / (15_000 * len(compressed))
    assert row["compressed_bytes"] == expected


def test_compression_partition_without_a_whole_batch_takes_its_topics_ratio(
    grouped: Callable[[Files], Analysis],
) -> None:
    # Partition 1 is one batch of 14 records over two row groups of 7, and only
    # the second is read; partition 0's two batches sit in one row group.
    p0 = message_table(_distinct(30))
    p1 = message_table([dict(r, partition=1) for r in _distinct(14, start=100)])
    a = grouped({_part(REQ, 0): (p0, 100), _part(REQ, 1): (p1, 7)})
    frame = compression_by_partition(a, sample_bytes=6_000).set_index("partition")
    assert frame["batches"].tolist() == [2, 1]
    assert frame["sampled_batches"].tolist() == [1, 0]
    assert frame.loc[0, "sampled_compressed_bytes"] == _gzip_of(_distinct(15))
    ratio = frame.loc[0, "sampled_compressed_bytes"] / 15_000
    assert frame.loc[1, "compressed_bytes"] == 14_000 * ratio
    assert frame.loc[1, "ratio"] == 14_000 / (14_000 * ratio)
    assert frame.loc[1, "estimated_disk_bytes"] == BATCH_HEADER_BYTES + 14_000 * ratio


def test_compression_files_without_sizes_are_sampled_by_batch(
    grouped: Callable[[Files], Analysis], caplog: pytest.LogCaptureFixture
) -> None:
    table = message_table(_distinct(60)).drop_columns(["key_size", "value_size"])
    a = grouped({_part(REQ, 0): (table, 20)})
    with caplog.at_level(logging.INFO, "codegen_forensics.analysis.compression"):
        frame = compression_by_partition(a, sample_bytes=40_000)
    assert "has no column key_size; sampling every n-th batch instead" in caplog.text
    # Without sizes every partition counts as empty, so every batch is compressed.
    assert frame.equals(compression_by_partition(a))
    assert frame["sampled_batches"].tolist() == [4]


def test_compression_sizes_unlike_their_bytes_are_sampled_by_batch(
    grouped: Callable[[Files], Analysis], caplog: pytest.LogCaptureFixture
) -> None:
    # A value_size that says 10 for a 1000-byte value would move batch boundaries.
    rows = _distinct(60)
    rows[3]["value_size"] = 10
    a = grouped({_part(REQ, 0): (message_table(rows), 20)})
    with caplog.at_level(logging.INFO, "codegen_forensics.analysis.compression"):
        frame = compression_by_partition(a, sample_bytes=40_000)
    assert "value_size that is not the length of its value" in caplog.text
    assert _counts(frame).equals(_counts(compression_by_partition(a)))
    assert frame["batches"].tolist() == [4]


def test_compression_row_group_sampling_is_the_same_for_the_same_files(
    grouped: Callable[[Files], Analysis],
) -> None:
    rnd = random.Random(5)
    table = message_table(_mixed_rows(rnd, REQ, 0, 200))
    first = compression_by_partition(
        grouped({_part(REQ, 0): (table, 30)}), sample_bytes=50_000
    )
    again = compression_by_partition(
        grouped({_part(REQ, 0): (table, 30)}), sample_bytes=50_000
    )
    assert again.equals(first)
    assert 0 < first.loc[0, "sampled_batches"] < first.loc[0, "batches"]


def test_compression_batches_all_over_row_group_edges_are_sampled_by_batch(
    grouped: Callable[[Files], Analysis], caplog: pytest.LogCaptureFixture
) -> None:
    # Row groups of 5 rows and batches of 15: no batch lies within one row group.
    a = grouped({_part(REQ, 0): (message_table(_distinct(30)), 5)})
    with caplog.at_level(logging.INFO, "codegen_forensics.analysis.compression"):
        frame = compression_by_partition(a, sample_bytes=10_000)
    assert f"topic={REQ} has no batch within one row group" in caplog.text
    # Sampled by batch: every third (30000 bytes over 10000), so batch 0 of the two.
    assert frame["batches"].tolist() == [2]
    assert frame["sampled_batches"].tolist() == [1]
    assert frame["sampled_compressed_bytes"].tolist() == [_gzip_of(_distinct(15))]


def test_compression_topic_ratio_is_not_taken_from_batches_without_values(
    grouped: Callable[[Files], Analysis],
) -> None:
    # Partition 0 holds only null values, one whole batch in its row group; the
    # 14 values of partition 1 are one batch over two row groups, the second read.
    # Its topic's ratio would come from the bytes of no value at all.
    p0 = message_table([dict(value=None, timestamp=at(i)) for i in range(3)])
    p1 = message_table([dict(r, partition=1) for r in _distinct(14, start=100)])
    a = grouped({_part(REQ, 0): (p0, 100), _part(REQ, 1): (p1, 7)})
    frame = compression_by_partition(a, sample_bytes=6_000)
    assert frame.equals(compression_by_partition(a))
    assert frame.loc[1, "compressed_bytes"] == _gzip_of(_distinct(14, start=100))


def test_compression_offsets_out_of_order_are_logged_by_topic_and_partition(
    grouped: Callable[[Files], Analysis], caplog: pytest.LogCaptureFixture
) -> None:
    # A repeated offset sends the row-group sampling to sampling by batch; the
    # log lines name the partition as topic=... partition=..., not as a tuple.
    rows = _distinct(30)
    rows[20]["offset"] = 19
    a = grouped(
        {_part(REQ, 2): (message_table([dict(r, partition=2) for r in rows]), 10)}
    )
    with caplog.at_level(logging.INFO, "codegen_forensics.analysis.compression"):
        frame = compression_by_partition(a, sample_bytes=10_000)
    assert frame["duplicate_offsets"].tolist() == [1]
    assert (
        f"offsets out of order in topic={REQ} partition=2; sampling every n-th "
        "batch instead" in caplog.text
    )
    assert f"out of order in files, sorting topic={REQ} partition=2" in caplog.text
