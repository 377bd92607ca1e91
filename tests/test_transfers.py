"""StartTransfer end to end: copy, move and sync of real trees as alice, verified, on a real
gateway; cancellation; what alice may not do with bob's files."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from files_helpers import field_violations, make_owned, user_dir
from transfer_helpers import make_tree, owners, snapshot, wait_task

from conftest import GatewayFactory, bearer, fast_config
from hpcgate.server.app import Gateway
from hpcgate.v1 import storage_pb2 as s
from hpcgate.v1 import storage_pb2_grpc, tasks_pb2_grpc
from hpcgate.v1 import tasks_pb2 as t

RW = ("read", "write")


@pytest.fixture
def alice_dir() -> Iterator[Path]:
    with user_dir("alice") as path:
        yield path


@pytest.fixture
async def two_systems(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path
) -> Gateway:
    """A gateway serving the local Slurm as two systems, `local` and `other`."""
    base = fast_config(tmp_path)
    other = replace(base.systems[0], id="other", display_name="Other")
    return await gateway_factory(replace(base, systems=(base.systems[0], other)))


@pytest.fixture
async def channel_of(two_systems: Gateway) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{two_systems.port}") as channel:
        yield channel


def request(kind: int, src: str, dst: str, **options: object) -> s.StartTransferRequest:
    source_system = str(options.pop("source_system", "local"))
    destination_system = str(options.pop("destination_system", "local"))
    return s.StartTransferRequest(
        kind=kind,  # type: ignore[arg-type]
        source=t.TransferEndpoint(system=source_system, path=src),
        destination=t.TransferEndpoint(system=destination_system, path=dst),
        **options,  # type: ignore[arg-type]
    )


async def transfer(
    channel: grpc.aio.Channel, md: list[tuple[str, str]], req: s.StartTransferRequest
) -> t.Task:
    started = await storage_pb2_grpc.StorageServiceStub(channel).StartTransfer(req, metadata=md)
    assert started.task.kind == t.TASK_KIND_TRANSFER
    return await wait_task(channel, md, started.task.name)


async def test_copy_a_tree_with_a_large_file_verified_and_preserved(
    two_systems: Gateway, channel_of: grpc.aio.Channel, alice_dir: Path
) -> None:
    md = bearer(two_systems, "alice", RW)
    make_tree(alice_dir / "src", "alice", files=300, big=64 * 1024 * 1024)
    task = await transfer(
        channel_of,
        md,
        request(
            t.TRANSFER_KIND_COPY,
            f"{alice_dir}/src",
            f"{alice_dir}/dst",
            recursive=True,
            preserve=True,
        ),
    )
    assert task.state == t.TASK_STATE_SUCCEEDED, task.error.message
    result = task.transfer_result
    assert result.files_transferred == 302 and result.files_verified == 301  # + link
    assert result.bytes_transferred == sum(
        p.stat().st_size
        for p in (alice_dir / "src").rglob("*")
        if p.is_file() and not p.is_symlink()
    )
    assert result.directories_created == 1 + 7 + 7 * 3
    assert snapshot(alice_dir / "dst") == snapshot(alice_dir / "src")
    assert owners(alice_dir / "dst") == {1001}
    assert not [p for p in (alice_dir / "dst").rglob("*.part")]
    assert task.progress.bytes_done == task.progress.bytes_total == result.bytes_transferred


async def test_move_between_systems_and_filesystems_deletes_sources_after_verification(
    two_systems: Gateway, channel_of: grpc.aio.Channel, alice_dir: Path
) -> None:
    md = bearer(two_systems, "alice", RW)
    make_tree(alice_dir / "src", "alice", files=50)
    before = snapshot(alice_dir / "src")
    shm = Path(f"/dev/shm/hpcgate-test-{uuid.uuid4().hex[:8]}")  # another filesystem
    try:
        task = await transfer(
            channel_of,
            md,
            request(
                t.TRANSFER_KIND_MOVE,
                f"{alice_dir}/src",
                str(shm),
                recursive=True,
                preserve=True,
                destination_system="other",
            ),
        )
        assert task.state == t.TASK_STATE_SUCCEEDED, task.error.message
        assert snapshot(shm) == before and owners(shm) == {1001}
        assert not (alice_dir / "src").exists()
        assert task.transfer_result.files_verified == 50
        # Within one filesystem a move is a rename.
        task = await transfer(
            channel_of,
            md,
            request(
                t.TRANSFER_KIND_MOVE,
                str(shm),
                f"{shm}-renamed",
                recursive=True,
                source_system="other",
                destination_system="other",
            ),
        )
        assert task.state == t.TASK_STATE_SUCCEEDED and snapshot(Path(f"{shm}-renamed")) == before
    finally:
        shutil.rmtree(shm, ignore_errors=True)
        shutil.rmtree(f"{shm}-renamed", ignore_errors=True)


async def test_sync_copies_only_what_changed_and_deletes_extraneous(
    two_systems: Gateway, channel_of: grpc.aio.Channel, alice_dir: Path
) -> None:
    md = bearer(two_systems, "alice", RW)
    src, dst = alice_dir / "src", alice_dir / "dst"
    make_tree(src, "alice", files=40)
    first = await transfer(
        channel_of, md, request(t.TRANSFER_KIND_SYNC, str(src), str(dst), recursive=True)
    )
    assert first.state == t.TASK_STATE_SUCCEEDED and first.transfer_result.files_transferred == 41
    assert snapshot(dst) == snapshot(src)
    changed = src / "d1" / "e1" / "f00001.dat"
    make_owned(src / "d1" / "new.txt", "alice", 0o644, b"new")
    changed.write_bytes(b"changed content")
    (src / "d2" / "e2" / "f00002.dat").unlink()
    second = await transfer(
        channel_of,
        md,
        request(t.TRANSFER_KIND_SYNC, str(src), str(dst), recursive=True, delete_extraneous=True),
    )
    assert second.state == t.TASK_STATE_SUCCEEDED, second.error.message
    r = second.transfer_result
    assert (r.files_transferred, r.files_deleted) == (2, 1)
    assert r.files_skipped == 41 - 1 - 1  # all but the changed and the deleted one
    assert snapshot(dst) == snapshot(src)


async def test_cancel_stops_the_transfer_and_leaves_no_partial_file(
    two_systems: Gateway, channel_of: grpc.aio.Channel, alice_dir: Path
) -> None:
    md = bearer(two_systems, "alice", RW)
    big = alice_dir / "big.bin"
    with open(big, "wb") as f:
        f.truncate(2 * 1024**3)  # sparse: cheap to create, 2 GiB to copy and hash
    os.chown(big, 1001, 1002)
    stub = storage_pb2_grpc.StorageServiceStub(channel_of)
    tasks = tasks_pb2_grpc.TasksServiceStub(channel_of)
    started = await stub.StartTransfer(
        request(t.TRANSFER_KIND_COPY, str(big), f"{alice_dir}/copy.bin"), metadata=md
    )
    name = started.task.name
    for _ in range(200):
        task = (await tasks.GetTask(t.GetTaskRequest(name=name), metadata=md)).task
        if task.progress.bytes_done > 0:
            break
        await asyncio.sleep(0.05)
    assert any(p.name.endswith(".part") for p in alice_dir.iterdir())
    await tasks.CancelTask(t.CancelTaskRequest(name=name), metadata=md)
    task = await wait_task(channel_of, md, name)
    assert task.state == t.TASK_STATE_CANCELLED
    assert task.progress.bytes_done < 2 * 1024**3
    await asyncio.sleep(0.5)
    assert sorted(p.name for p in alice_dir.iterdir()) == ["big.bin"]


async def test_alice_cannot_transfer_bobs_files_or_into_his_directory(
    two_systems: Gateway, channel_of: grpc.aio.Channel, alice_dir: Path
) -> None:
    md = bearer(two_systems, "alice", RW)
    stub = storage_pb2_grpc.StorageServiceStub(channel_of)
    make_owned(alice_dir / "mine", "alice", 0o600, b"alice's")
    with user_dir("bob") as bob_dir:
        make_owned(bob_dir / "secret", "bob", 0o600, b"bob's")
        for req in (
            request(t.TRANSFER_KIND_COPY, f"{bob_dir}/secret", f"{alice_dir}/stolen"),
            request(t.TRANSFER_KIND_COPY, f"{alice_dir}/mine", f"{bob_dir}/planted"),
            request(t.TRANSFER_KIND_MOVE, "/home/bob", f"{alice_dir}/bobs-home", recursive=True),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await stub.StartTransfer(req, metadata=md)
            assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, e.value.details()
        assert sorted(p.name for p in bob_dir.iterdir()) == ["secret"]
    assert sorted(p.name for p in alice_dir.iterdir()) == ["mine"]


async def test_start_transfer_validation_and_idempotency(
    two_systems: Gateway, channel_of: grpc.aio.Channel, alice_dir: Path
) -> None:
    md = bearer(two_systems, "alice", RW)
    stub = storage_pb2_grpc.StorageServiceStub(channel_of)
    make_owned(alice_dir / "f", "alice", 0o600, b"x")
    make_owned(alice_dir / "dir", "alice", 0o700)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.StartTransfer(
            s.StartTransferRequest(
                source=t.TransferEndpoint(system="local", path="relative"),
                destination=t.TransferEndpoint(path="/x/../y"),
                delete_extraneous=True,
            ),
            metadata=md,
        )
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {
        "kind",
        "source.path",
        "destination.path",
        "destination.system",
        "delete_extraneous",
    } <= set(field_violations(e.value))
    cases = [
        (request(t.TRANSFER_KIND_COPY, f"{alice_dir}/missing", f"{alice_dir}/g"), "NOT_FOUND"),
        (request(t.TRANSFER_KIND_COPY, f"{alice_dir}/f", f"{alice_dir}/no/g"), "NOT_FOUND"),
        (request(t.TRANSFER_KIND_COPY, f"{alice_dir}/f", f"{alice_dir}/dir"), "ALREADY_EXISTS"),
        (
            request(t.TRANSFER_KIND_COPY, f"{alice_dir}/dir", f"{alice_dir}/d2"),
            "FAILED_PRECONDITION",
        ),
        (
            request(
                t.TRANSFER_KIND_COPY, f"{alice_dir}/dir", f"{alice_dir}/dir/in", recursive=True
            ),
            "INVALID_ARGUMENT",
        ),
        (
            request(
                t.TRANSFER_KIND_COPY, f"{alice_dir}/f", f"{alice_dir}/g", source_system="nowhere"
            ),
            "NOT_FOUND",
        ),
    ]
    for req, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.StartTransfer(req, metadata=md)
        assert e.value.code().name == code, (req, e.value.details())
    # Reads only: the write scope is needed.
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.StartTransfer(
            request(t.TRANSFER_KIND_COPY, f"{alice_dir}/f", f"{alice_dir}/g"),
            metadata=bearer(two_systems, "alice", ("read",)),
        )
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    first = await stub.StartTransfer(
        request(t.TRANSFER_KIND_COPY, f"{alice_dir}/f", f"{alice_dir}/g", request_id="copy-f"),
        metadata=md,
    )
    again = await stub.StartTransfer(
        request(t.TRANSFER_KIND_COPY, f"{alice_dir}/f", f"{alice_dir}/g", request_id="copy-f"),
        metadata=md,
    )
    assert again.task.name == first.task.name
    done = await wait_task(channel_of, md, first.task.name)
    assert done.state == t.TASK_STATE_SUCCEEDED and (alice_dir / "g").read_bytes() == b"x"
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.StartTransfer(
            request(t.TRANSFER_KIND_COPY, f"{alice_dir}/f", f"{alice_dir}/h", request_id="copy-f"),
            metadata=md,
        )
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_a_retry_returns_the_first_task_whatever_its_state(
    two_systems: Gateway, channel_of: grpc.aio.Channel, alice_dir: Path
) -> None:
    """Issue 11: a retry after the first transfer ended used to be re-checked against the
    files it had changed (ALREADY_EXISTS for a copied destination, NOT_FOUND for a moved
    source) instead of returning the first task."""
    md = bearer(two_systems, "alice", RW)
    stub = storage_pb2_grpc.StorageServiceStub(channel_of)
    tasks = tasks_pb2_grpc.TasksServiceStub(channel_of)
    make_owned(alice_dir / "f", "alice", 0o600, b"copied")
    make_owned(alice_dir / "m", "alice", 0o600, b"moved")
    make_owned(alice_dir / "tree", "alice", 0o700)
    make_owned(alice_dir / "tree" / "bobs", "bob", 0o600, b"not alice's to read")
    big = alice_dir / "big.bin"
    with open(big, "wb") as f:
        f.truncate(2 * 1024**3)
    os.chown(big, 1001, 1002)
    copy = request(t.TRANSFER_KIND_COPY, f"{alice_dir}/f", f"{alice_dir}/g", request_id="c-1")
    move = request(t.TRANSFER_KIND_MOVE, f"{alice_dir}/m", f"{alice_dir}/n", request_id="m-1")
    fail = request(
        t.TRANSFER_KIND_COPY,
        f"{alice_dir}/tree",
        f"{alice_dir}/tree2",
        recursive=True,
        request_id="f-1",
    )
    cancel = request(t.TRANSFER_KIND_COPY, str(big), f"{alice_dir}/big2", request_id="x-1")

    ended: dict[str, t.Task] = {}
    for req in (copy, move, fail):
        first = await stub.StartTransfer(req, metadata=md)
        ended[req.request_id] = await wait_task(channel_of, md, first.task.name)
    started = await stub.StartTransfer(cancel, metadata=md)
    await tasks.CancelTask(t.CancelTaskRequest(name=started.task.name), metadata=md)
    ended["x-1"] = await wait_task(channel_of, md, started.task.name)
    assert [ended[k].state for k in ("c-1", "m-1", "f-1", "x-1")] == [
        t.TASK_STATE_SUCCEEDED,
        t.TASK_STATE_SUCCEEDED,
        t.TASK_STATE_FAILED,
        t.TASK_STATE_CANCELLED,
    ], ended["f-1"].error.message
    assert not (alice_dir / "m").exists() and (alice_dir / "n").read_bytes() == b"moved"

    def entries() -> list[str]:  # a cancelled copy's .part may still be going away
        return sorted(p.name for p in alice_dir.iterdir() if not p.name.endswith(".part"))

    before = entries()

    for req in (copy, move, fail, cancel):
        again = (await stub.StartTransfer(req, metadata=md)).task
        first = ended[req.request_id]
        assert (again.name, again.state) == (first.name, first.state), again
        assert again.request_id == req.request_id
    listed = await tasks.ListTasks(t.ListTasksRequest(), metadata=md)
    assert len(listed.tasks) == 4  # no second transfer was started
    assert entries() == before

    # The same id with a different request is refused, whatever the first task's state.
    for req, other in ((copy, "h"), (move, "o"), (cancel, "big3")):
        changed = s.StartTransferRequest()
        changed.CopyFrom(req)
        changed.destination.path = f"{alice_dir}/{other}"
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.StartTransfer(changed, metadata=md)
        assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS, e.value.details()
        assert "use a new request_id" in (e.value.details() or "")
    # Another user's identical id is independent of alice's.
    with user_dir("bob") as bob_dir:
        make_owned(bob_dir / "f", "bob", 0o600, b"bob's")
        bobs = request(t.TRANSFER_KIND_COPY, f"{bob_dir}/f", f"{bob_dir}/g", request_id="c-1")
        task = await transfer(channel_of, bearer(two_systems, "bob", RW), bobs)
        assert task.state == t.TASK_STATE_SUCCEEDED and task.name != ended["c-1"].name


async def test_too_many_unfinished_transfers_is_resource_exhausted(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path, alice_dir: Path
) -> None:
    """storage.proto: RESOURCE_EXHAUSTED when the caller has too many active transfers
    (tasks.max_unfinished_per_user), with what to do; bob is not affected by alice's."""
    base = fast_config(tmp_path)
    gateway = await gateway_factory(
        replace(base, tasks=replace(base.tasks, max_unfinished_per_user=1))
    )
    md = bearer(gateway, "alice", RW)
    big = alice_dir / "big.bin"
    with open(big, "wb") as f:
        f.truncate(2 * 1024**3)  # sparse: long enough to copy and hash
    os.chown(big, 1001, 1002)
    make_owned(alice_dir / "small", "alice", 0o600, b"x")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        running = await stub.StartTransfer(
            request(t.TRANSFER_KIND_COPY, str(big), f"{alice_dir}/copy.bin"), metadata=md
        )
        try:
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await stub.StartTransfer(
                    request(t.TRANSFER_KIND_COPY, f"{alice_dir}/small", f"{alice_dir}/s2"),
                    metadata=md,
                )
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value.details()
            assert "CancelTask" in (e.value.details() or "")
            with user_dir("bob") as bob_dir:
                make_owned(bob_dir / "f", "bob", 0o600, b"bob's")
                done = await transfer(
                    channel,
                    bearer(gateway, "bob", RW),
                    request(t.TRANSFER_KIND_COPY, f"{bob_dir}/f", f"{bob_dir}/g"),
                )
                assert done.state == t.TASK_STATE_SUCCEEDED
        finally:
            await tasks_pb2_grpc.TasksServiceStub(channel).CancelTask(
                t.CancelTaskRequest(name=running.task.name), metadata=md
            )
            await wait_task(channel, md, running.task.name)
