"""Connection settings for Kafka and Postgres, read from the environment.

Defaults point at the services that ``scripts/services`` starts on loopback. Secrets
are held as :class:`pydantic.SecretStr` and never appear in ``repr`` or log lines.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from codegen_forensics.errors import ConfigError

__all__ = [
    "CLIENT_LOGGER",
    "DEFAULT_BOOTSTRAP_SERVERS",
    "DEFAULT_DATABASE_URL",
    "KafkaSettings",
    "PostgresSettings",
    "is_secret_property",
    "redact_url",
]

# librdkafka's own log lines go to this logger instead of standard error, where a
# broker that does not answer gets a line for every connection attempt.
CLIENT_LOGGER = logging.getLogger("codegen_forensics.librdkafka")

DEFAULT_BOOTSTRAP_SERVERS = "127.0.0.1:19092"
DEFAULT_DATABASE_URL = (
    "postgresql+psycopg://forensics:forensics@127.0.0.1:5432/forensics"
)

# librdkafka properties whose values are secrets.
_SECRET_KEYS = frozenset(
    {
        "sasl.password",
        "sasl.oauthbearer.client.secret",
        "ssl.key.password",
        "ssl.keystore.password",
        "ssl.key.pem",
    }
)
_ENV_PREFIX = "FORENSICS_KAFKA_"


@dataclass(frozen=True)
class KafkaSettings:
    """Where the broker is and how to authenticate to it.

    ``extra`` holds librdkafka properties passed through unchanged
    (``security.protocol``, ``sasl.mechanism``, ``ssl.ca.location``, ...); properties
    that hold secrets are kept apart in ``secrets``, even when given in ``extra``. From
    the environment, each variable ``FORENSICS_KAFKA_<NAME>`` becomes the property
    ``<name>`` with ``_`` read as ``.``, so ``FORENSICS_KAFKA_SASL_USERNAME`` sets
    ``sasl.username``.
    """

    bootstrap_servers: str = DEFAULT_BOOTSTRAP_SERVERS
    extra: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, SecretStr] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A secret passed in ``extra`` would show in repr(): move it.
        hidden = {k: v for k, v in self.extra.items() if is_secret_property(k)}
        if hidden:
            object.__setattr__(
                self,
                "extra",
                {k: v for k, v in self.extra.items() if k not in hidden},
            )
            object.__setattr__(
                self,
                "secrets",
                {**self.secrets, **{k: SecretStr(v) for k, v in hidden.items()}},
            )

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        bootstrap_servers: str | None = None,
    ) -> KafkaSettings:
        env = os.environ if environ is None else environ
        servers = bootstrap_servers or env.get("FORENSICS_BOOTSTRAP_SERVERS")
        extra: dict[str, str] = {}
        secrets: dict[str, SecretStr] = {}
        for name, value in env.items():
            if not name.startswith(_ENV_PREFIX) or name in _IGNORED_ENV:
                continue
            key = name[len(_ENV_PREFIX) :].lower().replace("_", ".")
            if key == "bootstrap.servers":
                servers = servers or value
            elif is_secret_property(key):
                secrets[key] = SecretStr(value)
            else:
                extra[key] = value
        return cls(
            bootstrap_servers=servers or DEFAULT_BOOTSTRAP_SERVERS,
            extra=extra,
            secrets=secrets,
        )

    def client_config(self, **overrides: Any) -> dict[str, Any]:
        """The librdkafka configuration for a client, secrets included.

        The client logs to :data:`CLIENT_LOGGER` unless ``logger`` is overridden.
        """
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "logger": CLIENT_LOGGER,
        }
        config.update(self.extra)
        config.update({k: v.get_secret_value() for k, v in self.secrets.items()})
        config.update(overrides)
        return config

    def describe(self) -> str:
        """A line safe to log: servers and property names, never secret values."""
        keys = sorted({*self.extra, *self.secrets})
        shown = ", ".join(keys) if keys else "no extra properties"
        return f"bootstrap_servers={self.bootstrap_servers} ({shown})"


def is_secret_property(key: str) -> bool:
    """Whether a librdkafka property holds a secret (passwords, keys, tokens)."""
    return (
        key in _SECRET_KEYS
        or "password" in key
        or "secret" in key
        or key == "sasl.oauthbearer.config"
    )


# Variables of scripts/services that share the prefix but are not client properties.
_IGNORED_ENV = frozenset(
    {"FORENSICS_KAFKA_PORT", "FORENSICS_KAFKA_CONTROLLER_PORT", "FORENSICS_KAFKA_HEAP"}
)


@dataclass(frozen=True)
class PostgresSettings:
    """A SQLAlchemy database URL; the password is kept out of ``repr`` and logs."""

    url: SecretStr = field(default_factory=lambda: SecretStr(DEFAULT_DATABASE_URL))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, url: str | None = None
    ) -> PostgresSettings:
        env = os.environ if environ is None else environ
        raw = url or env.get("FORENSICS_DATABASE_URL") or DEFAULT_DATABASE_URL
        if raw.startswith("postgresql://") or raw.startswith("postgres://"):
            # A plain libpq URL: use psycopg 3, the driver this package installs.
            raw = "postgresql+psycopg://" + raw.split("://", 1)[1]
        # Imported here: processes that never touch Postgres (the simulator's
        # worker, Kafka readers) start faster without SQLAlchemy.
        from sqlalchemy.engine import make_url

        try:
            make_url(raw)
        except Exception as exc:
            raise ConfigError(
                f"database URL {redact_url(raw)!r} is not a valid SQLAlchemy URL; "
                "expected postgresql+psycopg://user:password@host:port/database"
            ) from exc
        return cls(url=SecretStr(raw))

    def describe(self) -> str:
        return redact_url(self.url.get_secret_value())


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***``."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"
