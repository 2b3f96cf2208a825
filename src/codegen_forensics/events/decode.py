"""Decoding Kafka message values into the columns of a snapshot row.

:func:`decode_message` is pure: given a topic name and a raw value it returns the
decoded columns of :data:`~codegen_forensics.snapshot.KAFKA_MESSAGES_SCHEMA` from
``category`` onward. Every value gets exactly one ``decode_status`` (see
:data:`~codegen_forensics.snapshot.DECODE_STATUSES`) and a ``decode_message`` saying
what was found; nothing is ever dropped, and the raw bytes stay in the row beside it.

:class:`MessageBatch` builds whole rows (raw Kafka fields plus decoded columns) into
Arrow record batches, so every writer of snapshots produces identical rows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError

from codegen_forensics.errors import InputError
from codegen_forensics.events.dlq import normalise_dlq
from codegen_forensics.events.schemas import (
    EVENT_MODELS,
    CodegenEvent,
    event_name_for,
    parse_event,
)
from codegen_forensics.events.topics import TopicName, TopicNameParser, parse_topic
from codegen_forensics.snapshot import KAFKA_MESSAGES_SCHEMA

__all__ = [
    "DECODED_COLUMNS",
    "ENVELOPE_KEYS",
    "MessageBatch",
    "MessageDecoder",
    "canonical_json",
    "decode_message",
    "message_row",
    "messages_table",
    "parse_canonical",
]

logger = logging.getLogger(__name__)

# The decoded columns, in schema order: everything from ``category`` onward.
DECODED_COLUMNS: tuple[str, ...] = tuple(
    KAFKA_MESSAGES_SCHEMA.names[KAFKA_MESSAGES_SCHEMA.names.index("category") :]
)

# Keys that mark an envelope around an event (besides ``payload``, which holds it).
ENVELOPE_KEYS: frozenset[str] = frozenset(
    {
        "envelope_version",
        "event_id",
        "event_type",
        "event_timestamp",
        "source_service",
        "partition_key",
    }
)

_INT32: Final = (-(2**31), 2**31 - 1)
_INT64: Final = (-(2**63), 2**63 - 1)
_KNOWN_VERSIONS: dict[str, list[str]] = {}
for _name, _version in EVENT_MODELS:
    _KNOWN_VERSIONS.setdefault(_name, []).append(_version)

_json_decoder = json.JSONDecoder(parse_constant=lambda name: _reject_constant(name))
_json_encoder = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
# For the rare value holding a lone surrogate (JSON allows "\ud800"), which has no
# UTF-8 form: its text keeps every character beyond ASCII as an escape.
_ascii_json_encoder = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# orjson reads and writes JSON several times faster than the json module, but not
# always identically: it reads integers beyond 64 bits as floats, and writes floats
# below 1e-4 in magnitude without an exponent (0.00001 for 1e-05). Floats of zero or
# from 1e-4 up to 1e16 come out the same from both (checked over millions of random
# values), and integers beyond 64 bits read as floats of 9.2e18 or more; a document
# with any other float is read and written again by the json module, the reference.
_FLOAT_LOW: Final = 1e-4
_FLOAT_HIGH: Final = 1e16


_PLAIN: Final = frozenset({str, int, bool, type(None)})


def _floats_agree(value: Any) -> bool:
    """Whether orjson writes every float in ``value`` as the json module does."""
    kind = type(value)
    if kind is dict:
        items: Iterable[Any] = value.values()
    elif kind is list:
        items = value
    else:
        return (
            kind is not float or value == 0.0 or _FLOAT_LOW <= abs(value) < _FLOAT_HIGH
        )
    plain = _PLAIN
    for item in items:
        if type(item) not in plain and not _floats_agree(item):
            return False
    return True


def parse_canonical(text: bytes | str) -> tuple[Any, str] | None:
    """JSON text parsed, with its canonical text, or ``None`` to use the slow path.

    Quick for the common case; ``None`` whenever the text is not valid JSON or the
    result could differ from ``json.loads`` followed by :func:`canonical_json`, so a
    caller falls back to those and gets their answer and their error messages.
    """
    try:
        data = orjson.loads(text)
    except ValueError:
        # Not JSON, or JSON orjson refuses (NaN, 1e400, lone surrogates, a BOM,
        # deep nesting): the json module decides.
        return None
    if not _floats_agree(data):
        return None
    try:
        canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return None
    return data, canonical.decode("utf-8")


def canonical_json(value: Any) -> str:
    """JSON text with sorted keys, no spaces and characters kept as they are.

    The one canonical form of payloads in snapshots, for Kafka values and Postgres
    JSONB alike, so equal documents compare equal as text. A value holding a lone
    surrogate, which UTF-8 cannot carry, has its non-ASCII characters escaped.
    """
    text: str = _json_encoder.encode(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return str(_ascii_json_encoder.encode(value))
    return text


def _loads(text: str) -> Any:
    return _json_decoder.decode(text)


def _empty() -> dict[str, Any]:
    return dict.fromkeys(DECODED_COLUMNS)


@dataclass(frozen=True)
class _TopicInfo:
    name: TopicName
    event_name: str | None
    # The schema versions of the topic's event, and the topic's decoded columns.
    models: dict[str, type[CodegenEvent]] = field(default_factory=dict)
    prefix: tuple[str, str | None, int | None] = ("unknown", None, None)


# Decoded columns after the topic's own (category, operation, topic_version) in a
# valid event: decode_status ... status, then the nine dlq_* columns, all null.
_EVENT_COLUMNS: Final = (
    "decode_status",
    "decode_message",
    "payload",
    "event_name",
    "schema_version",
    "session_id",
    "correlation_id",
    "event_timestamp",
    "processing_time_ms",
    "status",
)
_NO_DLQ: Final = (None,) * 9
if DECODED_COLUMNS[3:13] != _EVENT_COLUMNS or len(DECODED_COLUMNS) != 22:
    raise RuntimeError("KAFKA_MESSAGES_SCHEMA changed; update the decoder's fast path")


class MessageDecoder:
    """Decodes values of many topics, remembering what each topic name says.

    :func:`decode_message` uses a shared instance; a loader keeps its own so a
    user's extra naming schemes apply.
    """

    def __init__(
        self, parser: TopicNameParser | None = None, *, fast: bool = True
    ) -> None:
        # fast=False decodes every value the long way; tests compare the two.
        self._parser = parser
        self._fast = fast
        self._topics: dict[str, _TopicInfo] = {}

    def topic_info(self, topic: str) -> TopicName:
        return self._info(topic).name

    def _info(self, topic: str) -> _TopicInfo:
        info = self._topics.get(topic)
        if info is None:
            name = (
                self._parser.parse(topic)
                if self._parser is not None
                else parse_topic(topic)
            )
            event_name = None
            if name.category in ("request", "response", "status") and name.operation:
                event_name = event_name_for(name.category, name.operation)
            models = {
                version: model
                for (event, version), model in EVENT_MODELS.items()
                if event == event_name
            }
            prefix = (name.category, name.operation, name.version)
            info = _TopicInfo(name, event_name, models, prefix)
            self._topics[topic] = info
        return info

    def decode(self, topic: str, value: bytes | None) -> dict[str, Any]:
        """The decoded columns for one value of ``topic``."""
        return dict(zip(DECODED_COLUMNS, self.decode_row(topic, value), strict=True))

    def decode_row(self, topic: str, value: bytes | None) -> tuple[Any, ...]:
        """The decoded columns for one value of ``topic``, as a tuple in order."""
        info = self._info(topic)
        if self._fast and info.models and value is not None:
            row = _decode_valid_event(info, value)
            if row is not None:
                return row
        return tuple(self._decode(info, value).values())

    def _decode(self, info: _TopicInfo, value: bytes | None) -> dict[str, Any]:
        name = info.name
        out = _empty()
        out["category"] = name.category
        out["operation"] = name.operation
        out["topic_version"] = name.version

        # Tombstones, bytes that are not text, text that is not JSON.
        if value is None:
            out["decode_status"] = "tombstone"
            out["decode_message"] = "null value (tombstone)"
            return out
        is_dlq = name.category == "dlq"
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            out["decode_status"] = "not_utf8"
            out["decode_message"] = (
                f"value is not UTF-8: {exc.reason} at byte {exc.start}"
            )
            if is_dlq:
                out["dlq_shape"] = "unknown"
            return out
        try:
            data = _loads(text)
        except ValueError as exc:
            out["decode_status"] = "not_json"
            out["decode_message"] = f"value is not JSON: {_short(str(exc))}"
            if is_dlq:
                out["dlq_shape"] = "unknown"
            return out

        # JSON whose value is a string holding JSON again.
        notes: list[str] = []
        double = False
        if isinstance(data, str):
            inner = _try_loads(data)
            if isinstance(inner, dict | list):
                data = inner
                double = True
                notes.append("JSON encoded twice; unwrapped")

        if is_dlq:
            return self._decode_dlq(out, data, notes)
        if name.category == "unknown" or info.event_name is None:
            return self._decode_unparsed(out, name, data, notes)
        return self._decode_event(out, info.event_name, data, notes, double)

    # Dead-letter topics: every shape normalised into the dlq_* columns.
    def _decode_dlq(
        self, out: dict[str, Any], data: Any, notes: list[str]
    ) -> dict[str, Any]:
        record = normalise_dlq(data)
        out["decode_status"] = "dlq"
        out["payload"] = _canonical_or_none(data)
        out["dlq_shape"] = record.shape
        out["dlq_source_topic"] = record.source_topic
        out["dlq_consumer_group"] = record.consumer_group
        out["dlq_error_type"] = record.error_type
        out["dlq_error_message"] = record.error_message
        out["dlq_stack_trace"] = record.stack_trace
        out["dlq_retry_count"] = _bounded(record.retry_count, _INT32)
        out["dlq_max_retries"] = _bounded(record.max_retries, _INT32)
        out["dlq_failure_time"] = record.failure_time
        out["session_id"] = record.session_id
        out["correlation_id"] = record.correlation_id
        original = record.original_event
        if original is not None:
            out["schema_version"] = _as_text(original.get("schema_version"))
            out["event_timestamp"] = _read_time(original.get("timestamp"))[0]
        if record.source_topic:
            source = self._info(record.source_topic)
            out["event_name"] = source.event_name
        if out["event_name"] is None and original is not None:
            out["event_name"] = _as_text(original.get("event_type"))
        if record.shape == "unknown":
            kind = type(data).__name__ if not isinstance(data, dict) else "object"
            notes.append(f"dead-letter message of unknown shape ({kind}); kept raw")
        else:
            notes.append(f"dead-letter message, {record.shape} shape")
        out["decode_message"] = "; ".join(notes)
        return out

    # Topics that name no event we have a schema for: payload and ids where readable.
    def _decode_unparsed(
        self, out: dict[str, Any], name: TopicName, data: Any, notes: list[str]
    ) -> dict[str, Any]:
        out["decode_status"] = "unparsed_topic"
        out["payload"] = _canonical_or_none(data)
        if isinstance(data, dict):
            _fill_ids(out, data)
        if name.category == "unknown":
            notes.append("topic name matches no known scheme; value kept raw")
        else:
            notes.append(
                f"no event schema for category={name.category} "
                f"operation={name.operation}; value kept raw"
            )
        out["decode_message"] = "; ".join(notes)
        return out

    # Event topics: unwrap, pick the schema version, validate.
    def _decode_event(
        self,
        out: dict[str, Any],
        event_name: str,
        data: Any,
        notes: list[str],
        double: bool,
    ) -> dict[str, Any]:
        out["event_name"] = event_name
        envelope: dict[str, Any] | None = None
        if isinstance(data, dict) and _is_envelope(data):
            envelope = data
            inner = data["payload"]
            if isinstance(inner, str):
                loaded = _try_loads(inner)
                if isinstance(loaded, dict):
                    inner = loaded
                    notes.append("envelope payload was JSON text; unwrapped")
            data = inner
            notes.append("event under an envelope's payload; unwrapped")
        out["payload"] = _canonical_or_none(data)

        if not isinstance(data, dict):
            if envelope is not None:
                _fill_ids(out, envelope)
            notes.append(f"{event_name}: expected a JSON object, got {_kind(data)}")
            out["decode_status"] = "schema_invalid"
            out["decode_message"] = "; ".join(notes)
            return out

        version = data.get("schema_version", "1.0")
        if not isinstance(version, str) or (event_name, version) not in EVENT_MODELS:
            # Not validated: read what we can leniently.
            _fill_ids(out, data)
            if envelope is not None:
                _fill_missing_ids(out, envelope)
        if not isinstance(version, str):
            notes.append(
                f"{event_name}.schema_version: must be a string (got {version!r})"
            )
            out["decode_status"] = "schema_invalid"
            out["decode_message"] = "; ".join(notes)
            return out
        out["schema_version"] = version

        # A timestamp without a time zone is read as UTC and flagged. Text ending
        # in Z has a zone, so the common case skips parsing here.
        raw_time = data.get("timestamp")
        timestamp, naive = None, False
        if isinstance(raw_time, str) and not raw_time.endswith("Z"):
            timestamp, naive = _read_time(raw_time)
        to_validate = data
        if naive and timestamp is not None:
            to_validate = {**data, "timestamp": timestamp.isoformat()}

        if (event_name, version) not in EVENT_MODELS:
            known = ", ".join(_KNOWN_VERSIONS.get(event_name, []))
            notes.append(
                f"{event_name}.schema_version {version!r} is not one we have a "
                f"schema for (known: {known}); payload kept unvalidated"
            )
            if naive:
                notes.append("timestamp has no time zone; read as UTC")
            out["decode_status"] = "unknown_schema_version"
            out["decode_message"] = "; ".join(notes)
            return out

        try:
            event = parse_event(event_name, to_validate)
        except InputError as exc:
            _fill_ids(out, data)
            if envelope is not None:
                _fill_missing_ids(out, envelope)
            if naive:
                notes.append("timestamp has no time zone; read as UTC")
            notes.append(str(exc))
            out["decode_status"] = "schema_invalid"
            out["decode_message"] = "; ".join(notes)
            return out

        _fill_from_event(out, event, data)
        if envelope is not None:
            _fill_missing_ids(out, envelope)
        if naive:
            notes.append(
                f"{event_name}.timestamp {data.get('timestamp')!r} has no time zone; "
                "read as UTC"
            )
            out["decode_status"] = "naive_timestamp"
        elif double:
            out["decode_status"] = "double_encoded"
        elif envelope is not None:
            out["decode_status"] = "enveloped"
        else:
            out["decode_status"] = "ok"
        out["decode_message"] = "; ".join(notes) if notes else None
        return out


def _decode_valid_event(info: _TopicInfo, value: bytes) -> tuple[Any, ...] | None:
    """The decoded row of a plain event that validates, or ``None``.

    This is the common case, decoded with the fewest steps. Anything else (not
    JSON, twice encoded, under an envelope, an unknown version, a naive timestamp,
    invalid) returns ``None``, and the full decoder, which handles every case,
    gives the row; where both apply they give the same row, which tests check.
    """
    parsed = parse_canonical(value)
    if parsed is None:
        return None
    data, payload = parsed
    if type(data) is not dict or ("payload" in data and _is_envelope(data)):
        return None
    version = data.get("schema_version", "1.0")
    if type(version) is not str:
        return None
    model = info.models.get(version)
    if model is None:
        return None
    raw_time = data.get("timestamp")
    if (
        isinstance(raw_time, str)
        and not raw_time.endswith("Z")
        and _read_time(raw_time)[1]
    ):
        return None
    try:
        # What parse_event does once it has found the model.
        event = model.__pydantic_validator__.validate_python(data)
    except ValidationError:
        return None
    fields = event.__dict__
    correlation = fields.get("correlation_id")
    status = fields.get("status")
    return (
        *info.prefix,
        "ok",
        None,
        payload,
        info.event_name,
        fields["schema_version"],
        _uuid_text(data.get("session_id"), fields["session_id"]),
        None
        if correlation is None
        else _uuid_text(data.get("correlation_id"), correlation),
        fields["timestamp"],
        _bounded(fields.get("processing_time_ms"), _INT64),
        None if status is None else str(status.value),
        *_NO_DLQ,
    )


def _try_loads(text: str) -> Any:
    try:
        return _loads(text)
    except ValueError:
        return None


def _is_envelope(data: dict[str, Any]) -> bool:
    return "payload" in data and not ENVELOPE_KEYS.isdisjoint(data)


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string"


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _canonical_or_none(value: Any) -> str | None:
    try:
        return canonical_json(value)
    except ValueError:
        return None


def _fill_from_event(
    out: dict[str, Any], event: CodegenEvent, data: Mapping[str, Any]
) -> None:
    # Validated fields, read from the model's __dict__: pydantic's attribute lookup
    # of a field the model lacks is slow, and this runs once per message.
    fields = event.__dict__
    out["session_id"] = _uuid_text(data.get("session_id"), fields["session_id"])
    correlation = fields.get("correlation_id")
    out["correlation_id"] = (
        None
        if correlation is None
        else _uuid_text(data.get("correlation_id"), correlation)
    )
    out["event_timestamp"] = fields["timestamp"]
    out["schema_version"] = fields["schema_version"]
    out["processing_time_ms"] = _bounded(fields.get("processing_time_ms"), _INT64)
    status = fields.get("status")
    out["status"] = None if status is None else str(status.value)


def _fill_ids(out: dict[str, Any], data: Mapping[str, Any]) -> None:
    """Ids, time and status read leniently from an event that may not validate."""
    out["session_id"] = _as_uuid(data.get("session_id"))
    out["correlation_id"] = _as_uuid(data.get("correlation_id"))
    out["event_timestamp"] = _read_time(data.get("timestamp"))[0]
    out["schema_version"] = _as_text(data.get("schema_version"))
    processing = data.get("processing_time_ms")
    if isinstance(processing, int) and not isinstance(processing, bool):
        out["processing_time_ms"] = _bounded(processing, _INT64)
    status = data.get("status")
    out["status"] = status if isinstance(status, str) else None


def _fill_missing_ids(out: dict[str, Any], envelope: Mapping[str, Any]) -> None:
    if out["correlation_id"] is None:
        out["correlation_id"] = _as_uuid(envelope.get("correlation_id"))
    if out["session_id"] is None:
        out["session_id"] = _as_uuid(envelope.get("session_id"))
    if out["event_timestamp"] is None:
        out["event_timestamp"] = _read_time(envelope.get("event_timestamp"))[0]


def _uuid_text(raw: Any, parsed: UUID) -> str:
    """Canonical text of a validated UUID: the input itself when already canonical."""
    if (
        isinstance(raw, str)
        and len(raw) == 36
        and raw[8] == raw[13] == raw[18] == raw[23] == "-"
        and raw.islower()
    ):
        return raw
    return str(parsed)


def _as_uuid(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return str(UUID(value))
    except ValueError:
        return None


def _as_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _bounded(value: int | None, bounds: tuple[int, int]) -> int | None:
    if value is None or not bounds[0] <= value <= bounds[1]:
        return None
    return value


def _read_time(value: Any) -> tuple[datetime | None, bool]:
    """An aware UTC datetime from ISO 8601 text, and whether the text was naive."""
    if not isinstance(value, str):
        return None, False
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None, False
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC), True
    try:
        return parsed.astimezone(UTC), False
    except OverflowError:
        return None, False


_DEFAULT_DECODER = MessageDecoder()


def decode_message(
    topic: str, value: bytes | None, *, parser: TopicNameParser | None = None
) -> dict[str, Any]:
    """Decode one message value of ``topic`` into the decoded snapshot columns.

    The payload schema comes from the topic's (category, operation); ``parser``
    adds naming schemes beyond the default ones. The result has every column of
    :data:`DECODED_COLUMNS`, in order.
    """
    decoder = _DEFAULT_DECODER if parser is None else MessageDecoder(parser)
    return decoder.decode(topic, value)


# Kafka's timestamp types, as confluent-kafka numbers them.
_TIMESTAMP_TYPES: dict[int, str | None] = {
    0: None,
    1: "create_time",
    2: "log_append_time",
}
_TYPE_NAMES = frozenset({"create_time", "log_append_time"})

Header = tuple[str, bytes | None]


class MessageBatch:
    """Accumulates whole Kafka message rows column by column.

    ``append`` takes the raw fields of one message, decodes its value and keeps the
    row; ``extend`` does the same for many messages of one partition at once, which
    is quicker; ``to_batch`` returns the rows as one record batch of
    :data:`KAFKA_MESSAGES_SCHEMA` and starts afresh. Timestamps are epoch
    milliseconds or aware datetimes; ``timestamp_type`` is confluent-kafka's number
    (0 = none, 1 = create time, 2 = log-append time) or the schema's name. A missing
    timestamp is stored as null.
    """

    def __init__(self, parser: TopicNameParser | None = None) -> None:
        self._decoder = MessageDecoder(parser)
        self._reset()

    def _reset(self) -> None:
        self._topics: list[str] = []
        self._partitions: list[int] = []
        self._offsets: list[int] = []
        self._millis: list[int | None] = []
        self._kinds: list[str | None] = []
        self._keys: list[bytes | None] = []
        self._values: list[bytes | None] = []
        self._headers: list[Sequence[Header]] = []
        self._decoded: list[tuple[Any, ...]] = []
        self.value_bytes = 0

    def __len__(self) -> int:
        return len(self._decoded)

    @property
    def decoder(self) -> MessageDecoder:
        return self._decoder

    def append(
        self,
        topic: str,
        partition: int,
        offset: int,
        value: bytes | None,
        *,
        key: bytes | None = None,
        timestamp: int | datetime | None = None,
        timestamp_type: int | str | None = None,
        headers: Sequence[Header] | None = None,
    ) -> dict[str, Any]:
        """Add one message; returns its decoded columns."""
        millis, kind = _timestamp(timestamp, timestamp_type)
        self._topics.append(topic)
        self._partitions.append(partition)
        self._offsets.append(offset)
        self._millis.append(millis)
        self._kinds.append(kind)
        self._keys.append(key)
        self._values.append(value)
        self._headers.append(list(headers) if headers else [])
        if value is not None:
            self.value_bytes += len(value)
        row = self._decoder.decode_row(topic, value)
        self._decoded.append(row)
        return dict(zip(DECODED_COLUMNS, row, strict=True))

    def extend(
        self,
        topic: str,
        partition: int,
        offsets: Sequence[int],
        values: Sequence[bytes | None],
        *,
        keys: Sequence[bytes | None],
        timestamps: Sequence[int | datetime | None],
        timestamp_types: Sequence[int | str | None],
        headers: Sequence[Sequence[Header] | None],
    ) -> None:
        """Add messages of one partition, given field by field, in offset order."""
        count = len(offsets)
        if not (
            len(values)
            == len(keys)
            == len(timestamps)
            == len(timestamp_types)
            == len(headers)
            == count
        ):
            raise InputError(
                f"extend got {count} offsets but {len(values)} values, {len(keys)} "
                f"keys, {len(timestamps)} timestamps, {len(timestamp_types)} "
                f"timestamp types and {len(headers)} header lists; give one each"
            )
        self._topics.extend([topic] * count)
        self._partitions.extend([partition] * count)
        self._offsets.extend(offsets)
        types = _TIMESTAMP_TYPES
        for millis, kind in zip(timestamps, timestamp_types, strict=True):
            if type(kind) is int and type(millis) is int and millis >= 0:
                # The client's own numbers: the common case, without the checks.
                name = types.get(kind)
                self._millis.append(None if name is None else millis)
                self._kinds.append(name)
            else:
                normalised = _timestamp(millis, kind)
                self._millis.append(normalised[0])
                self._kinds.append(normalised[1])
        self._keys.extend(keys)
        self._values.extend(values)
        self._headers.extend([list(h) if h else [] for h in headers])
        self.value_bytes += sum(len(v) for v in values if v is not None)
        decode = self._decoder.decode_row
        self._decoded.extend([decode(topic, value) for value in values])

    def to_batch(self) -> pa.RecordBatch:
        """The rows so far as a record batch; the batch is emptied."""
        schema = KAFKA_MESSAGES_SCHEMA
        millis = pa.array(self._millis, type=pa.int64())
        keys = pa.array(self._keys, type=pa.binary())
        values = pa.array(self._values, type=pa.binary())
        arrays: list[pa.Array] = [
            pa.array(self._topics, type=pa.string()),
            pa.array(self._partitions, type=pa.int32()),
            pa.array(self._offsets, type=pa.int64()),
            millis.cast(pa.timestamp("ms", tz="UTC")).cast(schema.field(3).type),
            pa.array(self._kinds, type=pa.string()),
            keys,
            values,
            pa.array(self._headers, type=schema.field(7).type),
            pc.binary_length(keys).cast(pa.int32()),
            pc.binary_length(values).cast(pa.int32()),
        ]
        # Decoded rows are tuples in column order: transposed, one array each.
        columns = (
            list(zip(*self._decoded, strict=True))
            if self._decoded
            else [()] * len(DECODED_COLUMNS)
        )
        offset = len(arrays)
        for index, values_of in enumerate(columns):
            arrays.append(pa.array(values_of, type=schema.field(offset + index).type))
        batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
        self._reset()
        return batch


def _timestamp(
    timestamp: int | datetime | None, timestamp_type: int | str | None
) -> tuple[int | None, str | None]:
    if isinstance(timestamp_type, int):
        kind = _TIMESTAMP_TYPES.get(timestamp_type)
    elif timestamp_type is None or timestamp_type in _TYPE_NAMES:
        kind = timestamp_type
    else:
        raise InputError(
            f"timestamp_type {timestamp_type!r} is not known; expected 0, 1, 2, "
            "'create_time', 'log_append_time' or None"
        )
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            raise InputError(
                f"message timestamp {timestamp.isoformat()!r} has no time zone"
            )
        millis: int | None = int(timestamp.timestamp() * 1000)
    else:
        millis = timestamp
    if (
        millis is None
        or millis < 0
        or (isinstance(timestamp_type, int) and kind is None)
    ):
        return None, None
    return millis, kind or "create_time"


def message_row(
    topic: str,
    partition: int,
    offset: int,
    value: bytes | None,
    *,
    key: bytes | None = None,
    timestamp: int | datetime | None = None,
    timestamp_type: int | str | None = None,
    headers: Sequence[Header] | None = None,
    parser: TopicNameParser | None = None,
) -> dict[str, Any]:
    """One full row of :data:`KAFKA_MESSAGES_SCHEMA` as a dict (for small inputs)."""
    batch = MessageBatch(parser)
    batch.append(
        topic,
        partition,
        offset,
        value,
        key=key,
        timestamp=timestamp,
        timestamp_type=timestamp_type,
        headers=headers,
    )
    row: dict[str, Any] = batch.to_batch().to_pylist()[0]
    return row


def messages_table(
    messages: Iterable[Mapping[str, Any]], *, parser: TopicNameParser | None = None
) -> pa.Table:
    """A table of :data:`KAFKA_MESSAGES_SCHEMA` from raw message dicts.

    Each dict has ``topic``, ``partition``, ``offset`` and ``value``, and optionally
    ``key``, ``timestamp``, ``timestamp_type`` and ``headers``.
    """
    batch = MessageBatch(parser)
    for message in messages:
        batch.append(
            message["topic"],
            message["partition"],
            message["offset"],
            message["value"],
            key=message.get("key"),
            timestamp=message.get("timestamp"),
            timestamp_type=message.get("timestamp_type"),
            headers=message.get("headers"),
        )
    return pa.Table.from_batches([batch.to_batch()], schema=KAFKA_MESSAGES_SCHEMA)
