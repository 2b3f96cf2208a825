from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import ibis
import ibis.expr.types as ir
import pandas as pd
import pytest

from codegen_forensics.analysis import Analysis, open_analysis
from codegen_forensics.analysis._util import bucket
from codegen_forensics.analysis.context import normalise_id, strip_blanks
from codegen_forensics.errors import InputError, SnapshotError
from codegen_forensics.snapshot import (
    CONSUMER_OFFSETS_SCHEMA,
    EVENT_LOGS_SCHEMA,
    KAFKA_MESSAGES_SCHEMA,
    KAFKA_PARTITIONS_SCHEMA,
)

from .helpers import REQ, at, event_log_table, message_table, naive, uid


def test_open_analysis_empty_snapshot_has_empty_tables_with_the_schema(
    analyse: Callable[..., Analysis],
) -> None:
    a = analyse()
    for table, schema in (
        (a.messages, KAFKA_MESSAGES_SCHEMA),
        (a.event_logs, EVENT_LOGS_SCHEMA),
        (a.partitions, KAFKA_PARTITIONS_SCHEMA),
        (a.consumer_offsets, CONSUMER_OFFSETS_SCHEMA),
    ):
        frame = a.execute(table)
        assert len(frame) == 0
        assert list(frame.columns)[: len(schema.names)] == schema.names


def test_open_analysis_naive_timestamps_read_as_utc(
    analyse: Callable[..., Analysis],
) -> None:
    # An older event_logs table: timestamps without time zone and a created_at column,
    # beside a current file with time-zone-aware ones.
    old = naive(
        event_log_table(
            [
                dict(
                    session_id=uid(1),
                    event_type="request",
                    topic=REQ,
                    timestamp=at(0),
                    status="sent",
                    created_at=at(0),
                )
            ]
        )
    )
    new = event_log_table(
        [
            dict(
                session_id=uid(2),
                event_type="request",
                topic=REQ,
                timestamp=at(3600),
                status="sent",
            )
        ]
    )
    a = analyse(event_logs=[old, new])
    frame = a.execute(a.event_logs.order_by("timestamp"))
    assert frame["timestamp"].tolist() == [
        pd.Timestamp("2026-01-05 10:00:00", tz="UTC"),
        pd.Timestamp("2026-01-05 11:00:00", tz="UTC"),
    ]
    assert str(frame["timestamp"].dtype) == "datetime64[us, UTC]"
    assert frame["created_at"].tolist()[0] == pd.Timestamp("2026-01-05 10:00", tz="UTC")


def test_open_analysis_missing_column_reads_null(
    analyse: Callable[..., Analysis],
) -> None:
    # A message file written before processing_time_ms existed.
    table = naive(
        message_table([dict(topic=REQ, event_timestamp=at(0))]),
        drop=["processing_time_ms"],
    )
    a = analyse(table)
    frame = a.execute(a.messages)
    assert frame["processing_time_ms"].isna().tolist() == [True]
    assert frame["event_time"].tolist() == [pd.Timestamp("2026-01-05 10:00", tz="UTC")]


def test_open_analysis_event_time_prefers_the_events_own_timestamp(
    analyse: Callable[..., Analysis],
) -> None:
    a = analyse(
        [
            dict(topic=REQ, event_timestamp=at(5), timestamp=at(9)),
            dict(topic=REQ, event_timestamp=None, timestamp=at(7)),
            dict(
                topic="omninode_codegen_dlq_analyze_v1",
                dlq_failure_time=at(2),
                event_timestamp=at(1),
                timestamp=at(3),
            ),
        ]
    )
    frame = a.execute(a.messages.order_by("offset", "topic"))
    assert frame["event_time"].tolist() == [at(2), at(5), at(7)]


def test_open_analysis_window_keeps_events_inside(
    analyse: Callable[..., Analysis],
) -> None:
    a = analyse(
        [dict(topic=REQ, event_timestamp=at(s)) for s in (0, 10, 20)],
        event_logs=[
            dict(
                session_id=uid(1),
                event_type="request",
                topic=REQ,
                timestamp=at(s),
                status="sent",
            )
            for s in (0, 10, 20)
        ],
        open_kwargs={"start": at(10), "end": at(20)},
    )
    assert a.execute(a.messages)["event_time"].tolist() == [at(10)]
    assert a.execute(a.event_logs)["timestamp"].tolist() == [at(10)]
    assert len(a.execute(a.all_messages)) == 3


def test_open_analysis_naive_window_is_refused(
    build_snapshot: Callable[..., Path],
) -> None:
    root = build_snapshot()
    with pytest.raises(
        InputError, match="start='2026-01-05T00:00:00' has no time zone"
    ):
        open_analysis(root, start=datetime(2026, 1, 5))


def test_open_analysis_incomplete_snapshot_is_refused(tmp_path: Path) -> None:
    (tmp_path / "kafka").mkdir()
    with pytest.raises(SnapshotError, match=r"has no manifest\.json"):
        open_analysis(tmp_path)


def test_open_analysis_bad_memory_limit_is_refused(
    build_snapshot: Callable[..., Path],
) -> None:
    root = build_snapshot()
    with pytest.raises(InputError, match="memory_limit='lots'"):
        open_analysis(root, memory_limit="lots")


