"""Provisioning the 13 topics on the real broker and reading them back."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from codegen_forensics.errors import ProvisioningError
from codegen_forensics.events.provision import (
    TopicDifference,
    check_topics,
    provision_topics,
)
from codegen_forensics.events.topics import TopicCatalog
from codegen_forensics.settings import KafkaSettings

CHECKED_CONFIGS = (
    "retention.ms",
    "cleanup.policy",
    "compression.type",
    "max.message.bytes",
)


def read_back(admin: AdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    """Partitions, replication factor and configs of topics, read independently."""
    metadata = admin.list_topics(timeout=30)
    futures = admin.describe_configs(
        [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
    )
    configs = {
        resource.name: future.result(timeout=30) for resource, future in futures.items()
    }
    result = {}
    for name in names:
        partitions = metadata.topics[name].partitions
        result[name] = {
            "partitions": str(len(partitions)),
            "replication.factor": str(len(partitions[0].replicas)),
            **{key: configs[name][key].value for key in CHECKED_CONFIGS},
        }
    return result


def test_provision_topics_creates_13_with_every_setting(
    kafka_settings: KafkaSettings,
    kafka_admin: AdminClient,
    unique_prefix: str,
    delete_topics: Callable[[list[str]], None],
) -> None:
    catalog = TopicCatalog(prefix=unique_prefix)
    delete_topics(catalog.names())

    report = provision_topics(kafka_settings, catalog)

    assert report.states == dict.fromkeys(catalog.names(), "created")
    assert report.differences == []
    assert report.ok
    assert read_back(kafka_admin, catalog.names()) == {
        spec.name: {
            "partitions": str(spec.partitions),
            "replication.factor": "1",
            "retention.ms": str(spec.retention_ms),
            "cleanup.policy": "delete",
            "compression.type": "gzip",
            "max.message.bytes": "1048576",
        }
        for spec in catalog
    }
    # Spot-check against the design document's numbers, not the catalog's.
    back = read_back(kafka_admin, [catalog.status_topic])[catalog.status_topic]
    assert (back["partitions"], back["retention.ms"]) == ("6", "259200000")


def test_provision_topics_second_run_changes_nothing(
    kafka_settings: KafkaSettings,
    unique_prefix: str,
    delete_topics: Callable[[list[str]], None],
) -> None:
    catalog = TopicCatalog(prefix=unique_prefix)
    delete_topics(catalog.names())
    provision_topics(kafka_settings, catalog)

    again = provision_topics(kafka_settings, catalog)

    assert again.states == dict.fromkeys(catalog.names(), "exists")
    assert again.differences == []
    assert check_topics(kafka_settings, catalog).ok


def test_provision_topics_existing_topic_with_other_settings_is_reported(
    kafka_settings: KafkaSettings,
    unique_prefix: str,
    topic_factory: Callable[..., str],
    delete_topics: Callable[[list[str]], None],
) -> None:
    catalog = TopicCatalog(prefix=unique_prefix)
    delete_topics(catalog.names())
    odd = topic_factory(
        "omninode_codegen_request_analyze_v1",
        partitions=1,
        config={
            "retention.ms": "3600000",
            "compression.type": "producer",
            "max.message.bytes": "500000",
        },
    )

    report = provision_topics(kafka_settings, catalog)

    assert report.states[odd] == "exists"
    assert sorted(s for s in report.states.values()) == ["created"] * 12 + ["exists"]
    assert report.differences == [
        TopicDifference(odd, "partitions", "3", "1"),
        TopicDifference(odd, "retention.ms", "604800000", "3600000"),
        TopicDifference(odd, "compression.type", "gzip", "producer"),
        TopicDifference(odd, "max.message.bytes", "1048576", "500000"),
    ]
    assert not report.ok
    assert check_topics(kafka_settings, catalog).differences == report.differences


def test_check_topics_reports_missing_topics(
    kafka_settings: KafkaSettings, unique_prefix: str
) -> None:
    catalog = TopicCatalog(prefix=unique_prefix)

    report = check_topics(kafka_settings, catalog)

    assert report.states == dict.fromkeys(catalog.names(), "missing")
    assert report.differences == [
        TopicDifference(name, "topic", "present", "missing") for name in catalog.names()
    ]
    assert not report.ok


def test_provision_topics_unreachable_broker_raises_provisioning_error() -> None:
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1")

    with pytest.raises(
        ProvisioningError, match=r"could not list topics within 2"
    ) as info:
        provision_topics(settings, TopicCatalog(prefix="never_"), timeout=2)
    assert info.value.__cause__ is not None
