"""Speed and memory of the snapshot loaders, against baselines measured in the same run.

Run with the services up (``scripts/services start``) and kcat installed
(``bench/setup_load.sh``)::

    .venv/bin/python bench/bench_load.py [--messages 1000000] [--rows 500000]

Kafka, over the same topic of small simulated events:

- ``snapshot_kafka`` (decode, validate, Parquet) with one and with two reader
  processes, against a bare confluent-kafka consume loop over the same partitions
  (aim: at least half its rate);
- against Debian's ``kcat`` dumping the topic as JSON, then pandas writing that JSON
  to Parquet (aim: faster), which neither decodes nor validates anything;
- peak resident memory of a snapshot in a fresh process when the topic grows tenfold
  (aim: flat).

Postgres, over the same ``event_logs`` rows: ``snapshot_postgres`` against
``psql -c "COPY (...) TO STDOUT"`` (aim: at least half its rate) and against
``pandas.read_sql`` followed by ``to_parquet``. Each of ``--rounds`` rounds (3 by
default) runs psql, the snapshot and psql again, and compares the snapshot with the
mean of the two psql runs; the median over the rounds is reported.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from codegen_forensics.events.tables import create_event_tables
from codegen_forensics.load import (
    KafkaSnapshotOptions,
    PostgresSnapshotOptions,
    snapshot_kafka,
    snapshot_postgres,
)
from codegen_forensics.settings import KafkaSettings, PostgresSettings

TEMPLATE = (
    '{{"session_id":"{s}","correlation_id":"{c}","timestamp":"{t}",'
    '"schema_version":"1.0","prd_content":"# PRD {i}","analysis_type":"full",'
    '"workspace_context":{{"language":"python","n":{i}}}}}'
)


def _cpu() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def timed(label: str, work: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``work``; print its wall time and CPU time, which a busy machine
    disturbs less (the server's own CPU time is not counted)."""
    started, (own, children) = time.perf_counter(), _cpu()
    result = work()
    seconds = time.perf_counter() - started
    own_after, children_after = _cpu()
    print(
        f"  {label}: {seconds:.2f} s (CPU {own_after - own:.2f} s here, "
        f"{children_after - children:.2f} s in child processes; load average "
        f"{os.getloadavg()[0]:.1f})",
        flush=True,
    )
    return seconds, result


def create_topic(admin: AdminClient, name: str, partitions: int) -> None:
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions)])
    for future in futures.values():
        future.result(timeout=60)


