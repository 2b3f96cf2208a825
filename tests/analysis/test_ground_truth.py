"""The analysis recovers what the simulator injected, through the real services.

One module-scoped run: the simulator fills a fresh set of topics and a fresh schema,
the loaders snapshot them, and the weekly review reads the snapshot. Every figure is
compared with the ground truth the simulator wrote while it emitted the traffic.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from codegen_forensics.analysis import open_analysis, weekly_review
from codegen_forensics.events.topics import TopicCatalog
from codegen_forensics.load import KafkaSnapshotOptions, PostgresSnapshotOptions
from codegen_forensics.load.run import run_snapshot
from codegen_forensics.settings import KafkaSettings, PostgresSettings
from codegen_forensics.simulate import GroundTruth, SimulationConfig, run_to_services


@pytest.fixture(scope="module")
def reviewed(
    kafka_settings: KafkaSettings,
    postgres_settings: PostgresSettings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[GroundTruth, dict[str, pd.DataFrame], Path]]:
    prefix = f"gt{datetime.now(UTC).strftime('%H%M%S%f')}_"
    schema = f"gt_{prefix.rstrip('_')}"
    url = postgres_settings.url.get_secret_value()
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    # Recent hours, so the status topic's three-day retention keeps every message;
    # the bottleneck's hours (13:00-16:00 UTC) fall inside two days whatever the time.
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    config = SimulationConfig(
        seed=53, sessions=600, days=2, start=now - timedelta(days=2)
    )
    try:
        truth = run_to_services(
            config, kafka_settings, url, TopicCatalog(prefix=prefix), schema=schema
        )
        root = tmp_path_factory.mktemp("ground-truth") / "snapshot"
        run_snapshot(
            root,
            kafka=kafka_settings,
            kafka_options=KafkaSnapshotOptions(
                catalog_prefix=prefix, topics=(f"^{re.escape(prefix)}",)
            ),
            postgres=postgres_settings,
            postgres_options=PostgresSnapshotOptions(schema=schema),
        )
        yield truth, weekly_review(root), root
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def _headline(result: dict[str, pd.DataFrame]) -> dict[str, Any]:
    row: dict[str, Any] = result["headline"].iloc[0].to_dict()
    return row


def test_messages_sessions_and_requests_equal_the_truth(reviewed: Any) -> None:
    truth, result, _ = reviewed
    head = _headline(result)
    assert head["messages"] == sum(truth.messages_per_topic.values())
    assert head["sessions"] == truth.sessions
    assert head["event_log_sessions"] == truth.sessions
    assert head["unfinished_sessions"] == len(truth.unfinished_sessions)
    # A dead letter that names no correlation id cannot be tied to its request.
    untied = sum(1 for d in truth.dlq_messages if d.variant == "empty")
    assert head["unanswered_requests"] == len(truth.unanswered_requests) + untied
    latency = result["latency_overall"].iloc[0]
    readable_poison = sum(
        1
        for p in truth.poison
        if p.expected_decode_status not in ("not_json", "not_utf8", "tombstone")
    )
    assert latency["requests"] == sum(truth.requests.values()) + readable_poison
    assert latency["poison_unanswered"] == readable_poison
    assert latency["duplicate_responses"] == len(truth.duplicates)


def test_one_dlq_group_per_injected_error_kind(reviewed: Any) -> None:
    truth, result, _ = reviewed
    groups = result["dlq_groups"]
    assert result["headline"].iloc[0]["dlq_messages"] == len(truth.dlq_messages)
    # Dead letters without a message (minimal `{}`, null or missing error) cannot
    # say their kind; every other one lands in its kind's group.
    with_message = [d for d in truth.dlq_messages if d.normalised_error_message]
    by_kind = Counter(d.kind for d in with_message)
    messaged = groups[groups["template"] != "<no message>"]
    assert sorted(messaged["messages"].tolist()) == sorted(by_kind.values())
    assert len(messaged) == len(by_kind)
    silent = groups.loc[groups["template"] == "<no message>", "messages"].sum()
    assert silent == len(truth.dlq_messages) - len(with_message)


def test_dlq_rates_equal_the_truth(reviewed: Any) -> None:
    truth, result, _ = reviewed
    rates = result["dlq_rate_total"].set_index("source_topic")
    assert rates.index.notna().all()
    checked = 0
    for operation in ("analyze", "validate", "pattern", "mixin"):
        expected = truth.dlq_rates[operation]
        row = rates.loc[expected["source_topic"]]
        assert row["dlq_messages"] == expected["dlq_messages"], operation
        assert row["source_messages"] == expected["source_messages"], operation
        assert row["dlq_rate"] == pytest.approx(expected["rate"]), operation
        checked += expected["dlq_messages"]
    assert checked == len(truth.dlq_messages)


def test_poison_counts_equal_the_truth(reviewed: Any) -> None:
    truth, result, _ = reviewed
    assert _headline(result)["poison_messages"] == len(truth.poison)
    poison = result["poison"]
    found = Counter(
        {(row.topic, row.decode_status): row.messages for row in poison.itertuples()}
    )
    expected = Counter((p.topic, p.expected_decode_status) for p in truth.poison)
    assert found == expected


def test_bottleneck_found_in_the_injected_hours(reviewed: Any) -> None:
    truth, result, _ = reviewed
    assert truth.bottleneck is not None
    hours = result["bottleneck_hours"]
    banded = hours[hours["bottleneck"]]
    found = {
        (row.topic, row.hour.strftime("%Y-%m-%dT%H"), row.severity)
        for row in banded.itertuples()
    }
    expected = {
        (topic, hour.hour[:13], hour.band)
        for topic, band_hours in truth.bands.items()
        for hour in band_hours
    }
    assert found == expected
    injected = {h.hour[:13] for h in truth.bottleneck.hourly if h.band == "high"}
    slow = {
        row.hour.strftime("%Y-%m-%dT%H")
        for row in banded.itertuples()
        if row.topic == truth.bottleneck.response_topic and row.severity == "high"
    }
    assert injected
    assert injected <= slow


def test_latency_and_session_durations_equal_the_truth(reviewed: Any) -> None:
    truth, result, _ = reviewed
    overall = result["latency_overall"].iloc[0]
    expected = truth.latency["all"]
    assert overall["answered"] == expected.count
    assert overall["processing_mean_ms"] == pytest.approx(expected.avg_ms)
    assert overall["processing_p50_ms"] == pytest.approx(expected.p50_ms)
    assert overall["processing_p95_ms"] == pytest.approx(expected.p95_ms)
    assert overall["processing_p99_ms"] == pytest.approx(expected.p99_ms)
    sessions = result["sessions"].set_index("source").loc["topics"]
    durations = truth.session_duration_ms
    assert sessions["duration_mean_ms"] == pytest.approx(durations.avg_ms)
    assert sessions["duration_p50_ms"] == pytest.approx(durations.p50_ms)
    assert sessions["duration_p95_ms"] == pytest.approx(durations.p95_ms)
    assert sessions["duration_max_ms"] == durations.max_ms


def test_consumer_lag_equals_the_committed_offsets(reviewed: Any) -> None:
    truth, result, root = reviewed
    lag = result["consumer_lag"]
    found = {
        (row.group_id, row.topic, row.partition): row.lag_messages
        for row in lag.itertuples()
    }
    expected = {
        (c.group_id, c.topic, c.partition): c.lag for c in truth.consumer_offsets
    }
    assert found == expected
    with open_analysis(root) as a:
        assert a.snapshot.manifest is not None
