"""Resumable uploads against real servers: a client process killed at 90 % continues from
what the server holds (SHA-256 checked), the final name never shows a partial file, kept
files expire, every documented error of `resumable`/`offset` and GetUploadStatus, another
user sees nothing of alice's, and the peer endpoint's `held` / `write_file(resume_key)`."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from files_helpers import field_violations, user_dir
from peer_helpers import peer_pair
from postgres import States, open_backend

from conftest import GatewayFactory, bearer, fast_config, require
from hpcgate.server.app import Gateway
from hpcgate.server.files.resumable import Partial, PartialKey, Partials
from hpcgate.server.transfers.peer import PeerEndpoint
from hpcgate.v1 import utilities_pb2 as u
from hpcgate.v1 import utilities_pb2_grpc

MIB = 1024 * 1024
BIG = 256 * MIB

# Runs in a separate process: the client library uploading argv[4] to argv[3], printing
# each progress report (so the test knows when to kill it) and the result at the end.
CLIENT = """
import asyncio, json, sys
from hpcgate.client import connect

async def main() -> None:
    address, token, remote, local = sys.argv[1:5]
    def progress(done: int, total: int | None) -> None:
        print(done, flush=True)
    async with connect(address, token=token, system="local") as client:
        sent = await client.files.upload(local, remote, progress=progress)
    print(json.dumps({"size": sent.size, "sha256": sent.sha256}), flush=True)

asyncio.run(main())
"""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    with path.open("rb") as source:
        return hashlib.file_digest(source, "sha256").hexdigest()


def leftovers(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.fixture
def alice_dir() -> Iterator[Path]:
    with user_dir("alice") as path:
        yield path


@pytest.fixture
async def stub(gateway: Gateway) -> AsyncIterator[utilities_pb2_grpc.UtilitiesServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield utilities_pb2_grpc.UtilitiesServiceStub(channel)


def header(path: str, rid: str, data: bytes, offset: int = 0, **more: object) -> u.UploadHeader:
    return u.UploadHeader(
        system="local", path=path, request_id=rid, resumable=True, offset=offset,
        expected_size=len(data), expected_sha256=sha256(data), **more,  # type: ignore[arg-type]
    )  # fmt: skip


async def messages(h: u.UploadHeader, data: bytes) -> AsyncIterator[u.UploadRequest]:
    yield u.UploadRequest(header=h)
    for start in range(0, len(data), MIB):
        yield u.UploadRequest(chunk=u.UploadChunk(data=data[start : start + MIB]))


async def interrupted(
    stub: utilities_pb2_grpc.UtilitiesServiceStub, md: object, h: u.UploadHeader, data: bytes
) -> None:
    """Sends the header and `data`, then cancels the call (a client gone mid-upload)."""
    call = stub.Upload(metadata=md)
    await call.write(u.UploadRequest(header=h))
    for start in range(0, len(data), MIB):
        await call.write(u.UploadRequest(chunk=u.UploadChunk(data=data[start : start + MIB])))
    target = Path(h.path)
    for _ in range(500):  # until the server has written what it received
        parts = list(target.parent.glob(f".{target.name}.hpcgate-*.part"))
        if parts and parts[0].stat().st_size >= h.offset + len(data):
            break
        await asyncio.sleep(0.02)
    call.cancel()


async def status(
    stub: utilities_pb2_grpc.UtilitiesServiceStub, md: object, rid: str
) -> u.GetUploadStatusResponse:
    request = u.GetUploadStatusRequest(system="local", request_id=rid)
    return await stub.GetUploadStatus(request, metadata=md)


async def code_of(call: object) -> tuple[grpc.StatusCode, grpc.aio.AioRpcError]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value.code(), info.value


# --- the state table, on both backends ---------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Iterator[States]:
    yield from open_backend(request)


def test_partials_are_kept_per_user_and_expire(backend: States, tmp_path: Path) -> None:
    partials = Partials(backend.open(tmp_path))
    key = PartialKey("alice", "local", "r1")
    kept = Partial("h", "/home/alice/f", ".f.hpcgate-ab.part", 0o644, -1, "", 100.0)
    partials.save(key, kept)
    assert partials.find(key) == kept
    assert partials.find(PartialKey("bob", "local", "r1")) is None
    measured = replace(kept, size=5, sha256="s", expires_at=200.0)
    partials.measured(key, measured)
    partials.measured(key, replace(measured, temp="other", size=9))  # another file: ignored
    assert Partials(backend.open(tmp_path)).find(key) == measured
    assert partials.expired(150.0, 10) == []
    assert partials.expired(250.0, 10) == [(key, measured)]
    partials.forget(key, kept.temp, expired_at=150.0)  # not expired then: stays
    assert partials.find(key) == measured
    partials.forget(key, kept.temp)
    assert partials.find(key) is None


# --- a killed client process ---------------------------------------------------------------


class NameWatch:
    """Polls the target in a thread: the size it had each time it existed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sizes: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(FileNotFoundError):
                self.sizes.add(self.path.stat().st_size)
            time.sleep(0.002)

    def __enter__(self) -> NameWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def client_process(
    script: Path, gateway: Gateway, remote: Path, local: Path, cache: Path
) -> subprocess.Popen[str]:
    token = bearer(gateway, "alice", ("read", "write"))[0][1].removeprefix("Bearer ")
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    argv = [sys.executable, str(script), f"127.0.0.1:{gateway.port}", token, str(remote),
            str(local)]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)


