"""Request to response latency, and the topics whose responses are slow.

**Request to response.** Requests and responses are joined by correlation id
(lowercase, blanks stripped). One row per requested correlation id: the first request
and the first response, both counted. Two latencies stand side by side, because they
answer different questions:

- ``latency_ms``: first response time minus request time, from the events' own
  timestamps (what a caller waited, clocks permitting; negative when the clocks
  disagree).
- ``reported_processing_ms``: the ``processing_time_ms`` the first response reports
  (the tracer's "response time"; the smallest one when several responses tie for
  first).

A request with no response is *dead-lettered* when a dead letter (or, in
``event_logs``, a failed row) carries its correlation id, a *poison request* when none
of its messages decoded cleanly (its consumer could not have read it), and
*unanswered* otherwise: the requests nothing explains. A correlation id answered more
than once has *duplicate responses* (all responses after the first). A request without a
correlation id cannot be joined: it is counted apart, never as unanswered. A message
on a request or response topic whose value could not be read at all (not UTF-8, not
JSON, a tombstone) is no request or response; it is counted with the poison
messages.

**Bottlenecks** follow the tracer: a topic's response time is the mean of the
``processing_time_ms`` its events report; above 1,000 ms it is a ``low`` bottleneck,
above 2,000 ms ``medium``, above 5,000 ms ``high``; sorted by severity, then mean,
slowest first. The tracer looks at one session at a time; we apply its bands per
topic and hour across every session, and say in which hours a topic entered a band.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

import ibis
import ibis.expr.types as ir
import pandas as pd

from codegen_forensics.analysis._events import events, is_failure, keyed_events
from codegen_forensics.analysis._util import UTC_TIMESTAMP, bucket, ints, sort_frame
from codegen_forensics.analysis.context import Analysis, Source, check_source
from codegen_forensics.errors import InputError

__all__ = [
    "BANDS",
    "bottleneck_hours",
    "bottleneck_topics",
    "orphan_responses",
    "producer_latency",
    "request_response",
    "request_response_summary",
    "request_response_table",
    "response_time_summary",
    "severity",
]

logger = logging.getLogger(__name__)

# The tracer's bottleneck bands: (mean response time above, severity), worst first.
BANDS: tuple[tuple[float, str], ...] = (
    (5000.0, "high"),
    (2000.0, "medium"),
    (1000.0, "low"),
)
_RANK = {"high": 3, "medium": 2, "low": 1}

_SUMMARY_KEYS = ("operation", "request_topic", "hour", "day")


def request_response_table(a: Analysis, source: Source = "topics") -> ir.Table:
    """The per-request expression behind :func:`request_response`.

    The rows are computed once per analysis and kept; ``hour`` and ``day`` are
    derived on reading.
    """
    source = check_source(source)
    out = a.materialise(
        f"request_response:{source}", lambda: _request_rows(a, source, detail=True)
    )
    return _with_periods(a, out)


def _summary_rows(a: Analysis, source: Source, keys: Sequence[str]) -> ir.Table:
    """The per-request rows a summary by ``keys`` needs.

    Without request_topic among the keys, the kept rows leave out the request
    and response topics and the session id: the least of several long strings per
    request is the costliest part of grouping millions of requests.
    """
    if "request_topic" in keys:
        return request_response_table(a, source)
    out = a.materialise(
        f"request_summary:{source}", lambda: _request_rows(a, source, detail=False)
    )
    return _with_periods(a, out)


def _with_periods(a: Analysis, rows: ir.Table) -> ir.Table:
    return rows.mutate(
        hour=bucket(a, rows.request_time, "h"),
        day=bucket(a, rows.request_time, "D"),
    )


def _request_rows(a: Analysis, source: Source, detail: bool) -> ir.Table:
    """One row per request; with ``detail`` False, request_topic, response_topic
    and session_id are null."""
    ev = keyed_events(a, source, sessions=detail)
    requests = ev.filter(ev.category == "request")
    responses = ev.filter((ev.category == "response") & ev.correlation_id.notnull())

    # One pass per correlation id gives its requests, responses and dead letters:
    # grouping once is much cheaper than joining three groupings of the same ids.
    carried = ev.filter(ev.correlation_id.notnull())
    is_request = carried.category == "request"
    is_response = carried.category == "response"
    clean = carried.decode_status.isnull() | (carried.decode_status == "ok")
    per_id = carried.group_by("correlation_id").aggregate(
        request_time=carried.time.min(where=is_request),
        requests=carried.count(where=is_request),
        operation=carried.operation.min(where=is_request),
        request_topic=(
            carried.topic.min(where=is_request) if detail else ibis.null("string")
        ),
        session_id=(
            carried.session_id.min(where=is_request) if detail else ibis.null("string")
        ),
        clean_requests=carried.count(where=is_request & clean),
        first_response_time=carried.time.min(where=is_response),
        responses=carried.count(where=is_response),
        response_topic=(
            carried.topic.min(where=is_response) if detail else ibis.null("string")
        ),
        _only_processing_ms=carried.processing_time_ms.min(where=is_response),
        dead_letters=carried.count(where=is_failure(carried)),
    )
    req = per_id.filter(per_id.requests > 0)

    # The first response's reported time: with a single response, its own; with
    # several, the smallest among those at the first response time.
    several = req.filter(req.responses > 1).select(
        several_id=req.correlation_id, several_first=req.first_response_time
    )
    at_first = responses.join(
        several,
        [
            responses.correlation_id == several.several_id,
            responses.time == several.several_first,
        ],
    )
    tied = at_first.group_by(tied_id=at_first.correlation_id).aggregate(
        tied_processing_ms=at_first.processing_time_ms.min()
    )
    joined = req.left_join(tied, req.correlation_id == tied.tied_id)
    reported = ibis.cases(
        (
            (joined.responses == 1) & joined.first_response_time.notnull(),
            joined._only_processing_ms.cast("float64"),
        ),
        (joined.responses > 1, joined.tied_processing_ms.cast("float64")),
        else_=ibis.null("float64"),
    )
    joined = joined.mutate(reported_processing_ms=reported)
    answered = joined.responses
    dead_lettered = joined.dead_letters > 0
    with_id = joined.select(
        correlation_id=joined.correlation_id,
        has_correlation_id=ibis.literal(True),
        operation=joined.operation,
        request_topic=joined.request_topic,
        session_id=joined.session_id,
        request_time=joined.request_time,
        requests=joined.requests,
        response_topic=joined.response_topic,
        first_response_time=joined.first_response_time,
        responses=answered,
        duplicate_responses=ibis.greatest(answered - 1, 0),
        latency_ms=joined.first_response_time.delta(
            joined.request_time, unit="microsecond"
        ).cast("float64")
        / 1000.0,
        reported_processing_ms=joined.reported_processing_ms.cast("float64"),
        answered=answered > 0,
        dead_lettered=dead_lettered,
        poison=joined.clean_requests == 0,
    )

    loose = requests.filter(requests.correlation_id.isnull())
    without_id = loose.select(
        correlation_id=ibis.null("string"),
        has_correlation_id=ibis.literal(False),
        operation=loose.operation,
        request_topic=loose.topic if detail else ibis.null("string"),
        session_id=loose.session_id if detail else ibis.null("string"),
        request_time=loose.time,
        requests=ibis.literal(1, "int64"),
        response_topic=ibis.null("string"),
        first_response_time=ibis.null(UTC_TIMESTAMP),
        responses=ibis.literal(0, "int64"),
        duplicate_responses=ibis.literal(0, "int64"),
        latency_ms=ibis.null("float64"),
        reported_processing_ms=ibis.null("float64"),
        answered=ibis.literal(False),
        dead_lettered=ibis.literal(False),
        poison=~(loose.decode_status.isnull() | (loose.decode_status == "ok")),
    )
    return with_id.union(without_id.cast(with_id.schema()))


def request_response(a: Analysis, source: Source = "topics") -> pd.DataFrame:
    """One row per request: its first response, both latencies and duplicates.

    Columns: correlation_id, has_correlation_id, operation, request_topic,
    session_id, request_time, requests (request messages with this id),
    response_topic, first_response_time, responses, duplicate_responses, latency_ms,
    reported_processing_ms, answered, dead_lettered, poison (no request message
    decoded cleanly), hour, day. Sorted by request time.
    """
    frame = a.execute(request_response_table(a, source))
    return sort_frame(frame, ["request_time", "correlation_id"])


def request_response_summary(
    a: Analysis,
    by: Sequence[str] = ("operation",),
    source: Source = "topics",
) -> pd.DataFrame:
    """Requests, answers and latency percentiles per operation, hour or both.

    ``by`` picks the keys among operation, request_topic, hour and day (of the
    request); empty gives one row over every request. Columns after the keys:
    requests, answered, unanswered (nothing explains the missing response),
    dead_lettered and poison_unanswered (unanswered, explained),
    without_correlation_id, duplicate_responses, requests_with_duplicates,
    latency_mean_ms, latency_p50_ms, latency_p95_ms, latency_p99_ms,
    latency_max_ms, processing_mean_ms, processing_p50_ms, processing_p95_ms,
    processing_p99_ms (the response's reported processing time). Percentiles use
    linear interpolation.
    """
    keys = list(by)
    bad = [k for k in keys if k not in _SUMMARY_KEYS]
    if bad:
        raise InputError(
            f"by={list(by)!r} is not allowed; choose one or more of "
            f"{', '.join(_SUMMARY_KEYS)}"
        )
    t = _summary_rows(a, check_source(source), keys)
    lat = t.latency_ms
    proc = t.reported_processing_ms
    levels = [0.50, 0.95, 0.99]
    metrics = dict(
        requests=t.count(),
        answered=t.count(where=t.answered),
        unanswered=t.count(
            where=~t.answered & t.has_correlation_id & ~t.dead_lettered & ~t.poison
        ),
        dead_lettered=t.count(where=~t.answered & t.dead_lettered),
        poison_unanswered=t.count(
            where=~t.answered & t.has_correlation_id & ~t.dead_lettered & t.poison
        ),
        without_correlation_id=t.count(where=~t.has_correlation_id),
        duplicate_responses=t.duplicate_responses.sum(),
        requests_with_duplicates=t.count(where=t.responses > 1),
        latency_mean_ms=lat.mean(),
        # One quantile call per column holds its values once, not once per level:
        # with millions of requests three copies outgrow a small memory cap.
        _latency_q=lat.quantile(levels),
        latency_max_ms=lat.max(),
        processing_mean_ms=proc.mean(),
        _processing_q=proc.quantile(levels),
    )
    summary = t.group_by(keys).aggregate(**metrics) if keys else t.aggregate(**metrics)
    counts = list(metrics)[: list(metrics).index("latency_mean_ms")]
    names = ("p50", "p95", "p99")
    summary = summary.select(
        *keys,
        *counts,
        "latency_mean_ms",
        **{f"latency_{n}_ms": summary._latency_q[i] for i, n in enumerate(names)},
        latency_max_ms=summary.latency_max_ms,
        processing_mean_ms=summary.processing_mean_ms,
        **{f"processing_{n}_ms": summary._processing_q[i] for i, n in enumerate(names)},
    )
    frame = ints(a.execute(summary), ["duplicate_responses"])
    return sort_frame(frame, keys) if keys else frame


def orphan_responses(a: Analysis, source: Source = "topics") -> pd.DataFrame:
    """Responses that answer no request in the snapshot, per response topic.

    Columns: response_topic, responses, without_request (a correlation id no
    request carries), without_correlation_id. A request outside the snapshot's
    window also leaves its response here.
    """
    ev = keyed_events(a, check_source(source))
    requests = ev.filter((ev.category == "request") & ev.correlation_id.notnull())
    responses = ev.filter(ev.category == "response")
    # A semi-join by membership: no distinct ids are built first.
    known = responses.correlation_id.isin(requests.correlation_id)
    summary = responses.group_by(response_topic=responses.topic).aggregate(
        responses=responses.count(),
        without_request=responses.count(
            where=responses.correlation_id.notnull() & ~known
        ),
        without_correlation_id=responses.count(where=responses.correlation_id.isnull()),
    )
    return sort_frame(a.execute(summary), ["response_topic"])


def severity(
    mean_ms: float | None, bands: Sequence[tuple[float, str]] = BANDS
) -> str | None:
    """The tracer's band for a mean response time: high, medium, low or None."""
    if mean_ms is None or pd.isna(mean_ms):
        return None
    for threshold, name in bands:
        if mean_ms > threshold:
            return name
    return None


def response_time_summary(a: Analysis, source: Source = "topics") -> pd.DataFrame:
    """Reported response time over every event that has one: one row.

    Columns: responses, mean_ms, p50_ms, p95_ms, p99_ms, max_ms.
    """
    t = _response_times(a, source)
    p = t.processing_time_ms
    return a.execute(
        t.aggregate(
            responses=t.count(),
            mean_ms=p.mean(),
            p50_ms=p.quantile(0.50),
            p95_ms=p.quantile(0.95),
            p99_ms=p.quantile(0.99),
            max_ms=p.max(),
        )
    )


def producer_latency(a: Analysis, by_topic: bool = True) -> pd.DataFrame:
    """Publish latency where the broker stamped the append time.

    On a topic with ``message.timestamp.type=LogAppendTime`` the Kafka timestamp is
    when the broker appended the message, so it minus the event's own timestamp is
    how long publishing took (clocks permitting). Messages with a create-time
    timestamp say nothing about it and are left out; with none left the result is
    empty. Columns: topic (when ``by_topic``), messages, mean_ms, p50_ms, p95_ms,
    max_ms.
    """
    m = a.messages
    stamped = m.filter(
        (m.timestamp_type == "log_append_time")
        & m.event_timestamp.notnull()
        & m.timestamp.notnull()
    )
    stamped = stamped.mutate(
        _ms=stamped.timestamp.delta(stamped.event_timestamp, unit="microsecond").cast(
            "float64"
        )
        / 1000.0
    )
    metrics = dict(
        messages=stamped.count(),
        mean_ms=stamped._ms.mean(),
        p50_ms=stamped._ms.quantile(0.50),
        p95_ms=stamped._ms.quantile(0.95),
        max_ms=stamped._ms.max(),
    )
    if by_topic:
        frame = a.execute(stamped.group_by("topic").aggregate(**metrics))
        return sort_frame(frame, ["topic"])
    frame = a.execute(stamped.aggregate(**metrics))
    return frame[frame["messages"] > 0].reset_index(drop=True)


def _response_times(a: Analysis, source: Source) -> ir.Table:
    ev = events(a, check_source(source))
    return ev.filter(ev.processing_time_ms.notnull())


def bottleneck_topics(a: Analysis, source: Source = "topics") -> pd.DataFrame:
    """Response time per topic over the whole snapshot, with the tracer's band.

    Every event that reports ``processing_time_ms`` counts (on the topics those are
    the responses; the tracer reads every ``event_logs`` row that has one). Columns:
    topic, responses, mean_ms, p50_ms, p95_ms, p99_ms, max_ms, severity (high,
    medium, low or null), bottleneck. Sorted by severity, then mean, slowest first.
    """
    t = _response_times(a, source)
    p = t.processing_time_ms
    summary = t.group_by("topic").aggregate(
        responses=t.count(),
        mean_ms=p.mean(),
        p50_ms=p.quantile(0.50),
        p95_ms=p.quantile(0.95),
        p99_ms=p.quantile(0.99),
        max_ms=p.max(),
    )
    frame = a.execute(summary)
    return _banded(frame, ["topic"])


def bottleneck_hours(a: Analysis, source: Source = "topics") -> pd.DataFrame:
    """Mean and p95 response time per topic and hour, banded as the tracer does.

    Columns: topic, hour (its start), responses, mean_ms, p95_ms, max_ms,
    severity, bottleneck, entered_band (the severity is higher than in the hour
    just before, an hour without responses counting as no band). Sorted by
    severity, then mean, slowest first.
    """
    t = _response_times(a, source)
    t = t.mutate(hour=bucket(a, t.time, "h"))
    p = t.processing_time_ms
    summary = t.group_by(["topic", "hour"]).aggregate(
        responses=t.count(),
        mean_ms=p.mean(),
        p95_ms=p.quantile(0.95),
        max_ms=p.max(),
    )
    frame = a.execute(summary)
    step = timedelta(hours=1)
    frame = frame.sort_values(["topic", "hour"], kind="stable").reset_index(drop=True)
    rank = frame["mean_ms"].map(lambda v: _RANK.get(severity(v) or "", 0))
    previous = {
        (topic, hour): r
        for topic, hour, r in zip(frame["topic"], frame["hour"], rank, strict=True)
    }
    before = [
        previous.get((topic, hour - step), 0)
        for topic, hour in zip(frame["topic"], frame["hour"], strict=True)
    ]
    frame["entered_band"] = (rank > pd.Series(before, dtype="int64")).astype(bool)
    return _banded(frame, ["topic", "hour"])


def _banded(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    frame["severity"] = pd.Series(
        [severity(v) for v in frame["mean_ms"]], index=frame.index, dtype="object"
    )
    frame["bottleneck"] = frame["severity"].notna()
    frame["_rank"] = frame["severity"].map(lambda s: -_RANK.get(s, 0) if s else 0)
    frame = sort_frame(
        frame, ["_rank", "mean_ms", *keys], [True, False] + [True] * len(keys)
    )
    columns = [c for c in frame.columns if c != "_rank"]
    if "entered_band" in columns:
        columns.remove("entered_band")
        columns.append("entered_band")
    return frame[columns]
