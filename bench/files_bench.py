"""Download and Upload throughput of a large file, against `cat` and `cp` on the same machine.

Starts `hpcgate-server serve` on loopback, writes a file of random bytes (1 GiB by default)
into a fresh directory in alice's home, and moves it through UtilitiesService as alice
(token scopes read + write): Download (consumed and discarded by this client) and Upload
(read from the file by this client in chunk-size pieces), for each chunk size. Beside them,
the same file through `cat FILE > /dev/null` (the baseline for Download) and
`cp FILE COPY` in the same directory (the baseline for Upload). Per transfer: throughput,
the ratio gateway/baseline, the server process's CPU (user+sys from /proc/PID/stat) and its
RSS (before, and the peak sampled every 50 ms from /proc/PID/status). Prints a table.

    .venv/bin/python bench/files_bench.py [--size 1G] [--chunks 64K,256K,1M,2M]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from common import (
    GiB,
    MiB,
    cpu_seconds,
    descendants_cpu_seconds,
    free_port,
    human,
    parse_size,
    rss_mib,
)

from hpcgate.v1 import utilities_pb2 as u
from hpcgate.v1 import utilities_pb2_grpc

BIN = Path(sys.executable).parent
USER = "alice"
# Larger than any chunk (2 MiB) plus protobuf framing; the server allows 4 MiB by default.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 8 * MiB),
    ("grpc.max_send_message_length", 8 * MiB),
]


@dataclass
class Measurement:
    seconds: float = 0.0
    server_cpu: float = 0.0
    workers_cpu: float = 0.0
    client_cpu: float = 0.0
    rss_before: float = 0.0
    rss_peak: float = 0.0
    check: str = ""
    error: str = ""
    extra: dict[str, str] = field(default_factory=dict)


@contextmanager
def measured(pid: int | None) -> Iterator[Measurement]:
    """Wall time; with a server `pid`, its CPU and RSS (sampled every 50 ms in a thread, so
    a busy event loop in this client does not skip samples), and this client's CPU."""
    m = Measurement()
    stop = threading.Event()
    sampler = None
    if pid is not None:
        m.rss_before = m.rss_peak = rss_mib(pid)

        def sample() -> None:
            while not stop.wait(0.05):
                try:
                    m.rss_peak = max(m.rss_peak, rss_mib(pid))
                except OSError:
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        cpu0, workers0 = cpu_seconds(pid), descendants_cpu_seconds(pid)
    client0 = os.times()
    t0 = time.perf_counter()
    try:
        yield m
    finally:
        m.seconds = time.perf_counter() - t0
        client1 = os.times()
        m.client_cpu = (client1.user - client0.user) + (client1.system - client0.system)
        if pid is not None and sampler is not None:
            stop.set()
            sampler.join()
            m.rss_peak = max(m.rss_peak, rss_mib(pid))
            m.server_cpu = cpu_seconds(pid) - cpu0
            m.workers_cpu = descendants_cpu_seconds(pid) - workers0


