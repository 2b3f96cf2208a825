"""Publishing events the way the code-generation system does, with delivery checked.

:class:`EventProducer` wraps a confluent-kafka producer configured as the design
document says (gzip, 16 KB batches, 10 ms linger, 1 MB messages, ``acks=all``,
idempotence). Each event is validated, keyed by its session id so a session keeps its
order, and stamped with its own timestamp. Every delivery is confirmed through a
delivery callback and counted.

librdkafka retries inside ``delivery.timeout.ms`` with its own exponential backoff.
When it still reports a failure that is worth retrying, the message is sent again after
an exponentially growing pause, at most ``max_retries`` times; a re-sent message may
overtake later events of its session. An event that still fails, or fails in a way no
retry can fix (a message larger than the topic allows), goes to its operation's
dead-letter topic in the documented envelope. If that fails too, :meth:`flush` raises
:class:`PublishError`.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Self

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException, Message, Producer
from pydantic import ValidationError

from codegen_forensics.errors import DeliveryError, InputError, PublishError
from codegen_forensics.events.dlq import DLQEnvelope, build_envelope
from codegen_forensics.events.schemas import (
    CodegenEvent,
    describe_validation_error,
    parse_event,
)
from codegen_forensics.events.topics import OPERATIONS, TopicCatalog, parse_topic
from codegen_forensics.settings import KafkaSettings

__all__ = [
    "MAX_MESSAGE_BYTES",
    "PRODUCER_CONFIG",
    "Delivery",
    "DeliveryState",
    "DeliveryStats",
    "EventProducer",
    "epoch_ms",
]

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1_048_576

# The design document's producer settings. ``delivery.timeout.ms`` bounds how long
# librdkafka keeps retrying one send before it reports a failure to us.
PRODUCER_CONFIG: dict[str, Any] = {
    "compression.type": "gzip",
    "batch.size": 16_384,
    "linger.ms": 10,
    "message.max.bytes": MAX_MESSAGE_BYTES,
    "acks": "all",
    "enable.idempotence": True,
    "retry.backoff.ms": 100,
    "retry.backoff.max.ms": 1_000,
    "delivery.timeout.ms": 30_000,
}

# Errors a later attempt can cure: the broker or the topic's leader is away, a send
# timed out, the topic is not (yet) known. Delivery reports carry no retriable flag,
# so the codes are listed here.
_RETRIABLE_CODES = frozenset(
    {
        RdKafkaError._MSG_TIMED_OUT,
        RdKafkaError._TIMED_OUT,
        RdKafkaError._TRANSPORT,
        RdKafkaError._ALL_BROKERS_DOWN,
        RdKafkaError._UNKNOWN_TOPIC,
        RdKafkaError._UNKNOWN_PARTITION,
        RdKafkaError._QUEUE_FULL,
        RdKafkaError._NODE_UPDATE,
        RdKafkaError.UNKNOWN_TOPIC_OR_PART,
        RdKafkaError.LEADER_NOT_AVAILABLE,
        RdKafkaError.NOT_LEADER_FOR_PARTITION,
        RdKafkaError.REQUEST_TIMED_OUT,
        RdKafkaError.BROKER_NOT_AVAILABLE,
        RdKafkaError.NETWORK_EXCEPTION,
        RdKafkaError.NOT_ENOUGH_REPLICAS,
        RdKafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        RdKafkaError.KAFKA_STORAGE_ERROR,
        RdKafkaError.NOT_CONTROLLER,
        RdKafkaError.FENCED_LEADER_EPOCH,
        RdKafkaError.UNKNOWN_LEADER_EPOCH,
    }
)

DeliveryState = Literal["pending", "delivered", "dead_lettered", "failed"]
MessageKind = Literal["event", "raw", "dlq"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(value: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime, without float rounding."""
    if value.tzinfo is None:
        raise InputError(
            f"timestamp {value.isoformat()!r} has no time zone; Kafka timestamps "
            "are taken from aware datetimes only"
        )
    return (value - _EPOCH) // timedelta(milliseconds=1)


