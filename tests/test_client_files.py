"""`client.files` against a real server: transfers verified by SHA-256 (with resume and
progress), the small file operations, commands, typed errors and the SyncClient."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from files_helpers import make_owned, user_dir

from conftest import bearer
from hpcgate.client import (
    AlreadyExists,
    Client,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    SyncClient,
    connect,
)
from hpcgate.client.files import CommandOutput, CommandResult, Files, Transferred
from hpcgate.server.app import Gateway
from hpcgate.v1 import utilities_pb2 as u

MIB = 1024 * 1024


def token_of(gateway: Gateway, user: str = "alice") -> str:
    return bearer(gateway, user, ("read", "write", "execute"))[0][1].removeprefix("Bearer ")


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[Client]:
    async with connect(f"127.0.0.1:{gateway.port}", token=token_of(gateway), system="local") as c:
        yield c


@pytest.fixture
def alice_dir() -> Iterator[Path]:
    with user_dir("alice") as path:
        yield path


class Recorder:
    """A progress callback that keeps every call (and can fail once past `fail_after`)."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls: list[tuple[int, int | None]] = []
        self.fail_after = fail_after

    def __call__(self, done: int, total: int | None) -> None:
        self.calls.append((done, total))
        if self.fail_after is not None and done > self.fail_after:
            raise KeyboardInterrupt("interrupted by the test")

    def assert_monotonic_to(self, size: int) -> None:
        done = [d for d, _ in self.calls]
        assert done == sorted(done), done
        assert self.calls[-1] == (size, size), self.calls[-3:]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def rpc_ended(caplog: pytest.LogCaptureFixture, method: str, code: str) -> None:
    """Waits for the server's record of a call to `method` that ended with `code` (written
    when its handler returns, which can be after the client has given up on the call)."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        ended = [getattr(r, "fields", {}) for r in caplog.records if r.name == "hpcgate.rpc"]
        if any(str(f.get("method")).endswith(method) and f.get("code") == code for f in ended):
            return
        assert asyncio.get_running_loop().time() < deadline, f"no {method} {code} in {ended}"
        await asyncio.sleep(0.01)


# --- transfers -------------------------------------------------------------------------


async def test_upload_and_download_round_trip_verified_with_progress(
    client: Client, alice_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hpcgate.rpc")
    content = os.urandom(3 * MIB + 12345)
    local = tmp_path / "data.bin"
    local.write_bytes(content)
    remote = f"{alice_dir}/data.bin"

    sent = Recorder()
    result = await client.files.upload(local, remote, mode=0o640, progress=sent)
    assert result == Transferred(str(local), remote, len(content), sha256(content))
    assert Path(remote).read_bytes() == content and Path(remote).stat().st_uid == 1001
    assert stat.S_IMODE(Path(remote).stat().st_mode) == 0o640
    sent.assert_monotonic_to(len(content))
    assert len(sent.calls) >= 4  # chunk by chunk, not once at the end

    received = Recorder()
    back = tmp_path / "back.bin"
    got = await client.files.download(remote, back, progress=received)
    assert got == Transferred(remote, str(back), len(content), sha256(content))
    assert back.read_bytes() == content and not Path(f"{back}.part").exists()
    received.assert_monotonic_to(len(content))
    assert received.calls[0] == (0, len(content))

    def stop(done: int, total: int | None) -> None:
        if done > MIB:
            raise ValueError("the caller gave up")

    with pytest.raises(ValueError, match="gave up"):  # the callback's own error, as it was
        await client.files.upload(local, f"{alice_dir}/stopped", progress=stop)
    # The client does not wait for the server: its Upload may not even have created its
    # temporary file yet. Once the handler has ended (its "rpc" record), nothing is left.
    await rpc_ended(caplog, "/Upload", "CANCELLED")
    assert sorted(os.listdir(alice_dir)) == ["data.bin"]  # nothing under the target name

    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert (await client.files.upload(empty, f"{alice_dir}/empty")).size == 0
    assert (await client.files.download(f"{alice_dir}/empty", tmp_path / "empty2")).size == 0
    assert (tmp_path / "empty2").read_bytes() == b""


async def test_download_resumes_from_its_part_file(
    client: Client, alice_dir: Path, tmp_path: Path
) -> None:
    content = os.urandom(3 * MIB + 777)
    remote = str(make_owned(alice_dir / "big", "alice", 0o600, content))
    local = tmp_path / "big"
    part = Path(f"{local}.part")

    with pytest.raises(KeyboardInterrupt):  # e.g. Ctrl-C after the first chunk
        await client.files.download(remote, local, progress=Recorder(fail_after=0))
    kept = part.stat().st_size
    assert 0 < kept < len(content) and not local.exists()
    assert part.read_bytes() == content[:kept]

    resumed = Recorder()
    result = await client.files.download(remote, local, progress=resumed)
    assert resumed.calls[0] == (kept, len(content))  # continued, not restarted
    resumed.assert_monotonic_to(len(content))
    assert result.sha256 == sha256(content) and local.read_bytes() == content
    assert not part.exists()

    # A .part of another version of the file (older mtime) is discarded, not continued.
    local.unlink()
    part.write_bytes(b"x" * 1000)
    os.utime(part, (1, 1))
    restarted = Recorder()
    await client.files.download(remote, local, progress=restarted)
    assert restarted.calls[0][0] == 0 and local.read_bytes() == content

    # Same version by its mtime but wrong bytes: the whole-file SHA-256 catches it.
    local.unlink()
    part.write_bytes(b"y" + content[1:1000])
    mtime = Path(remote).stat().st_mtime
    os.utime(part, (mtime, mtime))
    with pytest.raises(DataLoss) as lost:
        await client.files.download(remote, local)
    assert "SHA-256" in lost.value.message
    assert not part.exists() and not local.exists()  # the next attempt starts clean
    await client.files.download(remote, local, resume=False)
    assert local.read_bytes() == content


async def test_a_file_that_changes_while_uploading_never_appears(
    client: Client, alice_dir: Path, tmp_path: Path
) -> None:
    """The client hashes the file before sending it: bytes that differ from that hash
    (here rewritten after the first chunk) are refused before the file gets its name."""
    local = tmp_path / "moving.bin"
    local.write_bytes(os.urandom(4 * MIB))

    def rewrite(done: int, total: int | None) -> None:
        if 0 < done < 4 * MIB:
            with open(local, "r+b") as f:
                f.seek(3 * MIB)
                f.write(os.urandom(MIB))  # same size, other bytes

    with pytest.raises(InvalidArgument) as info:
        await client.files.upload(local, f"{alice_dir}/moving.bin", progress=rewrite)
    assert "expected_sha256" in {v.field.split(".")[-1] for v in info.value.violations}
    assert not Path(f"{alice_dir}/moving.bin").exists()


async def test_overwrite_false_refuses_existing_files(
    client: Client, alice_dir: Path, tmp_path: Path
) -> None:
    local = tmp_path / "f"
    local.write_bytes(b"new")
    remote = str(make_owned(alice_dir / "f", "alice", 0o644, b"old"))
    with pytest.raises(AlreadyExists):
        await client.files.upload(local, remote)
    assert Path(remote).read_bytes() == b"old"
    await client.files.upload(local, remote, overwrite=True)
    assert Path(remote).read_bytes() == b"new"

    existing = tmp_path / "existing"
    existing.write_bytes(b"mine")
    with pytest.raises(AlreadyExists):
        await client.files.download(remote, existing)
    assert existing.read_bytes() == b"mine"
    await client.files.download(remote, existing, overwrite=True, preserve=True)
    assert existing.read_bytes() == b"new"
    assert int(existing.stat().st_mtime) == int(Path(remote).stat().st_mtime)


async def test_recursive_upload_and_download_copy_whole_trees(
    client: Client, alice_dir: Path, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "empty-dir").mkdir()
    files = {"a.txt": b"alpha", ".hidden": b"h", "sub/b.bin": os.urandom(MIB + 3),
             "sub/deeper/c": b"", "sub/deeper/d.txt": b"delta"}  # fmt: skip
    for name, data in files.items():
        (tree / name).write_bytes(data)
    os.symlink("a.txt", tree / "link-to-a")
    os.chmod(tree / "sub", 0o750)  # noqa: S103 (a mode to preserve)
    total = sum(len(d) for d in files.values())

    remote = f"{alice_dir}/copy/of/tree"  # missing parents are created
    sent = Recorder()
    uploaded = await client.files.upload(tree, remote, recursive=True, preserve=True,
                                         progress=sent)  # fmt: skip
    assert sorted(t.destination for t in uploaded) == sorted(f"{remote}/{n}" for n in files)
    assert all(t.sha256 == sha256(files[t.destination[len(remote) + 1 :]]) for t in uploaded)
    sent.assert_monotonic_to(total)
    for name, data in files.items():
        assert Path(remote, name).read_bytes() == data
    assert os.readlink(f"{remote}/link-to-a") == "a.txt"
    assert Path(remote, "empty-dir").is_dir()
    assert stat.S_IMODE(Path(remote, "sub").stat().st_mode) == 0o750
    with pytest.raises(AlreadyExists):  # again, without overwrite
        await client.files.upload(tree, remote, recursive=True)
    await client.files.upload(tree, remote, recursive=True, overwrite=True)

    back = tmp_path / "back"
    received = Recorder()
    downloaded = await client.files.download(remote, back, recursive=True, preserve=True,
                                             progress=received)  # fmt: skip
    assert len(downloaded) == len(files)
    received.assert_monotonic_to(total)
    for name, data in files.items():
        assert (back / name).read_bytes() == data
    assert os.readlink(back / "link-to-a") == "a.txt" and (back / "empty-dir").is_dir()
    assert stat.S_IMODE((back / "sub").stat().st_mode) == 0o750
    assert not list(back.rglob("*.part"))
    with pytest.raises(FailedPrecondition):
        await client.files.download(f"{remote}/a.txt", tmp_path / "x", recursive=True)


class CuttingProxy:
    """A TCP proxy to the gateway whose connections can be cut (reset) once, mid-call."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.cut = False
        self.server: asyncio.Server | None = None
        self.ends: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> CuttingProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    def cut_once(self) -> None:
        if not self.cut:
            self.cut = True
            for end in self.ends:
                end.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.ends |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer),
                             return_exceptions=True)  # fmt: skip

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
        sink.close()


