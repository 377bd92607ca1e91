"""datetime/seconds to google.protobuf Timestamp/Duration, shared by every servicer."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import duration_pb2, timestamp_pb2


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
