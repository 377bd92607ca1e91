"""The fast paths of Download: chunks read and hashed ahead in a thread of the download's
own, filled into messages in place, and glibc told to keep chunk-sized buffers. Functional
checks only (order, integrity, clean stops); speed is bench/files_bench.py's business."""

from __future__ import annotations

import asyncio
import hashlib
import os
import platform
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from files_helpers import make_owned, user_dir

from conftest import bearer
from hpcgate.server.api.convert.files import download_message
from hpcgate.server.app import Gateway
from hpcgate.server.files import reading
from hpcgate.server.files.reading import Chunk
from hpcgate.v1 import utilities_pb2 as u
from hpcgate.v1 import utilities_pb2_grpc

CHUNK = 4096


@pytest.fixture
async def files(gateway: Gateway) -> AsyncIterator[utilities_pb2_grpc.UtilitiesServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield utilities_pb2_grpc.UtilitiesServiceStub(channel)


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "hpcgate-download"]


async def no_reader_threads(seconds: float = 10.0) -> list[threading.Thread]:
    """Waits until no download reader thread is alive (at most `seconds`); what is left."""
    deadline = time.monotonic() + seconds
    while (left := reader_threads()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return left


def test_chunk_messages_are_filled_in_place_and_serialize_as_the_proto_says() -> None:
    data = os.urandom(3 * CHUNK + 5)
    message = download_message(Chunk(123_456_789, data))
    expected = u.DownloadResponse(chunk=u.DownloadChunk(offset=123_456_789, data=data))
    assert message.SerializeToString() == expected.SerializeToString()


def test_large_buffers_are_kept_once_per_process_on_glibc() -> None:
    glibc = platform.libc_ver()[0] == "glibc"
    assert reading.keep_large_buffers() is glibc
    assert reading.keep_large_buffers() is glibc  # cached: mallopt runs once


async def test_every_chunk_arrives_in_order_and_the_trailer_hashes_the_whole_file(
    gateway: Gateway, files: utilities_pb2_grpc.UtilitiesServiceStub
) -> None:
    """Many more chunks than the read-ahead holds, the last one short; from 0 and from an
    offset that is not a chunk boundary (the prefix is hashed before the reader starts)."""
    content = os.urandom(10 * reading.READ_AHEAD * CHUNK + 123)
    digest = hashlib.sha256(content).hexdigest()
    md = bearer(gateway, "alice")
    with user_dir("alice") as directory:
        path = str(make_owned(directory / "many.bin", "alice", 0o600, content))
        for offset in (0, CHUNK + 17):
            request = u.DownloadRequest(system="local", path=path, offset=offset, chunk_size=CHUNK)
            messages = [m async for m in files.Download(request, metadata=md)]
            chunks = [m.chunk for m in messages[1:-1]]
            assert [c.offset for c in chunks] == list(range(offset, len(content), CHUNK))
            assert b"".join(c.data for c in chunks) == content[offset:]
            trailer = messages[-1].trailer
            assert (trailer.sha256, trailer.total_bytes) == (digest, len(content))
    assert await no_reader_threads() == []


async def test_an_abandoned_download_stops_its_reader_thread_and_reads_no_further(
    gateway: Gateway, files: utilities_pb2_grpc.UtilitiesServiceStub
) -> None:
    """The client takes one chunk of a 64 MiB file and cancels: the reader, which was
    waiting for room ahead of the stream, ends, having read a few chunks at most."""
    md = bearer(gateway, "alice")
    with user_dir("alice") as directory:
        sparse = make_owned(directory / "sparse.bin", "alice", 0o600, b"")
        os.truncate(sparse, 64 * 1024 * 1024)
        request = u.DownloadRequest(system="local", path=str(sparse), chunk_size=CHUNK)
        call = files.Download(request, metadata=md)
        assert (await call.read()).WhichOneof("kind") == "header"
        assert (await call.read()).chunk.offset == 0
        assert len(reader_threads()) == 1
        call.cancel()
        assert await no_reader_threads() == []


async def test_a_read_error_in_the_reader_ends_the_stream_with_its_status(
    gateway: Gateway,
    files: utilities_pb2_grpc.UtilitiesServiceStub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An OSError raised in the reader thread reaches the stream (not the thread's
    excepthook): the client gets a status, and the thread is gone."""
    real = reading.read_exactly

    def failing(fd: int, size: int, offset: int) -> bytes:
        if offset >= 3 * CHUNK:
            raise OSError(5, "Input/output error")
        return real(fd, size, offset)

    monkeypatch.setattr(reading, "read_exactly", failing)
    md = bearer(gateway, "alice")
    with user_dir("alice") as directory:
        path = make_owned(directory / "bad.bin", "alice", 0o600, os.urandom(8 * CHUNK))
        request = u.DownloadRequest(system="local", path=str(path), chunk_size=CHUNK)
        received = 0
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for message in files.Download(request, metadata=md):
                received += len(message.chunk.data)
        assert info.value.code() != grpc.StatusCode.OK
        assert received == 3 * CHUNK
    assert await no_reader_threads() == []


async def test_the_client_library_download_of_many_chunks_is_verified(
    gateway: Gateway, tmp_path: Path
) -> None:
    from hpcgate.client import Client

    content = os.urandom(5 * 1024 * 1024 + 77)
    with user_dir("alice") as directory:
        remote = make_owned(directory / "big.bin", "alice", 0o600, content)
        client = Client.connect(
            f"127.0.0.1:{gateway.port}", token=bearer(gateway, "alice")[0][1].split()[1]
        )
        try:
            done = await client.files.download(str(remote), tmp_path / "big.bin", system="local")
        finally:
            await client.close()
    assert (tmp_path / "big.bin").read_bytes() == content
    assert (done.size, done.sha256) == (len(content), hashlib.sha256(content).hexdigest())
