"""UtilitiesService.UploadFiles and DownloadFiles end to end: a real gateway on loopback,
alice's and bob's privsep workers writing and reading real files in their homes."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from files_helpers import field_violations, make_owned, user_dir

from conftest import GatewayFactory, bearer, fast_config
from hpcgate.server.app import Gateway
from hpcgate.v1 import utilities_pb2 as u
from hpcgate.v1 import utilities_pb2_grpc

RW = ("read", "write")
DATA_LOSS, PERMISSION_DENIED, NOT_FOUND = 15, 7, 5
Stub = utilities_pb2_grpc.UtilitiesServiceStub


@pytest.fixture
async def files(gateway: Gateway) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield utilities_pb2_grpc.UtilitiesServiceStub(channel)


@pytest.fixture
def alice_dir() -> Iterator[Path]:
    with user_dir("alice") as path:
        yield path


@pytest.fixture
def bob_dir() -> Iterator[Path]:
    with user_dir("bob") as path:
        yield path


def content(path: str, data: bytes, **extra: object) -> u.FileContent:
    return u.FileContent(path=path, data=data, sha256=hashlib.sha256(data).hexdigest(), **extra)  # type: ignore[arg-type]


def header(directory: Path | str, verify: bool = True) -> u.UploadFilesRequest:
    return u.UploadFilesRequest(
        header=u.UploadFilesHeader(system="local", directory=str(directory), verify=verify)
    )


def batch(*files: u.FileContent, sync: bool = False) -> u.UploadFilesRequest:
    return u.UploadFilesRequest(batch=u.FileBatch(files=files, sync=sync))


async def exchange(
    stub: Stub, md: list[tuple[str, str]], *messages: u.UploadFilesRequest
) -> list[u.UploadFilesResponse]:
    async def requests() -> AsyncIterator[u.UploadFilesRequest]:
        for message in messages:
            yield message

    return [r async for r in stub.UploadFiles(requests(), metadata=md)]


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.rglob("*.part")]


async def test_upload_files_writes_verified_files_with_modes_and_times(
    gateway: Gateway, files: Stub, alice_dir: Path
) -> None:
    md = bearer(gateway, "alice", RW)
    make_owned(alice_dir / "sub", "alice", 0o755)
    many = [content(f"f{n:03}.dat", os.urandom(n * 37)) for n in range(200)]
    stamped = content("sub/kept.txt", b"kept", mode=0o640)
    stamped.mtime.FromNanoseconds(1_600_000_000_123_000_000)
    replies = await exchange(
        files, md, header(alice_dir), batch(*many), batch(stamped, sync=True), batch(sync=True)
    )
    assert len(replies) == 3  # one answer per batch, in order
    assert [w.path for w in replies[0].written] == [f.path for f in many]
    assert not replies[0].HasField("failure") and not replies[2].written
    for f in many:
        assert (alice_dir / f.path).read_bytes() == f.data
        assert (alice_dir / f.path).stat().st_uid == 1001  # written as alice
    kept = alice_dir / "sub" / "kept.txt"
    assert replies[1].written[0].sha256 == hashlib.sha256(b"kept").hexdigest()
    assert kept.stat().st_mode & 0o7777 == 0o640
    assert kept.stat().st_mtime_ns == 1_600_000_000_123_000_000
    assert leftovers(alice_dir) == []


async def test_upload_files_stops_a_batch_at_a_bad_file_and_the_stream_goes_on(
    gateway: Gateway, files: Stub, alice_dir: Path, bob_dir: Path
) -> None:
    md = bearer(gateway, "alice", RW)
    wrong = content("wrong.dat", b"what was sent")
    wrong.sha256 = hashlib.sha256(b"something else").hexdigest()
    os.symlink(str(bob_dir), alice_dir / "to-bob")
    replies = await exchange(
        files,
        md,
        header(alice_dir),
        batch(content("a", b"1"), content("missing-dir/b", b"2"), content("c", b"3")),
        batch(wrong, content("d", b"4")),
        batch(content("to-bob/e", b"5")),  # bob's home is 0700: the kernel says no
        batch(content("f", b"6")),
    )
    first, second, third, fourth = replies
    assert [w.path for w in first.written] == ["a"]
    assert first.failure.path == "missing-dir/b" and first.failure.code == NOT_FOUND
    assert "missing-dir/b" in first.failure.message
    assert not second.written and second.failure.code == DATA_LOSS
    assert third.failure.code == PERMISSION_DENIED and not (bob_dir / "e").exists()
    assert [w.path for w in fourth.written] == ["f"]
    assert not (alice_dir / "c").exists() and not (alice_dir / "wrong.dat").exists()
    assert not (alice_dir / "d").exists()  # after the failure in its batch
    assert leftovers(alice_dir) == []


async def test_upload_files_rejects_bad_requests_with_field_violations(
    gateway: Gateway, files: Stub, alice_dir: Path
) -> None:
    md = bearer(gateway, "alice", RW)
    bad = [
        content("../escape", b"x"),
        content("/etc/passwd", b"x"),
        content("a//b", b"x"),
        content("ok", b"x", mode=0o10000),
    ]
    bad.append(u.FileContent(path="no-hash", data=b"x", sha256="abc"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await exchange(files, md, header(alice_dir), batch(*bad))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(info.value)
    assert set(violations) == {
        "batch.files[0].path",
        "batch.files[1].path",
        "batch.files[2].path",
        "batch.files[3].mode",
        "batch.files[4].sha256",
    }
    assert list(alice_dir.iterdir()) == []
    for messages, field in (
        ((batch(content("a", b"1")),), "header"),
        ((header(alice_dir), header(alice_dir)), "batch"),
        ((header("relative/dir"),), "header.directory"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await exchange(files, md, *messages)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in field_violations(info.value)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await exchange(files, md)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_upload_files_limits_are_resource_exhausted(
    gateway: Gateway, files: Stub, alice_dir: Path
) -> None:
    md = bearer(gateway, "alice", RW)
    too_many = [content(f"f{n}", b"") for n in range(1001)]
    too_big = content("big", b"\0" * (2 * 1024 * 1024 + 1))
    for message in (batch(*too_many), batch(too_big)):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await exchange(files, md, header(alice_dir), message)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "Upload" in (info.value.details() or "") or "1000" in (info.value.details() or "")
    assert list(alice_dir.iterdir()) == []


async def test_upload_files_needs_the_write_scope(
    gateway: Gateway, files: Stub, alice_dir: Path
) -> None:
    # The server refuses before reading a message. A client still writing then may see
    # grpc-core's INTERNAL "Failed execute_batch" instead of the status (a race in the
    # client library), so this call writes nothing and waits for the status.
    call = files.UploadFiles(metadata=bearer(gateway, "alice"))
    assert await asyncio.wait_for(call.code(), 30) == grpc.StatusCode.PERMISSION_DENIED
    assert "write" in await call.details()
    assert not (alice_dir / "a").exists()


async def test_download_files_reads_contents_and_hashes_in_order(
    gateway: Gateway, files: Stub, alice_dir: Path
) -> None:
    md = bearer(gateway, "alice")
    make_owned(alice_dir / "d", "alice", 0o755)
    wanted = {f"d/f{n:03}": os.urandom(30_000) for n in range(150)}  # 4.3 MiB: responses
    for name, data in wanted.items():
        make_owned(alice_dir / name, "alice", 0o600, data)
    request = u.DownloadFilesRequest(system="local", directory=str(alice_dir), paths=list(wanted))
    replies = [r async for r in files.DownloadFiles(request, metadata=md)]
    assert len(replies) > 1  # a worker batch per response, a few MiB each
    got = [f for r in replies for f in r.files]
    assert [f.path for f in got] == list(wanted)
    for f in got:
        assert f.data == wanted[f.path] and f.sha256 == hashlib.sha256(f.data).hexdigest()
    assert not any(r.HasField("failure") for r in replies)


async def test_download_files_stops_at_a_file_it_cannot_read(
    gateway: Gateway, files: Stub, alice_dir: Path, bob_dir: Path
) -> None:
    md = bearer(gateway, "alice")
    make_owned(alice_dir / "a", "alice", 0o600, b"a")
    make_owned(bob_dir / "secret", "bob", 0o600, b"bob's")
    os.symlink(str(bob_dir / "secret"), alice_dir / "link")
    make_owned(alice_dir / "big", "alice", 0o600, b"\0" * (3 * 1024 * 1024))
    for path, code in (("link", 9), ("missing", NOT_FOUND), ("big", 8)):
        request = u.DownloadFilesRequest(
            system="local", directory=str(alice_dir), paths=["a", path, "a"]
        )
        replies = [r async for r in files.DownloadFiles(request, metadata=md)]
        assert [f.path for r in replies for f in r.files] == ["a"]
        assert replies[-1].failure.path == path and replies[-1].failure.code == code, replies
    # bob's directory as a whole: the kernel refuses alice.
    request = u.DownloadFilesRequest(system="local", directory=str(bob_dir), paths=["secret"])
    replies = [r async for r in files.DownloadFiles(request, metadata=md)]
    assert not replies[-1].files and replies[-1].failure.code == PERMISSION_DENIED


async def test_download_files_rejects_bad_requests(
    gateway: Gateway, files: Stub, alice_dir: Path
) -> None:
    md = bearer(gateway, "alice")
    request = u.DownloadFilesRequest(
        system="local", directory="not/absolute", paths=["ok", "../up", ""]
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        [r async for r in files.DownloadFiles(request, metadata=md)]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(info.value)) == {"directory", "paths[1]", "paths[2]"}
    many = u.DownloadFilesRequest(
        system="local", directory=str(alice_dir), paths=[f"f{n}" for n in range(1001)]
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        [r async for r in files.DownloadFiles(many, metadata=md)]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "paths" in field_violations(info.value)


async def test_batches_respect_the_allowed_roots(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path, alice_dir: Path
) -> None:
    base = fast_config(tmp_path)
    system = replace(base.systems[0], allowed_roots=(str(alice_dir / "inside"),))
    gateway = await gateway_factory(replace(base, systems=(system,)))
    md = bearer(gateway, "alice", RW)
    make_owned(alice_dir / "inside", "alice", 0o755)
    make_owned(alice_dir / "outside", "alice", 0o755)
    make_owned(alice_dir / "outside" / "x", "alice", 0o600, b"x")
    os.symlink(str(alice_dir / "outside"), alice_dir / "inside" / "out")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = utilities_pb2_grpc.UtilitiesServiceStub(channel)
        replies = await exchange(
            stub, md, header(alice_dir / "inside"), batch(content("out/y", b"y"))
        )
        assert replies[0].failure.code == PERMISSION_DENIED
        assert "outside" in replies[0].failure.message
        request = u.DownloadFilesRequest(
            system="local", directory=str(alice_dir / "inside"), paths=["out/x"]
        )
        replies = [r async for r in stub.DownloadFiles(request, metadata=md)]
        assert replies[-1].failure.code == PERMISSION_DENIED and not replies[-1].files
    assert not (alice_dir / "outside" / "y").exists()
