from __future__ import annotations

import codegen_forensics.simulate as simulate_package


def test_simulate_public_names_are_exported_and_exist() -> None:
    assert set(simulate_package.__all__) == {
        "DLQ_SHAPES_USED",
        "ERROR_KINDS",
        "POISON_KINDS",
        "TROUBLE_NAMES",
        "TRUTH_NAME",
        "BottleneckConfig",
        "EventLogRow",
        "FailureConfig",
        "GroundTruth",
        "MemorySink",
        "NullSink",
        "OperationTiming",
        "Progress",
        "SimMessage",
        "SimulationConfig",
        "Sink",
        "SnapshotSink",
        "Traffic",
        "default_window_start",
        "parse_trouble",
        "partition_for",
        "simulate",
        "write_snapshot",
        "run_to_services",
        "ServiceSink",
    }
    for name in simulate_package.__all__:
        assert getattr(simulate_package, name) is not None
