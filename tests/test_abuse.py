"""Abusive inputs get clear, canonical answers: oversized metadata and messages."""

from __future__ import annotations

import grpc
import pytest

from hpcgate.server.app import Gateway
from hpcgate.v1 import status_pb2, status_pb2_grpc, utilities_pb2, utilities_pb2_grpc


async def test_oversized_metadata_is_resource_exhausted_and_says_so(gateway: Gateway) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = status_pb2_grpc.StatusServiceStub(channel)
        await stub.ListSystems(status_pb2.ListSystemsRequest(), metadata=[("x-a", "a" * 8000)])
        for size in (20_000, 2_000_000):
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await stub.ListSystems(
                    status_pb2.ListSystemsRequest(), metadata=[("x-a", "a" * size)], timeout=10
                )
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "metadata size exceeds" in (e.value.details() or "")
        # The connection and the server are fine afterwards.
        await stub.ListSystems(status_pb2.ListSystemsRequest(), timeout=10)


async def test_an_oversized_message_is_resource_exhausted_and_names_the_limit(
    gateway: Gateway,
) -> None:
    limit = gateway.config.limits.max_message_bytes
    options = [("grpc.max_send_message_length", 2 * limit)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}", options=options) as channel:
        stub = utilities_pb2_grpc.UtilitiesServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.Stat(utilities_pb2.StatRequest(path="/" + "a" * limit), timeout=10)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"vs. {limit}" in (e.value.details() or "")
        health = status_pb2_grpc.StatusServiceStub(channel)
        await health.ListSystems(status_pb2.ListSystemsRequest(), timeout=10)
