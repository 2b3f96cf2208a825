"""The simulator against bare loops sending the same bytes to the same services.

Run: ``.venv/bin/python bench/bench_simulate.py [--sessions 10000] [--days 7]``
with Kafka and Postgres running (``scripts/services start``).

One simulated week is measured five ways, each into fresh topics (a unique prefix)
or a fresh schema, all dropped at the end:

- Kafka, simulator: :func:`run_to_services` with Postgres left out, so the time
  covers generating the traffic and sending it through :class:`EventProducer`;
- Kafka, bare: a plain confluent-kafka produce loop with the producer's settings
  sending the very same keys, values and timestamps, then a flush;
- Postgres, simulator: :func:`run_to_services` with Kafka left out, generating the
  traffic and writing ``event_logs`` through :class:`EventLogWriter`;
- Postgres, bare: one ``COPY`` of the very same rows, prepared beforehand, into an
  identical ``event_logs`` table (same indexes);
- both services at once, the way ``codegen-forensics simulate`` runs.

Ratios are simulator rate over bare rate (1.0 = as fast as the bare loop). The
snapshot writer is timed too: :func:`write_snapshot` of the default 2,000-session
week and of the same week as above.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from codegen_forensics.events.producer import PRODUCER_CONFIG
from codegen_forensics.events.tables import EVENT_LOG_COLUMNS, create_event_tables
from codegen_forensics.events.topics import TopicCatalog
from codegen_forensics.settings import KafkaSettings, PostgresSettings
from codegen_forensics.simulate import (
    MemorySink,
    SimulationConfig,
    Traffic,
    simulate,
    write_snapshot,
)
from codegen_forensics.simulate.services import (
    provision_simulation_topics,
    run_to_services,
)

SINK_PREFIX = "bench_"
# The simulator's rows leave event_id to the database.
COPY_COLUMNS = EVENT_LOG_COLUMNS[1:]


@contextmanager
def fresh_topics(settings: KafkaSettings, config: SimulationConfig) -> Iterator[Any]:
    """A provisioned catalog under a new prefix, deleted afterwards."""
    catalog = TopicCatalog(prefix=f"bench{uuid.uuid4().hex[:6]}_")
    provision_simulation_topics(settings, Traffic(config, catalog))
    try:
        yield catalog
    finally:
        admin = AdminClient(settings.client_config())
        names = [
            t
            for t in admin.list_topics(timeout=10).topics
            if t.startswith(catalog.prefix)
        ]
        for future in admin.delete_topics(names, operation_timeout=60).values():
            future.result(timeout=60)


@contextmanager
def fresh_schema(engine: sa.Engine) -> Iterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        create_event_tables(engine, schema)
        yield schema
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


def bare_produce(
    settings: KafkaSettings, catalog: TopicCatalog, sink: MemorySink
) -> float:
    """Send the simulation's messages with a plain produce loop; seconds taken."""
    messages = [
        (
            catalog.prefix + m.topic.removeprefix(SINK_PREFIX),
            m.value,
            m.key,
            m.timestamp_ms,
        )
        for m in sink.messages
    ]
    producer = Producer(settings.client_config(**PRODUCER_CONFIG))
    delivered = 0

    def on_delivery(error: Any, message: Any) -> None:
        nonlocal delivered
        if error is None:
            delivered += 1

    started = time.perf_counter()
    for topic, value, key, timestamp in messages:
        while True:
            try:
                producer.produce(
                    topic, value, key, timestamp=timestamp, on_delivery=on_delivery
                )
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush()
    took = time.perf_counter() - started
    assert delivered == len(messages), f"{delivered} of {len(messages)} delivered"
    return took


def bare_copy(engine: sa.Engine, schema: str, sink: MemorySink) -> float:
    """COPY the simulation's rows, prepared beforehand; seconds taken."""
    rows = [
        (
            r["session_id"],
            r["correlation_id"],
            r["event_type"],
            r["topic"],
            r["timestamp"],
            r["status"],
            r["processing_time_ms"],
            r["payload"],
            json.dumps(r["metadata"]),
        )
        for r in sink.rows
    ]
    columns = ", ".join(f'"{c}"' for c in COPY_COLUMNS)
    statement = f'COPY "{schema}"."event_logs" ({columns}) FROM STDIN'
    started = time.perf_counter()
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    return time.perf_counter() - started