@dataclass
class Delivery:
    """What became of one published message; filled in by delivery callbacks.

    ``state`` is ``pending`` until the broker answers, then ``delivered``,
    ``dead_lettered`` (the event is in ``dlq_topic``) or ``failed``.
    """

    kind: MessageKind
    topic: str
    key: bytes | None
    timestamp_ms: int | None
    value_bytes: int
    event_name: str | None = None
    session_id: str | None = None
    correlation_id: str | None = None
    state: DeliveryState = "pending"
    attempts: int = 0
    partition: int | None = None
    offset: int | None = None
    error: DeliveryError | None = None
    dlq_topic: str | None = None
    dlq_error: DeliveryError | None = None
    dlq_partition: int | None = None
    dlq_offset: int | None = None
    dlq_envelope: DLQEnvelope | None = None
    latency_ms: float | None = None
    started: float = field(default_factory=time.monotonic, repr=False)

    @property
    def done(self) -> bool:
        return self.state != "pending"


@dataclass
class DeliveryStats:
    """Counts over everything one producer published.

    ``value_bytes`` is what we handed to librdkafka; ``wire_bytes`` is what it sent to
    the brokers, compressed, as its statistics report it (0 until statistics arrive,
    which needs ``stats_interval_ms``).
    """

    published: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    failed: int = 0
    retried: int = 0
    value_bytes: int = 0
    wire_bytes: int = 0
    wire_messages: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def pending(self) -> int:
        return self.published - self.delivered - self.dead_lettered - self.failed

    def latency_percentile(self, q: float) -> float | None:
        """A delivery latency percentile (0-100), linear between closest ranks."""
        if not self.latencies_ms:
            return None
        values = sorted(self.latencies_ms)
        rank = (len(values) - 1) * q / 100.0
        low = int(rank)
        high = min(low + 1, len(values) - 1)
        return values[low] + (values[high] - values[low]) * (rank - low)


@dataclass
class _Outgoing:
    """A message on its way, with what we need to send it again or dead-letter it."""

    delivery: Delivery
    value: bytes | None
    headers: list[tuple[str, str | bytes | None]] | None
    event: CodegenEvent | None = None
    dlq_topic: str | None = None
    parent: Delivery | None = None  # set on the dead-letter copy of an event
    partition: int = -1  # -1 lets the partitioner choose
    # Sent by send_raw: a delivery at a later attempt is counted, not reported.
    quiet: bool = False


# Header values may be None: Kafka allows null header values.
Headers = Mapping[str, str | bytes | None] | Sequence[tuple[str, str | bytes | None]]


