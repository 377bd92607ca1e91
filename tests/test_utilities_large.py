"""A 1 GiB file through Upload and back through Download: checksums match, memory stays flat.

Client and server share this process, so the RSS watched here covers both: neither side
may hold more than a few chunks at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from files_helpers import user_dir

from conftest import bearer
from hpcgate.server.app import Gateway
from hpcgate.v1 import utilities_pb2 as u
from hpcgate.v1 import utilities_pb2_grpc

SIZE = 1024**3
CHUNK = 1024 * 1024


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class PeakRss:
    """Samples this process's RSS every 50 ms while running."""

    def __init__(self) -> None:
        self.peak = rss_mib()
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mib())
            await asyncio.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self._task = asyncio.ensure_future(self._sample())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


@pytest.mark.timeout(300)
async def test_one_gib_round_trip_with_flat_memory(gateway: Gateway) -> None:
    block = bytearray(os.urandom(CHUNK))
    sent = hashlib.sha256()
    md = bearer(gateway, "alice", ("read", "write"))

    async def messages(path: str) -> AsyncIterator[u.UploadRequest]:
        yield u.UploadRequest(header=u.UploadHeader(system="local", path=path, expected_size=SIZE))
        for i in range(SIZE // CHUNK):
            block[:8] = i.to_bytes(8, "big")  # every chunk differs
            data = bytes(block)
            sent.update(data)
            yield u.UploadRequest(chunk=u.UploadChunk(data=data))

    with user_dir("alice") as directory:
        target = f"{directory}/big.bin"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            stub = utilities_pb2_grpc.UtilitiesServiceStub(channel)
            baseline = rss_mib()
            with PeakRss() as upload_peak:
                response = await stub.Upload(messages(target), metadata=md)
            assert response.size == SIZE and response.sha256 == sent.hexdigest()
            assert Path(target).stat().st_size == SIZE and Path(target).stat().st_uid == 1001

            received = hashlib.sha256()
            size = 0
            with PeakRss() as download_peak:
                async for message in stub.Download(
                    u.DownloadRequest(system="local", path=target), metadata=md
                ):
                    if message.WhichOneof("kind") == "chunk":
                        assert message.chunk.offset == size
                        received.update(message.chunk.data)
                        size += len(message.chunk.data)
                    elif message.WhichOneof("kind") == "trailer":
                        trailer = message.trailer
            assert size == SIZE and received.hexdigest() == sent.hexdigest()
            assert trailer.sha256 == sent.hexdigest() and trailer.total_bytes == SIZE
        growth = max(upload_peak.peak, download_peak.peak) - baseline
        print(
            f"RSS baseline {baseline:.0f} MiB, upload peak {upload_peak.peak:.0f} MiB, "
            f"download peak {download_peak.peak:.0f} MiB"
        )
        assert growth < 128, f"memory grew by {growth:.0f} MiB while moving 1 GiB"
