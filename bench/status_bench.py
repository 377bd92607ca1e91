"""StatusService under load: latency of ListSystems and the cost of many WatchSystems streams.

Starts `hpcgate-server serve` as a child process on loopback (against the local Slurm),
then for 1, 100 and 1,000 concurrent WatchSystems streams measures: ListSystems latency
(p50/p99) while the streams are open, the server's RSS, and slurmctld RPCs per minute
(from `sdiag`), which must not grow with the number of watchers. Prints a table.

    .venv/bin/python bench/status_bench.py [--levels 1,100,1000] [--seconds 20]
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

from hpcgate.v1 import status_pb2, status_pb2_grpc

BIN = Path(sys.executable).parent


async def run_level(address: str, pid: int, watchers: int, seconds: float) -> dict[str, float]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = status_pb2_grpc.StatusServiceStub(channel)
        streams = [stub.WatchSystems(status_pb2.WatchSystemsRequest()) for _ in range(watchers)]
        await asyncio.gather(*(s.read() for s in streams))  # every snapshot received
        rpc_before, started = sdiag_rpc_total(), time.monotonic()
        latencies = []
        while time.monotonic() - started < seconds:
            t0 = time.perf_counter()
            await stub.ListSystems(status_pb2.ListSystemsRequest())
            latencies.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - started
        rpcs = sdiag_rpc_total() - rpc_before
        rss = rss_mib(pid)
        for s in streams:
            s.cancel()
    latencies.sort()
    return {
        "watchers": watchers,
        "list_p50_ms": statistics.median(latencies),
        "list_p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "ctld_rpc_per_min": rpcs / elapsed * 60,
        "rss_mib": rss,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,100,1000")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--probe-interval", type=float, default=2.0)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.toml"
        config.write_text(
            '[privsep]\nservice_user = ""\n'  # one root process: state in a private temp dir
            '[http]\nlisten = "127.0.0.1:0"\n'  # the HTTP listener on a free port
            f'[server]\nlisten = "127.0.0.1:{port}"\nstate_dir = "{tmp}/state"\n'
            f'log_level = "warning"\n[status]\nprobe_interval = {args.probe_interval}\n'
            "[rate_limits]\nenabled = false\n"  # one address: measure, not throttle
        )
        server = subprocess.Popen(
            [str(BIN / "hpcgate-server"), "--config", str(config), "serve"],
            env=dict(os.environ),
            stderr=subprocess.DEVNULL,
        )
        try:
            address = f"127.0.0.1:{port}"
            await asyncio.sleep(2)
            rows = [
                await run_level(address, server.pid, int(n), args.seconds)
                for n in args.levels.split(",")
            ]
        finally:
            server.terminate()
            server.wait(10)
    print(
        f"\nStatusService, probe interval {args.probe_interval:g} s, {args.seconds:g} s per level"
    )
    print(
        f"{'watchers':>9} {'ListSystems p50 ms':>19} {'p99 ms':>8} {'slurmctld RPC/min':>18} "
        f"{'server RSS MiB':>15}"
    )
    for r in rows:
        print(
            f"{r['watchers']:>9.0f} {r['list_p50_ms']:>19.2f} {r['list_p99_ms']:>8.2f} "
            f"{r['ctld_rpc_per_min']:>18.1f} {r['rss_mib']:>15.1f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
