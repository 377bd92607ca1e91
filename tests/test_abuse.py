"""Abusive inputs get clear, canonical answers (oversized metadata and messages), and
abusive use leaves nothing behind: 10,000 streams opened and dropped, 1,000 calls of 100
clients at once, a download that is never read."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from files_helpers import make_owned, user_dir
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from conftest import GatewayFactory, bearer, fast_config
from hpcgate.server.api.errors import PUSHBACK_KEY
from hpcgate.server.app import Gateway
from hpcgate.server.config import ClassRates
from hpcgate.server.files import reading
from hpcgate.server.files.descriptors import read_exactly
from hpcgate.server.metrics import RATE_LIMITED, STREAM_KINDS
from hpcgate.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    compute_pb2,
    compute_pb2_grpc,
    status_pb2,
    status_pb2_grpc,
    utilities_pb2,
    utilities_pb2_grpc,
)


async def test_oversized_metadata_is_resource_exhausted_and_says_so(gateway: Gateway) -> None:
    limit = gateway.config.limits.max_metadata_bytes
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = status_pb2_grpc.StatusServiceStub(channel)
        # Just under the limit, every time: grpc's default soft limit (8 KiB) would refuse
        # most of these calls at random; the configured limit is exact.
        for _ in range(20):
            await stub.ListSystems(
                status_pb2.ListSystemsRequest(), metadata=[("x-a", "a" * (limit - 1024))]
            )
        for size in (limit + 1024, 20_000, 2_000_000):
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await stub.ListSystems(
                    status_pb2.ListSystemsRequest(), metadata=[("x-a", "a" * size)], timeout=10
                )
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "metadata size exceeds hard limit" in (e.value.details() or ""), size
        # The connection and the server are fine afterwards.
        await stub.ListSystems(status_pb2.ListSystemsRequest(), timeout=10)


async def test_an_oversized_message_is_resource_exhausted_and_names_the_limit(
    gateway: Gateway,
) -> None:
    limit = gateway.config.limits.max_message_bytes
    options = [("grpc.max_send_message_length", 2 * limit)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}", options=options) as channel:
        stub = utilities_pb2_grpc.UtilitiesServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.Stat(utilities_pb2.StatRequest(path="/" + "a" * limit), timeout=10)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"vs. {limit}" in (e.value.details() or "")
        health = status_pb2_grpc.StatusServiceStub(channel)
        await health.ListSystems(status_pb2.ListSystemsRequest(), timeout=10)


# -- resource abuse: many streams, many callers, a reader that never reads ---------------
# The server runs in this process, so /proc/self is the server's (and the test client's:
# the client's channels are closed before anything is compared).

OWN_CONNECTION = ("grpc.use_local_subchannel_pool", 1)  # each channel its own connection
STREAMS, BATCH, CHANNELS = 10_000, 1_250, 4  # streams in all, open at once, connections
SETTLE = 10.0  # seconds the server may take to let go of what dropped streams held
RSS_GROWTH_MIB = 64  # what memory may grow by and not be called a leak
NEW_TASKS = "asyncio tasks not in the baseline"
TASK_SLACK = 5  # short-lived tasks of the probers and pollers
Tasks = set[asyncio.Task[Any]]


def rss_mib() -> float:
    """This process's resident memory in MiB (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def server_counts(gateway: Gateway, known: Tasks) -> dict[str, float]:
    """What open streams hold in the server: hub subscriptions, the limiter's slots, the
    open-streams gauge, and event-loop tasks (an RPC's handler is one) beyond `known`."""
    registry = gateway.metrics.registry
    assert registry is not None
    counts: dict[str, float] = {
        "job hub subscribers": sum(hub.subscriber_count for hub in gateway.hubs.values()),
        "status hub subscribers": gateway.hub.subscriber_count,
        "limiter streams": gateway.limiter.total_streams,
        "limiter stream owners": len(gateway.limiter.streams),
        NEW_TASKS: len(asyncio.all_tasks() - known),
    }
    for kind in sorted(STREAM_KINDS):
        value = registry.get_sample_value("hpcgate_open_streams", {"kind": kind})
        counts[f"open {kind} streams"] = value or 0.0
    return counts


