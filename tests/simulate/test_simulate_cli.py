"""The ``simulate`` command, through the CLI runner."""

from __future__ import annotations

import contextlib
from pathlib import Path

import sqlalchemy as sa
from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner, Result

from codegen_forensics.cli import app
from codegen_forensics.events.topics import TopicCatalog
from codegen_forensics.settings import KafkaSettings, PostgresSettings
from codegen_forensics.simulate import (
    GroundTruth,
    MemorySink,
    SimulationConfig,
    simulate,
)
from codegen_forensics.snapshot import Snapshot

from .conftest import read_topics, recent_start

runner = CliRunner()


def test_simulate_command_writes_a_snapshot_and_its_truth(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "simulate",
            "--sessions",
            "30",
            "--days",
            "1",
            "--seed",
            "2",
            "--start",
            "2026-03-16T00:00:00Z",
            "--trouble",
            "failures,poison",
            "--snapshot",
            str(tmp_path / "snap"),
        ],
    )

    assert result.exit_code == 0, result.output
    truth = GroundTruth.read(tmp_path / "snap" / "ground_truth.json")
    assert truth.sessions == 30
    assert truth.window_start == "2026-03-16T00:00:00Z"
    assert set(truth.config["trouble"]) == {"failures", "poison"}
    assert truth.duplicates == []
    snapshot = Snapshot.open(tmp_path / "snap", verify=True)
    assert snapshot.manifest["kafka"]["rows"] == sum(truth.messages_per_topic.values())
    assert "Messages per topic" in result.output
    assert "Poison messages on request topics" in result.output
    assert f"ground truth written to {tmp_path / 'snap' / 'ground_truth.json'}" in (
        result.output.replace("\n", "")
    )


def test_simulate_command_overwrite_replaces_an_existing_snapshot(
    tmp_path: Path,
) -> None:
    def run(seed: str, *extra: str) -> Result:
        args = ["simulate", "--sessions", "5", "--days", "1", "--seed", seed]
        args += ["--start", "2026-03-16T00:00:00Z", "--snapshot", str(tmp_path / "s")]
        return runner.invoke(app, [*args, *extra])

    first = run("1")
    refused = run("2")
    replaced = run("2", "--overwrite")

    assert first.exit_code == 0, first.output
    assert refused.exit_code == 2
    assert "--overwrite" in refused.output
    assert replaced.exit_code == 0, replaced.output
    assert GroundTruth.read(tmp_path / "s" / "ground_truth.json").seed == 2


def test_simulate_command_unknown_trouble_exits_2() -> None:
    result = runner.invoke(app, ["simulate", "--trouble", "floods", "--snapshot", "x"])
    assert result.exit_code == 2
    assert "'floods' is not known" in result.output


def test_simulate_command_start_without_zone_exits_2() -> None:
    result = runner.invoke(
        app, ["simulate", "--start", "2026-03-16T00:00:00", "--snapshot", "x"]
    )
    assert result.exit_code == 2
    assert "has no time zone" in result.output


def test_simulate_command_sends_to_the_services(
    kafka_settings: KafkaSettings,
    postgres_settings: PostgresSettings,
    schema_engine: sa.Engine,
    pg_schema: str,
    unique_prefix: str,
    tmp_path: Path,
) -> None:
    start = recent_start()
    try:
        result = runner.invoke(
            app,
            [
                "simulate",
                "--sessions",
                "25",
                "--days",
                "1",
                "--seed",
                "9",
                "--start",
                start.isoformat(),
                "--prefix",
                unique_prefix,
                "--schema",
                pg_schema,
                "--truth",
                str(tmp_path / "truth.json"),
                "--bootstrap-servers",
                kafka_settings.bootstrap_servers,
                "--database-url",
                postgres_settings.url.get_secret_value(),
            ],
        )
        assert result.exit_code == 0, result.output
        truth = GroundTruth.read(tmp_path / "truth.json")
        assert truth.catalog_prefix == unique_prefix
        with schema_engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT count(*) FROM event_logs")).scalar()
        assert rows == truth.event_logs_rows

        # Every message is on the broker where the generator put it, byte for byte.
        expected = MemorySink()
        simulate(
            SimulationConfig(seed=9, sessions=25, days=1, start=start),
            expected,
            catalog=TopicCatalog(prefix=unique_prefix),
        )
        partitions = {t: len(p) for t, p in truth.messages_per_partition.items()}
        found = read_topics(kafka_settings, partitions)
        assert {
            position: (message["key"], message["value"], message["timestamp"][1])
            for position, message in found.items()
        } == {
            (m.topic, m.partition, m.offset): (m.key, m.value, m.timestamp_ms)
            for m in expected.messages
        }
    finally:
        admin = AdminClient(kafka_settings.client_config())
        topics = [
            t
            for t in admin.list_topics(timeout=10).topics
            if t.startswith(unique_prefix)
        ]
        if topics:
            for future in admin.delete_topics(topics, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    future.result(timeout=30)
