"""The event tables in the real Postgres: DDL, constraints, indexes and the writer."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from codegen_forensics.errors import InputError, PostgresError
from codegen_forensics.events.schemas import CodegenEvent
from codegen_forensics.events.tables import (
    EventLogWriter,
    create_event_tables,
    event_log_row,
)

SESSION = uuid.UUID("123e4567-e89b-12d3-a456-426614174000")
CORRELATION = uuid.UUID("456e7890-e89b-12d3-a456-426614174000")


def columns(engine: sa.Engine, schema: str, table: str) -> dict[str, tuple]:
    query = sa.text(
        """
        SELECT column_name, data_type, character_maximum_length, is_nullable,
               column_default
        FROM information_schema.columns
        WHERE table_schema = :schema AND table_name = :table
        ORDER BY ordinal_position
        """
    )
    with engine.connect() as conn:
        rows = conn.execute(query, {"schema": schema, "table": table})
        return {r[0]: tuple(r[1:]) for r in rows}


def indexes(engine: sa.Engine, schema: str, table: str) -> dict[str, str]:
    query = sa.text(
        "SELECT indexname, indexdef FROM pg_indexes "
        "WHERE schemaname = :schema AND tablename = :table"
    )
    with engine.connect() as conn:
        rows = conn.execute(query, {"schema": schema, "table": table})
        return {r[0]: r[1].replace(f"{schema}.", "") for r in rows}


def checks(engine: sa.Engine, schema: str, table: str) -> dict[str, str]:
    query = sa.text(
        """
        SELECT c.conname, pg_get_constraintdef(c.oid)
        FROM pg_constraint c
        JOIN pg_class t ON t.oid = c.conrelid
        JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname = :schema AND t.relname = :table AND c.contype = 'c'
        """
    )
    with engine.connect() as conn:
        rows = conn.execute(query, {"schema": schema, "table": table})
        return {name: definition for name, definition in rows}


def test_create_event_tables_columns_are_exactly_the_field_notes(
    pg_engine: sa.Engine, pg_schema: str
) -> None:
    create_event_tables(pg_engine, pg_schema)

    assert columns(pg_engine, pg_schema, "event_logs") == {
        "event_id": ("uuid", None, "NO", "gen_random_uuid()"),
        "session_id": ("uuid", None, "NO", None),
        "correlation_id": ("uuid", None, "YES", None),
        "event_type": ("character varying", 50, "NO", None),
        "topic": ("character varying", 255, "NO", None),
        "timestamp": ("timestamp with time zone", None, "NO", "now()"),
        "status": ("character varying", 50, "NO", None),
        "processing_time_ms": ("integer", None, "YES", None),
        "payload": ("jsonb", None, "NO", None),
        "metadata": ("jsonb", None, "NO", "'{}'::jsonb"),
    }


def test_create_event_tables_check_constraints(
    pg_engine: sa.Engine, pg_schema: str
) -> None:
    create_event_tables(pg_engine, pg_schema)

    assert checks(pg_engine, pg_schema, "event_logs") == {
        "ck_event_logs_event_type": "CHECK (((event_type)::text = ANY ((ARRAY["
        "'request'::character varying, 'response'::character varying, "
        "'status'::character varying, 'error'::character varying])::text[])))",
        "ck_event_logs_status": "CHECK (((status)::text = ANY ((ARRAY["
        "'sent'::character varying, 'received'::character varying, "
        "'failed'::character varying, 'processing'::character varying, "
        "'completed'::character varying])::text[])))",
        "ck_event_logs_processing_time_ms": "CHECK (((processing_time_ms IS NULL) "
        "OR (processing_time_ms >= 0)))",
    }


def test_create_event_tables_indexes(pg_engine: sa.Engine, pg_schema: str) -> None:
    create_event_tables(pg_engine, pg_schema)

    using = "ON event_logs USING"
    assert indexes(pg_engine, pg_schema, "event_logs") == {
        "event_logs_pkey": f"CREATE UNIQUE INDEX event_logs_pkey {using} btree "
        "(event_id)",
        "idx_event_logs_session_id": "CREATE INDEX idx_event_logs_session_id "
        f"{using} btree (session_id)",
        "idx_event_logs_correlation_id": "CREATE INDEX "
        f"idx_event_logs_correlation_id {using} btree (correlation_id)",
        "idx_event_logs_timestamp": "CREATE INDEX idx_event_logs_timestamp "
        f'{using} btree ("timestamp" DESC)',
        "idx_event_logs_event_type": "CREATE INDEX idx_event_logs_event_type "
        f"{using} btree (event_type)",
        "idx_event_logs_topic": f"CREATE INDEX idx_event_logs_topic {using} btree "
        "(topic)",
        "idx_event_logs_session_timestamp": "CREATE INDEX "
        f'idx_event_logs_session_timestamp {using} btree (session_id, "timestamp" '
        "DESC)",
        "idx_event_logs_payload_gin": "CREATE INDEX idx_event_logs_payload_gin "
        f"{using} gin (payload)",
        "idx_event_logs_metadata_gin": "CREATE INDEX idx_event_logs_metadata_gin "
        f"{using} gin (metadata)",
    }


def test_create_event_tables_twice_is_idempotent(
    pg_engine: sa.Engine, pg_schema: str, events: list[CodegenEvent]
) -> None:
    create_event_tables(pg_engine, pg_schema)
    with EventLogWriter(pg_engine, pg_schema) as writer:
        writer.record(events[0], status="sent", topic="t")
    before = indexes(pg_engine, pg_schema, "event_logs")

    create_event_tables(pg_engine, pg_schema)

    assert indexes(pg_engine, pg_schema, "event_logs") == before
    with pg_engine.connect() as conn:
        count = conn.execute(sa.text(f'SELECT count(*) FROM "{pg_schema}".event_logs'))
        assert count.scalar_one() == 1


def test_create_event_tables_creates_a_missing_schema(pg_engine: sa.Engine) -> None:
    schema = f"test_new_{uuid.uuid4().hex[:10]}"
    try:
        create_event_tables(pg_engine, schema)

        assert "event_id" in columns(pg_engine, schema, "event_logs")
    finally:
        with pg_engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def test_create_event_tables_uses_the_search_path_without_a_schema(
    schema_engine: sa.Engine, pg_schema: str
) -> None:
    create_event_tables(schema_engine)

    assert "event_id" in columns(schema_engine, pg_schema, "event_logs")


def test_writer_rows_round_trip_with_time_zones_intact(
    pg_engine: sa.Engine, pg_schema: str, events: list[CodegenEvent]
) -> None:
    create_event_tables(pg_engine, pg_schema)
    logged_at = datetime(2025, 10, 14, 3, 0, tzinfo=timezone(timedelta(hours=-7)))

    with EventLogWriter(pg_engine, pg_schema, batch_size=4) as writer:
        for event in events:
            writer.record(
                event,
                status="sent",
                topic=f"omninode_codegen_{event.category}_{event.operation}_v1",
                metadata={"source": "omniclaude", "retries": 0},
            )
        writer.record(
            events[1],
            status="received",
            topic="omninode_codegen_response_analyze_v1",
            timestamp=logged_at,
            processing_time_ms=7,
        )
        # Two batches of four went already; two rows wait for the final flush.
        assert writer.pending == 2
    assert writer.written == 10

    # Read in a session whose time zone is not UTC: instants must not move.
    with pg_engine.connect() as conn:
        conn.execute(sa.text("SET TIME ZONE 'Asia/Kolkata'"))
        rows = (
            conn.execute(
                sa.text(f'SELECT * FROM "{pg_schema}".event_logs ORDER BY timestamp')
            )
            .mappings()
            .all()
        )

    assert len(rows) == 10
    # 03:00 -07:00 is 10:00 UTC, half an hour before the first event.
    late, sent = rows[0], rows[1:]
    for row, event in zip(sent, events, strict=True):
        assert row["timestamp"] == event.timestamp
        assert row["timestamp"].utcoffset() is not None
        assert row["session_id"] == SESSION
        assert row["correlation_id"] == event.correlation()
        assert row["event_type"] == event.category
        assert row["status"] == "sent"
        assert row["processing_time_ms"] == getattr(event, "processing_time_ms", None)
        assert row["payload"] == event.model_dump(mode="json")
        assert row["metadata"] == {"source": "omniclaude", "retries": 0}
        assert isinstance(row["event_id"], uuid.UUID)
    assert late["timestamp"] == datetime(2025, 10, 14, 10, 0, tzinfo=UTC)
    assert late["timestamp"].astimezone(UTC).isoformat() == "2025-10-14T10:00:00+00:00"
    assert (late["status"], late["processing_time_ms"]) == ("received", 7)
    assert sent[8]["correlation_id"] is None  # the status event


def test_writer_record_rows_with_and_without_event_id(
    pg_engine: sa.Engine, pg_schema: str, events: list[CodegenEvent]
) -> None:
    create_event_tables(pg_engine, pg_schema)
    fixed = uuid.UUID("00000000-0000-4000-8000-000000000001")
    rows = [
        event_log_row(events[0], status="sent", topic="a", event_id=fixed),
        event_log_row(events[0], status="received", topic="a"),
    ]

    with EventLogWriter(pg_engine, pg_schema) as writer:
        writer.record_rows(rows)

    with pg_engine.connect() as conn:
        stored = conn.execute(
            sa.text(f'SELECT event_id, status FROM "{pg_schema}".event_logs')
        ).all()
    assert len(stored) == 2
    assert (fixed, "sent") in stored


def test_event_log_row_is_built_from_the_event(events: list[CodegenEvent]) -> None:
    row = event_log_row(events[3], status="completed", topic="t")

    assert row == {
        "session_id": SESSION,
        "correlation_id": CORRELATION,
        "event_type": "response",
        "topic": "t",
        "timestamp": events[3].timestamp,
        "status": "completed",
        "processing_time_ms": 450,
        "payload": events[3].model_dump(mode="json"),
        "metadata": {},
    }
    error_row = event_log_row(events[0], status="failed", topic="t", event_type="error")
    assert error_row["event_type"] == "error"
    assert error_row["processing_time_ms"] is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"status": "done"},
            r"event_logs\.status 'done' is not allowed; expected one of sent, "
            r"received, failed, processing, completed",
        ),
        (
            {"event_type": "dlq"},
            r"event_logs\.event_type 'dlq' is not allowed; expected one of request, "
            r"response, status, error",
        ),
        (
            {"processing_time_ms": -1},
            r"event_logs\.processing_time_ms must be null or >= 0, got -1",
        ),
        (
            {"timestamp": datetime(2025, 10, 14, 10, 30)},  # naive on purpose
            r"event_logs\.timestamp must be a datetime with a time zone",
        ),
        ({"topic": "x" * 256}, r"event_logs\.topic is 256 characters; at most 255"),
    ],
    ids=["status", "event-type", "negative-time", "naive-timestamp", "long-topic"],
)
def test_event_log_row_bad_value_is_refused_naming_the_column(
    events: list[CodegenEvent], changes: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"status": "sent", "topic": "t", **changes}
    with pytest.raises(InputError, match=message):
        event_log_row(events[1], **arguments)  # type: ignore[arg-type]


def test_writer_record_rows_unknown_column_is_refused(pg_engine: sa.Engine) -> None:
    writer = EventLogWriter(pg_engine)

    with pytest.raises(InputError, match=r"unknown columns \['created'\]"):
        writer.record_rows([{"created": 1}])


@pytest.mark.parametrize(
    ("values", "constraint"),
    [
        ("'request', 'done', NULL", "ck_event_logs_status"),
        ("'dlq', 'sent', NULL", "ck_event_logs_event_type"),
        ("'response', 'sent', -5", "ck_event_logs_processing_time_ms"),
    ],
)
def test_event_logs_check_constraints_reject_bad_rows(
    pg_engine: sa.Engine, pg_schema: str, values: str, constraint: str
) -> None:
    create_event_tables(pg_engine, pg_schema)
    insert = sa.text(
        f'INSERT INTO "{pg_schema}".event_logs '
        "(session_id, event_type, status, processing_time_ms, topic, payload) "
        f"VALUES (gen_random_uuid(), {values}, 't', '{{}}')"
    )

    with (
        pytest.raises(sa.exc.IntegrityError, match=constraint),
        pg_engine.begin() as conn,
    ):
        conn.execute(insert)


def test_event_logs_not_null_and_defaults(pg_engine: sa.Engine, pg_schema: str) -> None:
    create_event_tables(pg_engine, pg_schema)
    table = f'"{pg_schema}".event_logs'
    with pg_engine.begin() as conn:
        conn.execute(
            sa.text(
                f"INSERT INTO {table} (session_id, event_type, status, topic, payload) "
                "VALUES (gen_random_uuid(), 'status', 'processing', 't', '[1]')"
            )
        )
        row = conn.execute(
            sa.text(f"SELECT event_id, timestamp, metadata FROM {table}")
        ).one()
        now = conn.execute(sa.text("SELECT now()")).scalar_one()

    assert isinstance(row.event_id, uuid.UUID)
    assert row.metadata == {}
    assert row.timestamp == now  # the same transaction's now()
    with (
        pytest.raises(sa.exc.IntegrityError, match='null value in column "payload"'),
        pg_engine.begin() as conn,
    ):
        conn.execute(
            sa.text(
                f"INSERT INTO {table} (session_id, event_type, status, topic) "
                "VALUES (gen_random_uuid(), 'status', 'processing', 't')"
            )
        )


def test_writer_failure_keeps_the_rows(
    pg_engine: sa.Engine, pg_schema: str, events: list[CodegenEvent]
) -> None:
    # No table in this schema yet: the write fails and nothing is lost.
    writer = EventLogWriter(pg_engine, pg_schema)
    writer.record(events[0], status="sent", topic="t")

    with pytest.raises(PostgresError, match="could not write 1 event_logs rows to"):
        writer.flush()
    assert writer.pending == 1

    create_event_tables(pg_engine, pg_schema)
    assert writer.flush() == 1
    assert writer.pending == 0


def test_writer_batch_size_must_be_positive(pg_engine: sa.Engine) -> None:
    with pytest.raises(InputError, match="batch_size must be 1 or more, got 0"):
        EventLogWriter(pg_engine, batch_size=0)


def test_create_event_tables_legacy_variant(
    pg_engine: sa.Engine, pg_schema: str
) -> None:
    create_event_tables(pg_engine, pg_schema, legacy=True)
    found = columns(pg_engine, pg_schema, "event_logs")

    assert found["correlation_id"] == ("uuid", None, "NO", None)
    assert found["created_at"] == ("timestamp with time zone", None, "NO", "now()")
    assert list(found)[-1] == "created_at"


def test_create_event_tables_related_tables_without_time_zone(
    pg_engine: sa.Engine, pg_schema: str
) -> None:
    tables = create_event_tables(
        pg_engine,
        pg_schema,
        hook_events=True,
        service_sessions=True,
        with_timezone=False,
    )

    assert sorted(tables) == ["event_logs", "hook_events", "service_sessions"]
    hook = columns(pg_engine, pg_schema, "hook_events")
    assert list(hook) == [
        "id",
        "source",
        "action",
        "resource",
        "resource_id",
        "payload",
        "metadata",
        "processed",
        "processing_errors",
        "retry_count",
        "created_at",
        "processed_at",
    ]
    assert hook["processing_errors"][0] == "ARRAY"
    assert hook["created_at"][0] == "timestamp without time zone"
    sessions = columns(pg_engine, pg_schema, "service_sessions")
    assert list(sessions) == [
        "id",
        "service_name",
        "instance_id",
        "session_start",
        "session_end",
        "status",
        "metadata",
        "created_at",
        "updated_at",
    ]
    assert sessions["session_start"][0] == "timestamp without time zone"
    assert columns(pg_engine, pg_schema, "event_logs")["timestamp"][0] == (
        "timestamp without time zone"
    )


def test_hook_events_retry_count_is_bounded(
    pg_engine: sa.Engine, pg_schema: str
) -> None:
    create_event_tables(pg_engine, pg_schema, hook_events=True)
    insert = sa.text(
        f'INSERT INTO "{pg_schema}".hook_events '
        "(source, action, resource, retry_count, processing_errors) "
        "VALUES ('github', 'push', 'repo', :retries, ARRAY['timeout'])"
    )
    with pg_engine.begin() as conn:
        conn.execute(insert, {"retries": 10})

    with (
        pytest.raises(sa.exc.IntegrityError, match="ck_hook_events_retry_count"),
        pg_engine.begin() as conn,
    ):
        conn.execute(insert, {"retries": 11})


def test_writer_payload_given_as_json_text_is_stored_as_an_object(
    pg_engine: sa.Engine,
    pg_schema: str,
    make_events: Callable[..., list[CodegenEvent]],
) -> None:
    create_event_tables(pg_engine, pg_schema)
    event = make_events(uuid.uuid4(), uuid.uuid4())[0]
    row = event_log_row(event, status="sent", topic="t")
    row["payload"] = json.dumps(row["payload"])

    with EventLogWriter(pg_engine, pg_schema) as writer:
        writer.record_rows([row])

    with pg_engine.connect() as conn:
        stored = conn.execute(
            sa.text(f'SELECT jsonb_typeof(payload) FROM "{pg_schema}".event_logs')
        ).scalar_one()
    assert stored == "object"