def at_baseline(counts: dict[str, float], baseline: dict[str, float]) -> bool:
    """Every count as in `baseline`, but for a few short-lived tasks of the probers and
    pollers."""
    return counts[NEW_TASKS] <= TASK_SLACK and all(
        counts[k] == v for k, v in baseline.items() if k != NEW_TASKS
    )


def differ(counts: dict[str, float], baseline: dict[str, float]) -> str:
    """The counts that differ from `baseline`: (now, then) of each."""
    changed = {k: (v, baseline[k]) for k, v in counts.items() if v != baseline[k]}
    return f"differ (now, baseline): {changed or 'none'}"


def left_over(counts: dict[str, float], baseline: dict[str, float], known: Tasks) -> str:
    """`differ`, and what the tasks beyond `known` are waiting in now (the innermost
    awaits, most common first)."""
    waits: Counter[str] = Counter()
    for task in asyncio.all_tasks() - known:
        chain, awaited = [], task.get_coro()
        while awaited is not None and len(chain) < 4:
            chain.append(getattr(awaited, "__qualname__", type(awaited).__name__))
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
        waits[" > ".join(chain)] += 1
    return f"{differ(counts, baseline)}; new tasks wait in {waits.most_common(4)}"


async def settled(
    gateway: Gateway, baseline: dict[str, float], known: Tasks, fds: int, seconds: float
) -> tuple[dict[str, float], int, float]:
    """Waits (at most `seconds`) until the server's counts are back at `baseline` and
    this process has at most `fds` descriptors open; the last counts, descriptors and
    how long it waited."""
    started = time.monotonic()
    while True:
        counts, now_fds = server_counts(gateway, known), open_fds()
        waited = time.monotonic() - started
        if (at_baseline(counts, baseline) and now_fds <= fds) or waited > seconds:
            return counts, now_fds, waited
        await asyncio.sleep(0.05)


class Relay:
    """A TCP relay to `target` whose `reset()` drops every connection at once, as a
    client host that crashes or loses its network does: the server sees connections go,
    not streams end one by one."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.transports: list[asyncio.BaseTransport] = []
        self.pipes: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.transports += [writer.transport, up_writer.transport]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            pipe = asyncio.create_task(self._pipe(source, sink))
            self.pipes.add(pipe)
            pipe.add_done_callback(self.pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()

    def reset(self) -> None:
        for transport in self.transports:
            transport.abort()
        self.transports.clear()

    async def close(self) -> None:
        self.reset()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for pipe in list(self.pipes):
            pipe.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)


async def _first(call: Any) -> str:
    """The kind of a WatchJobs stream's first message, or how the stream ended instead."""
    try:
        message = await call.read()
    except grpc.aio.AioRpcError as e:
        return e.code().name
    return "EOF" if message is grpc.aio.EOF else str(message.WhichOneof("kind"))


async def _answered(call: Any) -> str:
    """ "answered" once the server's headers are in (they come with the snapshot)."""
    try:
        await call.initial_metadata()
    except grpc.aio.AioRpcError as e:
        return e.code().name
    return "answered"


# How a batch of streams is dropped, each way in turn: the client cancels them after the
# snapshot; cancels them without reading a message; closes its channels with the streams
# open; or its connections vanish (reset under the streams: no RST_STREAM, no GOAWAY).
DROPS = ("cancel", "cancel unread", "close channels", "reset connections")


async def open_and_drop(
    port: int, md: list[tuple[str, str]], count: int, drop: str
) -> Counter[str]:
    """Opens `count` WatchJobs streams over CHANNELS new connections, waits until the
    server has answered every one, then drops them all `drop`'s way; how each began."""
    relay = Relay(port) if drop == "reset connections" else None
    target = await relay.start() if relay else port
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{target}", options=[OWN_CONNECTION])
        for _ in range(CHANNELS)
    ]
    try:
        stubs = [compute_pb2_grpc.ComputeServiceStub(c) for c in channels]
        request = compute_pb2.WatchJobsRequest(parent="systems/local")
        calls = [stubs[i % CHANNELS].WatchJobs(request, metadata=md) for i in range(count)]
        began = _answered if drop == "cancel unread" else _first
        outcomes = Counter(await asyncio.gather(*(began(call) for call in calls)))
        if relay is not None:
            relay.reset()
        elif drop != "close channels":
            for call in calls:
                call.cancel()
        return outcomes
    finally:
        await asyncio.gather(*(c.close() for c in channels))
        if relay is not None:
            await relay.close()


