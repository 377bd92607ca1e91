"""Connect over HTTP against native gRPC, in the same run, against one gateway.

Starts `hpcgate-server serve` on loopback (the local Slurm) with its HTTP listener, then:
- unary latency (p50/p99 over --calls sequential calls) of StatusService.GetSystem
  (no token) and ComputeService.ListJobs (token): native gRPC (grpc.aio), and Connect
  with the connectrpc client in JSON and in binary, HTTP/1.1;
- stream event latency: one WatchJobs stream over gRPC and one over Connect open at
  once while --jobs short jobs run; for every job event, the time from the gateway's
  detection (event.time) to its arrival at each client (p50/p99).

    .venv/bin/python bench/http_bench.py [--calls 500] [--jobs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
from common import free_port
from connectrpc.client import ConnectClient
from connectrpc.compat import google_protobuf_binary_codec, google_protobuf_json_codec
from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType
from watch_bench import gateway_process

from hpcgate.v1 import compute_pb2 as C
from hpcgate.v1 import compute_pb2_grpc, status_pb2, status_pb2_grpc


def method(service: str, name: str, request: Any, response: Any, kind: StreamType) -> MethodInfo:
    return MethodInfo(
        name=name, service_name=f"hpcgate.v1.{service}", input=request, output=response,
        idempotency_level=IdempotencyLevel.UNKNOWN, stream_type=kind,
    )  # fmt: skip


GET_SYSTEM = method("StatusService", "GetSystem", status_pb2.GetSystemRequest,
                    status_pb2.GetSystemResponse, StreamType.UNARY)  # fmt: skip
LIST_JOBS = method("ComputeService", "ListJobs", C.ListJobsRequest, C.ListJobsResponse,
                   StreamType.UNARY)  # fmt: skip
WATCH_JOBS = method("ComputeService", "WatchJobs", C.WatchJobsRequest, C.WatchJobsResponse,
                    StreamType.SERVER_STREAM)  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


async def timed(call: Callable[[], Awaitable[object]], n: int) -> list[float]:
    for _ in range(20):  # warm up connections and caches
        await call()
    latencies = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        latencies.append((time.perf_counter() - t0) * 1000)
    return latencies


async def unary_rows(grpc_address: str, http_url: str, token: str, n: int) -> list[tuple[str, ...]]:
    auth = {"authorization": f"Bearer {token}"}
    md = list(auth.items())
    get = status_pb2.GetSystemRequest(name="systems/local")
    jobs = C.ListJobsRequest(parent="systems/local")
    rows = []
    async with grpc.aio.insecure_channel(grpc_address) as channel:
        status = status_pb2_grpc.StatusServiceStub(channel)
        compute = compute_pb2_grpc.ComputeServiceStub(channel)
        rows.append(("gRPC", "GetSystem", await timed(lambda: status.GetSystem(get), n)))
        rows.append(("gRPC", "ListJobs",
                     await timed(lambda: compute.ListJobs(jobs, metadata=md), n)))  # fmt: skip
    for label, codec in (("Connect JSON", google_protobuf_json_codec()),
                         ("Connect binary", google_protobuf_binary_codec())):  # fmt: skip
        async with ConnectClient(http_url, codec=codec,
                                 send_compression=None) as client:  # fmt: skip
            rows.append((label, "GetSystem", await timed(
                lambda c=client: c.execute_unary(request=get, method=GET_SYSTEM), n)))  # fmt: skip
            rows.append((label, "ListJobs", await timed(
                lambda c=client: c.execute_unary(request=jobs, method=LIST_JOBS,
                                                 headers=auth), n)))  # fmt: skip
    return [(p, m, f"{percentile(v, 0.5):.2f}", f"{percentile(v, 0.99):.2f}") for p, m, v in rows]


async def stream_rows(
    grpc_address: str, http_url: str, token: str, jobs: int
) -> list[tuple[str, ...]]:
    md = [("authorization", f"Bearer {token}")]
    request = C.WatchJobsRequest(parent="systems/local")
    seen: dict[str, list[float]] = {"gRPC": [], "Connect binary": []}

    def record(label: str, message: C.WatchJobsResponse) -> None:
        if message.WhichOneof("kind") == "event":
            sent = message.event.time.ToDatetime().timestamp()
            seen[label].append((time.time() - sent) * 1000)

    async def over_grpc(stream: Any) -> None:
        async for message in stream:
            record("gRPC", message)

    async def over_connect(messages: AsyncIterator[C.WatchJobsResponse]) -> None:
        async for message in messages:
            record("Connect binary", message)

    async with grpc.aio.insecure_channel(grpc_address) as channel:
        compute = compute_pb2_grpc.ComputeServiceStub(channel)
        client = ConnectClient(http_url, codec=google_protobuf_binary_codec(),
                               send_compression=None)  # fmt: skip
        grpc_stream = compute.WatchJobs(request, metadata=md)
        connect_stream = client.execute_server_stream(
            request=request, method=WATCH_JOBS, headers=dict(md)
        )
        tasks = [asyncio.create_task(over_grpc(grpc_stream)),
                 asyncio.create_task(over_connect(connect_stream))]  # fmt: skip
        await asyncio.sleep(2)
        for _ in range(jobs):
            await compute.SubmitJob(
                C.SubmitJobRequest(parent="systems/local", script="#!/bin/sh\nsleep 0.3\n",
                                   options=C.JobOptions(stdout_path="/dev/null")),
                metadata=md,
            )  # fmt: skip
            await asyncio.sleep(1.5)
        await asyncio.sleep(3)
        grpc_stream.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
    return [
        (label, str(len(v)), f"{percentile(v, 0.5):.1f}", f"{percentile(v, 0.99):.1f}")
        for label, v in seen.items()
    ]


@contextlib.contextmanager
def gateway() -> Iterator[tuple[str, str, str]]:
    """The gateway as a child process (watch_bench's, rate limits off: this measures the
    protocols); yields its gRPC address, HTTP URL and a token of alice."""
    http_port = free_port()
    with gateway_process(http=f"127.0.0.1:{http_port}") as (address, token, _pid):
        time.sleep(3)
        yield address, f"http://127.0.0.1:{http_port}", token


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=10)
    args = parser.parse_args()
    with gateway() as (address, url, token):
        unary = await unary_rows(address, url, token, args.calls)
        streams = await stream_rows(address, url, token, args.jobs)
    print(f"\nUnary latency, {args.calls} sequential calls each (ms)")
    print(f"{'protocol':>15} {'RPC':>10} {'p50':>8} {'p99':>8} {'x gRPC p50':>11}")
    base = {m: float(p50) for p, m, p50, _ in unary if p == "gRPC"}
    for protocol, rpc, p50, p99 in unary:
        print(f"{protocol:>15} {rpc:>10} {p50:>8} {p99:>8} {float(p50) / base[rpc]:>11.2f}")
    print(f"\nWatchJobs event latency, {args.jobs} jobs, both streams open at once (ms)")
    print(f"{'protocol':>15} {'events':>7} {'p50':>8} {'p99':>8}")
    for protocol, count, p50, p99 in streams:
        print(f"{protocol:>15} {count:>7} {p50:>8} {p99:>8}")


if __name__ == "__main__":
    asyncio.run(main())
