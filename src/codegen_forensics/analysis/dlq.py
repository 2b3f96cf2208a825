"""Dead letters: an error taxonomy, its week-on-week diff, DLQ rates and counts.

**Taxonomy.** Every dead-letter message (any shape the loader normalised) has an
error type and an error message. The message is masked into a template
(:mod:`~codegen_forensics.analysis.masking`), and messages are grouped by template:
the same failure reaches the DLQ under different type labels depending on the shape
(the production client labels every failure ``max_retries_exceeded``; flat and
minimal shapes carry ``Type: message`` strings), so a group lists every error type
seen with its template rather than being split by them. A dead letter with no
message is grouped by its error type. A group's id hashes its key, so the same kind
of error has the same id next week. A user file of overrides can split a group (by
a pattern searched in the original message) or merge groups, and label them. A
message with no error type is typed ``(none)``; one with no message has the
template ``<no message>``.

The engine counts; only the distinct (error type, message) pairs travel to Python to
be masked, and their groups travel back as a small table to join.

**DLQ rate** of a source topic in a window: dead letters whose source is that topic
and whose failure time falls in the window, over the messages on that topic whose
event time falls in it. The source topic is the one the dead letter names; for one
that names none (minimal shapes), the DLQ topic's name says it: a dotted-scheme
``....dlq`` topic holds failures of its own name less ``.dlq``, a documented
``…_dlq_<operation>_v<n>`` topic those of ``…_request_<operation>_v<n>``. Dead
letters whose source cannot be told are reported with a null source.

**DLQ count**: dead letters per DLQ topic, with the DLQ monitor's alert (more than 10
by default).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa
import yaml

from codegen_forensics.analysis._util import (
    bucket,
    check_window,
    ints,
    one_of,
    ratio,
    sort_frame,
)
from codegen_forensics.analysis.context import Analysis, normalise_id
from codegen_forensics.analysis.masking import NO_MESSAGE, group_id, mask_message
from codegen_forensics.errors import ConfigError
from codegen_forensics.events.topics import parse_topic

__all__ = [
    "DLQOverrides",
    "MergeRule",
    "SplitRule",
    "dead_lettered_topic",
    "dlq_breakdown",
    "dlq_counts",
    "dlq_diff",
    "dlq_groups",
    "dlq_rate",
    "dlq_template_map",
    "load_overrides",
]

logger = logging.getLogger(__name__)

NO_TYPE = "(none)"
DLQ_SHAPES = ("envelope", "flat", "client", "minimal", "unknown")


@dataclass(frozen=True)
class SplitRule:
    """Messages of ``group`` whose original text matches ``pattern`` form a group."""

    group: str
    label: str
    pattern: str

    @property
    def new_id(self) -> str:
        return group_id(f"split:{self.group}", self.label)


@dataclass(frozen=True)
class MergeRule:
    """Groups listed in ``groups`` become one group named ``label``."""

    label: str
    groups: tuple[str, ...]

    @property
    def new_id(self) -> str:
        return group_id("merge", self.label)


@dataclass(frozen=True)
class DLQOverrides:
    """A user's corrections to the automatic grouping; splits apply before merges."""

    split: tuple[SplitRule, ...] = ()
    merge: tuple[MergeRule, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], origin: str = "overrides"
    ) -> DLQOverrides:
        """Read ``{"split": [...], "merge": [...], "labels": {...}}``."""
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{origin} must be a mapping with split, merge and labels; "
                f"got {type(data).__name__}"
            )
        unknown = set(data) - {"split", "merge", "labels"}
        if unknown:
            raise ConfigError(
                f"{origin} has unknown keys {sorted(unknown)}; allowed: split, merge, "
                "labels"
            )
        splits = []
        for i, rule in enumerate(data.get("split") or []):
            where = f"{origin} split[{i}]"
            _require(rule, ("group", "label", "pattern"), where)
            try:
                re.compile(str(rule["pattern"]))
            except re.error as exc:
                raise ConfigError(
                    f"{where} pattern {rule['pattern']!r} is not a regular "
                    f"expression: {exc}"
                ) from exc
            splits.append(
                SplitRule(str(rule["group"]), str(rule["label"]), str(rule["pattern"]))
            )
        merges = []
        for i, rule in enumerate(data.get("merge") or []):
            where = f"{origin} merge[{i}]"
            _require(rule, ("label", "groups"), where)
            groups = rule["groups"]
            if not isinstance(groups, list) or len(groups) < 2:
                raise ConfigError(
                    f"{where} groups must list at least two group ids; got {groups!r}"
                )
            merges.append(MergeRule(str(rule["label"]), tuple(str(g) for g in groups)))
        labels = data.get("labels") or {}
        if not isinstance(labels, Mapping):
            raise ConfigError(
                f"{origin} labels must map group ids to names; got {labels!r}"
            )
        return cls(
            tuple(splits), tuple(merges), {str(k): str(v) for k, v in labels.items()}
        )


