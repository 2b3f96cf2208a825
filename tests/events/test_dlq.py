"""Dead-letter envelopes: building the documented one, and reading every shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from codegen_forensics.events.dlq import (
    DLQ_SHAPES,
    DLQEnvelope,
    DLQRecord,
    build_envelope,
    normalise_dlq,
)
from codegen_forensics.events.schemas import CodegenEvent

SESSION = "123e4567-e89b-12d3-a456-426614174000"
CORRELATION = "456e7890-e89b-12d3-a456-426614174000"
FAILED_AT = datetime(2025, 10, 14, 10, 30, 5, tzinfo=UTC)
SOURCE = "omninode_codegen_request_analyze_v1"


def failing_step() -> None:
    raise ValueError("Invalid node_type: 'invalid'")


def raised() -> ValueError:
    try:
        failing_step()
    except ValueError as exc:
        return exc
    raise AssertionError("failing_step did not raise")


def test_build_envelope_is_complete(events: list[CodegenEvent]) -> None:
    envelope = build_envelope(
        events[0],
        raised(),
        source_topic=SOURCE,
        consumer_group="omniarchon_codegen_intelligence",
        retry_count=3,
        max_retries=3,
        failed_at=FAILED_AT,
    )
    data = json.loads(envelope.to_json_bytes())

    assert set(data) == {
        "original_event",
        "error",
        "retry_count",
        "max_retries",
        "dlq_timestamp",
        "source_topic",
        "consumer_group",
    }
    assert data["original_event"] == events[0].model_dump(mode="json")
    assert data["error"]["error_type"] == "ValueError"
    assert data["error"]["error_message"] == "Invalid node_type: 'invalid'"
    assert data["error"]["stack_trace"].startswith("Traceback (most recent call last)")
    assert "in failing_step" in data["error"]["stack_trace"]
    assert data["error"]["timestamp"] == "2025-10-14T10:30:05.000000Z"
    assert data["retry_count"] == 3
    assert data["max_retries"] == 3
    assert data["dlq_timestamp"] == "2025-10-14T10:30:05.000000Z"
    assert data["source_topic"] == SOURCE
    assert data["consumer_group"] == "omniarchon_codegen_intelligence"
    assert DLQEnvelope.model_validate_json(envelope.to_json_bytes()) == envelope


def test_build_envelope_from_dict_with_given_stack_trace() -> None:
    envelope = build_envelope(
        {"session_id": SESSION, "raw": True},
        TimeoutError("took 31s"),
        source_topic=SOURCE,
        consumer_group=None,
        retry_count=0,
        max_retries=3,
        stack_trace="no traceback",
    )

    assert envelope.original_event == {"session_id": SESSION, "raw": True}
    assert envelope.error.error_type == "TimeoutError"
    assert envelope.error.stack_trace == "no traceback"
    assert envelope.consumer_group is None
    assert envelope.dlq_timestamp.tzinfo is not None


def test_normalise_dlq_documented_envelope(events: list[CodegenEvent]) -> None:
    envelope = build_envelope(
        events[0],
        raised(),
        source_topic=SOURCE,
        consumer_group="omniarchon_codegen_intelligence",
        retry_count=3,
        max_retries=3,
        failed_at=FAILED_AT,
    )
    record = normalise_dlq(json.loads(envelope.to_json_bytes()))

    assert record.shape == "envelope"
    assert record.source_topic == SOURCE
    assert record.consumer_group == "omniarchon_codegen_intelligence"
    assert record.error_type == "ValueError"
    assert record.error_message == "Invalid node_type: 'invalid'"
    assert record.retry_count == 3
    assert record.max_retries == 3
    assert record.failure_time == FAILED_AT
    assert record.correlation_id == CORRELATION
    assert record.session_id == SESSION
    assert record.original_event == events[0].model_dump(mode="json")


def test_normalise_dlq_envelope_with_string_error_keeps_the_event() -> None:
    # An envelope whose error was a plain string used to lose its original event.
    message = {
        "original_event": {"session_id": SESSION, "correlation_id": CORRELATION},
        "error": "KeyError: 'node_type'",
        "retry_count": 1,
        "dlq_timestamp": "2025-10-14T10:30:05Z",
        "source_topic": SOURCE,
    }

    assert normalise_dlq(message) == DLQRecord(
        shape="envelope",
        source_topic=SOURCE,
        error_type="KeyError",
        error_message="'node_type'",
        retry_count=1,
        failure_time=FAILED_AT,
        correlation_id=CORRELATION,
        session_id=SESSION,
        original_event={"session_id": SESSION, "correlation_id": CORRELATION},
    )


def test_normalise_dlq_flat_shape() -> None:
    message = {
        "envelope_version": "1.0",
        "correlation_id": CORRELATION.upper(),
        "event_type": "CodegenAnalysisRequest",
        "timestamp": "2025-10-14T10:30:00Z",
        "payload": {"session_id": SESSION, "prd_content": "x"},
        "error": "TimeoutError: intelligence service took 31s",
        "retry_count": "3",
        "dlq_timestamp": "2025-10-14T10:30:05+00:00",
    }

    assert normalise_dlq(message) == DLQRecord(
        shape="flat",
        error_type="TimeoutError",
        error_message="intelligence service took 31s",
        retry_count=3,
        failure_time=FAILED_AT,
        correlation_id=CORRELATION,
        session_id=SESSION,
        original_event={"session_id": SESSION, "prd_content": "x"},
    )


def test_normalise_dlq_client_shape_defaults_the_reason() -> None:
    message = {
        "original_topic": SOURCE,
        "original_key": SESSION,
        "original_data": {"correlation_id": CORRELATION},
        "failure_timestamp": "2025-10-14T10:30:05",
        "retry_attempts": 5,
    }

    assert normalise_dlq(message) == DLQRecord(
        shape="client",
        source_topic=SOURCE,
        error_type="max_retries_exceeded",
        error_message="max_retries_exceeded",
        retry_count=5,
        failure_time=FAILED_AT,
        correlation_id=CORRELATION,
        session_id=SESSION,
        original_event={"correlation_id": CORRELATION},
    )


def test_normalise_dlq_client_shape_epoch_millis_failure_time() -> None:
    message = {
        "original_topic": SOURCE,
        "original_data": None,
        "failure_reason": "serialization_error",
        "failure_timestamp": 1760437805000,
    }
    record = normalise_dlq(message)

    assert record.failure_time == FAILED_AT
    assert record.error_type == "serialization_error"
    assert record.original_event is None


@pytest.mark.parametrize(
    ("message", "error_type", "error_message", "correlation"),
    [
        ({"error": "boom", "correlation_id": CORRELATION}, None, "boom", CORRELATION),
        (
            {"error": "ValueError: bad", "correlation_id": "not-a-uuid"},
            "ValueError",
            "bad",
            None,
        ),
        ({"error": None, "correlation_id": CORRELATION}, None, None, CORRELATION),
        ({"correlation_id": CORRELATION}, None, None, CORRELATION),
        ({"error": {"error_type": "E", "error_message": "m"}}, "E", "m", None),
        ({}, None, None, None),
    ],
    ids=["string", "typed-string", "null-error", "missing-error", "object", "empty"],
)
def test_normalise_dlq_minimal_shapes(
    message: dict[str, Any],
    error_type: str | None,
    error_message: str | None,
    correlation: str | None,
) -> None:
    assert normalise_dlq(message) == DLQRecord(
        shape="minimal",
        error_type=error_type,
        error_message=error_message,
        correlation_id=correlation,
    )


@pytest.mark.parametrize(
    "message",
    [None, [], ["error"], "error", 42, {"foo": 1}, {"error": "x", "extra": 1}],
    ids=["null", "empty-list", "list", "string", "number", "other-keys", "extra-key"],
)
def test_normalise_dlq_unknown_shapes(message: Any) -> None:
    assert normalise_dlq(message) == DLQRecord(shape="unknown")


def test_dlq_shapes_lists_every_shape() -> None:
    assert DLQ_SHAPES == ("envelope", "flat", "client", "minimal", "unknown")
