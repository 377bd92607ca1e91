"""What the Python client library costs over the raw generated stubs.

Starts `hpcgate-server serve` on loopback as root (the multi-user setup: alice's calls run
through her privsep worker) against the local Slurm, with an access token for alice
(scopes read, write, execute), and measures in one run:

1. GetJob of a finished job (answered from the server's memory, so the client's own work
   shows): `await client.jobs.get(id)` against `await ComputeServiceStub(channel).GetJob(
   req, metadata=token)` on a plain grpc.aio channel; between them, the raw stub on the
   library's own channel (`client.channel`: its bearer-token interceptor and options),
   which splits the overhead into channel and library. Interleaved (the order rotates
   every round), median and p99 of --calls calls after --warmup untimed rounds. The same
   for `SyncClient.jobs.get` against a blocking stub on `grpc.insecure_channel` (and the
   raw asyncio stub called through a loop thread, SyncClient's design without the rest).
2. Wait latency: --waits jobs (`sleep 2.x`) whose script writes a high-resolution
   timestamp (`date +%s.%N`) as its very last action; the time from that timestamp until
   `job.wait()` returns, until a raw `WatchJobs(names=[job], until_finished=True)` stream
   ends, and until a 1-second `squeue -j` poller (what a script would do without a
   stream) sees the job ended. All three watch the same job at once.
3. Download throughput of a --size file of random bytes in a directory alice owns:
   `client.files.download(...)` (writes a .part file, verifies the SHA-256, renames)
   against a raw Download stream written to a local file with the SHA-256 computed and
   checked here (the fair baseline) and without it, and `cat FILE > /dev/null` as a
   floor. Interleaved (rotating order), --rounds rounds, page cache warm.

Every job the bench submits is cancelled at the end (scancel as root) and every file it
wrote removed, also on failure; any failed call or check stops the bench with an error.

    .venv/bin/python bench/client_bench.py [--quick] [--calls 300] [--warmup 20]
                                           [--waits 10] [--size 256M] [--rounds 7]
"""

from __future__ import annotations

import os

# This process forks (squeue, cat, the server) while gRPC's threads run; every child
# execs at once, so gRPC's fork handlers are not needed (and would log every fork).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import argparse
import asyncio
import hashlib
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from common import GiB, MiB, free_port, human, parse_size, percentile

from hpcgate.client import Client, SyncClient, connect
from hpcgate.client.jobs import FINISHED, Job
from hpcgate.v1 import compute_pb2 as C
from hpcgate.v1 import compute_pb2_grpc, utilities_pb2_grpc
from hpcgate.v1 import utilities_pb2 as U

BIN = Path(sys.executable).parent
USER = "alice"
SYSTEM = "local"
TIMEOUT = 60.0  # the library's default unary deadline; the raw calls get the same
ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED")


class BenchError(RuntimeError):
    """A failed call or check: the bench stops and says what."""


def check_cluster() -> None:
    """Exit with a clear message unless we are root, alice exists and slurmctld answers."""
    if os.geteuid() != 0:
        sys.exit("client_bench.py runs as root: it starts the server in multi-user mode")
    try:
        pwd.getpwnam(USER)
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
        if "UP" not in ping.stdout:
            raise BenchError(f"slurmctld: {(ping.stdout + ping.stderr).strip()}")
    except (KeyError, OSError, BenchError, subprocess.TimeoutExpired) as e:
        sys.exit(
            f"client_bench.py: the local Slurm cluster is not up ({e}).\n"
            "Bring it up first: make cluster   (or: bash scripts/cluster.sh up)"
        )


