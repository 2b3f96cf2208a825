"""The traffic generator: sessions, requests, responses, failures and poison, in order.

:class:`Traffic` turns a :class:`SimulationConfig` into one stream of Kafka messages
and ``event_logs`` rows in timestamp order, which is the order a sink writes them in,
so offsets grow with time as they would on a real broker. Every random draw comes
from generators seeded by the config's seed and the session's index, every id is
drawn from them, and every timestamp comes from the simulated clock: the same config
gives the same bytes.

Each message carries its partition (librdkafka's default ``consistent_random``
partitioner: CRC-32 of the key modulo the partition count) and its offset on a fresh
topic, so the ground truth can name exact positions before anything is sent.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import math
import os
import pickle
import random
import struct
import subprocess
import sys
import traceback
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Literal
from uuid import UUID

from codegen_forensics.errors import SimulationError
from codegen_forensics.events.dlq import DLQEnvelope, DLQError, normalise_dlq
from codegen_forensics.events.schemas import (
    CodegenAnalysisRequest,
    CodegenAnalysisResponse,
    CodegenEvent,
    CodegenMixinRequest,
    CodegenMixinResponse,
    CodegenPatternRequest,
    CodegenPatternResponse,
    CodegenStatusEvent,
    CodegenValidationRequest,
    CodegenValidationResponse,
)
from codegen_forensics.events.topics import OPERATIONS, TopicCatalog
from codegen_forensics.simulate import content
from codegen_forensics.simulate.config import (
    POISON_KINDS,
    ErrorKind,
    OperationTiming,
    PoisonKind,
    SimulationConfig,
)
from codegen_forensics.simulate.truth import (
    POISON_DECODE_STATUS,
    FailedSession,
    GroundTruth,
    TruthBuilder,
    UnansweredRequest,
    UnfinishedSession,
    iso,
)
from codegen_forensics.simulate.wire import (
    Payload,
    PayloadCheck,
    check_payload,
    encode,
    timestamp_text,
)

__all__ = [
    "CLIENT_GROUP",
    "INTELLIGENCE_GROUP",
    "EventLogRow",
    "SimMessage",
    "Traffic",
    "dotted_dlq_topic",
    "partition_for",
]

logger = logging.getLogger(__name__)

CLIENT_GROUP = "omniclaude_codegen_consumer"
INTELLIGENCE_GROUP = "omniarchon_codegen_intelligence"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000
_STEPS = (
    "initialization",
    "prd_analysis",
    "pattern_matching",
    "code_generation",
    "validation",
    "finalization",
)

Role = Literal["request", "response", "status", "duplicate", "dlq", "poison"]
EventLogRow = dict[str, Any]
# The keys of every row, in order: the worker process sends rows as value tuples.
_ROW_KEYS = (
    "session_id",
    "correlation_id",
    "event_type",
    "topic",
    "timestamp",
    "status",
    "processing_time_ms",
    "payload",
    "metadata",
)


class SimMessage:
    """One Kafka message as the simulator emits it.

    ``event`` is the validated event for messages that are one, kept only when the
    sink asks for events (a producer that validates them again); poison and
    dead-letter messages are raw bytes only. ``offset`` is the message's offset on a
    fresh topic. ``info`` holds what the ground truth needs to know about it.
    """

    __slots__ = (
        "event",
        "headers",
        "info",
        "key",
        "offset",
        "partition",
        "role",
        "timestamp_ms",
        "topic",
        "value",
    )

    def __init__(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int,
        role: Role,
        event: CodegenEvent | None = None,
        info: Any = None,
    ) -> None:
        self.topic = topic
        self.key = key
        self.value = value
        self.timestamp_ms = timestamp_ms
        self.role: Role = role
        self.event = event
        self.info = info
        self.headers: list[tuple[str, bytes | None]] | None = None
        self.partition = 0
        self.offset = 0

    def __repr__(self) -> str:
        return (
            f"SimMessage(topic={self.topic!r}, partition={self.partition}, "
            f"offset={self.offset}, role={self.role!r})"
        )

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # A flat tuple pickles in a quarter of the time the slots' state would
        # take: the worker process hands over every message this way.
        return (
            _restore_message,
            (
                self.topic,
                self.key,
                self.value,
                self.timestamp_ms,
                self.role,
                self.event,
                self.info,
                self.headers,
                self.partition,
                self.offset,
            ),
        )


def _restore_message(
    topic: str,
    key: bytes | None,
    value: bytes | None,
    timestamp_ms: int,
    role: Role,
    event: CodegenEvent | None,
    info: Any,
    headers: list[tuple[str, bytes | None]] | None,
    partition: int,
    offset: int,
) -> SimMessage:
    message = SimMessage(topic, key, value, timestamp_ms, role, event, info)
    message.headers = headers
    message.partition = partition
    message.offset = offset
    return message


def partition_for(key: bytes | None, partitions: int) -> int:
    """librdkafka's ``consistent_random`` choice: CRC-32 of the key, mod partitions."""
    if partitions <= 1 or key is None:
        return 0
    return zlib.crc32(key) % partitions


def dotted_dlq_topic(catalog: TopicCatalog, operation: str, environment: str) -> str:
    """``<prefix>dev.omninode-bridge.codegen.request-<op>.v1.dlq``."""
    return (
        f"{catalog.prefix}{environment}.omninode-bridge.codegen."
        f"request-{operation}.v{catalog.version}.dlq"
    )


def _derive(seed: int, *parts: object) -> int:
    text = "/".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=16).digest())


def _uuid(rng: random.Random) -> UUID:
    return UUID(int=rng.getrandbits(128), version=4)


