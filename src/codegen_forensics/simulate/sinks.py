"""Where simulated traffic goes: the sink protocol, and :func:`simulate` over a sink.

A sink takes the stream's messages and ``event_logs`` rows in order, then finishes:
it may adjust the ground truth (a broker whose topics already held messages shifts
offsets) and returns it. :class:`MemorySink` keeps everything in lists;
:class:`~codegen_forensics.simulate.snapshot_sink.SnapshotSink` writes a snapshot
directory and :class:`~codegen_forensics.simulate.services.ServiceSink` sends to Kafka
and Postgres.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from codegen_forensics.events.topics import TopicCatalog
from codegen_forensics.simulate.config import SimulationConfig
from codegen_forensics.simulate.traffic import (
    EventLogRow,
    Progress,
    SimMessage,
    Traffic,
)
from codegen_forensics.simulate.truth import GroundTruth

__all__ = ["MemorySink", "NullSink", "Sink", "simulate"]

logger = logging.getLogger(__name__)


class Sink(Protocol):
    """Receives a simulation's messages and rows in the order they happen.

    ``wants_messages`` and ``wants_rows`` say which of the two it takes, and
    ``wants_events`` whether messages must keep their event models (for a producer
    that validates them again); what a sink does not want is not sent to it.
    """

    wants_messages: bool
    wants_rows: bool
    wants_events: bool

    def message(self, message: SimMessage) -> None: ...

    def row(self, row: EventLogRow) -> None: ...

    def finish(self, traffic: Traffic, truth: GroundTruth) -> GroundTruth: ...


class NullSink:
    """Discards everything: for computing a ground truth alone."""

    wants_messages = False
    wants_rows = False
    wants_events = False

    def message(self, message: SimMessage) -> None:
        pass

    def row(self, row: EventLogRow) -> None:
        pass

    def finish(self, traffic: Traffic, truth: GroundTruth) -> GroundTruth:
        return truth


@dataclass
class MemorySink:
    """Keeps every message and row in lists, in emission order."""

    messages: list[SimMessage] = field(default_factory=list)
    rows: list[EventLogRow] = field(default_factory=list)
    wants_messages: bool = True
    wants_rows: bool = True
    wants_events: bool = True

    def message(self, message: SimMessage) -> None:
        self.messages.append(message)

    def row(self, row: EventLogRow) -> None:
        self.rows.append(row)

    def finish(self, traffic: Traffic, truth: GroundTruth) -> GroundTruth:
        return truth


@contextmanager
def _long_lived_objects_frozen() -> Iterator[None]:
    """Keep the garbage collector off the objects that exist before a run.

    A run allocates a few objects per message that live until the message is
    delivered or written, so collections run often; each full one would walk every
    module, class and function already loaded. :func:`gc.freeze` sets those aside
    for the run; they are handed back afterwards, unless the caller had frozen
    objects of its own, which are then left as they were.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def simulate(
    config: SimulationConfig,
    sink: Sink | None = None,
    *,
    catalog: TopicCatalog | None = None,
    now: datetime | None = None,
    progress: Callable[[Progress], None] | None = None,
    parallel: bool | None = None,
) -> GroundTruth:
    """Generate the traffic ``config`` describes into ``sink``; return its truth.

    Without a sink only the ground truth is computed. ``now`` fixes the clock the
    default window is taken from (the last ``config.days`` full days, UTC).
    ``parallel`` generates in a worker process while this one feeds the sink (by
    default for 1,000 sessions or more on a machine with several cores); the
    stream is the same either way.
    """
    target: Sink = sink if sink is not None else NullSink()
    traffic = Traffic(
        config,
        catalog,
        now=now,
        progress=progress,
        parallel=parallel,
        messages=target.wants_messages,
        rows=target.wants_rows,
        events=target.wants_events,
    )
    emit_message = target.message
    emit_row = target.row
    with _long_lived_objects_frozen():
        for item in traffic:
            if isinstance(item, SimMessage):
                emit_message(item)
            else:
                emit_row(item)
    truth = traffic.ground_truth()
    logger.info(
        "simulation generated seed=%s sessions=%s messages=%s rows=%s",
        config.seed,
        config.sessions,
        sum(truth.messages_per_topic.values()),
        truth.event_logs_rows,
    )
    return target.finish(traffic, truth)
