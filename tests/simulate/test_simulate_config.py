from __future__ import annotations

from datetime import UTC, datetime

import pytest

from codegen_forensics.errors import InputError
from codegen_forensics.simulate import (
    TROUBLE_NAMES,
    SimulationConfig,
    default_window_start,
    parse_trouble,
)


def test_parse_trouble_names_keeps_the_named_kinds() -> None:
    assert parse_trouble("failures, bottleneck") == {"failures", "bottleneck"}


def test_parse_trouble_all_and_none() -> None:
    assert parse_trouble("all") == set(TROUBLE_NAMES)
    assert parse_trouble("none") == frozenset()
    assert parse_trouble("") == frozenset()


def test_parse_trouble_unknown_name_is_refused_with_the_allowed_names() -> None:
    with pytest.raises(InputError, match=r"'lag' is not known.*bottleneck, failures"):
        parse_trouble("failures,lag")


def test_config_build_names_the_bad_field_and_value() -> None:
    with pytest.raises(InputError, match=r"SimulationConfig\.sessions.*got 0"):
        SimulationConfig.build(sessions=0)


def test_config_failure_rate_above_one_is_refused() -> None:
    with pytest.raises(
        InputError, match=r"rates\['validate'\] must be between 0 and 1, got 1.5"
    ):
        SimulationConfig.build(failures={"rates": {"validate": 1.5}})


def test_config_bottleneck_of_unknown_operation_is_refused() -> None:
    with pytest.raises(InputError, match=r"operation 'compile' is not known"):
        SimulationConfig.build(bottleneck={"operation": "compile"})


def test_config_bottleneck_hours_out_of_order_are_refused() -> None:
    with pytest.raises(InputError, match=r"end_hour 9 must be after start_hour 10"):
        SimulationConfig.build(bottleneck={"start_hour": 10, "end_hour": 9})


def test_window_default_is_the_last_full_days_in_utc() -> None:
    now = datetime(2026, 3, 18, 9, 30, tzinfo=UTC)
    start, end = SimulationConfig(days=7).window(now)
    assert start == datetime(2026, 3, 11, tzinfo=UTC)
    assert end == datetime(2026, 3, 18, tzinfo=UTC)
    assert default_window_start(1, now) == datetime(2026, 3, 17, tzinfo=UTC)


def test_with_trouble_switches_the_others_off() -> None:
    config = SimulationConfig().with_trouble("poison")
    assert config.trouble == {"poison"}
    assert config.has("poison")
    assert not config.has("failures")
