"""The full weekly analysis on a large synthetic snapshot, against a bare DuckDB scan.

Run: ``.venv/bin/python bench/bench_analysis.py [--events 10000000] [--memory 512MB]``.

The snapshot (a week of sessions: requests, responses, status events, dead letters,
poison messages, a mirror of 3 in 16 sessions in ``event_logs``, partitions
and committed offsets) is generated with pyarrow and cached under
``data/cache/bench_analysis_<events>/`` (git-ignored); ``--regenerate`` rebuilds it.

Two child processes run with the same DuckDB memory cap and threads:

- baseline: DuckDB reading every column the weekly analysis reads, from the same
  Parquet files, hashing each value so nothing is skipped;
- weekly: :func:`weekly_review` on the snapshot (every measure, compression included).

Each child reports its wall time, CPU time and peak resident memory. A round runs
a baseline, the weekly review and a baseline again, and divides the weekly figures
by the mean of the two baselines; the script prints every round and the medians
over ``--rounds`` rounds (3 by default).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from codegen_forensics.snapshot import (
    CONSUMER_OFFSETS_SCHEMA,
    EVENT_LOGS_SCHEMA,
    KAFKA_MESSAGES_SCHEMA,
    KAFKA_PARTITIONS_SCHEMA,
    SnapshotWriter,
)

ROOT = Path(__file__).resolve().parents[1]
WEEK_START = datetime(2026, 1, 5, tzinfo=UTC)
OPERATIONS = ("analyze", "validate", "pattern", "mixin")
STATUSES = np.array(["pending", "analyzing", "generating", "completed"])
WORDS = [
    "node",
    "effect",
    "compute",
    "reducer",
    "orchestrator",
    "contract",
    "mixin",
    "pattern",
    "validate",
    "analyze",
    "requirement",
    "schema",
    "event",
    "kafka",
    "session",
    "response",
    "request",
    "latency",
    "onex",
    "compliance",
]

# Columns the weekly analysis reads (the baseline scans exactly these).
MESSAGE_COLUMNS = [
    "topic",
    "partition",
    "offset",
    "timestamp",
    "timestamp_type",
    "key",
    "value",
    "value_size",
    "key_size",
    "headers",
    "category",
    "operation",
    "decode_status",
    "decode_message",
    "event_name",
    "session_id",
    "correlation_id",
    "event_timestamp",
    "processing_time_ms",
    "status",
    "dlq_shape",
    "dlq_source_topic",
    "dlq_consumer_group",
    "dlq_error_type",
    "dlq_error_message",
    "dlq_retry_count",
    "dlq_failure_time",
]
LOG_COLUMNS = [
    "event_id",
    "session_id",
    "correlation_id",
    "event_type",
    "topic",
    "timestamp",
    "status",
    "processing_time_ms",
]


def topic(category: str, operation: str) -> str:
    return f"omninode_codegen_{category}_{operation}_v1"


def uuids(start: int, count: int, salt: int) -> pa.Array:
    """Deterministic UUID-shaped strings for ids start .. start+count-1."""
    ids = np.arange(start, start + count, dtype=np.uint64)
    mixed = (ids * np.uint64(0x9E3779B97F4A7C15) + np.uint64(salt)) & np.uint64(
        0xFFFFFFFFFFFF
    )
    hexed = [f"{salt:08x}-0000-4000-8000-{v:012x}" for v in mixed.tolist()]
    return pa.array(hexed, pa.string())


def texts(rng: np.random.Generator, count: int) -> pa.Array:
    out = []
    for _ in range(count):
        n = int(rng.integers(10, 90))
        out.append(" ".join(WORDS[i] for i in rng.integers(0, len(WORDS), n)))
    return pa.array(out, pa.string())


class Generator:
    """Builds one day of the synthetic week at a time, keeping offsets running."""

    def __init__(self, events: int, seed: int = 7) -> None:
        self.rng = np.random.default_rng(seed)
        # 2 request/response pairs and 4 status events per session: 8 events.
        self.sessions_per_day = max(1, events // 8 // 7)
        self.text_pool = texts(self.rng, 2000)
        self.offsets: dict[tuple[str, int], int] = {}
        self.session_base = 0
        self.cid_base = 0

    def day(self, d: int) -> tuple[pa.Table, pa.Table]:
        rng = self.rng
        n = self.sessions_per_day
        day_start = WEEK_START + timedelta(days=d)
        start_us = rng.integers(0, 86_400_000_000 - 600_000_000, n)
        sessions = uuids(self.session_base, n, 0x5E55)
        self.session_base += n

        parts = []
        # Two request/response pairs per session, on random operations.
        for pair in range(2):
            cids = uuids(self.cid_base, n, 0xC0DE)
            self.cid_base += n
            ops = rng.integers(0, 4, n)
            req_at = start_us + pair * 60_000_000 + rng.integers(0, 5_000_000, n)
            proc = np.round(rng.lognormal(6.6, 0.5, n)).astype(np.int64)
            # An injected bottleneck: validate responses between 14:00 and 16:00.
            hour = (req_at // 3_600_000_000) % 24
            slow = (ops == 1) & (hour >= 14) & (hour < 16)
            proc = np.where(slow, proc * 6, proc)
            resp_at = req_at + proc * 1000 + rng.integers(1_000, 50_000, n)
            failed = rng.random(n) < 0.005
            parts.append(self._rows(sessions, cids, ops, "request", req_at, None))
            answered = ~failed
            parts.append(
                self._rows(
                    sessions.filter(pa.array(answered)),
                    cids.filter(pa.array(answered)),
                    ops[answered],
                    "response",
                    resp_at[answered],
                    proc[answered],
                )
            )
            parts.append(self._dlq(sessions, cids, ops, req_at, failed))
        for k in range(4):
            at = start_us + k * 40_000_000 + rng.integers(0, 2_000_000, n)
            final = np.where(rng.random(n) < 0.97, "completed", "failed")
            status = STATUSES[k] if k < 3 else None
            parts.append(self._status(sessions, at, status, final))
        parts.append(self._poison(int(n * 0.001) + 1, start_us))
        table = pa.concat_tables(parts, promote_options="default")

        # Offsets per partition in time order, continuing from the previous day.
        order = pc.sort_indices(
            table,
            [
                ("topic", "ascending"),
                ("partition", "ascending"),
                ("timestamp", "ascending"),
            ],
        )
        table = table.take(order)
        offsets = np.empty(table.num_rows, dtype=np.int64)
        tp = table.select(["topic", "partition"]).to_pandas()
        starts = np.flatnonzero(
            np.r_[
                True,
                (tp["topic"].values[1:] != tp["topic"].values[:-1])
                | (tp["partition"].values[1:] != tp["partition"].values[:-1]),
            ]
        )
        ends = np.r_[starts[1:], len(tp)]
        for s, e in zip(starts, ends, strict=True):
            key = (tp["topic"].iat[s], int(tp["partition"].iat[s]))
            base = self.offsets.get(key, 0)
            offsets[s:e] = np.arange(base, base + (e - s))
            self.offsets[key] = base + (e - s)
        table = table.append_column("offset", pa.array(offsets))
        table = _absolute(table, day_start)
        logs = self._event_logs(table)
        return table, logs

    def _rows(self, sessions, cids, ops, category, at_us, proc):  # type: ignore[no-untyped-def]
        rng = self.rng
        n = len(sessions)
        names = np.array([topic(category, op) for op in OPERATIONS])[ops]
        body = self.text_pool.take(pa.array(rng.integers(0, len(self.text_pool), n)))
        value = pc.binary_join_element_wise(
            '{"session_id":"',
            sessions,
            '","correlation_id":"',
            cids,
            '","schema_version":"1.0","content":"',
            body,
            '"}',
            "",
        )
        return pa.table(
            {
                "topic": pa.array(names, pa.string()),
                "partition": pa.array(rng.integers(0, 3, n), pa.int32()),
                "timestamp": pa.array(at_us, pa.int64()),
                "key": pc.cast(sessions, pa.binary()),
                "value": pc.cast(value, pa.binary()),
                "category": pa.array([category] * n, pa.string()),
                "operation": pa.array(np.array(OPERATIONS)[ops], pa.string()),
                "decode_status": pa.array(["ok"] * n, pa.string()),
                "session_id": sessions,
                "correlation_id": cids,
                "event_timestamp": pa.array(at_us, pa.int64()),
                "processing_time_ms": pa.array(proc, pa.int64())
                if proc is not None
                else pa.nulls(n, pa.int64()),
                "status": pa.nulls(n, pa.string()),
            }
        )

    def _status(self, sessions, at_us, status, final):  # type: ignore[no-untyped-def]
        rng = self.rng
        n = len(sessions)
        values = np.full(n, status) if status is not None else final
        st = pa.array(values, pa.string())
        value = pc.binary_join_element_wise(
            '{"session_id":"',
            sessions,
            '","status":"',
            st,
            '","progress_percentage":50.0,"message":"working","schema_version":"1.0"}',
            "",
        )
        return pa.table(
            {
                "topic": pa.array([topic("status", "session")] * n, pa.string()),
                "partition": pa.array(rng.integers(0, 6, n), pa.int32()),
                "timestamp": pa.array(at_us, pa.int64()),
                "key": pc.cast(sessions, pa.binary()),
                "value": pc.cast(value, pa.binary()),
                "category": pa.array(["status"] * n, pa.string()),
                "operation": pa.array(["session"] * n, pa.string()),
                "decode_status": pa.array(["ok"] * n, pa.string()),
                "session_id": sessions,
                "correlation_id": pa.nulls(n, pa.string()),
                "event_timestamp": pa.array(at_us, pa.int64()),
                "processing_time_ms": pa.nulls(n, pa.int64()),
                "status": st,
            }
        )

    def _dlq(self, sessions, cids, ops, at_us, failed):  # type: ignore[no-untyped-def]
        rng = self.rng
        idx = np.flatnonzero(failed)
        n = len(idx)
        kinds = rng.integers(0, 4, n)
        numbers = rng.integers(100, 60_000, n).astype(str)
        messages = np.where(
            kinds == 0,
            np.char.add(np.char.add("timed out after ", numbers), "ms"),
            np.where(
                kinds == 1,
                np.char.add("Invalid node_type: 'kind", np.char.add(numbers, "'")),
                np.where(
                    kinds == 2,
                    np.char.add(
                        "Connection to kafka-", np.char.add(numbers, ":9092 refused")
                    ),
                    np.char.add("missing field session_", numbers),
                ),
            ),
        )
        types = np.array(
            ["TimeoutError", "ValidationError", "ConnectionError", "KeyError"]
        )
        take = pa.array(idx)
        s = sessions.take(take)
        c = cids.take(take)
        fail_at = at_us[idx] + 15_000_000
        src = np.array([topic("request", op) for op in OPERATIONS])[ops[idx]]
        value = pc.binary_join_element_wise(
            '{"original_event":{"session_id":"',
            s,
            '","correlation_id":"',
            c,
            '"},"error":{"error_type":"',
            pa.array(types[kinds]),
            '","error_message":"',
            pa.array(messages),
            '"},"retry_count":3,"max_retries":3}',
            "",
        )
        return pa.table(
            {
                "topic": pa.array(
                    np.array([topic("dlq", op) for op in OPERATIONS])[ops[idx]]
                ),
                "partition": pa.array(np.zeros(n, dtype=np.int32), pa.int32()),
                "timestamp": pa.array(fail_at, pa.int64()),
                "key": pc.cast(s, pa.binary()),
                "value": pc.cast(value, pa.binary()),
                "category": pa.array(["dlq"] * n, pa.string()),
                "operation": pa.array(np.array(OPERATIONS)[ops[idx]], pa.string()),
                "decode_status": pa.array(["dlq"] * n, pa.string()),
                "session_id": s,
                "correlation_id": c,
                "event_timestamp": pa.nulls(n, pa.int64()),
                "processing_time_ms": pa.nulls(n, pa.int64()),
                "status": pa.nulls(n, pa.string()),
                "dlq_shape": pa.array(["envelope"] * n, pa.string()),
                "dlq_source_topic": pa.array(src, pa.string()),
                "dlq_consumer_group": pa.array(
                    ["omniarchon_codegen_intelligence"] * n, pa.string()
                ),
                "dlq_error_type": pa.array(types[kinds], pa.string()),
                "dlq_error_message": pa.array(messages, pa.string()),
                "dlq_retry_count": pa.array(np.full(n, 3), pa.int32()),
                "dlq_failure_time": pa.array(fail_at, pa.int64()),
            }
        )

    def _poison(self, n: int, start_us: np.ndarray) -> pa.Table:
        rng = self.rng
        at = start_us[:n] if len(start_us) >= n else np.resize(start_us, n)
        return pa.table(
            {
                "topic": pa.array([topic("request", "analyze")] * n, pa.string()),
                "partition": pa.array(rng.integers(0, 3, n), pa.int32()),
                "timestamp": pa.array(at, pa.int64()),
                "value": pa.array([b"{not json"] * n, pa.binary()),
                "category": pa.array(["request"] * n, pa.string()),
                "operation": pa.array(["analyze"] * n, pa.string()),
                "decode_status": pa.array(["not_json"] * n, pa.string()),
                "decode_message": pa.array(
                    ["Expecting property name"] * n, pa.string()
                ),
            }
        )

    def _event_logs(self, table: pa.Table) -> pa.Table:
        """3 in 16 sessions' requests, responses and status events."""
        keep = pc.and_(
            pc.is_in(
                pc.utf8_slice_codeunits(table["session_id"], 35, 36),
                pa.array(["0", "1", "2"]),
            ),
            pc.invert(pc.equal(table["category"], "dlq")),
        )
        t = table.filter(pc.fill_null(keep, False))
        category = t["category"]
        status = pc.if_else(
            pc.equal(category, "request"),
            "sent",
            pc.if_else(
                pc.equal(category, "response"),
                "received",
                pc.if_else(
                    pc.is_in(t["status"], pa.array(["completed", "failed"])),
                    t["status"],
                    "processing",
                ),
            ),
        )
        n = t.num_rows
        return pa.table(
            {
                "event_id": uuids(self.cid_base, n, 0xE1E1),
                "session_id": t["session_id"],
                "correlation_id": t["correlation_id"],
                "event_type": category,
                "topic": t["topic"],
                "timestamp": t["event_timestamp"],
                "status": status,
                "processing_time_ms": t["processing_time_ms"],
                "payload": pa.array(["{}"] * n, pa.string()),
                "metadata": pa.array(["{}"] * n, pa.string()),
            }
        ).cast(
            EVENT_LOGS_SCHEMA.remove(EVENT_LOGS_SCHEMA.get_field_index("created_at"))
        )


