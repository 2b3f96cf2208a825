"""The ``codegen-forensics`` command: thin commands over the library.

Each command parses its options, calls the library, prints through :func:`emit` and
returns an exit code: 0 on success, 1 when the work found a problem (a topic whose
configuration differs, say), 2 on bad input or an unreachable service.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from codegen_forensics.errors import ForensicsError
from codegen_forensics.settings import KafkaSettings, PostgresSettings

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


if __name__ == "__main__":
    app()
