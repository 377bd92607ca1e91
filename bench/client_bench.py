"""What the Python client library costs over the raw generated stubs.

Starts `hpcgate-server serve` on loopback as root against the local Slurm, with an access
token for alice, and measures in one run:

1. GetJob of a finished job (answered from the server's memory, so the client's own work
   shows): `await client.jobs.get(id)` against `await ComputeServiceStub.GetJob(...)` on
   an equivalent channel, interleaved, median and p99 of --calls calls; the same for
   `SyncClient` against a blocking stub.
2. Wait latency: jobs whose script writes a high-resolution timestamp as its very last
   action; the time from that timestamp until `job.wait()` returns, until a raw
   `WatchJobs(names=[job], until_finished=True)` stream ends, and until a 1-second
   `squeue -j` poller (what a script would do without a stream) sees the job gone or
   ended. All three watch the same job at once; --waits jobs.
3. Download throughput of a --size file in alice's home: `client.files.download(...)`
   (writes a .part file, verifies the SHA-256, renames) against a raw Download stream
   written to a file with and without hashing, and `cat FILE > /dev/null` as a floor.
   Interleaved, median of --rounds rounds, page cache warm.

    .venv/bin/python bench/client_bench.py [--quick] [--calls 200] [--waits 8] [--size 256M]
"""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")  # children exec at once

import argparse
import asyncio
import hashlib
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from common import MiB, free_port, human, parse_size, percentile

from hpcgate.client import Client, SyncClient, connect
from hpcgate.client.jobs import Job
from hpcgate.v1 import compute_pb2 as C
from hpcgate.v1 import compute_pb2_grpc, utilities_pb2_grpc
from hpcgate.v1 import utilities_pb2 as U

BIN = Path(sys.executable).parent
USER = "alice"
SYSTEM = "local"


def check_cluster() -> None:
    if os.geteuid() != 0:
        sys.exit("client_bench.py runs as root: it starts the server in multi-user mode")
    try:
        pwd.getpwnam(USER)
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
    except (KeyError, OSError, subprocess.TimeoutExpired) as e:
        sys.exit(f"client_bench.py: the local Slurm cluster is not up ({e}); run make cluster")
    if "UP" not in ping.stdout:
        sys.exit("client_bench.py: slurmctld does not answer; run make cluster")


