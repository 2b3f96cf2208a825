"""Fixtures that write small, complete snapshots and open them for analysis."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from codegen_forensics.analysis import Analysis, open_analysis
from codegen_forensics.snapshot import (
    CONSUMER_OFFSETS_SCHEMA,
    KAFKA_PARTITIONS_SCHEMA,
    SnapshotWriter,
)

from .helpers import event_log_table, message_table, table_of


@pytest.fixture
def build_snapshot(tmp_path: Path) -> Callable[..., Path]:
    """Writes a complete snapshot; each call gets its own directory."""
    serial = itertools.count()

    def build(
        messages: Sequence[dict[str, Any]] | pa.Table | Sequence[pa.Table] = (),
        event_logs: Sequence[dict[str, Any]] | pa.Table | None = None,
        partitions: Sequence[dict[str, Any]] | None = None,
        consumer_offsets: Sequence[dict[str, Any]] | None = None,
        manifest: dict[str, Any] | None = None,
    ) -> Path:
        root = tmp_path / f"snap{next(serial)}"
        writer = SnapshotWriter(root)
        tables = _as_tables(messages, message_table)
        for i, table in enumerate(tables):
            if table.num_rows:
                writer.write(f"kafka/topic=all/day=all/part-{i}.parquet", table)
        if event_logs is not None:
            for i, table in enumerate(_as_tables(event_logs, event_log_table)):
                writer.write(
                    f"postgres/table=event_logs/day=all/part-{i}.parquet", table
                )
        if partitions is not None:
            writer.write(
                "kafka_partitions.parquet",
                table_of(partitions, KAFKA_PARTITIONS_SCHEMA),
            )
        if consumer_offsets is not None:
            writer.write(
                "consumer_offsets.parquet",
                table_of(consumer_offsets, CONSUMER_OFFSETS_SCHEMA),
            )
        writer.finish(**(manifest or {}))
        return root

    return build


def _as_tables(
    value: Sequence[dict[str, Any]] | pa.Table | Sequence[pa.Table],
    make: Callable[[Sequence[dict[str, Any]]], pa.Table],
) -> list[pa.Table]:
    if isinstance(value, pa.Table):
        return [value]
    items = list(value)
    if items and all(isinstance(item, pa.Table) for item in items):
        return items  # type: ignore[return-value]
    return [make(items)]  # type: ignore[arg-type]


@pytest.fixture
def analyse(build_snapshot: Callable[..., Path]) -> Iterator[Callable[..., Analysis]]:
    """Builds a snapshot from rows and opens it; every analysis is closed after."""
    opened: list[Analysis] = []

    def make(
        *args: Any, open_kwargs: dict[str, Any] | None = None, **kwargs: Any
    ) -> Analysis:
        analysis = open_analysis(
            build_snapshot(*args, **kwargs),
            memory_limit="256MB",
            threads=1,
            **(open_kwargs or {}),
        )
        opened.append(analysis)
        return analysis

    yield make
    for analysis in opened:
        analysis.close()