def write_source(path: Path, size: int, uid: int, gid: int) -> str:
    """A file of `size` random bytes owned by the user, flushed to disk (its pages stay in the
    page cache); returns its SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            data = os.urandom(min(4 * MiB, left))
            digest.update(data)
            f.write(data)
            left -= len(data)
        f.flush()
        os.fsync(f.fileno())
    os.chown(path, uid, gid)
    os.chmod(path, 0o600)
    return digest.hexdigest()


def timed(argv: list[str], after: Callable[[], None], runs: int = 3) -> Measurement:
    """The median of `runs` timed runs of a baseline command; `after` cleans up after each."""
    times = []
    for _ in range(runs):
        with measured(None) as m:
            subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
        after()
        times.append(m)
    return sorted(times, key=lambda m: m.seconds)[runs // 2]


async def download(
    stub: utilities_pb2_grpc.UtilitiesServiceStub,
    md: list[tuple[str, str]],
    path: str,
    chunk: int,
    size: int,
    sha256: str,
    client_hash: bool,
) -> str:
    """Streams the file and discards it; returns what was verified."""
    digest = hashlib.sha256() if client_hash else None
    received, header, trailer = 0, None, None
    call = stub.Download(
        u.DownloadRequest(system="local", path=path, offset=0, chunk_size=chunk), metadata=md
    )
    async for message in call:
        kind = message.WhichOneof("kind")
        if kind == "chunk":
            if message.chunk.offset != received:
                raise RuntimeError(f"chunk at {message.chunk.offset}, expected {received}")
            data = message.chunk.data
            received += len(data)
            if digest is not None:
                digest.update(data)
        elif kind == "header":
            header = message.header
        else:
            trailer = message.trailer
    if header is None or trailer is None:
        raise RuntimeError("no header or no trailer")
    if received != size or header.size != size or trailer.total_bytes != size:
        raise RuntimeError(f"received {received} bytes of {size}")
    if trailer.sha256 != sha256:
        raise RuntimeError(f"trailer sha256 {trailer.sha256} != the file's {sha256}")
    if digest is not None:
        if digest.hexdigest() != trailer.sha256:
            raise RuntimeError("sha256 of the received bytes differs from the trailer's")
        return "client+trailer"
    return "trailer"


async def upload(
    stub: utilities_pb2_grpc.UtilitiesServiceStub,
    md: list[tuple[str, str]],
    source: Path,
    target: str,
    chunk: int,
    size: int,
    sha256: str,
) -> str:
    """Streams `source` from disk in `chunk`-byte messages (never the whole file in memory)."""

    async def messages() -> AsyncIterator[u.UploadRequest]:
        yield u.UploadRequest(
            header=u.UploadHeader(
                system="local",
                path=target,
                overwrite=True,
                expected_size=size,
                expected_sha256=sha256,
            )
        )
        with open(source, "rb", buffering=0) as f:
            while data := f.read(chunk):
                yield u.UploadRequest(chunk=u.UploadChunk(data=data))

    response = await stub.Upload(messages(), metadata=md)
    if response.size != size or response.sha256 != sha256:
        raise RuntimeError(f"server wrote {response.size} bytes, sha256 {response.sha256}")
    return "server"


async def run(args: argparse.Namespace, workdir: Path, uid: int, gid: int) -> None:
    size, chunks = args.size, args.chunks
    source = workdir / "source.bin"
    copy = workdir / "copy.bin"
    target = workdir / "uploaded.bin"
    t0 = time.perf_counter()
    sha256 = write_source(source, size, uid, gid)
    print(f"wrote {human(size)} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    subprocess.run(["cat", str(source)], stdout=subprocess.DEVNULL, check=True)  # warm cache

    def remove(path: Path) -> Callable[[], None]:
        def done() -> None:
            path.unlink(missing_ok=True)
            os.sync()  # no writeback of the last run left to disturb the next one

        return done

    # An untimed copy first: in a VM, memory the guest has not touched yet costs a host page
    # fault per page on first use, which would be charged to whichever run came first.
    subprocess.run(["cp", str(source), str(copy)], check=True)
    remove(copy)()
    cat = timed(["cat", str(source)], lambda: None)
    cp = timed(["cp", str(source), str(copy)], remove(copy))
    cp_sync = timed(
        ["sh", "-c", 'cp "$1" "$2" && sync "$2"', "sh", str(source), str(copy)], remove(copy)
    )

    port = free_port()
    rows: list[tuple[str, int, Measurement]] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.toml"
        config.write_text(
            '[privsep]\nservice_user = ""\n'  # one root process: state in a private temp dir
            f'[server]\nlisten = "127.0.0.1:{port}"\nstate_dir = "{tmp}/state"\n'
            'log_level = "warning"\n'
        )
        env = dict(os.environ, HPCGATE_CONFIG=str(config))
        token = subprocess.run(
            [
                str(BIN / "hpcgate-server"),
                "token",
                "--user",
                USER,
                "--scope",
                "read",
                "--scope",
                "write",
                "--ttl",
                "3600",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        log = open(Path(tmp) / "server.log", "wb")  # noqa: SIM115 - open for the server's life
        server = subprocess.Popen([str(BIN / "hpcgate-server"), "serve"], env=env, stderr=log)
        md = [("authorization", f"Bearer {token}")]
        try:
            async with grpc.aio.insecure_channel(
                f"127.0.0.1:{port}", options=CHANNEL_OPTIONS
            ) as channel:
                await asyncio.wait_for(channel.channel_ready(), 30)
                stub = utilities_pb2_grpc.UtilitiesServiceStub(channel)
                # Warm-up: starts alice's privsep worker before anything is timed.
                await stub.Stat(u.StatRequest(system="local", path=str(source)), metadata=md)
                hashed = MiB if MiB in chunks else chunks[0]
                for chunk in chunks:
                    for op in ("Download", "Upload"):
                        with measured(server.pid) as m:
                            try:
                                if op == "Download":
                                    m.check = await download(
                                        stub, md, str(source), chunk, size, sha256, chunk == hashed
                                    )
                                else:
                                    m.check = await upload(
                                        stub, md, source, str(target), chunk, size, sha256
                                    )
                            except grpc.aio.AioRpcError as e:
                                m.error = f"{e.code().name}: {e.details()}"
                            except RuntimeError as e:
                                m.error = str(e)
                        if op == "Upload":
                            remove(target)()
                        rows.append((op, chunk, m))
                        print(f"  {op} {human(chunk)}: {m.seconds:.2f} s", file=sys.stderr)
                        if server.poll() is not None:
                            raise RuntimeError(f"the server exited ({server.returncode})")
        finally:
            server.terminate()
            server.wait(10)
            log.close()
            if any(m.error for _, _, m in rows) or server.returncode not in (0, -15):
                tail = (Path(tmp) / "server.log").read_text(errors="replace")[-2000:]
                print(f"server log (tail):\n{tail}", file=sys.stderr)

    def mibs(m: Measurement) -> float:
        return size / MiB / m.seconds

    print(
        f"\nUtilitiesService Download/Upload of a {human(size)} file (random bytes) in alice's home"
        f" ({os.cpu_count()} CPUs);\nserver on loopback as root with alice's privsep worker; "
        "client = this process (grpc.aio).\n"
        "The file is page-cache warm for every run, baselines included (nothing is dropped);\n"
        "baselines: median of 3 runs, after an untimed cp; gateway rows: one run each.\n"
        "  MiB/s        file size / wall time (RPC start to trailer or response)\n"
        "  x base       MiB/s over the baseline's: Download vs `cat FILE > /dev/null`, Upload vs\n"
        "               `cp FILE COPY` (in-kernel copy_file_range, no fsync; Upload fsyncs before\n"
        "               its rename: `cp+fsync` is cp then `sync COPY`, for comparison)\n"
        "  srv CPU/GiB  server process user+sys CPU-seconds (/proc/PID/stat) per GiB moved\n"
        "  srv/cli %core  server's / this client's CPU over the wall time, % of one core\n"
        "  RSS MiB      server VmRSS (/proc/PID/status) just before; peak sampled every 50 ms\n"
        "  verified     trailer/server: the server's SHA-256 equals the file's; client: the\n"
        "               received bytes were hashed here too (one chunk size: it costs client CPU)\n"
    )
    header = (
        f"{'transfer':<9} {'chunk':>5} {'seconds':>8} {'MiB/s':>7} {'x base':>7} "
        f"{'srv CPU/GiB':>11} {'srv %core':>9} {'cli %core':>9} {'RSS before':>10} "
        f"{'RSS peak':>8}  verified"
    )
    print(header)
    print("-" * len(header))
    for name, m in (("cat", cat), ("cp", cp), ("cp+fsync", cp_sync)):
        print(f"{name:<9} {'-':>5} {m.seconds:>8.2f} {mibs(m):>7.0f} {'-':>7}")
    for op, chunk, m in rows:
        if m.error:
            print(f"{op:<9} {human(chunk):>5}  FAILED after {m.seconds:.2f} s: {m.error}")
            continue
        base = cat if op == "Download" else cp
        print(
            f"{op:<9} {human(chunk):>5} {m.seconds:>8.2f} {mibs(m):>7.0f} "
            f"{mibs(m) / mibs(base):>7.2f} {m.server_cpu / (size / GiB):>11.2f} "
            f"{m.server_cpu / m.seconds * 100:>9.0f} {m.client_cpu / m.seconds * 100:>9.0f} "
            f"{m.rss_before:>10.1f} {m.rss_peak:>8.1f}  {m.check}"
        )
    workers = sum(m.workers_cpu for _, _, m in rows)
    print(f"\nprivsep workers ({USER}) over all transfers: {workers:.2f} CPU-s (opens, renames)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=GiB, help="file size, e.g. 1G, 256M")
    parser.add_argument(
        "--chunks",
        type=lambda s: [parse_size(c) for c in s.split(",")],
        default="64K,256K,1M,2M",
        help="comma-separated chunk sizes (Download chunk_size; Upload message size)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("files_bench.py runs as root: the server serves alice through privsep workers")
    entry = pwd.getpwnam(USER)
    workdir = Path(tempfile.mkdtemp(prefix="hpcgate-files-bench-", dir=entry.pw_dir))
    try:
        os.chown(workdir, entry.pw_uid, entry.pw_gid)
        os.chmod(workdir, 0o700)
        asyncio.run(run(args, workdir, entry.pw_uid, entry.pw_gid))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
