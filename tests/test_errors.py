"""Errors clients see: UNIMPLEMENTED with a clear message, INTERNAL without a traceback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from conftest import GatewayFactory, bearer
from hpcgate.server.api.interceptors import ObservingInterceptor
from hpcgate.v1 import (
    status_pb2,
    status_pb2_grpc,
    storage_pb2,
    storage_pb2_grpc,
)


async def test_rpcs_of_later_releases_are_clearly_unimplemented(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = await gateway_factory(wait_ready=False)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as ch:
        metadata = bearer(gateway, "alice", ("read", "write"))
        storage = storage_pb2_grpc.StorageServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await storage.StartTransfer(storage_pb2.StartTransferRequest(), metadata=metadata)
        assert unary.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "hpcgate.v1.StorageService/StartTransfer" in (unary.value.details() or "")


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
