from datetime import UTC, datetime

import pandas as pd
import pytest

from codegen_forensics.errors import InputError
from codegen_forensics.report.display import (
    KeyNumbers,
    Table,
    format_value,
    html_table,
    label,
)
from codegen_forensics.report.weekly import week_window


@pytest.mark.parametrize(
    ("column", "value", "shown"),
    [
        ("latency_p95_ms", 6439.25, "6.44 s"),
        ("latency_p95_ms", 960.4, "960 ms"),
        ("age_s", 12.345, "12.3 s"),
        ("age_s", 119.9, "119.9 s"),
        ("age_s", 600, "10.0 min"),
        ("age_s", 5249.4, "87.5 min"),
        ("age_s", 88338.9, "24.5 h"),
        ("age_s", 441115.7, "5.1 d"),
        ("duration_p99_ms", 55530, "55.53 s"),
        ("duration_max_ms", 7_200_000, "2.0 h"),
        ("dlq_rate", 0.0103, "1.03 %"),
        ("ratio", 3.456, "3.46x"),
        ("messages", 28634, "28,634"),
        ("messages", None, "–"),
        ("alert", True, "yes"),
        (
            "first_seen",
            pd.Timestamp("2026-11-23 10:00:01", tz="UTC"),
            "2026-11-23 10:00:01",
        ),
    ],
)
def test_format_value_writes_units(column: str, value: object, shown: str) -> None:
    assert format_value(column, value) == shown


def test_html_table_aligns_numbers_right_and_escapes_text() -> None:
    frame = pd.DataFrame({"error_message": ["<b>t</b>"], "messages": [5]})
    out = html_table(frame)
    assert "<td style='text-align:left'>&lt;b&gt;t&lt;/b&gt;</td>" in out
    assert "<td style='text-align:right;white-space:nowrap'>5</td>" in out


def test_html_table_keeps_names_on_one_line() -> None:
    frame = pd.DataFrame(
        {"source_topic": ["omninode_codegen_request_validate_v1"], "note": ["a b"]}
    )
    out = html_table(frame)
    assert (
        "<td style='text-align:left;white-space:nowrap'>"
        "omninode_codegen_request_validate_v1</td>"
    ) in out
    assert "<td style='text-align:left'>a b</td>" in out


def test_table_says_when_rows_are_cut() -> None:
    table = Table("T", pd.DataFrame({"n": range(5)}), limit=2)
    assert "First 2 of 5 rows" in table._repr_html_()


def test_key_numbers_render_as_json() -> None:
    when = datetime(2026, 11, 23, tzinfo=UTC)
    numbers = KeyNumbers(
        "Headline", {"messages": 3, "first": when, "rate": float("nan")}
    )
    assert numbers._repr_json_() == {
        "title": "Headline",
        "numbers": {"messages": 3, "first": "2026-11-23T00:00:00+00:00", "rate": None},
    }


def test_week_window_is_seven_days_from_the_date() -> None:
    assert week_window("2026-11-23") == (
        datetime(2026, 11, 23, tzinfo=UTC),
        datetime(2026, 11, 30, tzinfo=UTC),
    )
    assert week_window(None) == (None, None)


def test_week_window_refuses_a_date_that_is_not_iso() -> None:
    with pytest.raises(InputError, match="week '23/11/2026' is not an ISO date"):
        week_window("23/11/2026")


def test_html_table_headers_drop_units_the_cells_carry() -> None:
    frame = pd.DataFrame(
        {"latency_p95_ms": [9200.0], "age_s": [3.0], "error_ms": ["text"]}
    )
    out = html_table(frame)
    assert ">latency p95</th>" in out
    assert ">age</th>" in out
    assert ">error ms</th>" in out
    assert ">9.20 s</td>" in out


def test_label_drops_the_unit_a_formatted_number_carries() -> None:
    assert label("duration_ms") == "duration"
    assert label("age_s") == "age"
    assert label("duration_ms", numeric=False) == "duration ms"
    assert label("dlq_messages") == "dlq messages"


def test_key_numbers_label_durations_without_their_unit() -> None:
    numbers = KeyNumbers("Summary", {"duration_ms": 26430.0, "tracer_status": "x"})
    page = numbers._repr_html_()
    assert ">duration</th><td>26.43 s</td>" in page
    assert ">tracer status</th><td>x</td>" in page