def _require(rule: Any, keys: Sequence[str], where: str) -> None:
    if not isinstance(rule, Mapping):
        raise ConfigError(
            f"{where} must be a mapping with {', '.join(keys)}; got {rule!r}"
        )
    missing = [k for k in keys if k not in rule]
    extra = set(rule) - set(keys)
    if missing or extra:
        raise ConfigError(
            f"{where} must have exactly the keys {', '.join(keys)}; "
            f"missing {missing}, unknown {sorted(extra)}"
        )


def load_overrides(path: str | os.PathLike[str]) -> DLQOverrides:
    """Read an overrides file, YAML (``.yaml``/``.yml``) or JSON (anything else)::

    split:
      - group: 3f2a9c1b0d4e          # a group id from dlq_groups
        label: Timeouts on analyze    # the new group's name
        pattern: analyze              # regex searched in the original message
    merge:
      - label: Broker unavailable
        groups: [3f2a9c1b0d4e, 9bc14d2e7a10]
    labels:
      5d0c33e1b2aa: Schema validation
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"overrides file {str(file)!r} cannot be read: {exc}"
        ) from exc
    try:
        if file.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"overrides file {str(file)!r} is not valid: {exc}") from exc
    return DLQOverrides.from_mapping(data, origin=f"overrides file {str(file)!r}")


def dead_lettered_topic(dlq_topic: str) -> str | None:
    """The topic whose failures a DLQ topic holds, as its name tells; None if it
    does not."""
    if dlq_topic.endswith(".dlq"):
        return dlq_topic.removesuffix(".dlq")
    name = parse_topic(dlq_topic)
    if name.category != "dlq" or name.operation is None:
        return None
    marker = f"_dlq_{name.operation}_"
    if marker not in dlq_topic:
        return None
    head, _, tail = dlq_topic.rpartition(marker)
    return f"{head}_request_{name.operation}_{tail}"


def _dlq_rows(a: Analysis) -> ir.Table:
    m = a.messages
    dlq = m.filter((m.category == "dlq") | (m.decode_status == "dlq"))
    if "dlq:sources" not in a._cache:
        found = a.execute(dlq.select("topic").distinct())["topic"]
        names = found.dropna()
        a._cache["dlq:sources"] = {
            str(t): dead_lettered_topic(str(t)) for t in sorted(names)
        }
        a._cache["dlq:null_topic"] = len(names) < len(found)
    sources: dict[str, str | None] = a._cache["dlq:sources"]
    # The same rows, named by topic too: a backend can then skip the files and row
    # groups of other topics by their statistics instead of reading every row.
    dlq = dlq.filter(one_of(dlq.topic, list(sources), a._cache["dlq:null_topic"]))
    named = [(dlq.topic == t, src) for t, src in sources.items() if src is not None]
    inferred = (
        ibis.cases(*named, else_=ibis.null("string")) if named else ibis.null("string")
    )
    return dlq.select(
        dlq_topic=dlq.topic,
        partition=dlq.partition,
        offset=dlq.offset,
        shape=dlq.dlq_shape,
        error_type=dlq.dlq_error_type.fill_null(""),
        error_message=dlq.dlq_error_message.fill_null(""),
        source_topic=ibis.coalesce(dlq.dlq_source_topic, inferred),
        consumer_group=dlq.dlq_consumer_group,
        retry_count=dlq.dlq_retry_count,
        time=dlq.event_time,
        day=bucket(a, dlq.event_time, "D"),
        session_id=normalise_id(dlq.session_id),
        correlation_id=normalise_id(dlq.correlation_id),
    )


def dlq_template_map(
    a: Analysis, overrides: DLQOverrides | None = None
) -> pd.DataFrame:
    """Each distinct (error type, message) with its template and group.

    Columns: error_type, error_message (as stored: empty when missing), messages
    (dead letters carrying it), first_seen, template, group_id, label (from the
    overrides, else null).
    """
    rows = _dlq_rows(a)
    distinct = rows.group_by(["error_type", "error_message"]).aggregate(
        messages=rows.count(), first_seen=rows.time.min()
    )
    frame = a.execute(distinct)
    frame["template"] = [
        mask_message(m) if m else NO_MESSAGE for m in frame["error_message"]
    ]
    frame["group_id"] = [
        group_id(t or NO_TYPE, tpl) if tpl == NO_MESSAGE else group_id(None, tpl)
        for t, tpl in zip(frame["error_type"], frame["template"], strict=True)
    ]
    frame["label"] = pd.Series([None] * len(frame), dtype="object")
    if overrides is not None:
        frame = _apply_overrides(frame, overrides)
    return sort_frame(frame, ["group_id", "error_type", "error_message"])


def _apply_overrides(frame: pd.DataFrame, overrides: DLQOverrides) -> pd.DataFrame:
    frame = frame.copy()
    known = set(frame["group_id"])
    for rule in overrides.split:
        if rule.group not in known:
            logger.warning(
                "dlq override split names an absent group group_id=%s", rule.group
            )
        pattern = re.compile(rule.pattern)
        hit = (frame["group_id"] == rule.group) & frame["error_message"].map(
            lambda m, p=pattern: bool(p.search(m or ""))
        )
        frame.loc[hit, "group_id"] = rule.new_id
        frame.loc[hit, "label"] = rule.label
    known = set(frame["group_id"])
    for merge in overrides.merge:
        absent = [g for g in merge.groups if g not in known]
        if absent:
            logger.warning(
                "dlq override merge names absent groups group_ids=%s", absent
            )
        hit = frame["group_id"].isin(merge.groups)
        frame.loc[hit, "group_id"] = merge.new_id
        frame.loc[hit, "label"] = merge.label
    for gid, label in overrides.labels.items():
        frame.loc[frame["group_id"] == gid, "label"] = label
    return frame


def _labelled(a: Analysis, template_map: pd.DataFrame) -> ir.Table:
    rows = _dlq_rows(a)
    mapping = ibis.memtable(
        pa.table(
            {
                "map_type": pa.array(
                    template_map["error_type"].astype(object), pa.string()
                ),
                "map_message": pa.array(
                    template_map["error_message"].astype(object), pa.string()
                ),
                "group_id": pa.array(
                    template_map["group_id"].astype(object), pa.string()
                ),
            }
        )
    )
    joined = rows.join(
        mapping,
        [
            rows.error_type == mapping.map_type,
            rows.error_message == mapping.map_message,
        ],
    )
    return joined.drop("map_type", "map_message")


def dlq_groups(
    a: Analysis,
    overrides: DLQOverrides | None = None,
    *,
    template_map: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The error taxonomy: one row per group, the largest first.

    Columns: group_id, label, error_type (the types in the group, comma separated),
    template (the example's), templates (distinct templates: more than one only
    after a merge), messages (dead letters), distinct_messages, sessions (distinct
    sessions affected), source_topics, max_retry_count, first_seen, last_seen,
    example_message (the earliest message of the group, ties broken by text).
    """
    tmap = template_map if template_map is not None else dlq_template_map(a, overrides)
    columns = [
        "group_id",
        "label",
        "error_type",
        "template",
        "templates",
        "messages",
        "distinct_messages",
        "sessions",
        "source_topics",
        "max_retry_count",
        "first_seen",
        "last_seen",
        "example_message",
    ]
    if tmap.empty:
        return _empty(columns)
    t = _labelled(a, tmap)
    counts = a.execute(
        t.group_by("group_id").aggregate(
            messages=t.count(),
            sessions=t.session_id.nunique(),
            source_topics=t.source_topic.nunique(),
            max_retry_count=t.retry_count.max(),
            first_seen=t.time.min(),
            last_seen=t.time.max(),
        )
    )

    described = []
    for gid, part in tmap.groupby("group_id", sort=True):
        first = part.sort_values(
            ["first_seen", "error_message"], kind="stable", na_position="last"
        ).iloc[0]
        labels = part["label"].dropna()
        described.append(
            {
                "group_id": gid,
                "label": labels.iloc[0] if len(labels) else None,
                "error_type": ", ".join(
                    sorted({t or NO_TYPE for t in part["error_type"]})
                ),
                "template": first["template"],
                "templates": part["template"].nunique(),
                "distinct_messages": len(part),
                "example_message": first["error_message"] or None,
            }
        )
    frame = pd.DataFrame(described).merge(counts, on="group_id", how="left")
    frame = ints(frame, ["messages", "sessions", "source_topics"])
    frame = sort_frame(frame, ["messages", "group_id"], [False, True])
    return frame[columns]


