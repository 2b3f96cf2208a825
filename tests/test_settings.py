"""Connection settings from the environment; secrets never shown."""

from __future__ import annotations

import logging

import pytest

from codegen_forensics.errors import ConfigError
from codegen_forensics.settings import (
    CLIENT_LOGGER,
    DEFAULT_BOOTSTRAP_SERVERS,
    DEFAULT_DATABASE_URL,
    KafkaSettings,
    PostgresSettings,
    is_secret_property,
    redact_url,
)

SASL_ENV = {
    "FORENSICS_BOOTSTRAP_SERVERS": "broker-1:9093,broker-2:9093",
    "FORENSICS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "FORENSICS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "FORENSICS_KAFKA_SASL_USERNAME": "analyst",
    "FORENSICS_KAFKA_SASL_PASSWORD": "hunter2-kafka",
    "FORENSICS_KAFKA_SSL_KEY_PASSWORD": "hunter3-key",
    "FORENSICS_KAFKA_PORT": "19092",
    "FORENSICS_KAFKA_HEAP": "512m",
    "UNRELATED": "x",
}


def test_kafka_settings_defaults_with_empty_environment() -> None:
    settings = KafkaSettings.from_env({})

    assert settings.bootstrap_servers == DEFAULT_BOOTSTRAP_SERVERS == "127.0.0.1:19092"
    assert settings.client_config() == {
        "bootstrap.servers": "127.0.0.1:19092",
        "logger": CLIENT_LOGGER,
    }
    assert (
        settings.describe() == "bootstrap_servers=127.0.0.1:19092 (no extra properties)"
    )


def test_kafka_settings_environment_is_passed_to_librdkafka() -> None:
    settings = KafkaSettings.from_env(SASL_ENV)

    assert settings.client_config(**{"client.id": "t"}) == {
        "bootstrap.servers": "broker-1:9093,broker-2:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "analyst",
        "sasl.password": "hunter2-kafka",
        "ssl.key.password": "hunter3-key",
        "client.id": "t",
        "logger": CLIENT_LOGGER,
    }


def test_kafka_settings_secrets_never_in_describe_or_repr() -> None:
    settings = KafkaSettings.from_env(SASL_ENV)

    for text in (settings.describe(), repr(settings), str(settings)):
        assert "hunter2" not in text
        assert "hunter3" not in text
    assert settings.describe() == (
        "bootstrap_servers=broker-1:9093,broker-2:9093 (sasl.mechanism, "
        "sasl.password, sasl.username, security.protocol, ssl.key.password)"
    )


def test_kafka_settings_secret_given_in_extra_is_hidden() -> None:
    settings = KafkaSettings(
        extra={"sasl.password": "hunter2-extra", "sasl.username": "analyst"}
    )

    assert "hunter2" not in repr(settings)
    assert dict(settings.extra) == {"sasl.username": "analyst"}
    assert settings.client_config()["sasl.password"] == "hunter2-extra"


def test_kafka_settings_explicit_servers_win_over_environment() -> None:
    settings = KafkaSettings.from_env(SASL_ENV, bootstrap_servers="other:9092")

    assert settings.bootstrap_servers == "other:9092"


def test_kafka_settings_bootstrap_from_property_variable() -> None:
    settings = KafkaSettings.from_env(
        {"FORENSICS_KAFKA_BOOTSTRAP_SERVERS": "via-property:9092"}
    )

    assert settings.bootstrap_servers == "via-property:9092"
    assert settings.client_config() == {
        "bootstrap.servers": "via-property:9092",
        "logger": CLIENT_LOGGER,
    }


def test_kafka_settings_client_logger_can_be_replaced() -> None:
    mine = logging.getLogger("tests.kafka")

    assert KafkaSettings().client_config(logger=mine)["logger"] is mine


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("sasl.password", True),
        ("ssl.key.password", True),
        ("ssl.keystore.password", True),
        ("sasl.oauthbearer.client.secret", True),
        ("sasl.oauthbearer.config", True),
        ("ssl.key.pem", True),
        ("sasl.username", False),
        ("ssl.ca.location", False),
        ("security.protocol", False),
    ],
)
def test_is_secret_property(key: str, secret: bool) -> None:
    assert is_secret_property(key) is secret


def test_postgres_settings_default_url() -> None:
    settings = PostgresSettings.from_env({})

    assert settings.url.get_secret_value() == DEFAULT_DATABASE_URL
    assert settings.describe() == (
        "postgresql+psycopg://forensics:***@127.0.0.1:5432/forensics"
    )


def test_postgres_settings_plain_libpq_url_uses_psycopg() -> None:
    settings = PostgresSettings.from_env(
        {"FORENSICS_DATABASE_URL": "postgresql://u:s3cret-pg@db:5433/events"}
    )

    assert settings.url.get_secret_value() == (
        "postgresql+psycopg://u:s3cret-pg@db:5433/events"
    )
    assert "s3cret" not in settings.describe()
    assert "s3cret" not in repr(settings)


def test_postgres_settings_explicit_url_wins() -> None:
    settings = PostgresSettings.from_env(
        {"FORENSICS_DATABASE_URL": "postgresql://a@b/c"}, url="postgres://x@y/z"
    )

    assert settings.url.get_secret_value() == "postgresql+psycopg://x@y/z"


def test_postgres_settings_invalid_url_is_refused_without_the_password() -> None:
    with pytest.raises(
        ConfigError,
        match=r"database URL '<unparseable database URL>' is not a valid SQLAlchemy "
        r"URL; expected postgresql\+psycopg://",
    ):
        PostgresSettings.from_env({"FORENSICS_DATABASE_URL": "not a url:s3cret"})


def test_redact_url_hides_the_password() -> None:
    assert (
        redact_url("postgresql+psycopg://u:pw@h/d") == "postgresql+psycopg://u:***@h/d"
    )
