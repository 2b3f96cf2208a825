"""Generation in a worker process gives the same stream as generation in-process."""

from __future__ import annotations

import io

import pytest

from codegen_forensics.errors import SimulationError
from codegen_forensics.events.topics import TopicCatalog
from codegen_forensics.simulate import MemorySink, simulate
from codegen_forensics.simulate.traffic import _read_frame, write_frame

from .conftest import NOW, troubled_config


def _stream(sink: MemorySink) -> list[tuple[object, ...]]:
    return [
        (m.topic, m.partition, m.offset, m.key, m.value, m.timestamp_ms, m.role)
        for m in sink.messages
    ]


def test_simulate_in_a_worker_gives_the_same_stream_and_truth() -> None:
    config = troubled_config(sessions=60).model_copy(update={"start": None})
    catalog = TopicCatalog(prefix="w_")
    serial, parallel = MemorySink(), MemorySink()
    serial_truth = simulate(config, serial, catalog=catalog, now=NOW, parallel=False)
    parallel_truth = simulate(config, parallel, catalog=catalog, now=NOW, parallel=True)
    assert _stream(parallel) == _stream(serial)
    assert parallel.rows == serial.rows
    assert parallel_truth == serial_truth
    assert parallel_truth.config["start"] is None


def test_simulate_in_a_worker_sends_only_what_the_sink_wants() -> None:
    sink = MemorySink(wants_rows=False, wants_events=False)
    truth = simulate(troubled_config(sessions=30), sink, parallel=True)
    assert sink.rows == []
    assert {m.event for m in sink.messages} == {None}
    assert len(sink.messages) == sum(truth.messages_per_topic.values())
    assert truth.event_logs_rows > 0


def test_read_frame_of_a_stream_cut_short_raises() -> None:
    stream = io.BytesIO()
    write_frame(stream, "items", [1, 2, 3])
    stream.seek(0)
    assert _read_frame(stream) == ("items", [1, 2, 3])
    with pytest.raises(
        SimulationError, match=r"worker process ended without finishing"
    ):
        _read_frame(stream)