def dlq_breakdown(
    a: Analysis,
    overrides: DLQOverrides | None = None,
    *,
    template_map: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Dead letters per group, source topic, consumer group, retry count and day.

    Columns: group_id, source_topic, consumer_group, retry_count, day, messages,
    first_seen, last_seen. Sorted by group, then day, then the other keys.
    """
    tmap = template_map if template_map is not None else dlq_template_map(a, overrides)
    keys = ["group_id", "source_topic", "consumer_group", "retry_count", "day"]
    if tmap.empty:
        return _empty([*keys, "messages", "first_seen", "last_seen"])
    t = _labelled(a, tmap)
    frame = a.execute(
        t.group_by(keys).aggregate(
            messages=t.count(), first_seen=t.time.min(), last_seen=t.time.max()
        )
    )
    return sort_frame(
        frame, ["group_id", "day", "source_topic", "consumer_group", "retry_count"]
    )


def dlq_diff(current: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    """How each group changed since a previous snapshot's :func:`dlq_groups`.

    Columns: group_id, label, error_type, template, messages, previous_messages,
    change, state: ``new`` (absent before), ``gone`` (absent now), ``growing``,
    ``shrinking`` or ``steady``. Sorted new first, then growing (largest change
    first), steady, shrinking, gone. Without a previous snapshot every group is new.
    """
    keep = ["group_id", "label", "error_type", "template", "messages"]
    now = current[keep]
    if previous is None:
        before = pd.DataFrame({c: pd.Series(dtype="object") for c in keep})
    else:
        before = previous[keep]
    merged = now.merge(before, on="group_id", how="outer", suffixes=("", "_before"))
    for column in ("label", "error_type", "template"):
        merged[column] = merged[column].where(
            merged[column].notna(), merged[f"{column}_before"]
        )
    merged["previous_messages"] = merged["messages_before"]
    merged = ints(merged, ["messages", "previous_messages"])
    merged["change"] = merged["messages"] - merged["previous_messages"]
    state = pd.Series("steady", index=merged.index, dtype="object")
    state[merged["change"] > 0] = "growing"
    state[merged["change"] < 0] = "shrinking"
    state[merged["messages_before"].isna()] = "new"
    state[merged["messages"] == 0] = "gone"
    merged["state"] = state
    order = {"new": 0, "growing": 1, "steady": 2, "shrinking": 3, "gone": 4}
    merged["_order"] = merged["state"].map(order)
    merged["_change"] = -merged["change"].abs()
    merged = sort_frame(merged, ["_order", "_change", "group_id"])
    return merged[
        [
            "group_id",
            "label",
            "error_type",
            "template",
            "messages",
            "previous_messages",
            "change",
            "state",
        ]
    ]


def dlq_rate(a: Analysis, window: str | None = None) -> pd.DataFrame:
    """DLQ messages over the messages on their source topic, per topic and window.

    ``window`` is None (the whole snapshot), hour, day or week. Columns:
    source_topic, window_start (null for the whole snapshot), dlq_messages,
    source_messages, dlq_rate (null when the source topic has no messages in the
    window). Every request and response topic appears, with a rate of 0 when it has
    no dead letters; other topics appear when some dead letter names them.
    """
    unit = None if window is None else check_window(window, ("hour", "day", "week"))
    rows = _dlq_rows(a)
    m = a.messages
    source = m.filter(~((m.category == "dlq") | (m.decode_status == "dlq")))
    # Only topics that can be reported are counted: those with a request or a
    # response, and those a dead letter names. Named, their row groups are read and
    # the others' (status topics, say) skipped.
    reported, null_topic = _reported_topics(a, rows)
    source = source.filter(one_of(source.topic, reported, null_topic))
    dlq_keys: dict[str, Any] = {"source_topic": rows.source_topic}
    src_keys: dict[str, Any] = {"topic": source.topic}
    if unit is not None:
        dlq_keys["window_start"] = bucket(a, rows.time, unit)
        src_keys["src_window"] = bucket(a, source.event_time, unit)
    dead = rows.group_by(**dlq_keys).aggregate(dlq_messages=rows.count())
    sent = source.group_by(**src_keys).aggregate(
        source_messages=source.count(), category=source.category.max()
    )
    predicates = [dead.source_topic == sent.topic]
    if unit is not None:
        predicates.append(dead.window_start == sent.src_window)
    joined = dead.outer_join(sent, predicates)
    out = joined.select(
        source_topic=ibis.coalesce(joined.source_topic, joined.topic),
        window_start=(
            ibis.coalesce(joined.window_start, joined.src_window)
            if unit is not None
            else ibis.null("timestamp('UTC', 6)")
        ),
        dlq_messages=joined.dlq_messages.fill_null(0),
        source_messages=joined.source_messages.fill_null(0),
        category=joined.category,
    )
    out = out.filter(
        out.category.isin(("request", "response")) | (out.dlq_messages > 0)
    )
    frame = ints(a.execute(out), ["dlq_messages", "source_messages"])
    frame["dlq_rate"] = ratio(frame["dlq_messages"], frame["source_messages"])
    frame = sort_frame(frame, ["source_topic", "window_start"])
    return frame[
        ["source_topic", "window_start", "dlq_messages", "source_messages", "dlq_rate"]
    ]


def _reported_topics(a: Analysis, rows: ir.Table) -> tuple[list[str], bool]:
    """Topics :func:`dlq_rate` may report: with a request or response message,
    or named as the source of a dead letter; and whether messages without a topic
    may be (some request or response has none)."""
    if "dlq:reported" not in a._cache:
        m = a.messages
        asked = m.filter(m.category.isin(("request", "response"))).select("topic")
        named = rows.filter(rows.source_topic.notnull()).select(topic=rows.source_topic)
        found = a.execute(asked.distinct().union(named.distinct()))["topic"]
        names = found.dropna()
        a._cache["dlq:reported"] = (
            sorted(str(t) for t in names.unique()),
            len(names) < len(found),
        )
    reported: tuple[list[str], bool] = a._cache["dlq:reported"]
    return reported


def dlq_counts(a: Analysis, alert_threshold: int = 10) -> pd.DataFrame:
    """Dead letters per DLQ topic, by shape, with the monitor's alert.

    Columns: dlq_topic, messages, one count per shape (envelope, flat, client,
    minimal, unknown), first_seen, last_seen, alert (messages above
    ``alert_threshold``). The largest first.
    """
    rows = _dlq_rows(a)
    shapes = {shape: rows.count(where=rows.shape == shape) for shape in DLQ_SHAPES}
    frame = a.execute(
        rows.group_by("dlq_topic").aggregate(
            messages=rows.count(),
            **shapes,
            first_seen=rows.time.min(),
            last_seen=rows.time.max(),
        )
    )
    frame["alert"] = (frame["messages"] > alert_threshold).astype(bool)
    return sort_frame(frame, ["messages", "dlq_topic"], [False, True])


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
