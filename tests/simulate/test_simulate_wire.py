"""Events built as JSON: valid against their schemas and byte for byte the models'."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from codegen_forensics.errors import SimulationError
from codegen_forensics.events.schemas import (
    CodegenEvent,
    CodegenStatusEvent,
    event_name_for,
    format_timestamp,
    model_for,
)
from codegen_forensics.events.topics import OPERATIONS, TopicCatalog
from codegen_forensics.simulate import MemorySink, simulate
from codegen_forensics.simulate.wire import (
    Payload,
    PayloadCheck,
    check_payload,
    encode,
    timestamp_text,
)

from .conftest import troubled_config

EVENT_ROLES = ("request", "response", "status", "duplicate")
# A valid status event as the simulator writes it.
STATUS_PAYLOAD = {
    "session_id": "f35df835-11cf-4d31-82d0-ae84dc293a72",
    "timestamp": "2026-03-16T00:00:00.000000Z",
    "schema_version": "1.0",
    "status": "pending",
    "progress_percentage": 0.0,
    "message": "created",
    "metadata": {},
}


def _models(catalog: TopicCatalog) -> dict[str, type[CodegenEvent]]:
    models: dict[str, type[CodegenEvent]] = {catalog.status_topic: CodegenStatusEvent}
    for operation in OPERATIONS:
        topics = catalog.for_operation(operation)
        for category, topic in (
            ("request", topics.request),
            ("response", topics.response),
        ):
            name = event_name_for(category, operation)
            assert name is not None
            models[topic] = model_for(name)
    return models


def test_simulate_every_event_is_valid_and_serialises_as_its_model() -> None:
    # The sink takes no events, so nothing was checked through the models on the
    # way: every event message is checked here.
    catalog = TopicCatalog(prefix="wire_")
    sink = MemorySink(wants_rows=False, wants_events=False)
    simulate(troubled_config(sessions=120), sink, catalog=catalog, parallel=False)
    models = _models(catalog)
    checked = 0
    for message in sink.messages:
        if message.role not in EVENT_ROLES:
            continue
        assert message.value is not None
        event = models[message.topic].model_validate_json(message.value)
        assert event.to_json_bytes() == message.value
        assert str(event.session_id).encode() == message.key
        assert format_timestamp(event.timestamp) == timestamp_text(message.timestamp_ms)
        checked += 1
    assert {type(m.event) for m in sink.messages} == {type(None)}
    assert checked > 1000


def test_simulate_events_kept_for_the_sink_are_the_models_of_the_bytes() -> None:
    sink = MemorySink(wants_rows=False)
    simulate(troubled_config(sessions=20), sink, parallel=False)
    events = [m for m in sink.messages if m.role in ("request", "response", "status")]
    assert events
    for message in events:
        assert message.event is not None
        assert message.event.to_json_bytes() == message.value


def test_check_payload_refuses_a_payload_its_model_does_not_accept() -> None:
    data = {**STATUS_PAYLOAD, "session_id": "not-a-uuid"}
    with pytest.raises(SimulationError, match=r"invalid CodegenStatusEvent"):
        check_payload(Payload(CodegenStatusEvent, data), encode(data))


def test_check_payload_refuses_bytes_the_model_would_write_otherwise() -> None:
    # An int where the schema has a float parses, but the model writes 10.0.
    data = {**STATUS_PAYLOAD, "status": "analyzing", "progress_percentage": 10}
    with pytest.raises(SimulationError, match=r"does not serialise as its model"):
        check_payload(Payload(CodegenStatusEvent, data), encode(data))


def test_payload_check_takes_the_first_of_each_model_then_a_sample() -> None:
    data = dict(STATUS_PAYLOAD)
    check = PayloadCheck(every=10)
    for _ in range(25):
        check(Payload(CodegenStatusEvent, data), encode(data))
    assert (check.seen, check.checked) == (25, 3)


def test_payload_check_every_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"every must be 1 or more, got 0"):
        PayloadCheck(every=0)


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 3, 16, tzinfo=UTC),
        datetime(2026, 3, 16, 23, 59, 59, 999000, tzinfo=UTC),
        datetime(2024, 2, 29, 12, 0, 0, 7000, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 1000, tzinfo=UTC),
    ],
)
def test_timestamp_text_matches_the_models_format(when: datetime) -> None:
    ms = (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert timestamp_text(ms) == format_timestamp(when)
