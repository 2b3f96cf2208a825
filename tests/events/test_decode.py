"""Decoding message values: one status per value, for every shape we know."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codegen_forensics.errors import InputError
from codegen_forensics.events.decode import (
    DECODED_COLUMNS,
    MessageBatch,
    MessageDecoder,
    canonical_json,
    decode_message,
    message_row,
    messages_table,
    parse_canonical,
)
from codegen_forensics.events.topics import TopicNameParser, default_parser
from codegen_forensics.snapshot import DECODE_STATUSES, KAFKA_MESSAGES_SCHEMA

SESSION = "6f1c2a0e-8d3b-4c5e-9f7a-1b2c3d4e5f60"
CORRELATION = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
RESPONSE_TOPIC = "omninode_codegen_response_analyze_v1"
STATUS_TOPIC = "omninode_codegen_status_session_v1"
DLQ_TOPIC = "omninode_codegen_dlq_analyze_v1"


def response_event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "session_id": SESSION,
        "correlation_id": CORRELATION,
        "timestamp": "2025-10-14T10:30:00.250000Z",
        "schema_version": "1.0",
        "analysis_result": {"nodes": ["effect"], "ü": 1},
        "confidence": 0.75,
        "processing_time_ms": 1234,
    }
    event.update(changes)
    return event


def encode(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8")


EXPECTED_PAYLOAD = (
    '{"analysis_result":{"nodes":["effect"],"ü":1},"confidence":0.75,'
    f'"correlation_id":"{CORRELATION}","processing_time_ms":1234,'
    f'"schema_version":"1.0","session_id":"{SESSION}",'
    '"timestamp":"2025-10-14T10:30:00.250000Z"}'
)
EVENT_TIME = datetime(2025, 10, 14, 10, 30, 0, 250000, tzinfo=UTC)


def test_decode_message_valid_response_is_ok() -> None:
    decoded = decode_message(RESPONSE_TOPIC, encode(response_event()))

    assert list(decoded) == list(DECODED_COLUMNS)
    assert decoded == {
        **dict.fromkeys(DECODED_COLUMNS),
        "category": "response",
        "operation": "analyze",
        "topic_version": 1,
        "decode_status": "ok",
        "payload": EXPECTED_PAYLOAD,
        "event_name": "CodegenAnalysisResponse",
        "schema_version": "1.0",
        "session_id": SESSION,
        "correlation_id": CORRELATION,
        "event_timestamp": EVENT_TIME,
        "processing_time_ms": 1234,
    }


def test_decode_message_uppercase_ids_become_lowercase() -> None:
    event = response_event(
        session_id=SESSION.upper(), correlation_id=CORRELATION.upper()
    )

    decoded = decode_message(RESPONSE_TOPIC, encode(event))

    assert decoded["decode_status"] == "ok"
    assert decoded["session_id"] == SESSION
    assert decoded["correlation_id"] == CORRELATION


def test_decode_message_offset_timestamp_becomes_utc() -> None:
    event = response_event(timestamp="2025-03-30T03:30:00+02:00")

    decoded = decode_message(RESPONSE_TOPIC, encode(event))

    assert decoded["event_timestamp"] == datetime(2025, 3, 30, 1, 30, tzinfo=UTC)
    assert decoded["event_timestamp"].utcoffset().total_seconds() == 0


def test_decode_message_status_event_has_status_and_no_correlation() -> None:
    event = {
        "session_id": SESSION,
        "timestamp": "2025-10-14T10:30:00Z",
        "status": "analyzing",
        "progress_percentage": 25.0,
        "message": "analysing",
    }

    decoded = decode_message(STATUS_TOPIC, encode(event))

    assert decoded["decode_status"] == "ok"
    assert decoded["event_name"] == "CodegenStatusEvent"
    assert decoded["status"] == "analyzing"
    assert decoded["correlation_id"] is None
    assert decoded["schema_version"] == "1.0"


def test_decode_message_null_value_is_tombstone() -> None:
    decoded = decode_message(RESPONSE_TOPIC, None)

    assert decoded["decode_status"] == "tombstone"
    assert decoded["decode_message"] == "null value (tombstone)"
    assert decoded["payload"] is None
    assert decoded["category"] == "response"


def test_decode_message_invalid_utf8_is_not_utf8() -> None:
    decoded = decode_message(RESPONSE_TOPIC, b'{"a": "\xff\xfe"}')

    assert decoded["decode_status"] == "not_utf8"
    assert (
        decoded["decode_message"] == "value is not UTF-8: invalid start byte at byte 7"
    )
    assert decoded["payload"] is None


def test_decode_message_text_is_not_json() -> None:
    decoded = decode_message(RESPONSE_TOPIC, b"hello {")

    assert decoded["decode_status"] == "not_json"
    assert decoded["decode_message"] == (
        "value is not JSON: Expecting value: line 1 column 1 (char 0)"
    )


def test_decode_message_nan_constant_is_not_json() -> None:
    decoded = decode_message(RESPONSE_TOPIC, b'{"confidence": NaN}')

    assert decoded["decode_status"] == "not_json"
    assert decoded["decode_message"] == "value is not JSON: NaN is not valid JSON"


def test_decode_message_json_string_of_json_is_double_encoded() -> None:
    value = encode(json.dumps(response_event()))

    decoded = decode_message(RESPONSE_TOPIC, value)

    assert decoded["decode_status"] == "double_encoded"
    assert decoded["decode_message"] == "JSON encoded twice; unwrapped"
    assert decoded["payload"] == EXPECTED_PAYLOAD
    assert decoded["session_id"] == SESSION


def test_decode_message_double_encoded_invalid_is_schema_invalid() -> None:
    value = encode(json.dumps(response_event(confidence=3)))

    decoded = decode_message(RESPONSE_TOPIC, value)

    assert decoded["decode_status"] == "schema_invalid"
    assert decoded["decode_message"] == (
        "JSON encoded twice; unwrapped; CodegenAnalysisResponse.confidence: "
        "Input should be less than or equal to 1 (got 3)"
    )
    assert decoded["session_id"] == SESSION


def test_decode_message_plain_json_string_is_schema_invalid() -> None:
    decoded = decode_message(RESPONSE_TOPIC, b'"just text"')

    assert decoded["decode_status"] == "schema_invalid"
    assert decoded["payload"] == '"just text"'
    assert decoded["decode_message"] == (
        "CodegenAnalysisResponse: expected a JSON object, got a string"
    )


def test_decode_message_envelope_is_unwrapped() -> None:
    envelope = {
        "envelope_version": "1.0",
        "event_id": "e1",
        "event_type": "codegen.response.analyze",
        "event_timestamp": "2025-10-14T10:30:01Z",
        "correlation_id": CORRELATION,
        "source_service": "omniarchon",
        "partition_key": SESSION,
        "payload": response_event(),
        "metadata": {"trace": "x"},
    }

    decoded = decode_message(RESPONSE_TOPIC, encode(envelope))

    assert decoded["decode_status"] == "enveloped"
    assert decoded["decode_message"] == "event under an envelope's payload; unwrapped"
    assert decoded["payload"] == EXPECTED_PAYLOAD
    assert decoded["event_timestamp"] == EVENT_TIME


def test_decode_message_envelope_with_text_payload_is_unwrapped() -> None:
    envelope = {"envelope_version": "1.0", "payload": json.dumps(response_event())}

    decoded = decode_message(RESPONSE_TOPIC, encode(envelope))

    assert decoded["decode_status"] == "enveloped"
    assert decoded["decode_message"] == (
        "envelope payload was JSON text; unwrapped; "
        "event under an envelope's payload; unwrapped"
    )
    assert decoded["payload"] == EXPECTED_PAYLOAD


def test_decode_message_envelope_ids_fill_an_invalid_event() -> None:
    envelope = {
        "envelope_version": "1.0",
        "correlation_id": CORRELATION,
        "event_timestamp": "2025-10-14T10:30:01Z",
        "payload": {"session_id": SESSION},
    }

    decoded = decode_message(RESPONSE_TOPIC, encode(envelope))

    assert decoded["decode_status"] == "schema_invalid"
    assert decoded["correlation_id"] == CORRELATION
    assert decoded["session_id"] == SESSION
    assert decoded["event_timestamp"] == datetime(2025, 10, 14, 10, 30, 1, tzinfo=UTC)


def test_decode_message_missing_and_wrong_fields_are_named() -> None:
    event = response_event(confidence="high")
    del event["analysis_result"]

    decoded = decode_message(RESPONSE_TOPIC, encode(event))

    assert decoded["decode_status"] == "schema_invalid"
    assert decoded["decode_message"] == (
        "CodegenAnalysisResponse.analysis_result: Field required (got {'session_id': "
        "'6f1c2a0e-8d3b-4c5e-9f7a-1b2c3d4e5f60', 'c...); "
        "CodegenAnalysisResponse.confidence: Input "
        "should be a valid number, unable to parse string as a number (got 'high')"
    )
    assert decoded["session_id"] == SESSION
    assert decoded["correlation_id"] == CORRELATION
    assert decoded["event_timestamp"] == EVENT_TIME
    assert decoded["processing_time_ms"] == 1234


def test_decode_message_non_string_schema_version_is_schema_invalid() -> None:
    decoded = decode_message(RESPONSE_TOPIC, encode(response_event(schema_version=1)))

    assert decoded["decode_status"] == "schema_invalid"
    assert decoded["decode_message"] == (
        "CodegenAnalysisResponse.schema_version: must be a string (got 1)"
    )
    assert decoded["schema_version"] is None


def test_decode_message_unknown_version_keeps_payload_and_ids() -> None:
    event = response_event(schema_version="2.0", retries=3)

    decoded = decode_message(RESPONSE_TOPIC, encode(event))

    assert decoded["decode_status"] == "unknown_schema_version"
    assert decoded["decode_message"] == (
        "CodegenAnalysisResponse.schema_version '2.0' is not one we have a schema "
        "for (known: 1.0); payload kept unvalidated"
    )
    assert decoded["schema_version"] == "2.0"
    assert json.loads(decoded["payload"])["retries"] == 3
    assert decoded["session_id"] == SESSION
    assert decoded["correlation_id"] == CORRELATION
    assert decoded["event_timestamp"] == EVENT_TIME
    assert decoded["processing_time_ms"] == 1234


def test_decode_message_naive_timestamp_is_read_as_utc_and_flagged() -> None:
    event = response_event(timestamp="2025-10-14T10:30:00")

    decoded = decode_message(RESPONSE_TOPIC, encode(event))

    assert decoded["decode_status"] == "naive_timestamp"
    assert decoded["decode_message"] == (
        "CodegenAnalysisResponse.timestamp '2025-10-14T10:30:00' has no time zone; "
        "read as UTC"
    )
    assert decoded["event_timestamp"] == datetime(2025, 10, 14, 10, 30, tzinfo=UTC)
    assert json.loads(decoded["payload"])["timestamp"] == "2025-10-14T10:30:00"


def test_decode_message_naive_timestamp_with_other_errors_is_schema_invalid() -> None:
    event = response_event(timestamp="2025-10-14T10:30:00", confidence=-1)

    decoded = decode_message(RESPONSE_TOPIC, encode(event))

    assert decoded["decode_status"] == "schema_invalid"
    assert decoded["decode_message"] == (
        "timestamp has no time zone; read as UTC; CodegenAnalysisResponse.confidence"
        ": Input should be greater than or equal to 0 (got -1)"
    )


ENVELOPE_DLQ = {
    "original_event": {
        "session_id": SESSION,
        "correlation_id": CORRELATION,
        "timestamp": "2025-10-14T10:29:00Z",
        "schema_version": "1.0",
    },
    "error": {
        "error_type": "ValidationError",
        "error_message": "Invalid node_type: 'invalid'",
        "stack_trace": "Traceback ...",
        "timestamp": "2025-10-14T10:30:00Z",
    },
    "retry_count": 3,
    "max_retries": 3,
    "dlq_timestamp": "2025-10-14T10:30:05Z",
    "source_topic": "omninode_codegen_request_analyze_v1",
    "consumer_group": "omniarchon_codegen_intelligence",
}


def test_decode_message_documented_dlq_envelope_is_normalised() -> None:
    decoded = decode_message(DLQ_TOPIC, encode(ENVELOPE_DLQ))

    assert decoded == {
        **dict.fromkeys(DECODED_COLUMNS),
        "category": "dlq",
        "operation": "analyze",
        "topic_version": 1,
        "decode_status": "dlq",
        "decode_message": "dead-letter message, envelope shape",
        "payload": canonical_json(ENVELOPE_DLQ),
        "event_name": "CodegenAnalysisRequest",
        "schema_version": "1.0",
        "session_id": SESSION,
        "correlation_id": CORRELATION,
        "event_timestamp": datetime(2025, 10, 14, 10, 29, tzinfo=UTC),
        "dlq_shape": "envelope",
        "dlq_source_topic": "omninode_codegen_request_analyze_v1",
        "dlq_consumer_group": "omniarchon_codegen_intelligence",
        "dlq_error_type": "ValidationError",
        "dlq_error_message": "Invalid node_type: 'invalid'",
        "dlq_stack_trace": "Traceback ...",
        "dlq_retry_count": 3,
        "dlq_max_retries": 3,
        "dlq_failure_time": datetime(2025, 10, 14, 10, 30, 5, tzinfo=UTC),
    }


@pytest.mark.parametrize(
    ("message", "shape", "error_type", "error_message", "retries"),
    [
        (
            {
                "envelope_version": "1",
                "correlation_id": CORRELATION,
                "event_type": "x",
                "timestamp": "2025-01-01T00:00:00Z",
                "payload": {"session_id": SESSION},
                "error": "TimeoutError: took 31s",
                "retry_count": 2,
                "dlq_timestamp": "2025-01-01T00:00:01Z",
            },
            "flat",
            "TimeoutError",
            "took 31s",
            2,
        ),
        (
            {
                "original_topic": "omninode_codegen_request_analyze_v1",
                "original_key": SESSION,
                "original_data": {"correlation_id": CORRELATION},
                "failure_timestamp": "2025-01-01T00:00:01Z",
                "retry_attempts": 5,
            },
            "client",
            "max_retries_exceeded",
            "max_retries_exceeded",
            5,
        ),
        (
            {"error": "boom", "correlation_id": CORRELATION},
            "minimal",
            None,
            "boom",
            None,
        ),
        ({}, "minimal", None, None, None),
    ],
)
def test_decode_message_dlq_shapes_are_normalised(
    message: dict[str, Any],
    shape: str,
    error_type: str | None,
    error_message: str | None,
    retries: int | None,
) -> None:
    decoded = decode_message(DLQ_TOPIC, encode(message))

    assert decoded["decode_status"] == "dlq"
    assert decoded["dlq_shape"] == shape
    assert decoded["dlq_error_type"] == error_type
    assert decoded["dlq_error_message"] == error_message
    assert decoded["dlq_retry_count"] == retries
    assert decoded["payload"] == canonical_json(message)


def test_decode_message_unknown_dlq_shape_is_kept_raw() -> None:
    decoded = decode_message(DLQ_TOPIC, b'[1, "two"]')

    assert decoded["decode_status"] == "dlq"
    assert decoded["dlq_shape"] == "unknown"
    assert decoded["payload"] == '[1,"two"]'
    assert decoded["decode_message"] == (
        "dead-letter message of unknown shape (list); kept raw"
    )


def test_decode_message_dlq_not_json_has_unknown_shape() -> None:
    decoded = decode_message(DLQ_TOPIC, b"Traceback: boom")

    assert decoded["decode_status"] == "not_json"
    assert decoded["dlq_shape"] == "unknown"


def test_decode_message_dotted_dlq_topic_is_dlq() -> None:
    topic = "dev.omninode-bridge.codegen.request-analyze.v1.dlq"

    decoded = decode_message(topic, encode({"error": "x"}))

    assert decoded["category"] == "dlq"
    assert decoded["decode_status"] == "dlq"
    assert decoded["dlq_shape"] == "minimal"


def test_decode_message_unmatched_topic_keeps_payload_and_ids() -> None:
    decoded = decode_message("payments", encode(response_event()))

    assert decoded["category"] == "unknown"
    assert decoded["operation"] is None
    assert decoded["decode_status"] == "unparsed_topic"
    assert decoded["decode_message"] == (
        "topic name matches no known scheme; value kept raw"
    )
    assert decoded["payload"] == EXPECTED_PAYLOAD
    assert decoded["session_id"] == SESSION
    assert decoded["event_name"] is None


def test_decode_message_operation_without_schema_is_unparsed_topic() -> None:
    decoded = decode_message("omninode_codegen_request_deploy_v1", b"{}")

    assert decoded["decode_status"] == "unparsed_topic"
    assert decoded["decode_message"] == (
        "no event schema for category=request operation=deploy; value kept raw"
    )


def test_decode_message_custom_parser_scheme_is_used() -> None:
    parser = default_parser()
    parser.register(
        "short",
        r"cg-(?P<category>response)-(?P<operation>analyze)"
        r"-(?P<version>\d+)",
    )

    decoded = decode_message(
        "cg-response-analyze-3", encode(response_event()), parser=parser
    )

    assert decoded["decode_status"] == "ok"
    assert decoded["topic_version"] == 3


def test_decode_message_every_status_is_declared() -> None:
    values: list[tuple[str, bytes | None]] = [
        (RESPONSE_TOPIC, encode(response_event())),
        (RESPONSE_TOPIC, None),
        (RESPONSE_TOPIC, b"\xff"),
        (RESPONSE_TOPIC, b"{"),
        (RESPONSE_TOPIC, encode(json.dumps(response_event()))),
        (
            RESPONSE_TOPIC,
            encode({"envelope_version": "1", "payload": response_event()}),
        ),
        (RESPONSE_TOPIC, b"{}"),
        (RESPONSE_TOPIC, encode(response_event(schema_version="2.0"))),
        (RESPONSE_TOPIC, encode(response_event(timestamp="2025-01-01T00:00:00"))),
        (DLQ_TOPIC, b"{}"),
        ("other", b"{}"),
    ]

    statuses = [
        decode_message(topic, value)["decode_status"] for topic, value in values
    ]

    assert statuses == list(DECODE_STATUSES)


def test_canonical_json_sorts_keys_without_spaces_or_escapes() -> None:
    assert (
        canonical_json({"b": [1, 2.5, None], "a": "é"}) == '{"a":"é","b":[1,2.5,null]}'
    )


def test_message_row_builds_a_full_row() -> None:
    row = message_row(
        RESPONSE_TOPIC,
        2,
        41,
        encode(response_event()),
        key=SESSION.encode(),
        timestamp=1760437800250,
        timestamp_type=1,
        headers=[("trace", b"a"), ("trace", None), ("x", b"")],
    )

    assert list(row) == KAFKA_MESSAGES_SCHEMA.names
    assert row["topic"] == RESPONSE_TOPIC
    assert row["partition"] == 2
    assert row["offset"] == 41
    assert row["timestamp"] == datetime(2025, 10, 14, 10, 30, 0, 250000, tzinfo=UTC)
    assert row["timestamp_type"] == "create_time"
    assert row["headers"] == [
        {"key": "trace", "value": b"a"},
        {"key": "trace", "value": None},
        {"key": "x", "value": b""},
    ]
    assert row["key_size"] == 36
    assert row["value_size"] == len(encode(response_event()))
    assert row["decode_status"] == "ok"


@pytest.mark.parametrize(
    ("timestamp", "timestamp_type"),
    [(None, None), (-1, 1), (1760437800250, 0), (None, "create_time")],
)
def test_message_row_missing_timestamp_is_null(
    timestamp: int | None, timestamp_type: int | str | None
) -> None:
    row = message_row(
        RESPONSE_TOPIC, 0, 0, None, timestamp=timestamp, timestamp_type=timestamp_type
    )

    assert row["timestamp"] is None
    assert row["timestamp_type"] is None


def test_message_row_datetime_and_log_append_time_are_kept() -> None:
    when = datetime(2025, 10, 26, 1, 30, tzinfo=UTC)

    row = message_row(
        RESPONSE_TOPIC, 0, 0, b"x", timestamp=when, timestamp_type="log_append_time"
    )

    assert row["timestamp"] == when
    assert row["timestamp_type"] == "log_append_time"
    assert row["headers"] == []
    assert row["key"] is None
    assert row["key_size"] is None


def test_message_row_naive_datetime_is_refused() -> None:
    with pytest.raises(InputError, match="message timestamp '2025-10-26T01:30:00' has"):
        message_row(RESPONSE_TOPIC, 0, 0, b"x", timestamp=datetime(2025, 10, 26, 1, 30))


def test_message_row_unknown_timestamp_type_is_refused() -> None:
    with pytest.raises(InputError, match="timestamp_type 'broker' is not known"):
        message_row(RESPONSE_TOPIC, 0, 0, b"x", timestamp=1, timestamp_type="broker")


def test_messages_table_matches_rows_built_one_by_one() -> None:
    messages = [
        {
            "topic": RESPONSE_TOPIC,
            "partition": 0,
            "offset": i,
            "value": value,
            "timestamp": 1760437800000 + i,
            "timestamp_type": 1,
            "headers": [("h", None)] if i else None,
        }
        for i, value in enumerate([encode(response_event()), None, b"\x80", b"[]"])
    ]

    table = messages_table(messages)

    assert table.schema == KAFKA_MESSAGES_SCHEMA
    assert table.to_pylist() == [
        message_row(
            m["topic"],
            m["partition"],
            m["offset"],
            m["value"],
            timestamp=m["timestamp"],
            timestamp_type=1,
            headers=m["headers"],
        )
        for m in messages
    ]
    assert table.column("decode_status").to_pylist() == [
        "ok",
        "tombstone",
        "not_utf8",
        "schema_invalid",
    ]


def test_message_batch_empties_after_each_batch() -> None:
    batch = MessageBatch()
    batch.append(RESPONSE_TOPIC, 0, 0, b"{}")
    batch.append(RESPONSE_TOPIC, 0, 1, b"{}")

    first = batch.to_batch()
    second = batch.to_batch()

    assert first.num_rows == 2
    assert batch.value_bytes == 0
    assert second.num_rows == 0
    assert second.schema == KAFKA_MESSAGES_SCHEMA


def test_message_batch_out_of_range_numbers_are_null() -> None:
    batch = MessageBatch()
    dlq = {
        "error": {"error_type": "E", "error_message": "m"},
        "original_event": {},
        "retry_count": 2**40,
        "max_retries": 3,
    }
    batch.append(DLQ_TOPIC, 0, 0, encode(dlq))
    batch.append(
        RESPONSE_TOPIC,
        0,
        1,
        encode(response_event(processing_time_ms=2**70, schema_version="9")),
    )

    rows = pa.Table.from_batches([batch.to_batch()]).to_pylist()

    assert rows[0]["dlq_retry_count"] is None
    assert rows[0]["dlq_max_retries"] == 3
    assert rows[1]["processing_time_ms"] is None


def test_custom_parser_instances_do_not_leak_between_calls() -> None:
    parser = TopicNameParser()

    decoded = decode_message(RESPONSE_TOPIC, b"{}", parser=parser)

    assert decoded["category"] == "unknown"
    assert decode_message(RESPONSE_TOPIC, b"{}")["category"] == "response"


# The quick path for valid events must give the same rows as the full decoder.

_JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_JSON_VALUES = st.recursive(
    _JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(value=_JSON_VALUES)
def test_parse_canonical_agrees_with_json_module(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=bool(len(str(value)) % 2))

    parsed = parse_canonical(text.encode())

    if parsed is not None:
        assert parsed == (json.loads(text), canonical_json(json.loads(text)))


@pytest.mark.parametrize(
    "text",
    [
        b"12345678901234567890123456789",
        b'{"n": -9223372036854775809}',
        b'{"x": 1e-05}',
        b"[0.00001, 1e-7, 5e-324]",
        b"1e400",
        b'{"a": NaN}',
        b'"\\ud800"',
        b"\xef\xbb\xbf{}",
        b"[1,]",
        b'{"a":1,"a":2}',
    ],
)
def test_parse_canonical_leaves_divergent_text_to_json_module(text: bytes) -> None:
    parsed = parse_canonical(text)

    if parsed is not None:
        assert parsed == (json.loads(text), canonical_json(json.loads(text)))


_EVENT_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "session_id": st.sampled_from([SESSION, SESSION.upper(), "x", 5]),
        "correlation_id": st.sampled_from([CORRELATION, "{" + CORRELATION + "}"]),
        "timestamp": st.sampled_from(
            [
                "2025-10-14T10:30:00.250000Z",
                "2025-10-14T10:30:00+02:00",
                "2025-10-14T10:30:00",
                "yesterday",
                1760437800,
            ]
        ),
        "schema_version": st.sampled_from(["1.0", "2.0", 1, None]),
        "prd_content": st.text(max_size=8),
        "analysis_type": st.sampled_from(["full", "architecture", "bogus"]),
        "workspace_context": _JSON_VALUES,
        "analysis_result": _JSON_VALUES,
        "confidence": st.floats(-1, 2) | st.just(1e-7),
        "processing_time_ms": st.integers(-5, 2**65),
        "status": st.sampled_from(["analyzing", "completed", "nope"]),
        "progress_percentage": st.floats(0, 100),
        "message": st.text(max_size=5),
        "extra": st.integers(),
    },
)


@settings(max_examples=400, deadline=None)
@given(
    topic=st.sampled_from(
        [
            "omninode_codegen_request_analyze_v1",
            RESPONSE_TOPIC,
            STATUS_TOPIC,
            DLQ_TOPIC,
            "payments",
        ]
    ),
    event=_EVENT_FIELDS,
    wrap=st.sampled_from(["plain", "twice", "envelope"]),
)
def test_message_decoder_quick_path_matches_full_decoder(
    topic: str, event: dict[str, Any], wrap: str
) -> None:
    value: Any = event
    if wrap == "twice":
        value = json.dumps(event)
    elif wrap == "envelope":
        value = {"envelope_version": "1", "payload": event}
    raw = encode(value)

    quick = MessageDecoder().decode(topic, raw)

    assert quick == MessageDecoder(fast=False).decode(topic, raw)


@settings(max_examples=300, deadline=None)
@given(
    changes=st.dictionaries(
        st.sampled_from(
            ["timestamp", "confidence", "analysis_result", "processing_time_ms"]
        ),
        st.sampled_from(
            [
                "2025-10-14T10:30:00.250000+00:00",
                "2025-10-14T10:30:00",
                0.5,
                1e-9,
                0,
                2**64,
                -(2**64),
                {"deep": [1.5, 1e-6, 10**20, None, "ü"]},
                {"n": 123456789.125},
            ]
        ),
        max_size=2,
    )
)
def test_message_decoder_quick_path_matches_on_nearly_valid_events(
    changes: dict[str, Any],
) -> None:
    raw = encode(response_event(**changes))

    quick = MessageDecoder().decode(RESPONSE_TOPIC, raw)

    assert quick == MessageDecoder(fast=False).decode(RESPONSE_TOPIC, raw)


def test_message_decoder_quick_path_gives_the_documented_valid_row() -> None:
    raw = encode(response_event())

    assert MessageDecoder().decode(RESPONSE_TOPIC, raw) == MessageDecoder(
        fast=False
    ).decode(RESPONSE_TOPIC, raw)
    assert parse_canonical(raw) == (response_event(), EXPECTED_PAYLOAD)


def test_decode_lone_surrogate_gives_escaped_canonical_text() -> None:
    row = decode_message(
        "omninode_codegen_request_analyze_v1", b'{"b": "\\ud800", "a": "\xc3\xa9"}'
    )

    assert row["payload"] == '{"a":"\\u00e9","b":"\\ud800"}'
    assert row["payload"].encode("utf-8")
    assert canonical_json({"a": "é"}) == '{"a":"é"}'
