"""Snapshots of Kafka topics and Postgres event tables into Parquet, with a manifest.

:func:`run_snapshot` reads any of the two sources into one snapshot directory (see
:mod:`codegen_forensics.snapshot` for the layout); :func:`snapshot_kafka` and
:func:`snapshot_postgres` read one. Runs are read-only on the sources, resumable after
an interruption, and can continue from an earlier snapshot.
"""

from codegen_forensics.load.kafka import (
    KafkaSnapshotOptions,
    PartitionTask,
    ProgressCallback,
    ProgressEvent,
    select_topics,
    snapshot_kafka_into,
)
from codegen_forensics.load.postgres import (
    PostgresSnapshotOptions,
    snapshot_postgres_into,
)
from codegen_forensics.load.run import run_snapshot, snapshot_kafka, snapshot_postgres

__all__ = [
    "KafkaSnapshotOptions",
    "PartitionTask",
    "PostgresSnapshotOptions",
    "ProgressCallback",
    "ProgressEvent",
    "run_snapshot",
    "select_topics",
    "snapshot_kafka",
    "snapshot_kafka_into",
    "snapshot_postgres",
    "snapshot_postgres_into",
]