def timed(label: str, action: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    took = time.perf_counter() - started
    print(f"  {label}: {took:.2f} s", flush=True)
    return took, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the Kafka pair this many times, alternating; medians are used",
    )
    parser.add_argument(
        "--kafka-only",
        action="store_true",
        help="measure generation and the Kafka pair only (for iterating)",
    )
    args = parser.parse_args()
    # The window is a week in the past: the broker's retention warnings are expected.
    logging.basicConfig(level=logging.ERROR)

    kafka = KafkaSettings.from_env()
    engine = sa.create_engine(PostgresSettings.from_env().url.get_secret_value())
    config = SimulationConfig(sessions=args.sessions, days=args.days, seed=args.seed)
    print(
        f"simulated week: {args.sessions:,} sessions over {args.days} days, "
        f"seed {args.seed}; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores",
        flush=True,
    )

    # The bytes and rows every measurement sends.
    sink = MemorySink()
    generate, _ = timed("generating only (no sink)", lambda: simulate(config))
    simulate(config, sink, catalog=TopicCatalog(prefix=SINK_PREFIX))
    messages, rows = len(sink.messages), len(sink.rows)
    megabytes = sum(len(m.value or b"") for m in sink.messages) / 1e6
    print(f"  {messages:,} messages ({megabytes:.1f} MB), {rows:,} event_logs rows")

    # On a shared machine one pair can land in a busy minute and the other in a
    # quiet one: --repeat alternates the pair and takes the median of each.
    results: dict[str, float] = {}
    sim_times: list[float] = []
    bare_times: list[float] = []
    for _ in range(args.repeat):
        with fresh_topics(kafka, config) as catalog:
            took, _ = timed(
                "Kafka, simulator",
                lambda: run_to_services(
                    config, kafka, catalog=catalog, postgres=False, provision=False
                ),
            )
            sim_times.append(took)
        with fresh_topics(kafka, config) as catalog:
            bare_times.append(bare_produce(kafka, catalog, sink))
            print(f"  Kafka, bare produce loop: {bare_times[-1]:.2f} s", flush=True)
    results["kafka_sim"] = statistics.median(sim_times)
    results["kafka_bare"] = statistics.median(bare_times)
    if args.repeat > 1:
        each = zip(sim_times, bare_times, strict=True)
        pairs = ", ".join(f"{bare / sim:.2f}" for sim, bare in each)
        print(f"  Kafka ratio of each pair: {pairs}")
    if args.kafka_only:
        kafka_sim = messages / results["kafka_sim"]
        kafka_bare = messages / results["kafka_bare"]
        print(
            f"Kafka messages per second: simulator {kafka_sim:,.0f}, bare "
            f"{kafka_bare:,.0f}, ratio {kafka_sim / kafka_bare:.2f}; generation "
            f"alone {generate:.1f} s; load average {os.getloadavg()[0]:.1f}"
        )
        engine.dispose()
        return

    with fresh_schema(engine) as schema:
        results["pg_sim"], _ = timed(
            "Postgres, simulator",
            lambda: run_to_services(
                config, database_url=engine, schema=schema, kafka=False
            ),
        )
    with fresh_schema(engine) as schema:
        results["pg_bare"] = bare_copy(engine, schema, sink)
        print(f"  Postgres, bare COPY: {results['pg_bare']:.2f} s")

    with fresh_topics(kafka, config) as catalog, fresh_schema(engine) as schema:
        results["both"], _ = timed(
            "both services, simulator",
            lambda: run_to_services(
                config, kafka, engine, catalog, schema=schema, provision=False
            ),
        )

    out = Path(tempfile.mkdtemp(prefix="bench_simulate_"))
    try:
        results["snap_default"], _ = timed(
            "write_snapshot, default week of 2,000 sessions",
            lambda: write_snapshot(SimulationConfig(seed=args.seed), out / "default"),
        )
        results["snap_week"], _ = timed(
            f"write_snapshot, {args.sessions:,} sessions",
            lambda: write_snapshot(config, out / "week"),
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)
    engine.dispose()

    print()
    print(f"{'measure':<34}{'simulator':>14}{'bare':>14}{'ratio':>8}")
    kafka_sim = messages / results["kafka_sim"]
    kafka_bare = messages / results["kafka_bare"]
    pg_sim, pg_bare = rows / results["pg_sim"], rows / results["pg_bare"]
    print(
        f"{'Kafka messages per second':<34}{kafka_sim:>14,.0f}{kafka_bare:>14,.0f}"
        f"{kafka_sim / kafka_bare:>8.2f}"
    )
    print(
        f"{'Postgres rows per second':<34}{pg_sim:>14,.0f}{pg_bare:>14,.0f}"
        f"{pg_sim / pg_bare:>8.2f}"
    )
    print(
        f"week into both services: {results['both']:.1f} s (aim: under 60 s); "
        f"generation alone {generate:.1f} s"
    )
    print(
        f"write_snapshot: default week {results['snap_default']:.1f} s, "
        f"{args.sessions:,} sessions {results['snap_week']:.1f} s"
    )
    print("aim: both ratios at least 0.5 (the simulator costs at most half the rate)")


if __name__ == "__main__":
    main()
