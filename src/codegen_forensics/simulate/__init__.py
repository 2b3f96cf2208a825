"""Seeded, deterministic code-generation traffic with ground truth.

:func:`simulate` generates the traffic a :class:`SimulationConfig` describes into a
sink; :func:`write_snapshot` writes it straight into a snapshot directory and
:func:`run_to_services` sends it through the real producer into Kafka and through the
event-table writer into Postgres. Each returns the :class:`GroundTruth`: what was
injected, with exact counts and positions.
"""

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
