"""Errors clients see: INTERNAL with a reference id, never a traceback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from hpcgate.server.api.interceptors import ObservingInterceptor
from hpcgate.v1 import (
    status_pb2,
    status_pb2_grpc,
)


class Exploding(status_pb2_grpc.StatusServiceServicer):
    async def ListSystems(self, request: Any, context: Any) -> Any:
        raise RuntimeError("secret internal detail")

    async def WatchSystems(self, request: Any, context: Any) -> AsyncIterator[Any]:
        yield status_pb2.WatchSystemsResponse()
        raise KeyError("another secret")


async def test_unexpected_exceptions_become_internal_without_details() -> None:
    server = grpc.aio.server(interceptors=[ObservingInterceptor()])
    status_pb2_grpc.add_StatusServiceServicer_to_server(Exploding(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = status_pb2_grpc.StatusServiceStub(ch)
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await stub.ListSystems(status_pb2.ListSystemsRequest())
            assert e.value.code() == grpc.StatusCode.INTERNAL
            assert "secret" not in (e.value.details() or "")
            assert "reference" in (e.value.details() or "")
            received = []
            with pytest.raises(grpc.aio.AioRpcError) as s:
                async for message in stub.WatchSystems(status_pb2.WatchSystemsRequest()):
                    received.append(message)
            assert len(received) == 1 and s.value.code() == grpc.StatusCode.INTERNAL
            assert "secret" not in (s.value.details() or "")
    finally:
        await server.stop(None)
