from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from codegen_forensics.analysis import Analysis, decode_status_counts, poison_messages

from .helpers import REQ, RESP, at


@pytest.fixture
def poisoned(analyse: Callable[..., Analysis]) -> Analysis:
    return analyse(
        [
            dict(topic=REQ, value="{}", timestamp=at(0)),
            dict(
                topic=REQ,
                decode_status="not_json",
                value="hello",
                timestamp=at(1),
                decode_message="Expecting value: line 1 column 1",
            ),
            dict(
                topic=REQ,
                decode_status="not_json",
                value="{oops",
                timestamp=at(2),
                decode_message="Expecting property name",
            ),
            dict(
                topic=REQ,
                decode_status="not_utf8",
                value=b"\xff\xfe\x00",
                timestamp=at(3),
            ),
            dict(
                topic=RESP,
                decode_status="double_encoded",
                value='"{}"',
                timestamp=at(4),
            ),
            dict(topic=RESP, decode_status="tombstone", value=None, timestamp=at(5)),
            dict(
                topic=RESP, decode_status="not_json", value="x" * 300, timestamp=at(6)
            ),
        ]
    )


def test_poison_messages_counts_and_examples(poisoned: Analysis) -> None:
    frame = poison_messages(poisoned)
    assert list(zip(frame["topic"], frame["decode_status"], strict=True)) == [
        (REQ, "not_json"),
        (REQ, "not_utf8"),
        (RESP, "not_json"),
        (RESP, "tombstone"),
        (RESP, "double_encoded"),
    ]
    assert frame["kind"].tolist() == [
        "poison",
        "poison",
        "poison",
        "poison",
        "recovered",
    ]
    assert frame["messages"].tolist() == [2, 1, 1, 1, 1]
    first = frame.iloc[0]
    assert (first["example_partition"], first["example_offset"]) == (0, 1)
    assert first["example_reason"] == "Expecting value: line 1 column 1"
    assert first["example_value"] == "hello"
    assert first["first_seen"] == at(1)
    assert first["last_seen"] == at(2)
    assert frame["example_value"].iloc[1] == "0xfffe00"
    assert frame["example_value"].iloc[2] == "x" * 200
    assert pd.isna(frame["example_value"].iloc[3])


def test_poison_messages_several_examples(poisoned: Analysis) -> None:
    frame = poison_messages(poisoned, examples=2)
    req_json = frame[(frame["topic"] == REQ) & (frame["decode_status"] == "not_json")]
    assert req_json["example_offset"].tolist() == [1, 2]


def test_decode_status_counts_include_ok(poisoned: Analysis) -> None:
    frame = decode_status_counts(poisoned)
    assert frame[frame["topic"] == REQ]["decode_status"].tolist() == [
        "not_json",
        "not_utf8",
        "ok",
    ]
    assert frame["messages"].sum() == 7


def test_poison_messages_none(analyse: Callable[..., Analysis]) -> None:
    assert poison_messages(analyse([dict(topic=REQ, value="{}")])).empty
