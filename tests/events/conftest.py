"""One event of each of the nine schemas, with fixed ids and times, for event tests."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from uuid import UUID

import pytest
from confluent_kafka.admin import AdminClient

from codegen_forensics.events.provision import provision_topics
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
from codegen_forensics.events.topics import TopicCatalog
from codegen_forensics.settings import KafkaSettings

SESSION = UUID("123e4567-e89b-12d3-a456-426614174000")
CORRELATION = UUID("456e7890-e89b-12d3-a456-426614174000")
# A time zone other than UTC, so conversions are exercised: 12:30:00.250 +02:00 is
# 10:30:00.250 UTC.
PLUS_TWO = timezone(timedelta(hours=2))
BASE_TIME = datetime(2025, 10, 14, 12, 30, 0, 250000, tzinfo=PLUS_TWO)


def nine_events(
    session: UUID = SESSION, correlation: UUID = CORRELATION
) -> list[CodegenEvent]:
    """One event of each schema, one second apart, in the order a session sends them."""

    def at(seconds: int) -> datetime:
        return BASE_TIME + timedelta(seconds=seconds)

    common = {"session_id": session, "correlation_id": correlation}
    return [
        CodegenAnalysisRequest(
            **common,
            prd_content="# User Authentication Service\n\n## Requirements\n...",
            analysis_type="full",
            workspace_context={"language": "python", "framework": "onex"},
            timestamp=at(0),
        ),
        CodegenAnalysisResponse(
            **common,
            analysis_result={"requirements": ["JWT tokens"], "complexity": "medium"},
            confidence=0.92,
            processing_time_ms=1250,
            timestamp=at(1),
        ),
        CodegenValidationRequest(
            **common,
            code_content="class NodeUserAuthEffect(NodeEffect): ...",
            node_type="effect",
            contracts=[{"contract_type": "effect", "name": "UserAuthContract"}],
            validation_type="compliance",
            timestamp=at(2),
        ),
        CodegenValidationResponse(
            **common,
            validation_result={"errors": [], "warnings": ["add a docstring"]},
            quality_score=0.87,
            onex_compliance_score=0.95,
            is_valid=True,
            processing_time_ms=450,
            timestamp=at(3),
        ),
        CodegenPatternRequest(
            **common,
            node_description="Database write with transaction support",
            node_type="effect",
            limit=5,
            timestamp=at(4),
        ),
        CodegenPatternResponse(
            **common,
            pattern_result=[{"node_name": "NodeDatabaseWriterEffect", "score": 0.94}],
            total_matches=12,
            processing_time_ms=850,
            timestamp=at(5),
        ),
        CodegenMixinRequest(
            **common,
            requirements=["Input validation", "Caching support"],
            node_type="compute",
            existing_mixins=["LoggingMixin"],
            timestamp=at(6),
        ),
        CodegenMixinResponse(
            **common,
            mixin_recommendations=[{"mixin_name": "ValidationMixin", "confidence": 1}],
            total_recommendations=1,
            processing_time_ms=320,
            timestamp=at(7),
        ),
        CodegenStatusEvent(
            session_id=session,
            status="analyzing",
            progress_percentage=25.0,
            message="Analyzing PRD for node requirements",
            metadata={"current_step": "prd_analysis"},
            timestamp=at(8),
        ),
    ]


@pytest.fixture
def events() -> list[CodegenEvent]:
    return nine_events()


@pytest.fixture
def make_events() -> Callable[..., list[CodegenEvent]]:
    """``make_events(session, correlation)``: the nine events for another session."""
    return nine_events


@pytest.fixture
def provisioned_catalog(
    kafka_settings: KafkaSettings, kafka_admin: AdminClient, unique_prefix: str
) -> Iterator[TopicCatalog]:
    """The 13 catalog topics under a prefix of their own; deleted afterwards."""
    catalog = TopicCatalog(prefix=unique_prefix)
    provision_topics(kafka_settings, catalog)
    yield catalog
    _delete(kafka_admin, catalog.names())


def _delete(admin: AdminClient, names: list[str]) -> None:
    futures = admin.delete_topics(names, operation_timeout=30)
    for future in futures.values():
        # Cleanup must not hide the test's own result.
        with contextlib.suppress(Exception):
            future.result(timeout=30)


@pytest.fixture
def delete_topics(kafka_admin: AdminClient) -> Iterator[Callable[[list[str]], None]]:
    """Registers topic names to delete after the test."""
    names: list[str] = []
    yield names.extend
    if names:
        _delete(kafka_admin, names)
