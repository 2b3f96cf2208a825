"""The command line, run through typer's runner against the real services."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator

import pandas as pd
import pytest
from confluent_kafka.admin import AdminClient
from rich.console import Console
from typer.testing import CliRunner

from codegen_forensics.cli import _targets_table, app
from codegen_forensics.events.topics import TopicCatalog

runner = CliRunner()


@pytest.fixture
def catalog_topics(kafka_admin: AdminClient, unique_prefix: str) -> Iterator[str]:
    """A unique prefix whose catalog topics are deleted after the test."""
    yield unique_prefix
    names = TopicCatalog(prefix=unique_prefix).names()
    for future in kafka_admin.delete_topics(names, operation_timeout=30).values():
        # Some topics may never have been created; that is not the test's result.
        with contextlib.suppress(Exception):
            future.result(timeout=30)


def test_cli_topics_create_then_check(catalog_topics: str) -> None:
    created = runner.invoke(app, ["topics", "create", "--prefix", catalog_topics])
    checked = runner.invoke(app, ["topics", "check", "--prefix", catalog_topics])
    again = runner.invoke(app, ["topics", "create", "--prefix", catalog_topics])

    assert created.exit_code == 0, created.output
    assert created.output.count(" created ") == 13
    assert f"{catalog_topics}omninode_codegen_dlq_mixin_v1" in created.output
    assert checked.exit_code == 0, checked.output
    assert checked.output.count(" exists ") == 13
    assert again.exit_code == 0, again.output
    assert again.output.count(" exists ") == 13


def test_cli_topics_check_missing_topics_exits_1(catalog_topics: str) -> None:
    result = runner.invoke(app, ["topics", "check", "--prefix", catalog_topics])

    assert result.exit_code == 1, result.output
    assert result.output.count(" missing ") == 13


def test_cli_topics_check_reports_a_different_topic(
    catalog_topics: str, topic_factory: Callable[..., str]
) -> None:
    topic_factory("omninode_codegen_status_session_v1", partitions=2)
    created = runner.invoke(app, ["topics", "create", "--prefix", catalog_topics])
    checked = runner.invoke(app, ["topics", "check", "--prefix", catalog_topics])

    assert created.exit_code == 1, created.output
    assert created.output.count(" created ") == 12
    assert checked.exit_code == 1, checked.output
    assert "partitions: want 6, have 2" in checked.output


def test_cli_topics_unreachable_broker_exits_2() -> None:
    result = runner.invoke(
        app,
        [
            "topics",
            "check",
            "--bootstrap-servers",
            "127.0.0.1:1",
            "--timeout",
            "1",
            "--prefix",
            "never_",
        ],
    )

    assert result.exit_code == 2
    assert "could not list topics within 1.0s" in result.output


def test_cli_unreachable_broker_prints_one_error_not_the_client_log() -> None:
    # librdkafka writes to the process's standard error, out of the runner's reach.
    command = [
        sys.executable,
        "-c",
        "from codegen_forensics.cli import app; app()",
        "topics",
        "check",
        "--bootstrap-servers",
        "127.0.0.1:1",
        "--timeout",
        "2",
        "--prefix",
        "never_",
    ]
    quiet = subprocess.run(command, capture_output=True, text=True, timeout=120)
    verbose = subprocess.run(
        [*command[:3], "--verbose", *command[3:]],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert quiet.returncode == 2
    assert "%3|" not in quiet.stderr
    assert "Connection refused" not in quiet.stderr
    assert quiet.stderr.count("error:") == 1
    assert "could not list topics within 2.0s" in quiet.stderr
    assert verbose.returncode == 2
    assert "codegen_forensics.librdkafka: " in verbose.stderr
    assert "Connect to ipv4#127.0.0.1:1 failed: Connection refused" in verbose.stderr


def test_cli_topics_help_names_both_commands() -> None:
    result = runner.invoke(app, ["topics", "--help"])

    assert result.exit_code == 0
    assert "create" in result.output
    assert "check" in result.output


def test_cli_targets_table_shows_a_dash_for_no_offenders() -> None:
    targets = pd.DataFrame(
        {
            "target": ["dlq_count", "dlq_rate"],
            "measured": [6.0, 0.0035],
            "unit": ["messages", "fraction"],
            "comparison": ["<=", "<"],
            "threshold": [10.0, 0.01],
            "status": ["met", "met"],
            "worst_offenders": [float("nan"), "topic_a (1.70%)"],
        }
    )
    console = Console(width=200, record=True)
    console.print(_targets_table(targets))
    text = console.export_text()
    assert "nan" not in text
    assert "6 messages" in text
    assert "<= 10 messages" in text
    assert "0.35%" in text
    assert "topic_a (1.70%)" in text
