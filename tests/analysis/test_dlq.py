from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from codegen_forensics.analysis import (
    Analysis,
    DLQOverrides,
    dlq_breakdown,
    dlq_counts,
    dlq_diff,
    dlq_groups,
    dlq_rate,
    dlq_template_map,
    group_id,
    load_overrides,
)
from codegen_forensics.errors import ConfigError

from .helpers import DLQ, REQ, REQ_V, RESP, STATUS, at, message_table, uid

DLQ_V = "omninode_codegen_dlq_validate_v1"
DOTTED_DLQ = "dev.omninode-bridge.codegen.request-analyze.v1.dlq"
DOTTED_SRC = "dev.omninode-bridge.codegen.request-analyze.v1"

# Groups with a message are keyed by template alone; message-less ones by type.
G_TIMEOUT = group_id(None, "timed out after <num>ms")
G_INVALID = group_id(None, "Invalid node_type: '<value>'")
G_NONE = group_id("(none)", "<no message>")
G_MAX = group_id(None, "max_retries_exceeded")


def dead(topic: str, seconds: float, **kwargs: object) -> dict:
    return dict(topic=topic, dlq_failure_time=at(seconds), **kwargs)


@pytest.fixture
def dlq(analyse: Callable[..., Analysis]) -> Analysis:
    timeout = dict(
        dlq_shape="envelope", dlq_source_topic=REQ, dlq_error_type="TimeoutError"
    )
    return analyse(
        [
            dead(
                DLQ,
                0,
                session_id=uid(1),
                dlq_error_message="timed out after 30000ms",
                dlq_consumer_group="g1",
                dlq_retry_count=3,
                **timeout,
            ),
            dead(
                DLQ,
                60,
                session_id=uid(2),
                dlq_error_message="timed out after 100ms",
                dlq_consumer_group="g1",
                dlq_retry_count=3,
                **timeout,
            ),
            dead(
                DLQ,
                86_400,
                session_id=uid(2),
                dlq_error_message="timed out after 5ms",
                dlq_consumer_group="g2",
                dlq_retry_count=1,
                **timeout,
            ),
            dead(
                DLQ_V,
                30,
                session_id=uid(3),
                dlq_shape="flat",
                dlq_source_topic=REQ_V,
                dlq_error_type="ValidationError",
                dlq_error_message="Invalid node_type: 'x'",
                dlq_retry_count=0,
            ),
            dead(DLQ, 90, dlq_shape="minimal"),
            dead(
                DOTTED_DLQ,
                120,
                dlq_shape="client",
                dlq_error_type="max_retries_exceeded",
                dlq_error_message="max_retries_exceeded",
            ),
        ]
        + [dict(topic=REQ, event_timestamp=at(i)) for i in range(4)]
        + [dict(topic=REQ, event_timestamp=at(86_400))]
        + [dict(topic=REQ_V, event_timestamp=at(i)) for i in range(2)]
        + [dict(topic=RESP, event_timestamp=at(i)) for i in range(3)]
        + [
            dict(
                topic=STATUS, session_id=uid(1), status="failed", event_timestamp=at(5)
            )
        ]
    )


def test_dlq_groups_exact(dlq: Analysis) -> None:
    frame = dlq_groups(dlq)
    others = sorted([G_INVALID, G_NONE, G_MAX])
    assert frame["group_id"].tolist() == [G_TIMEOUT, *others]
    top = frame.iloc[0]
    assert top["error_type"] == "TimeoutError"
    assert top["template"] == "timed out after <num>ms"
    assert top["messages"] == 3
    assert top["distinct_messages"] == 3
    assert top["sessions"] == 2
    assert top["source_topics"] == 1
    assert top["max_retry_count"] == 3
    assert top["first_seen"] == at(0)
    assert top["last_seen"] == at(86_400)
    assert top["example_message"] == "timed out after 30000ms"
    none = frame.set_index("group_id").loc[G_NONE]
    assert (none["error_type"], none["template"]) == ("(none)", "<no message>")
    assert none["sessions"] == 0
    assert pd.isna(none["example_message"])


def test_dlq_breakdown_exact(dlq: Analysis) -> None:
    frame = dlq_breakdown(dlq)
    timeouts = frame[frame["group_id"] == G_TIMEOUT]
    assert timeouts["consumer_group"].tolist() == ["g1", "g2"]
    assert timeouts["retry_count"].tolist() == [3, 1]
    assert timeouts["messages"].tolist() == [2, 1]
    assert timeouts["day"].tolist() == [
        pd.Timestamp("2026-01-05", tz="UTC"),
        pd.Timestamp("2026-01-06", tz="UTC"),
    ]
    dotted = frame[frame["group_id"] == G_MAX]
    assert dotted["source_topic"].tolist() == [DOTTED_SRC]


