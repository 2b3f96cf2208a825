"""Text the simulated services write: PRDs, code, results, errors and stack traces.

Everything is drawn from a seeded :class:`random.Random`, so the same draws give the
same text. Error messages follow one template per error kind; only the parts an error
taxonomy masks (ids, numbers, durations, hosts, ports, addresses, quoted values)
vary between messages.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Any

from codegen_forensics.simulate.config import ErrorKind

__all__ = [
    "ERROR_TEMPLATES",
    "ERROR_TYPES",
    "ErrorText",
    "SessionTopic",
    "analysis_result",
    "code_content",
    "error_text",
    "mixin_recommendations",
    "pattern_result",
    "prd_content",
    "session_topic",
    "validation_result",
]

_DOMAINS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("UserAuth", "User authentication", ("JWT tokens", "Password hashing", "Sessions")),
    ("PaymentCapture", "Payment capture", ("Idempotency keys", "Refunds", "Webhooks")),
    ("InventorySync", "Inventory sync", ("Delta updates", "Conflict resolution")),
    ("ReportExport", "Report export", ("CSV output", "Pagination", "Scheduling")),
    ("OrderRouting", "Order routing", ("Priority queues", "Retry logic", "Metrics")),
    (
        "EmailDispatch",
        "Email dispatch",
        ("Templates", "Bounce handling", "Rate limits"),
    ),
    ("CacheWarmer", "Cache warming", ("TTL management", "Connection pool")),
    (
        "SearchIndexer",
        "Search indexing",
        ("Batching", "Backpressure", "Schema mapping"),
    ),
    ("AuditTrail", "Audit trail", ("Append-only log", "Tamper evidence", "Retention")),
    ("FeatureFlags", "Feature flags", ("Targeting rules", "Rollouts", "Caching")),
    ("MetricsRollup", "Metrics roll-up", ("Windowed aggregation", "Late data")),
    ("DocumentOCR", "Document OCR", ("Image preprocessing", "Confidence scores")),
)
_NODE_TYPES = ("effect", "compute", "reducer", "orchestrator")
_NODE_WEIGHTS = (0.45, 0.3, 0.15, 0.1)
_FRAMEWORKS = ("onex", "onex", "fastapi", "onex-lite")
_MIXINS = (
    "ValidationMixin",
    "CachingMixin",
    "RetryMixin",
    "MetricsMixin",
    "AuthenticationMixin",
    "CircuitBreakerMixin",
    "TracingMixin",
    "RateLimitMixin",
)
_DEPENDENCIES = ("pydantic", "redis", "tenacity", "asyncpg", "pyjwt", "bcrypt", "httpx")
_REQUIREMENT_VERBS = ("Support", "Handle", "Validate", "Track", "Expose", "Persist")
_WARNINGS = (
    "Consider adding docstring to execute_effect method",
    "Broad exception handler hides errors",
    "Magic number in retry policy",
    "Unused import in module header",
    "Method longer than 60 lines",
)
_ERRORS = (
    "Missing contract adherence for output model",
    "execute method is not async",
    "Node class name does not follow Node<Name><Type>",
    "Unhandled exception path in transaction block",
)
_SUGGESTIONS = (
    "Use more descriptive variable names",
    "Extract the retry policy into configuration",
    "Add type hints to helper functions",
    "Prefer structured logging with correlation ids",
)
_BAD_NODE_TYPES = (
    "effector",
    "Effect",
    "computer",
    "reduce",
    "orchestrater",
    "node-effect",
    "EFFECT",
    "transformer",
)
_MISSING_KEYS = (
    "framework",
    "contract_type",
    "node_name",
    "requirements",
    "architecture",
    "similarity_score",
)
_HOSTS = (
    ("qdrant", 6333),
    ("memgraph", 7687),
    ("postgres", 5432),
    ("intelligence-llm", 8053),
    ("search", 8055),
)


@dataclass(frozen=True)
class SessionTopic:
    """What one session builds: the node, its domain and its requirements."""

    node_name: str
    node_type: str
    title: str
    requirements: tuple[str, ...]
    framework: str
    project: str


def session_topic(rng: random.Random) -> SessionTopic:
    stem, title, features = rng.choice(_DOMAINS)
    node_type = rng.choices(_NODE_TYPES, _NODE_WEIGHTS)[0]
    suffix = node_type.capitalize()
    count = rng.randint(2, len(features) + 2)
    extra = [
        f"{rng.choice(_REQUIREMENT_VERBS)} {word.lower()}"
        for word in rng.sample(("retries", "metrics", "tracing", "caching"), 2)
    ]
    requirements = tuple([*features, *extra][:count])
    return SessionTopic(
        node_name=f"Node{stem}{suffix}",
        node_type=node_type,
        title=f"{title} service",
        requirements=requirements,
        framework=rng.choice(_FRAMEWORKS),
        project=f"/workspace/{stem.lower()}-{rng.randint(1, 40):02d}",
    )


def prd_content(rng: random.Random, topic: SessionTopic) -> str:
    lines = [f"# {topic.title}", "", "## Overview", ""]
    lines.append(
        f"Build an ONEX {topic.node_type} node, {topic.node_name}, that provides "
        f"{topic.title.lower()} for the platform."
    )
    lines += ["", "## Requirements", ""]
    for index, requirement in enumerate(topic.requirements, 1):
        target = rng.choice((50, 100, 200, 500, 1000))
        lines.append(
            f"{index}. {requirement}: p95 under {target} ms, errors logged "
            "with correlation ids."
        )
    lines += ["", "## Constraints", ""]
    lines.append(f"- Python 3.11, framework {topic.framework}")
    lines.append(f"- At most {rng.randint(2, 8)} external calls per request")
    if rng.random() < 0.5:
        lines += ["", "## Notes", "", "Reuse existing mixins where possible."]
    return "\n".join(lines) + "\n"


def code_content(rng: random.Random, topic: SessionTopic, attempt: int) -> str:
    base = f"Node{topic.node_type.capitalize()}"
    lines = [
        f'"""{topic.node_name}: {topic.title.lower()} (generation {attempt})."""',
        "",
        "from omnibase_core import ModelContract, ModelResult",
        f"from omnibase_core.nodes import {base}",
        "",
        "",
        f"class {topic.node_name}({base}):",
        f"    async def execute_{topic.node_type}(",
        "        self, contract: ModelContract",
        "    ) -> ModelResult:",
    ]
    for requirement in topic.requirements[: rng.randint(1, len(topic.requirements))]:
        name = requirement.lower().replace(" ", "_").replace("-", "_")
        lines.append(f"        await self._{name}(contract)")
    lines.append("        return ModelResult(success=True)")
    return "\n".join(lines) + "\n"


def analysis_result(rng: random.Random, topic: SessionTopic) -> dict[str, Any]:
    mixins = rng.sample(_MIXINS, rng.randint(1, 3))
    return {
        "requirements": list(topic.requirements),
        "architecture": {
            "node_type": topic.node_type,
            "mixins": mixins,
            "dependencies": rng.sample(_DEPENDENCIES, rng.randint(1, 3)),
        },
        "complexity": rng.choice(("low", "medium", "medium", "high")),
    }


def validation_result(rng: random.Random, valid: bool) -> dict[str, Any]:
    errors = [] if valid else rng.sample(_ERRORS, rng.randint(1, 2))
    checks = {
        "naming_convention": "pass" if valid or rng.random() < 0.5 else "fail",
        "method_signature": "pass",
        "contract_adherence": "pass" if valid else "fail",
        "error_handling": rng.choice(("pass", "warning")),
    }
    return {
        "errors": errors,
        "warnings": rng.sample(_WARNINGS, rng.randint(0, 2)),
        "suggestions": rng.sample(_SUGGESTIONS, rng.randint(0, 2)),
        "compliance_checks": checks,
    }


def pattern_result(
    rng: random.Random, topic: SessionTopic, count: int
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for _ in range(count):
        stem, title, _features = rng.choice(_DOMAINS)
        name = f"Node{stem}{topic.node_type.capitalize()}"
        results.append(
            {
                "node_name": name,
                "similarity_score": round(rng.uniform(0.55, 0.98), 3),
                "file_path": f"src/nodes/{stem.lower()}/{_snake(name)}.py",
                "implementation_summary": f"{title} with {rng.choice(_MIXINS)}",
            }
        )
    results.sort(key=lambda r: -r["similarity_score"])
    return results


def mixin_recommendations(
    rng: random.Random, topic: SessionTopic
) -> list[dict[str, Any]]:
    picks = rng.sample(_MIXINS, rng.randint(1, 4))
    return [
        {
            "mixin_name": name,
            "confidence": round(rng.uniform(0.6, 0.99), 3),
            "rationale": f"Supports {rng.choice(topic.requirements).lower()}",
            "dependencies": rng.sample(_DEPENDENCIES, rng.randint(0, 2)),
        }
        for name in picks
    ]


@functools.cache
def _snake(name: str) -> str:
    # Cached: the names come from a short list, and this ran once per result.
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


# -- errors ------------------------------------------------------------------------

ERROR_TYPES: dict[ErrorKind, str] = {
    "validation": "ValidationError",
    "timeout": "TimeoutError",
    "connection_refused": "ClientConnectorError",
    "json_decode": "JSONDecodeError",
    "missing_key": "KeyError",
}

# One template per kind, in the masked form an error taxonomy would give: what varies
# between messages of a kind is only what these placeholders stand for.
ERROR_TEMPLATES: dict[ErrorKind, str] = {
    "validation": "Invalid node_type: <quoted> (expected one of effect, compute, "
    "reducer, orchestrator)",
    "timeout": "Timed out after <duration> waiting for intelligence model response "
    "(request <id>)",
    "connection_refused": "Cannot connect to host <host>:<port> ssl:default "
    "[Connect call failed (<quoted>, <n>)]",
    "json_decode": "Expecting <quoted> delimiter: line <n> column <n> (char <n>)",
    "missing_key": "missing key <quoted> in intelligence payload "
    "(correlation_id=<uuid>)",
}


@dataclass(frozen=True)
class ErrorText:
    """One failure as the consumer reports it."""

    kind: ErrorKind
    error_type: str
    message: str
    stack_trace: str
    # How long the failing attempt took before it raised.
    attempt_ms: int


def error_text(
    rng: random.Random, kind: ErrorKind, correlation_id: str, operation: str
) -> ErrorText:
    """A message of ``kind`` with its own ids and numbers, and a matching traceback."""
    frames: tuple[tuple[str, int, str], ...]
    if kind == "validation":
        message = (
            f"Invalid node_type: '{rng.choice(_BAD_NODE_TYPES)}' (expected one of "
            "effect, compute, reducer, orchestrator)"
        )
        attempt_ms = rng.randint(3, 40)
        frames = (
            ("intelligence/handlers/codegen.py", 212, "handle_request"),
            ("intelligence/validation/contracts.py", 88, "check_node_type"),
        )
    elif kind == "timeout":
        seconds = rng.choice((30.0, 45.0, 60.0)) + rng.choice((0.0, 0.5))
        message = (
            f"Timed out after {seconds:.1f}s waiting for intelligence model response "
            f"(request req-{rng.getrandbits(32):08x})"
        )
        attempt_ms = int(seconds * 1000) + rng.randint(0, 30)
        frames = (
            ("intelligence/handlers/codegen.py", 219, "handle_request"),
            ("intelligence/clients/llm.py", 143, "complete"),
            ("asyncio/tasks.py", 520, "wait_for"),
        )
    elif kind == "connection_refused":
        host, port = rng.choice(_HOSTS)
        replica = rng.randint(0, 3)
        address = f"10.{rng.randint(0, 3)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}"
        message = (
            f"Cannot connect to host {host}-{replica}.intel.svc:{port} ssl:default "
            f"[Connect call failed ('{address}', {port})]"
        )
        attempt_ms = rng.randint(2, 25)
        frames = (
            ("intelligence/handlers/codegen.py", 226, "handle_request"),
            ("intelligence/clients/vector_store.py", 61, "search"),
            ("aiohttp/connector.py", 1025, "_wrap_create_connection"),
        )
    elif kind == "json_decode":
        line = rng.randint(1, 40)
        column = rng.randint(2, 120)
        char = line * 80 + column + rng.randint(0, 60)
        message = f"Expecting ',' delimiter: line {line} column {column} (char {char})"
        attempt_ms = rng.randint(300, 4000)
        frames = (
            ("intelligence/handlers/codegen.py", 231, "handle_request"),
            ("intelligence/clients/llm.py", 177, "parse_completion"),
            ("json/decoder.py", 353, "raw_decode"),
        )
    else:
        key = rng.choice(_MISSING_KEYS)
        message = (
            f"missing key '{key}' in intelligence payload "
            f"(correlation_id={correlation_id})"
        )
        attempt_ms = rng.randint(50, 1500)
        frames = (
            ("intelligence/handlers/codegen.py", 240, "handle_request"),
            (f"intelligence/operations/{operation}.py", 57, "build_response"),
        )
    error_type = ERROR_TYPES[kind]
    trace = ["Traceback (most recent call last):"]
    for path, line_no, function in frames:
        trace.append(f'  File "/app/src/{path}", line {line_no}, in {function}')
    trace.append(f"{error_type}: {message}")
    return ErrorText(kind, error_type, message, "\n".join(trace) + "\n", attempt_ms)