async def progress_of(process: subprocess.Popen[str], kill_at: int | None) -> list[str]:
    """The process's output lines; SIGKILL once it reported `kill_at` bytes sent."""
    assert process.stdout is not None
    lines: list[str] = []
    while line := await asyncio.to_thread(process.stdout.readline):
        lines.append(line.strip())
        if kill_at is not None and line.strip().isdigit() and int(line) >= kill_at:
            process.send_signal(signal.SIGKILL)
            break
    await asyncio.to_thread(process.wait, 60)
    return lines


@pytest.mark.timeout(600)
async def test_a_killed_client_process_resumes_where_the_server_stopped(
    gateway: Gateway,
    stub: utilities_pb2_grpc.UtilitiesServiceStub,
    alice_dir: Path,
    tmp_path: Path,
) -> None:
    local = tmp_path / "frames.bin"
    with local.open("wb") as out:
        for _ in range(BIG // (16 * MIB)):
            out.write(os.urandom(16 * MIB))
    whole = await asyncio.to_thread(file_sha256, local)
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    remote = alice_dir / "frames.bin"
    with NameWatch(remote) as watch:
        first = client_process(script, gateway, remote, local, tmp_path / "cache")
        await progress_of(first, kill_at=BIG * 9 // 10)
        assert first.returncode == -signal.SIGKILL
        assert not remote.exists()
        # What the server kept is a prefix of the file, with that prefix's SHA-256.
        notes = list((tmp_path / "cache" / "hpcgate" / "uploads").iterdir())
        assert len(notes) == 1
        md = bearer(gateway, "alice", ("write",))
        held = await status(stub, md, notes[0].read_text())
        assert BIG // 2 < held.size < BIG and held.path == str(remote) and not held.complete
        with local.open("rb") as source:
            assert held.sha256 == sha256(source.read(held.size))
        assert held.expire_time.ToSeconds() > time.time() + 23 * 3600

        second = client_process(script, gateway, remote, local, tmp_path / "cache")
        lines = await progress_of(second, kill_at=None)
    assert second.returncode == 0, lines
    assert int(lines[0]) > held.size  # continued: the first report is past what was held
    assert json.loads(lines[-1]) == {"size": BIG, "sha256": whole}
    assert watch.sizes == {BIG}  # whenever the name existed, it was the whole file
    assert await asyncio.to_thread(file_sha256, remote) == whole
    assert leftovers(alice_dir) == ["frames.bin"]  # the kept part became the file
    assert list((tmp_path / "cache" / "hpcgate" / "uploads").iterdir()) == []


# --- resuming by hand, and every documented error -------------------------------------------


async def test_resume_at_the_held_offset_checks_the_whole_file(
    gateway: Gateway, stub: utilities_pb2_grpc.UtilitiesServiceStub, alice_dir: Path
) -> None:
    md = bearer(gateway, "alice", ("write",))
    data = os.urandom(5 * MIB + 7)
    target = f"{alice_dir}/r.bin"
    await interrupted(stub, md, header(target, "r-1", data), data[: 3 * MIB])
    held = await status(stub, md, "r-1")
    assert held.size == 3 * MIB and held.sha256 == sha256(data[: 3 * MIB])
    assert [n for n in leftovers(alice_dir) if n.endswith(".part")]  # hidden, beside it
    rest = data[held.size :]
    reply = await stub.Upload(messages(header(target, "r-1", data, held.size), rest), metadata=md)
    assert (reply.size, reply.sha256) == (len(data), sha256(data))
    assert Path(target).read_bytes() == data and leftovers(alice_dir) == ["r.bin"]
    done = await status(stub, md, "r-1")
    assert done.complete and (done.size, done.sha256) == (len(data), sha256(data))
    # A repeat of the completed upload answers as before, whatever its offset.
    again = await stub.Upload(messages(header(target, "r-1", data, 5), b""), metadata=md)
    assert again == reply

    # Other bytes after the held part: the whole file's SHA-256 differs, nothing is kept.
    wrong = f"{alice_dir}/w.bin"
    await interrupted(stub, md, header(wrong, "r-2", data), data[:MIB])
    bad = b"x" + data[MIB + 1 :]
    code, error = await code_of(
        stub.Upload(messages(header(wrong, "r-2", data, MIB), bad), metadata=md)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "header.expected_sha256" in field_violations(error)
    code, _ = await code_of(status(stub, md, "r-2"))
    assert code == grpc.StatusCode.NOT_FOUND
    assert leftovers(alice_dir) == ["r.bin"]


async def test_every_documented_error_of_resumable_uploads(
    gateway: Gateway, stub: utilities_pb2_grpc.UtilitiesServiceStub, alice_dir: Path
) -> None:
    md = bearer(gateway, "alice", ("write",))
    data = os.urandom(2 * MIB)
    target = f"{alice_dir}/e.bin"

    async def upload(h: u.UploadHeader, body: bytes = data) -> tuple[grpc.StatusCode, str]:
        code, error = await code_of(stub.Upload(messages(h, body), metadata=md))
        return code, error.details() or ""

    # INVALID_ARGUMENT, one violation per bad field.
    for h, field in [
        (header(target, "", data), "header.request_id"),
        (
            u.UploadHeader(system="local", path=target, request_id="e", resumable=True),
            "header.expected_size",
        ),
        (u.UploadHeader(system="local", path=target, offset=5), "header.offset"),
        (header(target, "e-0", data, offset=len(data) + 1), "header.offset"),
    ]:
        code, error = await code_of(stub.Upload(messages(h, b""), metadata=md))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and field in field_violations(error)
    for request, field in [
        (u.GetUploadStatusRequest(system="local"), "request_id"),
        (u.GetUploadStatusRequest(system="local", request_id="a b"), "request_id"),
        (u.GetUploadStatusRequest(system="", request_id="ok"), "system"),
    ]:
        code, error = await code_of(stub.GetUploadStatus(request, metadata=md))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and field in field_violations(error)
    unknown = u.GetUploadStatusRequest(system="nowhere", request_id="ok")
    code, _ = await code_of(stub.GetUploadStatus(unknown, metadata=md))
    assert code == grpc.StatusCode.NOT_FOUND
    # NOT_FOUND: nothing held under that id (continuing needs a held part; so does status).
    code, message = await upload(header(target, "e-none", data, MIB), data[MIB:])
    assert code == grpc.StatusCode.NOT_FOUND and "offset 0" in message
    code, _ = await code_of(status(stub, md, "e-none"))
    assert code == grpc.StatusCode.NOT_FOUND
    # FAILED_PRECONDITION: an offset other than the bytes held, which the message names.
    await interrupted(stub, md, header(target, "e-1", data), data[:MIB])
    code, message = await upload(header(target, "e-1", data, MIB + 5), data[MIB + 5 :])
    assert code == grpc.StatusCode.FAILED_PRECONDITION and f"holds {MIB} bytes" in message
    # ALREADY_EXISTS: the request id of an unfinished upload with another header.
    code, message = await upload(header(f"{alice_dir}/other.bin", "e-1", data))
    assert code == grpc.StatusCode.ALREADY_EXISTS and "request_id" in message
    # ABORTED: while a stream of that request id runs (the second waits, then gives up).
    gateway.utilities.resumable.active_wait = 0.3
    call = stub.Upload(metadata=md)
    await call.write(u.UploadRequest(header=header(target, "e-1", data, MIB)))
    await asyncio.sleep(0.5)  # the server has taken the request id
    code, message = await upload(header(target, "e-1", data, MIB), data[MIB:])
    assert code == grpc.StatusCode.ABORTED and "still running" in message
    code, _ = await code_of(status(stub, md, "e-1"))
    assert code == grpc.StatusCode.ABORTED
    for start in range(MIB, len(data), MIB):  # the running one completes normally
        await call.write(u.UploadRequest(chunk=u.UploadChunk(data=data[start : start + MIB])))
    await call.done_writing()
    assert (await call).sha256 == sha256(data) and Path(target).read_bytes() == data
    # GetUploadStatus needs the write scope, like Upload.
    code, _ = await code_of(status(stub, bearer(gateway, "alice", ("read",)), "e-1"))
    assert code == grpc.StatusCode.PERMISSION_DENIED


async def test_another_user_can_neither_see_nor_continue_alices_part(
    gateway: Gateway, stub: utilities_pb2_grpc.UtilitiesServiceStub, alice_dir: Path
) -> None:
    alice, bob = bearer(gateway, "alice", ("write",)), bearer(gateway, "bob", ("write",))
    data = os.urandom(2 * MIB)
    target = f"{alice_dir}/secret.bin"
    await interrupted(stub, alice, header(target, "shared-id", data), data[:MIB])
    code, _ = await code_of(status(stub, bob, "shared-id"))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = await code_of(
        stub.Upload(messages(header(target, "shared-id", data, MIB), data[MIB:]), metadata=bob)
    )
    assert code == grpc.StatusCode.NOT_FOUND
    held = await status(stub, alice, "shared-id")
    assert (held.size, held.sha256) == (MIB, sha256(data[:MIB]))
    assert not Path(target).exists()


async def test_kept_parts_expire_and_are_removed_as_their_user(
    slurm_cluster: None, gateway_factory: GatewayFactory, alice_dir: Path, tmp_path: Path
) -> None:
    config = fast_config(tmp_path)
    files = replace(config.files, upload_resume_retention=1.0, upload_sweep_interval=0.3)
    gateway = await gateway_factory(replace(config, files=files))
    md = bearer(gateway, "alice", ("write",))
    data = os.urandom(2 * MIB)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = utilities_pb2_grpc.UtilitiesServiceStub(channel)
        await interrupted(stub, md, header(f"{alice_dir}/x.bin", "x-1", data), data[:MIB])
        held = await status(stub, md, "x-1")
        assert held.size == MIB
        assert len(leftovers(alice_dir)) == 1
        for _ in range(100):
            if not leftovers(alice_dir):
                break
            await asyncio.sleep(0.05)
        assert leftovers(alice_dir) == []
        code, _ = await code_of(status(stub, md, "x-1"))
        assert code == grpc.StatusCode.NOT_FOUND


# --- the peer endpoint ----------------------------------------------------------------------


async def test_peer_write_file_resumes_with_held(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    require(os.geteuid() == 0, "privilege separation needs root")
    a, _, peer_id = await peer_pair(gateway_factory, tmp_path)
    peer_config = a.config.peer(peer_id)
    assert peer_config is not None
    peer = PeerEndpoint(peer_config)
    data = os.urandom(3 * MIB + 5)

    class Broke(Exception):
        pass

    async def breaking() -> AsyncIterator[bytes]:
        yield data[: 2 * MIB]
        await asyncio.sleep(0.3)  # the peer writes what it got
        raise Broke

    async def rest(offset: int) -> AsyncIterator[bytes]:
        yield data[offset:]

    try:
        with user_dir("bob") as bob_dir:
            target = str(bob_dir / "t.bin")
            assert await peer.held(target, "t-1") is None
            with pytest.raises(Broke):
                await peer.write_file(target, breaking(), size=len(data), mode=None,
                                      mtime_ns=None, verify=False, resume_key="t-1")  # fmt: skip
            held = None
            for _ in range(50):  # the peer winds the cancelled stream up
                held = await peer.held(target, "t-1")
                if held is not None:
                    break
                await asyncio.sleep(0.1)
            assert held == (2 * MIB, sha256(data[: 2 * MIB]))
            assert await peer.held(str(bob_dir / "elsewhere"), "t-1") is None
            written = await peer.write_file(
                target, rest(held[0]), size=len(data), mode=None, mtime_ns=None, verify=True,
                resume_key="t-1", offset=held[0],
            )  # fmt: skip
            assert (written.size, written.sha256) == (len(data), sha256(data))
            assert Path(target).read_bytes() == data and leftovers(bob_dir) == ["t.bin"]
            assert await peer.held(target, "t-1") is None  # completed
    finally:
        await peer.close()