def test_dlq_overrides_split_merge_and_label(dlq: Analysis) -> None:
    overrides = DLQOverrides.from_mapping(
        {
            "split": [
                {"group": G_TIMEOUT, "label": "Long timeouts", "pattern": "30000"}
            ],
            "merge": [{"label": "Rejected", "groups": [G_INVALID, G_MAX]}],
            "labels": {G_NONE: "Empty"},
        }
    )
    frame = dlq_groups(dlq, overrides).set_index("group_id")
    split_id = overrides.split[0].new_id
    merged_id = overrides.merge[0].new_id
    assert sorted(frame.index) == sorted([G_TIMEOUT, split_id, merged_id, G_NONE])
    assert frame.loc[split_id, "messages"] == 1
    assert frame.loc[split_id, "label"] == "Long timeouts"
    assert frame.loc[G_TIMEOUT, "messages"] == 2
    assert frame.loc[merged_id, "messages"] == 2
    assert frame.loc[merged_id, "templates"] == 2
    assert frame.loc[merged_id, "error_type"] == "ValidationError, max_retries_exceeded"
    assert frame.loc[G_NONE, "label"] == "Empty"
    # The new ids depend on the rule only, so they are the same next week too.
    assert split_id == group_id(f"split:{G_TIMEOUT}", "Long timeouts")


def test_load_overrides_yaml_and_json_agree(tmp_path: Path) -> None:
    data = {"merge": [{"label": "Rejected", "groups": ["aaa", "bbb"]}]}
    (tmp_path / "o.json").write_text(json.dumps(data))
    (tmp_path / "o.yaml").write_text(
        "merge:\n  - label: Rejected\n    groups: [aaa, bbb]\n"
    )
    assert load_overrides(tmp_path / "o.json") == load_overrides(tmp_path / "o.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("splits: []", r"unknown keys \['splits'\]"),
        (
            "split:\n  - group: a\n    label: b",
            r"split\[0\] must have exactly the keys",
        ),
        (
            "split:\n  - {group: a, label: b, pattern: '('}",
            "is not a regular expression",
        ),
        ("merge:\n  - {label: m, groups: [a]}", "at least two group ids"),
        ("- 1", "must be a mapping"),
        ("merge: [", "is not valid"),
    ],
)
def test_load_overrides_bad_file_is_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "overrides.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_overrides(path)


def test_dlq_diff_states(dlq: Analysis) -> None:
    current = dlq_groups(dlq)
    previous = pd.DataFrame(
        {
            "group_id": [G_TIMEOUT, G_INVALID, "0000000old00"],
            "label": [None, None, None],
            "error_type": ["TimeoutError", "ValidationError", "KeyError"],
            "template": [
                "timed out after <num>ms",
                "Invalid node_type: '<value>'",
                "k",
            ],
            "messages": [5, 1, 4],
        }
    )
    frame = dlq_diff(current, previous).set_index("group_id")
    assert frame.loc[
        G_TIMEOUT, ["messages", "previous_messages", "change", "state"]
    ].tolist() == [3, 5, -2, "shrinking"]
    assert frame.loc[G_INVALID, "state"] == "steady"
    assert frame.loc["0000000old00", ["messages", "change", "state"]].tolist() == [
        0,
        -4,
        "gone",
    ]
    assert frame.loc[G_MAX, "state"] == "new"
    states = dlq_diff(current, previous)["state"].tolist()
    assert states == ["new", "new", "steady", "shrinking", "gone"]


def test_dlq_diff_without_previous_all_new(dlq: Analysis) -> None:
    frame = dlq_diff(dlq_groups(dlq), None)
    assert set(frame["state"]) == {"new"}


def test_dlq_groups_growing(dlq: Analysis) -> None:
    previous = dlq_groups(dlq).assign(messages=lambda f: f["messages"] - 1)
    frame = dlq_diff(dlq_groups(dlq), previous)
    assert set(frame["state"]) == {"growing"}


def test_dlq_rate_whole_snapshot(dlq: Analysis) -> None:
    frame = dlq_rate(dlq)
    # The minimal dead letter names no source: its DLQ topic's name gives REQ.
    assert frame["source_topic"].tolist() == [DOTTED_SRC, REQ, REQ_V, RESP]
    assert frame["dlq_messages"].tolist() == [1, 4, 1, 0]
    assert frame["source_messages"].tolist() == [0, 5, 2, 3]
    assert frame["dlq_rate"].tolist()[1:] == [0.8, 0.5, 0.0]
    assert pd.isna(frame["dlq_rate"].iloc[0])


def test_dlq_rate_counts_a_status_topic_only_when_a_dead_letter_names_it(
    analyse: Callable[..., Analysis],
) -> None:
    other = "omninode_codegen_status_other_v1"
    a = analyse(
        [
            dead(DLQ, 0, dlq_shape="flat", dlq_source_topic=STATUS),
            dict(topic=STATUS, status="pending", event_timestamp=at(1)),
            dict(topic=STATUS, status="completed", event_timestamp=at(2)),
            dict(topic=other, status="pending", event_timestamp=at(3)),
            dict(topic=REQ, event_timestamp=at(4)),
        ]
    )
    frame = dlq_rate(a)
    assert frame["source_topic"].tolist() == [REQ, STATUS]
    assert frame["dlq_messages"].tolist() == [0, 1]
    assert frame["source_messages"].tolist() == [1, 2]
    assert frame["dlq_rate"].tolist() == [0.0, 0.5]


