"""WatchJobs at scale: what N concurrent watchers cost the controller, and how fast they hear.

Starts `hpcgate-server serve` on loopback against the local Slurm, opens N WatchJobs
streams (alice's jobs), submits a few short jobs through the gateway and measures, per
level: slurmctld RPCs per minute (from `sdiag`), event delivery latency from the hub's
detection (event.time) to the client (p50/p99), and the server's RSS. Beside it, N naive
clients polling `squeue` every second, the way a polling client drives the scheduler
(only up to 100: more would measure this 2-core machine, not the scheduler). Last, a
burst: `--burst` streams opened at the same moment, as watchers reconnecting after a
restart do, all of which must be served (`server.max_pending_requests`).

    .venv/bin/python bench/watch_bench.py [--levels 1,100,1000,10000] [--seconds 30] [--burst 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from common import free_port, rss_mib, sdiag_rpc_total

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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,100,1000,10000")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--burst", type=int, default=2000, help="streams opened at once")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.toml"
        config.write_text(
            '[privsep]\nservice_user = ""\n'  # one root process: state in a private temp dir
            f'[server]\nlisten = "127.0.0.1:{port}"\nstate_dir = "{tmp}/state"\n'
            'log_level = "warning"\n[limits]\nmax_concurrent_rpcs = 20000\n'
            "[watch]\nstream_queue_size = 100\n"
            "[rate_limits]\nenabled = false\n"  # 10,000 streams of one user: over the caps
        )
        env = dict(os.environ, HPCGATE_CONFIG=str(config))
        token = subprocess.run(
            [
                str(BIN / "hpcgate-server"),
                "token",
                "--user",
                "alice",
                "--scope",
                "read",
                "--scope",
                "execute",
                "--ttl",
                "3600",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        server = subprocess.Popen(
            [str(BIN / "hpcgate-server"), "serve"], env=env, stderr=subprocess.DEVNULL
        )
        try:
            await asyncio.sleep(3)
            idle_before, t0 = sdiag_rpc_total(), time.monotonic()
            await asyncio.sleep(10)
            idle = (sdiag_rpc_total() - idle_before) / (time.monotonic() - t0) * 60
            rows = []
            for n in args.levels.split(","):
                try:
                    rows.append(
                        await watch_level(
                            f"127.0.0.1:{port}", token, server.pid, int(n), args.seconds
                        )
                    )
                except grpc.aio.AioRpcError as e:
                    print(f"level {n} failed: {e.code().name} {e.details()}", file=sys.stderr)
            burst = await burst_level(f"127.0.0.1:{port}", token, args.burst)
        finally:
            server.terminate()
            server.wait(10)
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


if __name__ == "__main__":
    asyncio.run(main())
