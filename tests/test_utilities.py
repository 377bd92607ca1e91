"""UtilitiesService end to end: a real gateway on loopback, real users alice and bob, real
files in their homes; every operation runs in the caller's privsep worker."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from files_helpers import field_violations, make_owned, user_dir

from conftest import GatewayFactory, bearer, fast_config
from hpcgate.server import privsep
from hpcgate.server.app import Gateway
from hpcgate.v1 import utilities_pb2 as u
from hpcgate.v1 import utilities_pb2_grpc

RW = ("read", "write")


@pytest.fixture
async def files(gateway: Gateway) -> AsyncIterator[utilities_pb2_grpc.UtilitiesServiceStub]:
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


async def fails(call: object, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == code, info.value.details()
    return info.value


# --- metadata ----------------------------------------------------------------------


async def test_list_directory_describes_entries_with_hidden_and_pages(
    gateway: Gateway, files: utilities_pb2_grpc.UtilitiesServiceStub, alice_dir: Path
) -> None:
    md = bearer(gateway, "alice")
    make_owned(alice_dir / "b.txt", "alice", 0o640, b"hello")
    make_owned(alice_dir / ".hidden", "alice", 0o600, b"")
    make_owned(alice_dir / "a-dir", "alice", 0o750)
    os.symlink("b.txt", alice_dir / "c-link")
    os.lchown(alice_dir / "c-link", 1001, 1002)
    odd = os.fsencode(str(alice_dir)) + b"/d-\xff\xfe"
    with open(odd, "wb") as f:
        f.write(b"odd")

    listing = await files.ListDirectory(
        u.ListDirectoryRequest(system="local", path=str(alice_dir)), metadata=md
    )
    names = [e.name for e in listing.entries]
    assert names == ["a-dir", "b.txt", "c-link", "d-\ufffd\ufffd"]
    by_name = {e.name: e for e in listing.entries}
    b = by_name["b.txt"]
    assert (b.type, b.size, b.mode, b.mode_string) == (u.FILE_TYPE_FILE, 5, 0o640, "-rw-r-----")
    assert (b.owner, b.group, b.uid) == ("alice", "alice", 1001)
    assert b.path == f"{alice_dir}/b.txt" and b.mtime.seconds > 0
    assert by_name["a-dir"].type == u.FILE_TYPE_DIRECTORY
    link = by_name["c-link"]
    assert (link.type, link.link_target) == (u.FILE_TYPE_SYMLINK, "b.txt")
    odd_entry = by_name["d-\ufffd\ufffd"]
    assert odd_entry.name_bytes == b"d-\xff\xfe" and odd_entry.path_bytes == odd

    # A non-UTF-8 name is addressable by its bytes: stat, download, move to a sane name.
    st = await files.Stat(u.StatRequest(system="local", path_bytes=odd), metadata=md)
    assert st.entry.size == 3
    chunks = [
        m
        async for m in files.Download(
            u.DownloadRequest(system="local", path_bytes=odd), metadata=md
        )
    ]
    assert chunks[1].chunk.data == b"odd"
    await files.Move(
        u.MoveRequest(
            system="local", source_path_bytes=odd, destination_path=f"{alice_dir}/d-renamed"
        ),
        metadata=bearer(gateway, "alice", RW),
    )
    assert (alice_dir / "d-renamed").read_bytes() == b"odd"

    hidden = await files.ListDirectory(
        u.ListDirectoryRequest(
            system="local", path=str(alice_dir), show_hidden=True, follow_symlinks=True
        ),
        metadata=md,
    )
    by_name = {e.name: e for e in hidden.entries}
    assert ".hidden" in by_name
    assert by_name["c-link"].type == u.FILE_TYPE_FILE and by_name["c-link"].size == 5

    seen: list[str] = []
    token = ""
    while True:
        page = await files.ListDirectory(
            u.ListDirectoryRequest(
                system="local", path=str(alice_dir), show_hidden=True, page_size=2, page_token=token
            ),
            metadata=md,
        )
        assert len(page.entries) <= 2
        seen += [e.name for e in page.entries]
        token = page.next_page_token
        if not token:
            break
    assert seen == [".hidden", "a-dir", "b.txt", "c-link", "d-renamed"]


async def test_stat_lstat_and_follow(
    gateway: Gateway, files: utilities_pb2_grpc.UtilitiesServiceStub, alice_dir: Path
) -> None:
    md = bearer(gateway, "alice")
    make_owned(alice_dir / "f", "alice", 0o600, b"12345678")
    os.symlink(str(alice_dir / "f"), alice_dir / "l")
    lst = await files.Stat(u.StatRequest(system="local", path=f"{alice_dir}/l"), metadata=md)
    assert lst.entry.type == u.FILE_TYPE_SYMLINK and lst.entry.link_target == f"{alice_dir}/f"
    followed = await files.Stat(
        u.StatRequest(system="local", path=f"{alice_dir}/l", follow_symlinks=True), metadata=md
    )
    assert followed.entry.type == u.FILE_TYPE_FILE and followed.entry.size == 8
    error = await fails(
        files.Stat(u.StatRequest(system="local", path=f"{alice_dir}/missing"), metadata=md),
        grpc.StatusCode.NOT_FOUND,
    )
    assert "missing" in (error.details() or "")
    await fails(
        files.Stat(u.StatRequest(system="nowhere", path="/tmp"), metadata=md),
        grpc.StatusCode.NOT_FOUND,
    )


# --- changes -----------------------------------------------------------------------


async def test_make_directory_move_copy_remove(
    gateway: Gateway, files: utilities_pb2_grpc.UtilitiesServiceStub, alice_dir: Path
) -> None:
    md = bearer(gateway, "alice", RW)
    made = await files.MakeDirectory(
        u.MakeDirectoryRequest(system="local", path=f"{alice_dir}/x/y/z", parents=True, mode=0o750),
        metadata=md,
    )
    assert made.entry.mode == 0o750 and made.entry.owner == "alice"
    assert stat.S_IMODE((alice_dir / "x" / "y").stat().st_mode) == 0o750  # umask not applied
    again = await files.MakeDirectory(
        u.MakeDirectoryRequest(system="local", path=f"{alice_dir}/x/y/z", parents=True),
        metadata=md,
    )
    assert again.entry.type == u.FILE_TYPE_DIRECTORY
    await fails(
        files.MakeDirectory(
            u.MakeDirectoryRequest(system="local", path=f"{alice_dir}/x"), metadata=md
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    await fails(
        files.MakeDirectory(
            u.MakeDirectoryRequest(system="local", path=f"{alice_dir}/no/such"), metadata=md
        ),
        grpc.StatusCode.NOT_FOUND,
    )

    make_owned(alice_dir / "x" / "y" / "z" / "data", "alice", 0o640, b"payload")
    os.symlink("data", alice_dir / "x" / "y" / "z" / "link")
    copied = await files.Copy(
        u.CopyRequest(
            system="local",
            source_path=f"{alice_dir}/x",
            destination_path=f"{alice_dir}/x2",
            recursive=True,
            preserve=True,
        ),
        metadata=md,
    )
    assert copied.files_copied == 2 and copied.bytes_copied == 7  # data and link
    copy_of_data = alice_dir / "x2" / "y" / "z" / "data"
    assert copy_of_data.read_bytes() == b"payload"
    assert copy_of_data.stat().st_uid == 1001 and stat.S_IMODE(copy_of_data.stat().st_mode) == 0o640
    assert os.readlink(alice_dir / "x2" / "y" / "z" / "link") == "data"
    assert copy_of_data.stat().st_mtime_ns == (alice_dir / "x/y/z/data").stat().st_mtime_ns
    await fails(
        files.Copy(
            u.CopyRequest(
                system="local", source_path=f"{alice_dir}/x", destination_path=f"{alice_dir}/x3"
            ),
            metadata=md,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    await fails(
        files.Copy(
            u.CopyRequest(
                system="local",
                source_path=f"{alice_dir}/x/y/z/data",
                destination_path=f"{alice_dir}/x2/y/z/data",
            ),
            metadata=md,
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )

    moved = await files.Move(
        u.MoveRequest(
            system="local", source_path=f"{alice_dir}/x2", destination_path=f"{alice_dir}/moved"
        ),
        metadata=md,
    )
    assert moved.entry.path == f"{alice_dir}/moved" and not (alice_dir / "x2").exists()
    make_owned(alice_dir / "other", "alice", 0o600, b"other")
    await fails(
        files.Move(
            u.MoveRequest(
                system="local",
                source_path=f"{alice_dir}/other",
                destination_path=f"{alice_dir}/moved/y/z/data",
            ),
            metadata=md,
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    await files.Move(
        u.MoveRequest(
            system="local",
            source_path=f"{alice_dir}/other",
            destination_path=f"{alice_dir}/moved/y/z/data",
            overwrite=True,
        ),
        metadata=md,
    )
    assert (alice_dir / "moved/y/z/data").read_bytes() == b"other"
    await fails(
        files.Move(
            u.MoveRequest(
                system="local",
                source_path=f"{alice_dir}/moved",
                destination_path=f"{alice_dir}/moved/y/inside",
            ),
            metadata=md,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )

    await fails(
        files.Remove(u.RemoveRequest(system="local", path=f"{alice_dir}/moved"), metadata=md),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    await files.Remove(
        u.RemoveRequest(system="local", path=f"{alice_dir}/moved", recursive=True), metadata=md
    )
    assert not (alice_dir / "moved").exists()
    await fails(
        files.Remove(u.RemoveRequest(system="local", path=f"{alice_dir}/moved"), metadata=md),
        grpc.StatusCode.NOT_FOUND,
    )
    await files.Remove(
        u.RemoveRequest(system="local", path=f"{alice_dir}/moved", allow_missing=True), metadata=md
    )
    await fails(
        files.Remove(
            u.RemoveRequest(system="local", path="/home/alice", recursive=True), metadata=md
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert Path("/home/alice").is_dir()


def tree_with_locked_directories(root: Path) -> Path:
    """alice's tree: nested mode-000 directories holding files, a read-only directory, an
    empty mode-000 directory, and a symlink to a mode-000 directory of hers outside it."""
    make_owned(root, "alice", 0o500)  # read-only: its entries cannot be unlinked as is
    a = make_owned(root / "a", "alice", 0o700)
    b = make_owned(a / "b", "alice", 0o700)
    make_owned(b / "f", "alice", 0o000, b"deep")
    make_owned(a / "g", "alice", 0o600, b"shallow")
    make_owned(root / "empty", "alice", 0o000)
    os.symlink("../outside", root / "link")
    os.lchown(root / "link", 1001, 1002)
    os.chmod(b, 0o000)
    os.chmod(a, 0o000)
    return root


async def test_recursive_remove_unlocks_the_callers_own_mode_000_directories(
    gateway: Gateway, files: utilities_pb2_grpc.UtilitiesServiceStub, alice_dir: Path
) -> None:
    """Issue 11: `rm -rf` as alice cannot remove her own non-empty mode-000 directories
    (checked below); Remove gives each directory of hers it has to empty u+rwx first."""
    outside = make_owned(alice_dir / "outside", "alice", 0o700)
    make_owned(outside / "keep", "alice", 0o600, b"keep")
    os.chmod(outside, 0o000)
    by_rm = tree_with_locked_directories(alice_dir / "by-rm")
    rm = subprocess.run(
        ["runuser", "-u", "alice", "--", "rm", "-rf", str(by_rm)], capture_output=True, text=True
    )
    assert rm.returncode != 0 and "Permission denied" in rm.stderr and by_rm.exists()

    tree = tree_with_locked_directories(alice_dir / "tree")
    md = bearer(gateway, "alice", RW)
    await files.Remove(u.RemoveRequest(system="local", path=str(tree), recursive=True), metadata=md)
    assert not os.path.lexists(tree)
    # The link was removed, not followed: its target keeps its mode and contents.
    assert stat.S_IMODE(outside.stat().st_mode) == 0o000
    assert (outside / "keep").read_bytes() == b"keep"
    # What rm -rf left behind goes the same way.
    await files.Remove(
        u.RemoveRequest(system="local", path=str(by_rm), recursive=True), metadata=md
    )
    assert sorted(p.name for p in alice_dir.iterdir()) == ["outside"]


async def test_recursive_remove_never_unlocks_a_directory_of_someone_else(
    gateway: Gateway, files: utilities_pb2_grpc.UtilitiesServiceStub, alice_dir: Path
) -> None:
    """Attack: bob's directories inside alice's tree (one open, one mode 000). Remove as
    alice takes what is hers, leaves bob's as they were (modes included) and answers
    PERMISSION_DENIED naming the directory and its owner."""
    tree = make_owned(alice_dir / "tree", "alice", 0o700)
    mine = make_owned(tree / "mine", "alice", 0o700)
    make_owned(mine / "f", "alice", 0o600, b"alice's")
    os.chmod(mine, 0o000)
    open_dir = make_owned(tree / "bobs-open", "bob", 0o755)
    make_owned(open_dir / "f", "bob", 0o644, b"bob's")
    locked = make_owned(tree / "bobs-locked", "bob", 0o700)
    make_owned(locked / "f", "bob", 0o600, b"bob's secret")
    os.chmod(locked, 0o000)
    md = bearer(gateway, "alice", RW)
    for _ in range(2):  # the second time only bob's directories are left
        error = await fails(
            files.Remove(
                u.RemoveRequest(system="local", path=str(tree), recursive=True), metadata=md
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        details = error.details() or ""
        assert details.startswith(f"removing {tree}: Permission denied"), details
        assert "belongs to bob, not you" in details and "ask bob" in details, details
        assert sorted(p.name for p in tree.iterdir()) == ["bobs-locked", "bobs-open"]
        assert stat.S_IMODE(open_dir.stat().st_mode) == 0o755
        assert stat.S_IMODE(locked.stat().st_mode) == 0o000
        assert (open_dir / "f").read_bytes() == b"bob's"
        assert (locked / "f").read_bytes() == b"bob's secret"
    # Bob's directory given directly: refused the same way, still untouched.
    error = await fails(
        files.Remove(
            u.RemoveRequest(system="local", path=str(locked), recursive=True), metadata=md
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert f"{locked} belongs to bob" in (error.details() or "")
    assert stat.S_IMODE(locked.stat().st_mode) == 0o000
    error = await fails(
        files.Remove(
            u.RemoveRequest(system="local", path=str(open_dir), recursive=True), metadata=md
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert f"{open_dir}/f is in {open_dir}, which belongs to bob" in (error.details() or "")
    assert (open_dir / "f").read_bytes() == b"bob's"


async def test_change_mode_and_symlink(
    gateway: Gateway, files: utilities_pb2_grpc.UtilitiesServiceStub, alice_dir: Path
) -> None:
    md = bearer(gateway, "alice", RW)
    path = make_owned(alice_dir / "script", "alice", 0o600, b"#!/bin/sh\n")
    bits = await files.ChangeMode(
        u.ChangeModeRequest(system="local", path=str(path), mode_bits=0o750), metadata=md
    )
    assert bits.entry.mode == 0o750 and bits.entry.mode_string == "-rwxr-x---"
    symbolic = await files.ChangeMode(
        u.ChangeModeRequest(system="local", path=str(path), mode_string="g-x,o+r"), metadata=md
    )
    assert symbolic.entry.mode == 0o744
    octal = await files.ChangeMode(
        u.ChangeModeRequest(system="local", path=str(path), mode_string="600"), metadata=md
    )
    assert octal.entry.mode == 0o600
    error = await fails(
        files.ChangeMode(
            u.ChangeModeRequest(system="local", path=str(path), mode_string="u+q"), metadata=md
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "mode_string" in field_violations(error)
    await fails(
        files.ChangeMode(
            u.ChangeModeRequest(system="local", path="/etc/passwd", mode_bits=0o777), metadata=md
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )

    link = await files.CreateSymlink(
        u.CreateSymlinkRequest(system="local", target="script", link_path=f"{alice_dir}/ln"),
        metadata=md,
    )
    assert link.entry.type == u.FILE_TYPE_SYMLINK and link.entry.link_target == "script"
    assert os.lstat(alice_dir / "ln").st_uid == 1001
    await fails(
        files.CreateSymlink(
            u.CreateSymlinkRequest(system="local", target="x", link_path=f"{alice_dir}/ln"),
            metadata=md,
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )


# --- content -----------------------------------------------------------------------


async def test_checksum_and_view(
    gateway: Gateway, files: utilities_pb2_grpc.UtilitiesServiceStub, alice_dir: Path
) -> None:
    md = bearer(gateway, "alice")
    text = b"".join(b"line %d\n" % i for i in range(1, 101))
    path = str(make_owned(alice_dir / "log", "alice", 0o600, text))
    for algorithm, name in [
        (u.CHECKSUM_ALGORITHM_UNSPECIFIED, "sha256"),
        (u.CHECKSUM_ALGORITHM_SHA512, "sha512"),
        (u.CHECKSUM_ALGORITHM_MD5, "md5"),
        (u.CHECKSUM_ALGORITHM_BLAKE2B, "blake2b"),
    ]:
        result = await files.Checksum(
            u.ChecksumRequest(system="local", path=path, algorithm=algorithm), metadata=md
        )
        assert result.hex_digest == hashlib.new(name, text).hexdigest()
        assert result.size == len(text) and result.algorithm != 0
    await fails(
        files.Checksum(u.ChecksumRequest(system="local", path=str(alice_dir)), metadata=md),
        grpc.StatusCode.FAILED_PRECONDITION,
    )

    head = await files.View(u.ViewRequest(system="local", path=path, head_lines=2), metadata=md)
    assert head.data == b"line 1\nline 2\n" and not head.truncated and head.file_size == len(text)
    tail = await files.View(u.ViewRequest(system="local", path=path, tail_lines=2), metadata=md)
    assert tail.data == b"line 99\nline 100\n" and tail.offset == len(text) - 17
    ranged = await files.View(
        u.ViewRequest(system="local", path=path, byte_range=u.ByteRange(offset=7, length=7)),
        metadata=md,
    )
    assert ranged.data == b"line 2\n" and ranged.offset == 7
    last = await files.View(
        u.ViewRequest(system="local", path=path, byte_range=u.ByteRange(offset=-9)), metadata=md
    )
    assert last.data == b"line 100\n"
    capped = await files.View(
        u.ViewRequest(system="local", path=path, tail_lines=50, max_bytes=20), metadata=md
    )
    assert capped.truncated and capped.max_bytes == 20 and capped.data == text[-20:]
    capped_head = await files.View(
        u.ViewRequest(system="local", path=path, max_bytes=10), metadata=md
    )
    assert capped_head.truncated and capped_head.data == text[:10]
    error = await fails(
        files.View(u.ViewRequest(system="local", path=path, head_lines=0), metadata=md),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "head_lines" in field_violations(error)


async def download(
    files: utilities_pb2_grpc.UtilitiesServiceStub,
    md: list[tuple[str, str]],
    path: str,
    offset: int = 0,
    chunk_size: int = 0,
) -> tuple[u.DownloadHeader, bytes, u.DownloadTrailer]:
    messages = [
        m
        async for m in files.Download(
            u.DownloadRequest(system="local", path=path, offset=offset, chunk_size=chunk_size),
            metadata=md,
        )
    ]
    assert messages[0].WhichOneof("kind") == "header"
    assert messages[-1].WhichOneof("kind") == "trailer"
    data = b"".join(m.chunk.data for m in messages[1:-1])
    return messages[0].header, data, messages[-1].trailer


async def test_download_in_chunks_and_resume_from_an_offset(
    gateway: Gateway, files: utilities_pb2_grpc.UtilitiesServiceStub, alice_dir: Path
) -> None:
    md = bearer(gateway, "alice")
    content = os.urandom(300_000)
    path = str(make_owned(alice_dir / "blob", "alice", 0o640, content))
    header, data, trailer = await download(files, md, path, chunk_size=65536)
    assert header.size == len(content) and header.mode == 0o640
    assert data == content and trailer.sha256 == hashlib.sha256(content).hexdigest()
    _, rest, trailer2 = await download(files, md, path, offset=200_000, chunk_size=4096)
    assert rest == content[200_000:] and trailer2.sha256 == trailer.sha256
    _, nothing, _ = await download(files, md, path, offset=len(content))
    assert nothing == b""
    error = await fails(
        download(files, md, path, offset=len(content) + 1), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "offset" in field_violations(error)
    error = await fails(
        download(files, md, path, chunk_size=64 * 1024 * 1024), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "chunk_size" in field_violations(error)


async def upload_messages(
    header: u.UploadHeader, chunks: list[bytes]
) -> AsyncIterator[u.UploadRequest]:
    yield u.UploadRequest(header=header)
    for chunk in chunks:
        yield u.UploadRequest(chunk=u.UploadChunk(data=chunk))


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_upload_verifies_then_renames_into_place(
    gateway: Gateway, files: utilities_pb2_grpc.UtilitiesServiceStub, alice_dir: Path
) -> None:
    md = bearer(gateway, "alice", RW)
    target = f"{alice_dir}/up.bin"
    data = os.urandom(200_000)
    digest = hashlib.sha256(data).hexdigest()
    header = u.UploadHeader(
        system="local", path=target, expected_size=len(data), expected_sha256=digest
    )
    response = await files.Upload(
        upload_messages(header, [data[:100_000], data[100_000:]]), metadata=md
    )
    assert (response.size, response.sha256, response.path) == (len(data), digest, target)
    written = Path(target)
    assert written.read_bytes() == data
    assert (written.stat().st_uid, stat.S_IMODE(written.stat().st_mode)) == (1001, 0o644)

    await fails(
        files.Upload(upload_messages(header, [data]), metadata=md), grpc.StatusCode.ALREADY_EXISTS
    )
    # Checksum mismatch while overwriting: the old content stays, nothing else is left.
    bad = u.UploadHeader(system="local", path=target, overwrite=True, expected_sha256="0" * 64)
    error = await fails(
        files.Upload(upload_messages(bad, [b"new"]), metadata=md), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "header.expected_sha256" in field_violations(error)
    assert written.read_bytes() == data and leftovers(alice_dir) == ["up.bin"]
    short = u.UploadHeader(system="local", path=f"{alice_dir}/short", expected_size=10)
    await fails(
        files.Upload(upload_messages(short, [b"123"]), metadata=md),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert leftovers(alice_dir) == ["up.bin"]
    # A given modification time is kept (for transfers that preserve it).
    stamped = u.UploadHeader(system="local", path=f"{alice_dir}/stamped")
    stamped.mtime.FromSeconds(1_600_000_000)
    await files.Upload(upload_messages(stamped, [b"old"]), metadata=md)
    assert (alice_dir / "stamped").stat().st_mtime == 1_600_000_000
    (alice_dir / "stamped").unlink()
    # Overwrite keeps the existing mode unless one is given.
    os.chmod(target, 0o600)
    again = u.UploadHeader(system="local", path=target, overwrite=True)
    await files.Upload(upload_messages(again, [b"v2"]), metadata=md)
    assert written.read_bytes() == b"v2" and stat.S_IMODE(written.stat().st_mode) == 0o600
    # A header that is not first, and a second header, are refused.
    error = await fails(
        files.Upload(upload_messages(u.UploadHeader(), []), metadata=md),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_upload_request_id_is_idempotent(
    gateway: Gateway, files: utilities_pb2_grpc.UtilitiesServiceStub, alice_dir: Path
) -> None:
    md = bearer(gateway, "alice", RW)
    header = u.UploadHeader(system="local", path=f"{alice_dir}/once", request_id="req-1")
    first = await files.Upload(upload_messages(header, [b"first"]), metadata=md)
    (alice_dir / "once").write_bytes(b"changed since")
    repeat = await files.Upload(upload_messages(header, [b"first"]), metadata=md)
    assert repeat == first and (alice_dir / "once").read_bytes() == b"changed since"
    other = u.UploadHeader(system="local", path=f"{alice_dir}/twice", request_id="req-1")
    await fails(
        files.Upload(upload_messages(other, [b"x"]), metadata=md), grpc.StatusCode.ALREADY_EXISTS
    )


async def test_interrupted_upload_leaves_nothing_under_the_target_name(
    gateway: Gateway, alice_dir: Path
) -> None:
    md = bearer(gateway, "alice", RW)
    import asyncio

    async def endless() -> AsyncIterator[u.UploadRequest]:
        yield u.UploadRequest(header=u.UploadHeader(system="local", path=f"{alice_dir}/cut"))
        while True:
            yield u.UploadRequest(chunk=u.UploadChunk(data=b"x" * 65536))
            await asyncio.sleep(0.01)

    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = utilities_pb2_grpc.UtilitiesServiceStub(channel)
        call = stub.Upload(endless(), metadata=md)
        deadline = asyncio.get_running_loop().time() + 10
        while not any(n.endswith(".part") for n in leftovers(alice_dir)):
            assert asyncio.get_running_loop().time() < deadline, "no temporary file appeared"
            await asyncio.sleep(0.05)
        call.cancel()
    for _ in range(100):  # the server notices the cancellation and removes the temp file
        if not leftovers(alice_dir):
            break
        await asyncio.sleep(0.05)
    assert leftovers(alice_dir) == []


async def test_upload_cancelled_while_its_temp_file_is_created_leaves_nothing(
    gateway: Gateway, alice_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client goes away while the worker creates the temporary file (its answer, with
    the file's name, arrives after the cancellation): the file is removed all the same."""
    md = bearer(gateway, "alice", RW)
    begun, release = asyncio.Event(), asyncio.Event()
    begin = privsep.UserWorker.upload_begin

    async def late_answer(self: privsep.UserWorker, *args: Any, **kwargs: Any) -> Any:
        result, fd = await begin(self, *args, **kwargs)  # the file exists from here on
        begun.set()
        try:
            await asyncio.wait_for(release.wait(), 10)
        except BaseException:
            os.close(fd)  # a lost answer: its descriptor is closed, as the broker does
            raise
        return result, fd

    monkeypatch.setattr(privsep.UserWorker, "upload_begin", late_answer)

    async def header_then_wait() -> AsyncIterator[u.UploadRequest]:
        yield u.UploadRequest(header=u.UploadHeader(system="local", path=f"{alice_dir}/late"))
        await asyncio.Event().wait()

    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = utilities_pb2_grpc.UtilitiesServiceStub(channel)
        call = stub.Upload(header_then_wait(), metadata=md)
        await asyncio.wait_for(begun.wait(), 10)
        assert [n for n in leftovers(alice_dir) if n.endswith(".part")], leftovers(alice_dir)
        call.cancel()
        await asyncio.sleep(0.5)  # the server's handler is cancelled before the answer comes
        release.set()
    for _ in range(100):
        if not leftovers(alice_dir):
            break
        await asyncio.sleep(0.05)
    assert leftovers(alice_dir) == []