def _absolute(table: pa.Table, day_start: datetime) -> pa.Table:
    """Microseconds since the day's start -> UTC timestamps; fill every column."""
    base = int(day_start.timestamp() * 1_000_000)
    columns = {}
    n = table.num_rows
    for field in KAFKA_MESSAGES_SCHEMA:
        if field.name in table.column_names:
            column = table[field.name]
            if pa.types.is_timestamp(field.type):
                column = pc.add(column, base).cast(pa.timestamp("us")).cast(field.type)
            columns[field.name] = column.cast(field.type)
        else:
            columns[field.name] = pa.nulls(n, field.type)
    columns["timestamp_type"] = pa.array(["create_time"] * n, pa.string())
    columns["value_size"] = pc.cast(pc.binary_length(columns["value"]), pa.int32())
    columns["key_size"] = pc.cast(pc.binary_length(columns["key"]), pa.int32())
    return pa.table(columns, schema=KAFKA_MESSAGES_SCHEMA)


def generate(root: Path, events: int) -> None:
    began = time.perf_counter()
    writer = SnapshotWriter(root)
    gen = Generator(events)
    total = 0
    for d in range(7):
        table, logs = gen.day(d)
        total += table.num_rows
        day = (WEEK_START + timedelta(days=d)).date().isoformat()
        names = pc.unique(table["topic"]).to_pylist()
        for name in names:
            part = table.filter(pc.equal(table["topic"], name))
            writer.write(f"kafka/topic={name}/day={day}/part-0.parquet", part)
        logs = logs.append_column(
            "created_at", pa.nulls(logs.num_rows, pa.timestamp("us", tz="UTC"))
        )
        writer.write(
            f"postgres/table=event_logs/day={day}/part-0.parquet",
            logs,
            schema=EVENT_LOGS_SCHEMA,
        )
        print(
            f"  day {day}: {table.num_rows} messages, {logs.num_rows} event_logs rows",
            flush=True,
        )
    partitions = [
        {
            "topic": t,
            "partition": p,
            "low_watermark": 0,
            "high_watermark": n,
            "start_offset": 0,
            "end_offset": n,
            "rows": n,
            "value_bytes": None,
        }
        for (t, p), n in sorted(gen.offsets.items())
    ]
    writer.write(
        "kafka_partitions.parquet",
        pa.Table.from_pylist(partitions, schema=KAFKA_PARTITIONS_SCHEMA),
    )
    offsets = []
    for (t, p), n in sorted(gen.offsets.items()):
        group = (
            "omniarchon_codegen_intelligence"
            if "_request_" in t
            else "omniclaude_codegen_consumer"
            if "_response_" in t
            else None
        )
        if group:
            offsets.append(
                {
                    "group_id": group,
                    "topic": t,
                    "partition": p,
                    "committed_offset": max(0, n - 50 - 10 * p),
                }
            )
    writer.write(
        "consumer_offsets.parquet",
        pa.Table.from_pylist(offsets, schema=CONSUMER_OFFSETS_SCHEMA),
    )
    end = WEEK_START + timedelta(days=7)
    writer.finish(started_at=end.isoformat(), generator="bench_analysis", events=total)
    print(
        f"generated {total} messages in {time.perf_counter() - began:.1f}s", flush=True
    )


