"""The topic catalog and the topic-name parser."""

from __future__ import annotations

import pytest

from codegen_forensics.errors import InputError
from codegen_forensics.events.topics import (
    CONSUMER_GROUPS,
    TopicCatalog,
    TopicName,
    TopicNameParser,
    default_parser,
    parse_topic,
)

WEEK_MS = 604_800_000
THREE_DAYS_MS = 259_200_000
MONTH_MS = 2_592_000_000

# (name, partitions, retention.ms) exactly as the design document's appendix.
EXPECTED_TOPICS = [
    ("omninode_codegen_request_analyze_v1", 3, WEEK_MS),
    ("omninode_codegen_request_validate_v1", 3, WEEK_MS),
    ("omninode_codegen_request_pattern_v1", 3, WEEK_MS),
    ("omninode_codegen_request_mixin_v1", 3, WEEK_MS),
    ("omninode_codegen_response_analyze_v1", 3, WEEK_MS),
    ("omninode_codegen_response_validate_v1", 3, WEEK_MS),
    ("omninode_codegen_response_pattern_v1", 3, WEEK_MS),
    ("omninode_codegen_response_mixin_v1", 3, WEEK_MS),
    ("omninode_codegen_status_session_v1", 6, THREE_DAYS_MS),
    ("omninode_codegen_dlq_analyze_v1", 1, MONTH_MS),
    ("omninode_codegen_dlq_validate_v1", 1, MONTH_MS),
    ("omninode_codegen_dlq_pattern_v1", 1, MONTH_MS),
    ("omninode_codegen_dlq_mixin_v1", 1, MONTH_MS),
]


def test_catalog_has_the_13_documented_topics() -> None:
    catalog = TopicCatalog()

    assert len(catalog) == 13
    assert [(s.name, s.partitions, s.retention_ms) for s in catalog] == EXPECTED_TOPICS


def test_catalog_topic_configs_match_the_appendix() -> None:
    for spec in TopicCatalog():
        assert spec.replication_factor == 1
        assert spec.configs() == {
            "retention.ms": str(spec.retention_ms),
            "cleanup.policy": "delete",
            "compression.type": "gzip",
            "max.message.bytes": "1048576",
        }


def test_catalog_prefix_is_put_before_every_name() -> None:
    catalog = TopicCatalog(prefix="t1234abcd_")

    assert catalog.names() == [f"t1234abcd_{name}" for name, _, _ in EXPECTED_TOPICS]
    assert catalog.status_topic == "t1234abcd_omninode_codegen_status_session_v1"


def test_catalog_names_by_category() -> None:
    catalog = TopicCatalog()

    assert catalog.names("dlq") == [
        "omninode_codegen_dlq_analyze_v1",
        "omninode_codegen_dlq_validate_v1",
        "omninode_codegen_dlq_pattern_v1",
        "omninode_codegen_dlq_mixin_v1",
    ]
    assert catalog.names("status") == ["omninode_codegen_status_session_v1"]
    assert len(catalog.names("request")) == 4


def test_catalog_operation_topics() -> None:
    topics = TopicCatalog(prefix="p_").for_operation("validate")

    assert topics.operation == "validate"
    assert topics.request == "p_omninode_codegen_request_validate_v1"
    assert topics.response == "p_omninode_codegen_response_validate_v1"
    assert topics.dlq == "p_omninode_codegen_dlq_validate_v1"


def test_catalog_unknown_operation_is_refused() -> None:
    with pytest.raises(
        InputError,
        match="operation 'session' is not known; expected one of analyze, validate, "
        "pattern, mixin",
    ):
        TopicCatalog().for_operation("session")


def test_catalog_spec_by_name() -> None:
    spec = TopicCatalog().spec("omninode_codegen_status_session_v1")

    assert (spec.category, spec.operation, spec.version) == ("status", "session", 1)
    with pytest.raises(InputError, match="topic 'nope' is not in the catalog"):
        TopicCatalog().spec("nope")


def test_catalog_version_two_names() -> None:
    assert TopicCatalog(version=2).names()[0] == "omninode_codegen_request_analyze_v2"


