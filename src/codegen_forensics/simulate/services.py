"""Simulated traffic sent to real services: Kafka through the producer, Postgres
through the event-table writer.

Events are built as JSON, byte for byte what the schema models publish (see
:mod:`~codegen_forensics.simulate.wire`; a sample is parsed back through the models
during the run), and go through :meth:`EventProducer.send_raw` keyed by session id,
stamped with the event's own time and sent to the partition the ground truth names:
exactly what :meth:`EventProducer.publish` would send, without building and
serialising a model for each event. Poison messages, duplicates and dead letters of
every shape take the same path. ``revalidate=True`` builds and checks every event's
model and sends it through ``publish`` instead (same bytes, slower); the producer's
partitioner is pinned to librdkafka's ``consistent_random``, the choice the ground
truth makes, and each such delivery is checked against it. Each partition's end
offset is checked against the count sent. ``event_logs`` rows are written with
``COPY`` on a background thread while generation goes on.

The consumer groups' committed offsets are set the way a consumer would leave them:
a client with the group's id commits explicit offsets without joining the group.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    NewTopic,
)

from codegen_forensics.errors import KafkaError, PostgresError, PublishError
from codegen_forensics.events.producer import Delivery, EventProducer
from codegen_forensics.events.provision import provision_topics
from codegen_forensics.events.tables import EventLogWriter, create_event_tables
from codegen_forensics.events.topics import DAY_MS, TopicCatalog
from codegen_forensics.settings import KafkaSettings, PostgresSettings
from codegen_forensics.simulate.config import SimulationConfig
from codegen_forensics.simulate.sinks import simulate
from codegen_forensics.simulate.traffic import (
    EventLogRow,
    Progress,
    SimMessage,
    Traffic,
    partition_for,
)
from codegen_forensics.simulate.truth import GroundTruth

__all__ = [
    "ServiceSink",
    "commit_group_offsets",
    "list_end_offsets",
    "provision_simulation_topics",
    "run_to_services",
]

logger = logging.getLogger(__name__)

# Pinned so that validated events, which the partitioner places, land where the
# ground truth says.
PARTITIONER = "consistent_random"
_STOP = object()
# Errors of a topic whose partitions have no leader yet.
_SETTLING = frozenset(
    {
        RdKafkaError.NOT_LEADER_FOR_PARTITION,
        RdKafkaError.LEADER_NOT_AVAILABLE,
        RdKafkaError.UNKNOWN_TOPIC_OR_PART,
        RdKafkaError._UNKNOWN_PARTITION,
        RdKafkaError._UNKNOWN_TOPIC,
    }
)


@dataclass
class _DeliveryCheck:
    """Deliveries that did not land where the ground truth says.

    Messages sent with ``send_raw`` are reported only when they fail; ``delivered``
    counts the validated events of a ``revalidate`` run.
    """

    delivered: int = 0
    wrong_partition: list[str] = field(default_factory=list)
    not_delivered: list[str] = field(default_factory=list)


class ServiceSink:
    """Sends messages through an :class:`EventProducer` and rows through an
    :class:`EventLogWriter`; either may be ``None`` to skip that service."""

    def __init__(
        self,
        settings: KafkaSettings | None,
        engine: sa.Engine | None,
        *,
        catalog: TopicCatalog,
        partitions: Mapping[str, int],
        base_offsets: Mapping[str, Mapping[int, int]] | None = None,
        schema: str | None = None,
        producer_config: Mapping[str, Any] | None = None,
        batch_rows: int = 5000,
        revalidate: bool = False,
    ) -> None:
        self.catalog = catalog
        self.revalidate = revalidate
        self.wants_messages = settings is not None
        self.wants_rows = engine is not None
        self.wants_events = revalidate
        self.partitions = dict(partitions)
        self.base_offsets = {t: dict(p) for t, p in (base_offsets or {}).items()}
        self.check = _DeliveryCheck()
        self.settings = settings
        self.producer: EventProducer | None = None
        if settings is not None:
            self.producer = EventProducer(
                settings,
                catalog,
                config={"partitioner": PARTITIONER, **(producer_config or {})},
                on_delivery=self._delivered,
            )

        self.batch_rows = batch_rows
        self.rows_written = 0
        self._rows: list[EventLogRow] = []
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.writer: EventLogWriter | None = None
        if engine is not None:
            self.writer = EventLogWriter(engine, schema, batch_size=batch_rows)
            self._thread = threading.Thread(
                target=self._write_rows, name="event-logs-writer", daemon=True
            )
            self._thread.start()

    # -- Kafka ----------------------------------------------------------------------

    def message(self, message: SimMessage) -> None:
        producer = self.producer
        if producer is None:
            return
        if self.revalidate and message.event is not None:
            producer.publish(message.event, topic=message.topic)
        else:
            producer.send_raw(
                message.topic,
                message.value,
                message.key,
                message.timestamp_ms,
                message.headers,
                message.partition,
            )

    def _delivered(self, delivery: Delivery) -> None:
        check = self.check
        if delivery.state != "delivered":
            check.not_delivered.append(
                f"topic={delivery.topic} state={delivery.state} error={delivery.error}"
            )
            return
        check.delivered += 1
        expected = partition_for(delivery.key, self.partitions[delivery.topic])
        if delivery.partition != expected:
            check.wrong_partition.append(
                f"topic={delivery.topic} key={delivery.key!r} "
                f"partition={delivery.partition} expected={expected}"
            )

    # -- Postgres -------------------------------------------------------------------

    def row(self, row: EventLogRow) -> None:
        if self.writer is None:
            return
        self._rows.append(row)
        if len(self._rows) >= self.batch_rows:
            self._hand_over()

    def _hand_over(self) -> None:
        if self._error is not None:
            raise PostgresError(
                f"writing event_logs failed: {self._error}"
            ) from self._error
        if self._rows:
            self._queue.put(self._rows)
            self._rows = []

    def _write_rows(self) -> None:
        writer = self.writer
        assert writer is not None
        while True:
            batch = self._queue.get()
            if batch is _STOP:
                break
            if self._error is not None:
                continue
            try:
                writer.record_rows(batch)
                self.rows_written += len(batch)
            except BaseException as exc:
                self._error = exc
        if self._error is None:
            try:
                writer.flush()
            except BaseException as exc:
                self._error = exc

    # -- the end --------------------------------------------------------------------

    def close_rows(self) -> None:
        """Write what is queued and stop the writer thread."""
        if self._thread is None:
            return
        self._hand_over()
        self._queue.put(_STOP)
        self._thread.join()
        self._thread = None
        if self._error is not None:
            raise PostgresError(
                f"writing event_logs failed: {self._error}"
            ) from self._error

    def finish(self, traffic: Traffic, truth: GroundTruth) -> GroundTruth:
        try:
            if self.producer is not None:
                self.producer.flush()
        finally:
            self.close_rows()
        if self.producer is None or self.settings is None:
            return truth

        self.producer.close()
        check = self.check
        if check.not_delivered or check.wrong_partition:
            problems = check.not_delivered[:3] + check.wrong_partition[:3]
            raise PublishError(
                f"{len(check.not_delivered)} messages were not delivered and "
                f"{len(check.wrong_partition)} landed on another partition than "
                f"the ground truth says; first: {'; '.join(problems)}"
            )
        self._check_end_offsets(traffic)
        shifted = truth.shifted(self.base_offsets)
        commit_group_offsets(
            self.settings,
            [
                (c.group_id, c.topic, c.partition, c.committed_offset)
                for c in shifted.consumer_offsets
            ],
        )
        return shifted

    def _check_end_offsets(self, traffic: Traffic) -> None:
        assert self.settings is not None
        ends = list_end_offsets(self.settings, self.partitions)
        wrong = []
        for (topic, partition), count in traffic.end_offsets().items():
            base = self.base_offsets.get(topic, {}).get(partition, 0)
            if ends[(topic, partition)] != base + count:
                end = ends[(topic, partition)]
                wrong.append(
                    f"topic={topic} partition={partition} end={end} "
                    f"expected={base + count}"
                )
        if wrong:
            raise PublishError(
                f"{len(wrong)} partitions do not end where the simulation says; "
                "another producer may be writing to these topics: "
                + "; ".join(wrong[:5])
            )


def list_end_offsets(
    settings: KafkaSettings, partitions: Mapping[str, int], timeout: float = 30.0
) -> dict[tuple[str, int], int]:
    """The high watermark of every partition of ``partitions`` (topic -> count).

    Read with a consumer that never joins a group; just after topics are created
    their leaders may not be known yet, so retriable errors are retried for a while.
    """
    consumer = Consumer(
        settings.client_config(
            **{
                "group.id": f"codegen-forensics-simulate-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            },
        )
    )
    ends: dict[tuple[str, int], int] = {}
    try:
        for topic, count in partitions.items():
            for partition in range(count):
                ends[(topic, partition)] = _high_watermark(
                    consumer, TopicPartition(topic, partition), timeout
                )
    finally:
        consumer.close()
    return ends


def _high_watermark(consumer: Consumer, tp: TopicPartition, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    pause = 0.05
    while True:
        try:
            _, high = consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
            return int(high)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            retriable = isinstance(error, RdKafkaError) and (
                error.retriable() or error.code() in _SETTLING
            )
            if not retriable or time.monotonic() + pause > deadline:
                raise KafkaError(
                    f"could not read the end offset of topic={tp.topic} "
                    f"partition={tp.partition}: {exc}"
                ) from exc
            logger.info("end offset not available yet, retrying: %s", exc)
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
            # The client learns of a topic created moments ago only from a fresh
            # metadata request; a watermark query alone does not ask for one.
            try:
                consumer.list_topics(
                    tp.topic, timeout=max(deadline - time.monotonic(), 0.1)
                )
            except KafkaException as refresh:
                logger.info("metadata refresh failed, retrying: %s", refresh)


def commit_group_offsets(
    settings: KafkaSettings,
    offsets: list[tuple[str, str, int, int]],
    timeout: float = 30.0,
) -> None:
    """Commit (group, topic, partition, offset) without joining the groups."""
    by_group: dict[str, list[TopicPartition]] = {}
    for group, topic, partition, offset in offsets:
        by_group.setdefault(group, []).append(TopicPartition(topic, partition, offset))
    for group, partitions in by_group.items():
        consumer = Consumer(
            settings.client_config(
                **{
                    "group.id": group,
                    "enable.auto.commit": False,
                    "socket.timeout.ms": int(timeout * 1000),
                },
            )
        )
        try:
            consumer.commit(offsets=partitions, asynchronous=False)
        except KafkaException as exc:
            raise KafkaError(
                f"could not commit offsets for consumer group {group!r}: {exc}"
            ) from exc
        finally:
            consumer.close()
        logger.info("committed offsets group=%s partitions=%s", group, len(partitions))


def _create_topics(
    settings: KafkaSettings, names: list[str], template: Mapping[str, str]
) -> None:
    """Create single-partition topics (the dotted DLQ topics), if missing."""
    if not names:
        return
    admin = AdminClient(settings.client_config())
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=1, config=dict(template)) for name in names],
        operation_timeout=30,
    )
    for name, future in futures.items():
        try:
            future.result(timeout=30)
            logger.info("created topic=%s", name)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if (
                isinstance(error, RdKafkaError)
                and error.code() == RdKafkaError.TOPIC_ALREADY_EXISTS
            ):
                continue
            raise KafkaError(f"could not create topic {name!r}: {exc}") from exc


def provision_simulation_topics(settings: KafkaSettings, traffic: Traffic) -> None:
    """Create the catalog's topics and the dotted DLQ topics a simulation writes to.

    Topics that exist are kept; one whose settings differ from the catalog is
    reported in the log.
    """
    report = provision_topics(settings, traffic.catalog)
    for difference in report.differences:
        logger.warning(
            "topic=%s differs from the catalog: %s is %s, expected %s",
            difference.topic,
            difference.setting,
            difference.actual,
            difference.expected,
        )
    template = next(s for s in traffic.catalog if s.category == "dlq").configs()
    _create_topics(settings, traffic.dotted_topics(), template)


def _warn_about_retention(traffic: Traffic, now: datetime) -> None:
    """The broker deletes what is older than a topic's retention, and refuses
    timestamps too far in the future; either makes the ground truth wrong."""
    age_ms = (now - traffic.window_start) // timedelta(milliseconds=1)
    for spec in traffic.catalog:
        if age_ms > spec.retention_ms:
            logger.warning(
                "window_start=%s is older than topic=%s retention of %s days: the "
                "broker will delete those messages and the ground truth will not "
                "match what it keeps; use a more recent --start",
                traffic.window_start.isoformat(),
                spec.name,
                spec.retention_ms // DAY_MS,
            )
    if traffic.window_end > now + timedelta(hours=1):
        logger.warning(
            "window_end=%s is in the future: brokers refuse timestamps more than "
            "message.timestamp.after.max.ms ahead",
            traffic.window_end.isoformat(),
        )


def run_to_services(
    config: SimulationConfig,
    kafka_settings: KafkaSettings | None = None,
    database_url: str | sa.Engine | None = None,
    catalog: TopicCatalog | None = None,
    *,
    schema: str | None = None,
    kafka: bool = True,
    postgres: bool = True,
    provision: bool = True,
    now: datetime | None = None,
    progress: Callable[[Progress], None] | None = None,
    producer_config: Mapping[str, Any] | None = None,
    revalidate: bool = False,
    parallel: bool | None = None,
) -> GroundTruth:
    """Send the simulated traffic to Kafka and Postgres; return its ground truth.

    Settings default to the environment's. Topics are provisioned first (the
    catalog's, plus the dotted-scheme DLQ topics when failures go there) and
    ``event_logs`` is created if missing. Offsets in the returned truth are the
    broker's: each partition's starting offset is added. ``kafka=False`` or
    ``postgres=False`` leaves that service out; ``revalidate`` sends events through
    the producer's validating ``publish``.
    """
    catalog = catalog or TopicCatalog()
    clock = now or datetime.now(UTC)
    plan = Traffic(config, catalog, now=clock)
    settings = (kafka_settings or KafkaSettings.from_env()) if kafka else None

    engine: sa.Engine | None = None
    own_engine = False
    if postgres:
        if isinstance(database_url, sa.Engine):
            engine = database_url
        else:
            url = PostgresSettings.from_env(url=database_url).url.get_secret_value()
            engine = sa.create_engine(url)
            own_engine = True
        try:
            create_event_tables(engine, schema)
        except Exception:
            if own_engine:
                engine.dispose()
            raise

    base: dict[str, dict[int, int]] = {}
    if settings is not None:
        _warn_about_retention(plan, clock)
        if provision:
            provision_simulation_topics(settings, plan)
        ends = list_end_offsets(settings, plan.partitions)
        for (topic, partition), offset in ends.items():
            base.setdefault(topic, {})[partition] = offset

    sink = ServiceSink(
        settings,
        engine,
        catalog=catalog,
        partitions=plan.partitions,
        base_offsets=base,
        schema=schema,
        producer_config=producer_config,
        revalidate=revalidate,
    )
    try:
        return simulate(
            config,
            sink,
            catalog=catalog,
            now=clock,
            progress=progress,
            parallel=parallel,
        )
    finally:
        sink.close_rows()
        if sink.producer is not None:
            sink.producer.close()
        if own_engine and engine is not None:
            engine.dispose()
