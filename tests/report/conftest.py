"""A small simulated week, and reports run on it once per module."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from codegen_forensics.simulate.config import SimulationConfig
from codegen_forensics.simulate.snapshot_sink import write_snapshot

WEEK_START = datetime(2026, 11, 23, tzinfo=UTC)


@pytest.fixture(scope="session")
def week_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 sessions over seven days with every kind of trouble, as a snapshot."""
    target = tmp_path_factory.mktemp("week") / "snapshot"
    config = SimulationConfig(seed=11, sessions=300, days=7, start=WEEK_START)
    write_snapshot(config, target)
    return target


@pytest.fixture(scope="session")
def earlier_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The week before, with failures only, for the error-group diff."""
    target = tmp_path_factory.mktemp("earlier") / "snapshot"
    config = SimulationConfig(
        seed=5,
        sessions=150,
        days=7,
        start=datetime(2026, 11, 16, tzinfo=UTC),
    ).with_trouble("failures")
    write_snapshot(config, target)
    return target