class EventProducer:
    """Publishes events, raw bytes and dead-letter messages with confirmed delivery.

    ``config`` overrides or extends :data:`PRODUCER_CONFIG`. ``consumer_group`` is
    recorded in dead-letter envelopes as the group on whose behalf we publish.
    ``on_delivery`` is called once per message when it reaches its final state.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        catalog: TopicCatalog | None = None,
        *,
        config: Mapping[str, Any] | None = None,
        max_retries: int = 3,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 5.0,
        consumer_group: str | None = None,
        status_dlq_topic: str | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        stats_interval_ms: int = 0,
        on_delivery: Callable[[Delivery], None] | None = None,
    ) -> None:
        if max_retries < 0:
            raise InputError(f"max_retries must be 0 or more, got {max_retries}")
        if max_message_bytes < 1:
            raise InputError(
                f"max_message_bytes must be 1 or more, got {max_message_bytes}"
            )
        self.settings = settings
        self.catalog = catalog or TopicCatalog()
        self.max_retries = max_retries
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.consumer_group = consumer_group
        self.status_dlq_topic = status_dlq_topic
        self.max_message_bytes = max_message_bytes
        self.on_delivery = on_delivery
        self.stats = DeliveryStats()

        self.config: dict[str, Any] = {**PRODUCER_CONFIG, **(config or {})}
        self.config["message.max.bytes"] = max(
            int(self.config["message.max.bytes"]), max_message_bytes
        )
        if stats_interval_ms:
            self.config["statistics.interval.ms"] = stats_interval_ms
        callbacks: dict[str, Any] = {
            "error_cb": self._on_client_error,
        }
        if stats_interval_ms:
            callbacks["stats_cb"] = self._on_stats
        self._producer = Producer(settings.client_config(**self.config, **callbacks))
        self._retry_heap: list[tuple[float, int, _Outgoing]] = []
        self._sequence = itertools.count()
        self._unreported: list[Delivery] = []
        self._fatal: RdKafkaError | None = None
        self._closed = False
        logger.info("producer ready %s", settings.describe())

    # -- publishing ---------------------------------------------------------------

    def publish(
        self,
        event: CodegenEvent | Mapping[str, Any],
        event_name: str | None = None,
        *,
        topic: str | None = None,
        dlq_topic: str | None = None,
        headers: Headers | None = None,
    ) -> Delivery:
        """Validate an event and send it to its topic, keyed by its session id.

        A mapping is validated against ``event_name``'s schema first. The topic comes
        from the catalog by the event's category and operation unless ``topic`` is
        given; failures go to ``dlq_topic``, by default the operation's DLQ topic.
        """
        model = self._validated(event, event_name)
        value = model.to_json_bytes()
        if isinstance(event, CodegenEvent):
            # A model instance may have been built without validation
            # (model_construct): what goes on the wire must parse back.
            try:
                type(model).model_validate_json(value)
            except ValidationError as exc:
                raise InputError(
                    describe_validation_error(model.event_name, exc)
                ) from exc

        target = topic or self.catalog.name(model.category, model.operation)
        key = str(model.session_id).encode("utf-8")
        delivery = Delivery(
            kind="event",
            topic=target,
            key=key,
            timestamp_ms=epoch_ms(model.timestamp),
            value_bytes=len(value),
            event_name=model.event_name,
            session_id=str(model.session_id),
            correlation_id=_str_or_none(model.correlation()),
        )
        outgoing = _Outgoing(
            delivery=delivery,
            value=value,
            headers=_headers(headers),
            event=model,
            dlq_topic=dlq_topic or self._dlq_for(model.operation),
        )
        self._check_size(outgoing, f"event {model.event_name}")
        self._send_new(outgoing)
        return delivery

    def publish_raw(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        timestamp_ms: int | None = None,
        headers: Headers | None = None,
    ) -> Delivery:
        """Send bytes as they are: poison messages, tombstones, foreign shapes.

        Nothing is validated and nothing is dead-lettered: a raw message that cannot
        be delivered is counted as failed and reported by :meth:`flush`.
        """
        _check_raw("publish_raw", value, key)
        delivery = Delivery(
            kind="raw",
            topic=topic,
            key=key,
            timestamp_ms=timestamp_ms,
            value_bytes=len(value or b""),
        )
        outgoing = _Outgoing(delivery=delivery, value=value, headers=_headers(headers))
        self._check_size(outgoing, f"raw message for topic {topic!r}")
        self._send_new(outgoing)
        return delivery

    def send_raw(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        timestamp_ms: int | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> None:
        """Send bytes as :meth:`publish_raw` does, for callers that send many.

        No :class:`Delivery` is kept for a message that is delivered: it is counted
        in :attr:`stats`, without a latency, and ``on_delivery`` is not called for
        it. A message that fails gets its :class:`Delivery` then and is treated as
        :meth:`publish_raw` treats it: retried, else counted as failed, reported to
        ``on_delivery`` and raised by :meth:`flush`. ``partition`` pins the message
        to a partition instead of leaving it to the partitioner; re-sends keep it.
        """
        _check_raw("send_raw", value, key)
        value_bytes = 0 if value is None else len(value)
        size = value_bytes if key is None else value_bytes + len(key)
        sent_headers = None
        if headers is not None:
            # A copy: the caller may reuse its list while the message waits.
            sent_headers = _headers(headers) or []
            for name, header in sent_headers:
                size += len(name.encode("utf-8")) + len(header or b"")
        if size > self.max_message_bytes:
            raise InputError(
                f"raw message for topic {topic!r} is {size} bytes with key and "
                f"headers; the largest message allowed is {self.max_message_bytes} "
                "bytes (message.max.bytes)"
            )
        if self._closed:
            raise PublishError("the producer is closed; create a new EventProducer")
        if self._fatal is not None:
            self._raise_if_fatal()

        self.stats.published += 1
        self.stats.value_bytes += value_bytes
        client = self._producer
        pinned = -1 if partition is None else partition
        # A failed message's report has neither its timestamp nor its headers.
        callback = functools.partial(
            self._on_quiet_delivery, timestamp_ms, sent_headers, time.monotonic()
        )
        while True:
            try:
                client.produce(
                    topic,
                    value,
                    key,
                    pinned,
                    on_delivery=callback,
                    timestamp=timestamp_ms or 0,
                    headers=sent_headers,
                )
                break
            except BufferError:
                client.poll(0.1)
            except KafkaException:
                # The general path turns the error into a failed or retried send.
                outgoing = _quiet_outgoing(
                    topic, value, key, timestamp_ms, sent_headers, pinned
                )
                self._hand_over(outgoing)
                break
        client.poll(0)
        if self._retry_heap:
            self._serve(0)

    def publish_dlq(
        self,
        message: DLQEnvelope | Mapping[str, Any] | bytes,
        *,
        topic: str | None = None,
        operation: str | None = None,
        key: bytes | None = None,
        timestamp_ms: int | None = None,
        headers: Headers | None = None,
    ) -> Delivery:
        """Send a dead-letter message of any shape to a DLQ topic.

        ``message`` is a :class:`DLQEnvelope`, a mapping of another shape (flat,
        client, minimal; sent as JSON) or bytes. The topic is ``topic``, else the DLQ
        topic of ``operation``, else that of the envelope's source topic. The key
        defaults to the session id found in the message.
        """
        found: Mapping[str, Any]
        if isinstance(message, DLQEnvelope):
            value = message.to_json_bytes()
            found = message.original_event
            when = message.dlq_timestamp
        elif isinstance(message, bytes):
            value, found, when = message, {}, None
        else:
            value = json.dumps(dict(message), default=str).encode("utf-8")
            found = _first_mapping(
                message, "original_event", "original_data", "payload"
            )
            when = None

        target = topic or self._dlq_target(message, operation)
        session = found.get("session_id")
        if key is None and session is not None:
            key = str(session).encode("utf-8")
        if timestamp_ms is None and when is not None:
            timestamp_ms = epoch_ms(when)
        return self.publish_raw(target, value, key, timestamp_ms, headers)

    def _validated(
        self, event: CodegenEvent | Mapping[str, Any], event_name: str | None
    ) -> CodegenEvent:
        if isinstance(event, CodegenEvent):
            if event_name is not None and event_name != event.event_name:
                raise InputError(
                    f"event_name {event_name!r} does not match the event, which is a "
                    f"{event.event_name}"
                )
            return event
        if not isinstance(event, Mapping):
            raise InputError(
                f"event must be a CodegenEvent or a mapping, got {type(event).__name__}"
            )
        if event_name is None:
            raise InputError(
                "event_name is required when the event is a mapping, e.g. "
                "publish(data, 'CodegenAnalysisRequest')"
            )
        return parse_event(event_name, dict(event))

    def _dlq_for(self, operation: str) -> str | None:
        if operation in OPERATIONS:
            return self.catalog.for_operation(operation).dlq
        return self.status_dlq_topic if operation == "session" else None

    def _dlq_target(
        self, message: DLQEnvelope | Mapping[str, Any] | bytes, operation: str | None
    ) -> str:
        if operation is None:
            source = None
            if isinstance(message, DLQEnvelope):
                source = message.source_topic
            elif isinstance(message, Mapping):
                source = message.get("source_topic") or message.get("original_topic")
            if isinstance(source, str):
                operation = parse_topic(source).operation
        if operation is None:
            raise InputError(
                "publish_dlq needs topic= or operation= when the message names no "
                "source topic"
            )
        target = self._dlq_for(operation)
        if target is None:
            raise InputError(
                f"operation {operation!r} has no DLQ topic; expected one of "
                f"{', '.join(OPERATIONS)} or an explicit topic="
            )
        return target

    def _check_size(self, outgoing: _Outgoing, what: str) -> None:
        delivery = outgoing.delivery
        size = delivery.value_bytes + len(delivery.key or b"")
        size += sum(len(k) + len(v or b"") for k, v in outgoing.headers or ())
        if size > self.max_message_bytes:
            raise InputError(
                f"{what} is {size} bytes with key and headers; the largest message "
                f"allowed is {self.max_message_bytes} bytes (message.max.bytes)"
            )

    # -- sending and delivery callbacks -------------------------------------------

    def _send_new(self, outgoing: _Outgoing) -> None:
        if self._closed:
            raise PublishError("the producer is closed; create a new EventProducer")
        self._raise_if_fatal()
        self.stats.published += 1
        self.stats.value_bytes += outgoing.delivery.value_bytes
        self._hand_over(outgoing)
        self._serve(0)

    def _hand_over(self, outgoing: _Outgoing) -> None:
        """The first send of a counted message; one refused outright is uncounted."""
        try:
            self._produce(outgoing)
        except InputError:
            # Never handed to librdkafka: it must not wait in flush() as pending.
            self.stats.published -= 1
            self.stats.value_bytes -= outgoing.delivery.value_bytes
            raise

    def _produce(self, outgoing: _Outgoing) -> None:
        delivery = outgoing.delivery
        delivery.attempts += 1
        callback = functools.partial(self._on_delivery, outgoing)
        while True:
            try:
                self._producer.produce(
                    delivery.topic,
                    outgoing.value,
                    delivery.key,
                    outgoing.partition,
                    on_delivery=callback,
                    timestamp=delivery.timestamp_ms or 0,
                    headers=outgoing.headers,
                )
                return
            except BufferError:
                # The local queue is full: let deliveries drain, then try again.
                self._producer.poll(0.1)
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if (
                    isinstance(error, RdKafkaError)
                    and error.code() == RdKafkaError.MSG_SIZE_TOO_LARGE
                ):
                    raise InputError(
                        f"message for topic {delivery.topic!r} is too large for "
                        f"librdkafka (message.max.bytes): {error.str()}"
                    ) from exc
                if isinstance(error, RdKafkaError):
                    self._on_delivery(outgoing, error, None)
                    return
                raise PublishError(
                    f"could not hand a message for topic {delivery.topic!r} to "
                    f"librdkafka: {exc}"
                ) from exc

    def _on_quiet_delivery(
        self,
        timestamp_ms: int | None,
        headers: list[tuple[str, str | bytes | None]] | None,
        started: float,
        error: RdKafkaError | None,
        message: Message | None,
    ) -> None:
        if error is None:
            self.stats.delivered += 1
            return
        # A failed send_raw message is rebuilt from the report to follow it further.
        assert message is not None
        partition = message.partition()
        outgoing = _quiet_outgoing(
            message.topic() or "",
            message.value(),
            message.key(),
            timestamp_ms,
            headers,
            -1 if partition is None else partition,
        )
        outgoing.delivery.started = started
        outgoing.delivery.attempts = 1
        self._on_delivery(outgoing, error, message)

    def _on_delivery(
        self, outgoing: _Outgoing, error: RdKafkaError | None, message: Message | None
    ) -> None:
        delivery = outgoing.delivery
        if error is None:
            assert message is not None
            self._finish_ok(outgoing, message)
            return

        retriable = error.code() in _RETRIABLE_CODES or error.retriable()
        failure = DeliveryError(
            f"{error.name()}: {error.str()} (topic {delivery.topic!r}, "
            f"attempt {delivery.attempts} of {self.max_retries + 1})",
            code=error.name(),
            retriable=retriable,
        )
        delivery.error = failure
        if error.fatal():
            self._fatal = error
        logger.warning(
            "delivery failed topic=%s key=%s attempt=%s code=%s retriable=%s",
            delivery.topic,
            delivery.key,
            delivery.attempts,
            error.name(),
            retriable,
        )
        if retriable and not error.fatal() and delivery.attempts <= self.max_retries:
            pause = min(
                self.backoff_max_s,
                self.backoff_initial_s * 2 ** (delivery.attempts - 1),
            )
            self.stats.retried += 1
            due = time.monotonic() + pause
            heapq.heappush(self._retry_heap, (due, next(self._sequence), outgoing))
            return

        if outgoing.event is not None and outgoing.dlq_topic is not None:
            self._dead_letter(outgoing, failure)
        else:
            self._finish_failed(outgoing)

    def _dead_letter(self, outgoing: _Outgoing, failure: DeliveryError) -> None:
        delivery = outgoing.delivery
        assert outgoing.event is not None
        assert outgoing.dlq_topic is not None
        envelope = build_envelope(
            outgoing.event,
            failure,
            source_topic=delivery.topic,
            consumer_group=self.consumer_group,
            retry_count=delivery.attempts - 1,
            max_retries=self.max_retries,
            stack_trace=f"{type(failure).__name__}: {failure}\n",
        )
        delivery.dlq_topic = outgoing.dlq_topic
        delivery.dlq_envelope = envelope
        value = envelope.to_json_bytes()
        copy = _Outgoing(
            delivery=Delivery(
                kind="dlq",
                topic=outgoing.dlq_topic,
                key=delivery.key,
                timestamp_ms=epoch_ms(envelope.dlq_timestamp),
                value_bytes=len(value),
                event_name=delivery.event_name,
                session_id=delivery.session_id,
                correlation_id=delivery.correlation_id,
            ),
            value=value,
            headers=None,
            parent=delivery,
        )
        logger.warning(
            "dead-lettering topic=%s dlq_topic=%s session_id=%s attempts=%s",
            delivery.topic,
            outgoing.dlq_topic,
            delivery.session_id,
            delivery.attempts,
        )
        self._produce(copy)

    def _finish_ok(self, outgoing: _Outgoing, message: Message) -> None:
        delivery = outgoing.delivery
        delivery.partition = message.partition()
        delivery.offset = message.offset()
        parent = outgoing.parent
        if parent is None:
            delivery.state = "delivered"
            self.stats.delivered += 1
            if not outgoing.quiet:
                self._finished(delivery)
            return
        delivery.state = "delivered"
        parent.dlq_partition = delivery.partition
        parent.dlq_offset = delivery.offset
        parent.state = "dead_lettered"
        self.stats.dead_lettered += 1
        self._finished(parent)

    def _finish_failed(self, outgoing: _Outgoing) -> None:
        delivery = outgoing.delivery
        delivery.state = "failed"
        target = outgoing.parent or delivery
        if outgoing.parent is not None:
            # The dead-letter copy failed as well: the event itself is lost.
            target.state = "failed"
            target.dlq_error = delivery.error
        self.stats.failed += 1
        self._unreported.append(target)
        logger.error(
            "undeliverable topic=%s session_id=%s error=%s",
            target.topic,
            target.session_id,
            target.error,
        )
        self._finished(target)

    def _finished(self, delivery: Delivery) -> None:
        delivery.latency_ms = (time.monotonic() - delivery.started) * 1000.0
        self.stats.latencies_ms.append(delivery.latency_ms)
        if self.on_delivery is not None:
            self.on_delivery(delivery)

    def _on_client_error(self, error: RdKafkaError) -> None:
        if error.fatal():
            self._fatal = error
            logger.error("kafka client error code=%s %s", error.name(), error.str())
            return
        # librdkafka retries the others (a broker that does not answer reports
        # every attempt); a message that still fails is reported on its own.
        logger.info("kafka client error code=%s %s", error.name(), error.str())

    def _on_stats(self, raw: str) -> None:
        stats = json.loads(raw)
        brokers = stats.get("brokers", {}).values()
        # Bootstrap entries repeat the real brokers' counters under another name.
        real = [b for b in brokers if b.get("nodeid", -1) >= 0]
        self.stats.wire_bytes = sum(int(b.get("txbytes", 0)) for b in real)
        self.stats.wire_messages = int(stats.get("txmsgs", 0))

    # -- driving the client -------------------------------------------------------

    def _serve(self, timeout: float) -> None:
        self._producer.poll(timeout)
        now = time.monotonic()
        while self._retry_heap and self._retry_heap[0][0] <= now:
            _, _, outgoing = heapq.heappop(self._retry_heap)
            logger.info(
                "re-sending topic=%s key=%s attempt=%s",
                outgoing.delivery.topic,
                outgoing.delivery.key,
                outgoing.delivery.attempts + 1,
            )
            self._produce(outgoing)

    def poll(self, timeout: float = 0) -> None:
        """Serve delivery callbacks and due re-sends without waiting for all."""
        self._serve(timeout)

    def flush(self, timeout: float | None = None) -> DeliveryStats:
        """Wait until every message is delivered, dead-lettered or failed.

        Raises :class:`PublishError` if a message could not be delivered even to its
        dead-letter topic, or if messages are still pending after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.stats.pending > 0:
            self._raise_if_fatal()
            wait = 0.1
            if self._retry_heap:
                wait = max(0.0, min(wait, self._retry_heap[0][0] - time.monotonic()))
            if deadline is not None and time.monotonic() >= deadline:
                raise PublishError(
                    f"{self.stats.pending} messages still pending after {timeout}s"
                )
            self._producer.flush(wait)
            self._serve(0)
        self._raise_if_fatal()
        if self._unreported:
            failed, self._unreported = self._unreported, []
            first = failed[0]
            raise PublishError(
                f"{len(failed)} messages could not be delivered, nor dead-lettered; "
                f"first: topic {first.topic!r} session_id={first.session_id}: "
                f"{first.error}"
                + (f"; dead-letter topic: {first.dlq_error}" if first.dlq_error else "")
            ) from first.error
        return self.stats

    def _raise_if_fatal(self) -> None:
        if self._fatal is not None:
            raise PublishError(
                f"the producer hit a fatal error and must be recreated: "
                f"{self._fatal.name()}: {self._fatal.str()}"
            )

    def close(self, timeout: float | None = 30.0) -> DeliveryStats:
        """Flush and release the client."""
        if self._closed:
            return self.stats
        try:
            return self.flush(timeout)
        finally:
            self._closed = True
            self._producer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        # Do not hide the error that is already on its way out.
        try:
            self.close()
        except PublishError:
            logger.exception("flush failed while leaving on an error")


def _headers(headers: Headers | None) -> list[tuple[str, str | bytes | None]] | None:
    if headers is None:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(k), v.encode("utf-8") if isinstance(v, str) else v) for k, v in items]


def _check_raw(method: str, value: object, key: object) -> None:
    for name, given in (("value", value), ("key", key)):
        if given is not None and not isinstance(given, bytes):
            raise InputError(
                f"{method} {name} must be bytes or None, got {type(given).__name__}"
            )


def _quiet_outgoing(
    topic: str,
    value: bytes | None,
    key: bytes | None,
    timestamp_ms: int | None,
    headers: Headers | None,
    partition: int,
) -> _Outgoing:
    """The record of a :meth:`EventProducer.send_raw` message that needs one."""
    delivery = Delivery(
        kind="raw",
        topic=topic,
        key=key,
        timestamp_ms=timestamp_ms,
        value_bytes=0 if value is None else len(value),
    )
    return _Outgoing(
        delivery=delivery,
        value=value,
        headers=_headers(headers) if headers else None,
        partition=partition,
        quiet=True,
    )


def _first_mapping(message: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    for key in keys:
        value = message.get(key)
        if isinstance(value, Mapping):
            return value
    return message


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)