def test_dlq_measures_keep_messages_without_a_topic(
    analyse: Callable[..., Analysis],
) -> None:
    table = message_table(
        [
            dead(DLQ, 0, dlq_shape="flat", dlq_error_type="E"),
            dead(DLQ, 1, dlq_shape="flat", dlq_error_type="E", dlq_source_topic=REQ),
            dict(topic=REQ, event_timestamp=at(2)),
            dict(topic=REQ, event_timestamp=at(3)),
        ]
    )
    topics = pa.array([None, DLQ, None, REQ], pa.string())
    a = analyse(table.set_column(0, "topic", topics))
    counts = dlq_counts(a)
    assert counts["messages"].tolist() == [1, 1]
    assert counts["dlq_topic"].isna().tolist() == [False, True]
    assert dlq_groups(a)["messages"].tolist() == [2]
    rate = dlq_rate(a)
    assert rate["source_topic"].tolist()[0] == REQ
    assert rate["source_topic"].isna().tolist() == [False, True, True]
    assert rate["dlq_messages"].tolist() == [1, 0, 1]
    assert rate["source_messages"].tolist() == [1, 1, 0]


def test_dlq_rate_per_day(dlq: Analysis) -> None:
    frame = dlq_rate(dlq, "day")
    req = frame[frame["source_topic"] == REQ]
    assert req["window_start"].tolist() == [
        pd.Timestamp("2026-01-05", tz="UTC"),
        pd.Timestamp("2026-01-06", tz="UTC"),
    ]
    assert req["dlq_messages"].tolist() == [3, 1]
    assert req["source_messages"].tolist() == [4, 1]
    assert req["dlq_rate"].tolist() == [0.75, 1.0]


def test_dlq_counts_by_shape_with_alert(dlq: Analysis) -> None:
    frame = dlq_counts(dlq, alert_threshold=3)
    # Largest first, ties by topic name.
    assert frame["dlq_topic"].tolist() == [DLQ, DOTTED_DLQ, DLQ_V]
    assert frame["messages"].tolist() == [4, 1, 1]
    assert frame["envelope"].tolist() == [3, 0, 0]
    assert frame["minimal"].tolist() == [1, 0, 0]
    assert frame["client"].tolist() == [0, 1, 0]
    assert frame["flat"].tolist() == [0, 0, 1]
    assert frame["alert"].tolist() == [True, False, False]


def test_dlq_measures_empty(analyse: Callable[..., Analysis]) -> None:
    a = analyse([dict(topic=REQ, event_timestamp=at(0))])
    assert dlq_template_map(a).empty
    assert dlq_groups(a).empty
    assert dlq_breakdown(a).empty
    assert dlq_counts(a).empty
    assert dlq_diff(dlq_groups(a), None).empty
    rate = dlq_rate(a)
    assert rate[["dlq_messages", "source_messages", "dlq_rate"]].iloc[0].tolist() == [
        0,
        1,
        0.0,
    ]


def test_one_failure_under_different_type_labels_is_one_group(
    analyse: Callable[..., Analysis],
) -> None:
    a = analyse(
        [
            dead(
                DLQ,
                0,
                dlq_shape="envelope",
                dlq_source_topic=REQ,
                dlq_error_type="KeyError",
                dlq_error_message="missing key 'score' in payload",
            ),
            dead(
                DLQ,
                10,
                dlq_shape="client",
                dlq_source_topic=REQ,
                dlq_error_type="max_retries_exceeded",
                dlq_error_message="missing key 'rank' in payload",
            ),
            dead(DLQ, 20, dlq_shape="minimal", dlq_error_type="KeyError"),
        ]
        + [dict(topic=REQ, event_timestamp=at(i)) for i in range(3)]
    )
    frame = dlq_groups(a).set_index("group_id")
    keyed = group_id(None, "missing key '<value>' in payload")
    assert frame.loc[keyed, "messages"] == 2
    assert frame.loc[keyed, "error_type"] == "KeyError, max_retries_exceeded"
    assert frame.loc[group_id("KeyError", "<no message>"), "messages"] == 1
    assert len(frame) == 2


def test_minimal_dead_letters_take_their_source_from_the_dlq_topic(
    analyse: Callable[..., Analysis],
) -> None:
    a = analyse(
        [
            dead(DLQ_V, 0, dlq_shape="minimal", dlq_error_message="boom"),
            dead(DLQ_V, 5, dlq_shape="minimal", dlq_error_message="boom"),
            dead(DOTTED_DLQ, 5, dlq_shape="minimal", dlq_error_message="boom"),
        ]
        + [dict(topic=REQ_V, event_timestamp=at(i)) for i in range(4)]
        + [dict(topic=DOTTED_SRC, event_timestamp=at(i)) for i in range(2)]
    )
    rates = dlq_rate(a).set_index("source_topic")
    assert rates.loc[REQ_V, ["dlq_messages", "source_messages"]].tolist() == [2, 4]
    assert rates.loc[REQ_V, "dlq_rate"] == 0.5
    assert rates.loc[DOTTED_SRC, "dlq_rate"] == 0.5
    assert rates.index.notna().all()
