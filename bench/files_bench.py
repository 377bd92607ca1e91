"""Download and Upload of a large file, against a bare grpc.aio server, `cat` and `cp`.

Starts `hpcgate-server serve` on loopback and, beside it, a bare grpc.aio server (a generic
handler in this file, no hpcgate code) that streams raw bytes to its client and takes raw
bytes from it: the ceiling of grpc.aio on this machine for each message size. Writes a file
of random bytes (1 GiB by default) in a fresh directory in alice's home, then, for each
round and each message size, moves it:

  bare down / bare up   the bare server sends / receives `size` bytes in messages of the
                        size (one preallocated buffer: no disk, no hashing, no protobuf)
  Download / Upload     UtilitiesService as alice through the stubs: Download consumed and
                        discarded here (the trailer's SHA-256 checked), Upload read from the
                        file in messages of the size (the server checks size and SHA-256)
  files.download/upload the client library (hpcgate.client), with its defaults: a `.part`
                        written, hashed and renamed here / read and hashed here

and, as baselines, `cat FILE > /dev/null` and `cp FILE COPY`. Per row: MiB/s, the ratio to
the bare ceiling of the same message size (and to cat/cp), CPU-seconds per GiB of the
client (this process) and of the server (process + privsep workers), and peak RSS of both
(VmHWM, reset through /proc/PID/clear_refs before each run). Medians over the rounds.

    .venv/bin/python bench/files_bench.py [--size 1G] [--chunks 1M,4M] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import pwd
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from common import GiB, MiB, cpu_seconds, descendants_cpu_seconds, free_port, human, parse_size

from hpcgate.client import Client
from hpcgate.client.files import CHUNK as UPLOAD_CHUNK
from hpcgate.v1 import utilities_pb2 as u
from hpcgate.v1 import utilities_pb2_grpc

BIN = Path(sys.executable).parent
USER = "alice"
BARE = "/bare.Bytes/"
# Room for the largest message (4 MiB of data plus framing) on every channel and server.
MESSAGE_LIMIT = 8 * MiB
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MESSAGE_LIMIT),
    ("grpc.max_send_message_length", MESSAGE_LIMIT),
]


# -- the bare server (a subprocess: its CPU and memory are measured apart) --------------------


async def bare_download(request: bytes, context: Any) -> AsyncIterator[bytes]:
    size, chunk = struct.unpack("<QQ", request)
    block = os.urandom(chunk)
    for at in range(0, size, chunk):
        yield block if at + chunk <= size else block[: size - at]


async def bare_upload(requests: AsyncIterator[bytes], context: Any) -> bytes:
    total = 0
    async for data in requests:
        total += len(data)
    return struct.pack("<Q", total)


async def serve_bare(port: int) -> None:
    server = grpc.aio.server(options=[*CHANNEL_OPTIONS, ("grpc.so_reuseport", 0)])
    handlers = {  # no serializers: messages are the bytes themselves
        "Download": grpc.unary_stream_rpc_method_handler(bare_download),
        "Upload": grpc.stream_unary_rpc_method_handler(bare_upload),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("bare.Bytes", handlers)])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


async def bare_fetch(channel: grpc.aio.Channel, size: int, chunk: int) -> str:
    received = 0
    async for data in channel.unary_stream(BARE + "Download")(struct.pack("<QQ", size, chunk)):
        received += len(data)
    if received != size:
        raise RuntimeError(f"received {received} bytes of {size}")
    return "size"


async def bare_send(channel: grpc.aio.Channel, size: int, chunk: int) -> str:
    block = os.urandom(chunk)

    async def messages() -> AsyncIterator[bytes]:
        for at in range(0, size, chunk):
            yield block if at + chunk <= size else block[: size - at]

    reply = await channel.stream_unary(BARE + "Upload")(messages())
    if struct.unpack("<Q", reply)[0] != size:
        raise RuntimeError(f"the bare server got {reply!r} bytes of {size}")
    return "size"


# -- measurements ----------------------------------------------------------------------------


def peak_rss_mib(pid: int) -> float:
    """VmHWM of process `pid` (the peak RSS since its last reset), MiB."""
    return _status_mib(pid, "VmHWM:")


def rss_mib(pid: int) -> float:
    return _status_mib(pid, "VmRSS:")


def _status_mib(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss(pid: int) -> None:
    """Sets VmHWM back to the current RSS (proc(5): clear_refs, value 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def server_cpu(pid: int) -> float:
    return cpu_seconds(pid) + descendants_cpu_seconds(pid)


@dataclass
class Run:
    seconds: float
    client_cpu: float
    server_cpu: float
    client_peak: float
    server_before: float
    server_peak: float
    check: str


@dataclass
class Row:
    name: str
    chunk: int  # message size; 0: not a gRPC row
    runs: list[Run] = field(default_factory=list)
    error: str = ""

    def median(self, key: Callable[[Run], float]) -> float:
        return statistics.median(key(r) for r in self.runs)


async def measure(server: int | None, work: Callable[[], Awaitable[str]]) -> Run:
    """One timed run of `work` in this process (the client), against server process `server`."""
    me = os.getpid()
    reset_peak_rss(me)
    before = rss_mib(server) if server else 0.0
    if server:
        reset_peak_rss(server)
    cpu0 = server_cpu(server) if server else 0.0
    own0 = os.times()
    t0 = time.perf_counter()
    check = await work()
    seconds = time.perf_counter() - t0
    own1 = os.times()
    while UNTIMED_CLEANUP:
        await asyncio.to_thread(settle, UNTIMED_CLEANUP.pop())
    return Run(
        seconds=seconds,
        client_cpu=(own1.user - own0.user) + (own1.system - own0.system),
        server_cpu=server_cpu(server) - cpu0 if server else 0.0,
        client_peak=peak_rss_mib(me),
        server_before=before,
        server_peak=peak_rss_mib(server) if server else 0.0,
        check=check,
    )


def command(argv: list[str], cleanup: Callable[[], None]) -> Run:
    """One timed run of a baseline command (its CPU counted as the client's)."""
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
    seconds = time.perf_counter() - t0
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cleanup()
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return Run(seconds, cpu, 0.0, usage1.ru_maxrss / 1024, 0.0, 0.0, "")


# -- the gateway -----------------------------------------------------------------------------


async def download(
    stub: utilities_pb2_grpc.UtilitiesServiceStub,
    md: list[tuple[str, str]],
    path: str,
    chunk: int,
    size: int,
    sha256: str,
) -> str:
    """Streams the file and discards it; the trailer's SHA-256 must be the file's."""
    received, header, trailer = 0, None, None
    call = stub.Download(
        u.DownloadRequest(system="local", path=path, offset=0, chunk_size=chunk), metadata=md
    )
    async for message in call:
        kind = message.WhichOneof("kind")
        if kind == "chunk":
            if message.chunk.offset != received:
                raise RuntimeError(f"chunk at {message.chunk.offset}, expected {received}")
            received += len(message.chunk.data)
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


# Files a timed run wrote, settled (removed, synced) after its clock stops, as the
# baselines' copies are: the cleanup is not part of the transfer.
UNTIMED_CLEANUP: list[Path] = []


def settle(path: Path) -> None:
    """After a run: removes a written copy and flushes, so writeback does not disturb the
    next run."""
    path.unlink(missing_ok=True)
    os.sync()


def mint_token(env: dict[str, str]) -> str:
    argv = [str(BIN / "hpcgate-server"), "token", "--user", USER]
    argv += ["--scope", "read", "--scope", "write", "--ttl", "3600"]
    return subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout.strip()


def server_config(tmp: str, port: int, max_chunk: int) -> str:
    return (
        '[privsep]\nservice_user = ""\n'  # one root process: state in a private temp dir
        '[http]\nlisten = "127.0.0.1:0"\n'  # the HTTP listener on a free port
        f'[server]\nlisten = "127.0.0.1:{port}"\nstate_dir = "{tmp}/state"\n'
        'log_level = "warning"\n'
        f"[limits]\nmax_message_bytes = {MESSAGE_LIMIT}\n"
        f"[files]\nmax_chunk_size = {max_chunk}\n"
    )


@dataclass
class Setup:
    """What the timed runs need: the file, both servers and a channel to each."""

    source: Path
    size: int
    sha256: str
    gateway: int  # pid
    bare: int  # pid
    stub: utilities_pb2_grpc.UtilitiesServiceStub
    bare_channel: grpc.aio.Channel
    client: Client
    md: list[tuple[str, str]]


def plan(s: Setup, chunks: list[int]) -> list[tuple[Row, int | None, Callable[[], Awaitable[str]]]]:
    """Every gRPC row, in the order of a round: (row, server pid, one run)."""
    copy, target = s.source.with_name("copy.bin"), s.source.with_name("uploaded.bin")
    src = str(s.source)
    rows: list[tuple[Row, int | None, Callable[[], Awaitable[str]]]] = []
    for c in chunks:
        rows += [
            (Row("bare down", c), s.bare, lambda c=c: bare_fetch(s.bare_channel, s.size, c)),
            (
                Row("Download", c),
                s.gateway,
                lambda c=c: download(s.stub, s.md, src, c, s.size, s.sha256),
            ),
        ]

    async def library_download() -> str:
        done = await s.client.files.download(src, str(copy), system="local", overwrite=True)
        if done.sha256 != s.sha256:
            raise RuntimeError(f"downloaded sha256 {done.sha256} != the file's {s.sha256}")
        UNTIMED_CLEANUP.append(copy)
        return "client+trailer"

    async def library_upload() -> str:
        done = await s.client.files.upload(src, str(target), system="local", overwrite=True)
        UNTIMED_CLEANUP.append(target)
        return "client+server" if done.sha256 == s.sha256 else "MISMATCH"

    rows.append((Row("files.download", -1), s.gateway, library_download))
    for c in chunks:

        async def gateway_up(c: int = c) -> str:
            check = await upload(s.stub, s.md, s.source, str(target), c, s.size, s.sha256)
            UNTIMED_CLEANUP.append(target)
            return check

        rows += [
            (Row("bare up", c), s.bare, lambda c=c: bare_send(s.bare_channel, s.size, c)),
            (Row("Upload", c), s.gateway, gateway_up),
        ]
    rows.append((Row("files.upload", -1), s.gateway, library_upload))
    return rows


async def timed_rounds(s: Setup, chunks: list[int], rounds: int) -> list[Row]:
    rows = plan(s, chunks)
    for r in range(rounds):
        for row, pid, work in rows:
            if row.error:
                continue
            try:
                row.runs.append(await measure(pid, work))
            except Exception as e:  # reported in the table; the other rows still run
                row.error = f"{type(e).__name__}: {e}"[:200]
            print(f"  round {r + 1}: {row.name} {label(row.chunk)} done", file=sys.stderr)
    return [row for row, _, _ in rows]


def label(chunk: int) -> str:
    return "lib" if chunk < 0 else human(chunk) if chunk else "-"


# -- report ----------------------------------------------------------------------------------


def print_table(rows: list[Row], size: int, rounds: int, default_chunk: int) -> None:
    print(
        f"\n{human(size)} file of random bytes in alice's home, page-cache warm ({os.cpu_count()}"
        f" CPUs); medians of {rounds} rounds.\nServers on loopback: `hpcgate-server serve` as"
        " root (alice's privsep worker), and the bare grpc.aio server;\nclient = this process."
        " Library rows use the client's defaults (chunk: the server's default,"
        f" {human(default_chunk)}).\n"
        "  MiB/s      file size / wall time (start to trailer or response)\n"
        "  x bare     MiB/s over the bare server's in the same direction and message size\n"
        "             (library rows: the default chunk's); x base: over cat's (down), cp's (up)\n"
        "  CPU/GiB    user+sys CPU-seconds per GiB: cli = this process (or the command),\n"
        "             srv = server process + its privsep workers\n"
        "  peak MiB   VmHWM after a reset before each run; srv+ = server peak - RSS before it\n"
    )
    head = (
        f"{'transfer':<15}{'msg':>5}{'MiB/s':>7}{'x bare':>7}{'x base':>7}{'cli CPU':>8}"
        f"{'srv CPU':>8}{'cli peak':>9}{'srv peak':>9}{'srv+':>6}  verified"
    )
    print(head)
    print("-" * len(head))
    mibs = {(r.name, r.chunk): size / MiB / r.median(lambda x: x.seconds) for r in rows if r.runs}
    for row in rows:
        if row.error or not row.runs:
            print(f"{row.name:<15}{label(row.chunk):>5}  FAILED: {row.error}")
            continue
        speed = mibs[(row.name, row.chunk)]
        down = "down" in row.name.lower() or row.name == "cat"
        chunk = row.chunk if row.chunk >= 0 else default_chunk if down else UPLOAD_CHUNK
        bare = mibs.get(("bare down" if down else "bare up", chunk))
        base = mibs.get(("cat" if down else "cp", 0))
        ratio = f"{speed / bare:.2f}" if bare and not row.name.startswith("bare") else "-"
        vs_base = f"{speed / base:.2f}" if base and row.chunk else "-"
        gib = size / GiB
        srv = f"{row.median(lambda r: r.server_cpu) / gib:.2f}" if row.chunk else "-"
        srv_peak = f"{max(r.server_peak for r in row.runs):.0f}" if row.chunk else "-"
        grow = max(r.server_peak - r.server_before for r in row.runs)
        print(
            f"{row.name:<15}{label(row.chunk):>5}{speed:>7.0f}{ratio:>7}{vs_base:>7}"
            f"{row.median(lambda r: r.client_cpu) / gib:>8.2f}{srv:>8}"
            f"{max(r.client_peak for r in row.runs):>9.0f}{srv_peak:>9}"
            f"{(f'{grow:.0f}' if row.chunk else '-'):>6}  {row.runs[0].check}"
        )


# -- main ------------------------------------------------------------------------------------


async def baselines(source: Path, rounds: int) -> list[Row]:
    cat, cp = Row("cat", 0), Row("cp", 0)
    copy = source.with_name("copy.bin")
    subprocess.run(["cp", str(source), str(copy)], check=True)  # untimed: first-touch costs
    settle(copy)
    for _ in range(rounds):
        cat.runs.append(command(["cat", str(source)], lambda: None))
        cp.runs.append(command(["cp", str(source), str(copy)], lambda: settle(copy)))
    return [cat, cp]


def start(argv: list[str], env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, stderr=log, stdout=subprocess.PIPE)


async def run(args: argparse.Namespace, workdir: Path, uid: int, gid: int) -> None:
    size, chunks = args.size, args.chunks
    source = workdir / "source.bin"
    t0 = time.perf_counter()
    sha256 = write_source(source, size, uid, gid)
    print(f"wrote {human(size)} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    subprocess.run(["cat", str(source)], stdout=subprocess.DEVNULL, check=True)  # warm cache
    rows = await baselines(source, args.rounds)
    port, bare_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.toml"
        config.write_text(server_config(tmp, port, max(chunks)))
        env = dict(os.environ, HPCGATE_CONFIG=str(config))
        token = mint_token(env)
        log = open(Path(tmp) / "server.log", "wb")  # noqa: SIM115 - open for the servers' life
        gateway = start([str(BIN / "hpcgate-server"), "serve"], env, log)
        bare = start([sys.executable, __file__, "--bare-server", str(bare_port)], env, log)
        try:
            assert bare.stdout is not None
            if bare.stdout.readline().strip() != b"ready":
                raise RuntimeError("the bare server did not start")
            md = [("authorization", f"Bearer {token}")]
            client = Client.connect(f"127.0.0.1:{port}", token=token, system="local")
            async with (
                grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS) as ch,
                grpc.aio.insecure_channel(f"127.0.0.1:{bare_port}", options=CHANNEL_OPTIONS) as bc,
            ):
                await asyncio.wait_for(ch.channel_ready(), 30)
                stub = utilities_pb2_grpc.UtilitiesServiceStub(ch)
                # Warm-up: starts alice's privsep worker before anything is timed.
                await stub.Stat(u.StatRequest(system="local", path=str(source)), metadata=md)
                setup = Setup(source, size, sha256, gateway.pid, bare.pid, stub, bc, client, md)
                rows += await timed_rounds(setup, chunks, args.rounds)
                await client.close()
        finally:
            for process in (gateway, bare):
                process.terminate()
                process.wait(10)
            log.close()
            if any(r.error for r in rows) or gateway.returncode not in (0, -15):
                tail = (Path(tmp) / "server.log").read_text(errors="replace")[-2000:]
                print(f"server log (tail):\n{tail}", file=sys.stderr)
    print_table(rows, size, args.rounds, args.default_chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=GiB, help="file size, e.g. 1G, 256M")
    parser.add_argument(
        "--chunks",
        type=lambda s: [parse_size(c) for c in s.split(",")],
        default="1M,4M",
        help="comma-separated message sizes (Download chunk_size; Upload message size)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of each row (medians)")
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        asyncio.run(serve_bare(args.bare_server))
        return
    if os.geteuid() != 0:
        sys.exit("files_bench.py runs as root: the server serves alice through privsep workers")
    from hpcgate.server.config import FilesConfig  # the default chunk, for the library rows

    args.default_chunk = FilesConfig().download_chunk_size
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