@pytest.mark.parametrize(
    ("memory_limit", "kept"), [("256MB", True), ("1GB", True), ("100TB", False)]
)
def test_open_analysis_keeps_blocks_up_to_the_memory_cap(
    build_snapshot: Callable[..., Path], memory_limit: str, kept: bool
) -> None:
    # A cap beyond the machine's address space keeps DuckDB's default allocator.
    with open_analysis(build_snapshot(), memory_limit=memory_limit) as a:
        row = a.backend.raw_sql(
            "SELECT current_setting('block_allocator_memory'), "
            "current_setting('memory_limit')"
        ).fetchone()
    blocks, cap = row
    assert (blocks == "0 bytes") is not kept
    if kept:
        # Both print the same bytes, rounded to a tenth of a MiB.
        assert float(blocks.split()[0]) == pytest.approx(
            float(cap.split()[0]), abs=0.15
        )
        assert blocks.split()[1] == cap.split()[1]


def test_open_analysis_snapshot_time_from_manifest(
    analyse: Callable[..., Analysis],
) -> None:
    a = analyse(manifest={"started_at": "2026-01-12T00:00:00Z"})
    assert a.snapshot_time == datetime(2026, 1, 12, tzinfo=UTC)


def test_open_analysis_session_time_zone_is_utc(
    analyse: Callable[..., Analysis],
) -> None:
    a = analyse()
    row = a.backend.raw_sql("SELECT current_setting('TimeZone')").fetchall()
    assert row == [("UTC",)]


def test_open_analysis_backend_in_another_time_zone_is_refused(
    build_snapshot: Callable[..., Path],
) -> None:
    # A DuckDB in New York read naive times as local and cut days at its midnight.
    root = build_snapshot([dict(topic=REQ, timestamp=at(0))])
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone='America/New_York'")
    with pytest.raises(InputError, match="TimeZone='America/New_York'"):
        open_analysis(root, backend=con)
    con.disconnect()


def test_open_analysis_backend_in_utc_reads_days_in_utc(
    build_snapshot: Callable[..., Path],
) -> None:
    late = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)
    root = build_snapshot([dict(topic=REQ, timestamp=late)])
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone='Etc/UTC'")
    a = open_analysis(root, backend=con)
    m = a.all_messages
    frame = a.execute(m.select(day=bucket(a, m.timestamp, "D")))
    assert frame["day"].tolist() == [pd.Timestamp("2026-03-28", tz="UTC")]
    con.disconnect()


def test_materialise_builds_once_and_drops_the_table_on_close(
    build_snapshot: Callable[..., Path],
) -> None:
    a = open_analysis(build_snapshot([dict(topic=REQ, timestamp=at(0))]), "128MB")
    calls: list[int] = []

    def build() -> ir.Table:
        calls.append(1)
        return a.messages.select("topic")

    a.materialise("topics", build)
    kept = a.materialise("topics", build)
    assert calls == [1]
    assert a.execute(kept)["topic"].tolist() == [REQ]
    con = a.backend.con
    temp = Path(con.execute("SELECT current_setting('temp_directory')").fetchone()[0])
    assert temp.is_dir()
    tables = con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
    assert (kept.get_name(),) in tables
    drops: list[str] = []
    raw_sql = a.backend.raw_sql
    a.backend.raw_sql = lambda query: drops.append(query) or raw_sql(query)
    a.close()
    assert drops == [f'DROP TABLE "{kept.get_name()}"']
    assert not temp.exists()


def test_open_analysis_never_closed_removes_its_temp_directory_at_exit(
    build_snapshot: Callable[..., Path],
) -> None:
    # A process that opened an analysis and exited left an empty directory behind.
    root = build_snapshot([dict(topic=REQ, timestamp=at(0))])
    script = (
        "import sys\n"
        "from codegen_forensics.analysis import open_analysis\n"
        "a = open_analysis(sys.argv[1])\n"
        "setting = \"SELECT current_setting('temp_directory')\"\n"
        "print(a.backend.con.execute(setting).fetchone()[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(root)],
        capture_output=True,
        text=True,
        check=True,
    )
    temp = Path(done.stdout.strip())
    assert temp.name.startswith("forensics-duckdb-")
    assert not temp.exists()


def test_normalise_id_trims_only_blanks_and_lowercases(
    analyse: Callable[..., Analysis],
) -> None:
    # Blanks at either end, inside, none; a control character that is no blank.
    raw = [" a", "B ", "\tC\n", "\x0bd\x0c", "\r\r", "", None, "E f", "\x01g", "h"]
    a = analyse()
    table = ibis.memtable(pd.DataFrame({"raw": pd.Series(raw, dtype="object")}))
    frame = a.execute(
        table.select(
            "raw", id=normalise_id(table.raw), stripped=strip_blanks(table.raw)
        )
    )
    frame = frame.astype(object).where(frame.notna(), None)
    got = {r: (i, s) for r, i, s in frame.itertuples(index=False)}
    assert got == {
        " a": ("a", "a"),
        "B ": ("b", "B"),
        "\tC\n": ("c", "C"),
        "\x0bd\x0c": ("d", "d"),
        "\r\r": (None, ""),
        "": (None, ""),
        None: (None, None),
        "E f": ("e f", "E f"),
        "\x01g": ("\x01g", "\x01g"),
        "h": ("h", "h"),
    }
