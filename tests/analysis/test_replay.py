from datetime import UTC, datetime
from pathlib import Path

import pytest

from codegen_forensics.analysis import open_analysis
from codegen_forensics.analysis.replay import is_transient, replay_candidates
from codegen_forensics.simulate import SimulationConfig, write_snapshot


@pytest.mark.parametrize(
    ("error_type", "message", "expected"),
    [
        ("TimeoutError", "Timed out after 45.5s waiting for a response", True),
        ("ConnectionRefusedError", "connection refused by 10.0.0.4:8053", True),
        # The client library's refusals say neither "timeout" nor "refused".
        (
            "ClientConnectorError",
            "Cannot connect to host llm-0:8053 [Connect call failed ('10.1.1.7', 80)]",
            True,
        ),
        ("KafkaError", "Broker not available", True),
        ("HTTPError", "upstream answered 503", True),
        ("ValidationError", "Invalid node_type: 'Effect'", False),
        ("KeyError", "missing key 'architecture' in intelligence payload", False),
        (None, None, False),
    ],
)
def test_is_transient_reads_type_and_message(
    error_type: str | None, message: str | None, expected: bool
) -> None:
    assert is_transient(error_type, message) is expected


def test_replay_candidates_are_the_transient_dead_letters_with_an_event(
    tmp_path: Path,
) -> None:
    config = SimulationConfig(
        seed=11, sessions=400, days=2, start=datetime(2026, 11, 23, tzinfo=UTC)
    ).with_trouble("failures")
    truth = write_snapshot(config, tmp_path / "snapshot")
    # Minimal dead letters carry no original event, so nothing could be replayed.
    expected = sorted(
        (d.topic, d.partition, d.offset)
        for d in truth.dlq_messages
        if d.kind in ("timeout", "connection_refused") and d.shape != "minimal"
    )
    assert expected
    assert {d.shape for d in truth.dlq_messages if d.kind == "connection_refused"} & {
        "flat",
        "client",
    }

    with open_analysis(tmp_path / "snapshot") as a:
        found = replay_candidates(a)

    got = sorted(
        zip(found["dlq_topic"], found["partition"], found["offset"], strict=True)
    )
    assert got == expected
    assert found["replay_topic"].str.contains("request").all()
