"""The nine event schemas: round trips, defaults, and refusals that name the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

import codegen_forensics.events as events_module
from codegen_forensics.errors import InputError
from codegen_forensics.events.schemas import (
    EVENT_MODELS,
    AnalysisType,
    CodegenAnalysisRequest,
    CodegenAnalysisResponse,
    CodegenEvent,
    CodegenPatternRequest,
    CodegenStatusEvent,
    NodeType,
    SessionStatus,
    ValidationType,
    event_name_for,
    format_timestamp,
    model_for,
    parse_event,
)

SESSION = "123e4567-e89b-12d3-a456-426614174000"
CORRELATION = "456e7890-e89b-12d3-a456-426614174000"

EVENT_NAMES = [
    "CodegenAnalysisRequest",
    "CodegenAnalysisResponse",
    "CodegenValidationRequest",
    "CodegenValidationResponse",
    "CodegenPatternRequest",
    "CodegenPatternResponse",
    "CodegenMixinRequest",
    "CodegenMixinResponse",
    "CodegenStatusEvent",
]


def analysis_request(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "correlation_id": CORRELATION,
        "session_id": SESSION,
        "prd_content": "# PRD",
        "timestamp": "2025-10-14T10:30:00Z",
    }
    data.update(changes)
    return data


def test_events_fixture_covers_the_nine_schemas(events: list[CodegenEvent]) -> None:
    assert [e.event_name for e in events] == EVENT_NAMES
    assert sorted(EVENT_MODELS) == sorted((name, "1.0") for name in EVENT_NAMES)


@pytest.mark.parametrize("index", range(9), ids=EVENT_NAMES)
def test_schema_round_trip_through_json_is_lossless(
    events: list[CodegenEvent], index: int
) -> None:
    event = events[index]
    text = event.model_dump_json()

    assert type(event).model_validate_json(text) == event
    assert parse_event(event.event_name, json.loads(text)) == event


@pytest.mark.parametrize("index", range(9), ids=EVENT_NAMES)
def test_schema_timestamp_serialises_as_iso_utc_with_z(
    events: list[CodegenEvent], index: int
) -> None:
    # The fixture's times are +02:00; on the wire they are UTC.
    data = json.loads(events[index].to_json_bytes())

    assert data["timestamp"] == f"2025-10-14T10:30:0{index}.250000Z"
    assert events[index].timestamp.tzinfo is UTC


def test_schema_status_event_dump_is_exact(events: list[CodegenEvent]) -> None:
    assert json.loads(events[8].model_dump_json()) == {
        "session_id": SESSION,
        "timestamp": "2025-10-14T10:30:08.250000Z",
        "schema_version": "1.0",
        "status": "analyzing",
        "progress_percentage": 25.0,
        "message": "Analyzing PRD for node requirements",
        "metadata": {"current_step": "prd_analysis"},
    }


def test_schema_status_event_has_no_correlation_id(events: list[CodegenEvent]) -> None:
    assert "correlation_id" not in CodegenStatusEvent.model_fields
    assert events[8].correlation() is None
    assert events[0].correlation() == UUID(CORRELATION)


def test_schema_status_event_refuses_a_correlation_id() -> None:
    data = {
        "session_id": SESSION,
        "correlation_id": CORRELATION,
        "status": "completed",
        "progress_percentage": 100,
        "message": "done",
    }
    with pytest.raises(InputError, match=r"CodegenStatusEvent\.correlation_id: Extra"):
        parse_event("CodegenStatusEvent", data)


def test_schema_defaults_follow_the_design_document() -> None:
    request = CodegenAnalysisRequest.model_validate(
        {"correlation_id": CORRELATION, "session_id": SESSION, "prd_content": "x"}
    )
    pattern = CodegenPatternRequest.model_validate(
        {
            "correlation_id": CORRELATION,
            "session_id": SESSION,
            "node_description": "d",
            "node_type": "reducer",
        }
    )

    assert request.analysis_type is AnalysisType.FULL
    assert request.workspace_context == {}
    assert request.schema_version == "1.0"
    assert request.timestamp.tzinfo is UTC
    assert abs((datetime.now(UTC) - request.timestamp).total_seconds()) < 60
    assert pattern.limit == 5
    assert pattern.node_type is NodeType.REDUCER


def test_schema_enums_hold_documented_and_field_note_values() -> None:
    assert [v.value for v in NodeType] == [
        "effect",
        "compute",
        "reducer",
        "orchestrator",
    ]
    assert [v.value for v in AnalysisType] == ["full", "requirements", "architecture"]
    assert [v.value for v in ValidationType] == [
        "full",
        "syntax",
        "compliance",
        "performance",
    ]
    assert [v.value for v in SessionStatus] == [
        "pending",
        "analyzing",
        "generating",
        "validating",
        "completed",
        "failed",
        "processing",
        "error",
    ]


@pytest.mark.parametrize(
    ("event_name", "data", "message"),
    [
        (
            "CodegenAnalysisResponse",
            {"analysis_result": {}, "confidence": 1.5, "processing_time_ms": 1},
            r"CodegenAnalysisResponse\.confidence: Input should be less than or "
            r"equal to 1 \(got 1\.5\)",
        ),
        (
            "CodegenValidationResponse",
            {
                "validation_result": {},
                "quality_score": -0.1,
                "onex_compliance_score": 0.5,
                "is_valid": True,
                "processing_time_ms": 1,
            },
            r"CodegenValidationResponse\.quality_score: Input should be greater "
            r"than or equal to 0",
        ),
        (
            "CodegenPatternRequest",
            {"node_description": "d", "node_type": "effect", "limit": 0},
            r"CodegenPatternRequest\.limit: Input should be greater than or equal "
            r"to 1 \(got 0\)",
        ),
        (
            "CodegenPatternRequest",
            {"node_description": "d", "node_type": "effect", "limit": 21},
            r"CodegenPatternRequest\.limit: Input should be less than or equal to "
            r"20 \(got 21\)",
        ),
        (
            "CodegenValidationRequest",
            {"code_content": "x", "node_type": "invalid"},
            r"CodegenValidationRequest\.node_type: Input should be 'effect', "
            r"'compute', 'reducer' or 'orchestrator' \(got 'invalid'\)",
        ),
        (
            "CodegenAnalysisRequest",
            {"prd_content": "x", "analysis_type": "deep"},
            r"CodegenAnalysisRequest\.analysis_type: Input should be 'full', "
            r"'requirements' or 'architecture'",
        ),
        (
            "CodegenValidationRequest",
            {"code_content": "x", "node_type": "effect", "validation_type": "style"},
            r"CodegenValidationRequest\.validation_type: Input should be",
        ),
        (
            "CodegenAnalysisRequest",
            {"prd_content": "x", "priority": "high"},
            r"CodegenAnalysisRequest\.priority: Extra inputs are not permitted",
        ),
        (
            "CodegenAnalysisRequest",
            {},
            r"CodegenAnalysisRequest\.prd_content: Field required",
        ),
        (
            "CodegenMixinRequest",
            {"node_type": "effect"},
            r"CodegenMixinRequest\.requirements: Field required",
        ),
    ],
    ids=[
        "confidence-above-1",
        "quality-below-0",
        "limit-0",
        "limit-21",
        "unknown-node-type",
        "unknown-analysis-type",
        "unknown-validation-type",
        "unknown-field",
        "missing-prd-content",
        "missing-requirements",
    ],
)
def test_parse_event_bad_value_names_the_field(
    event_name: str, data: dict[str, Any], message: str
) -> None:
    payload = {"correlation_id": CORRELATION, "session_id": SESSION, **data}
    with pytest.raises(InputError, match=message):
        parse_event(event_name, payload)


def test_status_event_progress_above_100_names_the_field() -> None:
    data = {
        "session_id": SESSION,
        "status": "generating",
        "progress_percentage": 100.5,
        "message": "m",
    }
    with pytest.raises(
        InputError,
        match=r"CodegenStatusEvent\.progress_percentage: Input should be less than "
        r"or equal to 100",
    ):
        parse_event("CodegenStatusEvent", data)


def test_status_event_unknown_status_names_the_field() -> None:
    data = {
        "session_id": SESSION,
        "status": "running",
        "progress_percentage": 1,
        "message": "m",
    }
    with pytest.raises(InputError, match=r"CodegenStatusEvent\.status: Input should"):
        parse_event("CodegenStatusEvent", data)


def test_schema_naive_datetime_is_refused_naming_the_field() -> None:
    with pytest.raises(
        ValidationError, match=r"timestamp\n  Input should have timezone info"
    ):
        CodegenAnalysisRequest(
            correlation_id=UUID(CORRELATION),
            session_id=UUID(SESSION),
            prd_content="x",
            timestamp=datetime(2025, 10, 14, 10, 30),  # naive on purpose
        )


def test_parse_event_naive_timestamp_text_is_refused_naming_the_field() -> None:
    with pytest.raises(
        InputError,
        match=r"CodegenAnalysisRequest\.timestamp: Input should have timezone info "
        r"\(got '2025-10-14T10:30:00'\)",
    ):
        parse_event(
            "CodegenAnalysisRequest", analysis_request(timestamp="2025-10-14T10:30:00")
        )


def test_parse_event_offset_timestamp_is_converted_to_utc() -> None:
    event = parse_event(
        "CodegenAnalysisRequest",
        analysis_request(timestamp="2025-10-14T05:30:00.5-05:00"),
    )

    assert event.timestamp == datetime(2025, 10, 14, 10, 30, 0, 500000, tzinfo=UTC)
    assert event.timestamp.tzinfo is UTC
    assert json.loads(event.to_json_bytes())["timestamp"] == (
        "2025-10-14T10:30:00.500000Z"
    )


def test_parse_event_reports_every_failing_field() -> None:
    data = analysis_request(session_id="not-a-uuid", analysis_type="deep")
    with pytest.raises(
        InputError,
        match=r"CodegenAnalysisRequest\.session_id: .*; "
        r"CodegenAnalysisRequest\.analysis_type: ",
    ):
        parse_event("CodegenAnalysisRequest", data)


def test_parse_event_non_object_is_refused() -> None:
    with pytest.raises(
        InputError, match="CodegenAnalysisRequest must be a JSON object, got list"
    ):
        parse_event("CodegenAnalysisRequest", [1, 2])  # type: ignore[arg-type]


def test_parse_event_unknown_schema_version_is_refused() -> None:
    with pytest.raises(
        InputError,
        match=r"no schema for event 'CodegenAnalysisRequest' at schema_version "
        r"'2\.0'; known: ",
    ):
        parse_event("CodegenAnalysisRequest", analysis_request(schema_version="2.0"))


def test_schema_model_refuses_a_version_it_does_not_read() -> None:
    with pytest.raises(
        ValidationError,
        match=r"schema_version '1\.1' is not read by CodegenAnalysisRequest; it "
        r"reads 1\.0",
    ):
        CodegenAnalysisRequest.model_validate(analysis_request(schema_version="1.1"))


def test_model_for_known_and_unknown_names() -> None:
    assert model_for("CodegenAnalysisResponse") is CodegenAnalysisResponse
    assert model_for("CodegenStatusEvent", "1.0") is CodegenStatusEvent
    with pytest.raises(InputError, match=r"no schema for event 'CodegenFoo'"):
        model_for("CodegenFoo")


def test_event_name_for_topic_category_and_operation() -> None:
    assert event_name_for("request", "analyze") == "CodegenAnalysisRequest"
    assert event_name_for("response", "mixin") == "CodegenMixinResponse"
    assert event_name_for("status", "session") == "CodegenStatusEvent"
    assert event_name_for("dlq", "analyze") is None


def test_schema_events_are_frozen(events: list[CodegenEvent]) -> None:
    with pytest.raises(ValidationError, match="Instance is frozen"):
        events[0].prd_content = "changed"  # type: ignore[attr-defined]


def test_format_timestamp_naive_is_refused() -> None:
    with pytest.raises(InputError, match="has no time zone"):
        format_timestamp(datetime(2025, 1, 1))  # naive on purpose


def test_events_public_surface_is_importable() -> None:
    missing = [n for n in events_module.__all__ if not hasattr(events_module, n)]

    assert missing == []
    assert len(events_module.__all__) == len(set(events_module.__all__))
