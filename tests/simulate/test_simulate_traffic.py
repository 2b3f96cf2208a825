"""The generated stream on its own: determinism, order, validity, ground truth."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest

from codegen_forensics.events.decode import decode_message
from codegen_forensics.events.dlq import normalise_dlq
from codegen_forensics.events.topics import TopicCatalog, parse_topic
from codegen_forensics.simulate import (
    ERROR_KINDS,
    POISON_KINDS,
    MemorySink,
    SimulationConfig,
    simulate,
)
from codegen_forensics.simulate.content import ERROR_TEMPLATES
from codegen_forensics.simulate.traffic import partition_for

from .conftest import troubled_config


@pytest.fixture(scope="module")
def troubled() -> tuple[MemorySink, object]:
    sink = MemorySink()
    truth = simulate(troubled_config(), sink, catalog=TopicCatalog(prefix="p_"))
    return sink, truth


def _fields(sink: MemorySink) -> list[tuple[object, ...]]:
    return [
        (m.topic, m.partition, m.offset, m.key, m.value, m.timestamp_ms)
        for m in sink.messages
    ]


def test_simulate_same_seed_gives_identical_bytes() -> None:
    first, second = MemorySink(), MemorySink()
    simulate(troubled_config(seed=11, sessions=40), first)
    simulate(troubled_config(seed=11, sessions=40), second)
    assert _fields(first) == _fields(second)
    assert first.rows == second.rows


def test_simulate_other_seed_gives_other_traffic() -> None:
    first, second = MemorySink(), MemorySink()
    simulate(troubled_config(seed=11, sessions=40), first)
    simulate(troubled_config(seed=12, sessions=40), second)
    events = ("request", "response", "status")
    assert {m.value for m in first.messages if m.role in events}.isdisjoint(
        {m.value for m in second.messages if m.role in events}
    )


def test_simulate_emits_in_time_order_with_dense_offsets(troubled) -> None:
    sink, _ = troubled
    times = [m.timestamp_ms for m in sink.messages]
    assert times == sorted(times)
    rows = [r["timestamp"] for r in sink.rows]
    assert rows == sorted(rows)
    seen: dict[tuple[str, int], list[int]] = defaultdict(list)
    for message in sink.messages:
        seen[(message.topic, message.partition)].append(message.offset)
    for offsets in seen.values():
        assert offsets == list(range(len(offsets)))


def test_simulate_partitions_by_crc32_of_the_session_key(troubled) -> None:
    sink, truth = troubled
    for message in sink.messages:
        count = len(truth.messages_per_partition[message.topic])
        assert message.partition == partition_for(message.key, count)
    assert partition_for(b"abc", 3) == 0x352441C2 % 3


def test_simulate_window_and_timestamps_inside_it(troubled) -> None:
    _, truth = troubled
    assert truth.window_start == "2026-03-16T00:00:00Z"
    assert truth.window_end == "2026-03-18T00:00:00Z"
    assert truth.first_event >= truth.window_start


def test_simulate_events_decode_as_valid_and_poison_as_expected(troubled) -> None:
    sink, truth = troubled
    expected = {(p.topic, p.partition, p.offset): p for p in truth.poison}
    statuses: Counter[str] = Counter()
    for message in sink.messages:
        decoded = decode_message(message.topic, message.value)
        statuses[decoded["decode_status"]] += 1
        position = (message.topic, message.partition, message.offset)
        if position in expected:
            assert decoded["decode_status"] == expected[position].expected_decode_status
        elif message.role == "dlq":
            assert decoded["decode_status"] == "dlq"
        else:
            assert decoded["decode_status"] == "ok", decoded["decode_message"]
    wanted: Counter[str] = Counter()
    for per_topic in truth.decode_status_per_topic.values():
        wanted.update(per_topic)
    assert statuses == wanted


def test_simulate_poison_covers_every_kind_on_request_topics(troubled) -> None:
    _, truth = troubled
    assert set(truth.poison_by_kind) == set(POISON_KINDS)
    assert sum(truth.poison_by_kind.values()) == 12  # 0.15 per session, 80 sessions
    assert {parse_topic(p.topic).category for p in truth.poison} == {"request"}


def test_simulate_dlq_messages_normalise_to_their_shape_and_error(troubled) -> None:
    sink, truth = troubled
    by_position = {(m.topic, m.partition, m.offset): m for m in sink.messages}
    for entry in truth.dlq_messages:
        message = by_position[(entry.topic, entry.partition, entry.offset)]
        record = normalise_dlq(json.loads(message.value))
        assert record.shape == entry.shape
        assert record.error_type == entry.normalised_error_type
        if entry.shape == "envelope":
            assert record.error_type == entry.error_type
            assert record.error_message == entry.error_message
            assert record.retry_count == 3
            assert record.source_topic == entry.source_topic
        assert parse_topic(entry.topic).category == "dlq"
    assert set(truth.dlq_by_kind) == set(ERROR_KINDS)
    assert set(truth.dlq_by_shape) == {"envelope", "flat", "client", "minimal"}
    schemes = Counter(parse_topic(m.topic).scheme for m in truth.dlq_messages)
    assert set(schemes) == {"documented", "dotted"}


def test_simulate_each_error_kind_follows_one_template(troubled) -> None:
    _, truth = troubled
    templates: dict[str, set[str]] = defaultdict(set)
    messages: dict[str, set[str]] = defaultdict(set)
    for entry in truth.dlq_messages:
        templates[entry.kind].add(_mask(entry.error_message))
        messages[entry.kind].add(entry.error_message)
    for kind in ERROR_KINDS:
        assert templates[kind] == {ERROR_TEMPLATES[kind]}
        if truth.dlq_by_kind[kind] > 1:
            assert len(messages[kind]) > 1, f"{kind} messages never vary"


def _mask(text: str) -> str:
    text = re.sub(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", text
    )
    text = re.sub(r"'[^']*'", "<quoted>", text)
    text = re.sub(r"\b[a-z][a-z0-9-]*(?:\.[a-z0-9-]+)+:\d+\b", "<host>:<port>", text)
    text = re.sub(r"\b\d+(?:\.\d+)?s\b", "<duration>", text)
    text = re.sub(r"\breq-[0-9a-f]+\b", "<id>", text)
    return re.sub(r"\b\d+\b", "<n>", text)


def test_simulate_truth_counts_match_the_stream(troubled) -> None:
    sink, truth = troubled
    per_topic = Counter(m.topic for m in sink.messages)
    assert {t: per_topic[t] for t in truth.topics} == truth.messages_per_topic
    rows = Counter(f"{r['event_type']}/{r['status']}" for r in sink.rows)
    assert dict(rows) == truth.event_logs_by_type_and_status
    assert len(sink.rows) == truth.event_logs_rows
    dlq = [m for m in sink.messages if m.role == "dlq"]
    assert len(dlq) == len(truth.dlq_messages) == sum(truth.dlq_by_kind.values())
    assert rows["error/failed"] == len(dlq)


def test_simulate_failed_sessions_end_with_a_failed_status(troubled) -> None:
    sink, truth = troubled
    last_status: dict[str, str] = {}
    for message in sink.messages:
        if message.role == "status":
            last_status[message.key.decode()] = json.loads(message.value)["status"]
    failed = {f.session_id for f in truth.failed_sessions}
    dead_lettered = {m.session_id for m in truth.dlq_messages}
    assert dead_lettered <= failed
    for session in failed:
        assert last_status[session] == "failed"
    for session in truth.unfinished_sessions:
        assert last_status[session.session_id] not in ("completed", "failed")
    completed = [s for s, status in last_status.items() if status == "completed"]
    assert len(completed) == truth.session_outcomes["completed"]
    assert sum(truth.session_outcomes.values()) == truth.sessions


def test_simulate_unanswered_requests_get_no_response(troubled) -> None:
    sink, truth = troubled
    answered = {
        json.loads(m.value)["correlation_id"]
        for m in sink.messages
        if m.role == "response"
    }
    assert truth.unanswered_requests
    for request in truth.unanswered_requests:
        assert request.correlation_id not in answered


def test_simulate_duplicates_repeat_the_response_bytes(troubled) -> None:
    sink, truth = troubled
    by_position = {(m.topic, m.partition, m.offset): m for m in sink.messages}
    assert truth.duplicates
    for duplicate in truth.duplicates:
        first, second = (
            by_position[(duplicate.topic, duplicate.partition, o)]
            for o in duplicate.offsets
        )
        assert first.value == second.value
        assert json.loads(first.value)["correlation_id"] == duplicate.correlation_id


def test_simulate_bottleneck_slows_its_operation_in_its_hours(troubled) -> None:
    sink, truth = troubled
    bottleneck = truth.bottleneck
    assert bottleneck is not None
    assert bottleneck.windows == [
        ("2026-03-16T13:00:00Z", "2026-03-16T16:00:00Z"),
        ("2026-03-17T13:00:00Z", "2026-03-17T16:00:00Z"),
    ]
    assert bottleneck.affected_requests > 0
    inside, outside = [], []
    for message in sink.messages:
        if message.role != "response" or message.topic != bottleneck.response_topic:
            continue
        took = json.loads(message.value)["processing_time_ms"]
        when = datetime.fromtimestamp(message.timestamp_ms / 1000, UTC)
        (inside if 13 <= when.hour < 16 else outside).append(took)
    assert sum(inside) / len(inside) > 5000
    assert sum(outside) / len(outside) < 2000


def test_simulate_without_trouble_is_clean() -> None:
    sink = MemorySink()
    truth = simulate(troubled_config(sessions=60).with_trouble("none"), sink)
    assert truth.dlq_messages == []
    assert truth.poison == []
    assert truth.duplicates == []
    assert truth.unanswered_requests == []
    assert truth.unfinished_sessions == []
    assert truth.bottleneck is None
    assert {s.reason for s in truth.failed_sessions} <= {"invalid_code"}
    assert {m.role for m in sink.messages} == {"request", "response", "status"}


def test_simulate_defaults_mostly_meet_the_processing_targets() -> None:
    truth = simulate(SimulationConfig(sessions=300, seed=5).with_trouble("none"))
    for operation in ("analyze", "validate", "pattern", "mixin"):
        stats = truth.latency[operation]
        assert stats.avg_ms < 2000
        assert stats.p95_ms < 5000


def test_simulate_poison_arrives_inside_a_running_session(troubled) -> None:
    sink, truth = troubled
    spans: dict[str, list[int]] = {}
    for message in sink.messages:
        if message.role == "status":
            sid = message.key.decode()
            span = spans.setdefault(sid, [message.timestamp_ms, message.timestamp_ms])
            span[0] = min(span[0], message.timestamp_ms)
            span[1] = max(span[1], message.timestamp_ms)
    poison = [m for m in sink.messages if m.role == "poison"]
    assert len(poison) == len(truth.poison) > 0
    for message in poison:
        first, last = spans[message.key.decode()]
        assert first <= message.timestamp_ms <= last
    assert {p.session_id for p in truth.poison} <= set(spans)
