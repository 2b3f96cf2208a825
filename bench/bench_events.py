"""Throughput of the event producer and the event_logs writer, against baselines.

Run with the services up: ``.venv/bin/python bench/bench_events.py [--events N]``.
Every figure comes with a baseline measured in the same run on the same machine:

- producer: ``EventProducer.publish`` (validation, keys, timestamps, delivery
  tracking) against a bare confluent-kafka ``produce`` of the same bytes with the
  same configuration; and gzip against no compression, in bytes on the wire;
- writer: ``EventLogWriter`` (COPY) against SQLAlchemy ``executemany`` inserts of
  the same rows.
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

import sqlalchemy as sa
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from codegen_forensics.events.producer import PRODUCER_CONFIG, EventProducer
from codegen_forensics.events.provision import provision_topics
from codegen_forensics.events.schemas import (
    CodegenAnalysisRequest,
    CodegenAnalysisResponse,
    CodegenEvent,
    CodegenStatusEvent,
)
from codegen_forensics.events.tables import (
    EventLogWriter,
    create_event_tables,
    event_log_row,
    event_logs_table,
)
from codegen_forensics.events.topics import TopicCatalog
from codegen_forensics.settings import KafkaSettings, PostgresSettings


def make_events(count: int) -> list[CodegenEvent]:
    """Requests, responses and status events over 50 sessions, realistic sizes."""
    sessions = [uuid.uuid4() for _ in range(50)]
    events: list[CodegenEvent] = []
    for i in range(count):
        session = sessions[i % len(sessions)]
        kind = i % 3
        if kind == 0:
            events.append(
                CodegenAnalysisRequest(
                    correlation_id=uuid.uuid4(),
                    session_id=session,
                    prd_content=f"# Service {i}\n\n## Requirements\n" + "- item\n" * 40,
                    workspace_context={"language": "python", "framework": "onex"},
                )
            )
        elif kind == 1:
            events.append(
                CodegenAnalysisResponse(
                    correlation_id=uuid.uuid4(),
                    session_id=session,
                    analysis_result={"requirements": ["JWT"] * 10, "n": i},
                    confidence=0.9,
                    processing_time_ms=1200 + i % 500,
                )
            )
        else:
            events.append(
                CodegenStatusEvent(
                    session_id=session,
                    status="analyzing",
                    progress_percentage=float(i % 100),
                    message="Analyzing PRD for node requirements",
                )
            )
    return events


def bench_producer(
    settings: KafkaSettings, catalog: TopicCatalog, events: list[CodegenEvent]
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for compression in ("gzip", "none"):
        producer = EventProducer(
            settings,
            catalog,
            config={"compression.type": compression},
            stats_interval_ms=200,
        )
        producer.publish(events[0])  # connect and get a producer id first
        producer.flush()
        producer.stats.latencies_ms.clear()
        start = time.perf_counter()
        for event in events:
            producer.publish(event)
        stats = producer.flush()
        elapsed = time.perf_counter() - start
        time.sleep(0.5)
        producer.poll(0.1)
        results[compression] = {
            "seconds": elapsed,
            "rate": len(events) / elapsed,
            "p50_ms": stats.latency_percentile(50),
            "p95_ms": stats.latency_percentile(95),
            "value_bytes": stats.value_bytes,
            "wire_bytes": stats.wire_bytes,
        }
        producer.close()

    # Baseline: the same bytes through a bare producer with the same settings.
    values = [
        (catalog.name(e.category, e.operation), e.to_json_bytes(), e) for e in events
    ]
    bare = Producer(settings.client_config(**PRODUCER_CONFIG))
    bare.produce(values[0][0], values[0][1])
    bare.flush()
    delivered = 0

    def count(err: Any, msg: Any) -> None:
        nonlocal delivered
        delivered += err is None

    start = time.perf_counter()
    for topic, value, event in values:
        while True:
            try:
                bare.produce(
                    topic,
                    value,
                    str(event.session_id).encode(),
                    on_delivery=count,
                )
                break
            except BufferError:
                bare.poll(0.05)
        bare.poll(0)
    bare.flush()
    results["bare"] = {
        "seconds": time.perf_counter() - start,
        "delivered": delivered,
    }
    results["bare"]["rate"] = len(events) / results["bare"]["seconds"]
    return results


def bench_writer(engine: sa.Engine, events: list[CodegenEvent]) -> dict[str, Any]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        create_event_tables(engine, schema)
        rows = [event_log_row(e, status="sent", topic="t") for e in events]

        start = time.perf_counter()
        with EventLogWriter(engine, schema, batch_size=1000) as writer:
            writer.record_rows(rows)
        copy_seconds = time.perf_counter() - start

        table = event_logs_table(sa.MetaData(schema=schema))
        start = time.perf_counter()
        with engine.begin() as conn:
            for i in range(0, len(rows), 1000):
                conn.execute(table.insert(), rows[i : i + 1000])
        insert_seconds = time.perf_counter() - start

        with engine.connect() as conn:
            stored = conn.execute(
                sa.text(f'SELECT count(*) FROM "{schema}".event_logs')
            ).scalar_one()
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    return {
        "copy_seconds": copy_seconds,
        "insert_seconds": insert_seconds,
        "stored": stored,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()

    settings = KafkaSettings.from_env()
    catalog = TopicCatalog(prefix=f"bench{uuid.uuid4().hex[:8]}_")
    provision_topics(settings, catalog)
    events = make_events(args.events)
    try:
        producer = bench_producer(settings, catalog, events)
    finally:
        admin = AdminClient(settings.client_config())
        for future in admin.delete_topics(catalog.names()).values():
            future.result(timeout=30)

    engine = sa.create_engine(PostgresSettings.from_env().url.get_secret_value())
    writer = bench_writer(engine, events)
    engine.dispose()

    n = len(events)
    gzip, none, bare = producer["gzip"], producer["none"], producer["bare"]
    print(f"events: {n}")
    print(
        f"EventProducer gzip: {gzip['rate']:,.0f} events/s, delivery latency "
        f"p50 {gzip['p50_ms']:.1f} ms p95 {gzip['p95_ms']:.1f} ms"
    )
    print(
        f"bare confluent-kafka produce, same bytes and config: "
        f"{bare['rate']:,.0f} msgs/s -> EventProducer runs at "
        f"{gzip['rate'] / bare['rate']:.2f}x of it"
    )
    print(
        f"wire bytes gzip {gzip['wire_bytes']:,} vs none {none['wire_bytes']:,} for "
        f"{gzip['value_bytes']:,} value bytes -> gzip ratio "
        f"{none['wire_bytes'] / max(gzip['wire_bytes'], 1):.1f}x"
    )
    print(
        f"EventLogWriter COPY: {n / writer['copy_seconds']:,.0f} rows/s; "
        f"SQLAlchemy executemany: {n / writer['insert_seconds']:,.0f} rows/s -> "
        f"COPY is {writer['insert_seconds'] / writer['copy_seconds']:.1f}x faster "
        f"({writer['stored']} rows stored in all)"
    )


if __name__ == "__main__":
    main()
