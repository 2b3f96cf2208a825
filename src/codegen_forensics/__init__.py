"""Forensic analytics over an event-driven code-generation system."""

from importlib import metadata

from codegen_forensics.errors import (
    ConfigError,
    ForensicsError,
    InputError,
    KafkaError,
    PostgresError,
    ProvisioningError,
    PublishError,
    SnapshotError,
)
from codegen_forensics.settings import KafkaSettings, PostgresSettings

try:
    __version__ = metadata.version("codegen-forensics")
except metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "ConfigError",
    "ForensicsError",
    "InputError",
    "KafkaError",
    "KafkaSettings",
    "PostgresError",
    "PostgresSettings",
    "ProvisioningError",
    "PublishError",
    "SnapshotError",
    "__version__",
]
