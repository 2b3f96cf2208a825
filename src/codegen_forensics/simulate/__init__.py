"""Seeded, deterministic code-generation traffic with ground truth.

:func:`simulate` generates the traffic a :class:`SimulationConfig` describes into a
sink; :func:`write_snapshot` writes it straight into a snapshot directory and
:func:`run_to_services` sends it through the real producer into Kafka and through the
event-table writer into Postgres. Each returns the :class:`GroundTruth`: what was
injected, with exact counts and positions.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from codegen_forensics.simulate.config import (
        DLQ_SHAPES_USED,
        ERROR_KINDS,
        POISON_KINDS,
        TROUBLE_NAMES,
        BottleneckConfig,
        FailureConfig,
        OperationTiming,
        SimulationConfig,
        default_window_start,
        parse_trouble,
    )
    from codegen_forensics.simulate.services import ServiceSink, run_to_services
    from codegen_forensics.simulate.sinks import MemorySink, NullSink, Sink, simulate
    from codegen_forensics.simulate.snapshot_sink import (
        TRUTH_NAME,
        SnapshotSink,
        write_snapshot,
    )
    from codegen_forensics.simulate.traffic import (
        EventLogRow,
        Progress,
        SimMessage,
        Traffic,
        partition_for,
    )
    from codegen_forensics.simulate.truth import GroundTruth

__all__ = [
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
    "ServiceSink",
    "SimMessage",
    "SimulationConfig",
    "Sink",
    "SnapshotSink",
    "Traffic",
    "default_window_start",
    "parse_trouble",
    "partition_for",
    "run_to_services",
    "simulate",
    "write_snapshot",
]

# Where each public name lives. Names are imported on first use, so the worker
# process of a parallel simulation starts without importing the Kafka, Postgres and
# Parquet code it never runs (about a second of every run's critical path).
_SOURCES = {
    "BottleneckConfig": "config",
    "DLQ_SHAPES_USED": "config",
    "ERROR_KINDS": "config",
    "EventLogRow": "traffic",
    "FailureConfig": "config",
    "GroundTruth": "truth",
    "MemorySink": "sinks",
    "NullSink": "sinks",
    "OperationTiming": "config",
    "POISON_KINDS": "config",
    "Progress": "traffic",
    "ServiceSink": "services",
    "SimMessage": "traffic",
    "SimulationConfig": "config",
    "Sink": "sinks",
    "SnapshotSink": "snapshot_sink",
    "TROUBLE_NAMES": "config",
    "TRUTH_NAME": "snapshot_sink",
    "Traffic": "traffic",
    "default_window_start": "config",
    "parse_trouble": "config",
    "partition_for": "traffic",
    "run_to_services": "services",
    "simulate": "sinks",
    "write_snapshot": "snapshot_sink",
}


def __getattr__(name: str) -> Any:
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
