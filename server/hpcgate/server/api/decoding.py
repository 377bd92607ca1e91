"""Requests that cannot be decoded answer INVALID_ARGUMENT, not UNKNOWN.

grpc.aio calls a method's request_deserializer before the handler runs (unary requests)
or inside the request iterator (client streams). When it raises (corrupt wire bytes,
invalid UTF-8 in a proto3 string), grpc answers UNKNOWN with the Python exception's class
name, or the exception reaches the handler and becomes INTERNAL. So the interceptor
registers every method with a `tolerant` deserializer that returns an `Undecodable`
marker instead of raising, and the handler wrappers turn the marker into an `ApiError`
through `decoded` / `decoded_stream`: the ordinary error path, logged like any other RPC.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from hpcgate.server.api.errors import ApiError

Deserializer = Callable[[bytes], Any]


class Undecodable:
    """Stands in for a request message whose bytes could not be parsed."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def error(self) -> ApiError:
        return ApiError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the request could not be decoded: {self.reason}",
        )


def tolerant(deserializer: Deserializer | None) -> Deserializer | None:
    """`deserializer`, returning an `Undecodable` where it would raise (None stays None:
    grpc then hands the handler the raw bytes)."""
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        # DecodeError mostly; any failure here is about the client's bytes, not the server.
        except Exception as e:
            return Undecodable(str(e) or "malformed message")

    return deserialize


def decoded(request: Any) -> Any:
    """The request message; raises the INVALID_ARGUMENT ApiError for an `Undecodable`."""
    if isinstance(request, Undecodable):
        raise request.error()
    return request


async def decoded_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A client stream's messages; raises at the first one that could not be decoded."""
    async for request in requests:
        yield decoded(request)
