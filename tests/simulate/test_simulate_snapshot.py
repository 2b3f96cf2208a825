"""write_snapshot: a complete snapshot directory that agrees with its ground truth."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pytest

from codegen_forensics.errors import SnapshotError
from codegen_forensics.events.topics import TopicCatalog
from codegen_forensics.simulate import TRUTH_NAME, GroundTruth, write_snapshot
from codegen_forensics.snapshot import Snapshot

from .conftest import troubled_config


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GroundTruth]:
    root = tmp_path_factory.mktemp("sim") / "snapshot"
    truth = write_snapshot(troubled_config(), root, catalog=TopicCatalog(prefix="s_"))
    return root, truth


def test_write_snapshot_is_complete_and_verifies(written) -> None:
    root, truth = written
    snapshot = Snapshot.open(root, verify=True)
    assert snapshot.manifest["sources"] == ["kafka", "postgres"]
    assert snapshot.manifest["simulation"]["seed"] == 7
    assert GroundTruth.read(root / TRUTH_NAME) == truth
    assert not list(root.parent.glob(".snapshot.*"))


def test_write_snapshot_kafka_rows_match_the_truth(written) -> None:
    root, truth = written
    table = Snapshot.open(root).read("kafka/")
    per_topic = Counter(table.column("topic").to_pylist())
    assert {t: per_topic[t] for t in truth.topics} == truth.messages_per_topic
    statuses: dict[str, Counter[str]] = {t: Counter() for t in truth.topics}
    for topic, status in zip(
        table.column("topic").to_pylist(),
        table.column("decode_status").to_pylist(),
        strict=True,
    ):
        statuses[topic][status] += 1
    assert {t: dict(c) for t, c in statuses.items()} == truth.decode_status_per_topic
    assert set(table.column("timestamp_type").to_pylist()) == {"create_time"}
    shapes = Counter(s for s in table.column("dlq_shape").to_pylist() if s is not None)
    assert dict(shapes) == truth.dlq_by_shape


def test_write_snapshot_partitions_and_offsets_match_the_truth(written) -> None:
    root, truth = written
    snapshot = Snapshot.open(root)
    partitions = snapshot.read("kafka_partitions.parquet").to_pylist()
    ends = {(p["topic"], p["partition"]): p["end_offset"] for p in partitions}
    assert ends == {
        (t, int(p)): n
        for t, per in truth.messages_per_partition.items()
        for p, n in per.items()
    }
    offsets = snapshot.read("consumer_offsets.parquet").to_pylist()
    assert offsets == [
        {
            "group_id": c.group_id,
            "topic": c.topic,
            "partition": c.partition,
            "committed_offset": c.committed_offset,
        }
        for c in truth.consumer_offsets
    ]
    assert {c.group_id for c in truth.consumer_offsets} == {
        "s_omniclaude_codegen_consumer",
        "s_omniarchon_codegen_intelligence",
    }


def test_write_snapshot_event_logs_match_the_truth(written) -> None:
    root, truth = written
    table = Snapshot.open(root).read("postgres/table=event_logs")
    assert table.num_rows == truth.event_logs_rows
    kinds = Counter(
        f"{t}/{s}"
        for t, s in zip(
            table.column("event_type").to_pylist(),
            table.column("status").to_pylist(),
            strict=True,
        )
    )
    assert dict(kinds) == truth.event_logs_by_type_and_status
    assert pc.all(pc.starts_with(table.column("payload"), "{")).as_py()
    status_rows = table.filter(pc.equal(table.column("event_type"), "status"))
    assert status_rows.column("correlation_id").null_count == status_rows.num_rows


def test_write_snapshot_same_seed_gives_identical_files(tmp_path: Path) -> None:
    config = troubled_config(sessions=20)
    write_snapshot(config, tmp_path / "a")
    write_snapshot(config, tmp_path / "b")
    first, second = Snapshot.open(tmp_path / "a"), Snapshot.open(tmp_path / "b")
    for prefix in ("kafka/", "postgres/table=event_logs"):
        assert first.read(prefix).equals(second.read(prefix))
    files_a = {e["path"]: e["sha256"] for e in first.manifest["files"]}
    files_b = {e["path"]: e["sha256"] for e in second.manifest["files"]}
    assert files_a == files_b


def test_write_snapshot_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(SnapshotError, match=r"already exists and is not empty"):
        write_snapshot(troubled_config(sessions=5), tmp_path / "taken")
