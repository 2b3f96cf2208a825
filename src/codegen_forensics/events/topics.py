"""The topic catalog: the 13 topics of the design document and the names seen in use.

:class:`TopicCatalog` lists each topic with its partitions and configuration.
:func:`parse_topic` maps any topic name to (category, operation, version) under every
naming scheme we know; :class:`TopicNameParser` lets a user add schemes of their own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from codegen_forensics.errors import InputError

__all__ = [
    "CONSUMER_GROUPS",
    "DAY_MS",
    "OPERATIONS",
    "OperationTopics",
    "TopicCatalog",
    "TopicName",
    "TopicNameParser",
    "TopicSpec",
    "default_parser",
    "parse_topic",
]

DAY_MS = 24 * 60 * 60 * 1000
OPERATIONS: tuple[str, ...] = ("analyze", "validate", "pattern", "mixin")
TopicCategory = Literal["request", "response", "status", "dlq", "unknown"]

# The consumer groups of the design document and the topics each one reads.
CONSUMER_GROUPS: dict[str, tuple[str, ...]] = {
    "omniclaude_codegen_consumer": tuple(
        f"omninode_codegen_response_{op}_v1" for op in OPERATIONS
    ),
    "omniarchon_codegen_intelligence": tuple(
        f"omninode_codegen_request_{op}_v1" for op in OPERATIONS
    ),
}


@dataclass(frozen=True)
class TopicSpec:
    """One topic and the configuration it should have on the broker."""

    name: str
    category: TopicCategory
    operation: str
    version: int
    partitions: int
    retention_ms: int
    cleanup_policy: str = "delete"
    compression_type: str = "gzip"
    max_message_bytes: int = 1_048_576
    replication_factor: int = 1

    def configs(self) -> dict[str, str]:
        """Topic-level configuration as the broker spells it."""
        return {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": self.cleanup_policy,
            "compression.type": self.compression_type,
            "max.message.bytes": str(self.max_message_bytes),
        }


@dataclass(frozen=True)
class OperationTopics:
    """The request, response and dead-letter topics of one operation."""

    operation: str
    request: str
    response: str
    dlq: str


@dataclass(frozen=True)
class TopicCatalog:
    """The 13 topics of the design document, optionally under a name prefix.

    A prefix lets tests and staging systems keep their topics apart on one broker;
    :func:`parse_topic` reads prefixed names like unprefixed ones.
    """

    prefix: str = ""
    version: int = 1

    def __iter__(self) -> Iterator[TopicSpec]:
        return iter(self.topics())

    def __len__(self) -> int:
        return len(self.topics())

    def topics(self) -> list[TopicSpec]:
        specs = []
        paired: tuple[tuple[TopicCategory, int, int], ...] = (
            ("request", 3, 7),
            ("response", 3, 7),
        )
        for category, partitions, days in paired:
            for op in OPERATIONS:
                specs.append(self._spec(category, op, partitions, days))
        specs.append(self._spec("status", "session", 6, 3))
        for op in OPERATIONS:
            specs.append(self._spec("dlq", op, 1, 30))
        return specs

    def _spec(
        self, category: TopicCategory, operation: str, partitions: int, days: int
    ) -> TopicSpec:
        return TopicSpec(
            name=self.name(category, operation),
            category=category,
            operation=operation,
            version=self.version,
            partitions=partitions,
            retention_ms=days * DAY_MS,
        )

    def name(self, category: str, operation: str) -> str:
        return f"{self.prefix}omninode_codegen_{category}_{operation}_v{self.version}"

    def spec(self, name: str) -> TopicSpec:
        for spec in self.topics():
            if spec.name == name:
                return spec
        raise InputError(
            f"topic {name!r} is not in the catalog; it has "
            f"{', '.join(s.name for s in self.topics())}"
        )

    def for_operation(self, operation: str) -> OperationTopics:
        if operation not in OPERATIONS:
            raise InputError(
                f"operation {operation!r} is not known; expected one of "
                f"{', '.join(OPERATIONS)}"
            )
        return OperationTopics(
            operation=operation,
            request=self.name("request", operation),
            response=self.name("response", operation),
            dlq=self.name("dlq", operation),
        )

    @property
    def status_topic(self) -> str:
        return self.name("status", "session")

    def names(self, category: str | None = None) -> list[str]:
        return [s.name for s in self.topics() if category in (None, s.category)]


@dataclass(frozen=True)
class TopicName:
    """What a topic name says about its contents.

    ``dead_lettered`` is the category of the topic whose failures a DLQ topic holds,
    where the name says it (the dotted scheme's ``request-analyze.v1.dlq``).
    """

    topic: str
    category: TopicCategory
    operation: str | None
    version: int | None
    scheme: str
    dead_lettered: str | None = None

    @property
    def matched(self) -> bool:
        return self.scheme != "unmatched"


@dataclass
class TopicNameParser:
    """Maps topic names to (category, operation, version) through regex schemes.

    A scheme is a regular expression with the named groups ``category``,
    ``operation`` and ``version``, and optionally ``dlq`` (a suffix that marks a
    dead-letter topic). Schemes are tried in order; the first that matches the whole
    name wins. A name no scheme matches is returned with category ``unknown``.
    """

    schemes: list[tuple[str, re.Pattern[str]]] = field(default_factory=list)

    def register(self, name: str, pattern: str) -> None:
        """Add a scheme, tried before the ones already registered."""
        compiled = re.compile(pattern)
        missing = {"category", "operation", "version"} - set(compiled.groupindex)
        if missing:
            raise InputError(
                f"topic scheme {name!r} lacks the named groups {sorted(missing)}; "
                "a pattern needs (?P<category>...), (?P<operation>...) and "
                "(?P<version>...)"
            )
        self.schemes.insert(0, (name, compiled))

    def parse(self, topic: str) -> TopicName:
        for name, pattern in self.schemes:
            match = pattern.fullmatch(topic)
            if match is None:
                continue
            groups = match.groupdict()
            category = groups["category"].lower()
            dead_lettered = None
            if groups.get("dlq"):
                dead_lettered, category = category, "dlq"
            if category not in ("request", "response", "status", "dlq"):
                continue
            return TopicName(
                topic=topic,
                category=category,  # type: ignore[arg-type]
                operation=groups["operation"].lower(),
                version=int(groups["version"]),
                scheme=name,
                dead_lettered=dead_lettered,
            )
        return TopicName(topic, "unknown", None, None, "unmatched")

    def parse_all(self, topics: Iterable[str]) -> list[TopicName]:
        return [self.parse(topic) for topic in topics]


def default_parser() -> TopicNameParser:
    """A parser that knows the documented and the dotted naming schemes."""
    parser = TopicNameParser()
    # dev.omninode-bridge.codegen.request-analyze.v1 and its dead letters in
    # dev.omninode-bridge.codegen.request-analyze.v1.dlq
    parser.register(
        "dotted",
        r"(?:[\w-]+\.)*?omninode-bridge\.codegen\."
        r"(?P<category>request|response|status|dlq)-(?P<operation>[a-z0-9_-]+)"
        r"\.v(?P<version>\d+)(?P<dlq>\.dlq)?",
    )
    # omninode_codegen_request_analyze_v1, with any prefix before it.
    parser.register(
        "documented",
        r"(?:.*?)omninode_codegen_(?P<category>request|response|status|dlq)_"
        r"(?P<operation>[a-z0-9]+)_v(?P<version>\d+)",
    )
    return parser


_DEFAULT = default_parser()


def parse_topic(topic: str) -> TopicName:
    """Parse a topic name with the default schemes."""
    return _DEFAULT.parse(topic)