@pytest.mark.timeout(120)
async def test_ten_thousand_streams_opened_and_dropped_leave_nothing_behind(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    """Whichever way a stream goes, what it held in the server goes with it: the job
    hub's subscription, the limiter's slot, the open-streams gauge, its tasks, the
    connections' descriptors; and memory comes back to about where it was."""
    base = fast_config(tmp_path)
    roomy = replace(ClassRates(), streams_burst=2 * STREAMS)  # opening them is not the point
    limits = replace(base.rate_limits, per_user=roomy, per_client=roomy)
    gateway = await gateway_factory(replace(base, rate_limits=limits))
    md = bearer(gateway, "alice")
    known = asyncio.all_tasks()
    baseline, fds_cold = server_counts(gateway, known), open_fds()
    # One batch first: what grpc and the allocators set up once is not a leak. Unread
    # snapshots take the most memory at once (the client's buffers, in this process too).
    warm_up = await open_and_drop(gateway.port, md, BATCH, "cancel unread")
    await settled(gateway, baseline, known, fds_cold, 5.0)
    known = asyncio.all_tasks()  # tasks the warm-up left behind are not counted twice
    gc.collect()
    fds_before, rss_before = open_fds(), rss_mib()

    started = time.monotonic()
    outcomes: Counter[str] = Counter()
    for i in range(STREAMS // BATCH):
        outcomes += await open_and_drop(gateway.port, md, BATCH, DROPS[i % len(DROPS)])
    opened_in = time.monotonic() - started
    counts, fds, waited = await settled(gateway, baseline, known, fds_before, SETTLE)
    gc.collect()
    rss_after = rss_mib()
    report = (
        f"{STREAMS} streams {dict(outcomes)} opened and dropped in {opened_in:.1f} s "
        f"(warm-up: {dict(warm_up)}); {waited:.1f} s later the server's counts "
        f"{left_over(counts, baseline, known)}; open fds {fds} vs. {fds_before} "
        f"({fds_cold} before the warm-up); "
        f"VmRSS {rss_after:.0f} MiB vs. {rss_before:.0f} MiB (+{rss_after - rss_before:.1f})"
    )
    print(report)
    per_drop = STREAMS // len(DROPS)
    assert outcomes == {"snapshot": 3 * per_drop, "answered": per_drop}, report
    assert warm_up == {"answered": BATCH}, report
    assert at_baseline(counts, baseline), report
    assert fds <= fds_before, report
    assert rss_after - rss_before < RSS_GROWTH_MIB, report
    assert opened_in < 30, report


CALLERS, CALLS_EACH = 100, 10  # registered clients (of alice and bob), calls of each
# Per client (one program): bursts of 5 reads, then one a second. Each client's 10 calls
# at once get 5 or a few more through; the rest must be refused with a retry delay.
PER_CLIENT = replace(ClassRates(), reads_per_second=1.0, reads_burst=5)
TOKEN_INFO = "/hpcgate.v1.AuthService/GetTokenInfo"


def register_readers(gateway: Gateway, count: int) -> list[tuple[str, str, str]]:
    """`count` registered read-only clients, alice's and bob's in turn, each with an
    access token (as `hpcgate-server clients add` and ExchangeToken give): (user, client
    id, token) of each."""
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    public = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    scopes = frozenset({"read"})
    readers = []
    for i in range(count):
        user = ("alice", "bob")[i % 2]
        client, _ = gateway.tokens.registry.add(
            user, scopes, ("127.0.0.1/32",), 3600, public, f"abuse test reader {i}"
        )
        token, _ = gateway.tokens.mint(user, client.id, scopes, 600)
        readers.append((user, client.id, token))
    return readers


def refusals_counted() -> float:
    """Refusals of GetTokenInfo so far in the limiter's (process-wide) metric."""
    return sum(
        sample.value
        for metric in RATE_LIMITED.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels["method"] == TOKEN_INFO
    )


async def token_info_outcome(
    stub: auth_pb2_grpc.AuthServiceStub, user: str, client_id: str, token: str
) -> tuple[str, float | None]:
    """How one GetTokenInfo ended: "OK" (answering for the right caller), or the code,
    with the advised retry delay for RESOURCE_EXHAUSTED (when its RetryInfo and pushback
    trailer are there and agree; else the outcome says what is wrong)."""
    try:
        info = await stub.GetTokenInfo(
            auth_pb2.GetTokenInfoRequest(),
            metadata=[("authorization", f"Bearer {token}")],
            timeout=30,
        )
    except grpc.aio.AioRpcError as e:
        if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
            return f"{e.code().name}: {e.details()}", None
        status = rpc_status.from_call(e)  # type: ignore[arg-type]
        retry = error_details_pb2.RetryInfo()
        if status is None or not any(d.Unpack(retry) for d in status.details):
            return f"RESOURCE_EXHAUSTED without RetryInfo: {e.details()}", None
        delay = retry.retry_delay.ToTimedelta().total_seconds()
        pushback = dict(e.trailing_metadata() or ()).get(PUSHBACK_KEY)
        if pushback is None or abs(int(pushback) - delay * 1000) > 1:
            return f"RESOURCE_EXHAUSTED, pushback {pushback} vs. RetryInfo {delay}", None
        return "RESOURCE_EXHAUSTED", delay
    if (info.user, info.client_id) != (user, client_id):
        return f"OK but for {info.user}/{info.client_id}", None
    return "OK", None


async def test_a_thousand_concurrent_calls_of_a_hundred_clients_succeed_or_get_a_retry_delay(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    """1,000 GetTokenInfo calls at once, 10 from each of 100 registered clients of alice
    and bob: each is answered or refused by its client's limit with a retry delay that
    says when its next token is there; no other code (no UNAVAILABLE, CANCELLED, ...)."""
    base = fast_config(tmp_path)
    limits = replace(base.rate_limits, per_client=PER_CLIENT)
    gateway = await gateway_factory(replace(base, rate_limits=limits), wait_ready=False)
    readers = register_readers(gateway, CALLERS)
    refusals_before = refusals_counted()
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}", options=[OWN_CONNECTION])
        for _ in range(CHANNELS)
    ]
    try:
        stubs = [auth_pb2_grpc.AuthServiceStub(c) for c in channels]
        await asyncio.gather(*(c.channel_ready() for c in channels))
        started = time.monotonic()
        results = await asyncio.gather(
            *(
                token_info_outcome(stubs[i % CHANNELS], *readers[i % CALLERS])
                for i in range(CALLERS * CALLS_EACH)
            )
        )
        took = time.monotonic() - started
        outcomes = Counter(outcome for outcome, _ in results)
        delays = [delay for _, delay in results if delay is not None]
        refusals = refusals_counted() - refusals_before
        report = (
            f"{CALLERS * CALLS_EACH} calls of {CALLERS} clients in {took:.2f} s: "
            f"{dict(outcomes)}; retry delays {min(delays, default=0):.3f}-"
            f"{max(delays, default=0):.3f} s; the limiter counted {refusals:g} refusals"
        )
        print(report)
        assert set(outcomes) == {"OK", "RESOURCE_EXHAUSTED"}, report
        # Every client's burst went through; beyond it, at most what refilled meanwhile.
        burst, rate = PER_CLIENT.reads_burst, PER_CLIENT.reads_per_second
        assert CALLERS * burst <= outcomes["OK"] <= CALLERS * (burst + 1 + took * rate), report
        assert refusals == outcomes["RESOURCE_EXHAUSTED"] == len(delays), report
        # The advice: the time until the client's next token, at most one token's worth.
        assert all(0 < delay <= 1 / rate for delay in delays), report
        # A refusal is not sticky: once a token is back every client is served again. One
        # token's time after the last call ended (not the largest advice: a call of the
        # same client admitted after its refusal took the token that advice counted on).
        await asyncio.sleep(1 / rate)
        again = [await token_info_outcome(stubs[0], *reader) for reader in readers]
        assert Counter(outcome for outcome, _ in again) == {"OK": CALLERS}, again
    finally:
        await asyncio.gather(*(c.close() for c in channels))


SPARSE_SIZE = 1024**3  # the file a client downloads and never reads
STALL = 4.0  # seconds the test watches a stalled download
MIB = 1024 * 1024


class CountedReads:
    """Bytes the server has read from files for downloads (read_exactly, in a thread)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.total = 0
        monkeypatch.setattr(reading, "read_exactly", self._read)

    def _read(self, fd: int, size: int, offset: int) -> bytes:
        data = read_exactly(fd, size, offset)
        self.total += len(data)
        return data


async def stalled_download(
    gateway: Gateway, path: Path, seconds: float, reads: CountedReads, known: Tasks
) -> tuple[dict[str, float], list[tuple[float, float, float]]]:
    """Downloads `path` over a new channel, reads the header and nothing more for
    `seconds`, then cancels; the server's counts while stalled, and samples of (seconds,
    MiB the server read, VmRSS MiB) every 0.1 s."""
    md = bearer(gateway, "alice")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = utilities_pb2_grpc.UtilitiesServiceStub(channel)
        call = stub.Download(
            utilities_pb2.DownloadRequest(system="local", path=str(path)), metadata=md
        )
        header = await call.read()
        assert header.WhichOneof("kind") == "header" and header.header.size == SPARSE_SIZE
        samples, started = [], time.monotonic()
        while (waited := time.monotonic() - started) < seconds:
            samples.append((waited, reads.total / MIB, rss_mib()))
            await asyncio.sleep(0.1)
        counts = server_counts(gateway, known)
        call.cancel()
    return counts, samples


async def test_a_download_never_read_stalls_in_bounded_memory_and_cancelling_frees_it(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client asks for 1 GiB and reads only the header: HTTP/2 flow control stops the
    server after a few chunks (it reads no more of the file), memory stays flat, and
    cancelling the call frees the stream's slot, its tasks and the file's descriptor.
    A first such download warms up (alice's worker, threads, allocator pools), so that
    the second shows what one stalled download holds."""
    reads = CountedReads(monkeypatch)
    with user_dir("alice") as directory:
        sparse = make_owned(directory / "sparse.bin", "alice", 0o600, b"")
        os.truncate(sparse, SPARSE_SIZE)
        known = asyncio.all_tasks()
        baseline = server_counts(gateway, known)
        await stalled_download(gateway, sparse, 1.0, reads, known)
        await settled(gateway, baseline, known, 10**6, SETTLE)
        known = asyncio.all_tasks()
        gc.collect()
        fds_before, rss_before, reads.total = open_fds(), rss_mib(), 0
        stalled, samples = await stalled_download(gateway, sparse, STALL, reads, known)
        counts, fds, waited = await settled(gateway, baseline, known, fds_before, SETTLE)
        gc.collect()
        rss_after = rss_mib()
    read_halfway = next(read for t, read, _ in samples if t >= STALL / 2)
    peak = max(rss for *_, rss in samples)
    report = (
        f"the server read {reads.total / MIB:.1f} MiB of {SPARSE_SIZE // MIB} MiB "
        f"({read_halfway:.1f} MiB after {STALL / 2:g} s); VmRSS {rss_before:.0f} MiB "
        f"before, peak {peak:.0f} (+{peak - rss_before:.1f}), {rss_after:.0f} after the "
        f"cancel; while stalled {differ(stalled, baseline)}; "
        f"{waited:.1f} s after the cancel {left_over(counts, baseline, known)}; open fds "
        f"{fds} vs. {fds_before}; samples (s, MiB read, VmRSS MiB) "
        f"{[(round(t, 1), round(read, 1), round(rss)) for t, read, rss in samples[::5]]}"
    )
    print(report)
    assert (stalled["open Download streams"], stalled["limiter streams"]) == (1, 1), report
    assert reads.total < RSS_GROWTH_MIB * MIB, report  # stopped after a few chunks...
    assert reads.total / MIB == read_halfway, report  # ...and is not merely slow
    assert peak - rss_before < RSS_GROWTH_MIB, report
    assert at_baseline(counts, baseline), report
    assert fds <= fds_before, report  # the file's descriptor and the connection closed
    assert rss_after - rss_before < RSS_GROWTH_MIB, report