class Server:
    """hpcgate-server on a free loopback port with a private state directory."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        port = free_port()
        config = tmp / "bench.toml"
        config.write_text(
            '[privsep]\nservice_user = ""\n'  # one root process: state in a private temp dir
            '[http]\nlisten = "127.0.0.1:0"\n'  # the HTTP listener on a free port
            f'[server]\nlisten = "127.0.0.1:{port}"\nstate_dir = "{tmp}/state"\n'
            'log_level = "warning"\n'
            "[rate_limits]\nenabled = false\n"  # measure the client, not the limits
        )
        env = dict(os.environ, HPCGATE_CONFIG=str(config))
        scopes = ["--scope", "read", "--scope", "write", "--scope", "execute"]
        self.token = subprocess.run(
            [str(BIN / "hpcgate-server"), "token", "--user", USER, "--ttl", "7200", *scopes],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        self.log = open(tmp / "server.log", "wb")  # noqa: SIM115 - open for the server's life
        self.proc = subprocess.Popen(
            [str(BIN / "hpcgate-server"), "serve"], env=env, stderr=self.log
        )
        self.address = f"127.0.0.1:{port}"
        self.metadata = [("authorization", f"Bearer {self.token}")]

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"the server exited ({self.proc.returncode})")

    def stop(self) -> bool:
        """Stop the server; whether it had run and stopped cleanly."""
        crashed = self.proc.poll() is not None
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        return not crashed and self.proc.returncode in (0, -15)

    def log_tail(self) -> str:
        return (self.tmp / "server.log").read_text(errors="replace")[-3000:]


@dataclass
class Jobs:
    """Every job this run submitted, cancelled at the end."""

    name: str
    ids: list[str] = field(default_factory=list)

    def add(self, job: Job) -> Job:
        self.ids.append(job.id)
        return job

    def cancel_all(self) -> None:
        # Finished jobs make scancel complain; that is fine, hence no check.
        if self.ids:
            subprocess.run(["scancel", *self.ids], capture_output=True, timeout=60)
        subprocess.run(["scancel", "-u", USER, "-n", self.name], capture_output=True, timeout=60)


def markdown(headers: list[str], rows: list[list[str]], left: int = 1) -> None:
    """A Markdown table, padded so that it reads as well in a terminal; the first `left`
    columns are left-aligned, the others (numbers) right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        padded = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    print(line(headers))
    print("|" + "|".join("-" * (w + 2) if i < left else "-" * (w + 1) + ":"
                         for i, w in enumerate(widths)) + "|")  # fmt: skip
    for row in rows:
        print(line(row))


def rotations(names: list[str], rounds: int) -> list[list[str]]:
    """`rounds` orders of `names`, rotated each time (no variant always goes first)."""
    return [names[i % len(names) :] + names[: i % len(names)] for i in range(rounds)]


# -- 1. GetJob ------------------------------------------------------------------------------

LIB = "`await client.jobs.get(id)`"
VIA = "`await stub.GetJob(req)` on `client.channel`"
RAW = "`await stub.GetJob(req, metadata=...)`, plain channel"
SYNC_LIB = "`SyncClient.jobs.get(id)`"
SYNC_HOP = "raw aio stub through a loop thread"
SYNC_RAW = "`stub.GetJob(req, metadata=...)`, `grpc.insecure_channel`"


def check_reply(name: str, job_id: str, found: Any) -> None:
    got = found.job.job_id if isinstance(found, C.GetJobResponse) else found.id
    if got != job_id:
        raise BenchError(f"{name}: GetJob answered job {got!r}, not {job_id!r}")


async def getjob_async(
    server: Server, client: Client, job_id: str, calls: int, warmup: int
) -> dict[str, list[float]]:
    request = C.GetJobRequest(name=f"systems/{SYSTEM}/jobs/{job_id}")
    async with grpc.aio.insecure_channel(server.address) as channel:
        raw = compute_pb2_grpc.ComputeServiceStub(channel)
        via = compute_pb2_grpc.ComputeServiceStub(client.channel)
        variants: dict[str, Callable[[], Awaitable[Any]]] = {
            LIB: lambda: client.jobs.get(job_id),
            VIA: lambda: via.GetJob(request, timeout=TIMEOUT),
            RAW: lambda: raw.GetJob(request, metadata=server.metadata, timeout=TIMEOUT),
        }
        for name, call in variants.items():
            check_reply(name, job_id, await call())
        times: dict[str, list[float]] = {name: [] for name in variants}
        for i, order in enumerate(rotations(list(variants), warmup + calls)):
            for name in order:
                t0 = time.perf_counter()
                await variants[name]()
                ms = (time.perf_counter() - t0) * 1000
                if i >= warmup:
                    times[name].append(ms)
        return times


