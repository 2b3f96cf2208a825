import json

import pandas as pd
import pytest

from codegen_forensics.errors import InputError
from codegen_forensics.report.redact import (
    check_redaction,
    redact_frame,
    redact_json,
    redact_value,
)

EVENT = {
    "session_id": "s",
    "prd_content": "# Payments service\n" + "x" * 100,
    "nested": {"code_content": "class Node: pass", "keep": 1},
    "items": [{"stack_trace": "Traceback (most recent call last): ..."}],
}


def test_redact_value_drop_removes_every_sensitive_key() -> None:
    assert redact_value(EVENT, "drop") == {
        "session_id": "s",
        "nested": {"keep": 1},
        "items": [{}],
    }


def test_redact_value_truncate_keeps_the_first_characters() -> None:
    out = redact_value(EVENT, "truncate")
    assert out["prd_content"] == "# Payments service\nxxxxx… [95 characters redacted]"
    assert out["nested"]["code_content"] == "class Node: pass"
    assert out["items"][0]["stack_trace"].startswith("Traceback (most recent")


def test_redact_value_none_returns_the_value_unchanged() -> None:
    assert redact_value(EVENT, "none") is EVENT


def test_redact_json_leaves_text_that_is_not_json() -> None:
    assert redact_json("not json {", "drop") == "not json {"
    assert redact_json('"a string"', "drop") == '"a string"'
    assert redact_json(None, "drop") is None


def test_redact_frame_drops_columns_and_keys_inside_json_text() -> None:
    frame = pd.DataFrame(
        {
            "dlq_stack_trace": ["Traceback ..."],
            "payload": [json.dumps(EVENT)],
            "count": [3],
        }
    )
    out = redact_frame(frame, "drop")
    assert list(out.columns) == ["payload", "count"]
    assert json.loads(out["payload"].iloc[0]) == {
        "session_id": "s",
        "nested": {"keep": 1},
        "items": [{}],
    }
    assert out["count"].iloc[0] == 3


def test_redact_frame_truncates_sensitive_columns() -> None:
    frame = pd.DataFrame({"prd_content": ["a" * 30, None]})
    out = redact_frame(frame, "truncate")
    assert out["prd_content"].iloc[0] == "a" * 24 + "… [6 characters redacted]"
    assert pd.isna(out["prd_content"].iloc[1])


def test_check_redaction_refuses_an_unknown_mode() -> None:
    with pytest.raises(InputError, match="redaction 'hide' is not known"):
        check_redaction("hide")


def test_redact_text_finds_pairs_in_a_value_cut_short() -> None:
    # A poison message's example value is its first 200 bytes: JSON cut mid-string.
    text = '{"session_id":"1","prd_content":"# Payments \\"v2\\" service and more'
    assert redact_json(text, "drop") == '{"session_id":"1","prd_content":"[redacted]"'
