"""Kafka snapshots against the real broker: exact rows per partition, resumable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from codegen_forensics.errors import InputError, SnapshotError
from codegen_forensics.load import (
    KafkaSnapshotOptions,
    ProgressEvent,
    select_topics,
    snapshot_kafka,
)
from codegen_forensics.settings import KafkaSettings
from codegen_forensics.snapshot import KAFKA_MESSAGES_SCHEMA, Snapshot

SESSION = "6f1c2a0e-8d3b-4c5e-9f7a-1b2c3d4e5f60"
CORRELATION = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
DAY1 = int(datetime(2025, 10, 25, 23, 59, tzinfo=UTC).timestamp() * 1000)
DAY2 = int(datetime(2025, 10, 26, 0, 1, tzinfo=UTC).timestamp() * 1000)


def request_event(i: int) -> bytes:
    return json.dumps(
        {
            "session_id": SESSION,
            "correlation_id": CORRELATION,
            "timestamp": "2025-10-26T00:00:00Z",
            "prd_content": f"# PRD {i}",
        }
    ).encode()


class Delivered:
    """Offsets the broker confirmed, per partition."""

    def __init__(self) -> None:
        self.offsets: dict[int, list[int]] = {}

    def __call__(self, err: Any, msg: Any) -> None:
        assert err is None, err
        self.offsets.setdefault(msg.partition(), []).append(msg.offset())


@pytest.fixture
def producer(kafka_settings: KafkaSettings) -> Iterator[Producer]:
    producer = Producer(
        kafka_settings.client_config(**{"linger.ms": 5, "message.max.bytes": 2_097_152})
    )
    yield producer
    producer.flush(10)


def snapshot_rows(snapshot: Snapshot) -> list[dict[str, Any]]:
    rows = snapshot.read("kafka/").to_pylist()
    return sorted(rows, key=lambda r: (r["topic"], r["partition"], r["offset"]))


def partitions(snapshot: Snapshot) -> dict[int, dict[str, Any]]:
    return {p["partition"]: p for p in snapshot.manifest["kafka"]["partitions"]}


def offsets_by_partition(rows: list[dict[str, Any]]) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for row in rows:
        found.setdefault(row["partition"], []).append(row["offset"])
    return found


def test_snapshot_kafka_every_value_shape_is_one_row_per_message(
    kafka_settings: KafkaSettings,
    topic_factory: Callable[..., str],
    producer: Producer,
    tmp_path: Path,
) -> None:
    topic = topic_factory(
        "omninode_codegen_request_analyze_v1",
        partitions=3,
        config={"max.message.bytes": "2097152"},
    )
    delivered = Delivered()
    big = b'{"pad": "' + b"x" * (1_000_000 - 11) + b'"}'
    values: list[tuple[bytes | None, list[tuple[str, bytes | None]] | None, int]] = [
        (request_event(0), [("trace", b"1"), ("trace", b"2"), ("empty", None)], DAY1),
        (None, None, DAY1),
        (b"\xff\xfe\x00", None, DAY2),
        (b"not json {", None, DAY2),
        (big, [("size", b"big")], DAY2),
    ]
    for value, headers, ts in values:
        producer.produce(
            topic,
            value=value,
            key=SESSION.encode(),
            partition=0,
            headers=headers,
            timestamp=ts,
            on_delivery=delivered,
        )
    for i in range(4):
        producer.produce(topic, request_event(i), partition=1, on_delivery=delivered)
    producer.flush(30)

    snapshot = snapshot_kafka(
        tmp_path / "snap", kafka_settings, KafkaSnapshotOptions(topics=(topic,))
    )

    rows = snapshot_rows(snapshot)
    assert offsets_by_partition(rows) == delivered.offsets
    p0 = [r for r in rows if r["partition"] == 0]
    assert [r["decode_status"] for r in p0] == [
        "ok",
        "tombstone",
        "not_utf8",
        "not_json",
        "schema_invalid",
    ]
    assert p0[0]["headers"] == [
        {"key": "trace", "value": b"1"},
        {"key": "trace", "value": b"2"},
        {"key": "empty", "value": None},
    ]
    assert p0[1]["value"] is None
    assert p0[1]["value_size"] is None
    assert p0[2]["value"] == b"\xff\xfe\x00"
    assert p0[4]["value"] == big
    assert p0[4]["value_size"] == 1_000_000
    assert p0[0]["timestamp"] == datetime.fromtimestamp(DAY1 / 1000, UTC)
    assert p0[0]["timestamp_type"] == "create_time"
    assert p0[0]["key"] == SESSION.encode()
    assert p0[0]["session_id"] == SESSION
    assert snapshot.read("kafka/").schema == KAFKA_MESSAGES_SCHEMA

    parts = partitions(snapshot)
    assert [
        (p["start_offset"], p["end_offset"], p["rows"]) for p in parts.values()
    ] == [
        (0, 5, 5),
        (0, 4, 4),
        (0, 0, 0),
    ]
    assert parts[0]["value_bytes"] == sum(len(v or b"") for v, _, _ in values)
    section = snapshot.manifest["kafka"]["topics"][topic]
    assert section["decode_status"] == {
        "not_json": 1,
        "not_utf8": 1,
        "ok": 5,
        "schema_invalid": 1,
        "tombstone": 1,
    }
    assert section["reason"] == "named"
    assert section["category"] == "request"
    days = sorted(
        p["path"].split("/")[2] for p in snapshot.manifest["files"] if "/" in p["path"]
    )
    assert days[:2] == ["day=2025-10-25", "day=2025-10-26"]
    table = pq.read_table(snapshot.root / "kafka_partitions.parquet")
    assert table.column("rows").to_pylist() == [5, 4, 0]


def transactional_producer(settings: KafkaSettings, name: str) -> Producer:
    producer = Producer(
        settings.client_config(**{"transactional.id": f"{name}-tx", "linger.ms": 5})
    )
    producer.init_transactions(30)
    return producer


@pytest.mark.parametrize(
    ("isolation", "expected_rows"),
    [("read_committed", 7), ("read_uncommitted", 10)],
)
def test_snapshot_kafka_transactions_end_on_markers_without_loss(
    kafka_settings: KafkaSettings,
    topic_factory: Callable[..., str],
    tmp_path: Path,
    isolation: str,
    expected_rows: int,
) -> None:
    topic = topic_factory("txn", partitions=2)
    producer = transactional_producer(kafka_settings, topic)
    committed = Delivered()
    aborted = Delivered()
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, b"%d" % i, partition=0, on_delivery=committed)
    producer.commit_transaction(30)
    producer.begin_transaction()
    for i in range(3):
        producer.produce(topic, b"aborted %d" % i, partition=0, on_delivery=aborted)
    producer.flush(30)
    producer.abort_transaction(30)
    producer.begin_transaction()
    for i in range(2):
        producer.produce(topic, b"%d" % i, partition=0, on_delivery=committed)
    producer.commit_transaction(30)

    started = time.monotonic()
    snapshot = snapshot_kafka(
        tmp_path / "snap",
        kafka_settings,
        KafkaSnapshotOptions(topics=(topic,), isolation_level=isolation),  # type: ignore[arg-type]
    )

    assert time.monotonic() - started < 20
    rows = snapshot_rows(snapshot)
    expected = sorted(
        committed.offsets[0]
        + (aborted.offsets[0] if isolation == "read_uncommitted" else [])
    )
    assert [r["offset"] for r in rows] == expected
    assert len(rows) == expected_rows
    p0 = partitions(snapshot)[0]
    # 10 records and 3 transaction markers.
    assert (p0["start_offset"], p0["end_offset"], p0["high_watermark"]) == (0, 13, 13)
    assert p0["rows"] == expected_rows
    assert p0["last_offset"] == committed.offsets[0][-1]
    assert partitions(snapshot)[1]["rows"] == 0


def test_snapshot_kafka_open_transaction_reads_to_last_stable_offset(
    kafka_settings: KafkaSettings,
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    topic = topic_factory("open-txn")
    producer = transactional_producer(kafka_settings, topic)
    producer.begin_transaction()
    producer.produce(topic, b"committed")
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, b"pending")
    producer.flush(30)

    try:
        snapshot = snapshot_kafka(
            tmp_path / "snap", kafka_settings, KafkaSnapshotOptions(topics=(topic,))
        )
    finally:
        producer.abort_transaction(30)

    part = partitions(snapshot)[0]
    assert (part["last_stable_offset"], part["high_watermark"]) == (2, 3)
    assert (part["end_offset"], part["rows"]) == (2, 1)
    assert [r["value"] for r in snapshot_rows(snapshot)] == [b"committed"]
    assert any(
        "a transaction was open" in f for f in snapshot.manifest["kafka"]["findings"]
    )


def test_snapshot_kafka_deleted_records_start_at_low_watermark(
    kafka_settings: KafkaSettings,
    kafka_admin: AdminClient,
    topic_factory: Callable[..., str],
    producer: Producer,
    tmp_path: Path,
) -> None:
    topic = topic_factory("deleted")
    for i in range(10):
        producer.produce(topic, b"%d" % i)
    producer.flush(30)
    futures = kafka_admin.delete_records([TopicPartition(topic, 0, 4)])
    for future in futures.values():
        future.result(timeout=30)

    snapshot = snapshot_kafka(
        tmp_path / "snap", kafka_settings, KafkaSnapshotOptions(topics=(topic,))
    )

    assert [r["offset"] for r in snapshot_rows(snapshot)] == list(range(4, 10))
    part = partitions(snapshot)[0]
    assert (part["low_watermark"], part["start_offset"], part["end_offset"]) == (
        4,
        4,
        10,
    )


def test_snapshot_kafka_concurrent_producer_stops_at_captured_end(
    kafka_settings: KafkaSettings,
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    topic = topic_factory("busy", partitions=2)
    producer = Producer(kafka_settings.client_config(**{"linger.ms": 1}))
    for i in range(2000):
        producer.produce(topic, b"%d" % i, partition=i % 2)
    producer.flush(30)
    stop = threading.Event()

    def keep_writing() -> None:
        i = 0
        while not stop.is_set():
            producer.produce(topic, b"late %d" % i, partition=i % 2)
            producer.poll(0)
            i += 1
            time.sleep(0.0005)
        producer.flush(30)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        snapshot = snapshot_kafka(
            tmp_path / "snap",
            kafka_settings,
            KafkaSnapshotOptions(topics=(topic,), chunk_rows=300),
        )
    finally:
        stop.set()
        writer.join()

    rows = snapshot_rows(snapshot)
    for number, part in partitions(snapshot).items():
        offsets = [r["offset"] for r in rows if r["partition"] == number]
        assert part["end_offset"] >= 1000
        assert offsets == list(range(part["end_offset"]))
        assert part["rows"] == part["end_offset"]


def test_snapshot_kafka_incremental_reads_only_new_offsets(
    kafka_settings: KafkaSettings,
    topic_factory: Callable[..., str],
    producer: Producer,
    tmp_path: Path,
) -> None:
    topic = topic_factory("incremental", partitions=2)
    for i in range(6):
        producer.produce(topic, b"first %d" % i, partition=i % 2)
    producer.flush(30)
    options = KafkaSnapshotOptions(topics=(topic,))
    first = snapshot_kafka(tmp_path / "first", kafka_settings, options)
    for i in range(4):
        producer.produce(topic, b"second %d" % i, partition=0)
    producer.flush(30)

    second = snapshot_kafka(
        tmp_path / "second", kafka_settings, options, incremental_from=first.root
    )

    rows = snapshot_rows(second)
    assert [(r["partition"], r["offset"]) for r in rows] == [
        (0, 3),
        (0, 4),
        (0, 5),
        (0, 6),
    ]
    assert [r["value"] for r in rows] == [b"second %d" % i for i in range(4)]
    assert [
        (p["start_offset"], p["end_offset"]) for p in partitions(second).values()
    ] == [
        (3, 7),
        (3, 3),
    ]
    assert second.manifest["kafka"]["incremental_from"]["path"] == str(first.root)


def test_snapshot_kafka_captures_committed_group_offsets(
    kafka_settings: KafkaSettings,
    topic_factory: Callable[..., str],
    producer: Producer,
    tmp_path: Path,
) -> None:
    topic = topic_factory("groups", partitions=2)
    for i in range(5):
        producer.produce(topic, b"%d" % i, partition=0)
    producer.flush(30)
    group = f"{topic}-readers"
    consumer = Consumer(
        kafka_settings.client_config(**{"group.id": group, "enable.auto.commit": False})
    )
    consumer.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
    consumer.close()

    snapshot = snapshot_kafka(
        tmp_path / "snap",
        kafka_settings,
        KafkaSnapshotOptions(topics=(topic,), consumer_groups=(group,)),
    )

    offsets = snapshot.read("consumer_offsets.parquet").to_pylist()
    assert [o for o in offsets if o["group_id"] == group] == [
        {"group_id": group, "topic": topic, "partition": 0, "committed_offset": 3}
    ]
    groups = snapshot.manifest["kafka"]["consumer_groups"]
    assert groups[group] == {"found": True, "partitions": 1}
    assert groups["omniclaude_codegen_consumer"]["found"] is False


def fill_for_resume(producer: Producer, topic: str) -> None:
    for i in range(900):
        value = request_event(i) if i % 3 else b"raw %d" % i
        producer.produce(topic, value, partition=i % 3, timestamp=DAY1 + i * 1000)
    producer.flush(30)


def file_listing(snapshot: Snapshot) -> list[tuple[str, int, str]]:
    return [
        (f["path"], f["rows"], f["sha256"])
        for f in snapshot.manifest["files"]
        if f["path"].startswith("kafka/")
    ]


def test_snapshot_kafka_injected_failure_resumes_to_identical_snapshot(
    kafka_settings: KafkaSettings,
    topic_factory: Callable[..., str],
    producer: Producer,
    tmp_path: Path,
) -> None:
    topic = topic_factory("resume", partitions=3)
    fill_for_resume(producer, topic)
    options = KafkaSnapshotOptions(topics=(topic,), chunk_rows=40)
    whole = snapshot_kafka(tmp_path / "whole", kafka_settings, options)
    chunks = 0

    def fail_after_some(event: ProgressEvent) -> None:
        nonlocal chunks
        chunks += event.kind == "chunk"
        if chunks == 5:
            raise RuntimeError("injected failure after 5 chunks")

    with pytest.raises(RuntimeError, match="injected failure after 5 chunks"):
        snapshot_kafka(
            tmp_path / "cut", kafka_settings, options, progress=fail_after_some
        )
    with pytest.raises(SnapshotError, match=r"no manifest\.json, so it is incomplete"):
        Snapshot.open(tmp_path / "cut")
    resumed = snapshot_kafka(tmp_path / "cut", kafka_settings, options)

    assert snapshot_rows(resumed) == snapshot_rows(whole)
    assert file_listing(resumed) == file_listing(whole)
    assert (
        resumed.manifest["kafka"]["partitions"] == whole.manifest["kafka"]["partitions"]
    )


# Each chunk waits half a second, so the run is still going when the test kills it,
# even on a busy machine (23 chunks of 40 messages).
KILLED_RUN = textwrap.dedent(
    """
    import sys, time
    from codegen_forensics.load import KafkaSnapshotOptions, snapshot_kafka
    from codegen_forensics.settings import KafkaSettings

    options = KafkaSnapshotOptions(topics=(sys.argv[2],), chunk_rows=40)
    snapshot_kafka(sys.argv[1], KafkaSettings.from_env(), options,
                   progress=lambda e: time.sleep(0.5 if e.kind == "chunk" else 0))
    """
)


def recorded_chunks(root: Path) -> int:
    try:
        state = json.loads((root / ".progress.json").read_text())["state"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0
    return sum(len(c) for c in state.get("kafka_chunks", {}).values())


def test_snapshot_kafka_killed_process_resumes_to_identical_snapshot(
    kafka_settings: KafkaSettings,
    topic_factory: Callable[..., str],
    producer: Producer,
    tmp_path: Path,
) -> None:
    topic = topic_factory("killed", partitions=3)
    fill_for_resume(producer, topic)
    options = KafkaSnapshotOptions(topics=(topic,), chunk_rows=40)
    whole = snapshot_kafka(tmp_path / "whole", kafka_settings, options)
    cut = tmp_path / "cut"
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(cut), topic], env=dict(os.environ)
    )
    deadline = time.monotonic() + 60
    while recorded_chunks(cut) < 4 and time.monotonic() < deadline:
        assert process.poll() is None, "the snapshot finished before it was killed"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(10)

    assert not (cut / "manifest.json").exists()
    resumed = snapshot_kafka(cut, kafka_settings, options)

    assert snapshot_rows(resumed) == snapshot_rows(whole)
    assert file_listing(resumed) == file_listing(whole)


def test_snapshot_kafka_worker_processes_match_one_process(
    kafka_settings: KafkaSettings,
    topic_factory: Callable[..., str],
    producer: Producer,
    tmp_path: Path,
) -> None:
    topic = topic_factory("workers", partitions=3)
    fill_for_resume(producer, topic)

    inline = snapshot_kafka(
        tmp_path / "one",
        kafka_settings,
        KafkaSnapshotOptions(topics=(topic,), chunk_rows=100, workers=1),
    )
    parallel = snapshot_kafka(
        tmp_path / "two",
        kafka_settings,
        KafkaSnapshotOptions(topics=(topic,), chunk_rows=100, workers=2),
    )

    assert snapshot_rows(parallel) == snapshot_rows(inline)
    assert file_listing(parallel) == file_listing(inline)


def test_snapshot_kafka_resume_with_other_settings_is_refused(
    kafka_settings: KafkaSettings,
    topic_factory: Callable[..., str],
    producer: Producer,
    tmp_path: Path,
) -> None:
    topic = topic_factory("settings")
    producer.produce(topic, b"x")
    producer.flush(30)

    def fail(event: ProgressEvent) -> None:
        if event.kind == "plan":
            raise RuntimeError("stop after planning")

    options = KafkaSnapshotOptions(topics=(topic,))
    with pytest.raises(RuntimeError, match="stop after planning"):
        snapshot_kafka(tmp_path / "snap", kafka_settings, options, progress=fail)
    other = KafkaSnapshotOptions(topics=(topic,), isolation_level="read_uncommitted")

    with pytest.raises(SnapshotError, match="was started with other Kafka settings"):
        snapshot_kafka(tmp_path / "snap", kafka_settings, other)


def test_snapshot_kafka_complete_directory_is_refused(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory("complete")
    options = KafkaSnapshotOptions(topics=(topic,))
    snapshot_kafka(tmp_path / "snap", kafka_settings, options)

    with pytest.raises(SnapshotError, match="is already complete"):
        snapshot_kafka(tmp_path / "snap", kafka_settings, options)


def test_snapshot_kafka_unknown_topic_is_refused(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    options = KafkaSnapshotOptions(topics=("no-such-topic-4d1e",))

    with pytest.raises(InputError, match="topic 'no-such-topic-4d1e' does not exist"):
        snapshot_kafka(tmp_path / "snap", kafka_settings, options)


def test_select_topics_default_takes_catalog_and_known_schemes() -> None:
    available = [
        "omninode_codegen_request_analyze_v1",
        "dev.omninode-bridge.codegen.request-analyze.v1.dlq",
        "staging_omninode_codegen_dlq_mixin_v2",
        "payments",
        "__consumer_offsets",
    ]

    chosen, missing = select_topics(available)

    assert chosen == {
        "dev.omninode-bridge.codegen.request-analyze.v1.dlq": "scheme:dotted",
        "omninode_codegen_request_analyze_v1": "catalog",
        "staging_omninode_codegen_dlq_mixin_v2": "scheme:documented",
    }
    assert len(missing) == 12
    assert "omninode_codegen_status_session_v1" in missing


def test_select_topics_patterns_and_names() -> None:
    available = ["a.one", "a.two", "b.one", "__internal"]

    chosen, missing = select_topics(available, ["^a\\.", "b.one", "__internal"])

    assert chosen == {
        "__internal": "named",
        "a.one": "pattern:^a\\.",
        "a.two": "pattern:^a\\.",
        "b.one": "named",
    }
    assert missing == []


def test_select_topics_pattern_matching_nothing_is_refused() -> None:
    with pytest.raises(InputError, match="topic pattern '\\^zzz' matches no topic"):
        select_topics(["a"], ["^zzz"])


def test_snapshot_options_bad_values_are_refused() -> None:
    with pytest.raises(InputError, match="isolation_level 'dirty' is not known"):
        KafkaSnapshotOptions(isolation_level="dirty")  # type: ignore[arg-type]
