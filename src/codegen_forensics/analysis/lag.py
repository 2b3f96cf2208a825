"""Consumer lag per group and partition, in messages and in time.

- **Lag in messages**: the partition's end offset (high watermark when the snapshot
  started) minus the group's committed offset; a group that never committed lags by
  every message the partition still holds (high minus low watermark). Never below 0.
- **Lag in time**: among the messages the group has not consumed (offset at or after
  the committed one, below the end offset), the oldest by Kafka timestamp.
  ``age_s`` is the time from it to the snapshot (as the manifest records it, or
  ``as_of``); ``behind_head_s`` is the time from it to the newest message of the
  partition, which needs no clock. Both are null when nothing is unconsumed or the
  unconsumed messages are not in the snapshot.
"""

from __future__ import annotations

import logging
from datetime import datetime

import ibis
import pandas as pd

from codegen_forensics.analysis._util import one_of, sort_frame
from codegen_forensics.analysis.context import Analysis
from codegen_forensics.errors import InputError

__all__ = ["consumer_lag", "consumer_lag_by_group"]

logger = logging.getLogger(__name__)


def consumer_lag(a: Analysis, as_of: datetime | None = None) -> pd.DataFrame:
    """Lag of every (group, topic, partition) with a committed-offset record.

    Columns: group_id, topic, partition, committed_offset, low_watermark,
    end_offset, lag_messages, oldest_unconsumed_offset, oldest_unconsumed_time,
    age_s, behind_head_s. The largest lag first.
    """
    if as_of is not None and as_of.tzinfo is None:
        raise InputError(f"as_of={as_of.isoformat()!r} has no time zone; pass UTC")
    reference = as_of or a.snapshot_time
    o = a.consumer_offsets
    p = a.partitions
    m = a.all_messages
    # Only the topics with committed offsets are read (a null topic joins nothing).
    committed = a.execute(o.select("topic").distinct())["topic"].dropna()
    m = m.filter(one_of(m.topic, sorted(str(t) for t in committed.unique())))

    # The heads (one row per partition) are computed apart and passed back in:
    # referenced twice in one query, the messages became a common table
    # expression that DuckDB materialised, every message's columns at once.
    grouped = m.group_by(["topic", "partition"]).aggregate(
        head_offset=m.offset.max(), head_time=m.timestamp.max()
    )
    heads = ibis.memtable(a.execute(grouped), schema=grouped.schema())
    withp = o.left_join(p, [o.topic == p.topic, o.partition == p.partition])
    withp = withp.select(
        "group_id",
        "topic",
        "partition",
        "committed_offset",
        "low_watermark",
        "high_watermark",
    )
    base = withp.left_join(
        heads, [withp.topic == heads.topic, withp.partition == heads.partition]
    ).select(
        "group_id",
        "topic",
        "partition",
        "committed_offset",
        "low_watermark",
        "head_time",
        end_offset=ibis.coalesce(withp.high_watermark, heads.head_offset + 1),
    )
    start = ibis.coalesce(base.committed_offset, base.low_watermark, 0)
    base = base.mutate(
        _from=start,
        lag_messages=ibis.greatest(
            base.end_offset
            - ibis.coalesce(base.committed_offset, base.low_watermark, 0),
            0,
        ),
    )

    pending = base.join(
        m,
        [
            base.topic == m.topic,
            base.partition == m.partition,
            m.offset >= base._from,
            m.offset < base.end_offset,
        ],
    )
    oldest = pending.group_by(["group_id", "topic", "partition"]).aggregate(
        oldest_unconsumed_offset=pending.offset.min(),
        oldest_unconsumed_time=pending.timestamp.min(),
    )
    out = base.left_join(
        oldest,
        [
            base.group_id == oldest.group_id,
            base.topic == oldest.topic,
            base.partition == oldest.partition,
        ],
    ).select(
        "group_id",
        "topic",
        "partition",
        "committed_offset",
        "low_watermark",
        "end_offset",
        "lag_messages",
        "oldest_unconsumed_offset",
        "oldest_unconsumed_time",
        behind_head_us=base.head_time.delta(
            oldest.oldest_unconsumed_time, unit="microsecond"
        ),
    )
    frame = a.execute(out)
    frame["behind_head_s"] = frame.pop("behind_head_us").astype("float64") / 1e6
    frame.loc[frame["lag_messages"] == 0, ["behind_head_s"]] = None
    if reference is None:
        frame["age_s"] = pd.Series([None] * len(frame), dtype="float64")
    else:
        ref = pd.Timestamp(reference)
        frame["age_s"] = (ref - frame["oldest_unconsumed_time"]).dt.total_seconds()
        frame.loc[frame["lag_messages"] == 0, ["age_s"]] = None
    columns = [
        "group_id",
        "topic",
        "partition",
        "committed_offset",
        "low_watermark",
        "end_offset",
        "lag_messages",
        "oldest_unconsumed_offset",
        "oldest_unconsumed_time",
        "age_s",
        "behind_head_s",
    ]
    frame = sort_frame(
        frame[columns],
        ["lag_messages", "group_id", "topic", "partition"],
        [False, True, True, True],
    )
    return frame


def consumer_lag_by_group(lag: pd.DataFrame) -> pd.DataFrame:
    """Per group, from :func:`consumer_lag`: partitions, total and largest lag.

    Columns: group_id, partitions, lag_messages, max_lag_messages, max_age_s,
    max_behind_head_s.
    """
    if lag.empty:
        return pd.DataFrame(
            {
                c: pd.Series(dtype="object")
                for c in (
                    "group_id",
                    "partitions",
                    "lag_messages",
                    "max_lag_messages",
                    "max_age_s",
                    "max_behind_head_s",
                )
            }
        )
    grouped = lag.groupby("group_id", sort=True).agg(
        partitions=("partition", "size"),
        lag_messages=("lag_messages", "sum"),
        max_lag_messages=("lag_messages", "max"),
        max_age_s=("age_s", "max"),
        max_behind_head_s=("behind_head_s", "max"),
    )
    return grouped.reset_index()