class LoopThread:
    """An asyncio loop in a thread, as SyncClient runs one, for the raw aio stub."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def getjob_sync(server: Server, job_id: str, calls: int, warmup: int) -> dict[str, list[float]]:
    request = C.GetJobRequest(name=f"systems/{SYSTEM}/jobs/{job_id}")
    hop = LoopThread()

    async def open_aio() -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(server.address)  # on the loop that uses it

    aio_channel = hop.run(open_aio())
    try:
        aio_stub = compute_pb2_grpc.ComputeServiceStub(aio_channel)

        async def hop_call() -> Any:
            return await aio_stub.GetJob(request, metadata=server.metadata, timeout=TIMEOUT)

        with (
            SyncClient.connect(server.address, token=server.token, system=SYSTEM) as client,
            grpc.insecure_channel(server.address) as channel,
        ):
            stub = compute_pb2_grpc.ComputeServiceStub(channel)
            variants: dict[str, Callable[[], Any]] = {
                SYNC_LIB: lambda: client.jobs.get(job_id),
                SYNC_HOP: lambda: hop.run(hop_call()),
                SYNC_RAW: lambda: stub.GetJob(request, metadata=server.metadata, timeout=TIMEOUT),
            }
            for name, call in variants.items():
                check_reply(name, job_id, call())
            times: dict[str, list[float]] = {name: [] for name in variants}
            for i, order in enumerate(rotations(list(variants), warmup + calls)):
                for name in order:
                    t0 = time.perf_counter()
                    variants[name]()
                    ms = (time.perf_counter() - t0) * 1000
                    if i >= warmup:
                        times[name].append(ms)
        return times
    finally:
        hop.run(aio_channel.close())
        hop.stop()


def print_getjob(title: str, times: dict[str, list[float]], baseline: str) -> None:
    print(f"\n{title}")
    base = statistics.median(times[baseline])
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        rows.append([
            name, f"{median:.3f}", f"{percentile(values, 99):.3f}", f"{max(values):.3f}",
            f"{median / base:.2f}", f"{median - base:+.3f}",
        ])  # fmt: skip
    headers = ["call", "median ms", "p99 ms", "max ms", "x raw", "overhead ms"]
    markdown(headers, rows)


# -- 2. wait latency ------------------------------------------------------------------------

WAITERS = ("`await job.wait()`", "raw `WatchJobs(until_finished)`", "`squeue -j` every 1 s")


async def library_wait(job: Job) -> float:
    await job.wait(timeout=150)
    seen = time.time()
    if not job.finished:
        raise BenchError(f"job.wait() returned with job {job.id} {job.state}")
    return seen


async def raw_watch(stub: compute_pb2_grpc.ComputeServiceStub, md: Any, job_id: str) -> float:
    request = C.WatchJobsRequest(
        parent=f"systems/{SYSTEM}", names=[f"systems/{SYSTEM}/jobs/{job_id}"], until_finished=True
    )
    state = None
    async for reply in stub.WatchJobs(request, metadata=md, timeout=150):
        kind = reply.WhichOneof("kind")
        if kind == "snapshot":
            state = next((j.state for j in reply.snapshot.jobs if j.job_id == job_id), state)
        elif kind == "event" and reply.event.job.job_id == job_id:
            state = reply.event.job.state
    seen = time.time()
    if state not in FINISHED:
        raise BenchError(f"WatchJobs(until_finished) ended with job {job_id} in state {state}")
    return seen


async def squeue_poller(job_id: str) -> float:
    """When a `squeue -j` every second sees the job ended (or gone from the queue)."""
    while True:
        proc = await asyncio.create_subprocess_exec(
            "squeue", "-h", "--states=all", "-j", job_id, "-o", "%T",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        seen = time.time()
        if proc.returncode != 0 and b"Invalid job id" not in err:
            raise BenchError(f"squeue -j {job_id}: {err.decode().strip()}")
        if out.decode().strip() not in ACTIVE:
            return seen
        await asyncio.sleep(1.0)


async def wait_once(
    stub: compute_pb2_grpc.ComputeServiceStub, server: Server, client: Client, jobs: Jobs,
    stamp: Path, sleep: float,
) -> list[float] | None:  # fmt: skip
    """One job waited for by the three watchers: how late each saw its end (ms); None when
    someone else cancelled it (a test suite on the same cluster may)."""
    script = f"#!/bin/sh\nsleep {sleep:.2f}\ndate +%s.%N > {stamp}\n"
    job = jobs.add(
        await client.jobs.submit(
            script=script, job_name=jobs.name, stdout_path="/dev/null", time_limit=5
        )
    )
    ends = await asyncio.wait_for(
        asyncio.gather(
            library_wait(job), raw_watch(stub, server.metadata, job.id), squeue_poller(job.id)
        ),
        180,
    )
    if job.state == "CANCELLED":
        print(f"  job {job.id} was cancelled (by someone else?); another one", file=sys.stderr)
        return None
    if job.state != "COMPLETED" or job.exit_code != 0:
        raise BenchError(f"job {job.id} ended {job.state}, exit code {job.exit_code}")
    try:
        end = float(stamp.read_text())
    except (OSError, ValueError) as e:
        raise BenchError(f"job {job.id} left no end timestamp: {e}") from None
    late = [(seen - end) * 1000 for seen in ends]
    shown = ", ".join(f"{ms:.0f}" for ms in late)
    print(f"  job {job.id} (sleep {sleep:.2f}): {shown} ms late", file=sys.stderr)
    return late


async def wait_latency(
    server: Server, client: Client, jobs: Jobs, workdir: Path, waits: int
) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {name: [] for name in WAITERS}
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = compute_pb2_grpc.ComputeServiceStub(channel)
        i = cancelled = 0
        while i < waits:
            # 2 s and a fraction that differs every time, so that the job's end falls at
            # different points of the watch hub's and the poller's 1-second cycles.
            sleep = 2 + (i * 0.37) % 1
            late = await wait_once(stub, server, client, jobs, workdir / f"end-{i}", sleep)
            if late is None:
                cancelled += 1
                if cancelled > 3:
                    raise BenchError(f"{cancelled} of the bench's jobs were cancelled meanwhile")
                continue
            for name, ms in zip(WAITERS, late, strict=True):
                found[name].append(ms)
            i += 1
    return found


def print_wait(latency: dict[str, list[float]]) -> None:
    raw = latency[WAITERS[1]]
    rows = []
    for name, values in latency.items():
        paired = [v - r for v, r in zip(values, raw, strict=True)]  # same job: Slurm cancels
        rows.append([
            name, f"{statistics.median(values):.0f}", f"{min(values):.0f}",
            f"{max(values):.0f}", f"{statistics.median(paired):+.1f}",
        ])  # fmt: skip
    markdown(["watcher", "median ms", "min ms", "max ms", "- raw, same job: median ms"], rows)


# -- 3. download throughput -----------------------------------------------------------------

DL_LIB = "`client.files.download(...)`"
DL_HASH = "raw Download stream, SHA-256 checked"
DL_RAW = "raw Download stream, no hash"
DL_CAT = "`cat FILE > /dev/null`"


def write_random(path: Path, size: int, uid: int, gid: int) -> str:
    """`size` random bytes owned by the user; returns their SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            data = os.urandom(min(4 * MiB, left))
            digest.update(data)
            f.write(data)
            left -= len(data)
    os.chown(path, uid, gid)
    os.chmod(path, 0o600)
    return digest.hexdigest()