class Server:
    """hpcgate-server on a free loopback port with a private state directory."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        config = tmp / "bench.toml"
        config.write_text(
            f'[server]\nlisten = "127.0.0.1:{self.port}"\nstate_dir = "{tmp}/state"\n'
            'log_level = "warning"\n'
        )
        self.env = dict(os.environ, HPCGATE_CONFIG=str(config))
        self.token = subprocess.run(
            [str(BIN / "hpcgate-server"), "token", "--user", USER, "--ttl", "7200",
             "--scope", "read", "--scope", "write", "--scope", "execute"],
            env=self.env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        self.log = open(tmp / "server.log", "wb")  # noqa: SIM115 - for the server's life
        self.proc = subprocess.Popen([str(BIN / "hpcgate-server"), "serve"], env=self.env,
                                     stderr=self.log)  # fmt: skip
        self.address = f"127.0.0.1:{self.port}"
        self.metadata = [("authorization", f"Bearer {self.token}")]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


def ms_table(title: str, rows: list[tuple[str, list[float], str, list[float]]]) -> None:
    print(f"\n{title}")
    header = f"{'library call':<34} {'median':>9} {'p99':>9}  {'raw stub':<28} {'median':>9} {'p99':>9} {'ratio':>6} {'overhead':>9}"  # noqa: E501
    print(header)
    print("-" * len(header))
    for name, lib, raw_name, raw in rows:
        lm, rm = statistics.median(lib), statistics.median(raw)
        print(
            f"{name:<34} {lm:>6.3f} ms {percentile(lib, 99):>6.3f} ms  {raw_name:<28} "
            f"{rm:>6.3f} ms {percentile(raw, 99):>6.3f} ms {lm / rm:>6.2f} {lm - rm:>+6.3f} ms"
        )


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    t0 = time.perf_counter()
    await call()
    return (time.perf_counter() - t0) * 1000


# -- 1. GetJob ----------------------------------------------------------------------------


async def getjob_async(
    server: Server, client: Client, job_id: str, calls: int
) -> tuple[list[float], list[float]]:
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = compute_pb2_grpc.ComputeServiceStub(channel)
        request = C.GetJobRequest(name=f"systems/{SYSTEM}/jobs/{job_id}")
        lib, raw = [], []
        for i in range(calls + 20):
            a = await timed(lambda: client.jobs.get(job_id))
            b = await timed(lambda: stub.GetJob(request, metadata=server.metadata, timeout=60))
            if i >= 20:  # warm-up
                lib.append(a)
                raw.append(b)
        return lib, raw


def getjob_sync(server: Server, job_id: str, calls: int) -> tuple[list[float], list[float]]:
    request = C.GetJobRequest(name=f"systems/{SYSTEM}/jobs/{job_id}")
    with SyncClient.connect(server.address, token=server.token, system=SYSTEM) as client, \
            grpc.insecure_channel(server.address) as channel:  # fmt: skip
        stub = compute_pb2_grpc.ComputeServiceStub(channel)
        lib, raw = [], []
        for i in range(calls + 20):
            t0 = time.perf_counter()
            client.jobs.get(job_id)
            t1 = time.perf_counter()
            stub.GetJob(request, metadata=server.metadata, timeout=60)
            t2 = time.perf_counter()
            if i >= 20:
                lib.append((t1 - t0) * 1000)
                raw.append((t2 - t1) * 1000)
        return lib, raw


# -- 2. wait latency ------------------------------------------------------------------------


async def squeue_poller(job_id: str) -> float:
    """When a 1 s `squeue -j` poller sees the job ended (or gone from the queue)."""
    while True:
        proc = await asyncio.create_subprocess_exec(
            "squeue", "-h", "--states=all", "-j", job_id, "-o", "%T",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        out, _ = await proc.communicate()
        state = out.decode().strip()
        if state not in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING"):
            return time.time()
        await asyncio.sleep(1.0)


async def raw_watch(server: Server, job_id: str) -> float:
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = compute_pb2_grpc.ComputeServiceStub(channel)
        request = C.WatchJobsRequest(parent=f"systems/{SYSTEM}", until_finished=True,
                                     names=[f"systems/{SYSTEM}/jobs/{job_id}"])  # fmt: skip
        async for _ in stub.WatchJobs(request, metadata=server.metadata):
            pass
    return time.time()


async def library_wait(job: Job) -> float:
    await job.wait(timeout=120)
    return time.time()


async def wait_latency(server: Server, client: Client, waits: int) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {"job.wait()": [], "raw WatchJobs": [], "squeue 1 s poll": []}
    home = Path(pwd.getpwnam(USER).pw_dir)
    for i in range(waits):
        stamp = home / f"client-bench-{uuid.uuid4().hex[:8]}.end"
        script = f"#!/bin/sh\nsleep {1 + (i % 3) * 0.37:.2f}\ndate +%s.%N > {stamp}\n"
        job = await client.jobs.submit(script=script, stdout_path="/dev/null", time_limit=5)

        ends = await asyncio.gather(library_wait(job), raw_watch(server, job.id),
                                    squeue_poller(job.id))  # fmt: skip
        end = float(stamp.read_text())
        stamp.unlink()
        for name, seen in zip(found, ends, strict=True):
            found[name].append((seen - end) * 1000)
        print(f"  wait {i + 1}/{waits}: job {job.id} {job.state}", file=sys.stderr)
    return found


# -- 3. download throughput -----------------------------------------------------------------


async def raw_download(server: Server, remote: str, local: Path, hash_it: bool) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = utilities_pb2_grpc.UtilitiesServiceStub(channel)
        digest = hashlib.sha256() if hash_it else None
        with open(local, "wb") as out:
            async for reply in stub.Download(U.DownloadRequest(system=SYSTEM, path=remote),
                                             metadata=server.metadata):  # fmt: skip
                if reply.HasField("chunk"):
                    out.write(reply.chunk.data)
                    if digest is not None:
                        digest.update(reply.chunk.data)
                elif reply.HasField("trailer") and digest is not None:
                    assert digest.hexdigest() == reply.trailer.sha256


async def throughput(
    server: Server, client: Client, size: int, rounds: int, tmp: Path
) -> dict[str, list[float]]:
    user = pwd.getpwnam(USER)
    remote = Path(user.pw_dir) / f"client-bench-{uuid.uuid4().hex[:8]}.bin"
    with open(remote, "wb") as f:
        for _ in range(size // MiB):
            f.write(os.urandom(MiB))
    os.chown(remote, user.pw_uid, user.pw_gid)
    local = tmp / "down.bin"
    names = ("client.files.download", "raw stream + SHA-256", "raw stream, no hash",
             "cat FILE > /dev/null")  # fmt: skip
    rates: dict[str, list[float]] = {name: [] for name in names}

    async def cat() -> None:
        proc = await asyncio.create_subprocess_exec("cat", str(remote),
                                                    stdout=asyncio.subprocess.DEVNULL)  # fmt: skip
        await proc.wait()

    runs: dict[str, Callable[[], Awaitable[Any]]] = {
        "client.files.download": lambda: client.files.download(str(remote), local, overwrite=True),
        "raw stream + SHA-256": lambda: raw_download(server, str(remote), local, True),
        "raw stream, no hash": lambda: raw_download(server, str(remote), local, False),
        "cat FILE > /dev/null": cat,
    }
    try:
        await cat()  # warm the page cache
        for _ in range(rounds):
            for name, run in runs.items():
                seconds = await timed(run) / 1000
                rates[name].append(size / MiB / seconds)
                local.unlink(missing_ok=True)
    finally:
        remote.unlink(missing_ok=True)
    return rates


# -- the run --------------------------------------------------------------------------------


async def run_async(server: Server, args: argparse.Namespace, tmp: Path) -> str:
    async with connect(server.address, token=server.token, system=SYSTEM) as client:
        deadline = time.monotonic() + 60
        while True:  # the server starts its watch hub and first probe
            try:
                await client.status.systems()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        job = await client.jobs.submit(script="#!/bin/sh\ntrue\n", stdout_path="/dev/null")
        await job.wait(timeout=120)
        lib, raw = await getjob_async(server, client, job.id, args.calls)
        ms_table(
            f"GetJob of a finished job, {args.calls} calls each after 20 warm-up, interleaved",
            [("await client.jobs.get(id)", lib, "await stub.GetJob(req)", raw)],
        )
        print("\nWait latency: from the job's last action (a timestamp it writes) until the "
              f"watcher returns; {args.waits} jobs, all three watching each at once")  # fmt: skip
        latency = await wait_latency(server, client, args.waits)
        print(f"{'watcher':<22} {'median':>9} {'max':>9}")
        for name, values in latency.items():
            print(f"{name:<22} {statistics.median(values):>6.0f} ms {max(values):>6.0f} ms")
        print(f"\nDownload of a {human(args.size)} file in {USER}'s home, median of "
              f"{args.rounds} rounds (page cache warm)")  # fmt: skip
        rates = await throughput(server, client, args.size, args.rounds, tmp)
        base = statistics.median(rates["raw stream + SHA-256"])
        print(f"{'reader':<24} {'MiB/s':>8} {'vs raw + SHA-256':>17}")
        for name, values in rates.items():
            m = statistics.median(values)
            print(f"{name:<24} {m:>8.0f} {m / base:>17.2f}")
        return job.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 calls, 3 waits, 32M, 1 round")
    parser.add_argument("--calls", type=int)
    parser.add_argument("--waits", type=int)
    parser.add_argument("--size", type=parse_size)
    parser.add_argument("--rounds", type=int)
    args = parser.parse_args()
    args.calls = args.calls or (50 if args.quick else 200)
    args.waits = args.waits or (3 if args.quick else 8)
    args.size = args.size or (32 * MiB if args.quick else 256 * MiB)
    args.rounds = args.rounds or (1 if args.quick else 3)
    check_cluster()
    tmp = Path(tempfile.mkdtemp(prefix="client-bench-"))
    server = Server(tmp)
    failed = True
    try:
        job_id = asyncio.run(run_async(server, args, tmp))
        lib, raw = getjob_sync(server, job_id, args.calls)
        ms_table("SyncClient (blocking), same job",
                 [("client.jobs.get(id)", lib, "stub.GetJob(req)", raw)])  # fmt: skip
        failed = False
    finally:
        server.stop()
        if failed:
            print((tmp / "server.log").read_text(errors="replace")[-3000:], file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
