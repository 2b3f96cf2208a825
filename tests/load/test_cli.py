"""The ``snapshot`` commands, through the CLI runner against the real services."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from confluent_kafka import Producer
from typer.testing import CliRunner

from codegen_forensics.cli import app
from codegen_forensics.events.tables import create_event_tables
from codegen_forensics.settings import KafkaSettings, PostgresSettings
from codegen_forensics.snapshot import Snapshot

runner = CliRunner()


def test_snapshot_all_command_writes_one_snapshot_and_a_summary(
    kafka_settings: KafkaSettings,
    postgres_settings: PostgresSettings,
    topic_factory: Callable[..., str],
    schema_engine: sa.Engine,
    pg_schema: str,
    tmp_path: Path,
) -> None:
    topic = topic_factory("omninode_codegen_dlq_analyze_v1", partitions=2)
    producer = Producer(kafka_settings.client_config())
    for value in (b'{"error": "boom"}', b"[1]", b"{}"):
        producer.produce(topic, value, partition=0)
    producer.flush(30)
    create_event_tables(schema_engine, pg_schema)

    result = runner.invoke(
        app,
        [
            "snapshot",
            "all",
            "--out",
            str(tmp_path / "snap"),
            "--topics",
            f"^{topic}$",
            "--schema",
            pg_schema,
            "--database-url",
            postgres_settings.url.get_secret_value(),
            "--bootstrap-servers",
            kafka_settings.bootstrap_servers,
        ],
    )

    assert result.exit_code == 0, result.output
    snapshot = Snapshot.open(tmp_path / "snap", verify=True)
    assert snapshot.manifest["sources"] == ["kafka", "postgres"]
    assert snapshot.manifest["kafka"]["rows"] == 3
    assert snapshot.manifest["kafka"]["dlq_unknown"] == 1
    assert snapshot.manifest["postgres"]["tables"]["event_logs"]["rows"] == 0
    assert "Kafka topics (3 messages)" in result.output
    assert "table event_logs is empty" in result.output
    assert "unknown shape" in result.output
    assert "forensics:forensics@" not in result.output


def test_snapshot_postgres_command_naive_since_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["snapshot", "postgres", "--out", str(tmp_path), "--since", "2025-10-01"],
    )

    assert result.exit_code == 2
    assert "--since '2025-10-01' has no time zone" in result.output


def test_snapshot_kafka_command_bad_isolation_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["snapshot", "kafka", "--out", str(tmp_path), "--isolation-level", "dirty"],
    )

    assert result.exit_code == 2
    assert "isolation_level 'dirty' is not known" in result.output


def test_snapshot_command_unwritable_output_is_an_error_not_a_traceback(
    postgres_settings: PostgresSettings, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    result = runner.invoke(
        app,
        [
            "snapshot",
            "postgres",
            "--out",
            str(blocker / "snap"),
            "--database-url",
            postgres_settings.url.get_secret_value(),
        ],
    )

    assert result.exit_code == 2
    assert "could not write the snapshot in" in result.output
    assert "Not a directory" in result.output
    assert "Traceback" not in result.output