async def raw_download(
    stub: utilities_pb2_grpc.UtilitiesServiceStub,
    md: Any,
    remote: Path,
    local: Path,
    hash_it: bool,
    size: int,
    sha256: str,
) -> None:
    """A Download written to `local`: what one would write on the bare stub. With
    `hash_it`, the received bytes' SHA-256 is compared with the trailer's."""
    digest = hashlib.sha256() if hash_it else None
    received, trailer = 0, None
    with open(local, "wb") as out:
        call = stub.Download(U.DownloadRequest(system=SYSTEM, path=str(remote)), metadata=md)
        async for reply in call:
            kind = reply.WhichOneof("kind")
            if kind == "chunk":
                data = reply.chunk.data
                if reply.chunk.offset != received:
                    raise BenchError(f"chunk at {reply.chunk.offset}, expected {received}")
                out.write(data)
                received += len(data)
                if digest is not None:
                    digest.update(data)
            elif kind == "trailer":
                trailer = reply.trailer
    if trailer is None or received != size or trailer.total_bytes != size:
        raise BenchError(f"raw Download: {received} bytes of {size}, trailer {trailer}")
    if trailer.sha256 != sha256:
        raise BenchError("raw Download: the trailer's SHA-256 is not the file's")
    if digest is not None and digest.hexdigest() != sha256:
        raise BenchError("raw Download: the received bytes' SHA-256 is not the file's")


