"""Fixtures that reach the real Kafka broker and Postgres server.

``scripts/test`` starts both; the connection settings come from the same environment
variables the package reads, so the suite can point at other servers. A test that
needs a service fails, never skips, when the service does not answer.

Isolation: every test that provisions the catalog gets its own topic-name prefix, and
every test that touches Postgres gets its own schema, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from confluent_kafka.admin import AdminClient, NewTopic

from codegen_forensics.settings import KafkaSettings, PostgresSettings


@pytest.fixture(scope="session")
def kafka_settings() -> KafkaSettings:
    settings = KafkaSettings.from_env()
    admin = AdminClient(settings.client_config())
    try:
        admin.list_topics(timeout=15)
    except Exception as exc:
        pytest.fail(
            f"Kafka does not answer at {settings.describe()}: {exc}. "
            "Start it with scripts/services start.",
            pytrace=False,
        )
    return settings


@pytest.fixture(scope="session")
def kafka_admin(kafka_settings: KafkaSettings) -> AdminClient:
    return AdminClient(kafka_settings.client_config())


@pytest.fixture
def unique_prefix() -> str:
    """A topic-name prefix no other test uses, such as ``t3f9a2c1_``."""
    return f"t{uuid.uuid4().hex[:8]}_"


@pytest.fixture
def topic_factory(
    kafka_admin: AdminClient, unique_prefix: str
) -> Iterator[Callable[..., str]]:
    """Creates uniquely named topics and deletes them after the test."""
    created: list[str] = []

    def make(
        name: str = "topic", partitions: int = 1, config: dict[str, str] | None = None
    ) -> str:
        topic = f"{unique_prefix}{name}"
        futures = kafka_admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, config=config or {})],
            operation_timeout=30,
        )
        futures[topic].result(timeout=30)
        created.append(topic)
        return topic

    yield make
    if created:
        for future in kafka_admin.delete_topics(created, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result(timeout=30)


@pytest.fixture(scope="session")
def postgres_settings() -> PostgresSettings:
    return PostgresSettings.from_env()


@pytest.fixture(scope="session")
def pg_engine(postgres_settings: PostgresSettings) -> Iterator[sa.Engine]:
    engine = sa.create_engine(postgres_settings.url.get_secret_value())
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:
        pytest.fail(
            f"Postgres does not answer at {postgres_settings.describe()}: {exc}. "
            "Start it with scripts/services start.",
            pytrace=False,
        )
    yield engine
    engine.dispose()


@pytest.fixture
def pg_schema(pg_engine: sa.Engine) -> Iterator[str]:
    """A fresh, empty schema; dropped with everything in it after the test."""
    schema = f"test_{uuid.uuid4().hex[:10]}"
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield schema
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def schema_engine(
    postgres_settings: PostgresSettings, pg_schema: str
) -> Iterator[sa.Engine]:
    """An engine whose connections use the test's schema as their search path."""
    engine = sa.create_engine(
        postgres_settings.url.get_secret_value(),
        connect_args={"options": f"-csearch_path={pg_schema}"},
    )
    yield engine
    engine.dispose()
