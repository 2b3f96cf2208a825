"""Postgres snapshots against the real server: time zones, JSON shapes, variants."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pyarrow as pa
import pytest
import sqlalchemy as sa

import codegen_forensics.load.postgres as postgres_loader
from codegen_forensics.errors import InputError, PostgresError, SnapshotError
from codegen_forensics.events.tables import create_event_tables
from codegen_forensics.load import PostgresSnapshotOptions, snapshot_postgres
from codegen_forensics.settings import PostgresSettings
from codegen_forensics.snapshot import EVENT_LOGS_SCHEMA, Snapshot

SESSION = "6f1c2a0e-8d3b-4c5e-9f7a-1b2c3d4e5f60"


def settings_in_zone(settings: PostgresSettings, zone: str) -> PostgresSettings:
    """Settings whose sessions use ``zone`` as their TimeZone."""
    url = settings.url.get_secret_value()
    return PostgresSettings.from_env(
        url=f"{url}?options={quote(f'-c timezone={zone}')}"
    )


def insert_event_logs(
    engine: sa.Engine,
    rows: list[dict[str, Any]],
    *,
    zone: str = "Europe/Berlin",
    cast: str = "timestamptz",
) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(f"SET LOCAL TIME ZONE '{zone}'"))
        for row in rows:
            values = {
                "session_id": SESSION,
                "correlation_id": None,
                "event_type": "request",
                "topic": "omninode_codegen_request_analyze_v1",
                "status": "sent",
                "payload": '{"a": 1}',
                "metadata": "{}",
                **row,
            }
            conn.execute(
                sa.text(
                    "INSERT INTO event_logs (session_id, correlation_id, event_type, "
                    "topic, timestamp, status, payload, metadata) VALUES (:session_id, "
                    ":correlation_id, :event_type, :topic, CAST(:timestamp AS "
                    f"{cast}), :status, CAST(:payload AS jsonb), CAST(:metadata AS "
                    "jsonb))"
                ),
                values,
            )


def read_rows(snapshot: Snapshot, table: str = "event_logs") -> list[dict[str, Any]]:
    return snapshot.read(f"postgres/table={table}/").to_pylist()


# Local wall-clock times in Berlin around the end of summer time on 2025-10-26,
# when 03:00 CEST became 02:00 CET.
DST_ROWS = [
    ("2025-10-26 01:30:00+02", datetime(2025, 10, 25, 23, 30, tzinfo=UTC)),
    ("2025-10-26 02:30:00+02", datetime(2025, 10, 26, 0, 30, tzinfo=UTC)),
    ("2025-10-26 02:30:00+01", datetime(2025, 10, 26, 1, 30, tzinfo=UTC)),
    ("2025-10-26 03:30:00+01", datetime(2025, 10, 26, 2, 30, tzinfo=UTC)),
]


def _whole_and_resumed(
    tmp_path: Path,
    settings: PostgresSettings,
    options: PostgresSnapshotOptions,
    monkeypatch: pytest.MonkeyPatch,
    fail_at: int,
) -> tuple[Snapshot, Snapshot]:
    """An uninterrupted snapshot, and one cut at chunk ``fail_at`` then resumed."""
    whole = snapshot_postgres(tmp_path / "whole", settings, options)
    real_write: Callable[..., dict[str, Any]] = postgres_loader._write_table_chunk
    calls = 0

    def fail_once(*args: Any, **kwargs: Any) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == fail_at:
            raise RuntimeError(f"injected failure in chunk {fail_at}")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(postgres_loader, "_write_table_chunk", fail_once)
    with pytest.raises(RuntimeError, match=f"injected failure in chunk {fail_at}"):
        snapshot_postgres(tmp_path / "cut", settings, options)
    monkeypatch.setattr(postgres_loader, "_write_table_chunk", real_write)
    resumed = snapshot_postgres(tmp_path / "cut", settings, options)
    return whole, resumed


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "UTC"])
def test_snapshot_postgres_timestamps_stay_utc_across_dst(
    postgres_settings: PostgresSettings,
    schema_engine: sa.Engine,
    pg_schema: str,
    tmp_path: Path,
    zone: str,
) -> None:
    create_event_tables(schema_engine, pg_schema)
    insert_event_logs(schema_engine, [{"timestamp": local} for local, _ in DST_ROWS])

    snapshot = snapshot_postgres(
        tmp_path / "snap",
        settings_in_zone(postgres_settings, zone),
        PostgresSnapshotOptions(schema=pg_schema, chunk_rows=3),
    )

    rows = read_rows(snapshot)
    assert [r["timestamp"] for r in rows] == [utc for _, utc in DST_ROWS]
    assert all(r["timestamp"].utcoffset() == timedelta(0) for r in rows)
    table = snapshot.manifest["postgres"]["tables"]["event_logs"]
    assert table["rows"] == 4
    assert table["time_range"] == {
        "min": "2025-10-25T23:30:00+00:00",
        "max": "2025-10-26T02:30:00+00:00",
    }
    assert table["naive_timestamp_columns"] == []
    assert table["variant"] == "current"
    days = sorted({f["path"].split("/")[2] for f in snapshot.manifest["files"]})
    assert days == ["day=2025-10-25", "day=2025-10-26"]


def test_snapshot_postgres_timestamp_without_zone_is_read_as_utc_and_flagged(
    postgres_settings: PostgresSettings,
    schema_engine: sa.Engine,
    pg_schema: str,
    tmp_path: Path,
) -> None:
    create_event_tables(schema_engine, pg_schema, with_timezone=False)
    insert_event_logs(
        schema_engine,
        [{"timestamp": "2025-10-26 02:30:00"}, {"timestamp": "2025-03-30 02:30:00"}],
        cast="timestamp",
    )

    snapshot = snapshot_postgres(
        tmp_path / "snap",
        settings_in_zone(postgres_settings, "Europe/Berlin"),
        PostgresSnapshotOptions(schema=pg_schema),
    )

    assert [r["timestamp"] for r in read_rows(snapshot)] == [
        datetime(2025, 3, 30, 2, 30, tzinfo=UTC),
        datetime(2025, 10, 26, 2, 30, tzinfo=UTC),
    ]
    table = snapshot.manifest["postgres"]["tables"]["event_logs"]
    assert table["naive_timestamp_columns"] == ["timestamp"]
    assert (
        "column timestamp is timestamp without time zone, not timestamptz"
        in (table["differences"])
    )
    assert (
        "column timestamp stores timestamps without time zone; read as UTC"
        in table["findings"]
    )


def test_snapshot_postgres_json_of_every_shape_is_canonical_text(
    postgres_settings: PostgresSettings,
    schema_engine: sa.Engine,
    pg_schema: str,
    tmp_path: Path,
) -> None:
    with schema_engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE docs (id int PRIMARY KEY, created_at timestamptz, "
                "doc jsonb, raw json, ref uuid, tags text[], amount numeric)"
            )
        )
        conn.exec_driver_sql(
            "INSERT INTO docs VALUES "
            '(1, \'2025-01-01Z\', \'{"b": [1, 2.50], "a": "é"}\', '
            "'{\"z\":1,  \"y\":2}', 'A0B1C2D3-E4F5-4A6B-8C7D-9E0F1A2B3C4D', "
            "ARRAY['x', NULL], 1.50),"
            "(2, '2025-01-02Z', '[3, {\"k\": null}]', '[]', NULL, NULL, NULL),"
            "(3, '2025-01-03Z', '42', '\"text\"', NULL, NULL, NULL),"
            "(4, '2025-01-04Z', '\"plain\"', 'true', NULL, NULL, NULL),"
            "(5, '2025-01-05Z', 'null', 'null', NULL, NULL, NULL),"
            "(6, '2025-01-06Z', NULL, NULL, NULL, NULL, NULL),"
            "(7, '2025-01-07Z', to_jsonb('{\"inner\": [1]}'::text), "
            '\'"{\\"q\\": 2}"\', NULL, NULL, NULL)'
        )

    snapshot = snapshot_postgres(
        tmp_path / "snap",
        postgres_settings,
        PostgresSnapshotOptions(schema=pg_schema, tables=("docs",)),
    )

    rows = read_rows(snapshot, "docs")
    assert [(r["id"], r["doc"], r["raw"]) for r in rows] == [
        (1, '{"a":"é","b":[1,2.5]}', '{"y":2,"z":1}'),
        (2, '[3,{"k":null}]', "[]"),
        (3, "42", '"text"'),
        (4, '"plain"', "true"),
        (5, "null", "null"),
        (6, None, None),
        (7, '{"inner":[1]}', '{"q":2}'),
    ]
    assert rows[0]["ref"] == "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d"
    assert rows[0]["tags"] == ["x", None]
    assert rows[0]["amount"] == "1.50"
    table = snapshot.manifest["postgres"]["tables"]["docs"]
    assert table["json"] == {"json_text_unwrapped": 2}
    assert table["time_column"] == "created_at"


def test_snapshot_postgres_json_with_a_lone_surrogate_is_kept_escaped(
    postgres_settings: PostgresSettings,
    schema_engine: sa.Engine,
    pg_schema: str,
    tmp_path: Path,
) -> None:
    # A json (not jsonb) column keeps the escape of half a surrogate pair, which
    # has no UTF-8 form of its own.
    with schema_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE notes (id int PRIMARY KEY, raw json)"))
        conn.exec_driver_sql(
            'INSERT INTO notes VALUES (1, \'{"b": "\\ud800", "a": "é"}\'), '
            '(2, \'{"a": "é"}\')'
        )

    snapshot = snapshot_postgres(
        tmp_path / "snap",
        postgres_settings,
        PostgresSnapshotOptions(schema=pg_schema, tables=("notes",)),
    )

    rows = read_rows(snapshot, "notes")
    assert [(r["id"], r["raw"]) for r in rows] == [
        (1, '{"a":"\\u00e9","b":"\\ud800"}'),
        (2, '{"a":"é"}'),
    ]


def test_snapshot_postgres_event_logs_uuids_and_schema(
    postgres_settings: PostgresSettings,
    schema_engine: sa.Engine,
    pg_schema: str,
    tmp_path: Path,
) -> None:
    create_event_tables(schema_engine, pg_schema)
    insert_event_logs(
        schema_engine,
        [
            {
                "timestamp": "2025-10-26 12:00:00Z",
                "session_id": SESSION.upper(),
                "correlation_id": "0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D",
                "payload": '"{\\"x\\": 1}"',
                "metadata": '{"retries": 2, "source": "svc"}',
            }
        ],
    )

    snapshot = snapshot_postgres(
        tmp_path / "snap", postgres_settings, PostgresSnapshotOptions(schema=pg_schema)
    )

    table = snapshot.read("postgres/table=event_logs/")
    assert table.schema == EVENT_LOGS_SCHEMA
    (row,) = table.to_pylist()
    assert row["session_id"] == SESSION
    assert row["correlation_id"] == "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    assert row["payload"] == '{"x":1}'
    assert row["metadata"] == '{"retries":2,"source":"svc"}'
    assert row["created_at"] is None
    assert len(row["event_id"]) == 36


def test_snapshot_postgres_legacy_variant_is_accepted_and_reported(
    postgres_settings: PostgresSettings,
    schema_engine: sa.Engine,
    pg_schema: str,
    tmp_path: Path,
) -> None:
    create_event_tables(schema_engine, pg_schema, legacy=True)
    insert_event_logs(
        schema_engine,
        [{"timestamp": "2025-10-26 12:00:00Z", "correlation_id": SESSION}],
    )

    snapshot = snapshot_postgres(
        tmp_path / "snap", postgres_settings, PostgresSnapshotOptions(schema=pg_schema)
    )

    table = snapshot.manifest["postgres"]["tables"]["event_logs"]
    assert table["variant"] == "legacy"
    assert table["differences"] == [
        "column correlation_id is NOT NULL (older variant)",
        "extra column created_at (older variant)",
    ]
    (row,) = read_rows(snapshot)
    assert row["correlation_id"] == SESSION
    assert row["created_at"].tzinfo is not None


def test_snapshot_postgres_missing_empty_and_stale_tables_are_findings(
    postgres_settings: PostgresSettings,
    schema_engine: sa.Engine,
    pg_schema: str,
    tmp_path: Path,
) -> None:
    create_event_tables(schema_engine, pg_schema, hook_events=True)
    insert_event_logs(schema_engine, [{"timestamp": "2020-01-01 00:00:00Z"}])

    snapshot = snapshot_postgres(
        tmp_path / "snap",
        postgres_settings,
        PostgresSnapshotOptions(
            schema=pg_schema, tables=("event_logs", "hook_events", "service_sessions")
        ),
    )

    section = snapshot.manifest["postgres"]
    assert section["tables"]["event_logs"]["rows"] == 1
    assert section["tables"]["event_logs"]["findings"][0].startswith(
        "table event_logs is stale: its newest row (2020-01-01T00:00:00+00:00) is "
    )
    assert section["tables"]["hook_events"]["findings"] == [
        "table hook_events is empty"
    ]
    assert section["tables"]["service_sessions"] == {
        **section["tables"]["service_sessions"],
        "exists": False,
        "rows": 0,
        "findings": ["table service_sessions does not exist"],
    }
    assert read_rows(snapshot, "hook_events") == []


def window_rows(engine: sa.Engine) -> None:
    insert_event_logs(
        engine,
        [{"timestamp": f"2025-10-{day:02d} 12:00:00Z"} for day in range(1, 11)],
        zone="UTC",
    )


def test_snapshot_postgres_window_and_incremental(
    postgres_settings: PostgresSettings,
    schema_engine: sa.Engine,
    pg_schema: str,
    tmp_path: Path,
) -> None:
    create_event_tables(schema_engine, pg_schema)
    window_rows(schema_engine)
    first = snapshot_postgres(
        tmp_path / "first",
        postgres_settings,
        PostgresSnapshotOptions(
            schema=pg_schema,
            since=datetime(2025, 10, 3, tzinfo=UTC),
            until=datetime(2025, 10, 6, 12, tzinfo=UTC),
        ),
    )
    insert_event_logs(
        schema_engine, [{"timestamp": "2025-10-11 00:00:00Z"}], zone="UTC"
    )

    second = snapshot_postgres(
        tmp_path / "second",
        postgres_settings,
        PostgresSnapshotOptions(schema=pg_schema),
        incremental_from=first.root,
    )

    assert [r["timestamp"].day for r in read_rows(first)] == [3, 4, 5]
    assert [r["timestamp"].day for r in read_rows(second)] == [6, 7, 8, 9, 10, 11]
    table = second.manifest["postgres"]["tables"]["event_logs"]
    assert table["since"] == "2025-10-06T12:00:00+00:00"


def test_snapshot_postgres_interrupted_run_resumes_to_identical_snapshot(
    postgres_settings: PostgresSettings,
    schema_engine: sa.Engine,
    pg_schema: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create_event_tables(schema_engine, pg_schema)
    window_rows(schema_engine)
    options = PostgresSnapshotOptions(
        schema=pg_schema, chunk_rows=3, until=datetime(2026, 1, 1, tzinfo=UTC)
    )
    whole, resumed = _whole_and_resumed(
        tmp_path, postgres_settings, options, monkeypatch, fail_at=3
    )

    assert read_rows(resumed) == read_rows(whole)
    listing = [(f["path"], f["rows"]) for f in resumed.manifest["files"]]
    assert listing == [(f["path"], f["rows"]) for f in whole.manifest["files"]]
    assert resumed.manifest["postgres"]["tables"]["event_logs"]["rows"] == 10


def test_snapshot_postgres_resume_with_other_window_is_refused(
    postgres_settings: PostgresSettings,
    schema_engine: sa.Engine,
    pg_schema: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create_event_tables(schema_engine, pg_schema)
    window_rows(schema_engine)

    def fail(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("injected failure")

    monkeypatch.setattr(postgres_loader, "_write_table_chunk", fail)
    with pytest.raises(RuntimeError, match="injected failure"):
        snapshot_postgres(
            tmp_path / "cut",
            postgres_settings,
            PostgresSnapshotOptions(schema=pg_schema),
        )
    other = PostgresSnapshotOptions(
        schema=pg_schema, since=datetime(2025, 10, 5, tzinfo=UTC)
    )

    with pytest.raises(SnapshotError, match="was started with other Postgres settings"):
        snapshot_postgres(tmp_path / "cut", postgres_settings, other)


def test_postgres_options_naive_window_is_refused() -> None:
    with pytest.raises(
        InputError, match="since='2025-10-01T00:00:00' has no time zone"
    ):
        PostgresSnapshotOptions(since=datetime(2025, 10, 1))


def test_postgres_options_unknown_time_column_is_refused(
    postgres_settings: PostgresSettings,
    schema_engine: sa.Engine,
    pg_schema: str,
    tmp_path: Path,
) -> None:
    create_event_tables(schema_engine, pg_schema)
    options = PostgresSnapshotOptions(
        schema=pg_schema, time_columns={"event_logs": "when"}
    )

    with pytest.raises(InputError, match="time column 'when' is not a column of"):
        snapshot_postgres(tmp_path / "snap", postgres_settings, options)


def test_snapshot_postgres_csv_stream_keeps_every_plain_type(
    postgres_settings: PostgresSettings,
    schema_engine: sa.Engine,
    pg_schema: str,
    tmp_path: Path,
) -> None:
    # A date of 'infinity' used to stop the snapshot; it is now null, like
    # infinite timestamps.
    with schema_engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE kinds (id int PRIMARY KEY, created_at timestamptz, "
                "flag bool, ratio float8, blob bytea, day date, note text)"
            )
        )
        conn.exec_driver_sql(
            "INSERT INTO kinds VALUES "
            "(1, '2025-01-01 00:00:00.000001Z', true, 'Infinity', '\\x00ff', "
            "'2025-10-26', E'two\\nlines, \"quoted\"'),"
            "(2, '2025-01-02Z', false, 'NaN', '\\x', 'infinity', ''),"
            "(3, NULL, NULL, -0.5, NULL, NULL, NULL)"
        )

    snapshot = snapshot_postgres(
        tmp_path / "snap",
        postgres_settings,
        PostgresSnapshotOptions(
            schema=pg_schema, tables=("kinds",), until=datetime(2100, 1, 1, tzinfo=UTC)
        ),
    )

    rows = read_rows(snapshot, "kinds")
    assert [r["id"] for r in rows] == [1, 2]
    first, second = rows
    assert first["created_at"] == datetime(2025, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    assert (first["flag"], second["flag"]) == (True, False)
    assert first["ratio"] == float("inf")
    assert second["ratio"] != second["ratio"]
    assert (first["blob"], second["blob"]) == (b"\x00\xff", b"")
    assert first["day"].isoformat() == "2025-10-26"
    assert second["day"] is None
    assert (first["note"], second["note"]) == ('two\nlines, "quoted"', "")


def test_snapshot_postgres_row_larger_than_a_csv_block_is_kept(
    postgres_settings: PostgresSettings,
    schema_engine: sa.Engine,
    pg_schema: str,
    tmp_path: Path,
) -> None:
    # Arrow's CSV reader refuses a row longer than its block (4 MB as first used).
    create_event_tables(schema_engine, pg_schema)
    big = "x" * 5_000_000
    insert_event_logs(
        schema_engine,
        [
            {"timestamp": f"2025-10-26 12:00:0{i}Z", "payload": json.dumps({"p": p})}
            for i, p in enumerate(["small", big, "after"])
        ],
    )

    snapshot = snapshot_postgres(
        tmp_path / "snap",
        postgres_settings,
        PostgresSnapshotOptions(
            schema=pg_schema, chunk_rows=2, until=datetime(2100, 1, 1, tzinfo=UTC)
        ),
    )

    payloads = [json.loads(r["payload"])["p"] for r in read_rows(snapshot)]
    assert payloads == ["small", big, "after"]


@pytest.mark.parametrize(
    ("key_type", "keys"),
    [
        (
            "date",
            ["2025-10-24", "2025-10-25", "2025-10-26", "2025-10-27", "2025-10-28"],
        ),
        ("bytea", ["\\x01", "\\x02", "\\x0a", "\\xff", "\\xff00"]),
    ],
)
def test_snapshot_postgres_resume_on_a_date_or_bytea_key(
    postgres_settings: PostgresSettings,
    schema_engine: sa.Engine,
    pg_schema: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    key_type: str,
    keys: list[str],
) -> None:
    # Keys now arrive in their CSV form (days since 1970, hex) and must resume.
    with schema_engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE keyed (k {key_type} PRIMARY KEY, n int)"))
        for n, key in enumerate(keys):
            conn.execute(
                sa.text(f"INSERT INTO keyed VALUES (CAST(:k AS {key_type}), :n)"),
                {"k": key, "n": n},
            )
    options = PostgresSnapshotOptions(schema=pg_schema, tables=("keyed",), chunk_rows=2)
    whole, resumed = _whole_and_resumed(
        tmp_path, postgres_settings, options, monkeypatch, fail_at=2
    )

    assert [r["n"] for r in read_rows(resumed, "keyed")] == [0, 1, 2, 3, 4]
    assert read_rows(resumed, "keyed") == read_rows(whole, "keyed")


def copy_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "postgres-copy"]


def test_snapshot_postgres_blocks_never_span_chunks(
    postgres_settings: PostgresSettings,
    schema_engine: sa.Engine,
    pg_schema: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Rows are read in blocks of 2 into chunks of 3: each chunk still gets exactly
    # its rows, and the JSON counts of every block are kept.
    create_event_tables(schema_engine, pg_schema)
    texts = [
        '"{\\"k\\": 1}"'
        if day in (2, 3, 9)
        else '{"n": 12345678901234567890, "f": 2.50}'
        if day == 4
        else f'{{"d": {day}}}'
        for day in range(1, 11)
    ]
    insert_event_logs(
        schema_engine,
        [
            {"timestamp": f"2025-10-{day:02d} 12:00:00Z", "payload": text}
            for day, text in zip(range(1, 11), texts, strict=True)
        ],
        zone="UTC",
    )
    options = PostgresSnapshotOptions(
        schema=pg_schema, chunk_rows=3, until=datetime(2026, 1, 1, tzinfo=UTC)
    )
    whole = snapshot_postgres(tmp_path / "whole", postgres_settings, options)
    monkeypatch.setattr(postgres_loader, "_BLOCK_ROWS", 2)

    snapshot = snapshot_postgres(tmp_path / "blocks", postgres_settings, options)

    rows = read_rows(snapshot)
    assert [r["timestamp"].day for r in rows] == list(range(1, 11))
    assert [r["payload"] for r in rows[:4]] == [
        '{"d":1}',
        '{"k":1}',
        '{"k":1}',
        '{"f":2.5,"n":12345678901234567890}',
    ]
    assert rows == read_rows(whole)
    chunks = [f["path"].split("/")[-1] for f in snapshot.manifest["files"]]
    assert chunks == [f"part-{i:06d}.parquet" for i in (0, 0, 0, 1, 1, 1, 2, 2, 2, 3)]
    for each in (snapshot, whole):
        table = each.manifest["postgres"]["tables"]["event_logs"]
        assert table["json"] == {"json_text_unwrapped": 3}


def test_snapshot_postgres_failure_while_reading_ahead_resumes(
    postgres_settings: PostgresSettings,
    schema_engine: sa.Engine,
    pg_schema: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One-row blocks: when writing the first chunk fails, the reading thread is
    # blocked with the next rows read; its COPY is cancelled and the thread ends.
    create_event_tables(schema_engine, pg_schema)
    window_rows(schema_engine)
    monkeypatch.setattr(postgres_loader, "_BLOCK_ROWS", 1)
    options = PostgresSnapshotOptions(
        schema=pg_schema, chunk_rows=2, until=datetime(2026, 1, 1, tzinfo=UTC)
    )

    whole, resumed = _whole_and_resumed(
        tmp_path, postgres_settings, options, monkeypatch, fail_at=1
    )

    assert copy_threads() == []
    assert [r["timestamp"].day for r in read_rows(resumed)] == list(range(1, 11))
    assert read_rows(resumed) == read_rows(whole)


def test_snapshot_postgres_error_in_the_reading_thread_is_raised(
    postgres_settings: PostgresSettings,
    schema_engine: sa.Engine,
    pg_schema: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create_event_tables(schema_engine, pg_schema)
    window_rows(schema_engine)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("injected parse failure")

    monkeypatch.setattr(postgres_loader, "_parse_rows", broken)
    with pytest.raises(ValueError, match="injected parse failure"):
        snapshot_postgres(
            tmp_path / "snap",
            postgres_settings,
            PostgresSnapshotOptions(
                schema=pg_schema, until=datetime(2026, 1, 1, tzinfo=UTC)
            ),
        )

    assert copy_threads() == []


def test_snapshot_postgres_resume_without_a_primary_key_keeps_rows_of_one_time(
    postgres_settings: PostgresSettings,
    schema_engine: sa.Engine,
    pg_schema: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Four rows share each time, so a chunk of three ends inside a group.
    with schema_engine.begin() as conn:
        conn.execute(sa.text(f'SET search_path TO "{pg_schema}"'))
        conn.execute(sa.text("CREATE TABLE readings (at timestamptz, n int)"))
        conn.execute(
            sa.text(
                "INSERT INTO readings SELECT TIMESTAMPTZ '2025-10-14 00:00Z' "
                "+ (i / 4) * INTERVAL '1 minute', i FROM generate_series(0, 11) i"
            )
        )
    options = PostgresSnapshotOptions(
        schema=pg_schema,
        tables=("readings",),
        time_columns={"readings": "at"},
        chunk_rows=3,
        until=datetime(2100, 1, 1, tzinfo=UTC),
    )

    whole, resumed = _whole_and_resumed(
        tmp_path, postgres_settings, options, monkeypatch, fail_at=2
    )

    assert sorted(r["n"] for r in read_rows(resumed, "readings")) == list(range(12))
    assert sorted(r["n"] for r in read_rows(whole, "readings")) == list(range(12))
    table = resumed.manifest["postgres"]["tables"]["readings"]
    assert table["rows"] == 12


def test_snapshot_postgres_rows_without_a_time_go_to_day_unknown(
    postgres_settings: PostgresSettings,
    schema_engine: sa.Engine,
    pg_schema: str,
    tmp_path: Path,
) -> None:
    # '-infinity' is before any window's end and is stored as a null time.
    create_event_tables(schema_engine, pg_schema)
    insert_event_logs(
        schema_engine,
        [
            {"timestamp": "2025-10-26 23:59:59.999999Z"},
            {"timestamp": "-infinity"},
            {"timestamp": "2025-10-27 00:00:00Z"},
        ],
        zone="UTC",
    )

    snapshot = snapshot_postgres(
        tmp_path / "snap",
        postgres_settings,
        PostgresSnapshotOptions(
            schema=pg_schema, until=datetime(2026, 1, 1, tzinfo=UTC)
        ),
    )

    listing = [(f["path"], f["rows"]) for f in snapshot.manifest["files"]]
    base = "postgres/table=event_logs"
    assert listing == [
        (f"{base}/day=2025-10-26/part-000000.parquet", 1),
        (f"{base}/day=2025-10-27/part-000000.parquet", 1),
        (f"{base}/day=unknown/part-000000.parquet", 1),
    ]
    assert [r["timestamp"] for r in read_rows(snapshot)] == [
        datetime(2025, 10, 26, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2025, 10, 27, tzinfo=UTC),
        None,
    ]


# JSON texts as a json or jsonb column gives them, and a few no column gives.
JSON_TEXTS = [
    '{"b": 1, "a": [true, null, "x"]}',
    '{"b": 1, "a": [true, null, "x"]}',
    '  {"k": -12, "é": "\\u00e9"}',
    '{"f": 2.50}',
    '{"e": 1e-05, "big": 1E+400}',
    '{"s": "12.5 and 3e4 in text"}',
    "123456789012345678",
    "1234567890123456789",
    "-98765432109876543210",
    '"plain"',
    '"{\\"inner\\": [1, 2]}"',
    '"{\\"inner\\": [1, 2]}"',
    ' "[3]"',
    '{"a": 1, "a": 2}',
    '{"bad": }',
    '{"n": NaN}',
    None,
    "null",
]


@pytest.mark.parametrize("cut", [None, 5])
def test_json_column_matches_the_value_by_value_path(cut: int | None) -> None:
    # Each distinct text once, orjson alone where no float, long integer or
    # string can be in it: the same texts and counts as the path for one value.
    reference = postgres_loader._JsonCanonicaliser()
    expected = [reference(text) for text in JSON_TEXTS]
    column = postgres_loader._JsonCanonicaliser()
    values = pa.array(JSON_TEXTS, pa.string())
    if cut is not None:
        values = pa.chunked_array([values[:cut], values[cut:]])

    result = column.column(values)

    assert result.to_pylist() == expected
    assert column.counts == reference.counts
    assert expected[:14] == [
        '{"a":[true,null,"x"],"b":1}',
        '{"a":[true,null,"x"],"b":1}',
        '{"k":-12,"é":"é"}',
        '{"f":2.5}',
        '{"e": 1e-05, "big": 1E+400}',
        '{"s":"12.5 and 3e4 in text"}',
        "123456789012345678",
        "1234567890123456789",
        "-98765432109876543210",
        '"plain"',
        '{"inner":[1,2]}',
        '{"inner":[1,2]}',
        "[3]",
        '{"a":2}',
    ]
    assert dict(reference.counts) == {
        "json_text_unwrapped": 3,
        "json_unparseable": 1,
        "json_not_canonical": 2,
    }


def _execute(engine: sa.Engine, statement: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(statement))


def test_snapshot_postgres_error_after_rows_of_a_copy_is_raised(
    postgres_settings: PostgresSettings,
    schema_engine: sa.Engine,
    pg_schema: str,
    tmp_path: Path,
) -> None:
    # The server fails at the third row, after sending two: its error ends the
    # COPY and reaches the caller as the package's error naming the table, and no
    # reading thread is left.
    _execute(
        schema_engine,
        "CREATE VIEW boom AS SELECT n, 1 / (n - 3) AS q "
        "FROM generate_series(1, 5) AS n",
    )

    with pytest.raises(
        PostgresError, match=r"reading table=boom .* DivisionByZero: division by zero"
    ) as raised:
        snapshot_postgres(
            tmp_path / "snap",
            postgres_settings,
            PostgresSnapshotOptions(schema=pg_schema, tables=("boom",)),
        )

    assert isinstance(raised.value.__cause__, psycopg.errors.DivisionByZero)
    assert copy_threads() == []


def test_snapshot_postgres_backend_killed_during_copy_names_the_table(
    postgres_settings: PostgresSettings,
    schema_engine: sa.Engine,
    pg_schema: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The server process sending the table is ended while the first chunk is
    # written, far from the last row: the lost connection is reported for that
    # table, as the package's error.
    _execute(
        schema_engine,
        "CREATE VIEW many AS SELECT n, repeat('x', 200) AS pad "
        "FROM generate_series(1, 300000) AS n",
    )
    real_write: Callable[..., dict[str, Any]] = postgres_loader._write_keyed_chunk

    def kill_reader(*args: Any, **kwargs: Any) -> dict[str, Any]:
        _execute(
            schema_engine,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE 'COPY%many%' AND pid <> pg_backend_pid()",
        )
        return real_write(*args, **kwargs)

    monkeypatch.setattr(postgres_loader, "_write_keyed_chunk", kill_reader)
    with pytest.raises(
        PostgresError, match=r"reading table=many .* failed: "
    ) as raised:
        snapshot_postgres(
            tmp_path / "snap",
            postgres_settings,
            PostgresSnapshotOptions(
                schema=pg_schema, tables=("many",), chunk_rows=1000
            ),
        )

    # Depending on when the end reaches the client, psycopg reports the server's
    # AdminShutdown or a lost connection: both are operational errors.
    assert isinstance(raised.value.__cause__, psycopg.OperationalError)
    assert copy_threads() == []


def test_snapshot_postgres_error_while_the_server_is_slow_cancels_its_copy(
    postgres_settings: PostgresSettings,
    schema_engine: sa.Engine,
    pg_schema: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Writing the first chunk fails while the server takes 20 s over each row
    # after the sixth (rows of 20 kB, so the first ones leave the server's send
    # buffer): the reading thread, waiting for more, must not hold the error up
    # until they come. The COPY is cancelled and nothing of it runs on.
    _execute(
        schema_engine,
        "CREATE VIEW slow AS SELECT n, repeat('x', 20000) "
        "|| coalesce(CASE WHEN n > 6 THEN pg_sleep(20)::text END, '') AS s "
        "FROM generate_series(1, 8) AS n",
    )

    def fail(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("injected failure in chunk 0")

    monkeypatch.setattr(postgres_loader, "_write_keyed_chunk", fail)
    started = datetime.now(UTC)
    with pytest.raises(RuntimeError, match="injected failure in chunk 0"):
        snapshot_postgres(
            tmp_path / "snap",
            postgres_settings,
            PostgresSnapshotOptions(schema=pg_schema, tables=("slow",), chunk_rows=2),
        )

    assert datetime.now(UTC) - started < timedelta(seconds=10)
    assert copy_threads() == []
    with schema_engine.begin() as conn:
        running = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                "AND query LIKE 'COPY%slow%' AND pid <> pg_backend_pid()"
            )
        ).scalar()
    assert running == 0
