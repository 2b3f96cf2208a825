"""One snapshot run: Kafka and Postgres into a directory, the manifest written last."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from codegen_forensics.errors import SnapshotError
from codegen_forensics.events.topics import TopicNameParser
from codegen_forensics.load.kafka import (
    KafkaSnapshotOptions,
    ProgressCallback,
    snapshot_kafka_into,
)
from codegen_forensics.load.postgres import (
    PostgresSnapshotOptions,
    snapshot_postgres_into,
)
from codegen_forensics.settings import KafkaSettings, PostgresSettings
from codegen_forensics.snapshot import MANIFEST_NAME, Snapshot, SnapshotWriter

__all__ = ["run_snapshot", "snapshot_kafka", "snapshot_postgres"]

logger = logging.getLogger(__name__)


def run_snapshot(
    out: str | os.PathLike[str],
    *,
    kafka: KafkaSettings | None = None,
    kafka_options: KafkaSnapshotOptions | None = None,
    postgres: PostgresSettings | None = None,
    postgres_options: PostgresSnapshotOptions | None = None,
    incremental_from: str | os.PathLike[str] | None = None,
    parser: TopicNameParser | None = None,
    progress: ProgressCallback | None = None,
) -> Snapshot:
    """Snapshot the given sources into ``out`` and return the complete snapshot.

    Running it again on a directory an earlier run left incomplete resumes that
    run; a complete directory is refused. ``incremental_from`` is an earlier
    snapshot whose end (offsets, last timestamps) this one starts from.
    """
    root = Path(out)
    if (root / MANIFEST_NAME).exists():
        raise SnapshotError(
            f"snapshot {str(root)!r} is already complete; write a new snapshot into "
            "another directory (use --incremental-from to continue from this one)"
        )
    if kafka is None and postgres is None:
        raise SnapshotError("nothing to snapshot: give Kafka or Postgres settings")
    previous = Path(incremental_from) if incremental_from is not None else None
    writer = SnapshotWriter(root)
    if writer.resumed:
        logger.info("resuming interrupted snapshot path=%s", root)

    sections: dict[str, Any] = {"sources": []}
    if kafka is not None:
        sections["kafka"] = snapshot_kafka_into(
            writer,
            kafka,
            kafka_options,
            incremental_from=previous,
            parser=parser,
            progress=progress,
        )
        sections["sources"].append("kafka")
    if postgres is not None:
        sections["postgres"] = snapshot_postgres_into(
            writer, postgres, postgres_options, incremental_from=previous
        )
        sections["sources"].append("postgres")
    writer.finish(**sections)
    return Snapshot.open(root)


def snapshot_kafka(
    out: str | os.PathLike[str],
    settings: KafkaSettings | None = None,
    options: KafkaSnapshotOptions | None = None,
    **kwargs: Any,
) -> Snapshot:
    """Snapshot Kafka topics alone; see :func:`run_snapshot`."""
    return run_snapshot(
        out, kafka=settings or KafkaSettings.from_env(), kafka_options=options, **kwargs
    )


def snapshot_postgres(
    out: str | os.PathLike[str],
    settings: PostgresSettings | None = None,
    options: PostgresSnapshotOptions | None = None,
    **kwargs: Any,
) -> Snapshot:
    """Snapshot Postgres tables alone; see :func:`run_snapshot`."""
    return run_snapshot(
        out,
        postgres=settings or PostgresSettings.from_env(),
        postgres_options=options,
        **kwargs,
    )
