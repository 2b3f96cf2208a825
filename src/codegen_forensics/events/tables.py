"""The Postgres tables the code-generation system writes, and a batch writer for them.

:func:`create_event_tables` creates ``event_logs`` exactly as the field notes give it:
columns, defaults, check constraints and indexes, with ``IF NOT EXISTS`` on every
statement so it can run any number of times. ``legacy=True`` creates the older variant
(``correlation_id`` not null, an extra ``created_at``); the optional ``hook_events``
and ``service_sessions`` tables exist for the loaders' tests, and
``with_timezone=False`` gives the deployments that store timestamps without a time
zone.

:class:`EventLogWriter` records published and consumed events in batches through
``COPY``; :func:`event_log_row` builds one row, so other writers can share it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.schema import CreateIndex, CreateTable

from codegen_forensics.errors import InputError, PostgresError
from codegen_forensics.events.schemas import CodegenEvent, EventLogStatus, EventLogType

__all__ = [
    "EVENT_LOG_COLUMNS",
    "EVENT_LOG_STATUSES",
    "EVENT_LOG_TYPES",
    "EventLogWriter",
    "create_event_tables",
    "event_log_row",
    "event_logs_table",
    "hook_events_table",
    "service_sessions_table",
]

logger = logging.getLogger(__name__)

EVENT_LOG_TYPES: tuple[str, ...] = tuple(t.value for t in EventLogType)
EVENT_LOG_STATUSES: tuple[str, ...] = tuple(s.value for s in EventLogStatus)

# Columns a writer fills; ``event_id`` is optional (the database generates it).
EVENT_LOG_COLUMNS: tuple[str, ...] = (
    "event_id",
    "session_id",
    "correlation_id",
    "event_type",
    "topic",
    "timestamp",
    "status",
    "processing_time_ms",
    "payload",
    "metadata",
)


def _in_list(column: str, values: Iterable[str]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


def event_logs_table(
    metadata: sa.MetaData, *, legacy: bool = False, with_timezone: bool = True
) -> sa.Table:
    """``event_logs`` with its constraints and indexes, attached to ``metadata``."""
    ts = sa.DateTime(timezone=with_timezone)
    columns: list[sa.Column[Any]] = [
        sa.Column(
            "event_id",
            pg.UUID(as_uuid=True),
            primary_key=True,
            server_default=sa.text("gen_random_uuid()"),
        ),
        sa.Column("session_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("correlation_id", pg.UUID(as_uuid=True), nullable=not legacy),
        sa.Column("event_type", sa.String(50), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("timestamp", ts, nullable=False, server_default=sa.func.now()),
        sa.Column("status", sa.String(50), nullable=False),
        sa.Column("processing_time_ms", sa.Integer, nullable=True),
        sa.Column("payload", pg.JSONB, nullable=False),
        sa.Column(
            "metadata",
            pg.JSONB,
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
    ]
    if legacy:
        columns.append(
            sa.Column("created_at", ts, nullable=False, server_default=sa.func.now())
        )
    table = sa.Table(
        "event_logs",
        metadata,
        *columns,
        sa.CheckConstraint(
            _in_list("event_type", EVENT_LOG_TYPES), name="ck_event_logs_event_type"
        ),
        sa.CheckConstraint(
            _in_list("status", EVENT_LOG_STATUSES), name="ck_event_logs_status"
        ),
        sa.CheckConstraint(
            "processing_time_ms IS NULL OR processing_time_ms >= 0",
            name="ck_event_logs_processing_time_ms",
        ),
    )
    c = table.c
    sa.Index("idx_event_logs_session_id", c.session_id)
    sa.Index("idx_event_logs_correlation_id", c.correlation_id)
    sa.Index("idx_event_logs_timestamp", c.timestamp.desc())
    sa.Index("idx_event_logs_event_type", c.event_type)
    sa.Index("idx_event_logs_topic", c.topic)
    sa.Index("idx_event_logs_session_timestamp", c.session_id, c.timestamp.desc())
    sa.Index("idx_event_logs_payload_gin", c.payload, postgresql_using="gin")
    sa.Index("idx_event_logs_metadata_gin", c.metadata, postgresql_using="gin")
    return table


def hook_events_table(metadata: sa.MetaData, *, with_timezone: bool = True) -> sa.Table:
    """``hook_events``: webhook-style events some deployments also keep."""
    ts = sa.DateTime(timezone=with_timezone)
    table = sa.Table(
        "hook_events",
        metadata,
        sa.Column(
            "id",
            pg.UUID(as_uuid=True),
            primary_key=True,
            server_default=sa.text("gen_random_uuid()"),
        ),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("resource", sa.String(100), nullable=False),
        sa.Column("resource_id", sa.String(255), nullable=True),
        sa.Column(
            "payload", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
        sa.Column(
            "metadata", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
        sa.Column("processed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("processing_errors", pg.ARRAY(sa.Text), nullable=True),
        sa.Column(
            "retry_count", sa.Integer, nullable=False, server_default=sa.text("0")
        ),
        sa.Column("created_at", ts, nullable=False, server_default=sa.func.now()),
        sa.Column("processed_at", ts, nullable=True),
        sa.CheckConstraint(
            "retry_count >= 0 AND retry_count <= 10", name="ck_hook_events_retry_count"
        ),
    )
    sa.Index("idx_hook_events_created_at", table.c.created_at.desc())
    sa.Index("idx_hook_events_processed", table.c.processed)
    return table


def service_sessions_table(
    metadata: sa.MetaData, *, with_timezone: bool = True
) -> sa.Table:
    """``service_sessions``: one row per running service instance."""
    ts = sa.DateTime(timezone=with_timezone)
    table = sa.Table(
        "service_sessions",
        metadata,
        sa.Column(
            "id",
            pg.UUID(as_uuid=True),
            primary_key=True,
            server_default=sa.text("gen_random_uuid()"),
        ),
        sa.Column("service_name", sa.String(100), nullable=False),
        sa.Column("instance_id", sa.String(255), nullable=True),
        sa.Column("session_start", ts, nullable=False, server_default=sa.func.now()),
        sa.Column("session_end", ts, nullable=True),
        sa.Column(
            "status", sa.String(50), nullable=False, server_default=sa.text("'active'")
        ),
        sa.Column(
            "metadata", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
        sa.Column("created_at", ts, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", ts, nullable=False, server_default=sa.func.now()),
    )
    sa.Index("idx_service_sessions_service_name", table.c.service_name)
    return table


def create_event_tables(
    engine: sa.Engine,
    schema: str | None = None,
    *,
    legacy: bool = False,
    hook_events: bool = False,
    service_sessions: bool = False,
    with_timezone: bool = True,
) -> dict[str, sa.Table]:
    """Create ``event_logs`` (and the optional tables) if they do not exist yet.

    Every table and index is created with ``IF NOT EXISTS``, so running this again,
    or after a crash halfway, leaves the database as one run would. A table that
    already exists is left as it is, even if it differs. ``schema`` defaults to the
    connection's search path; a named schema is created if it does not exist.
    """
    metadata = sa.MetaData(schema=schema)
    tables = {
        "event_logs": event_logs_table(
            metadata, legacy=legacy, with_timezone=with_timezone
        )
    }
    if hook_events:
        tables["hook_events"] = hook_events_table(metadata, with_timezone=with_timezone)
    if service_sessions:
        tables["service_sessions"] = service_sessions_table(
            metadata, with_timezone=with_timezone
        )

    try:
        with engine.begin() as conn:
            if schema is not None:
                conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
            for table in tables.values():
                conn.execute(CreateTable(table, if_not_exists=True))
                for index in sorted(table.indexes, key=lambda i: str(i.name)):
                    conn.execute(CreateIndex(index, if_not_exists=True))
    except sa.exc.SQLAlchemyError as exc:
        raise PostgresError(
            f"could not create event tables in schema {schema or '<search_path>'}: "
            f"{exc.__class__.__name__}: {getattr(exc, 'orig', exc)}"
        ) from exc
    logger.info(
        "event tables ready schema=%s tables=%s legacy=%s",
        schema,
        ",".join(tables),
        legacy,
    )
    return tables


def event_log_row(
    event: CodegenEvent,
    *,
    status: str,
    topic: str,
    event_type: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    timestamp: datetime | None = None,
    processing_time_ms: int | None = None,
    event_id: UUID | None = None,
) -> dict[str, Any]:
    """One ``event_logs`` row for an event, checked against the table's constraints.

    ``event_type`` defaults to the event's category (request, response or status);
    ``timestamp`` to the event's own; ``processing_time_ms`` to the one a response
    carries. The payload is the event as JSON.
    """
    if event_type is None:
        event_type = event.category
    if processing_time_ms is None:
        carried = getattr(event, "processing_time_ms", None)
        processing_time_ms = carried if isinstance(carried, int) else None
    correlation = event.correlation()
    row: dict[str, Any] = {
        "session_id": event.session_id,
        "correlation_id": correlation,
        "event_type": event_type,
        "topic": topic,
        "timestamp": timestamp or event.timestamp,
        "status": status,
        "processing_time_ms": processing_time_ms,
        "payload": event.model_dump(mode="json"),
        "metadata": dict(metadata or {}),
    }
    if event_id is not None:
        row["event_id"] = event_id
    check_event_log_row(row)
    return row


def check_event_log_row(row: Mapping[str, Any]) -> None:
    """Refuse a row the table would refuse, naming the column and the allowed values."""
    unknown = set(row) - set(EVENT_LOG_COLUMNS)
    if unknown:
        raise InputError(
            f"event_logs row has unknown columns {sorted(unknown)}; allowed: "
            f"{', '.join(EVENT_LOG_COLUMNS)}"
        )
    for column in ("session_id", "event_type", "topic", "status", "payload"):
        if row.get(column) is None:
            raise InputError(f"event_logs.{column} is required, got None")
    if row["event_type"] not in EVENT_LOG_TYPES:
        raise InputError(
            f"event_logs.event_type {row['event_type']!r} is not allowed; expected "
            f"one of {', '.join(EVENT_LOG_TYPES)}"
        )
    if row["status"] not in EVENT_LOG_STATUSES:
        raise InputError(
            f"event_logs.status {row['status']!r} is not allowed; expected one of "
            f"{', '.join(EVENT_LOG_STATUSES)}"
        )
    if len(str(row["topic"])) > 255:
        raise InputError(
            f"event_logs.topic is {len(str(row['topic']))} characters; at most 255"
        )
    took = row.get("processing_time_ms")
    if took is not None and (isinstance(took, bool) or not isinstance(took, int)):
        raise InputError(
            f"event_logs.processing_time_ms must be an integer or None, got {took!r}"
        )
    if took is not None and took < 0:
        raise InputError(
            f"event_logs.processing_time_ms must be null or >= 0, got {took}"
        )
    when = row.get("timestamp")
    if when is not None and (not isinstance(when, datetime) or when.tzinfo is None):
        raise InputError(
            f"event_logs.timestamp must be a datetime with a time zone, got {when!r}"
        )


class EventLogWriter:
    """Collects ``event_logs`` rows and writes them in batches with ``COPY``.

    Rows are written when ``batch_size`` have gathered, on :meth:`flush` and when the
    writer is closed or leaves a ``with`` block. ``schema`` defaults to the
    connection's search path. The table must exist (:func:`create_event_tables`).
    """

    def __init__(
        self, engine: sa.Engine, schema: str | None = None, batch_size: int = 1000
    ) -> None:
        if batch_size < 1:
            raise InputError(f"batch_size must be 1 or more, got {batch_size}")
        self.engine = engine
        self.schema = schema
        self.batch_size = batch_size
        self.written = 0
        self._rows: list[dict[str, Any]] = []

    def record(
        self,
        event: CodegenEvent,
        *,
        status: str,
        topic: str,
        event_type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        timestamp: datetime | None = None,
        processing_time_ms: int | None = None,
    ) -> None:
        """Queue one event; see :func:`event_log_row` for the defaults."""
        self._rows.append(
            event_log_row(
                event,
                status=status,
                topic=topic,
                event_type=event_type,
                metadata=metadata,
                timestamp=timestamp,
                processing_time_ms=processing_time_ms,
            )
        )
        if len(self._rows) >= self.batch_size:
            self.flush()

    def record_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Queue rows built elsewhere (by :func:`event_log_row`, say)."""
        for row in rows:
            check_event_log_row(row)
            self._rows.append(dict(row))
            if len(self._rows) >= self.batch_size:
                self.flush()

    @property
    def pending(self) -> int:
        return len(self._rows)

    def flush(self) -> int:
        """Write the queued rows in one transaction; returns how many."""
        if not self._rows:
            return 0
        rows, self._rows = self._rows, []

        # COPY takes one column list, so rows that bring their own event_id go in a
        # statement of their own.
        with_id = [r for r in rows if r.get("event_id") is not None]
        without_id = [r for r in rows if r.get("event_id") is None]
        try:
            with self.engine.begin() as conn:
                dbapi = conn.connection.driver_connection
                assert dbapi is not None
                with dbapi.cursor() as cursor:
                    for batch, columns in (
                        (without_id, EVENT_LOG_COLUMNS[1:]),
                        (with_id, EVENT_LOG_COLUMNS),
                    ):
                        if batch:
                            self._copy(cursor, batch, columns)
        except Exception as exc:
            # The rows were not written; keep them so a retry can write them.
            self._rows = rows + self._rows
            raise PostgresError(
                f"could not write {len(rows)} event_logs rows to "
                f"{self._table_name()}: {type(exc).__name__}: {exc}"
            ) from exc
        self.written += len(rows)
        logger.debug("event_logs rows written count=%s", len(rows))
        return len(rows)

    def discard(self) -> int:
        """Drop the queued rows (after a failed flush, say); returns how many."""
        count, self._rows = len(self._rows), []
        return count

    def _table_name(self) -> str:
        if self.schema:
            return f'"{self.schema}"."event_logs"'
        return '"event_logs"'

    def _copy(
        self, cursor: Any, rows: list[dict[str, Any]], columns: tuple[str, ...]
    ) -> None:
        names = ", ".join(f'"{c}"' for c in columns)
        statement = f"COPY {self._table_name()} ({names}) FROM STDIN"
        with cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row([_copy_value(c, row.get(c)) for c in columns])

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.flush()
        elif self._rows:
            logger.warning(
                "event_logs rows not written because of an error count=%s",
                len(self._rows),
            )


def _copy_value(column: str, value: Any) -> Any:
    if column in ("payload", "metadata"):
        if value is None:
            return "{}" if column == "metadata" else None
        return value if isinstance(value, str) else json.dumps(value, default=str)
    if column in ("session_id", "correlation_id", "event_id") and value is not None:
        return str(value)
    if column == "timestamp" and value is None:
        return datetime.now(UTC)
    return value