async def test_a_dropped_connection_is_retried_without_restarting_or_writing_twice(
    gateway: Gateway, alice_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Large enough that what is in flight when the connection is cut (HTTP/2 windows grow
    # to several MiB) cannot finish the transfer: with 6 MiB a fast run completed anyway.
    content = os.urandom(32 * MIB)
    local = tmp_path / "payload"
    local.write_bytes(content)
    remote = str(make_owned(alice_dir / "source", "alice", 0o644, content))
    offsets: list[int] = []  # where each Download attempt started
    fetch = Files._fetch

    async def recording(self: Files, remote: str, part: Any, *rest: Any) -> Any:
        offsets.append(part.size)
        return await fetch(self, remote, part, *rest)

    monkeypatch.setattr(Files, "_fetch", recording)
    for upload in (False, True):
        async with CuttingProxy(gateway.port) as proxy:
            progress = Recorder()

            def cut_midway(done: int, total: int | None, seen: Recorder = progress) -> None:
                seen(done, total)
                if done >= 2 * MIB:
                    proxy.cut_once()  # once 2 MiB were written (or sent)

            address = f"127.0.0.1:{proxy.port}"
            async with connect(address, token=token_of(gateway), system="local") as client:
                if upload:
                    done = await client.files.upload(local, f"{alice_dir}/up", progress=cut_midway)
                else:
                    done = await client.files.download(remote, tmp_path / "down",
                                                       progress=cut_midway)  # fmt: skip
            assert proxy.cut and done.sha256 == sha256(content)
            progress.assert_monotonic_to(len(content))
    assert len(offsets) == 2 and offsets[0] == 0 and offsets[1] >= 2 * MIB  # from its .part
    assert (tmp_path / "down").read_bytes() == content
    assert Path(f"{alice_dir}/up").read_bytes() == content


# --- the small operations ----------------------------------------------------------------


async def test_list_stat_mkdir_move_copy_remove(client: Client, alice_dir: Path) -> None:
    files = client.files
    base = str(alice_dir)
    made = await files.mkdir(f"{base}/a/b/c", parents=True)
    assert made.type == u.FILE_TYPE_DIRECTORY and made.path == f"{base}/a/b/c"
    await files.mkdir(f"{base}/a/b/c", parents=True)  # mkdir -p: exists is fine
    with pytest.raises(AlreadyExists):
        await files.mkdir(f"{base}/a")
    with pytest.raises(NotFound):
        await files.mkdir(f"{base}/missing/child")
    for name in ("n1", "n2", "n3", ".dot"):
        make_owned(alice_dir / name, "alice", 0o644, name.encode())

    names = [e.name async for e in files.list(base, page_size=2)]  # over several pages
    assert names == ["a", "n1", "n2", "n3"]
    hidden = [e.name async for e in files.list(base, hidden=True)]
    assert hidden == [".dot", "a", "n1", "n2", "n3"]
    entry = await files.stat(f"{base}/n1")
    assert (entry.type, entry.size, entry.owner, entry.mode) == (u.FILE_TYPE_FILE, 2, "alice",
                                                                  0o644)  # fmt: skip

    moved = await files.move(f"{base}/n1", f"{base}/a/moved")
    assert moved.path == f"{base}/a/moved" and not (alice_dir / "n1").exists()
    with pytest.raises(AlreadyExists):
        await files.move(f"{base}/n2", f"{base}/n3")
    await files.move(f"{base}/n2", f"{base}/n3", overwrite=True)
    assert (alice_dir / "n3").read_bytes() == b"n2"

    copied = await files.copy(f"{base}/a", f"{base}/a-copy", recursive=True)
    assert copied.files_copied == 1 and copied.bytes_copied == 2
    assert (alice_dir / "a-copy" / "moved").read_bytes() == b"n1"
    with pytest.raises(FailedPrecondition):
        await files.copy(f"{base}/a", f"{base}/a-copy2")  # a directory, not recursive

    with pytest.raises(FailedPrecondition):
        await files.remove(f"{base}/a")  # not empty
    await files.remove(f"{base}/a", recursive=True)
    assert not (alice_dir / "a").exists()
    with pytest.raises(NotFound):
        await files.remove(f"{base}/a")
    await files.remove(f"{base}/a", missing_ok=True)


async def test_chmod_symlink_checksum_and_views(client: Client, alice_dir: Path) -> None:
    files = client.files
    text = b"".join(f"line {i}\n".encode() for i in range(1, 21))
    path = str(make_owned(alice_dir / "lines.txt", "alice", 0o644, text))

    assert (await files.chmod(path, 0o600)).mode == 0o600
    assert (await files.chmod(path, "g+r")).mode == 0o640
    with pytest.raises(InvalidArgument):
        await files.chmod(path, "bogus")
    link = await files.symlink("lines.txt", f"{alice_dir}/link")
    assert (link.type, link.link_target) == (u.FILE_TYPE_SYMLINK, "lines.txt")
    followed = await files.stat(f"{alice_dir}/link", follow_symlinks=True)
    assert followed.type == u.FILE_TYPE_FILE and followed.size == len(text)
    with pytest.raises(AlreadyExists):
        await files.symlink("x", f"{alice_dir}/link")

    digest = await files.checksum(path)
    assert digest.hex_digest == sha256(text) and digest.size == len(text)
    md5 = await files.checksum(f"{alice_dir}/link", algorithm="md5")
    assert md5.hex_digest == hashlib.md5(text).hexdigest()  # noqa: S324
    with pytest.raises(InvalidArgument):
        await files.checksum(path, algorithm="crc32")

    assert (await files.head(path, lines=2)).data == b"line 1\nline 2\n"
    assert (await files.head(path, bytes=4)).data == b"line"
    tail = await files.tail(path, lines=1)
    assert tail.data == b"line 20\n" and tail.file_size == len(text)
    assert (await files.tail(path, bytes=3)).data == b"20\n"
    assert (await files.head(path, lines=0)).data == b"" == (await files.tail(path, bytes=0)).data
    view = await files.view(path, offset=7, length=6)
    assert (view.data, view.offset, view.truncated) == (b"line 2", 7, False)
    capped = await files.view(path, max_bytes=10)
    assert capped.truncated and capped.data == text[:10]


# --- commands ----------------------------------------------------------------------------


async def test_run_returns_exit_code_and_output(client: Client, alice_dir: Path) -> None:
    files = client.files
    result = await files.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert not result.ok and result.duration >= 0

    whoami = await files.run("id -un", cwd=str(alice_dir))
    assert whoami.ok and whoami.stdout == "alice\n"
    line = "pwd && cat && echo $X"
    here = await files.run(line, cwd=str(alice_dir), stdin="fed\n", shell=True, env={"X": "1"})  # noqa: S604
    assert here.stdout == f"{alice_dir}\nfed\n1\n"
    slow = await files.run(["sleep", "5"], timeout=0.5)
    assert slow.timed_out and not slow.ok

    events = [e async for e in files.run_stream(["sh", "-c", "echo a; echo b >&2"])]
    assert isinstance(events[-1], CommandResult) and events[-1].exit_code == 0
    assert CommandOutput("stdout", b"a\n") in events and CommandOutput("stderr", b"b\n") in events
    with pytest.raises(NotFound):
        await files.run(["no-such-program-here"])


# --- errors and the blocking client ------------------------------------------------------


async def test_errors_are_typed(client: Client, alice_dir: Path, tmp_path: Path) -> None:
    files = client.files
    with pytest.raises(NotFound):
        await files.stat(f"{alice_dir}/missing")
    with pytest.raises(NotFound):
        await files.download(f"{alice_dir}/missing", tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
    with pytest.raises(FailedPrecondition):
        await files.download(str(alice_dir), tmp_path / "a-dir")  # not a regular file
    with pytest.raises(InvalidArgument):
        await files.stat("relative/path")

    local = tmp_path / "mine"
    local.write_bytes(b"alice was here")
    with user_dir("bob") as bob_dir:
        secret = make_owned(bob_dir / "secret", "bob", 0o600, b"bob's")
        os.chmod(bob_dir, 0o755)  # noqa: S103 (the directory is readable, the file is not)
        with pytest.raises(PermissionDenied):
            await files.download(str(secret), tmp_path / "stolen")
        with pytest.raises(PermissionDenied):
            await files.head(str(secret))
        with pytest.raises(PermissionDenied):
            await files.upload(local, str(secret), overwrite=True)
        with pytest.raises(PermissionDenied):
            await files.upload(local, f"{bob_dir}/new")
        os.chmod(bob_dir, 0o700)
        with pytest.raises(PermissionDenied):
            _ = [e async for e in files.list(str(bob_dir))]
        assert secret.read_bytes() == b"bob's" and sorted(os.listdir(bob_dir)) == ["secret"]
    assert not (tmp_path / "stolen").exists()


async def test_sync_client_transfers_lists_and_runs(
    gateway: Gateway, alice_dir: Path, tmp_path: Path
) -> None:
    local = tmp_path / "sync.txt"
    local.write_bytes(b"blocking\n")

    def blocking() -> None:  # in a thread: the server's loop keeps running
        address = f"127.0.0.1:{gateway.port}"
        with SyncClient.connect(address, token=token_of(gateway), system="local") as sync:
            progress = Recorder()
            sent = sync.files.upload(local, f"{alice_dir}/sync.txt", progress=progress)
            assert (sent.size, sent.sha256) == (9, sha256(b"blocking\n"))
            assert progress.calls[-1] == (9, 9)
            assert [e.name for e in sync.files.list(str(alice_dir))] == ["sync.txt"]
            sync.files.download(f"{alice_dir}/sync.txt", tmp_path / "back.txt")
            assert sync.files.run(["cat", f"{alice_dir}/sync.txt"]).stdout == "blocking\n"
            with pytest.raises(NotFound):
                sync.files.stat(f"{alice_dir}/nothing")

    await asyncio.to_thread(blocking)
    assert (tmp_path / "back.txt").read_bytes() == b"blocking\n"
