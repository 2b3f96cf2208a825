"""A small simulation sent to the real Kafka and Postgres, read back and compared
with its ground truth, and with the same simulation written as a snapshot."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import sqlalchemy as sa
from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient

from codegen_forensics.events.decode import decode_message
from codegen_forensics.events.dlq import normalise_dlq
from codegen_forensics.events.topics import parse_topic
from codegen_forensics.load import (
    KafkaSnapshotOptions,
    PostgresSnapshotOptions,
    run_snapshot,
)
from codegen_forensics.settings import PostgresSettings
from codegen_forensics.simulate import write_snapshot
from codegen_forensics.snapshot import Snapshot

from .conftest import ServiceRun, read_topics


def test_run_to_services_topics_hold_exactly_the_ground_truth(
    service_run: ServiceRun,
) -> None:
    truth = service_run.truth
    messages = read_topics(service_run.settings, service_run.partitions)

    per_topic = Counter(topic for topic, _, _ in messages)
    assert {t: per_topic[t] for t in truth.topics} == truth.messages_per_topic
    per_partition = Counter((topic, p) for topic, p, _ in messages)
    assert {
        t: {str(p): per_partition[(t, p)] for p in range(len(parts))}
        for t, parts in truth.messages_per_partition.items()
    } == truth.messages_per_partition

    # Dead letters: where the truth says, in the shape and with the error it says.
    shapes: Counter[str] = Counter()
    for entry in truth.dlq_messages:
        message = messages[(entry.topic, entry.partition, entry.offset)]
        record = normalise_dlq(json.loads(message["value"]))
        shapes[record.shape] += 1
        assert record.shape == entry.shape
        assert record.error_type == entry.normalised_error_type
        assert record.error_message == entry.normalised_error_message
        assert message["key"] == entry.session_id.encode()
    assert dict(shapes) == truth.dlq_by_shape
    dlq_topics = [t for t in truth.topics if parse_topic(t).category == "dlq"]
    assert sum(per_topic[t] for t in dlq_topics) == sum(truth.dlq_by_kind.values())

    # Poison: at its position with the status the decoder gives it; nothing else on
    # the request topics is anything but a valid event.
    poison = {(p.topic, p.partition, p.offset): p for p in truth.poison}
    for position, message in messages.items():
        topic = position[0]
        if parse_topic(topic).category != "request":
            continue
        status = decode_message(topic, message["value"])["decode_status"]
        if position in poison:
            assert status == poison[position].expected_decode_status
            assert message["key"] == poison[position].key.encode()
        else:
            assert status == "ok"
    tombstones = [p for p in truth.poison if p.kind == "tombstone"]
    assert tombstones
    for entry in tombstones:
        assert messages[(entry.topic, entry.partition, entry.offset)]["value"] is None

    for duplicate in truth.duplicates:
        first, second = (
            messages[(duplicate.topic, duplicate.partition, o)]
            for o in duplicate.offsets
        )
        assert first["value"] == second["value"]


def test_run_to_services_event_logs_hold_exactly_the_ground_truth(
    service_run: ServiceRun,
) -> None:
    with service_run.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT event_type, status, count(*) FROM event_logs "
                "GROUP BY event_type, status"
            )
        ).all()
        failed = conn.execute(
            sa.text(
                "SELECT DISTINCT session_id::text FROM event_logs "
                "WHERE event_type = 'status' AND status = 'failed'"
            )
        ).scalars()
        failed_sessions = set(failed)
    counts = {f"{kind}/{status}": n for kind, status, n in rows}
    assert counts == service_run.truth.event_logs_by_type_and_status
    assert failed_sessions == {f.session_id for f in service_run.truth.failed_sessions}


def test_run_to_services_commits_the_groups_offsets(service_run: ServiceRun) -> None:
    admin = AdminClient(service_run.settings.client_config())
    expected = {
        (c.group_id, c.topic, c.partition): c.committed_offset
        for c in service_run.truth.consumer_offsets
    }
    found = {}
    for group in {c.group_id for c in service_run.truth.consumer_offsets}:
        futures = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)], request_timeout=30
        )
        result = futures[group].result(timeout=30)
        for tp in result.topic_partitions:
            found[(group, tp.topic, tp.partition)] = tp.offset
    assert found == expected
    lags = service_run.config.consumer_lag
    prefix = service_run.catalog.prefix
    for committed in service_run.truth.consumer_offsets:
        lag = lags[committed.group_id.removeprefix(prefix)]
        assert committed.committed_offset == max(0, committed.end_offset - lag)


def test_snapshot_mode_equals_a_snapshot_of_the_services(
    service_run: ServiceRun, tmp_path: Path
) -> None:
    prefix = service_run.catalog.prefix
    groups = tuple(sorted({c.group_id for c in service_run.truth.consumer_offsets}))
    loaded = run_snapshot(
        tmp_path / "loaded",
        kafka=service_run.settings,
        kafka_options=KafkaSnapshotOptions(
            topics=(f"^{re.escape(prefix)}.*",), consumer_groups=groups, workers=1
        ),
        postgres=PostgresSettings.from_env(),
        postgres_options=PostgresSnapshotOptions(schema=service_run.schema),
    )
    write_snapshot(
        service_run.config, tmp_path / "simulated", catalog=service_run.catalog
    )
    simulated = Snapshot.open(tmp_path / "simulated")

    key = ["topic", "partition", "offset"]
    total = sum(service_run.truth.messages_per_topic.values())
    assert loaded.read("kafka/").num_rows == total
    assert _sorted(loaded.read("kafka/"), key) == _sorted(simulated.read("kafka/"), key)

    partitions = [
        "topic",
        "partition",
        "low_watermark",
        "high_watermark",
        "start_offset",
        "end_offset",
        "rows",
        "value_bytes",
    ]
    assert _sorted(
        loaded.read("kafka_partitions.parquet").select(partitions),
        ["topic", "partition"],
    ) == _sorted(
        simulated.read("kafka_partitions.parquet").select(partitions),
        ["topic", "partition"],
    )

    offsets_loaded = [
        row
        for row in loaded.read("consumer_offsets.parquet").to_pylist()
        if row["group_id"] in groups
    ]
    offsets_simulated = simulated.read("consumer_offsets.parquet").to_pylist()
    order = lambda r: (r["group_id"], r["topic"], r["partition"])  # noqa: E731
    assert sorted(offsets_loaded, key=order) == sorted(offsets_simulated, key=order)

    columns = [c for c in simulated.read("postgres/table=event_logs").column_names]
    columns.remove("event_id")
    rows_loaded = loaded.read("postgres/table=event_logs").select(columns)
    rows_simulated = simulated.read("postgres/table=event_logs").select(columns)
    assert rows_loaded.num_rows == service_run.truth.event_logs_rows
    order_by = ["session_id", "timestamp", "event_type", "status", "topic", "payload"]
    assert _sorted(rows_loaded, order_by) == _sorted(rows_simulated, order_by)


def _sorted(table: pa.Table, keys: list[str]) -> list[dict[str, object]]:
    ordered = table.sort_by([(k, "ascending") for k in keys])
    rows: list[dict[str, object]] = ordered.to_pylist()
    return rows