def fill_topic(
    settings: KafkaSettings, topic: str, count: int, partitions: int
) -> None:
    producer = Producer(
        settings.client_config(
            **{
                "linger.ms": 20,
                "batch.size": 1_000_000,
                "queue.buffering.max.messages": 1_000_000,
                "compression.type": "lz4",
            }
        )
    )
    base = datetime(2025, 10, 14, tzinfo=UTC)
    sessions = [str(uuid.uuid4()) for _ in range(1000)]
    for i in range(count):
        session = sessions[i % 1000]
        value = TEMPLATE.format(
            s=session,
            c=uuid.uuid4(),
            t=(base + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z"),
            i=i,
        ).encode()
        while True:
            try:
                producer.produce(
                    topic, value, key=session.encode(), partition=i % partitions
                )
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(120)


def bare_consume(
    settings: KafkaSettings, topic: str, partitions: int, count: int
) -> int:
    consumer = Consumer(
        settings.client_config(
            **{"group.id": f"bench-{uuid.uuid4().hex}", "enable.auto.commit": False}
        )
    )
    consumer.assign(
        [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
    )
    seen = 0
    value_bytes = 0
    while seen < count:
        for message in consumer.consume(num_messages=10_000, timeout=1.0):
            if message.error() is None:
                seen += 1
                value_bytes += len(message.value())
    consumer.close()
    return seen


def kcat_then_pandas(settings: KafkaSettings, topic: str, out: Path) -> int:
    dump = out / "dump.jsonl"
    with dump.open("wb") as handle:
        subprocess.run(
            [
                "kcat",
                "-b",
                settings.bootstrap_servers,
                "-C",
                "-t",
                topic,
                "-o",
                "beginning",
                "-e",
                "-J",
                "-q",
            ],
            stdout=handle,
            check=True,
        )
    frame = pd.read_json(dump, lines=True)
    frame.to_parquet(out / "kcat.parquet", compression="zstd")
    return len(frame)


# VmHWM, not ru_maxrss: a child started by fork+exec keeps the parent's RSS at the
# fork as its ru_maxrss floor, so ru_maxrss here reported this script's own peak
# (about 3.9 GB after the kcat + pandas step), the same for both topic sizes.
PEAK_RSS = """
import sys
from codegen_forensics.load import KafkaSnapshotOptions, snapshot_kafka
from codegen_forensics.settings import KafkaSettings
snapshot_kafka(sys.argv[1], KafkaSettings.from_env(),
               KafkaSnapshotOptions(topics=(sys.argv[2],), workers=1))
with open("/proc/self/status") as status:
    print(next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")))
"""


def peak_rss_mb(topic: str, out: Path) -> float:
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, str(out), topic],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(result.stdout.strip().splitlines()[-1]) / 1024


def bench_kafka(args: argparse.Namespace, work: Path) -> list[tuple[str, str]]:
    settings = KafkaSettings.from_env()
    admin = AdminClient(settings.client_config())
    prefix = f"bench{uuid.uuid4().hex[:6]}_"
    topic = f"{prefix}omninode_codegen_request_analyze_v1"
    small = f"{prefix}omninode_codegen_request_pattern_v1"
    n, partitions = args.messages, args.partitions
    results: list[tuple[str, str]] = []
    try:
        create_topic(admin, topic, partitions)
        create_topic(admin, small, partitions)
        print(f"kafka: producing {n:,} messages to {partitions} partitions", flush=True)
        fill_topic(settings, topic, n, partitions)
        fill_topic(settings, small, n // 10, partitions)

        bare_s, seen = timed(
            "bare confluent-kafka consume loop",
            lambda: bare_consume(settings, topic, partitions, n),
        )
        assert seen == n
        one_s, snap = timed(
            "snapshot_kafka, 1 process",
            lambda: snapshot_kafka(
                work / "k1", settings, KafkaSnapshotOptions(topics=(topic,), workers=1)
            ),
        )
        assert snap.manifest["kafka"]["rows"] == n
        two_s, snap2 = timed(
            "snapshot_kafka, 2 processes",
            lambda: snapshot_kafka(
                work / "k2", settings, KafkaSnapshotOptions(topics=(topic,), workers=2)
            ),
        )
        assert snap2.manifest["kafka"]["rows"] == n
        kcat_dir = work / "kcat"
        kcat_dir.mkdir()
        kcat_s, kcat_rows = timed(
            "kcat -J then pandas to_parquet",
            lambda: kcat_then_pandas(settings, topic, kcat_dir),
        )
        assert kcat_rows == n
        print("kafka: peak RSS of a snapshot process, topic of n/10 and n", flush=True)
        small_rss = peak_rss_mb(small, work / "rss_small")
        big_rss = peak_rss_mb(topic, work / "rss_big")

        rate = lambda s: f"{n / s:,.0f} msg/s"  # noqa: E731
        results += [
            ("kafka messages", f"{n:,} in {partitions} partitions"),
            ("bare consume loop", rate(bare_s)),
            ("snapshot, 1 process", f"{rate(one_s)} = {bare_s / one_s:.2f}x bare"),
            ("snapshot, 2 processes", f"{rate(two_s)} = {bare_s / two_s:.2f}x bare"),
            (
                "kcat + pandas",
                f"{rate(kcat_s)}; snapshot(2) is {kcat_s / two_s:.2f}x its speed, "
                f"snapshot(1) {kcat_s / one_s:.2f}x",
            ),
            (
                "peak RSS",
                f"{small_rss:.0f} MB at {n // 10:,} messages, {big_rss:.0f} MB"
                f" at {n:,} ({big_rss / small_rss:.2f}x for 10x data)",
            ),
        ]
    finally:
        admin.delete_topics([topic, small])
    return results


def fill_event_logs(engine: sa.Engine, schema: str, rows: int) -> None:
    create_event_tables(engine, schema)
    base = datetime(2025, 10, 14, tzinfo=UTC)
    buffer = io.StringIO()
    statuses = ("sent", "received", "completed", "failed")
    for i in range(rows):
        payload = json.dumps({"prd_content": f"# PRD {i}", "n": i, "tags": ["a", "b"]})
        metadata = json.dumps({"source": "bench", "retries": i % 3})
        buffer.write(
            "\t".join(
                [
                    str(uuid.uuid4()),
                    str(uuid.uuid4()),
                    "request",
                    "omninode_codegen_request_analyze_v1",
                    (base + timedelta(milliseconds=i * 7)).isoformat(),
                    random.choice(statuses),
                    str(i % 5000),
                    payload.replace("\\", "\\\\"),
                    metadata,
                ]
            )
            + "\n"
        )
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        with cursor.copy(  # type: ignore[attr-defined]
            f'COPY "{schema}".event_logs (session_id, correlation_id, event_type, '
            "topic, timestamp, status, processing_time_ms, payload, metadata) "
            "FROM STDIN"
        ) as copy:
            copy.write(buffer.getvalue())
        raw.commit()
        cursor.execute(f'ANALYZE "{schema}".event_logs')
        raw.commit()
    finally:
        raw.close()


def bench_postgres(args: argparse.Namespace, work: Path) -> list[tuple[str, str]]:
    settings = PostgresSettings.from_env()
    url = settings.url.get_secret_value()
    engine = sa.create_engine(url)
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    rows = args.rows
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        print(f"postgres: writing {rows:,} event_logs rows", flush=True)
        fill_event_logs(engine, schema, rows)
        query = f'SELECT * FROM "{schema}".event_logs ORDER BY "timestamp", event_id'
        libpq_url = url.replace("postgresql+psycopg://", "postgresql://")

        def psql_copy() -> None:
            subprocess.run(
                ["psql", libpq_url, "-c", f"COPY ({query}) TO STDOUT"],
                stdout=subprocess.DEVNULL,
                check=True,
            )

        # Each round brackets the snapshot between two psql runs and compares it
        # with their mean; the median over the rounds is the figure to quote.
        ratios, psql_runs, ours_runs = [], [], []
        for index in range(args.rounds):
            before, _ = timed("psql COPY TO STDOUT", psql_copy)
            ours_s, snap = timed(
                "snapshot_postgres",
                lambda index=index: snapshot_postgres(
                    work / f"pg{index}",
                    settings,
                    PostgresSnapshotOptions(
                        schema=schema, until=datetime(2100, 1, 1, tzinfo=UTC)
                    ),
                ),
            )
            assert snap.manifest["postgres"]["rows"] == rows
            after, _ = timed("psql COPY TO STDOUT", psql_copy)
            psql_s = (before + after) / 2
            ratios.append(psql_s / ours_s)
            psql_runs.append(psql_s)
            ours_runs.append(ours_s)
            print(f"  round {index + 1}: {psql_s / ours_s:.2f}x psql", flush=True)

        def pandas_read() -> None:
            frame = pd.read_sql(sa.text(query), engine)
            frame.to_parquet(work / "pandas.parquet", compression="zstd")

        pandas_s, _ = timed("pandas.read_sql + to_parquet", pandas_read)
        rate = lambda s: f"{rows / s:,.0f} rows/s"  # noqa: E731
        ours_s = statistics.median(ours_runs)
        return [
            ("postgres rows", f"{rows:,}"),
            ("psql COPY", f"{rate(statistics.median(psql_runs))} (median)"),
            (
                "snapshot_postgres",
                f"{rate(ours_s)} (median) = {statistics.median(ratios):.2f}x psql, "
                f"the median of {', '.join(f'{r:.2f}' for r in ratios)}",
            ),
            (
                "pandas.read_sql",
                f"{rate(pandas_s)}; snapshot is {pandas_s / ours_s:.2f}x its speed",
            ),
        ]
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--skip-kafka", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--rounds", type=int, default=3, help="psql, snapshot, psql rounds to run"
    )
    args = parser.parse_args()
    if shutil.which("kcat") is None and not args.skip_kafka:
        sys.exit("kcat is not installed; run bench/setup_load.sh")

    work = Path(tempfile.mkdtemp(prefix="bench_load_"))
    results: list[tuple[str, str]] = []
    try:
        if not args.skip_kafka:
            results += bench_kafka(args, work)
        if not args.skip_postgres:
            results += bench_postgres(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nresults (cores: {os.cpu_count()}):")
    for name, value in results:
        print(f"  {name:24} {value}")


if __name__ == "__main__":
    main()