def test_consumer_groups_read_the_documented_topics() -> None:
    assert CONSUMER_GROUPS["omniclaude_codegen_consumer"] == tuple(
        TopicCatalog().names("response")
    )
    assert CONSUMER_GROUPS["omniarchon_codegen_intelligence"] == tuple(
        TopicCatalog().names("request")
    )


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        (
            "omninode_codegen_request_analyze_v1",
            ("request", "analyze", 1, "documented", None),
        ),
        (
            "omninode_codegen_status_session_v1",
            ("status", "session", 1, "documented", None),
        ),
        (
            "omninode_codegen_dlq_mixin_v1",
            ("dlq", "mixin", 1, "documented", None),
        ),
        (
            "t3f9a2c1_omninode_codegen_response_pattern_v2",
            ("response", "pattern", 2, "documented", None),
        ),
        (
            "dev.omninode-bridge.codegen.request-analyze.v1",
            ("request", "analyze", 1, "dotted", None),
        ),
        (
            "prod.eu.omninode-bridge.codegen.response-validate.v3",
            ("response", "validate", 3, "dotted", None),
        ),
        (
            "dev.omninode-bridge.codegen.status-session.v1",
            ("status", "session", 1, "dotted", None),
        ),
        (
            "dev.omninode-bridge.codegen.request-analyze.v1.dlq",
            ("dlq", "analyze", 1, "dotted", "request"),
        ),
        (
            "dev.omninode-bridge.codegen.response-mixin.v1.dlq",
            ("dlq", "mixin", 1, "dotted", "response"),
        ),
    ],
)
def test_parse_topic_known_schemes(
    topic: str, expected: tuple[str, str, int, str, str | None]
) -> None:
    parsed = parse_topic(topic)

    assert (
        parsed.category,
        parsed.operation,
        parsed.version,
        parsed.scheme,
        parsed.dead_lettered,
    ) == expected
    assert parsed.topic == topic
    assert parsed.matched


@pytest.mark.parametrize(
    "topic",
    [
        "__consumer_offsets",
        "omninode_codegen_other_analyze_v1",
        "omninode_codegen_request_analyze",
        "dev.omninode-bridge.codegen.request-analyze",
        "omninode_codegen_request_analyze_v1.extra",
        "",
    ],
)
def test_parse_topic_unknown_names_are_kept_and_labelled(topic: str) -> None:
    assert parse_topic(topic) == TopicName(topic, "unknown", None, None, "unmatched")
    assert not parse_topic(topic).matched


def test_parse_topic_every_catalog_name_maps_back_to_its_spec() -> None:
    for spec in TopicCatalog(prefix="x_"):
        parsed = parse_topic(spec.name)
        assert (parsed.category, parsed.operation, parsed.version) == (
            spec.category,
            spec.operation,
            spec.version,
        )


def test_parser_user_scheme_is_tried_first() -> None:
    parser = default_parser()
    parser.register(
        "team",
        r"codegen\.(?P<operation>[a-z]+)\.(?P<category>request|response|dlq)"
        r"\.v(?P<version>\d+)",
    )

    assert parser.parse("codegen.pattern.response.v4") == TopicName(
        "codegen.pattern.response.v4", "response", "pattern", 4, "team"
    )
    # The built-in schemes still work after registering one.
    assert parser.parse("omninode_codegen_request_mixin_v1").scheme == "documented"


def test_parser_scheme_with_dlq_group_marks_dead_letters() -> None:
    parser = TopicNameParser()
    parser.register(
        "suffix",
        r"(?P<category>request|response)_(?P<operation>\w+?)_v(?P<version>\d+)"
        r"(?P<dlq>_failed)?",
    )

    assert parser.parse("request_analyze_v1_failed") == TopicName(
        "request_analyze_v1_failed", "dlq", "analyze", 1, "suffix", "request"
    )
    assert parser.parse("request_analyze_v1").category == "request"


def test_parser_scheme_without_named_groups_is_refused() -> None:
    with pytest.raises(
        InputError,
        match=r"topic scheme 'bad' lacks the named groups \['version'\]",
    ):
        TopicNameParser().register("bad", r"(?P<category>request)_(?P<operation>\w+)")


def test_parser_parse_all_keeps_order() -> None:
    names = ["x", "omninode_codegen_dlq_analyze_v1"]

    assert [p.category for p in default_parser().parse_all(names)] == [
        "unknown",
        "dlq",
    ]
