"""Transfers between facilities: two hpcgate servers on loopback, A acting for alice, B for
bob through the service credential A holds as B's registered client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from files_helpers import user_dir
from peer_helpers import peer_pair
from transfer_helpers import make_tree, owners, snapshot, wait_task

from conftest import GatewayFactory, bearer
from hpcgate.v1 import storage_pb2 as s
from hpcgate.v1 import storage_pb2_grpc, tasks_pb2_grpc
from hpcgate.v1 import tasks_pb2 as t

RW = ("read", "write")


@pytest.fixture
def alice_dir() -> Iterator[Path]:
    with user_dir("alice") as path:
        yield path


@pytest.fixture
def bob_dir() -> Iterator[Path]:
    with user_dir("bob") as path:
        yield path


async def test_push_to_a_peer_and_pull_back(
    slurm_cluster: None,
    gateway_factory: GatewayFactory,
    tmp_path: Path,
    alice_dir: Path,
    bob_dir: Path,
) -> None:
    a, b, peer = await peer_pair(gateway_factory, tmp_path)
    md = bearer(a, "alice", RW)
    make_tree(alice_dir / "run", "alice", files=120, big=8 * 1024 * 1024)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        push = await stub.StartTransfer(
            s.StartTransferRequest(
                kind=t.TRANSFER_KIND_COPY,
                recursive=True,
                preserve=True,
                source=t.TransferEndpoint(system="local", path=f"{alice_dir}/run"),
                destination=t.TransferEndpoint(facility=peer, path=f"{bob_dir}/run"),
            ),
            metadata=md,
        )
        pushed = await wait_task(channel, md, push.task.name)
        assert pushed.state == t.TASK_STATE_SUCCEEDED, pushed.error.message
        assert pushed.transfer_result.files_verified == 121
        assert snapshot(bob_dir / "run", times=True) == snapshot(alice_dir / "run", times=True)
        assert owners(bob_dir / "run") == {1002}  # written at B as B's service user

        # Pull it back by address, as a SYNC after a change at B: only that file moves.
        (bob_dir / "run" / "d0" / "e0" / "f00000.dat").write_bytes(b"changed at B")
        pull = await stub.StartTransfer(
            s.StartTransferRequest(
                kind=t.TRANSFER_KIND_SYNC,
                recursive=True,
                source=t.TransferEndpoint(facility=f"127.0.0.1:{b.port}", path=f"{bob_dir}/run"),
                destination=t.TransferEndpoint(system="local", path=f"{alice_dir}/run"),
            ),
            metadata=md,
        )
        pulled = await wait_task(channel, md, pull.task.name)
        assert pulled.state == t.TASK_STATE_SUCCEEDED, pulled.error.message
        assert pulled.transfer_result.files_transferred == 1
        assert (alice_dir / "run" / "d0" / "e0" / "f00000.dat").read_bytes() == b"changed at B"
        assert owners(alice_dir / "run") == {1001}


async def test_peers_are_only_for_configured_facilities_and_allowed_users(
    slurm_cluster: None,
    gateway_factory: GatewayFactory,
    tmp_path: Path,
    alice_dir: Path,
) -> None:
    a, _, peer = await peer_pair(gateway_factory, tmp_path)
    (alice_dir / "f").write_bytes(b"x")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        for user, facility in (("alice", "127.0.0.1:1"), ("alice", "elsewhere"), ("bob", peer)):
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await stub.StartTransfer(
                    s.StartTransferRequest(
                        kind=t.TRANSFER_KIND_COPY,
                        source=t.TransferEndpoint(system="local", path=f"{alice_dir}/f"),
                        destination=t.TransferEndpoint(facility=facility, path="/tmp/x"),
                    ),
                    metadata=bearer(a, user, RW),
                )
            assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, e.value.details()


async def test_a_peer_that_does_not_answer_is_unavailable(
    slurm_cluster: None,
    gateway_factory: GatewayFactory,
    tmp_path: Path,
    alice_dir: Path,
) -> None:
    """storage.proto: UNAVAILABLE (retry later) when the peer facility does not respond;
    no task is started."""
    a, b, peer = await peer_pair(gateway_factory, tmp_path)
    await b.stop()
    (alice_dir / "f").write_bytes(b"x")
    md = bearer(a, "alice", RW)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.StartTransfer(
                s.StartTransferRequest(
                    kind=t.TRANSFER_KIND_COPY,
                    source=t.TransferEndpoint(system="local", path=f"{alice_dir}/f"),
                    destination=t.TransferEndpoint(facility=peer, path="/tmp/x"),
                ),
                metadata=md,
            )
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value.details()
        assert peer in (e.value.details() or ""), e.value.details()
        listed = await tasks_pb2_grpc.TasksServiceStub(channel).ListTasks(
            t.ListTasksRequest(), metadata=md
        )
        assert not listed.tasks
