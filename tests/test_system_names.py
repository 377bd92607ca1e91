"""Every request that names a system resolves it the same way (issue 13 item 4).

`systems/{system}` is accepted everywhere; the bare id only where v1 documented it
(UtilitiesService's `system`, TransferEndpoint.system, the status filters). A malformed
name is INVALID_ARGUMENT with a BadRequest naming the field; an unknown system is
NOT_FOUND with one message that lists the known systems.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from files_helpers import field_violations

from conftest import bearer
from hpcgate.server.app import Gateway
from hpcgate.v1 import (
    compute_pb2,
    compute_pb2_grpc,
    status_pb2,
    status_pb2_grpc,
    storage_pb2,
    storage_pb2_grpc,
    tasks_pb2,
    utilities_pb2,
    utilities_pb2_grpc,
)

UNKNOWN = "no system 'systems/nope' here; known systems: systems/local"
Call = Callable[[grpc.aio.Channel, list[tuple[str, str]], str], Awaitable[Any]]


def _compute(channel: grpc.aio.Channel) -> compute_pb2_grpc.ComputeServiceStub:
    return compute_pb2_grpc.ComputeServiceStub(channel)


def _files(channel: grpc.aio.Channel) -> utilities_pb2_grpc.UtilitiesServiceStub:
    return utilities_pb2_grpc.UtilitiesServiceStub(channel)


# (field, does v1 document the bare id there, the call with that field set to `system`)
CASES: dict[str, tuple[str, bool, Call]] = {
    "ListJobs": ("parent", False, lambda ch, md, s: _compute(ch).ListJobs(
        compute_pb2.ListJobsRequest(parent=s), metadata=md)),
    "ListPartitions": ("parent", False, lambda ch, md, s: _compute(ch).ListPartitions(
        compute_pb2.ListPartitionsRequest(parent=s), metadata=md)),
    "ListNodes": ("parent", False, lambda ch, md, s: _compute(ch).ListNodes(
        compute_pb2.ListNodesRequest(parent=s), metadata=md)),
    "ListFilesystems": ("parent", False, lambda ch, md, s: storage_pb2_grpc.StorageServiceStub(
        ch).ListFilesystems(storage_pb2.ListFilesystemsRequest(parent=s), metadata=md)),
    "GetSystem": ("name", False, lambda ch, md, s: status_pb2_grpc.StatusServiceStub(
        ch).GetSystem(status_pb2.GetSystemRequest(name=s), metadata=md)),
    "ListOutages": ("system", True, lambda ch, md, s: status_pb2_grpc.StatusServiceStub(
        ch).ListOutages(status_pb2.ListOutagesRequest(system=s), metadata=md)),
    "Stat": ("system", True, lambda ch, md, s: _files(ch).Stat(
        utilities_pb2.StatRequest(system=s, path="/home/alice"), metadata=md)),
    "Checksum": ("system", True, lambda ch, md, s: _files(ch).Checksum(
        utilities_pb2.ChecksumRequest(system=s, path="/etc/hostname"), metadata=md)),
    "StartTransfer": ("source.system", True, lambda ch, md, s: storage_pb2_grpc.StorageServiceStub(
        ch).StartTransfer(storage_pb2.StartTransferRequest(
            kind=tasks_pb2.TRANSFER_KIND_COPY,
            source=tasks_pb2.TransferEndpoint(system=s, path="/home/alice/does-not-exist"),
            destination=tasks_pb2.TransferEndpoint(system="local", path="/tmp/x")),
            metadata=md)),
}  # fmt: skip


@pytest.fixture
async def call(gateway: Gateway) -> Callable[[str, str], Awaitable[Any]]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}")
    metadata = bearer(gateway, "alice", ("read", "write", "execute"))

    async def run(rpc: str, system: str) -> Any:
        return await CASES[rpc][2](channel, metadata, system)

    yield run
    await channel.close()


async def code_of(call: Callable[[str, str], Awaitable[Any]], rpc: str, system: str) -> Any:
    try:
        await call(rpc, system)
    except grpc.aio.AioRpcError as e:
        return e
    return None


@pytest.mark.parametrize("rpc", sorted(CASES))
async def test_the_canonical_name_is_accepted_everywhere(
    call: Callable[[str, str], Awaitable[Any]], rpc: str
) -> None:
    error = await code_of(call, rpc, "systems/local")
    # StartTransfer of a missing source is NOT_FOUND about the path, not the system.
    assert error is None or (rpc == "StartTransfer" and "does-not-exist" in error.details())


@pytest.mark.parametrize("rpc", sorted(CASES))
async def test_the_bare_id_only_where_v1_documents_it(
    call: Callable[[str, str], Awaitable[Any]], rpc: str
) -> None:
    field, bare_allowed, _ = CASES[rpc]
    error = await code_of(call, rpc, "local")
    if bare_allowed:
        assert error is None or (rpc == "StartTransfer" and "does-not-exist" in error.details())
    else:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in field_violations(error)


@pytest.mark.parametrize("rpc", sorted(CASES))
async def test_malformed_and_unknown_systems_answer_alike(
    call: Callable[[str, str], Awaitable[Any]], rpc: str
) -> None:
    field = CASES[rpc][0]
    malformed = await code_of(call, rpc, "systems/Not A System")
    assert malformed.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(malformed)
    unknown = await code_of(call, rpc, "systems/nope")
    assert (unknown.code(), unknown.details()) == (grpc.StatusCode.NOT_FOUND, UNKNOWN)