def _dt(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _ms(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(milliseconds=1)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class _Dealer:
    """Deals names in exact proportions to their weights (smooth weighted round robin).

    Deterministic, and every name with a weight appears early, so small runs still
    see each kind.
    """

    def __init__(self, weights: dict[str, float]) -> None:
        self._items = [(name, w) for name, w in weights.items() if w > 0]
        self._total = sum(w for _, w in self._items)
        self._current = dict.fromkeys((name for name, _ in self._items), 0.0)

    def __bool__(self) -> bool:
        return bool(self._items)

    def next(self) -> str:
        best = ""
        best_value = -math.inf
        for name, weight in self._items:
            value = self._current[name] + weight
            self._current[name] = value
            if value > best_value:
                best, best_value = name, value
        self._current[best] -= self._total
        return best


class _Stop(Exception):  # noqa: N818 - control flow inside one session, never raised out
    """Ends a session early (failed, stalled or abandoned)."""


@dataclass
class _Outcome:
    answered: bool
    done_ms: int
    valid: bool = True


class _Session:
    """Builds one session's items; ``items`` are (timestamp, seq, item)."""

    def __init__(
        self, traffic: Traffic, index: int, arrival_ms: int, rng: random.Random
    ) -> None:
        self.traffic = traffic
        self.config = traffic.config
        self.rng = rng
        self.index = index
        self.arrival_ms = arrival_ms
        self.items: list[tuple[int, int, SimMessage | EventLogRow]] = []
        self.session_id = _uuid(rng)
        self.sid = str(self.session_id)
        self.key = self.sid.encode()
        self.topic = content.session_topic(rng)
        self.statuses = 0
        self.last_status = "pending"
        self.progress = 0.0
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        self.abandon_after = rng.randint(1, 4)
        self.abandons = (
            self.config.has("unfinished") and rng.random() < self.config.unfinished_rate
        )
        # Rows nobody wants are only counted into the truth.
        self.rows_skipped = 0
        # The rows of one message share its payload text (one string to pickle).
        self._payload: tuple[bytes | None, str] = (None, "")

    # -- emitting ---------------------------------------------------------------

    def _add(self, timestamp_ms: int, item: SimMessage | EventLogRow) -> None:
        self.items.append((timestamp_ms, len(self.items), item))

    def message(
        self,
        topic: str,
        event: Payload | None,
        timestamp_ms: int,
        role: Role,
        *,
        value: bytes | None = None,
        info: Any = None,
    ) -> SimMessage:
        model = None
        if event is not None:
            value = encode(event.data)
            if self.traffic.keep_models:
                model = check_payload(event, value)
            else:
                self.traffic.check(event, value)
        message = SimMessage(topic, self.key, value, timestamp_ms, role, model, info)
        self._add(timestamp_ms, message)
        if self.first_ms is None or timestamp_ms < self.first_ms:
            self.first_ms = timestamp_ms
        if self.last_ms is None or timestamp_ms > self.last_ms:
            self.last_ms = timestamp_ms
        return message

    def row(
        self,
        *,
        event_type: str,
        topic: str,
        timestamp_ms: int,
        status: str,
        payload: bytes | None,
        metadata: dict[str, Any],
        correlation_id: str | None,
        processing_time_ms: int | None = None,
    ) -> None:
        if not self.traffic.want_rows:
            self.traffic.truth.count_row(event_type, status)
            self.rows_skipped += 1
            return
        if self._payload[0] is not payload:
            self._payload = (payload, _text(payload))
        self._add(
            timestamp_ms,
            {
                "session_id": self.sid,
                "correlation_id": correlation_id,
                "event_type": event_type,
                "topic": topic,
                "timestamp": _dt(timestamp_ms),
                "status": status,
                "processing_time_ms": processing_time_ms,
                "payload": self._payload[1],
                "metadata": metadata,
            },
        )

    def status(
        self, t: int, status: str, progress: float, message: str, step: str
    ) -> None:
        position = _STEPS.index(step)
        metadata: dict[str, Any] = {
            "current_step": step,
            "steps_completed": list(_STEPS[:position]),
            "steps_remaining": list(_STEPS[position + 1 :]),
            "node_name": self.topic.node_name,
        }
        self._publish_status(t, status, progress, message, metadata)
        if self.abandons and self.statuses == self.abandon_after:
            self.traffic.truth.unfinished.append(
                UnfinishedSession(
                    session_id=self.sid, reason="abandoned", last_status=status
                )
            )
            raise _Stop

    def _publish_status(
        self,
        t: int,
        status: str,
        progress: float,
        message: str,
        metadata: dict[str, Any],
    ) -> None:
        event = Payload(
            CodegenStatusEvent,
            {
                "session_id": self.sid,
                "timestamp": timestamp_text(t),
                "schema_version": "1.0",
                "status": status,
                "progress_percentage": float(progress),
                "message": message,
                "metadata": metadata,
            },
        )
        topic = self.traffic.status_topic
        sent = self.message(topic, event, t, "status")
        log_status = status if status in ("completed", "failed") else "sent"
        self.row(
            event_type="status",
            topic=topic,
            timestamp_ms=t,
            status=log_status,
            payload=sent.value,
            metadata=self.traffic.metadata["status"],
            correlation_id=None,
        )
        self.statuses += 1
        self.last_status = status
        self.progress = progress

    def fail(
        self,
        t: int,
        reason: str,
        operation: str,
        message: str,
        correlation_id: str | None,
        error_type: str | None,
    ) -> None:
        metadata: dict[str, Any] = {
            "current_step": self._step_of(operation),
            "operation": operation,
            "error_type": error_type,
            "correlation_id": correlation_id,
            "node_name": self.topic.node_name,
        }
        self._publish_status(t, "failed", self.progress, message, metadata)
        self.traffic.truth.failed.append(
            FailedSession(
                session_id=self.sid,
                reason=reason,
                operation=operation,
                correlation_id=correlation_id,
                error_type=error_type,
                failed_at=iso(t),
            )
        )
        raise _Stop

    @staticmethod
    def _step_of(operation: str) -> str:
        return {
            "analyze": "prd_analysis",
            "pattern": "pattern_matching",
            "mixin": "pattern_matching",
            "validate": "validation",
        }[operation]

    # -- the session's flow -----------------------------------------------------

    def run(self) -> None:
        try:
            self._flow()
        except _Stop:
            return

    def _flow(self) -> None:
        rng = self.rng
        topic = self.topic
        t = self.arrival_ms
        self.status(
            t, "pending", 0.0, f"Session created for {topic.node_name}", _STEPS[0]
        )

        t += rng.randint(20, 400)
        self.status(
            t, "analyzing", 10.0, "Analyzing PRD for node requirements", _STEPS[1]
        )
        outcome = self.request("analyze", t + rng.randint(5, 50))

        t = outcome.done_ms + rng.randint(50, 800)
        self.status(
            t,
            "generating",
            30.0,
            f"Finding similar nodes and mixins for {topic.node_name}",
            _STEPS[2],
        )
        patterns = rng.choices((0, 1, 2), (0.25, 0.5, 0.25))[0]
        wants_mixin = rng.random() < 0.7
        operations = ["pattern"] * patterns + (["mixin"] if wants_mixin else [])
        issued = t + rng.randint(5, 50)
        done = issued
        for operation in operations:
            outcome = self.request(operation, issued)
            done = max(done, outcome.done_ms)
            issued += rng.randint(1, 20)

        t = done + rng.randint(20, 300)
        self.status(
            t,
            "generating",
            45.0,
            f"Generating {topic.node_type} node {topic.node_name}",
            _STEPS[3],
        )
        t += self.think_ms()
        for attempt in range(1, 4):
            self.status(
                t,
                "validating",
                70.0 + 8.0 * (attempt - 1),
                f"Validating generated code (attempt {attempt})",
                _STEPS[4],
            )
            valid = rng.random() < (0.75 if attempt == 1 else 0.85)
            outcome = self.request(
                "validate", t + rng.randint(5, 50), attempt=attempt, valid=valid
            )
            t = outcome.done_ms + rng.randint(20, 300)
            if outcome.valid:
                break
            if attempt == 3:
                self.fail(
                    t,
                    "invalid_code",
                    "validate",
                    "Code failed validation 3 times; giving up",
                    None,
                    None,
                )
            self.status(
                t,
                "generating",
                74.0 + 8.0 * (attempt - 1),
                f"Regenerating {topic.node_name} after failed validation",
                _STEPS[3],
            )
            t += self.think_ms()

        seconds = (t - self.arrival_ms) / 1000.0
        self.status(
            t,
            "completed",
            100.0,
            f"Generated {topic.node_name} in {seconds:.1f}s",
            _STEPS[5],
        )
        self.traffic.truth.completed += 1

    def think_ms(self) -> int:
        """How long the client takes to generate code between requests."""
        return int(6000 * math.exp(0.6 * self.rng.gauss(0.0, 1.0)))

    # -- one request ------------------------------------------------------------

    def request(
        self, operation: str, t: int, *, attempt: int = 1, valid: bool = True
    ) -> _Outcome:
        rng = self.rng
        traffic = self.traffic
        config = self.config
        topics = traffic.topics[operation]
        cid = str(_uuid(rng))
        event = self._request_event(operation, cid, t, attempt)
        sent = self.message(topics.request, event, t, "request", info=operation)
        payload = sent.value
        self.row(
            event_type="request",
            topic=topics.request,
            timestamp_ms=t,
            status="sent",
            payload=payload,
            metadata=traffic.metadata["sent"],
            correlation_id=cid,
        )
        consumed = t + max(1, int(15 * math.exp(0.8 * rng.gauss(0.0, 1.0))))
        self.row(
            event_type="request",
            topic=topics.request,
            timestamp_ms=consumed,
            status="processing",
            payload=payload,
            metadata=traffic.metadata["processing"],
            correlation_id=cid,
        )

        # What becomes of it: dead-lettered, never answered, or answered.
        fate = rng.random()
        fail_rate = (
            config.failures.rates.get(operation, 0.0) if config.has("failures") else 0.0
        )
        unanswered_rate = config.unanswered_rate if config.has("unanswered") else 0.0
        if fate < fail_rate:
            self.dead_letter(operation, event, cid, consumed)
        if fate < fail_rate + unanswered_rate:
            traffic.truth.unanswered.append(
                UnansweredRequest(
                    session_id=self.sid,
                    correlation_id=cid,
                    operation=operation,
                    topic=topics.request,
                    sent_at=iso(t),
                )
            )
            traffic.truth.unfinished.append(
                UnfinishedSession(
                    session_id=self.sid,
                    reason="unanswered_request",
                    last_status=self.last_status,
                )
            )
            raise _Stop

        took = traffic.processing_ms(rng, operation, consumed)
        retries = 0
        transient = rng.random()
        if config.has("failures") and transient < config.failures.transient_rate:
            retries = rng.randint(1, 2)
            for number in range(1, retries + 1):
                took += rng.randint(20, 500) + 1000 * 2**number
            traffic.truth.retried += 1
        answered = consumed + took
        response = self._response_event(operation, cid, answered, took, valid)
        message = self.message(
            topics.response, response, answered, "response", info=(operation, took)
        )
        response_payload = message.value
        self.row(
            event_type="response",
            topic=topics.response,
            timestamp_ms=answered,
            status="completed",
            payload=response_payload,
            metadata=traffic.metadata[f"completed/{retries}"],
            correlation_id=cid,
            processing_time_ms=took,
        )
        received = answered + max(1, int(12 * math.exp(0.7 * rng.gauss(0.0, 1.0))))
        client_meta = traffic.metadata["received"]
        self.row(
            event_type="response",
            topic=topics.response,
            timestamp_ms=received,
            status="received",
            payload=response_payload,
            metadata=client_meta,
            correlation_id=cid,
        )
        if config.has("duplicates") and rng.random() < config.duplicate_rate:
            self.message(
                topics.response,
                None,
                answered,
                "duplicate",
                value=message.value,
                info=(self.sid, cid, took),
            )
            self.row(
                event_type="response",
                topic=topics.response,
                timestamp_ms=received + rng.randint(1, 40),
                status="received",
                payload=response_payload,
                metadata=client_meta,
                correlation_id=cid,
            )
        return _Outcome(True, received, valid)

    def dead_letter(
        self, operation: str, event: Payload, cid: str, consumed: int
    ) -> None:
        """Fail every attempt, dead-letter the request and fail the session."""
        rng = self.rng
        traffic = self.traffic
        failures = self.config.failures
        kind: ErrorKind = traffic.kinds.next()  # type: ignore[assignment]
        error = content.error_text(rng, kind, cid, operation)
        t = consumed
        for attempt in range(failures.max_retries + 1):
            t += error.attempt_ms + rng.randint(0, 20)
            if attempt < failures.max_retries:
                t += 1000 * 2 ** (attempt + 1)
        failed_at = t
        dlq_at = t + rng.randint(2, 30)

        shape = traffic.shapes.next()
        scheme = traffic.schemes.next() if traffic.schemes else "documented"
        variant = traffic.minimal_variants.next() if shape == "minimal" else "full"
        topics = traffic.topics[operation]
        dlq_topic = (
            dotted_dlq_topic(traffic.catalog, operation, self.config.dotted_environment)
            if scheme == "dotted"
            else topics.dlq
        )
        body = _dlq_body(
            shape,
            variant,
            event,
            error,
            source_topic=topics.request,
            consumer_group=traffic.group(failures.consumer_group),
            max_retries=failures.max_retries,
            failed_at=failed_at,
            dlq_at=dlq_at,
            key=self.sid,
        )
        value = body if isinstance(body, bytes) else _json(body)
        normalised = normalise_dlq(json.loads(value))
        info = {
            "timestamp": iso(dlq_at),
            "kind": kind,
            "shape": shape,
            "variant": variant,
            "scheme": scheme,
            "operation": operation,
            "source_topic": topics.request,
            "session_id": self.sid,
            "correlation_id": cid,
            "error_type": error.error_type,
            "error_message": error.message,
            "normalised_error_type": normalised.error_type,
            "normalised_error_message": normalised.error_message,
        }
        self.message(dlq_topic, None, dlq_at, "dlq", value=value, info=info)
        self.row(
            event_type="error",
            topic=dlq_topic,
            timestamp_ms=dlq_at,
            status="failed",
            payload=value,
            metadata={
                "source": "omniarchon",
                "retries": failures.max_retries,
                "error_type": error.error_type,
                "source_topic": topics.request,
            },
            correlation_id=cid,
        )
        notice = dlq_at + rng.randint(100, 900)
        self.fail(
            notice,
            kind,
            operation,
            f"{operation} request failed after {failures.max_retries} retries: "
            f"{error.error_type}",
            cid,
            error.error_type,
        )

    # -- events -----------------------------------------------------------------

    def _request_event(
        self, operation: str, correlation: str, t: int, attempt: int
    ) -> Payload:
        return request_event(
            self.rng, self.topic, operation, self.sid, correlation, t, attempt
        )

    def _response_event(
        self, operation: str, correlation: str, t: int, took: int, valid: bool
    ) -> Payload:
        # The draws happen in the order the fields are filled in; the dicts list
        # the fields in the models' order.
        rng = self.rng
        topic = self.topic
        head = {
            "session_id": self.sid,
            "timestamp": timestamp_text(t),
            "schema_version": "1.0",
            "correlation_id": correlation,
        }
        if operation == "analyze":
            analysis = content.analysis_result(rng, topic)
            return Payload(
                CodegenAnalysisResponse,
                {
                    **head,
                    "analysis_result": analysis,
                    "confidence": round(rng.uniform(0.6, 0.99), 3),
                    "processing_time_ms": took,
                },
            )
        if operation == "validate":
            quality = rng.uniform(0.75, 0.98) if valid else rng.uniform(0.3, 0.7)
            return Payload(
                CodegenValidationResponse,
                {
                    **head,
                    "validation_result": content.validation_result(rng, valid),
                    "quality_score": round(quality, 3),
                    "onex_compliance_score": round(min(1.0, quality + 0.05), 3),
                    "is_valid": valid,
                    "processing_time_ms": took,
                },
            )
        if operation == "pattern":
            count = rng.randint(1, 5)
            patterns = content.pattern_result(rng, topic, count)
            return Payload(
                CodegenPatternResponse,
                {
                    **head,
                    "pattern_result": patterns,
                    "total_matches": count + rng.randint(0, 12),
                    "processing_time_ms": took,
                },
            )
        recommendations = content.mixin_recommendations(rng, topic)
        return Payload(
            CodegenMixinResponse,
            {
                **head,
                "mixin_recommendations": recommendations,
                "total_recommendations": len(recommendations),
                "processing_time_ms": took,
            },
        )


def request_event(
    rng: random.Random,
    topic: content.SessionTopic,
    operation: str,
    session_id: str,
    correlation: str,
    t: int,
    attempt: int = 1,
) -> Payload:
    """A valid request of ``operation`` for a session building ``topic``."""
    head = {
        "session_id": session_id,
        "timestamp": timestamp_text(t),
        "schema_version": "1.0",
        "correlation_id": correlation,
    }
    if operation == "analyze":
        prd = content.prd_content(rng, topic)
        return Payload(
            CodegenAnalysisRequest,
            {
                **head,
                "prd_content": prd,
                "analysis_type": rng.choices(
                    ("full", "requirements", "architecture"), (0.7, 0.2, 0.1)
                )[0],
                "workspace_context": {
                    "project_path": topic.project,
                    "language": "python",
                    "framework": topic.framework,
                },
            },
        )
    if operation == "validate":
        code = content.code_content(rng, topic, attempt)
        return Payload(
            CodegenValidationRequest,
            {
                **head,
                "code_content": code,
                "node_type": topic.node_type,
                "contracts": [
                    {
                        "contract_type": topic.node_type,
                        "name": f"{topic.node_name.removeprefix('Node')}Contract",
                        "version": "1.0",
                    }
                ],
                "validation_type": rng.choices(
                    ("full", "syntax", "compliance", "performance"),
                    (0.7, 0.1, 0.1, 0.1),
                )[0],
            },
        )
    if operation == "pattern":
        return Payload(
            CodegenPatternRequest,
            {
                **head,
                "node_description": f"{topic.title} with "
                f"{', '.join(r.lower() for r in topic.requirements[:2])}",
                "node_type": topic.node_type,
                "limit": rng.choice((3, 5, 5, 10)),
            },
        )
    return Payload(
        CodegenMixinRequest,
        {
            **head,
            "requirements": list(topic.requirements),
            "node_type": topic.node_type,
            "existing_mixins": [] if rng.random() < 0.7 else ["ValidationMixin"],
        },
    )


def _text(value: bytes | None) -> str:
    assert value is not None
    return value.decode("utf-8")


def _dlq_body(
    shape: str,
    variant: str,
    event: Payload,
    error: content.ErrorText,
    *,
    source_topic: str,
    consumer_group: str,
    max_retries: int,
    failed_at: int,
    dlq_at: int,
    key: str,
) -> bytes | dict[str, Any]:
    """A dead-letter message in one of the four shapes seen in the wild."""
    original = event.data
    correlation = original.get("correlation_id")
    if shape == "envelope":
        return DLQEnvelope(
            original_event=original,
            error=DLQError(
                error_type=error.error_type,
                error_message=error.message,
                stack_trace=error.stack_trace,
                timestamp=_dt(failed_at),
            ),
            retry_count=max_retries,
            max_retries=max_retries,
            dlq_timestamp=_dt(dlq_at),
            source_topic=source_topic,
            consumer_group=consumer_group,
        ).to_json_bytes()
    if shape == "flat":
        return {
            "envelope_version": "1.0",
            "correlation_id": correlation,
            "event_type": event.event_name,
            "timestamp": timestamp_text(failed_at),
            "payload": original,
            "error": f"{error.error_type}: {error.message}",
            "retry_count": max_retries,
            "dlq_timestamp": timestamp_text(dlq_at),
        }
    if shape == "client":
        return {
            "original_topic": source_topic,
            "original_key": key,
            "original_data": original,
            "failure_reason": "max_retries_exceeded",
            "error_message": error.message,
            "failure_timestamp": timestamp_text(dlq_at),
            "retry_attempts": max_retries,
        }
    if variant == "empty":
        return {}
    if variant == "null_error":
        return {"error": None, "correlation_id": correlation}
    if variant == "missing_error":
        return {"correlation_id": correlation}
    return {
        "error": f"{error.error_type}: {error.message}",
        "correlation_id": correlation,
    }


# -- poison ----------------------------------------------------------------------


def poison_message(
    rng: random.Random,
    kind: PoisonKind,
    topic_name: str,
    operation: str,
    t: int,
    session: str,
) -> tuple[bytes | None, str, str, str]:
    """A poison value for a request topic in ``session``: value, key, session and
    correlation id."""
    correlation = str(_uuid(rng))
    topic = content.session_topic(rng)
    event = request_event(rng, topic, operation, session, correlation, t)
    data = dict(event.data)
    text = encode(event.data).decode()
    value: bytes | None
    if kind == "not_json":
        if rng.random() < 0.5:
            value = text[: len(text) // 2].encode()
        else:
            value = b"<html><head><title>502 Bad Gateway</title></head></html>"
    elif kind == "not_utf8":
        if rng.random() < 0.5:
            value = b"\xff\xfe" + text.encode("utf-16-le")
        else:
            # A producer that wrote Latin-1.
            value = text[:-1].encode() + ',"author":"José Müller"}'.encode("latin-1")
    elif kind == "tombstone":
        value = None
    elif kind == "naive_timestamp":
        data["timestamp"] = data["timestamp"].removesuffix("Z")
        value = _json(data)
    elif kind == "unknown_schema_version":
        data["schema_version"] = "2.0"
        data["priority"] = rng.choice(("high", "normal", "low"))
        value = _json(data)
    elif kind == "missing_field":
        required = {
            "analyze": "prd_content",
            "validate": "code_content",
            "pattern": "node_description",
            "mixin": "requirements",
        }[operation]
        del data[required]
        value = _json(data)
    elif kind == "double_encoded":
        value = json.dumps(text).encode()
    else:
        value = _json(
            {
                "envelope_version": "1.0",
                "event_id": str(_uuid(rng)),
                "event_type": event.event_name,
                "event_timestamp": data["timestamp"],
                "correlation_id": correlation,
                "source_service": "omniclaude",
                "partition_key": session,
                "payload": data,
                "metadata": {"producer": "omniclaude-bridge", "attempt": 1},
            }
        )
    return value, session, session, correlation


# -- the whole stream --------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Counts so far, reported to a progress callback."""

    sessions: int
    sessions_total: int
    messages: int
    rows: int


class Traffic:
    """The stream of one simulation: iterate it once for messages and rows.

    After iteration :meth:`ground_truth` returns what was generated. ``now`` fixes the
    clock used only for the default window.
    """

    def __init__(
        self,
        config: SimulationConfig,
        catalog: TopicCatalog | None = None,
        *,
        now: datetime | None = None,
        progress: Callable[[Progress], None] | None = None,
        progress_every: int = 500,
        parallel: bool | None = None,
        rows: bool = True,
        messages: bool = True,
        events: bool = True,
    ) -> None:
        self.config = config
        self.parallel = _use_worker(config) if parallel is None else parallel
        self.want_rows = rows
        self.want_messages = messages
        self.keep_events = events
        # Events are built as JSON (see ``wire``): models only for a sink that
        # wants them, each checked; otherwise a sample is checked.
        self.keep_models = messages and events
        self.check = PayloadCheck()
        self.catalog = catalog or TopicCatalog()
        self.window_start, self.window_end = config.window(now)
        self._start_ms = _ms(self.window_start)
        self._end_ms = _ms(self.window_end)
        self.progress = progress
        self.progress_every = progress_every
        self.kinds = _Dealer(dict(config.failures.kinds))
        self.shapes = _Dealer(dict(config.failures.shapes))
        dotted = config.failures.dotted_rate
        self.schemes = _Dealer({"documented": 1.0 - dotted, "dotted": dotted})
        malformed = config.failures.malformed_minimal_rate
        self.minimal_variants = _Dealer(
            {
                "full": 1.0 - malformed,
                "empty": malformed / 3,
                "null_error": malformed / 3,
                "missing_error": malformed / 3,
            }
        )
        self.partitions = self._partition_counts()
        self.status_topic = self.catalog.status_topic
        self.topics = {op: self.catalog.for_operation(op) for op in OPERATIONS}
        # The metadata that repeats from row to row, one shared dict each: rows are
        # not changed once generated, and a shared dict is built and pickled once.
        self.metadata: dict[str, dict[str, Any]] = {
            "status": {
                "source": "omniclaude",
                "destination": "monitoring",
                "retries": 0,
            },
            "sent": {"source": "omniclaude", "destination": "omniarchon", "retries": 0},
            "processing": {
                "source": "omniarchon",
                "consumer_group": self.group(INTELLIGENCE_GROUP),
                "retries": 0,
            },
            "received": {
                "source": "omniclaude",
                "consumer_group": self.group(CLIENT_GROUP),
                "retries": 0,
            },
        }
        for retries in range(3):
            self.metadata[f"completed/{retries}"] = {
                "source": "omniarchon",
                "destination": "omniclaude",
                "retries": retries,
            }
        self.truth = TruthBuilder(
            topics=list(self.partitions), partitions=dict(self.partitions)
        )
        self._offsets: dict[tuple[str, int], int] = {}
        self._bottleneck_days = self._bottleneck_dates()
        self._done = False
        self._truth: GroundTruth | None = None

    # -- topics -------------------------------------------------------------------

    def dotted_topics(self) -> list[str]:
        """The dotted-scheme DLQ topics this simulation may write to."""
        failures = self.config.failures
        if not self.config.has("failures") or failures.dotted_rate <= 0:
            return []
        return [
            dotted_dlq_topic(self.catalog, op, self.config.dotted_environment)
            for op in OPERATIONS
        ]

    def _partition_counts(self) -> dict[str, int]:
        counts = {spec.name: spec.partitions for spec in self.catalog}
        for name in self.dotted_topics():
            counts[name] = 1
        return counts

    def group(self, name: str) -> str:
        """A consumer group's id under this catalog's prefix."""
        return f"{self.catalog.prefix}{name}"

    # -- timing -------------------------------------------------------------------

    def _bottleneck_dates(self) -> set[date] | None:
        if not self.config.has("bottleneck"):
            return None
        first = self.window_start.date()
        days = self.config.bottleneck.days
        indexes = range(self.config.days) if days is None else days
        return {first + timedelta(days=i) for i in indexes}

    def in_bottleneck(self, operation: str, t: int) -> bool:
        dates = self._bottleneck_days
        if dates is None or operation != self.config.bottleneck.operation:
            return False
        hour = (t // _HOUR_MS) % 24
        bottleneck = self.config.bottleneck
        if not bottleneck.start_hour <= hour < bottleneck.end_hour:
            return False
        return _dt(t).date() in dates

    def processing_ms(self, rng: random.Random, operation: str, consumed: int) -> int:
        timing: OperationTiming = self.config.timings[operation]
        value = timing.median_ms * math.exp(timing.sigma * rng.gauss(0.0, 1.0))
        if rng.random() < timing.tail_probability:
            value *= min(timing.tail_cap, rng.paretovariate(timing.tail_alpha))
        slow = rng.gauss(0.0, 1.0)
        if self.in_bottleneck(operation, consumed):
            bottleneck = self.config.bottleneck
            value += bottleneck.extra_median_ms * math.exp(
                bottleneck.extra_sigma * slow
            )
            self.truth.bottleneck_hits += 1
        return max(1, round(value))

    def _arrivals(self, count: int, stream: str) -> list[int]:
        """``count`` arrival times following the daily and weekly cycle, sorted."""
        rng = random.Random(_derive(self.config.seed, stream))
        config = self.config
        span = self._end_ms - self._start_ms
        peak = 1.0 + config.daily_amplitude
        times: list[int] = []
        while len(times) < count:
            t = self._start_ms + rng.randrange(span)
            hour = (t % _DAY_MS) / _HOUR_MS
            weight = 1.0 + config.daily_amplitude * math.cos(
                2 * math.pi * (hour - config.peak_hour) / 24
            )
            # 1970-01-01 was a Thursday: weekday 3 counting from Monday.
            if (t // _DAY_MS + 3) % 7 >= 5:
                weight *= config.weekend_factor
            if rng.random() * peak < weight:
                times.append(t)
        times.sort()
        return times

    def poison_count(self) -> int:
        if not self.config.has("poison") or self.config.poison_per_session <= 0:
            return 0
        wanted = round(self.config.poison_per_session * self.config.sessions)
        return max(len(POISON_KINDS), wanted)

    # -- iteration ----------------------------------------------------------------

    def __iter__(self) -> Iterator[SimMessage | EventLogRow]:
        if self._done:
            raise RuntimeError("a Traffic stream can be iterated only once")
        self._done = True
        if self.parallel:
            yield from self._from_worker()
            return
        want_messages = self.want_messages
        for item in self._generate():
            # Rows nobody wants are never generated.
            if want_messages or not isinstance(item, SimMessage):
                yield item

    def _generate(self) -> Iterator[SimMessage | EventLogRow]:
        """Every message (placed) and row in order, counted into the truth."""
        seed = self.config.seed
        sessions = self._arrivals(self.config.sessions, "arrivals")
        poison = self._arrivals(self.poison_count(), "poison")
        starts = [(t, 0, i) for i, t in enumerate(sessions)]
        starts += [(t, 1, i) for i, t in enumerate(poison)]
        starts.sort()

        poison_rng = random.Random(_derive(seed, "poison-kinds"))
        kinds = list(POISON_KINDS)
        poison_rng.shuffle(kinds)

        heap: list[tuple[int, int, int, SimMessage | EventLogRow]] = []
        # Poison comes from a client in the middle of a session: each goes to the
        # latest session still running at its time, else the next one to start.
        running: deque[tuple[str, int, int]] = deque(maxlen=256)
        waiting: list[tuple[int, int, PoisonKind]] = []
        messages = rows = done = 0
        for position, (t, stream, index) in enumerate(starts):
            while heap and (heap[0][0], heap[0][1]) < (t, position):
                item = heapq.heappop(heap)[3]
                if isinstance(item, SimMessage):
                    messages += 1
                    yield self._place(item)
                else:
                    rows += 1
                    self.truth.on_row(item)
                    yield item
            if stream == 0:
                session = _Session(
                    self, index, t, random.Random(_derive(seed, "session", index))
                )
                session.run()
                if session.first_ms is not None and session.last_ms is not None:
                    self.truth.session_spans[session.sid] = [
                        session.first_ms,
                        session.last_ms,
                    ]
                    running.append((session.sid, session.first_ms, session.last_ms))
                    for held, poison_index, kind in waiting:
                        message = self._poison(
                            poison_index, kind, session.first_ms, session.sid
                        )
                        heapq.heappush(heap, (session.first_ms, held, 0, message))
                    waiting.clear()
                for when, seq, item in session.items:
                    heapq.heappush(heap, (when, position, seq, item))
                rows += session.rows_skipped
                done += 1
                if self.progress is not None and done % self.progress_every == 0:
                    self.progress(Progress(done, self.config.sessions, messages, rows))
            else:
                kind = kinds[index % len(kinds)]
                host = next((r for r in reversed(running) if r[2] >= t), None)
                if host is None:
                    waiting.append((position, index, kind))
                    continue
                message = self._poison(index, kind, t, host[0])
                heapq.heappush(heap, (t, position, 0, message))
        for held, poison_index, kind in waiting:
            # Poison after the last session ends goes to that session's last moment.
            if running:
                sid, _, when = max(running, key=lambda r: r[2])
            else:
                sid = str(_uuid(random.Random(_derive(seed, "poison-session", held))))
                when = poison[poison_index]
            message = self._poison(poison_index, kind, when, sid)
            heapq.heappush(heap, (when, held, 0, message))
        while heap:
            item = heapq.heappop(heap)[3]
            if isinstance(item, SimMessage):
                messages += 1
                yield self._place(item)
            else:
                rows += 1
                self.truth.on_row(item)
                yield item
        if self.progress is not None:
            self.progress(Progress(done, self.config.sessions, messages, rows))

    def _poison(self, index: int, kind: PoisonKind, t: int, sid: str) -> SimMessage:
        rng = random.Random(_derive(self.config.seed, "poison", index))
        operation = rng.choice(OPERATIONS)
        topic = self.catalog.for_operation(operation).request
        value, key, session, correlation = poison_message(
            rng, kind, topic, operation, t, sid
        )
        info = {
            "kind": kind,
            "expected_decode_status": POISON_DECODE_STATUS[kind],
            "key": key,
            "session_id": session,
            "correlation_id": correlation,
            "timestamp": iso(t),
        }
        return SimMessage(topic, key.encode(), value, t, "poison", None, info)

    def _place(self, message: SimMessage) -> SimMessage:
        """Give a message its partition and its offset on a fresh topic."""
        partition = partition_for(message.key, self.partitions[message.topic])
        slot = (message.topic, partition)
        offset = self._offsets.get(slot, 0)
        self._offsets[slot] = offset + 1
        message.partition = partition
        message.offset = offset
        self.truth.on_message(message)
        return message

    def end_offsets(self) -> dict[tuple[str, int], int]:
        """Each partition's end offset on fresh topics (0 where nothing was sent)."""
        ends = {}
        for topic, count in self.partitions.items():
            for partition in range(count):
                ends[(topic, partition)] = self._offsets.get((topic, partition), 0)
        return ends

    def consumer_offsets(self) -> list[tuple[str, str, int, int, int]]:
        """(group, topic, partition, committed, end) for the two consumer groups."""
        ends = self.end_offsets()
        groups = {
            CLIENT_GROUP: self.catalog.names("response"),
            INTELLIGENCE_GROUP: self.catalog.names("request"),
        }
        rows = []
        for group, topics in groups.items():
            lag = self.config.consumer_lag.get(group, 0)
            for topic in topics:
                for partition in range(self.partitions[topic]):
                    end = ends[(topic, partition)]
                    committed = max(0, end - lag)
                    rows.append((self.group(group), topic, partition, committed, end))
        return rows

    def ground_truth(self) -> GroundTruth:
        if not self._done:
            raise RuntimeError("iterate the stream before asking for its ground truth")
        if self._truth is None:
            self._truth = self.truth.build(self)
        return self._truth

    # -- generating in a worker process ---------------------------------------------

    def _from_worker(self) -> Iterator[SimMessage | EventLogRow]:
        """The stream generated by a child process, received in batches.

        The child (``python -m codegen_forensics.simulate.worker``) runs this same
        generator (same seed, same bytes), places messages and builds the ground
        truth; this process only receives what its sink wants, so generation
        overlaps with sending, decoding or writing.
        """
        options = {
            "rows": self.want_rows,
            "messages": self.want_messages,
            "events": self.keep_events,
        }
        env = dict(os.environ)
        source = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (source, env.get("PYTHONPATH")) if p
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "codegen_forensics.simulate.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            process.stdin.write(
                pickle.dumps((self.config, self.catalog, self.window_start, options))
            )
            process.stdin.close()
            while True:
                kind, payload = _read_frame(process.stdout)
                if kind == "items":
                    progress, items = payload
                    for item in items:
                        if isinstance(item, SimMessage):
                            yield item
                        else:
                            yield dict(zip(_ROW_KEYS, item, strict=True))
                    if self.progress is not None:
                        self.progress(progress)
                elif kind == "end":
                    self._offsets, self._truth = payload
                    break
                else:
                    raise SimulationError(f"the simulation worker failed:\n{payload}")
        finally:
            process.stdout.close()
            if process.poll() is None:
                process.terminate()
            process.wait()


def _read_frame(stream: IO[bytes]) -> tuple[str, Any]:
    header = stream.read(8)
    if len(header) < 8:
        raise SimulationError(
            "the simulation worker process ended without finishing; see its "
            "error output above"
        )
    (size,) = struct.unpack("<Q", header)
    kind, payload = pickle.loads(stream.read(size))
    return kind, payload


def write_frame(stream: IO[bytes], kind: str, payload: Any) -> None:
    data = pickle.dumps((kind, payload), protocol=5)
    stream.write(struct.pack("<Q", len(data)))
    stream.write(data)


_WORKER_BATCH = 1000
_WORKER_MIN_SESSIONS = 1000


def _use_worker(config: SimulationConfig) -> bool:
    """A worker process pays off for large runs on more than one core."""
    return config.sessions >= _WORKER_MIN_SESSIONS and (os.cpu_count() or 1) > 1


def run_worker(source: IO[bytes], sink: IO[bytes]) -> None:
    """Generate the stream described on ``source``; write it to ``sink`` in frames."""
    try:
        config, catalog, window_start, options = pickle.loads(source.read())
        fixed = config.start is not None
        if not fixed:
            # The parent's window, even if midnight passed since it chose it.
            config = config.model_copy(update={"start": window_start})
        latest: list[Progress] = [Progress(0, config.sessions, 0, 0)]
        traffic = Traffic(
            config,
            catalog,
            parallel=False,
            progress=latest.append,
            rows=options["rows"],
            messages=options["messages"],
            events=options["events"],
        )
        batch: list[SimMessage | tuple[Any, ...]] = []
        for item in traffic:
            batch.append(item if isinstance(item, SimMessage) else tuple(item.values()))
            if len(batch) >= _WORKER_BATCH:
                write_frame(sink, "items", (latest[-1], batch))
                batch = []
        if batch:
            write_frame(sink, "items", (latest[-1], batch))
        truth = traffic.ground_truth()
        if not fixed:
            # The truth records the config as given, with the window left open.
            truth = truth.model_copy(update={"config": {**truth.config, "start": None}})
        write_frame(sink, "end", (traffic._offsets, truth))
    except Exception:
        write_frame(sink, "error", traceback.format_exc())
        raise
    finally:
        sink.flush()
