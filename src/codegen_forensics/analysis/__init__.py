"""Measures over a snapshot: functions from snapshot tables to result tables.

Open a snapshot with :func:`open_analysis`, then call any measure with it; or let
:func:`weekly_review` compute every table of the weekly review at once. Each measure's
docstring gives its definition, and says where it differs from the system's tracer.
"""

from codegen_forensics.analysis.compression import (
    compression_by_partition,
    compression_ratios,
)
from codegen_forensics.analysis.context import Analysis, normalise_id, open_analysis
from codegen_forensics.analysis.dlq import (
    DLQOverrides,
    MergeRule,
    SplitRule,
    dlq_breakdown,
    dlq_counts,
    dlq_diff,
    dlq_groups,
    dlq_rate,
    dlq_template_map,
    load_overrides,
)
from codegen_forensics.analysis.lag import consumer_lag, consumer_lag_by_group
from codegen_forensics.analysis.latency import (
    bottleneck_hours,
    bottleneck_topics,
    orphan_responses,
    producer_latency,
    request_response,
    request_response_summary,
    response_time_summary,
)
from codegen_forensics.analysis.masking import group_id, mask_message
from codegen_forensics.analysis.poison import decode_status_counts, poison_messages
from codegen_forensics.analysis.sessions import (
    session_duration_quantiles,
    session_durations,
    session_summary,
    unfinished_sessions,
)
from codegen_forensics.analysis.targets import Thresholds, load_thresholds, targets
from codegen_forensics.analysis.throughput import throughput, throughput_series
from codegen_forensics.analysis.trace import (
    trace,
    tracer_correlated_events,
    tracer_session_metrics,
    tracer_session_trace,
)
from codegen_forensics.analysis.weekly import weekly_review

__all__ = [
    "Analysis",
    "DLQOverrides",
    "MergeRule",
    "SplitRule",
    "Thresholds",
    "bottleneck_hours",
    "bottleneck_topics",
    "compression_by_partition",
    "compression_ratios",
    "consumer_lag",
    "consumer_lag_by_group",
    "decode_status_counts",
    "dlq_breakdown",
    "dlq_counts",
    "dlq_diff",
    "dlq_groups",
    "dlq_rate",
    "dlq_template_map",
    "group_id",
    "load_overrides",
    "load_thresholds",
    "mask_message",
    "normalise_id",
    "open_analysis",
    "orphan_responses",
    "poison_messages",
    "producer_latency",
    "request_response",
    "request_response_summary",
    "response_time_summary",
    "session_duration_quantiles",
    "session_durations",
    "session_summary",
    "targets",
    "throughput",
    "throughput_series",
    "trace",
    "tracer_correlated_events",
    "tracer_session_metrics",
    "tracer_session_trace",
    "unfinished_sessions",
    "weekly_review",
]
