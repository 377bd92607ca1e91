"""Connection policy against a real server and the real Slurm: a burst of WatchJobs
streams opened at once, connection age with resumption by revision (by hand and by the
client library), and keepalive pings and heartbeats through a NAT that drops idle
connections."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from itertools import chain
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from conftest import GatewayFactory, bearer, fast_config
from hpcgate.client import Client, connect
from hpcgate.client.channel import KEEPALIVE_OPTIONS
from hpcgate.server.app import Gateway
from hpcgate.server.config import Config
from hpcgate.v1 import compute_pb2 as S
from hpcgate.v1 import compute_pb2_grpc, status_pb2, status_pb2_grpc

pytestmark = pytest.mark.slurm
EXEC = ("read", "write", "execute")
BURST = 2000
# Each channel its own connection: grpc would otherwise share one between equal channels.
OWN_CONNECTION = ("grpc.use_local_subchannel_pool", 1)


def config_with(tmp_path: Path, **server: Any) -> Config:
    """The tests' fast configuration with these `[server]` settings."""
    base = fast_config(tmp_path)
    return replace(base, server=replace(base.server, **server))


async def started(factory: GatewayFactory, tmp_path: Path, **server: Any) -> Gateway:
    """A running gateway with these `[server]` settings (stopped by the factory)."""
    return await factory(config_with(tmp_path, **server))


def sleeper(seconds: int) -> S.SubmitJobRequest:
    """A job that runs long enough to outlive a connection or two."""
    return S.SubmitJobRequest(
        parent="systems/local",
        script=f"#!/bin/sh\nsleep {seconds}\n",
        options=S.JobOptions(stdout_path="/dev/null"),
    )


def heartbeat_every(seconds: int, **fields: Any) -> S.WatchJobsRequest:
    """A WatchJobs request whose stream stays quiet at most `seconds` at a time."""
    return S.WatchJobsRequest(
        parent="systems/local", heartbeat_interval=duration_pb2.Duration(seconds=seconds), **fields
    )


async def _pipe(
    source: asyncio.StreamReader, sink: asyncio.StreamWriter, seen: list[float]
) -> None:
    """Copy until EOF, noting the time of each crossing in `seen[0]` (the NAT's timer)."""
    while data := await source.read(65536):
        seen[0] = time.monotonic()
        sink.write(data)
        await sink.drain()


class Nat:
    """A TCP relay to `target` that drops a connection once no byte has crossed it, either
    way, for `idle` seconds, as a NAT or a stateful firewall does (this one resets the
    connection at once, so that the test need not wait for keepalive timeouts)."""

    def __init__(self, target: int, idle: float) -> None:
        self.target, self.idle = target, idle
        self.accepted = self.dropped = 0
        self._relays: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for relay in self._relays:
            relay.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        seen = [time.monotonic()]
        pipes = [
            asyncio.create_task(_pipe(reader, up_writer, seen)),
            asyncio.create_task(_pipe(up_reader, writer, seen)),
        ]
        try:
            await self._until_idle(pipes, seen)
        finally:
            for pipe in pipes:
                pipe.cancel()
            writer.transport.abort()
            up_writer.transport.abort()

    async def _until_idle(self, pipes: list[asyncio.Task[None]], seen: list[float]) -> None:
        while not any(pipe.done() for pipe in pipes):
            if time.monotonic() - seen[0] > self.idle:
                self.dropped += 1
                return
            await asyncio.sleep(0.05)


@pytest.fixture
async def nat_factory() -> AsyncIterator[Any]:
    """Starts NATs in front of a port; closes them (and their connections) after."""
    nats: list[Nat] = []

    async def start(target: int, idle: float) -> tuple[Nat, int]:
        nat = Nat(target, idle)
        nats.append(nat)
        return nat, await nat.start()

    yield start
    for nat in nats:
        await nat.close()


async def _first(stream: Any) -> str:
    """ "snapshot" if the stream's first message is one, else its status code's name."""
    try:
        message = await stream.read()
    except grpc.aio.AioRpcError as e:
        return e.code().name
    return "EOF" if message is grpc.aio.EOF else str(message.WhichOneof("kind"))