@dataclass
class Rate:
    mibs: list[float] = field(default_factory=list)
    cpu_per_gib: list[float] = field(default_factory=list)


async def throughput(
    server: Server, client: Client, workdir: Path, tmp: Path, size: int, rounds: int
) -> dict[str, Rate]:
    user = pwd.getpwnam(USER)
    remote = workdir / "download.bin"
    t0 = time.perf_counter()
    sha256 = write_random(remote, size, user.pw_uid, user.pw_gid)
    print(f"  wrote {human(size)} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    local = tmp / "download.bin"

    async def library() -> None:
        done = await client.files.download(str(remote), local, overwrite=True)
        if done.size != size or done.sha256 != sha256 or local.stat().st_size != size:
            raise BenchError(f"client.files.download: {done}, expected {size} bytes {sha256}")

    async def cat() -> None:
        proc = await asyncio.create_subprocess_exec(
            "cat", str(remote), stdout=asyncio.subprocess.DEVNULL
        )
        if await proc.wait() != 0:
            raise BenchError(f"cat {remote} failed ({proc.returncode})")

    def cleanup() -> None:
        for path in (local, local.with_name(local.name + ".part")):
            path.unlink(missing_ok=True)
        os.sync()  # no writeback of the last run left to disturb the next one

    rates = {name: Rate() for name in (DL_LIB, DL_HASH, DL_RAW, DL_CAT)}
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = utilities_pb2_grpc.UtilitiesServiceStub(channel)
        md = server.metadata
        runs: dict[str, Callable[[], Awaitable[None]]] = {
            DL_LIB: library,
            DL_HASH: lambda: raw_download(stub, md, remote, local, True, size, sha256),
            DL_RAW: lambda: raw_download(stub, md, remote, local, False, size, sha256),
            DL_CAT: cat,
        }
        # Untimed: the page cache, both channels, alice's worker, this process's memory.
        for name in (DL_CAT, DL_RAW, DL_LIB):
            await runs[name]()
            cleanup()
        for order in rotations(list(runs), rounds):
            for name in order:
                cpu0 = os.times()
                t0 = time.perf_counter()
                await runs[name]()
                seconds = time.perf_counter() - t0
                cpu1 = os.times()
                cleanup()
                # This process's CPU, threads included; for cat, cat's (a reaped child).
                cpu = sum(cpu1[:4]) - sum(cpu0[:4])
                rates[name].mibs.append(size / MiB / seconds)
                rates[name].cpu_per_gib.append(cpu / (size / GiB))
            print(f"  round: {', '.join(f'{r.mibs[-1]:.0f}' for r in rates.values())} MiB/s",
                  file=sys.stderr)  # fmt: skip
    remote.unlink()
    return rates


def print_throughput(rates: dict[str, Rate]) -> None:
    base = statistics.median(rates[DL_HASH].mibs)
    rows = []
    for name, r in rates.items():
        median = statistics.median(r.mibs)
        rows.append([
            name, f"{median:.0f}", f"{min(r.mibs):.0f}", f"{max(r.mibs):.0f}",
            f"{median / base:.2f}", f"{statistics.median(r.cpu_per_gib):.2f}",
        ])  # fmt: skip
    headers = ["reader", "MiB/s median", "min", "max", "x raw + SHA-256", "client CPU s/GiB"]
    markdown(headers, rows)


# -- the run --------------------------------------------------------------------------------


async def ready(client: Client, server: Server) -> None:
    deadline = time.monotonic() + 60
    while True:  # the server binds its port, starts its watch hub and first probe
        server.check()
        try:
            await client.status.systems()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def run_async(
    server: Server, args: argparse.Namespace, jobs: Jobs, workdir: Path, tmp: Path
) -> str:
    async with connect(server.address, token=server.token, system=SYSTEM) as client:
        await ready(client, server)
        job = jobs.add(
            await client.jobs.submit(
                script="#!/bin/sh\ntrue\n", job_name=jobs.name, stdout_path="/dev/null",
                time_limit=5,
            )
        )  # fmt: skip
        await job.wait(timeout=150)
        if job.state != "COMPLETED":
            raise BenchError(f"job {job.id} ended {job.state}")

        print(f"GetJob ({args.calls} calls)...", file=sys.stderr)
        times = await getjob_async(server, client, job.id, args.calls, args.warmup)
        print_getjob(
            f"GetJob of a finished job (job {job.id}), asyncio: {args.calls} calls each after "
            f"{args.warmup} warm-up rounds, interleaved; p99 is nearest-rank",
            times,
            RAW,
        )
        server.check()

        print(f"wait latency ({args.waits} jobs)...", file=sys.stderr)
        latency = await wait_latency(server, client, jobs, workdir, args.waits)
        print(
            "\nWait latency: from the job's last action (`date +%s.%N` into a file) until the "
            f"watcher returns; {args.waits} jobs (`sleep 2.x`), the three watching each at once."
            "\nSlurm's own delay in ending a job (slurmd, slurmctld) makes all three late alike; "
            "the last column, a watcher's time minus the raw stream's for the same job, does "
            "not have it."
        )
        print_wait(latency)
        server.check()

        print(f"download ({human(args.size)}, {args.rounds} rounds)...", file=sys.stderr)
        rates = await throughput(server, client, workdir, tmp, args.size, args.rounds)
        print(
            f"\nDownload of a {human(args.size)} file (random bytes) in a directory {USER} owns, "
            f"to {tmp} ({os.cpu_count()} CPUs); {args.rounds} rounds, order rotated, page cache "
            "warm;\nthe 1 MiB chunks the server sends by default. CPU: this process's user+sys "
            "(threads included); for cat, cat's."
        )
        print_throughput(rates)
        server.check()
        return job.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="sanity run: 50 calls, 3 waits, 32M, 2 rounds"
    )
    parser.add_argument("--calls", type=int, help="timed GetJob calls per variant (300)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed GetJob rounds (20)")
    parser.add_argument("--waits", type=int, help="jobs waited for (10)")
    parser.add_argument("--size", type=parse_size, help="download file size (256M)")
    parser.add_argument("--rounds", type=int, help="download rounds (7)")
    args = parser.parse_args()
    args.calls = args.calls or (50 if args.quick else 300)
    args.waits = args.waits or (3 if args.quick else 10)
    args.size = args.size or (32 * MiB if args.quick else 256 * MiB)
    args.rounds = args.rounds or (2 if args.quick else 7)
    check_cluster()

    started = time.monotonic()
    entry = pwd.getpwnam(USER)
    tmp = Path(tempfile.mkdtemp(prefix="client-bench-"))
    workdir = Path(tempfile.mkdtemp(prefix="client-bench-", dir=entry.pw_dir))
    os.chown(workdir, entry.pw_uid, entry.pw_gid)
    os.chmod(workdir, 0o700)
    jobs = Jobs(name=f"client-bench-{os.getpid()}")
    server: Server | None = None
    ok = False
    try:
        server = Server(tmp)
        job_id = asyncio.run(run_async(server, args, jobs, workdir, tmp))
        print(f"SyncClient GetJob ({args.calls} calls)...", file=sys.stderr)
        times = getjob_sync(server, job_id, args.calls, args.warmup)
        print_getjob(
            f"GetJob of the same job, blocking: {args.calls} calls each after {args.warmup} "
            "warm-up rounds, interleaved",
            times,
            SYNC_RAW,
        )
        server.check()
        ok = True
    finally:
        jobs.cancel_all()
        if server is not None:
            ok = server.stop() and ok
            if not ok:
                print(f"server log (tail):\n{server.log_tail()}", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
        print(
            f"\n{len(jobs.ids)} jobs submitted and cancelled (name {jobs.name}); "
            f"bench ran {time.monotonic() - started:.0f} s",
            file=sys.stderr,
        )
    if not ok:
        sys.exit("client_bench.py: the server did not stop cleanly")


if __name__ == "__main__":
    main()
