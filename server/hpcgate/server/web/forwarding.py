"""Connect endpoints for every RPC of the API, each forwarding its call to this process's
own gRPC server over a private Unix socket.

Forwarding, rather than calling the servicers directly, keeps one path for every call:
the same interceptor authenticates it, applies the scopes and rate limits, decodes and
validates the request, and builds the error details. The HTTP client's address travels in
trusted metadata (auth/check.py: FORWARDED_PEER, believed only with this process's
secret), so per-address limits and a token's allowed networks apply to it, not to the
socket. Messages are the project's google.protobuf classes (connectrpc.compat codecs):
there is no second set of generated message classes.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import grpc
from connectrpc.code import Code
from connectrpc.errors import ConnectError, ErrorDetail
from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType
from connectrpc.request import RequestContext
from connectrpc.server import Endpoint
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.rpc import status_pb2
from protobuf.wkt import Any as ConnectAny

from hpcgate.server.auth.check import FORWARDED_KEY, FORWARDED_PEER, FORWARDING_SECRET

# Request headers that belong to HTTP, Connect or gRPC-Web themselves, or that a browser
# adds (cookies are never credentials here): not passed on as call metadata.
_NOT_METADATA = frozenset(
    {
        "accept", "accept-encoding", "accept-language", "cache-control", "connection",
        "content-encoding", "content-length", "content-type", "cookie", "host", "origin",
        "pragma", "referer", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
        "x-grpc-web", "x-user-agent", "keep-alive", "dnt", "priority",
        FORWARDED_PEER, FORWARDED_KEY,
    }
)  # fmt: skip
_NOT_METADATA_PREFIXES = ("connect-", "grpc-", "sec-", "access-control-", ":", "x-forwarded-")
# Response metadata that is gRPC's own (the status travels in the Connect error instead).
_STATUS_KEYS = frozenset({"grpc-status", "grpc-message", "grpc-status-details-bin"})

_IDEMPOTENCY = {
    descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS: IdempotencyLevel.NO_SIDE_EFFECTS,
    descriptor_pb2.MethodOptions.IDEMPOTENT: IdempotencyLevel.IDEMPOTENT,
}


def peer_of(client_address: str | None) -> str:
    """ASGI's `host:port` of the HTTP client in grpc's peer form (`ipv4:1.2.3.4:5`,
    `ipv6:[::1]:5`), which the auth check and the rate limits read."""
    if not client_address:
        return "unix:"
    host, _, port = client_address.rpartition(":")
    if ":" in host:
        return f"ipv6:[{host.strip('[]')}]:{port}"
    return f"ipv4:{host}:{port}"


def call_metadata(ctx: RequestContext[Any, Any]) -> list[tuple[str, str | bytes]]:
    """The request's own headers as gRPC metadata (binary `-bin` ones decoded, as the
    Connect and gRPC-Web protocols carry them in base64), then who the caller is."""
    metadata: list[tuple[str, str | bytes]] = []
    headers = ctx.request_headers
    for key, value in headers.allitems():
        key = key.lower()
        if key in _NOT_METADATA or key.startswith(_NOT_METADATA_PREFIXES):
            continue
        if not key.endswith("-bin"):
            metadata.append((key, value))
            continue
        try:
            metadata.append((key, base64.b64decode(value + "=" * (-len(value) % 4))))
        except ValueError:
            raise ConnectError(
                Code.INVALID_ARGUMENT, f"header {key}: not base64, as -bin headers must be"
            ) from None
    metadata.append((FORWARDED_PEER, peer_of(ctx.client_address)))
    metadata.append((FORWARDED_KEY, FORWARDING_SECRET))
    return metadata


def connect_error(error: grpc.aio.AioRpcError) -> ConnectError:
    """The gRPC status as a Connect error: the same code, message and details (BadRequest,
    RetryInfo, ...), so a Connect client decodes what a gRPC client would."""
    code = error.code()
    name = "CANCELED" if code == grpc.StatusCode.CANCELLED else code.name
    details: list[ErrorDetail] = []
    trailers: Any = error.trailing_metadata() or ()
    for key, value in trailers:
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            details = [
                ErrorDetail(ConnectAny(type_url=d.type_url, value=d.value)) for d in status.details
            ]
    return ConnectError(Code[name], error.details() or "", details)


def _copy_metadata(metadata: Any, into: Any) -> None:
    for key, value in metadata or ():
        if key in _STATUS_KEYS:
            continue
        text = base64.b64encode(value).decode() if isinstance(value, bytes) else str(value)
        into.add(key, text)


class Forwarder:
    """Builds the Connect endpoints of the given services on a channel to the gRPC server."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel

    def endpoints(self, services: list[ServiceDescriptor]) -> dict[str, Any]:
        return {
            f"/{service.full_name}/{method.name}": self._endpoint(service, method)
            for service in services
            for method in service.methods
        }

    def _endpoint(self, service: ServiceDescriptor, method: MethodDescriptor) -> Any:
        request = GetMessageClass(method.input_type)
        response = GetMessageClass(method.output_type)
        streams = (method.client_streaming, method.server_streaming)
        kind = {
            (False, False): StreamType.UNARY,
            (True, False): StreamType.CLIENT_STREAM,
            (False, True): StreamType.SERVER_STREAM,
            (True, True): StreamType.BIDI_STREAM,
        }[streams]
        info = MethodInfo(
            name=method.name,
            service_name=service.full_name,
            input=request,
            output=response,
            idempotency_level=_IDEMPOTENCY.get(
                method.GetOptions().idempotency_level, IdempotencyLevel.UNKNOWN
            ),
            stream_type=kind,
        )
        path = f"/{service.full_name}/{method.name}"
        ser, de = request.SerializeToString, response.FromString
        channel = self.channel
        # A call with one reply (unary, client stream) is awaited; streamed replies are
        # relayed. Either way the request (or the request iterator) is passed on as it is.
        if kind is StreamType.UNARY:
            unary = channel.unary_unary(path, request_serializer=ser, response_deserializer=de)
            return Endpoint.unary(info, _one_reply(unary))
        if kind is StreamType.CLIENT_STREAM:
            into = channel.stream_unary(path, request_serializer=ser, response_deserializer=de)
            return Endpoint.client_stream(info, _one_reply(into))
        if kind is StreamType.SERVER_STREAM:
            out = channel.unary_stream(path, request_serializer=ser, response_deserializer=de)
            return Endpoint.server_stream(info, _streamed_replies(out))
        both = channel.stream_stream(path, request_serializer=ser, response_deserializer=de)
        return Endpoint.bidi_stream(info, _streamed_replies(both))