async def burst(port: int, metadata: list[tuple[str, str]], count: int) -> Counter[str]:
    """Open `count` WatchJobs streams at the same moment over two connections, as a
    workflow engine reconnecting its watchers after a restart does; how each began."""
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[OWN_CONNECTION]) for _ in range(2)
    ]
    try:
        stubs = [compute_pb2_grpc.ComputeServiceStub(channel) for channel in channels]
        await asyncio.gather(*(channel.channel_ready() for channel in channels))
        request = S.WatchJobsRequest(parent="systems/local")
        streams = [stubs[i % 2].WatchJobs(request, metadata=metadata) for i in range(count)]
        outcomes = Counter(await asyncio.gather(*(_first(s) for s in streams)))
        for stream in streams:
            stream.cancel()
        return outcomes
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))


async def test_a_burst_of_watch_streams_is_served_whole(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = await started(gateway_factory, tmp_path)  # max_pending_requests = 10000
    started_at = time.monotonic()
    outcomes = await burst(gateway.port, bearer(gateway, "alice"), BURST)
    assert outcomes == {"snapshot": BURST}, outcomes
    assert time.monotonic() - started_at < 30


async def test_a_burst_beyond_max_pending_requests_is_partly_cancelled(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    """What grpc-core's own limit (1000) did to such a burst, made certain with 100: the
    calls it could not queue end CANCELLED before any servicer sees them."""
    gateway = await started(gateway_factory, tmp_path, max_pending_requests=100)
    outcomes = await burst(gateway.port, bearer(gateway, "alice"), BURST)
    assert set(outcomes) == {"snapshot", "CANCELLED"}, outcomes
    assert outcomes["CANCELLED"] >= BURST // 10


async def _read_until_ended(stream: Any, seen: list[S.WatchJobsResponse]) -> grpc.StatusCode:
    """Append `stream`'s messages to `seen` until the server ends it; its status code."""
    try:
        while (message := await stream.read()) is not grpc.aio.EOF:
            seen.append(message)
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def _job_events(messages: list[S.WatchJobsResponse], job_id: str) -> list[int]:
    """Revisions of `job_id`'s events among `messages`."""
    events = [m.event for m in messages if m.WhichOneof("kind") == "event"]
    return [e.revision for e in events if e.job.job_id == job_id]


def _completed(seen: list[S.WatchJobsResponse], job_id: str) -> bool:
    """Whether `job_id`'s COMPLETED event is among the messages `seen`."""
    return any(
        m.WhichOneof("kind") == "event"
        and m.event.job.job_id == job_id
        and m.event.state == S.JOB_STATE_COMPLETED
        for m in seen
    )


async def test_connection_age_ends_a_watch_and_resuming_by_revision_loses_no_event(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = await started(gateway_factory, tmp_path, max_connection_age=2.0)
    md = bearer(gateway, "bob", EXEC)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = compute_pb2_grpc.ComputeServiceStub(channel)
        first = stub.WatchJobs(heartbeat_every(1), metadata=md)
        streams = [[await first.read()]]  # the messages of each stream in turn
        job = (await stub.SubmitJob(sleeper(5), metadata=md)).job
        ends = [await _read_until_ended(first, streams[0])]  # each: until the server ends it
        while not _completed(seen := list(chain(*streams)), job.job_id) and len(ends) < 20:
            streams.append([])
            resumed = heartbeat_every(1, resume_from_revision=seen[-1].revision)
            ends.append(await _read_until_ended(stub.WatchJobs(resumed, metadata=md), streams[-1]))
    assert len(ends) >= 2 and set(ends) == {grpc.StatusCode.UNAVAILABLE}, ends
    got = [_job_events(messages, job.job_id) for messages in streams]
    assert sum(bool(revisions) for revisions in got) >= 2  # the job's events span streams
    history = [e.revision for e in gateway.hubs["local"].history if e.job.job_id == job.job_id]
    received = list(chain(*got))
    assert received == [revision for revision in history if revision <= received[-1]]
    assert all(m.WhichOneof("kind") != "resync_required" for m in chain(*streams))


async def test_job_wait_of_the_client_library_resumes_over_connection_age(
    slurm_cluster: None,
    gateway_factory: GatewayFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gateway = await started(gateway_factory, tmp_path, max_connection_age=1.0)
    watches: list[S.WatchJobsRequest] = []
    stream = Client.stream

    def counted(self: Client, method: Any, request: Any, **kwargs: Any) -> Any:
        if isinstance(request, S.WatchJobsRequest):
            watches.append(request)
        return stream(self, method, request, **kwargs)

    monkeypatch.setattr(Client, "stream", counted)
    token = bearer(gateway, "alice", EXEC)[0][1].removeprefix("Bearer ")
    async with connect(f"127.0.0.1:{gateway.port}", token=token, system="local") as client:
        job = await client.jobs.submit(script="#!/bin/sh\nsleep 6\n", stdout_path="/dev/null")
        await job.wait(timeout=60)
    assert job.state == "COMPLETED"
    assert len(watches) >= 2 and watches[-1].resume_from_revision > 0


async def test_heartbeats_carry_a_watch_through_a_nat_idle_timeout(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path, nat_factory: Any
) -> None:
    """With no keepalive pings, a stream's heartbeats alone keep the NAT's mapping; the
    control stream, with heartbeats too far apart, is dropped by the NAT."""
    gateway = await started(gateway_factory, tmp_path)
    md = bearer(gateway, "alice")
    outcomes = []
    for heartbeat in (1, 10):
        nat, port = await nat_factory(gateway.port, 2.5)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        stream = compute_pb2_grpc.ComputeServiceStub(channel).WatchJobs(
            heartbeat_every(heartbeat), metadata=md
        )
        outcomes.append((nat, channel, stream, asyncio.create_task(_read_until_ended(stream, []))))
    await asyncio.sleep(6)
    (kept_nat, *_, kept), (dropped_nat, *_, dropped) = outcomes
    assert not kept.done() and (kept_nat.accepted, kept_nat.dropped) == (1, 0)
    assert dropped.done() and dropped.result() == grpc.StatusCode.UNAVAILABLE
    assert dropped_nat.dropped == 1
    for _, channel, stream, _ in outcomes:
        stream.cancel()
        await channel.close()


def keepalive_every(ms: int) -> list[tuple[str, Any]]:
    """The client library's keepalive options with a shorter ping interval."""
    return [(k, ms if k == "grpc.keepalive_time_ms" else v) for k, v in KEEPALIVE_OPTIONS]


async def test_keepalive_within_the_servers_policy_carries_an_idle_channel_through_a_nat(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path, nat_factory: Any
) -> None:
    """The client library's keepalive, scaled down (pings every 1.5 s, the server permits
    1 s, the NAT drops after 3 s): an idle channel keeps its one connection."""
    gateway = await started(gateway_factory, tmp_path, min_client_ping_interval=1.0)
    nat, port = await nat_factory(gateway.port, 3.0)
    options = keepalive_every(1500)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        stub = status_pb2_grpc.StatusServiceStub(channel)
        await stub.ListSystems(status_pb2.ListSystemsRequest())
        await asyncio.sleep(8)
        assert channel.get_state() == grpc.ChannelConnectivity.READY
        await stub.ListSystems(status_pb2.ListSystemsRequest())
    assert (nat.accepted, nat.dropped) == (1, 0)


async def test_a_client_pinging_more_often_than_permitted_gets_too_many_pings(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = await started(gateway_factory, tmp_path, min_client_ping_interval=5.0)
    options = keepalive_every(1000)
    address = f"127.0.0.1:{gateway.port}"
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stream = compute_pb2_grpc.ComputeServiceStub(channel).WatchJobs(
            heartbeat_every(300), metadata=bearer(gateway, "alice")
        )
        with pytest.raises(grpc.aio.AioRpcError) as e:
            async with asyncio.timeout(20):
                async for _ in stream:
                    pass
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "too many pings" in (e.value.details() or "").lower()
