"""Creating the catalog's topics on a broker, and checking the ones already there.

This replaces the shell script in the design document's appendix.
:func:`provision_topics` creates each missing topic with its partitions, replication
factor and configuration; a topic that exists is left alone and checked, so running it
twice changes nothing. :func:`check_topics` only reads. Both read partitions and
configuration back from the broker and report every difference from the catalog: a
topic with other settings is reported, never silently accepted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException

# ConfigResource and NewTopic are public, but the package does not list them for
# type checkers.
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
)

from codegen_forensics.errors import ProvisioningError
from codegen_forensics.events.topics import TopicCatalog, TopicSpec
from codegen_forensics.settings import KafkaSettings

__all__ = [
    "ProvisionReport",
    "TopicDifference",
    "TopicState",
    "check_topics",
    "provision_topics",
]

logger = logging.getLogger(__name__)

TopicState = Literal["created", "exists", "missing"]


@dataclass(frozen=True)
class TopicDifference:
    """One setting of one topic that is not what the catalog says."""

    topic: str
    setting: str
    expected: str
    actual: str


@dataclass
class ProvisionReport:
    """What each topic's state is and every way the broker differs from the catalog."""

    states: dict[str, TopicState] = field(default_factory=dict)
    differences: list[TopicDifference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every topic exists with the catalog's settings."""
        return not self.differences and "missing" not in self.states.values()

    def differences_for(self, topic: str) -> list[TopicDifference]:
        return [d for d in self.differences if d.topic == topic]


def provision_topics(
    settings: KafkaSettings, catalog: TopicCatalog, timeout: float = 30.0
) -> ProvisionReport:
    """Create the catalog's missing topics, then check every topic's settings."""
    # librdkafka cancels an admin client's futures when the client is collected, so
    # ``admin`` stays referenced here until every future has resolved.
    admin = _admin(settings)
    existing = _existing_topics(admin, timeout)
    to_create = [spec for spec in catalog if spec.name not in existing]

    created: set[str] = set()
    if to_create:
        new_topics = [
            NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=spec.replication_factor,
                config=spec.configs(),
            )
            for spec in to_create
        ]
        try:
            futures = admin.create_topics(new_topics, operation_timeout=timeout)
        except KafkaException as exc:
            raise ProvisioningError(
                f"could not ask {settings.describe()} to create topics: {exc}"
            ) from exc
        for name, future in futures.items():
            try:
                future.result(timeout=timeout)
            except KafkaException as exc:
                if _code(exc) == RdKafkaError.TOPIC_ALREADY_EXISTS:
                    # Created by someone else since we looked: check it like the rest.
                    logger.info("topic appeared meanwhile topic=%s", name)
                    continue
                raise ProvisioningError(
                    f"could not create topic {name!r}: {_describe(exc)}"
                ) from exc
            except TimeoutError as exc:
                raise ProvisioningError(
                    f"creating topic {name!r} did not finish within {timeout}s"
                ) from exc
            created.add(name)
            logger.info("topic created topic=%s", name)

    report = _check(admin, catalog, timeout, wait_for=created)
    for name in created:
        report.states[name] = "created"
    return report


def check_topics(
    settings: KafkaSettings, catalog: TopicCatalog, timeout: float = 30.0
) -> ProvisionReport:
    """Read every catalog topic's partitions and configuration back and compare."""
    return _check(_admin(settings), catalog, timeout, wait_for=set())


def _admin(settings: KafkaSettings) -> AdminClient:
    try:
        return AdminClient(settings.client_config())
    except KafkaException as exc:
        raise ProvisioningError(
            f"could not configure a Kafka admin client for {settings.describe()}: {exc}"
        ) from exc


def _existing_topics(admin: AdminClient, timeout: float) -> dict[str, Any]:
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        admin.poll(0)  # hands the client's log lines of the attempt to its logger
        raise ProvisioningError(
            f"could not list topics within {timeout}s: {_describe(exc)}"
        ) from exc
    topics: dict[str, Any] = dict(metadata.topics)
    return topics


def _check(
    admin: AdminClient, catalog: TopicCatalog, timeout: float, wait_for: set[str]
) -> ProvisionReport:
    report = ProvisionReport()
    existing = _existing_topics(admin, timeout)
    if wait_for - set(existing):
        # Topics just created can take a moment to show in metadata.
        existing = _wait_for_metadata(admin, wait_for, timeout) | existing

    present: list[TopicSpec] = []
    for spec in catalog:
        if spec.name in existing and existing[spec.name].error is None:
            report.states[spec.name] = "exists"
            present.append(spec)
        else:
            report.states[spec.name] = "missing"
            report.differences.append(
                TopicDifference(spec.name, "topic", "present", "missing")
            )

    configs = _describe_configs(admin, [s.name for s in present], timeout)
    for spec in present:
        partitions = existing[spec.name].partitions
        _compare(report, spec, "partitions", spec.partitions, len(partitions))
        replicas = {len(p.replicas) for p in partitions.values()}
        actual_rf = ",".join(str(r) for r in sorted(replicas)) or "0"
        _compare(report, spec, "replication.factor", spec.replication_factor, actual_rf)
        for key, expected in spec.configs().items():
            _compare(report, spec, key, expected, configs[spec.name].get(key))

    for diff in report.differences:
        logger.warning(
            "topic differs topic=%s setting=%s expected=%s actual=%s",
            diff.topic,
            diff.setting,
            diff.expected,
            diff.actual,
        )
    return report


def _compare(
    report: ProvisionReport, spec: TopicSpec, setting: str, expected: Any, actual: Any
) -> None:
    if actual is None or str(actual) != str(expected):
        report.differences.append(
            TopicDifference(
                spec.name,
                setting,
                str(expected),
                "<not set>" if actual is None else str(actual),
            )
        )


def _wait_for_metadata(
    admin: AdminClient, names: set[str], timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        topics = _existing_topics(admin, timeout)
        if names <= set(topics) or time.monotonic() >= deadline:
            return topics
        time.sleep(0.2)


def _describe_configs(
    admin: AdminClient, names: list[str], timeout: float
) -> dict[str, dict[str, str | None]]:
    if not names:
        return {}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
    try:
        futures: Mapping[ConfigResource, Future[Any]] = admin.describe_configs(
            resources, request_timeout=timeout
        )
    except KafkaException as exc:
        raise ProvisioningError(
            f"could not ask for the configuration of {len(names)} topics: {exc}"
        ) from exc
    result: dict[str, dict[str, str | None]] = {}
    for resource, future in futures.items():
        try:
            entries = future.result(timeout=timeout)
        except KafkaException as exc:
            raise ProvisioningError(
                f"could not read the configuration of topic {resource.name!r}: "
                f"{_describe(exc)}"
            ) from exc
        except TimeoutError as exc:
            raise ProvisioningError(
                f"reading the configuration of topic {resource.name!r} did not "
                f"finish within {timeout}s"
            ) from exc
        result[resource.name] = {key: entry.value for key, entry in entries.items()}
    return result


def _code(exc: KafkaException) -> int | None:
    error = exc.args[0] if exc.args else None
    return error.code() if isinstance(error, RdKafkaError) else None


def _describe(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    if isinstance(error, RdKafkaError):
        return f"{error.name()}: {error.str()}"
    return str(exc)