def snapshot_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.parquet"))


def peak_rss_kb() -> int:
    """This process's peak resident memory in KiB.

    VmHWM rather than ru_maxrss: a child started by fork+exec keeps the parent's
    RSS at the fork as the floor of its ru_maxrss, so a child started right after
    generating a snapshot could report the parent's memory rather than its own.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(kind: str, root: Path, memory: str, threads: int) -> None:
    """Run one side of the comparison and print its figures as JSON."""
    began = time.perf_counter()
    if kind == "baseline":
        import duckdb

        from codegen_forensics.snapshot import Snapshot

        snap = Snapshot.open(root)
        con = duckdb.connect(
            config={
                "memory_limit": memory,
                "threads": threads,
                "preserve_insertion_order": False,
            }
        )
        con.execute("SET TimeZone='UTC'")
        for prefix, columns in (
            ("kafka/", MESSAGE_COLUMNS),
            ("postgres/table=event_logs/", LOG_COLUMNS),
        ):
            files = [str(p) for p in snap.files(prefix)]
            hashed = ", ".join(f'sum(hash("{c}"))' for c in columns)
            con.execute(
                f"SELECT count(*), {hashed} "
                "FROM read_parquet(?, hive_partitioning=false)",
                [files],
            ).fetchall()
        rows = None
        imported = began
    else:
        import logging

        from codegen_forensics.analysis import weekly_review

        logging.basicConfig(
            level=logging.INFO, format="    %(message)s", stream=sys.stderr
        )
        logging.getLogger("codegen_forensics.analysis.weekly").setLevel(logging.INFO)
        imported = time.perf_counter()
        result = weekly_review(root, memory_limit=memory)
        rows = {k: len(v) for k, v in result.items()}
        headline = result["headline"].iloc[0].to_dict()
        print(
            json.dumps({"headline": {k: str(v) for k, v in headline.items()}}),
            file=sys.stderr,
        )
    wall = time.perf_counter() - began
    times = os.times()
    peak_kb = peak_rss_kb()
    print(
        json.dumps(
            {
                "kind": kind,
                "wall_s": wall,
                "import_s": imported - began,
                "cpu_s": times.user + times.system,
                "peak_mb": peak_kb / 1024,
                "rows": rows,
            }
        )
    )


def run_child(kind: str, root: Path, memory: str, threads: int) -> dict[str, object]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--root",
        str(root),
        "--memory",
        memory,
        "--threads",
        str(threads),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} child failed with exit code {proc.returncode}")
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--memory", default="512MB")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--child", choices=["baseline", "weekly"])
    parser.add_argument("--root", type=Path)
    parser.add_argument(
        "--rounds", type=int, default=3, help="scan, weekly, scan rounds to run"
    )
    args = parser.parse_args()

    if args.child:
        child(args.child, args.root, args.memory, args.threads)
        return

    root = ROOT / "data" / "cache" / f"bench_analysis_{args.events}"
    if args.regenerate or not (root / "manifest.json").exists():
        if root.exists():
            import shutil

            shutil.rmtree(root)
        print(f"generating a snapshot of about {args.events} messages in {root}")
        generate(root, args.events)
    size = snapshot_bytes(root)
    print(
        f"snapshot: {size / 2**20:.0f} MiB of Parquet; "
        f"DuckDB memory cap {args.memory}; threads {args.threads}"
    )

    # Each round brackets the weekly review between two scans and compares it with
    # their mean, so a machine that speeds up or slows down during a round moves
    # both sides; the rounds' median ratio is the figure to quote.
    rounds = []
    for index in range(args.rounds):
        before = run_child("baseline", root, args.memory, args.threads)
        weekly = run_child("weekly", root, args.memory, args.threads)
        after = run_child("baseline", root, args.memory, args.threads)
        scan = {
            key: (float(before[key]) + float(after[key])) / 2
            for key in ("wall_s", "cpu_s", "peak_mb")
        }
        rounds.append((scan, weekly))
        print(
            f"round {index + 1}: scan {float(before['wall_s']):.1f} s and "
            f"{float(after['wall_s']):.1f} s, weekly_review "
            f"{float(weekly['wall_s']):.1f} s, ratio "
            f"{float(weekly['wall_s']) / scan['wall_s']:.2f} "
            f"(CPU {float(weekly['cpu_s']) / scan['cpu_s']:.2f})",
            flush=True,
        )
    print()
    # CPU seconds (user and system, every thread) move less than wall time when
    # other work shares the cores.
    print(f"{'medians over the rounds':28}{'wall s':>10}{'CPU s':>10}{'peak MiB':>12}")
    for name, side in (("DuckDB scan of the columns", 0), ("weekly_review", 1)):
        values = [r[side] for r in rounds]
        print(
            f"{name:28}{_median(values, 'wall_s'):>10.1f}"
            f"{_median(values, 'cpu_s'):>10.1f}{_median(values, 'peak_mb'):>12.0f}"
        )
    ratios = {
        key: statistics.median(float(w[key]) / float(b[key]) for b, w in rounds)
        for key in ("wall_s", "cpu_s", "peak_mb")
    }
    print(
        f"{'ratio (weekly / scan)':28}{ratios['wall_s']:>10.2f}"
        f"{ratios['cpu_s']:>10.2f}{ratios['peak_mb']:>12.2f}"
    )
    imports = statistics.median(float(w["import_s"]) for _, w in rounds)
    print(
        f"of weekly_review's wall time, importing the package took {imports:.1f} s "
        "(median)"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    peak = max(float(w["peak_mb"]) for _, w in rounds)
    print(f"peak memory of weekly_review over snapshot size: {peak * 2**20 / size:.2f}")


def _median(values: list[dict[str, object]], key: str) -> float:
    return statistics.median(float(str(v[key])) for v in values)


if __name__ == "__main__":
    main()
