"""One event view over Kafka messages and ``event_logs`` rows.

Both sources become the same columns, so sessions, latencies and traces are written
once. ``status`` is in the vocabulary of ``event_logs`` (sent, received, processing,
completed, failed, error), which the tracer's rules are written for. Kafka messages
carry no such column except on the status topic, so they are mapped: a request is
``sent``, a response ``received``, a dead letter ``failed``, a status event keeps
``completed``, ``failed`` and ``error`` and is otherwise ``processing`` (pending,
analyzing, generating and validating are all work in progress).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from codegen_forensics.analysis.context import (
    Analysis,
    Source,
    check_source,
    normalise_id,
    strip_blanks,
)
from codegen_forensics.events.topics import parse_topic

# Decode statuses whose value no consumer could use: such a message is no event.
UNUSABLE_DECODES = ("not_utf8", "not_json", "tombstone")

SUCCESS_STATUSES = ("sent", "received", "completed")
FAILURE_STATUSES = ("failed", "error")
PROGRESS_STATUSES = ("processing", "sent", "received")

EVENT_COLUMNS = (
    "source",
    "topic",
    "partition",
    "offset",
    "event_id",
    "category",
    "operation",
    "event_name",
    "session_id",
    "correlation_id",
    "time",
    "status",
    "raw_status",
    "processing_time_ms",
    "is_dlq",
    "decode_status",
    "decode_message",
    "dlq_source_topic",
    "dlq_error_type",
    "dlq_error_message",
    "dlq_retry_count",
)


def events(a: Analysis, source: Source, *, stored_ids: bool = False) -> ir.Table:
    """The events of one source with the columns of :data:`EVENT_COLUMNS`.

    With ``stored_ids`` the session and correlation ids are as stored, not
    normalised: a measure that groups by an id can group first and normalise only
    the groups' ids, which costs less than normalising every event's.
    """
    check_source(source)
    key = f"events:{source}:{stored_ids}"
    if key not in a._cache:
        build = _topic_events if source == "topics" else _log_events
        a._cache[key] = build(a, normalise=not stored_ids)
    table: ir.Table = a._cache[key]
    return table


# The columns of :func:`keyed_events`; ``session_id`` only with ``sessions``.
KEYED_COLUMNS = (
    "category",
    "correlation_id",
    "topic",
    "operation",
    "time",
    "processing_time_ms",
    "decode_status",
    "is_dlq",
    "status",
)


def usable(ev: ir.Table) -> ir.BooleanValue:
    """The event's value could be read (see :data:`UNUSABLE_DECODES`)."""
    return ev.decode_status.isnull() | ~ev.decode_status.isin(UNUSABLE_DECODES)


def is_failure(ev: ir.Table) -> ir.BooleanValue:
    """A failure that explains a missing response: a dead letter or a failed event
    that is not itself a request, carrying a correlation id."""
    return ev.correlation_id.notnull() & (
        ev.is_dlq | ((ev.category != "request") & ev.status.isin(FAILURE_STATUSES))
    )


def keyed_events(a: Analysis, source: Source, *, sessions: bool = False) -> ir.Table:
    """The usable requests, responses and failures of one source.

    Without ``sessions`` the table is computed once and kept: request to response
    measures read it rather than the snapshot's files, where normalising ids costs
    as much as reading them. With ``sessions`` it also has ``session_id`` and is
    an expression over the files (only per-request detail needs it). Columns:
    :data:`KEYED_COLUMNS`.
    """
    check_source(source)

    def build() -> ir.Table:
        ev = events(a, source)
        ev = ev.filter(usable(ev))
        wanted = ev.category.isin(("request", "response")) | is_failure(ev)
        extra = ("session_id",) if sessions else ()
        return ev.filter(wanted).select(*KEYED_COLUMNS, *extra)

    if sessions:
        return build()
    return a.materialise(f"keyed:{source}", build)


def _topic_events(a: Analysis, normalise: bool) -> ir.Table:
    m = a.messages
    ids = normalise_id if normalise else _as_stored
    is_dlq = (m.category == "dlq") | (m.decode_status == "dlq")
    status = ibis.cases(
        (is_dlq, "failed"),
        (m.category == "request", "sent"),
        (m.category == "response", "received"),
        *_final_statuses(a, m.status),
        (m.status.notnull(), "processing"),
        else_=ibis.null("string"),
    )
    return m.select(
        source=ibis.literal("topics"),
        topic=m.topic,
        partition=m.partition,
        offset=m.offset,
        event_id=ibis.null("string"),
        category=ibis.ifelse(is_dlq, "dlq", m.category),
        operation=m.operation,
        event_name=m.event_name,
        session_id=ids(m.session_id),
        correlation_id=ids(m.correlation_id),
        time=m.event_time,
        status=status,
        raw_status=m.status,
        processing_time_ms=m.processing_time_ms,
        is_dlq=is_dlq,
        decode_status=m.decode_status,
        decode_message=m.decode_message,
        dlq_source_topic=m.dlq_source_topic,
        dlq_error_type=m.dlq_error_type,
        dlq_error_message=m.dlq_error_message,
        dlq_retry_count=m.dlq_retry_count,
    )


