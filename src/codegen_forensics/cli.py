"""The ``codegen-forensics`` command: thin commands over the library.

Each command parses its options, calls the library, prints through :func:`emit` and
returns an exit code: 0 on success, 1 when the work found a problem (a topic whose
configuration differs, say), 2 on bad input or an unreachable service.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from codegen_forensics.errors import ForensicsError
from codegen_forensics.settings import KafkaSettings, PostgresSettings

if TYPE_CHECKING:
    from codegen_forensics.load import KafkaSnapshotOptions, PostgresSnapshotOptions

app = typer.Typer(
    name="codegen-forensics",
    help="Forensic analytics over the code-generation system's Kafka topics, "
    "dead-letter queues and Postgres event tables.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
topics_app = typer.Typer(
    help="Create and check the 13 topics of the design document.",
    no_args_is_help=True,
)
app.add_typer(topics_app, name="topics")

console = Console()
err_console = Console(stderr=True)

BootstrapOption = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers",
        envvar="FORENSICS_BOOTSTRAP_SERVERS",
        help="Kafka bootstrap servers; SASL/SSL properties come from "
        "FORENSICS_KAFKA_* variables.",
        show_default="127.0.0.1:19092",
    ),
]
DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="FORENSICS_DATABASE_URL",
        help="SQLAlchemy URL of the Postgres database.",
        show_default="postgresql+psycopg://forensics:***@127.0.0.1:5432/forensics",
    ),
]
PrefixOption = Annotated[
    str,
    typer.Option("--prefix", help="Name prefix of the topics, for a shared broker."),
]
TimeoutOption = Annotated[
    float,
    typer.Option("--timeout", help="Seconds to wait for each broker request.", min=0.1),
]


def emit(renderable: object) -> None:
    """Print a result for the user (tables, summaries, paths)."""
    console.print(renderable)


def fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


@app.callback()
def main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log progress at INFO level.")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def kafka_settings(bootstrap_servers: str | None) -> KafkaSettings:
    return KafkaSettings.from_env(bootstrap_servers=bootstrap_servers)


def postgres_settings(database_url: str | None) -> PostgresSettings:
    try:
        return PostgresSettings.from_env(url=database_url)
    except ForensicsError as exc:
        raise fail(str(exc)) from exc


@topics_app.command("create")
def topics_create(
    bootstrap_servers: BootstrapOption = None,
    prefix: PrefixOption = "",
    timeout: TimeoutOption = 30.0,
) -> None:
    """Create the catalog's topics with their configuration; existing ones are kept
    and checked."""
    from codegen_forensics.events.provision import provision_topics
    from codegen_forensics.events.topics import TopicCatalog

    settings = kafka_settings(bootstrap_servers)
    try:
        report = provision_topics(settings, TopicCatalog(prefix=prefix), timeout)
    except ForensicsError as exc:
        raise fail(str(exc)) from exc
    emit(_provision_table(report))
    if report.differences:
        raise typer.Exit(1)


@topics_app.command("check")
def topics_check(
    bootstrap_servers: BootstrapOption = None,
    prefix: PrefixOption = "",
    timeout: TimeoutOption = 30.0,
) -> None:
    """Read the topics' partitions and configuration back and report every
    difference from the catalog; exit 1 if there is any."""
    from codegen_forensics.events.provision import check_topics
    from codegen_forensics.events.topics import TopicCatalog

    settings = kafka_settings(bootstrap_servers)
    try:
        report = check_topics(settings, TopicCatalog(prefix=prefix), timeout)
    except ForensicsError as exc:
        raise fail(str(exc)) from exc
    emit(_provision_table(report))
    if report.differences:
        raise typer.Exit(1)


def _provision_table(report: object) -> Table:
    from codegen_forensics.events.provision import ProvisionReport

    assert isinstance(report, ProvisionReport)
    table = Table(title="Topics")
    table.add_column("topic", overflow="fold")
    table.add_column("state", no_wrap=True)
    table.add_column("differences", overflow="fold")
    for name, state in report.states.items():
        # A missing topic's state says it all.
        diffs = [
            d for d in report.differences if d.topic == name and d.setting != "topic"
        ]
        table.add_row(
            name,
            state,
            "; ".join(f"{d.setting}: want {d.expected}, have {d.actual}" for d in diffs)
            or "-",
        )
    return table


# --- snapshot: read-only snapshots of Kafka and Postgres (codegen_forensics.load) ---

snapshot_app = typer.Typer(
    help="Read-only snapshots of Kafka topics and Postgres tables into Parquet, "
    "resumable and incremental.",
    no_args_is_help=True,
)
app.add_typer(snapshot_app, name="snapshot")

OutOption = Annotated[
    Path,
    typer.Option(
        "--out",
        help="Snapshot directory; run again on an interrupted one to resume it.",
    ),
]
IncrementalOption = Annotated[
    Path | None,
    typer.Option(
        "--incremental-from",
        help="An earlier complete snapshot; continue from where it ended.",
    ),
]
TopicsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--topics",
        help="Topic names, or regular expressions starting with ^; repeat or separate "
        "with commas. Default: every catalog topic and every topic whose name matches "
        "a known scheme, DLQ topics included.",
    ),
]
IsolationOption = Annotated[
    str,
    typer.Option("--isolation-level", help="read_committed or read_uncommitted."),
]
GroupsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--consumer-group",
        help="Consumer groups whose committed offsets to capture, besides the "
        "design document's two.",
    ),
]
WorkersOption = Annotated[
    int | None,
    typer.Option("--workers", help="Reader processes (default: by snapshot size)."),
]
TablesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--tables",
        help="Tables to read; repeat or separate with commas. Default: event_logs.",
    ),
]
SchemaOption = Annotated[
    str | None, typer.Option("--schema", help="Postgres schema (default: search path).")
]
SinceOption = Annotated[
    str | None,
    typer.Option("--since", help="Rows from this time on, ISO 8601 with a zone."),
]
UntilOption = Annotated[
    str | None,
    typer.Option(
        "--until", help="Rows before this time, ISO 8601 with a zone (default: now)."
    ),
]


def _split_list(values: list[str] | None) -> tuple[str, ...]:
    """Repeated and comma-separated values; a ``^pattern`` is kept whole."""
    items = []
    for item in values or []:
        parts = [item] if item.startswith("^") else item.split(",")
        items += [p.strip() for p in parts if p.strip()]
    return tuple(items)


def _when(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise fail(
            f"{name} {value!r} is not an ISO 8601 time; use e.g. 2025-10-14T00:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        raise fail(f"{name} {value!r} has no time zone; add Z or an offset like +02:00")
    return parsed


def _kafka_options(
    topics: list[str] | None,
    isolation_level: str,
    consumer_groups: list[str] | None,
    prefix: str,
    workers: int | None,
) -> KafkaSnapshotOptions:
    from codegen_forensics.load import KafkaSnapshotOptions

    try:
        return KafkaSnapshotOptions(
            topics=_split_list(topics),
            isolation_level=isolation_level,  # type: ignore[arg-type]
            consumer_groups=_split_list(consumer_groups),
            catalog_prefix=prefix,
            workers=workers,
        )
    except ForensicsError as exc:
        raise fail(str(exc)) from exc


def _postgres_options(
    tables: list[str] | None,
    schema: str | None,
    since: str | None,
    until: str | None,
) -> PostgresSnapshotOptions:
    from codegen_forensics.load import PostgresSnapshotOptions

    try:
        return PostgresSnapshotOptions(
            tables=_split_list(tables) or ("event_logs",),
            schema=schema,
            since=_when("--since", since),
            until=_when("--until", until),
        )
    except ForensicsError as exc:
        raise fail(str(exc)) from exc


def _snapshot(out: Path, incremental_from: Path | None, **sources: Any) -> None:
    from codegen_forensics.load import run_snapshot
    from codegen_forensics.load.display import SnapshotProgress, summary_tables

    try:
        with SnapshotProgress(err_console) as progress:
            snapshot = run_snapshot(
                out, incremental_from=incremental_from, progress=progress, **sources
            )
    except ForensicsError as exc:
        raise fail(str(exc)) from exc
    for table in summary_tables(snapshot):
        emit(table)
    emit(f"snapshot written to {snapshot.root}")


@snapshot_app.command("kafka")
def snapshot_kafka_command(
    out: OutOption,
    topics: TopicsOption = None,
    bootstrap_servers: BootstrapOption = None,
    isolation_level: IsolationOption = "read_committed",
    consumer_group: GroupsOption = None,
    prefix: PrefixOption = "",
    workers: WorkersOption = None,
    incremental_from: IncrementalOption = None,
) -> None:
    """Snapshot Kafka topics: one row per message, read up to the offsets captured
    at the start, never joining a group or committing."""
    options = _kafka_options(topics, isolation_level, consumer_group, prefix, workers)
    _snapshot(
        out,
        incremental_from,
        kafka=kafka_settings(bootstrap_servers),
        kafka_options=options,
    )


@snapshot_app.command("postgres")
def snapshot_postgres_command(
    out: OutOption,
    tables: TablesOption = None,
    database_url: DatabaseOption = None,
    schema: SchemaOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    incremental_from: IncrementalOption = None,
) -> None:
    """Snapshot Postgres tables (event_logs by default) in a read-only transaction."""
    options = _postgres_options(tables, schema, since, until)
    _snapshot(
        out,
        incremental_from,
        postgres=postgres_settings(database_url),
        postgres_options=options,
    )


@snapshot_app.command("all")
def snapshot_all_command(
    out: OutOption,
    topics: TopicsOption = None,
    tables: TablesOption = None,
    bootstrap_servers: BootstrapOption = None,
    database_url: DatabaseOption = None,
    isolation_level: IsolationOption = "read_committed",
    consumer_group: GroupsOption = None,
    prefix: PrefixOption = "",
    workers: WorkersOption = None,
    schema: SchemaOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    incremental_from: IncrementalOption = None,
) -> None:
    """Snapshot Kafka topics and Postgres tables into one snapshot directory."""
    kafka_options = _kafka_options(
        topics, isolation_level, consumer_group, prefix, workers
    )
    postgres_options = _postgres_options(tables, schema, since, until)
    _snapshot(
        out,
        incremental_from,
        kafka=kafka_settings(bootstrap_servers),
        kafka_options=kafka_options,
        postgres=postgres_settings(database_url),
        postgres_options=postgres_options,
    )


# --- end snapshot ---


# --- simulate: seeded traffic with ground truth (codegen_forensics.simulate) ---


@app.command("simulate")
def simulate_command(
    sessions: Annotated[
        int, typer.Option("--sessions", min=1, help="Sessions to simulate.")
    ] = 2000,
    days: Annotated[
        int, typer.Option("--days", min=1, help="Length of the window in days.")
    ] = 7,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same bytes.")] = 0,
    start: Annotated[
        str | None,
        typer.Option(
            "--start",
            help="Window start, ISO 8601 with a zone. Default: the last DAYS full "
            "days, UTC.",
        ),
    ] = None,
    trouble: Annotated[
        str,
        typer.Option(
            "--trouble",
            help="Trouble to inject, comma-separated: bottleneck, failures, "
            "unanswered, unfinished, duplicates, poison; or all, or none.",
        ),
    ] = "all",
    snapshot: Annotated[
        Path | None,
        typer.Option(
            "--snapshot",
            help="Write a snapshot directory instead of sending to Kafka and Postgres.",
        ),
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(
            "--truth",
            help="Where to write the ground truth JSON. Default: ground_truth.json in "
            "the snapshot directory, or in the current directory.",
        ),
    ] = None,
    bootstrap_servers: BootstrapOption = None,
    database_url: DatabaseOption = None,
    prefix: PrefixOption = "",
    schema: SchemaOption = None,
) -> None:
    """Generate traffic with known trouble, and its ground truth: into Kafka and
    Postgres (topics and event_logs created if missing), or into a snapshot."""
    from codegen_forensics.events.topics import TopicCatalog
    from codegen_forensics.simulate import (
        TRUTH_NAME,
        SimulationConfig,
        parse_trouble,
        write_snapshot,
    )
    from codegen_forensics.simulate.display import SimulationProgress, summary_tables
    from codegen_forensics.simulate.services import run_to_services

    catalog = TopicCatalog(prefix=prefix)
    try:
        config = SimulationConfig.build(
            seed=seed,
            sessions=sessions,
            days=days,
            start=_when("--start", start),
            trouble=parse_trouble(trouble),
        )
        with SimulationProgress(err_console, sessions) as progress:
            if snapshot is not None:
                result = write_snapshot(
                    config, snapshot, catalog=catalog, progress=progress
                )
            else:
                result = run_to_services(
                    config,
                    kafka_settings(bootstrap_servers),
                    postgres_settings(database_url).url.get_secret_value(),
                    catalog,
                    schema=schema,
                    progress=progress,
                )
    except ForensicsError as exc:
        raise fail(str(exc)) from exc

    if snapshot is None or truth is not None:
        truth_path = truth or Path(TRUTH_NAME)
        result.write(truth_path)
    else:
        truth_path = snapshot / TRUTH_NAME
    for table in summary_tables(result, progress.elapsed):
        emit(table)
    if snapshot is not None:
        emit(f"snapshot written to {snapshot}")
    emit(f"ground truth written to {truth_path}")


# --- end simulate ---


if __name__ == "__main__":
    app()
