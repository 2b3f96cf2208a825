"""The package's exceptions: one root, a subclass per area.

Errors from confluent-kafka, psycopg and pyarrow are converted at the boundary where
we call them, keeping the original as ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DeliveryError",
    "ForensicsError",
    "InputError",
    "KafkaError",
    "PostgresError",
    "ProvisioningError",
    "PublishError",
    "ReportError",
    "SimulationError",
    "SnapshotError",
]


class ForensicsError(Exception):
    """Root of every error raised by codegen-forensics."""


class InputError(ForensicsError, ValueError):
    """A value given to us is not acceptable; the message says what is allowed."""


class ConfigError(ForensicsError):
    """Connection or threshold settings are missing or malformed."""


class KafkaError(ForensicsError):
    """The Kafka broker refused or failed a request."""


class ProvisioningError(KafkaError):
    """Topics could not be created or their configuration could not be read."""


class PublishError(KafkaError):
    """An event could not be delivered, even to its dead-letter topic."""


class DeliveryError(PublishError):
    """The broker did not accept one message; ``code`` is librdkafka's error name.

    Dead-letter envelopes record it as the failure of the event they carry.
    """

    def __init__(self, message: str, *, code: str, retriable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.retriable = retriable


class PostgresError(ForensicsError):
    """The database refused or failed a statement."""


class SnapshotError(ForensicsError):
    """A snapshot directory is incomplete, inconsistent or unreadable."""


class SimulationError(ForensicsError):
    """The traffic simulator could not finish (its worker process failed, say)."""


class ReportError(ForensicsError):
    """A notebook failed to execute or a report could not be exported."""