def _log_events(a: Analysis, normalise: bool) -> ir.Table:
    e = a.event_logs
    ids = normalise_id if normalise else _as_stored
    operations = _operations(a)
    joined = e.left_join(operations, e.topic == operations.op_topic)
    status = _normalised(a, "event_logs", "status", joined.status)
    return joined.select(
        source=ibis.literal("event_logs"),
        topic=joined.topic,
        partition=ibis.null("int32"),
        offset=ibis.null("int64"),
        event_id=joined.event_id,
        category=_normalised(a, "event_logs", "event_type", joined.event_type),
        operation=joined.op_operation,
        event_name=ibis.null("string"),
        session_id=ids(joined.session_id),
        correlation_id=ids(joined.correlation_id),
        time=joined.timestamp,
        status=status,
        raw_status=joined.status,
        processing_time_ms=joined.processing_time_ms,
        is_dlq=ibis.literal(False),
        decode_status=ibis.null("string"),
        decode_message=ibis.null("string"),
        dlq_source_topic=ibis.null("string"),
        dlq_error_type=ibis.null("string"),
        dlq_error_message=ibis.null("string"),
        dlq_retry_count=ibis.null("int32"),
    )


def _as_stored(value: ir.StringValue) -> ir.StringValue:
    return value


# Distinct stored values looked up at most; beyond, each row's is normalised.
_STATUS_SPELLINGS = 1000


def _spellings(a: Analysis, table: str, column: str) -> dict[str, str] | None:
    """Each distinct non-null value of ``column`` in every row of ``table``
    (``messages`` or ``event_logs``) with its lowercase text
    without surrounding blanks, as the backend itself normalises it; None when there
    are more than :data:`_STATUS_SPELLINGS` of them.

    Statuses and event types take a handful of spellings: comparing the stored text
    with those found costs much less than normalising every row's.
    """
    key = f"spellings:{table}:{column}"
    if key not in a._cache:
        rows = a.all_messages if table == "messages" else a.all_event_logs
        spelled = rows.select(stored=rows[column]).distinct()
        spelled = spelled.filter(spelled.stored.notnull()).limit(_STATUS_SPELLINGS + 1)
        found = a.execute(spelled.mutate(normal=strip_blanks(spelled.stored).lower()))
        a._cache[key] = (
            None
            if len(found) > _STATUS_SPELLINGS
            else dict(zip(found["stored"], found["normal"], strict=True))
        )
    spellings: dict[str, str] | None = a._cache[key]
    return spellings


def _ways(spellings: dict[str, str], normal: str) -> list[str]:
    return sorted(k for k, v in spellings.items() if v == normal)


def _final_statuses(
    a: Analysis, stored: ir.StringValue
) -> list[tuple[ir.BooleanValue, ir.StringValue]]:
    """Cases giving completed, failed and error to the messages whose stored status
    is one of those, ignoring case and surrounding blanks (see :func:`_spellings`).
    """
    spellings = _spellings(a, "messages", "status")
    finals = ("completed", "failed", "error")
    if spellings is None:
        normal = strip_blanks(stored).lower()
        return [(normal.isin(finals), normal)]
    return [
        (stored.isin(ways), ibis.literal(final))
        for final in finals
        if (ways := _ways(spellings, final))
    ]


def _normalised(
    a: Analysis, table: str, column: str, stored: ir.StringValue
) -> ir.StringValue:
    """``stored``, that column of ``table``, lowercase without surrounding blanks."""
    spellings = _spellings(a, table, column)
    if spellings is None:
        return strip_blanks(stored).lower()
    cases = [
        (stored.isin(ways), ibis.literal(normal))
        for normal in sorted(set(spellings.values()))
        if (ways := _ways(spellings, normal))
    ]
    if not cases:
        return ibis.null("string")
    normalised: ir.StringValue = ibis.cases(*cases, else_=ibis.null("string"))
    return normalised


def _operations(a: Analysis) -> ir.Table:
    """Each ``event_logs`` topic with the operation its name says (null if none)."""
    topics = a.execute(a.all_event_logs.select("topic").distinct())["topic"]
    names = sorted(str(t) for t in topics.dropna())
    table = pa.table(
        {
            "op_topic": pa.array(names, pa.string()),
            "op_operation": pa.array(
                [parse_topic(t).operation for t in names], pa.string()
            ),
        }
    )
    return ibis.memtable(table)