def _one_reply(stub: Any) -> Any:
    async def forward(request: Any, ctx: RequestContext[Any, Any]) -> Message:
        call = stub(request, metadata=call_metadata(ctx), timeout=_timeout(ctx))
        try:
            reply: Message = await call
        except grpc.aio.AioRpcError as e:
            raise connect_error(e) from None
        _copy_metadata(await call.initial_metadata(), ctx.response_headers)
        _copy_metadata(await call.trailing_metadata(), ctx.response_trailers)
        return reply

    return forward


def _streamed_replies(stub: Any) -> Any:
    def forward(request: Any, ctx: RequestContext[Any, Any]) -> AsyncIterator[Message]:
        return _relay(stub(request, metadata=call_metadata(ctx), timeout=_timeout(ctx)), ctx)

    return forward


async def _relay(call: Any, ctx: RequestContext[Any, Any]) -> AsyncIterator[Message]:
    """The gRPC call's messages, then its status; the call is cancelled if the HTTP client
    goes away first (the generator is closed)."""
    try:
        _copy_metadata(await call.initial_metadata(), ctx.response_headers)
        async for message in call:
            yield message
        _copy_metadata(await call.trailing_metadata(), ctx.response_trailers)
    except grpc.aio.AioRpcError as e:
        raise connect_error(e) from None
    finally:
        call.cancel()


def _timeout(ctx: RequestContext[Any, Any]) -> float | None:
    timeout_ms = ctx.timeout_ms
    return None if timeout_ms is None else timeout_ms / 1000
