"""Fixtures for the simulator's tests: a small, troubled simulation and readers.

``service_run`` sends one simulation to the real Kafka and Postgres (unique topic
prefix, fresh schema) and is shared by the tests of a module, which only read.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from codegen_forensics.events.topics import TopicCatalog
from codegen_forensics.settings import KafkaSettings, PostgresSettings
from codegen_forensics.simulate import (
    FailureConfig,
    GroundTruth,
    SimulationConfig,
    Traffic,
)
from codegen_forensics.simulate.services import run_to_services

NOW = datetime(2026, 3, 18, 9, 30, tzinfo=UTC)


def troubled_config(
    seed: int = 7, sessions: int = 80, start: datetime | None = None
) -> SimulationConfig:
    """Two days with every kind of trouble at rates high enough for small runs."""
    return SimulationConfig(
        seed=seed,
        sessions=sessions,
        days=2,
        start=start or datetime(2026, 3, 16, tzinfo=UTC),
        failures=FailureConfig(
            rates={"analyze": 0.06, "validate": 0.08, "pattern": 0.06, "mixin": 0.06},
            transient_rate=0.05,
            dotted_rate=0.25,
        ),
        unanswered_rate=0.02,
        unfinished_rate=0.05,
        duplicate_rate=0.05,
        poison_per_session=0.15,
    )


@dataclass(frozen=True)
class ServiceRun:
    config: SimulationConfig
    catalog: TopicCatalog
    truth: GroundTruth
    schema: str
    settings: KafkaSettings
    engine: sa.Engine
    partitions: dict[str, int]


def recent_start(now: datetime | None = None) -> datetime:
    """Midnight two days ago: recent enough for every topic's retention."""
    current = now or datetime.now(UTC)
    return current.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=2
    )


@pytest.fixture(scope="module")
def service_run(
    kafka_settings: KafkaSettings, pg_engine: sa.Engine
) -> Iterator[ServiceRun]:
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    schema = f"test_{uuid.uuid4().hex[:10]}"
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = sa.create_engine(
        PostgresSettings.from_env().url.get_secret_value(),
        connect_args={"options": f"-csearch_path={schema}"},
    )
    catalog = TopicCatalog(prefix=prefix)
    config = troubled_config(start=recent_start())
    partitions = Traffic(config, catalog).partitions
    try:
        # Events through the producer's validating publish(); the command-line test
        # covers the default path (publish_raw of the same bytes).
        truth = run_to_services(
            config, kafka_settings, engine, catalog, schema=schema, revalidate=True
        )
        yield ServiceRun(
            config, catalog, truth, schema, kafka_settings, engine, dict(partitions)
        )
    finally:
        engine.dispose()
        with pg_engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin = AdminClient(kafka_settings.client_config())
        topics = [
            t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)
        ]
        if topics:
            # Cleanup must not hide the test's own result.
            for future in admin.delete_topics(topics, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    future.result(timeout=30)


def read_topics(
    settings: KafkaSettings, partitions: dict[str, int]
) -> dict[tuple[str, int, int], dict[str, Any]]:
    """Every message of the topics, by (topic, partition, offset), with assign()."""
    consumer = Consumer(
        settings.client_config(
            **{
                "group.id": f"simulate-test-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
    )
    found: dict[tuple[str, int, int], dict[str, Any]] = {}
    try:
        wanted: dict[tuple[str, int], int] = {}
        assignment = []
        for topic, count in partitions.items():
            for partition in range(count):
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10
                )
                if high > low:
                    wanted[(topic, partition)] = high
                    assignment.append(TopicPartition(topic, partition, low))
        consumer.assign(assignment)
        remaining = set(wanted)
        while remaining:
            message = consumer.poll(5.0)
            assert message is not None, f"no message while waiting for {remaining}"
            assert message.error() is None, message.error()
            topic, partition = message.topic(), message.partition()
            found[(topic, partition, message.offset())] = {
                "key": message.key(),
                "value": message.value(),
                "timestamp": message.timestamp(),
                "headers": message.headers(),
            }
            if message.offset() + 1 >= wanted[(topic, partition)]:
                remaining.discard((topic, partition))
    finally:
        consumer.close()
    return found
