"""The main job against live systems: simulate into Kafka and Postgres, review."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from codegen_forensics.cli import app
from codegen_forensics.events.topics import TopicCatalog
from codegen_forensics.settings import KafkaSettings, PostgresSettings
from codegen_forensics.simulate.config import SimulationConfig
from codegen_forensics.simulate.services import run_to_services


def test_review_of_live_systems_matches_the_ground_truth(
    kafka_settings: KafkaSettings,
    postgres_settings: PostgresSettings,
    unique_prefix: str,
    pg_schema: str,
    tmp_path: Path,
) -> None:
    # A recent window, so the broker's retention keeps every message.
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    config = SimulationConfig(
        seed=31, sessions=150, days=1, start=now - timedelta(days=2)
    )
    truth = run_to_services(
        config,
        kafka_settings,
        postgres_settings.url.get_secret_value(),
        TopicCatalog(prefix=unique_prefix),
        schema=pg_schema,
    )

    result = CliRunner().invoke(
        app,
        [
            "review",
            "--out",
            str(tmp_path / "review"),
            "--bootstrap-servers",
            kafka_settings.bootstrap_servers,
            "--database-url",
            postgres_settings.url.get_secret_value(),
            "--prefix",
            unique_prefix,
            "--schema",
            pg_schema,
        ],
    )
    assert result.exit_code == 0, result.output
    html = Path(result.output.strip().splitlines()[-1])
    assert html.name == "weekly_dlq_review.html"
    assert html.exists()
    record = json.loads((html.parent / "report.json").read_text())
    headline = record["headline"]

    assert headline["messages"] == sum(truth.messages_per_topic.values())
    assert headline["dlq_messages"] == len(truth.dlq_messages)
    assert headline["sessions"] == truth.sessions
    assert headline["unfinished_sessions"] == len(truth.unfinished_sessions)
    assert headline["poison_messages"] == len(truth.poison)
    untied = sum(1 for d in truth.dlq_messages if d.variant == "empty")
    assert headline["unanswered_requests"] == len(truth.unanswered_requests) + untied
    assert "forensics:forensics@" not in result.output
