"""The server interceptor every RPC passes through.

It runs the auth check (and makes the caller available to the handler), then the rate
limits and stream caps of that caller (limits.py), refuses a request that could not be
decoded (decoding.py), turns a `DomainError` into a rich status,
turns any other exception into INTERNAL with a reference id (the traceback goes to the
log, never to the client), and writes one structured log line per RPC: method, peer,
status code, duration, and for authenticated RPCs the user and client id (the audit log).
The same start and end feed the metrics (metrics.py): counts, latency, open streams.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from hpcgate.server.api.decoding import decoded, decoded_stream, tolerant
from hpcgate.server.api.errors import DomainError, grpc_code, to_status
from hpcgate.server.api.limits import Limiter
from hpcgate.server.auth.caller import Caller, reset_caller, set_caller
from hpcgate.server.auth.check import caller_peer
from hpcgate.server.metrics import Metrics

log = logging.getLogger("hpcgate.rpc")
# Decides who the caller is (None for public RPCs); raises a DomainError to refuse the call.
Authenticate = Callable[[str, Any], Awaitable[Caller | None]]
# The request (or request iterator) as the servicer gets it; refuses undecodable ones.
Decode = Callable[[Any], Any]


async def _public(method: str, context: Any) -> Caller | None:
    return None


class _CallRecord:
    def __init__(
        self,
        method: str,
        context: grpc.aio.ServicerContext[Any, Any],
        metrics: Metrics | None = None,
    ) -> None:
        self.method = method
        self.context = context
        self.started = time.monotonic()
        self.metrics = metrics or Metrics.unexposed()
        # Read now: a stream handler abandoned by a cancelled call is finalized later, when
        # the call is gone, and context.peer() then crashes the process (segfault in grpc).
        self.peer = caller_peer(context)
        self.code: grpc.StatusCode = grpc.StatusCode.OK
        self.caller: Caller | None = None
        self.metrics.rpc_started(method)  # last: finish() undoes it, so nothing may fail after

    async def fail(self, error: BaseException) -> None:
        """Abort the call for `error`; always raises."""
        if isinstance(error, DomainError):
            self.code = grpc_code(error.code)
            status = to_status(error)
            await self.context.abort(status.code, status.details, status.trailing_metadata)
        if isinstance(error, grpc.aio.AbortError):
            code = self.context.code()
            self.code = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
            raise error
        # GeneratorExit: that finalization of an abandoned stream handler; nothing to send.
        if isinstance(error, asyncio.CancelledError | GeneratorExit):
            self.code = grpc.StatusCode.CANCELLED
            raise error
        reference = uuid.uuid4().hex[:12]
        log.error("unhandled error in %s (reference %s)", self.method, reference, exc_info=error)
        self.code = grpc.StatusCode.INTERNAL
        await self.context.abort(
            grpc.StatusCode.INTERNAL,
            f"internal server error (reference {reference}); report it to the operators",
        )

    def finish(self) -> None:
        seconds = time.monotonic() - self.started
        self.metrics.rpc_finished(self.method, self.code.name, seconds)
        fields: dict[str, object] = {
            "method": self.method,
            "peer": self.peer,
            "code": self.code.name,
            "duration_ms": round(seconds * 1000, 2),
        }
        if self.caller is not None:
            fields.update(user=self.caller.user, client_id=self.caller.client_id)
        log.info("rpc", extra={"fields": fields})


def _wrap_unary(
    behavior: Callable[..., Awaitable[Any]],
    method: str,
    authenticate: Authenticate,
    decode: Decode = decoded,
    metrics: Metrics | None = None,
) -> Callable[..., Any]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        record = _CallRecord(method, context, metrics)
        token = None
        try:
            record.caller = await authenticate(method, context)
            token = set_caller(record.caller)
            return await behavior(decode(request), context)
        except BaseException as e:
            await record.fail(e)
        finally:
            if token is not None:
                reset_caller(token)
            record.finish()

    return handler


def _wrap_stream(
    behavior: Callable[..., Any],
    method: str,
    authenticate: Authenticate,
    decode: Decode = decoded,
    metrics: Metrics | None = None,
) -> Callable[..., Any]:
    async def handler(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        record = _CallRecord(method, context, metrics)
        try:
            record.caller = await authenticate(method, context)
            # An async generator keeps its own context copy: set the caller inside it.
            set_caller(record.caller)
            result = behavior(decode(request), context)
            if inspect.isasyncgen(result):
                async for item in result:
                    yield item
            else:  # a coroutine that writes with context.write()
                await result
        except BaseException as e:
            await record.fail(e)
        finally:
            record.finish()

    return handler


if TYPE_CHECKING:
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # the runtime class is not generic; only grpc-stubs makes it so
    _ServerInterceptor = grpc.aio.ServerInterceptor


class ObservingInterceptor(_ServerInterceptor):
    """Auth, error mapping and one log line per RPC, for every service including health."""

    def __init__(
        self,
        authenticate: Authenticate = _public,
        metrics: Metrics | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        # Rate limits and stream caps (limits.py) apply once the caller is known.
        self.authenticate = limiter.guard(authenticate) if limiter else authenticate
        self.metrics = metrics or Metrics.unexposed()

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        # Undecodable requests reach the wrappers as markers (decoding.py), not exceptions.
        deserializer = tolerant(handler.request_deserializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method, self.authenticate, metrics=self.metrics),
                deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(
                    handler.stream_unary, method, self.authenticate, decoded_stream, self.metrics
                ),
                deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, method, self.authenticate, metrics=self.metrics),
                deserializer,
                handler.response_serializer,
            )
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream(
                handler.stream_stream, method, self.authenticate, decoded_stream, self.metrics
            ),
            deserializer,
            handler.response_serializer,
        )
