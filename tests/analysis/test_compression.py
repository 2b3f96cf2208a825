from __future__ import annotations

import json
import os
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from codegen_forensics.analysis import (
    Analysis,
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
