"""WatchJobs at scale: what N concurrent watchers cost the controller, and how fast they hear.

Starts `hpcgate-server serve` on loopback against the local Slurm, opens N WatchJobs
streams (alice's jobs), submits a few short jobs through the gateway and measures, per
level: slurmctld RPCs per minute (from `sdiag`), event delivery latency from the hub's
detection (event.time) to the client (p50/p99), and the server's RSS. Beside it, N naive
clients polling `squeue` every second, the way a polling client drives the scheduler
(only up to 100: more would measure this 2-core machine, not the scheduler). Last, a
burst: `--burst` streams opened at the same moment, as watchers reconnecting after a
restart do, all of which must be served (`server.max_pending_requests`).

Then job event latency with Slurm's hooks (slurm/hook.py, installed by cluster.sh) and
with polling only (`[watch] hook_socket = ""`, poll floor 1 s): the same short jobs,
from the hook's call (Slurm's PrologSlurmctld for a start, jobcomp/script for an end,
heard by the bench's own socket beside the gateway's) to the watcher, p50/p99.

    .venv/bin/python bench/watch_bench.py [--levels 1,100,1000,10000] [--seconds 30]
        [--burst 2000] [--hook-jobs 40] [--only-hooks]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
from common import free_port, rss_mib, sdiag_rpc_total

from hpcgate.server.slurm.hook import HOOK_DIR, parse_notice
from hpcgate.v1 import compute_pb2 as S
from hpcgate.v1 import compute_pb2_grpc

BIN = Path(sys.executable).parent


async def watch_level(
    address: str, token: str, pid: int, n: int, seconds: float
) -> dict[str, float]:
    md = [("authorization", f"Bearer {token}")]
    latencies: list[float] = []
    # 1,000 streams per connection: HTTP/2 peers cap concurrent streams per connection.
    channels = [grpc.aio.insecure_channel(address) for _ in range((n + 999) // 1000)]
    try:
        stub = compute_pb2_grpc.ComputeServiceStub(channels[0])
        stubs = [compute_pb2_grpc.ComputeServiceStub(c) for c in channels]
        streams = []
        for start in range(0, n, 500):  # open in batches, each waiting for its snapshots
            batch = [
                stubs[(start + i) // 1000].WatchJobs(
                    S.WatchJobsRequest(parent="systems/local"), metadata=md
                )
                for i in range(min(500, n - start))
            ]
            await asyncio.gather(*(b.read() for b in batch))
            streams += batch

        async def consume(stream: grpc.aio.UnaryStreamCall) -> None:
            while (message := await stream.read()) is not grpc.aio.EOF:
                if message.WhichOneof("kind") == "event":
                    sent = message.event.time.ToDatetime().timestamp()
                    latencies.append((time.time() - sent) * 1000)

        consumers = [asyncio.create_task(consume(s)) for s in streams]
        before, started = sdiag_rpc_total(), time.monotonic()
        for _ in range(3):  # a few jobs -> a few events per stream
            await stub.SubmitJob(
                S.SubmitJobRequest(
                    parent="systems/local",
                    script="#!/bin/sh\nsleep 1\n",
                    options=S.JobOptions(stdout_path="/dev/null"),
                ),
                metadata=md,
            )
            await asyncio.sleep(seconds / 3)
        elapsed = time.monotonic() - started
        rpcs = sdiag_rpc_total() - before
        rss = rss_mib(pid)
        for s in streams:
            s.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
    finally:
        for channel in channels:
            await channel.close()
    latencies.sort()
    return {
        "n": n,
        "rpm": rpcs / elapsed * 60,
        "rss": rss,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": latencies[max(0, int(len(latencies) * 0.99) - 1)] if latencies else float("nan"),
        "events": len(latencies),
    }


async def burst_level(address: str, token: str, n: int) -> dict[str, float]:
    """`n` WatchJobs streams opened at the same moment (watchers reconnecting after a
    restart): how many got their snapshot, how many were refused, how long it took."""
    md = [("authorization", f"Bearer {token}")]
    own = [("grpc.use_local_subchannel_pool", 1)]  # one connection per 1,000 streams
    channels = [grpc.aio.insecure_channel(address, options=own) for _ in range((n + 999) // 1000)]
    try:
        stubs = [compute_pb2_grpc.ComputeServiceStub(c) for c in channels]
        request = S.WatchJobsRequest(parent="systems/local")
        started = time.monotonic()
        streams = [stubs[i % len(stubs)].WatchJobs(request, metadata=md) for i in range(n)]
        firsts = await asyncio.gather(*(s.read() for s in streams), return_exceptions=True)
        elapsed = time.monotonic() - started
        for s in streams:
            s.cancel()
    finally:
        for channel in channels:
            await channel.close()
    refused = sum(isinstance(f, grpc.aio.AioRpcError) for f in firsts)
    return {"n": n, "served": n - refused, "refused": refused, "seconds": elapsed}


async def naive_level(n: int, seconds: float) -> float:
    """slurmctld RPCs/min with `n` clients each running `squeue --me` once a second."""
    stop = time.monotonic() + seconds

    async def client() -> None:
        while time.monotonic() < stop:
            proc = await asyncio.create_subprocess_exec(
                "squeue", "-h", "-u", "alice", stdout=asyncio.subprocess.DEVNULL
            )
            await proc.wait()
            await asyncio.sleep(1)

    before, started = sdiag_rpc_total(), time.monotonic()
    await asyncio.gather(*(client() for _ in range(n)))
    return (sdiag_rpc_total() - before) / (time.monotonic() - started) * 60


STARTED = {S.JOB_STATE_CONFIGURING, S.JOB_STATE_RUNNING}
ENDED = {S.JOB_STATE_COMPLETED, S.JOB_STATE_FAILED, S.JOB_STATE_CANCELLED}


@contextlib.contextmanager
def hook_observer() -> Iterator[dict[tuple[str, str], float]]:
    """A socket among the gateways' that hears every notice Slurm's hook sends: yields
    {(job id, event): the hook's call time}, filled by a thread as notices come (a Unix
    datagram socket queues only net.unix.max_dgram_qlen of them)."""
    path = Path(HOOK_DIR) / f"bench-{os.getpid()}.sock"
    Path(HOOK_DIR).mkdir(exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    os.chmod(path, 0o660)
    os.chown(path, -1, os.stat(HOOK_DIR).st_gid)
    told: dict[tuple[str, str], float] = {}

    def drain() -> None:
        while data := sock.recv(4096):
            if (notice := parse_notice(data)) is not None:
                told.setdefault((notice.job_id, notice.event), notice.time)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        yield told
    finally:
        sock.sendto(b"", str(path))  # wakes the reader, which stops
        reader.join(5)
        sock.close()
        path.unlink(missing_ok=True)


async def hook_latency(address: str, token: str, jobs: int) -> dict[str, list[float]]:
    """ms from the hook's call to the watcher, for the start and the end of `jobs` short
    jobs (submitted two at a time, a quarter second apart). A start the poll never saw
    (the job ended between two polls) has no row: `n` counts those seen."""
    md = [("authorization", f"Bearer {token}")]
    arrived: dict[tuple[str, str], float] = {}
    with hook_observer() as told:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = compute_pb2_grpc.ComputeServiceStub(channel)
            stream = stub.WatchJobs(S.WatchJobsRequest(parent="systems/local"), metadata=md)
            await stream.read()  # the snapshot
            submitted: set[str] = set()

            async def consume() -> None:
                while (message := await stream.read()) is not grpc.aio.EOF:
                    if message.WhichOneof("kind") != "event":
                        continue
                    event = message.event
                    kind = "started" if event.state in STARTED else "ended"
                    if event.state in STARTED | ENDED:
                        arrived.setdefault((event.job.job_id, kind), time.time())

            consumer = asyncio.create_task(consume())
            for _ in range(0, jobs, 2):
                for _ in range(2):
                    # Run times spread over a second: ends fall anywhere between polls.
                    script = f"#!/bin/sh\nsleep {random.uniform(0.3, 1.3):.2f}\n"
                    reply = await stub.SubmitJob(
                        S.SubmitJobRequest(parent="systems/local", script=script,
                                           options=S.JobOptions(stdout_path="/dev/null")),
                        metadata=md,
                    )  # fmt: skip
                    submitted.add(reply.job.job_id)
                await asyncio.sleep(0.25)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and any(
                (j, "ended") not in arrived for j in submitted
            ):
                await asyncio.sleep(0.2)
            consumer.cancel()
            stream.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
    result: dict[str, list[float]] = {"started": [], "ended": []}
    for key, at in arrived.items():
        if key[0] in submitted and key in told:
            result[key[1]].append((at - told[key]) * 1000)
    return result


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def hook_rows(jobs: int) -> list[tuple[str, str, list[float]]]:
    rows = []
    own = f'hook_socket = "{HOOK_DIR}/bench-gateway-{os.getpid()}.sock"\n'
    for mode, watch in (("hooks", own), ("polling only", 'hook_socket = ""\n')):
        with gateway_process(f"[watch]\npoll_floor = 1.0\n{watch}") as (address, token, _):
            await asyncio.sleep(3)
            found = await hook_latency(address, token, jobs)
        rows += [(mode, kind, values) for kind, values in found.items()]
    return rows


def print_hook_rows(rows: list[tuple[str, str, list[float]]], jobs: int) -> None:
    print(f"\nJob event latency, {jobs} jobs (0.3-1.3 s each): Slurm's hook call -> the watcher")
    print(f"{'mode':>13} {'event':>8} {'n':>4} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for mode, kind, values in rows:
        print(
            f"{mode:>13} {kind:>8} {len(values):>4} {percentile(values, 0.5):>8.1f} "
            f"{percentile(values, 0.99):>8.1f} {max(values, default=float('nan')):>8.1f}"
        )


@contextlib.contextmanager
def gateway_process(extra: str = "", http: str = "127.0.0.1:0") -> Iterator[tuple[str, str, int]]:
    """`hpcgate-server serve` on a free port (one root process, private state), its HTTP
    listener on `http`, with `extra` TOML appended; yields its address, alice's token and
    its pid."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.toml"
        config.write_text(
            '[privsep]\nservice_user = ""\n'  # one root process: state in a private temp dir
            f'[http]\nlisten = "{http}"\n'
            f'[server]\nlisten = "127.0.0.1:{port}"\nstate_dir = "{tmp}/state"\n'
            'log_level = "warning"\n[limits]\nmax_concurrent_rpcs = 20000\n'
            "[rate_limits]\nenabled = false\n" + extra  # 10,000 streams of one user: over the caps
        )
        env = dict(os.environ, HPCGATE_CONFIG=str(config))
        token = subprocess.run(
            [str(BIN / "hpcgate-server"), "token", "--user", "alice", "--scope", "read",
             "--scope", "execute", "--ttl", "3600"],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        server = subprocess.Popen(
            [str(BIN / "hpcgate-server"), "serve"], env=env, stderr=subprocess.DEVNULL
        )
        try:
            yield f"127.0.0.1:{port}", token, server.pid
        finally:
            server.terminate()
            server.wait(10)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,100,1000,10000")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--burst", type=int, default=2000, help="streams opened at once")
    parser.add_argument("--hook-jobs", type=int, default=40, help="jobs for the latency rows")
    parser.add_argument("--only-hooks", action="store_true", help="only the latency rows")
    args = parser.parse_args()
    if args.only_hooks:
        print_hook_rows(await hook_rows(args.hook_jobs), args.hook_jobs)
        return
    with gateway_process("[watch]\nstream_queue_size = 100\n") as (address, token, pid):
        await asyncio.sleep(3)
        idle_before, t0 = sdiag_rpc_total(), time.monotonic()
        await asyncio.sleep(10)
        idle = (sdiag_rpc_total() - idle_before) / (time.monotonic() - t0) * 60
        rows = []
        for n in args.levels.split(","):
            try:
                rows.append(await watch_level(address, token, pid, int(n), args.seconds))
            except grpc.aio.AioRpcError as e:
                print(f"level {n} failed: {e.code().name} {e.details()}", file=sys.stderr)
        burst = await burst_level(address, token, args.burst)
    hooks = await hook_rows(args.hook_jobs)
    naive = {n: await naive_level(n, min(args.seconds, 20)) for n in (1, 10, 100)}
    print(
        f"\nWatchJobs, {args.seconds:g} s per level, 3 jobs submitted per level; "
        f"slurmctld RPC/min with the gateway idle (no watcher): {idle:.0f}"
    )
    print(
        f"{'watchers':>9} {'ctld RPC/min':>13} {'events':>8} {'latency p50 ms':>15} "
        f"{'p99 ms':>8} {'server RSS MiB':>15}"
    )
    for r in rows:
        print(
            f"{r['n']:>9.0f} {r['rpm']:>13.0f} {r['events']:>8.0f} {r['p50']:>15.1f} "
            f"{r['p99']:>8.1f} {r['rss']:>15.1f}"
        )
    print(
        f"\n{burst['n']:.0f} WatchJobs streams opened at once: {burst['served']:.0f} served, "
        f"{burst['refused']:.0f} refused, all first messages in {burst['seconds']:.2f} s"
    )
    print("\nnaive clients polling squeue every second (no gateway)")
    print(f"{'clients':>9} {'ctld RPC/min':>13}")
    for n, rpm in naive.items():
        print(f"{n:>9} {rpm:>13.0f}")
    print_hook_rows(hooks, args.hook_jobs)


if __name__ == "__main__":
    asyncio.run(main())
