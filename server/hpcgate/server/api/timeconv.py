"""Conversions between datetimes/seconds and google.protobuf Timestamp/Duration, both ways.

Reading a request is checked: protobuf's own ToDatetime/ToTimedelta raise ValueError or
OverflowError (or silently accept) values outside the ranges the well-known types define,
and an exception escaping a servicer is INTERNAL. `read_timestamp` and `read_duration`
record such a value as a field violation instead, so the client gets INVALID_ARGUMENT
naming the field.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.message import Message

from hpcgate.server.api.errors import FieldViolations

# The valid ranges as google/protobuf/timestamp.proto and duration.proto define them.
MIN_TIMESTAMP_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
MAX_TIMESTAMP_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
MAX_DURATION_SECONDS = 315_576_000_000  # about 10,000 years, either sign
MAX_NANOS = 999_999_999


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp, or None (field left unset) for no time."""
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def duration(seconds: float | None) -> duration_pb2.Duration | None:
    """A Duration, or None (field left unset) for unknown or unlimited."""
    if seconds is None:
        return None
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def timestamp_problem(value: timestamp_pb2.Timestamp) -> str | None:
    """What makes `value` an invalid Timestamp, or None when it is valid."""
    if not MIN_TIMESTAMP_SECONDS <= value.seconds <= MAX_TIMESTAMP_SECONDS:
        return "must be a time between the years 1 and 9999 (seconds out of range)"
    if not 0 <= value.nanos <= MAX_NANOS:
        return f"nanos must be between 0 and {MAX_NANOS}"
    return None


def duration_problem(value: duration_pb2.Duration) -> str | None:
    """What makes `value` an invalid Duration, or None when it is valid."""
    if abs(value.seconds) > MAX_DURATION_SECONDS:
        return f"must be at most {MAX_DURATION_SECONDS} seconds either way (about 10,000 years)"
    if abs(value.nanos) > MAX_NANOS:
        return f"nanos must be between -{MAX_NANOS} and {MAX_NANOS}"
    if (value.seconds < 0 < value.nanos) or (value.nanos < 0 < value.seconds):
        return "seconds and nanos must have the same sign"
    return None


def read_timestamp(
    message: Message, field: str, errors: FieldViolations, name: str = ""
) -> datetime | None:
    """`message.field` as an aware UTC datetime; None when unset or invalid (then the
    violation is added to `errors` under `name`, by default `field`)."""
    if not message.HasField(field):
        return None
    value: timestamp_pb2.Timestamp = getattr(message, field)
    problem = timestamp_problem(value)
    if problem is not None:
        errors.add(name or field, problem)
        return None
    return value.ToDatetime(UTC)


def read_duration(
    message: Message, field: str, errors: FieldViolations, name: str = ""
) -> timedelta | None:
    """`message.field` as a timedelta; None when unset or invalid (then the violation is
    added to `errors` under `name`, by default `field`)."""
    if not message.HasField(field):
        return None
    value: duration_pb2.Duration = getattr(message, field)
    problem = duration_problem(value)
    if problem is not None:
        errors.add(name or field, problem)
        return None
    return value.ToTimedelta()