async def test_upload_limit_is_enforced_while_streaming(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path, alice_dir: Path
) -> None:
    base = fast_config(tmp_path)
    gateway = await gateway_factory(replace(base, files=replace(base.files, upload_max_bytes=1000)))
    md = bearer(gateway, "alice", RW)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = utilities_pb2_grpc.UtilitiesServiceStub(channel)
        header = u.UploadHeader(system="local", path=f"{alice_dir}/big")
        await fails(
            stub.Upload(upload_messages(header, [b"x" * 600, b"x" * 600]), metadata=md),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
        announced = u.UploadHeader(system="local", path=f"{alice_dir}/big", expected_size=5000)
        await fails(
            stub.Upload(upload_messages(announced, []), metadata=md),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
    assert leftovers(alice_dir) == []


async def test_each_rpcs_documented_wrong_type_and_argument_errors(
    gateway: Gateway, files: utilities_pb2_grpc.UtilitiesServiceStub, alice_dir: Path
) -> None:
    """The Errors lines of utilities.proto not exercised above, one real call each."""
    md = bearer(gateway, "alice", RW)
    a_file = str(make_owned(alice_dir / "file", "alice", 0o600, b"data"))
    a_dir = str(make_owned(alice_dir / "dir", "alice", 0o700))
    make_owned(alice_dir / "dir" / "inside", "alice", 0o600, b"x")
    local = "local"
    wrong_type = [
        files.ListDirectory(u.ListDirectoryRequest(system=local, path=a_file), metadata=md),
        files.View(u.ViewRequest(system=local, path=a_dir), metadata=md),
        download(files, md, a_dir),
        files.Upload(
            upload_messages(u.UploadHeader(system=local, path=a_dir, overwrite=True), [b"x"]),
            metadata=md,
        ),
        # A directory may not replace a file, nor a file a directory.
        files.Move(
            u.MoveRequest(system=local, source_path=a_dir, destination_path=a_file, overwrite=True),
            metadata=md,
        ),
        files.Move(
            u.MoveRequest(system=local, source_path=a_file, destination_path=a_dir, overwrite=True),
            metadata=md,
        ),
    ]
    for call in wrong_type:
        await fails(call, grpc.StatusCode.FAILED_PRECONDITION)
    # mkdir -p over a file.
    await fails(
        files.MakeDirectory(
            u.MakeDirectoryRequest(system=local, path=f"{a_file}", parents=True), metadata=md
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    error = await fails(
        files.Checksum(u.ChecksumRequest(system=local, path=a_file, algorithm=99), metadata=md),  # type: ignore[arg-type]
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert set(field_violations(error)) == {"algorithm"}
    error = await fails(
        files.ListDirectory(
            u.ListDirectoryRequest(system=local, path=a_dir, page_token="zzz"), metadata=md
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert set(field_violations(error)) == {"page_token"}

    async def header_twice() -> AsyncIterator[u.UploadRequest]:
        header = u.UploadHeader(system=local, path=f"{alice_dir}/twice")
        yield u.UploadRequest(header=header)
        yield u.UploadRequest(chunk=u.UploadChunk(data=b"x"))
        yield u.UploadRequest(header=header)

    await fails(files.Upload(header_twice(), metadata=md), grpc.StatusCode.INVALID_ARGUMENT)
    assert leftovers(alice_dir) == ["dir", "file"]
    assert (alice_dir / "file").read_bytes() == b"data"


async def test_size_limits_time_limits_and_a_full_filesystem(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path, alice_dir: Path
) -> None:
    """RESOURCE_EXHAUSTED for Copy and a cross-filesystem Move over the synchronous limit
    (pointing to StartTransfer) and for a full filesystem (a real 64 KiB tmpfs);
    DEADLINE_EXCEEDED for a Checksum over the operation time limit."""
    base = fast_config(tmp_path)
    limited = await gateway_factory(
        replace(base, files=replace(base.files, copy_max_bytes=1000, copy_max_files=5))
    )
    hurried = await gateway_factory(replace(base, files=replace(base.files, operation_timeout=0.3)))
    make_owned(alice_dir / "big", "alice", 0o600, os.urandom(4000))
    tree = make_owned(alice_dir / "tree", "alice", 0o700)
    for i in range(8):
        make_owned(tree / f"f{i}", "alice", 0o600, b"small")
    shm = f"/dev/shm/hpcgate-test-{os.urandom(4).hex()}"  # another filesystem than /home
    small = make_owned(alice_dir / "small", "alice", 0o700)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,uid=1001,gid=1002,mode=0700", "tmpfs",
         str(small)], check=True,
    )  # fmt: skip
    sparse = alice_dir / "sparse"
    with open(sparse, "wb") as f:
        f.truncate(4 * 1024**3)  # 4 GiB to hash, no disk used
    os.chown(sparse, 1001, 1002)
    md = bearer(limited, "alice", RW)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{limited.port}") as channel:
            stub = utilities_pb2_grpc.UtilitiesServiceStub(channel)
            for call in (
                stub.Copy(u.CopyRequest(system="local", source_path=f"{alice_dir}/big",
                                        destination_path=f"{alice_dir}/big2"), metadata=md),
                stub.Copy(u.CopyRequest(system="local", source_path=str(tree), recursive=True,
                                        destination_path=f"{alice_dir}/tree2"), metadata=md),
                stub.Move(u.MoveRequest(system="local", source_path=f"{alice_dir}/big",
                                        destination_path=shm), metadata=md),
            ):  # fmt: skip
                error = await fails(call, grpc.StatusCode.RESOURCE_EXHAUSTED)
                assert "StartTransfer" in (error.details() or ""), error.details()
            assert not os.path.lexists(shm) and (alice_dir / "big").stat().st_size == 4000
            error = await fails(
                stub.Upload(
                    upload_messages(
                        u.UploadHeader(system="local", path=f"{small}/upload"),
                        [os.urandom(32 * 1024) for _ in range(4)],
                    ),
                    metadata=md,
                ),
                grpc.StatusCode.RESOURCE_EXHAUSTED,
            )
            assert "full" in (error.details() or ""), error.details()
            assert leftovers(small) == []  # the temporary file went too
        async with grpc.aio.insecure_channel(f"127.0.0.1:{hurried.port}") as channel:
            stub = utilities_pb2_grpc.UtilitiesServiceStub(channel)
            error = await fails(
                stub.Checksum(
                    u.ChecksumRequest(system="local", path=str(sparse)),
                    metadata=bearer(hurried, "alice"),
                ),
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )
            assert "Download" in (error.details() or ""), error.details()
    finally:
        subprocess.run(["umount", str(small)], check=False)
        shutil.rmtree(shm, ignore_errors=True)
    assert sorted(p.name for p in alice_dir.iterdir()) == ["big", "small", "sparse", "tree"]


# --- users and escapes ---------------------------------------------------------------


async def test_alice_cannot_touch_bobs_private_files(
    gateway: Gateway, files: utilities_pb2_grpc.UtilitiesServiceStub, bob_dir: Path
) -> None:
    secret = make_owned(bob_dir / "secret", "bob", 0o600, b"bob's")
    os.chmod(bob_dir, 0o755)  # even with a readable directory, the file stays bob's  # noqa: S103
    md = bearer(gateway, "alice", RW)
    denied = grpc.StatusCode.PERMISSION_DENIED
    await fails(download(files, md, str(secret)), denied)
    await fails(files.View(u.ViewRequest(system="local", path=str(secret)), metadata=md), denied)
    await fails(
        files.Checksum(u.ChecksumRequest(system="local", path=str(secret)), metadata=md), denied
    )
    overwrite = u.UploadHeader(system="local", path=str(secret), overwrite=True)
    await fails(files.Upload(upload_messages(overwrite, [b"alice was here"]), metadata=md), denied)
    await fails(
        files.Remove(u.RemoveRequest(system="local", path=str(secret)), metadata=md), denied
    )
    await fails(
        files.Move(
            u.MoveRequest(system="local", source_path=str(secret), destination_path="/tmp/stolen"),
            metadata=md,
        ),
        denied,
    )
    await fails(
        files.ChangeMode(
            u.ChangeModeRequest(system="local", path=str(secret), mode_bits=0o666), metadata=md
        ),
        denied,
    )
    os.chmod(bob_dir, 0o700)
    await fails(
        files.ListDirectory(u.ListDirectoryRequest(system="local", path=str(bob_dir)), metadata=md),
        denied,
    )
    await fails(
        files.ListDirectory(u.ListDirectoryRequest(system="local", path="/home/bob"), metadata=md),
        denied,
    )
    assert secret.read_bytes() == b"bob's" and stat.S_IMODE(secret.stat().st_mode) == 0o600
    # And the other way round: bob reads his own file.
    _, data, _ = await download(files, bearer(gateway, "bob"), str(secret))
    assert data == b"bob's"


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("relative/path", "absolute"),
        ("/home/alice/../bob", "'..'"),
        ("/home/./alice", "'..'"),
        ("/home//alice", "empty"),
        ("/home/alice/", "trailing"),
        ("/home/al\0ice", "NUL"),
        ("/" + "a" * 256, "255"),
        ("/" + "/".join(["abcdefgh"] * 460), "4095"),
        ("", "required"),
    ],
)
async def test_bad_paths_are_invalid_argument(
    gateway: Gateway, files: utilities_pb2_grpc.UtilitiesServiceStub, path: str, why: str
) -> None:
    error = await fails(
        files.Stat(u.StatRequest(system="local", path=path), metadata=bearer(gateway, "alice")),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert why in field_violations(error)["path"]


async def test_writes_need_the_write_scope(
    gateway: Gateway, files: utilities_pb2_grpc.UtilitiesServiceStub, alice_dir: Path
) -> None:
    await fails(
        files.MakeDirectory(
            u.MakeDirectoryRequest(system="local", path=f"{alice_dir}/d"),
            metadata=bearer(gateway, "alice", ("read",)),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert not (alice_dir / "d").exists()


async def test_allowed_roots_are_checked_on_resolved_paths(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path, alice_dir: Path
) -> None:
    base = fast_config(tmp_path)
    system = replace(base.systems[0], allowed_roots=("~", "/tmp/hpcgate-roots-{user}"))
    gateway = await gateway_factory(replace(base, systems=(system,)))
    md = bearer(gateway, "alice", RW)
    os.symlink("/etc", alice_dir / "etc-link")
    os.symlink("/etc/hostname", alice_dir / "hostname-link")
    sibling = (
        make_owned(Path("/home/alice2-test"), "alice", 0o755)
        if not Path("/home/alice2-test").exists()
        else Path("/home/alice2-test")
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            stub = utilities_pb2_grpc.UtilitiesServiceStub(channel)
            denied = grpc.StatusCode.PERMISSION_DENIED
            # Readable by alice's own permissions, but outside the roots:
            await fails(
                stub.Stat(u.StatRequest(system="local", path="/etc/hostname"), metadata=md), denied
            )
            # Through a symlink inside her home:
            await fails(download(stub, md, f"{alice_dir}/hostname-link"), denied)
            await fails(
                stub.ListDirectory(
                    u.ListDirectoryRequest(system="local", path=f"{alice_dir}/etc-link"),
                    metadata=md,
                ),
                denied,
            )
            await fails(
                stub.Stat(
                    u.StatRequest(
                        system="local", path=f"{alice_dir}/etc-link", follow_symlinks=True
                    ),
                    metadata=md,
                ),
                denied,
            )
            # The link itself (lstat) is inside and fine:
            link = await stub.Stat(
                u.StatRequest(system="local", path=f"{alice_dir}/etc-link"), metadata=md
            )
            assert link.entry.link_target == "/etc"
            # A prefix is not a parent: /home/alice2-test is not under /home/alice.
            error = await fails(
                stub.ListDirectory(
                    u.ListDirectoryRequest(system="local", path=str(sibling)), metadata=md
                ),
                denied,
            )
            assert "outside" in (error.details() or "")
            # Writing through a link to a directory outside is refused too.
            await fails(
                stub.Upload(
                    upload_messages(
                        u.UploadHeader(system="local", path=f"{alice_dir}/etc-link/evil"), [b"x"]
                    ),
                    metadata=md,
                ),
                denied,
            )
            # Inside the roots everything works.
            ok = await stub.ListDirectory(
                u.ListDirectoryRequest(system="local", path=str(alice_dir)), metadata=md
            )
            assert {e.name for e in ok.entries} == {"etc-link", "hostname-link"}
            listed = await stub.ListDirectory(
                u.ListDirectoryRequest(system="local", path=str(alice_dir), follow_symlinks=True),
                metadata=md,
            )
            # Followed links that lead outside are still described as links, not followed.
            assert all(e.type == u.FILE_TYPE_SYMLINK for e in listed.entries)
    finally:
        sibling.rmdir()


async def test_download_of_a_file_that_changes_ends_aborted(
    gateway: Gateway, files: utilities_pb2_grpc.UtilitiesServiceStub, alice_dir: Path
) -> None:
    path = make_owned(alice_dir / "growing", "alice", 0o600, b"x" * 1_000_000)
    call = files.Download(
        u.DownloadRequest(system="local", path=str(path), chunk_size=65536),
        metadata=bearer(gateway, "alice"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for message in call:
            if message.WhichOneof("kind") == "header":
                with path.open("ab") as f:
                    f.write(b"appended while downloading")
    assert info.value.code() == grpc.StatusCode.ABORTED
