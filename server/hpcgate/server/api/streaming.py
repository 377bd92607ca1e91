"""What every server stream shares: the heartbeat a client may ask for, the heartbeat
message, and ending with UNAVAILABLE when the server starts shutting down."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc

from hpcgate.server.api.errors import ApiError, FieldViolations
from hpcgate.server.api.timeconv import read_duration, timestamp
from hpcgate.v1 import common_pb2

T = TypeVar("T")
MIN_HEARTBEAT, MAX_HEARTBEAT = 1.0, 300.0  # seconds; documented in the protos


def heartbeat_interval(request: Any, errors: FieldViolations, default: float) -> float:
    """The request's `heartbeat_interval` clamped to 1-300 s, or `default` when unset; an
    out-of-range Duration is a violation in `errors`."""
    asked = read_duration(request, "heartbeat_interval", errors)
    if asked is None:
        return default
    return min(max(asked.total_seconds(), MIN_HEARTBEAT), MAX_HEARTBEAT)


def heartbeat() -> common_pb2.Heartbeat:
    return common_pb2.Heartbeat(time=timestamp(datetime.now(UTC)))


async def unless_draining(step: Awaitable[T], draining: asyncio.Event, message: str) -> T:
    """`step`'s result, unless the server starts draining first: then the step is cancelled
    and the stream ends UNAVAILABLE with `message` (which says how to reconnect)."""
    getter = asyncio.ensure_future(step)
    drain = asyncio.ensure_future(draining.wait())
    try:
        done, _ = await asyncio.wait({getter, drain}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when the stream itself is cancelled: neither task may outlive it
        drain.cancel()
        if not getter.done():
            getter.cancel()
    if getter not in done:
        raise ApiError(grpc.StatusCode.UNAVAILABLE, message)
    return getter.result()
