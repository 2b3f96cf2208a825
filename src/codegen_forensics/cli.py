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
from codegen_forensics.settings import CLIENT_LOGGER, KafkaSettings, PostgresSettings

if TYPE_CHECKING:
    from codegen_forensics.load import KafkaSnapshotOptions, PostgresSnapshotOptions

app = typer.Typer(
    name="codegen-forensics",
    help="Forensic analytics over the code-generation system's Kafka topics, "
    "dead-letter queues and Postgres event tables.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    add_completion=False,
    pretty_exceptions_enable=False,
)
topics_app = typer.Typer(
    help="Create and check the 13 topics of the design document.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
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
    # A broker that does not answer makes the Kafka client log every attempt to
    # connect; the command's own error says what failed. --verbose shows them.
    CLIENT_LOGGER.setLevel(logging.INFO if verbose else logging.CRITICAL)


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
    rich_markup_mode="markdown",
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
    except OSError as exc:
        # A full disk or a directory we may not write: what is recorded is kept.
        raise fail(
            f"could not write the snapshot in {str(out)!r}: {exc}; run the same "
            "command again to resume once that is fixed"
        ) from exc
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


# --- analyze: every measure of the weekly review (codegen_forensics.analysis) ---


@app.command("analyze")
def analyze_command(
    snapshot: Annotated[
        Path, typer.Option("--snapshot", help="A complete snapshot directory.")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write every result table into this directory."),
    ] = None,
    previous: Annotated[
        Path | None,
        typer.Option("--previous", help="An earlier snapshot, for the DLQ group diff."),
    ] = None,
    thresholds: Annotated[
        Path | None,
        typer.Option("--thresholds", help="YAML or JSON file of target thresholds."),
    ] = None,
    overrides: Annotated[
        Path | None,
        typer.Option(
            "--overrides", help="YAML or JSON file splitting/merging DLQ groups."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Only events from this time, ISO 8601 with a zone."
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until", help="Only events before this time, ISO 8601 with a zone."
        ),
    ] = None,
    memory_limit: Annotated[
        str, typer.Option("--memory-limit", help="DuckDB memory cap, such as 512MB.")
    ] = "1GB",
    formats: Annotated[
        str, typer.Option("--format", help="With --out: csv, parquet or both.")
    ] = "both",
    fail_on_missed: Annotated[
        bool, typer.Option("--fail-on-missed", help="Exit 1 when a target is missed.")
    ] = False,
) -> None:
    """Analyse a snapshot: print the targets and headline numbers, optionally write
    every result table as CSV and Parquet."""
    from codegen_forensics.analysis import weekly_review

    if formats not in ("csv", "parquet", "both"):
        raise fail(f"--format {formats!r} is not allowed; use csv, parquet or both")
    try:
        tables = weekly_review(
            snapshot,
            previous=previous,
            thresholds=thresholds,
            overrides=overrides,
            start=_analysis_time("--since", since),
            end=_analysis_time("--until", until),
            memory_limit=memory_limit,
        )
    except ForensicsError as exc:
        raise fail(str(exc)) from exc
    emit(_headline_table(tables["headline"]))
    emit(_targets_table(tables["targets"]))
    if out is not None:
        written = _write_tables(tables, out, formats)
        emit(f"wrote {written} files to {out}")
    if fail_on_missed and (tables["targets"]["status"] == "missed").any():
        raise typer.Exit(1)


def _analysis_time(option: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise fail(f"{option} {value!r} is not an ISO 8601 time") from exc
    if parsed.tzinfo is None:
        raise fail(f"{option} {value!r} has no time zone; add Z or +00:00")
    return parsed


def _headline_table(headline: Any) -> Table:
    table = Table(title="Headline")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in headline.iloc[0].items():
        if name in ("snapshot", "snapshot_checksum"):
            continue
        if isinstance(value, float):
            shown = f"{value:.1%}" if "rate" in str(name) else f"{value:,.2f}"
        else:
            shown = "-" if value is None else str(value)
        table.add_row(str(name), shown)
    return table


def _targets_table(targets: Any) -> Table:
    table = Table(title="Targets")
    for column in ("target", "measured", "threshold", "status", "worst offenders"):
        table.add_column(
            column, justify="right" if column in ("measured", "threshold") else "left"
        )
    colours = {"met": "green", "missed": "red"}
    for row in targets.itertuples(index=False):

        def show(value: Any, unit: str = row.unit) -> str:
            if value is None or value != value:  # None or NaN
                return "-"
            if unit == "fraction":
                return f"{value:.2%}"
            if float(value).is_integer():
                return f"{int(value):,} {unit}"
            return f"{value:,.2f} {unit}"

        status = str(row.status)
        table.add_row(
            str(row.target),
            show(row.measured),
            f"{row.comparison} {show(row.threshold)}",
            f"[{colours[status]}]{status}[/]" if status in colours else status,
            _offenders(row.worst_offenders),
        )
    return table


def _offenders(value: Any) -> str:
    """The worst offenders cell: a dash for none (None, NaN or empty)."""
    if value is None or (isinstance(value, float) and value != value) or not value:
        return "-"
    return str(value)


def _write_tables(tables: dict[str, Any], out: Path, formats: str) -> int:
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for name, frame in tables.items():
        if formats in ("csv", "both"):
            frame.to_csv(out / f"{name}.csv", index=False)
            written += 1
        if formats in ("parquet", "both"):
            frame.to_parquet(out / f"{name}.parquet", index=False)
            written += 1
    return written


# --- end analyze ---


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
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Replace the --snapshot directory if it exists."
        ),
    ] = False,
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
    Postgres (topics, the schema and event_logs created if missing), or into a
    snapshot."""
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
                    config,
                    snapshot,
                    catalog=catalog,
                    progress=progress,
                    overwrite=overwrite,
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


# --- report and review: notebooks run headless (codegen_forensics.report) ---

report_app = typer.Typer(
    help="Run the review notebooks headless and export HTML (and PDF) reports.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
app.add_typer(report_app, name="report")

SnapshotDirOption = Annotated[
    Path, typer.Option("--snapshot", help="A complete snapshot directory.")
]
ReportOutOption = Annotated[
    Path, typer.Option("--out", help="Directory for the report and its files.")
]
RedactionOption = Annotated[
    str,
    typer.Option(
        "--redaction",
        help="Drop or truncate prd_content, code_content and stack traces in "
        "everything exported: none, truncate or drop.",
    ),
]
PdfOption = Annotated[
    bool,
    typer.Option("--pdf", help="Also print the report to PDF with headless Chromium."),
]
WeekOption = Annotated[
    str | None,
    typer.Option(
        "--week",
        help="First day of the week, ISO date (UTC), such as 2026-11-23; "
        "default: every event in the snapshot.",
    ),
]
PreviousOption = Annotated[
    Path | None,
    typer.Option(
        "--previous", help="Last week's snapshot, for new and growing error groups."
    ),
]
ThresholdsOption = Annotated[
    Path | None,
    typer.Option("--thresholds", help="YAML or JSON file of target thresholds."),
]
OverridesOption = Annotated[
    Path | None,
    typer.Option(
        "--overrides", help="YAML or JSON file splitting or merging DLQ error groups."
    ),
]


def _iso_time(text: str) -> object:
    """An ISO 8601 time from a report record as a datetime; other text as it is."""
    if len(text) < 19 or text[4:5] != "-" or text[10:11] not in ("T", " "):
        return text
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return text


def _report_done(result: object) -> None:
    from codegen_forensics.report.display import format_value, label
    from codegen_forensics.report.run import ReportResult

    assert isinstance(result, ReportResult)
    table = Table(title="Report", show_header=False)
    if result.snapshot is not None:
        table.add_row("snapshot", str(result.snapshot))
    table.add_row("HTML", str(result.html))
    if result.pdf:
        table.add_row("PDF", str(result.pdf))
    table.add_row("notebook", str(result.notebook))
    table.add_row("record", str(result.record))
    if result.tables:
        table.add_row("tables", str(result.tables[0].parent))
    if result.replay:
        table.add_row("replay candidates", str(result.replay))
    for key, value in result.headline().items():
        if isinstance(value, str):
            value = _iso_time(value)
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        table.add_row(label(key, numeric), format_value(key, value))
    emit(table)
    # The path alone on the last line, for scripts.
    console.print(str(result.html), highlight=False, soft_wrap=True)


@report_app.command("weekly")
def report_weekly_command(
    snapshot: SnapshotDirOption,
    out: ReportOutOption,
    week: WeekOption = None,
    previous: PreviousOption = None,
    thresholds: ThresholdsOption = None,
    overrides: OverridesOption = None,
    redaction: RedactionOption = "none",
    pdf: PdfOption = False,
) -> None:
    """The weekly DLQ review of a snapshot, as an HTML report with its tables."""
    from codegen_forensics.report.run import weekly_report

    try:
        result = weekly_report(
            snapshot,
            out,
            week=week,
            previous=previous,
            thresholds=thresholds,
            overrides=overrides,
            redaction=redaction,
            pdf=pdf,
        )
    except ForensicsError as exc:
        raise fail(str(exc)) from exc
    _report_done(result)


@report_app.command("session")
def report_session_command(
    snapshot: SnapshotDirOption,
    out: ReportOutOption,
    session_id: Annotated[
        str | None, typer.Option("--session-id", help="The session to analyse.")
    ] = None,
    correlation_id: Annotated[
        str | None,
        typer.Option("--correlation-id", help="Or one request's correlation id."),
    ] = None,
    redaction: RedactionOption = "none",
    pdf: PdfOption = False,
) -> None:
    """Every event of one session or correlation id, as an HTML report."""
    from codegen_forensics.report.run import session_report

    try:
        result = session_report(
            snapshot,
            out,
            session_id=session_id,
            correlation_id=correlation_id,
            redaction=redaction,
            pdf=pdf,
        )
    except ForensicsError as exc:
        raise fail(str(exc)) from exc
    _report_done(result)


@app.command("review")
def review_command(
    out: Annotated[
        Path, typer.Option("--out", help="Directory for the report.")
    ] = Path("reports/weekly"),
    snapshot: Annotated[
        Path | None,
        typer.Option(
            "--snapshot",
            help="Review this snapshot instead of the embedded default week.",
        ),
    ] = None,
    bootstrap_servers: Annotated[
        str | None,
        typer.Option(
            "--bootstrap-servers",
            envvar="FORENSICS_BOOTSTRAP_SERVERS",
            help="Snapshot this Kafka first (SASL/SSL from FORENSICS_KAFKA_*).",
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="FORENSICS_DATABASE_URL",
            help="Snapshot this Postgres first.",
        ),
    ] = None,
    prefix: PrefixOption = "",
    schema: Annotated[
        str | None, typer.Option("--schema", help="Postgres schema of event_logs.")
    ] = None,
    week: WeekOption = None,
    previous: PreviousOption = None,
    thresholds: ThresholdsOption = None,
    overrides: OverridesOption = None,
    redaction: RedactionOption = "none",
    pdf: PdfOption = False,
) -> None:
    """The week's DLQ review in one command.

    With no services named it reviews the embedded default week (a simulated week
    written straight to a snapshot under data/, generated the first time; --week
    defaults to its Monday). With --bootstrap-servers, --database-url or both (or
    their FORENSICS_* variables) it snapshots those live systems into
    OUT/snapshot-<UTC time> first, then reviews that snapshot.
    """
    from codegen_forensics.report.run import review

    if snapshot is not None and (bootstrap_servers or database_url):
        raise fail("give either --snapshot or live systems, not both")
    try:
        result = review(
            out,
            snapshot=snapshot,
            kafka=kafka_settings(bootstrap_servers) if bootstrap_servers else None,
            postgres=postgres_settings(database_url) if database_url else None,
            week=week,
            previous=previous,
            thresholds=thresholds,
            overrides=overrides,
            redaction=redaction,
            pdf=pdf,
            topic_prefix=prefix,
            schema=schema,
        )
    except ForensicsError as exc:
        raise fail(str(exc)) from exc
    _report_done(result)


# --- end report and review ---


if __name__ == "__main__":
    app()
