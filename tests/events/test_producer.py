"""Publishing to the real broker and reading back exactly what arrived."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    Message,
    TopicPartition,
)

from codegen_forensics.errors import InputError, PublishError
from codegen_forensics.events.dlq import build_envelope, normalise_dlq
from codegen_forensics.events.producer import (
    PRODUCER_CONFIG,
    Delivery,
    EventProducer,
    epoch_ms,
)
from codegen_forensics.events.schemas import (
    CodegenAnalysisRequest,
    CodegenEvent,
    CodegenStatusEvent,
    parse_event,
)
from codegen_forensics.events.topics import TopicCatalog
from codegen_forensics.settings import KafkaSettings

# Unknown topics fail after this long instead of librdkafka's default 30 s.
FAST_FAILURE = {"topic.metadata.propagation.max.ms": 300}


def consumer(settings: KafkaSettings) -> Consumer:
    return Consumer(
        settings.client_config(
            **{
                "group.id": f"test-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
    )


def read_at(
    settings: KafkaSettings, topic: str, partition: int, offset: int
) -> Message:
    """The one message at a topic, partition and offset."""
    client = consumer(settings)
    try:
        client.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            message = client.poll(0.5)
            if message is not None and message.error() is None:
                return message
        raise AssertionError(f"nothing at {topic}[{partition}]@{offset}")
    finally:
        client.close()


def read_partition(
    settings: KafkaSettings, topic: str, partition: int
) -> list[Message]:
    """Every message of one partition, in offset order."""
    client = consumer(settings)
    try:
        _, high = client.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=10
        )
        client.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        messages: list[Message] = []
        deadline = time.monotonic() + 20
        while len(messages) < high and time.monotonic() < deadline:
            message = client.poll(0.5)
            if message is not None and message.error() is None:
                messages.append(message)
        return messages
    finally:
        client.close()


@pytest.fixture
def producer_factory(
    kafka_settings: KafkaSettings, provisioned_catalog: TopicCatalog
) -> Callable[..., EventProducer]:
    def make(**options: Any) -> EventProducer:
        options.setdefault("backoff_initial_s", 0.05)
        return EventProducer(kafka_settings, provisioned_catalog, **options)

    return make


def test_producer_every_event_type_reads_back_with_key_timestamp_and_value(
    kafka_settings: KafkaSettings,
    provisioned_catalog: TopicCatalog,
    producer_factory: Callable[..., EventProducer],
    events: list[CodegenEvent],
) -> None:
    with producer_factory() as producer:
        deliveries = [producer.publish(event) for event in events]

    assert [d.state for d in deliveries] == ["delivered"] * 9
    for event, delivery in zip(events, deliveries, strict=True):
        expected_topic = provisioned_catalog.name(event.category, event.operation)
        assert delivery.topic == expected_topic
        assert delivery.partition is not None
        assert delivery.offset is not None
        message = read_at(
            kafka_settings, expected_topic, delivery.partition, delivery.offset
        )

        assert message.key() == b"123e4567-e89b-12d3-a456-426614174000"
        # 12:30:0N.250 +02:00 is 10:30:0N.250 UTC.
        assert message.timestamp() == (TIMESTAMP_CREATE_TIME, epoch_ms(event.timestamp))
        assert epoch_ms(event.timestamp) % 1000 == 250
        value = json.loads(message.value() or b"")
        assert value == event.model_dump(mode="json")
        assert parse_event(event.event_name, value) == event
        assert message.headers() is None


def test_producer_same_session_keeps_order_on_one_partition(
    kafka_settings: KafkaSettings,
    provisioned_catalog: TopicCatalog,
    producer_factory: Callable[..., EventProducer],
) -> None:
    sessions = [uuid.uuid4() for _ in range(4)]
    with producer_factory() as producer:
        deliveries = [
            producer.publish(
                CodegenStatusEvent(
                    session_id=session,
                    status="generating",
                    progress_percentage=step,
                    message=f"step {step}",
                )
            )
            for step in range(10)
            for session in sessions
        ]

    for session in sessions:
        mine = [d for d in deliveries if d.session_id == str(session)]
        partitions = {d.partition for d in mine}
        assert len(partitions) == 1
        partition = partitions.pop()
        assert partition is not None
        stored = [
            json.loads(m.value() or b"")["progress_percentage"]
            for m in read_partition(
                kafka_settings, provisioned_catalog.status_topic, partition
            )
            if m.key() == str(session).encode()
        ]
        assert stored == [float(step) for step in range(10)]


def test_producer_uses_gzip_on_the_wire(
    producer_factory: Callable[..., EventProducer],
) -> None:
    producer = producer_factory(stats_interval_ms=100)
    session = uuid.uuid4()
    for step in range(100):
        producer.publish(
            CodegenStatusEvent(
                session_id=session,
                status="analyzing",
                progress_percentage=step,
                message="Analyzing PRD for node requirements " * 10,
            )
        )
    stats = producer.flush()
    # Statistics arrive every 100 ms; wait for one taken after the last delivery.
    deadline = time.monotonic() + 5
    while stats.wire_messages < 100 and time.monotonic() < deadline:
        producer.poll(0.1)
    producer.close()

    assert producer.config["compression.type"] == "gzip"
    assert stats.wire_messages == 100
    # The values repeat a sentence, so gzip shrinks them far below half.
    assert stats.wire_bytes * 4 < stats.value_bytes


def test_producer_configuration_follows_the_design_document() -> None:
    assert PRODUCER_CONFIG["compression.type"] == "gzip"
    assert PRODUCER_CONFIG["batch.size"] == 16_384
    assert PRODUCER_CONFIG["linger.ms"] == 10
    assert PRODUCER_CONFIG["message.max.bytes"] == 1_048_576
    assert PRODUCER_CONFIG["acks"] == "all"
    assert PRODUCER_CONFIG["enable.idempotence"] is True


def test_producer_dict_event_is_validated_and_sent(
    kafka_settings: KafkaSettings, producer_factory: Callable[..., EventProducer]
) -> None:
    data = {
        "session_id": "AAAAAAAA-0000-4000-8000-000000000001",
        "status": "completed",
        "progress_percentage": 100,
        "message": "done",
        "timestamp": "2025-10-14T10:30:00Z",
    }
    with producer_factory() as producer:
        delivery = producer.publish(data, "CodegenStatusEvent")

    assert delivery.partition is not None
    assert delivery.offset is not None
    message = read_at(
        kafka_settings, delivery.topic, delivery.partition, delivery.offset
    )
    assert message.key() == b"aaaaaaaa-0000-4000-8000-000000000001"
    assert message.timestamp() == (TIMESTAMP_CREATE_TIME, 1760437800000)
    assert json.loads(message.value() or b"")["timestamp"] == (
        "2025-10-14T10:30:00.000000Z"
    )


def test_producer_invalid_dict_is_refused_before_sending(
    producer_factory: Callable[..., EventProducer],
) -> None:
    producer = producer_factory()
    data = {"session_id": str(uuid.uuid4()), "status": "done", "message": "m"}

    with pytest.raises(InputError, match=r"CodegenStatusEvent\.status: Input should"):
        producer.publish(data, "CodegenStatusEvent")
    assert producer.close().published == 0


def test_producer_unvalidated_model_is_refused(
    producer_factory: Callable[..., EventProducer],
) -> None:
    producer = producer_factory()
    bad = CodegenAnalysisRequest.model_construct(
        session_id=uuid.uuid4(), correlation_id=uuid.uuid4()
    )

    with pytest.raises(InputError, match=r"CodegenAnalysisRequest\.prd_content"):
        producer.publish(bad)
    producer.close()


def test_producer_dict_without_event_name_is_refused(
    producer_factory: Callable[..., EventProducer], events: list[CodegenEvent]
) -> None:
    producer = producer_factory()

    with pytest.raises(InputError, match="event_name is required"):
        producer.publish(events[0].model_dump())
    with pytest.raises(InputError, match="does not match the event"):
        producer.publish(events[0], "CodegenStatusEvent")
    producer.close()


def test_producer_message_over_1mb_is_refused(
    producer_factory: Callable[..., EventProducer], events: list[CodegenEvent]
) -> None:
    producer = producer_factory()
    huge = events[0].model_copy(update={"prd_content": "x" * 1_048_576})

    with pytest.raises(
        InputError,
        match=r"event CodegenAnalysisRequest is 1048\d{3} bytes with key and "
        r"headers; the largest message allowed is 1048576 bytes",
    ):
        producer.publish(huge)
    with pytest.raises(InputError, match="is 1048577 bytes with key and headers"):
        producer.publish_raw("any-topic", b"x" * 1_048_577)
    assert producer.close().published == 0


def test_producer_retriable_failure_goes_to_dlq_with_complete_envelope(
    kafka_settings: KafkaSettings,
    provisioned_catalog: TopicCatalog,
    producer_factory: Callable[..., EventProducer],
    events: list[CodegenEvent],
) -> None:
    # With auto-creation off on the broker, a topic that does not exist keeps
    # failing with a retriable error until retries run out.
    missing = f"{provisioned_catalog.prefix}no_such_topic"
    finished: list[Delivery] = []
    producer = producer_factory(
        config=FAST_FAILURE,
        max_retries=2,
        consumer_group="omniarchon_codegen_intelligence",
        on_delivery=finished.append,
    )

    delivery = producer.publish(events[0], topic=missing)
    stats = producer.close()

    assert delivery.state == "dead_lettered"
    assert delivery.attempts == 3
    assert finished == [delivery]
    assert (stats.published, stats.dead_lettered, stats.retried) == (1, 1, 2)
    assert delivery.dlq_topic == provisioned_catalog.for_operation("analyze").dlq
    assert delivery.dlq_partition == 0
    assert delivery.dlq_offset is not None
    message = read_at(kafka_settings, delivery.dlq_topic, 0, delivery.dlq_offset)
    envelope = json.loads(message.value() or b"")

    assert message.key() == b"123e4567-e89b-12d3-a456-426614174000"
    assert set(envelope) == {
        "original_event",
        "error",
        "retry_count",
        "max_retries",
        "dlq_timestamp",
        "source_topic",
        "consumer_group",
    }
    assert envelope["original_event"] == events[0].model_dump(mode="json")
    assert envelope["error"]["error_type"] == "DeliveryError"
    assert "UNKNOWN_TOPIC" in envelope["error"]["error_message"]
    assert envelope["error"]["stack_trace"].startswith("DeliveryError: ")
    assert envelope["retry_count"] == 2
    assert envelope["max_retries"] == 2
    assert envelope["source_topic"] == missing
    assert envelope["consumer_group"] == "omniarchon_codegen_intelligence"
    assert envelope["dlq_timestamp"].endswith("Z")
    record = normalise_dlq(envelope)
    assert (record.shape, record.session_id, record.correlation_id) == (
        "envelope",
        "123e4567-e89b-12d3-a456-426614174000",
        "456e7890-e89b-12d3-a456-426614174000",
    )


def test_producer_message_too_large_for_topic_is_dead_lettered_at_once(
    kafka_settings: KafkaSettings,
    provisioned_catalog: TopicCatalog,
    producer_factory: Callable[..., EventProducer],
    topic_factory: Callable[..., str],
    events: list[CodegenEvent],
) -> None:
    small = topic_factory("small", config={"max.message.bytes": "2000"})
    # Random text does not compress, so the batch stays above the topic's limit.
    event = events[4].model_copy(update={"node_description": os.urandom(3000).hex()})
    producer = producer_factory(max_retries=3)

    delivery = producer.publish(event, topic=small)
    producer.close()

    assert delivery.state == "dead_lettered"
    assert delivery.attempts == 1
    assert delivery.error is not None
    assert delivery.error.code == "MSG_SIZE_TOO_LARGE"
    assert not delivery.error.retriable
    assert delivery.dlq_topic == provisioned_catalog.for_operation("pattern").dlq
    assert delivery.dlq_offset is not None
    message = read_at(kafka_settings, delivery.dlq_topic, 0, delivery.dlq_offset)
    envelope = json.loads(message.value() or b"")
    assert envelope["retry_count"] == 0
    assert envelope["max_retries"] == 3
    assert envelope["source_topic"] == small
    assert envelope["original_event"]["node_description"] == event.node_description  # type: ignore[attr-defined]
    assert envelope["error"]["error_message"].startswith("MSG_SIZE_TOO_LARGE: ")


def test_producer_dlq_failure_raises_publish_error(
    provisioned_catalog: TopicCatalog,
    producer_factory: Callable[..., EventProducer],
    events: list[CodegenEvent],
) -> None:
    prefix = provisioned_catalog.prefix
    producer = producer_factory(config=FAST_FAILURE, max_retries=1)
    delivery = producer.publish(
        events[0], topic=f"{prefix}missing", dlq_topic=f"{prefix}missing_dlq"
    )

    with pytest.raises(
        PublishError,
        match=r"1 messages could not be delivered, nor dead-lettered; first: topic "
        r"'t[0-9a-f]{8}_missing'.*dead-letter topic: _?UNKNOWN_TOPIC",
    ):
        producer.flush()
    assert delivery.state == "failed"
    assert producer.stats.failed == 1
    producer.close()


def test_producer_status_event_without_dlq_topic_fails_loudly(
    provisioned_catalog: TopicCatalog,
    producer_factory: Callable[..., EventProducer],
    events: list[CodegenEvent],
) -> None:
    # The design document has no dead-letter topic for status events.
    producer = producer_factory(config=FAST_FAILURE, max_retries=0)
    delivery = producer.publish(events[8], topic=f"{provisioned_catalog.prefix}gone")

    with pytest.raises(PublishError, match="could not be delivered, nor dead-lettered"):
        producer.flush()
    assert (delivery.state, delivery.attempts, delivery.dlq_topic) == (
        "failed",
        1,
        None,
    )
    producer.close()


def test_producer_status_event_goes_to_the_configured_status_dlq(
    provisioned_catalog: TopicCatalog,
    producer_factory: Callable[..., EventProducer],
    events: list[CodegenEvent],
) -> None:
    status_dlq = provisioned_catalog.for_operation("analyze").dlq
    producer = producer_factory(
        config=FAST_FAILURE, max_retries=0, status_dlq_topic=status_dlq
    )

    delivery = producer.publish(events[8], topic=f"{provisioned_catalog.prefix}gone")
    producer.close()

    assert (delivery.state, delivery.dlq_topic) == ("dead_lettered", status_dlq)
    assert delivery.dlq_envelope is not None
    assert delivery.dlq_envelope.original_event["status"] == "analyzing"


def test_producer_publish_raw_sends_bytes_as_given(
    kafka_settings: KafkaSettings,
    provisioned_catalog: TopicCatalog,
    producer_factory: Callable[..., EventProducer],
) -> None:
    topic = provisioned_catalog.for_operation("mixin").request
    with producer_factory() as producer:
        poison = producer.publish_raw(
            topic,
            b"\xff\xfe not json",
            key=b"k1",
            timestamp_ms=1760437800123,
            headers={"origin": "simulator", "empty": None},
        )
        tombstone = producer.publish_raw(topic, None, key=b"k1")

    first = read_at(kafka_settings, topic, poison.partition or 0, poison.offset or 0)
    second = read_at(
        kafka_settings, topic, tombstone.partition or 0, tombstone.offset or 0
    )
    assert poison.partition == tombstone.partition
    assert first.value() == b"\xff\xfe not json"
    assert first.key() == b"k1"
    assert first.timestamp() == (TIMESTAMP_CREATE_TIME, 1760437800123)
    assert first.headers() == [("origin", b"simulator"), ("empty", None)]
    assert second.value() is None
    assert producer.stats.delivered == 2


def test_producer_send_raw_lands_on_the_pinned_partitions(
    kafka_settings: KafkaSettings,
    producer_factory: Callable[..., EventProducer],
    topic_factory: Callable[..., str],
) -> None:
    topic = topic_factory("pinned", partitions=3)
    reported: list[Delivery] = []
    sent = [
        (2, b"first", b"k1", None),
        (0, b"second", b"k1", [("origin", b"simulator"), ("origin", None)]),
        (2, None, b"k2", None),
        (1, b"\xff\xfe", None, None),
        (2, b"third", b"k3", None),
    ]
    with producer_factory(on_delivery=reported.append) as producer:
        for number, (partition, value, key, headers) in enumerate(sent):
            producer.send_raw(
                topic, value, key, 1760437800000 + number, headers, partition
            )

    assert (producer.stats.published, producer.stats.delivered) == (5, 5)
    assert producer.stats.value_bytes == 5 + 6 + 0 + 2 + 5
    # Delivered messages are counted only: no Delivery, no latency.
    assert reported == []
    assert producer.stats.latencies_ms == []
    stored = {p: read_partition(kafka_settings, topic, p) for p in range(3)}
    assert [m.value() for m in stored[2]] == [b"first", None, b"third"]
    assert [m.key() for m in stored[2]] == [b"k1", b"k2", b"k3"]
    assert [m.timestamp()[1] for m in stored[2]] == [
        1760437800000,
        1760437800002,
        1760437800004,
    ]
    assert [(m.value(), m.headers()) for m in stored[0]] == [
        (b"second", [("origin", b"simulator"), ("origin", None)])
    ]
    assert [(m.value(), m.key()) for m in stored[1]] == [(b"\xff\xfe", None)]


def test_producer_send_raw_headers_as_mapping_and_copied_at_the_call(
    kafka_settings: KafkaSettings,
    producer_factory: Callable[..., EventProducer],
    topic_factory: Callable[..., str],
) -> None:
    topic = topic_factory("headers")
    reused: list[tuple[str, str | bytes | None]] = [("origin", "simulator-é")]
    with producer_factory() as producer:
        producer.send_raw(topic, b"one", b"k", headers={"kind": "poison", "n": None})
        producer.send_raw(topic, b"two", b"k", headers=reused)
        reused[0] = ("changed", b"after the call")

    stored = read_partition(kafka_settings, topic, 0)
    assert [(m.value(), m.headers()) for m in stored] == [
        (b"one", [("kind", b"poison"), ("n", None)]),
        (b"two", [("origin", "simulator-é".encode())]),
    ]


def test_producer_client_log_goes_to_the_package_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    producer = EventProducer(
        KafkaSettings(bootstrap_servers="127.0.0.1:1"), max_retries=0
    )
    caplog.set_level(logging.DEBUG)
    with caplog.at_level(logging.DEBUG, logger="codegen_forensics.librdkafka"):
        producer.send_raw("any-topic", b"x")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not caplog.records:
            producer.poll(0.2)

    client = [r for r in caplog.records if r.name == "codegen_forensics.librdkafka"]
    assert any("127.0.0.1:1" in r.getMessage() for r in client)
    # Nothing else warns about a broker that librdkafka keeps trying.
    others = [r for r in caplog.records if r.name != "codegen_forensics.librdkafka"]
    assert [r for r in others if r.levelno >= logging.WARNING] == []


def test_producer_send_raw_failure_is_retried_then_reported(
    provisioned_catalog: TopicCatalog,
    producer_factory: Callable[..., EventProducer],
) -> None:
    missing = f"{provisioned_catalog.prefix}no_such_topic"
    reported: list[Delivery] = []
    producer = producer_factory(
        config=FAST_FAILURE, max_retries=1, on_delivery=reported.append
    )

    producer.send_raw(missing, b"lost", b"k9", 1760437800123, partition=0)
    with pytest.raises(
        PublishError,
        match=r"1 messages could not be delivered, nor dead-lettered; first: topic "
        r"'t[0-9a-f]{8}_no_such_topic'.*_?UNKNOWN_TOPIC",
    ):
        producer.flush()

    assert len(reported) == 1
    failed = reported[0]
    assert (failed.kind, failed.state, failed.attempts) == ("raw", "failed", 2)
    assert (failed.topic, failed.key, failed.timestamp_ms) == (
        missing,
        b"k9",
        1760437800123,
    )
    assert failed.value_bytes == 4
    # From the first send: the last attempt waited 300 ms for the topic's metadata.
    assert failed.latency_ms is not None
    assert failed.latency_ms >= 300
    assert failed.error is not None
    assert failed.error.retriable
    stats = producer.stats
    assert (stats.published, stats.delivered, stats.retried, stats.failed) == (
        1,
        0,
        1,
        1,
    )
    producer.close()


def test_producer_send_raw_to_a_partition_that_does_not_exist_fails(
    producer_factory: Callable[..., EventProducer],
    topic_factory: Callable[..., str],
) -> None:
    topic = topic_factory("narrow", partitions=1)
    reported: list[Delivery] = []
    producer = producer_factory(max_retries=0, on_delivery=reported.append)

    producer.send_raw(topic, b"nowhere", b"k1", partition=4)
    with pytest.raises(PublishError, match="UNKNOWN_PARTITION"):
        producer.flush()

    assert [(d.state, d.attempts, d.topic) for d in reported] == [("failed", 1, topic)]
    producer.close()


@pytest.mark.parametrize("method", ["send_raw", "publish_raw"])
def test_producer_message_librdkafka_refuses_is_not_left_pending(
    producer_factory: Callable[..., EventProducer],
    topic_factory: Callable[..., str],
    method: str,
) -> None:
    # Under max_message_bytes, but over librdkafka's own limit once its record
    # overhead is added: refused at hand-over, so flush() must not wait for it.
    topic = topic_factory("edge")
    producer = producer_factory(max_retries=0)
    send = getattr(producer, method)

    with pytest.raises(InputError, match="is too large for librdkafka"):
        send(topic, b"x" * (1_048_576 - 10))
    assert (producer.stats.published, producer.stats.value_bytes) == (0, 0)
    send(topic, b"ok")
    stats = producer.flush(timeout=30)

    assert (stats.published, stats.delivered, stats.pending) == (1, 1, 0)
    producer.close()


def test_producer_send_raw_refuses_bad_input(
    producer_factory: Callable[..., EventProducer],
) -> None:
    producer = producer_factory()

    with pytest.raises(
        InputError, match="send_raw value must be bytes or None, got str"
    ):
        producer.send_raw("any-topic", "text")  # type: ignore[arg-type]
    with pytest.raises(
        InputError, match="publish_raw value must be bytes or None, got str"
    ):
        producer.publish_raw("any-topic", "text")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="send_raw key must be bytes or None, got int"):
        producer.send_raw("any-topic", b"x", 7)  # type: ignore[arg-type]
    with pytest.raises(
        InputError,
        match=r"raw message for topic 'any-topic' is 1048579 bytes with key and "
        r"headers; the largest message allowed is 1048576 bytes",
    ):
        producer.send_raw("any-topic", b"x" * 1_048_576, b"k", headers=[("h", b"v")])
    assert producer.close().published == 0


def test_producer_publish_dlq_shapes_pick_their_topic(
    kafka_settings: KafkaSettings,
    provisioned_catalog: TopicCatalog,
    producer_factory: Callable[..., EventProducer],
    events: list[CodegenEvent],
) -> None:
    envelope = build_envelope(
        events[2],
        ValueError("Invalid node_type"),
        source_topic=provisioned_catalog.for_operation("validate").request,
        consumer_group="omniarchon_codegen_intelligence",
        retry_count=3,
        max_retries=3,
    )
    flat = {
        "envelope_version": "1.0",
        "correlation_id": str(uuid.uuid4()),
        "payload": {"session_id": "123e4567-e89b-12d3-a456-426614174000"},
        "error": "TimeoutError: took 31s",
        "retry_count": 3,
        "dlq_timestamp": "2025-10-14T10:30:05Z",
    }
    with producer_factory() as producer:
        sent_envelope = producer.publish_dlq(envelope)
        sent_flat = producer.publish_dlq(flat, operation="mixin")
        sent_minimal = producer.publish_dlq(
            b"{}", topic=provisioned_catalog.for_operation("analyze").dlq
        )

    dlq = provisioned_catalog.for_operation
    assert sent_envelope.topic == dlq("validate").dlq
    assert sent_flat.topic == dlq("mixin").dlq
    assert sent_minimal.topic == dlq("analyze").dlq
    read = [
        read_at(kafka_settings, d.topic, 0, d.offset or 0)
        for d in (sent_envelope, sent_flat, sent_minimal)
    ]
    assert [normalise_dlq(json.loads(m.value() or b"")).shape for m in read] == [
        "envelope",
        "flat",
        "minimal",
    ]
    assert read[0].key() == b"123e4567-e89b-12d3-a456-426614174000"
    assert read[0].timestamp() == (
        TIMESTAMP_CREATE_TIME,
        epoch_ms(envelope.dlq_timestamp),
    )
    assert read[1].key() == b"123e4567-e89b-12d3-a456-426614174000"
    assert read[2].key() is None


def test_producer_publish_dlq_without_a_topic_is_refused(
    producer_factory: Callable[..., EventProducer],
) -> None:
    producer = producer_factory()

    with pytest.raises(InputError, match="publish_dlq needs topic= or operation="):
        producer.publish_dlq({"error": "x"})
    with pytest.raises(InputError, match="operation 'foo' has no DLQ topic"):
        producer.publish_dlq({"error": "x"}, operation="foo")
    producer.close()


def test_producer_closed_refuses_more(
    producer_factory: Callable[..., EventProducer], events: list[CodegenEvent]
) -> None:
    producer = producer_factory()
    producer.close()

    with pytest.raises(PublishError, match="the producer is closed"):
        producer.publish(events[0])


def test_epoch_ms_exact_and_naive_refused(events: list[CodegenEvent]) -> None:
    assert epoch_ms(events[0].timestamp) == 1760437800250

    with pytest.raises(InputError, match="has no time zone"):
        epoch_ms(events[0].timestamp.replace(tzinfo=None))
