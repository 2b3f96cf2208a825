"""Replay candidates: dead letters worth sending again, found but never sent.

A dead letter is a candidate when its failure looks transient (a timeout, a refused
or reset connection, an unavailable broker or service: the same event may well
succeed later) and its original event is intact: present in the message and valid
against the schema of the topic it came from. Nothing here talks to Kafka; the
candidates are written to a file for an operator to review and replay.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from codegen_forensics.analysis.context import Analysis
from codegen_forensics.analysis.dlq import dead_lettered_topic
from codegen_forensics.errors import InputError
from codegen_forensics.events.dlq import normalise_dlq
from codegen_forensics.events.schemas import event_name_for, parse_event
from codegen_forensics.events.topics import parse_topic

__all__ = [
    "REPLAY_COLUMNS",
    "TRANSIENT_ERROR",
    "is_transient",
    "replay_candidates",
    "write_replay_candidates",
]

# Error types and messages that say "try again later" rather than "this is wrong".
TRANSIENT_ERROR = re.compile(
    r"timeout|timed out|connection ?(refused|reset|aborted|error)|"
    r"cannot connect|connect call failed|"
    r"broker ?not ?available|unavailable|temporar|too many requests|throttl|"
    r"\b50[234]\b",
    re.IGNORECASE,
)

REPLAY_COLUMNS = [
    "dlq_topic",
    "partition",
    "offset",
    "replay_topic",
    "error_type",
    "error_message",
    "retry_count",
    "failure_time",
    "session_id",
    "correlation_id",
    "original_event",
]


def is_transient(error_type: str | None, error_message: str | None) -> bool:
    """Whether a failure's type or message reads as transient."""
    text = f"{error_type or ''} {error_message or ''}"
    return bool(TRANSIENT_ERROR.search(text))


def _intact(source_topic: str | None, event: dict[str, object] | None) -> bool:
    if not source_topic or event is None:
        return False
    name = parse_topic(source_topic)
    event_name = (
        event_name_for(name.category, name.operation or "") if name.matched else None
    )
    if event_name is None:
        return False
    try:
        parse_event(event_name, dict(event))
    except InputError:
        return False
    return True


def replay_candidates(a: Analysis) -> pd.DataFrame:
    """Dead letters whose failure looks transient and whose event is intact.

    Columns: dlq_topic, partition, offset, replay_topic (the topic the event
    failed on), error_type, error_message, retry_count, failure_time, session_id,
    correlation_id, original_event (canonical JSON). Sorted by failure time, then
    DLQ topic, partition and offset.
    """
    m = a.messages
    dlq = m.filter(m.decode_status == "dlq").select(
        "topic",
        "partition",
        "offset",
        "payload",
        "dlq_source_topic",
        "dlq_error_type",
        "dlq_error_message",
        "dlq_retry_count",
        "event_time",
    )
    frame = a.execute(dlq)
    rows = []
    for row in frame.to_dict(orient="records"):
        if not is_transient(row["dlq_error_type"], row["dlq_error_message"]):
            continue
        if not isinstance(row["payload"], str):
            continue
        record = normalise_dlq(json.loads(row["payload"]))
        # The record's own source first; shapes that name none have the DLQ
        # topic's name to go by, as the DLQ rate does.
        source = next(
            (
                topic
                for topic in (record.source_topic, row["dlq_source_topic"])
                if isinstance(topic, str) and topic
            ),
            dead_lettered_topic(row["topic"]),
        )
        if not _intact(source, record.original_event):
            continue
        rows.append(
            {
                "dlq_topic": row["topic"],
                "partition": row["partition"],
                "offset": row["offset"],
                "replay_topic": source,
                "error_type": record.error_type,
                "error_message": record.error_message,
                "retry_count": record.retry_count,
                "failure_time": row["event_time"],
                "session_id": record.session_id,
                "correlation_id": record.correlation_id,
                "original_event": json.dumps(
                    record.original_event, sort_keys=True, separators=(",", ":")
                ),
            }
        )
    out = pd.DataFrame(rows, columns=REPLAY_COLUMNS)
    if out.empty:
        return out
    out = out.sort_values(
        ["failure_time", "dlq_topic", "partition", "offset"], kind="stable"
    )
    return out.reset_index(drop=True)


def write_replay_candidates(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write candidates as JSON Lines, one object per dead letter, event included."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for record in frame.to_dict(orient="records"):
            record["original_event"] = json.loads(record["original_event"])
            if isinstance(record.get("failure_time"), pd.Timestamp):
                record["failure_time"] = record["failure_time"].isoformat()
            handle.write(json.dumps(record, sort_keys=True, default=str) + "\n")
    return out
