"""Rate limits and stream caps (api/limits.py): the token bucket on a fake clock, the
classification of every RPC, and a real gateway refusing with RetryInfo and the pushback
trailer, per user, per client and per address, while other callers go on unaffected."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_status import rpc_status

from conftest import GatewayFactory, bearer, fast_config
from hpcgate.client import Client, ResourceExhausted, RetryPolicy, Unavailable
from hpcgate.server.api.errors import PUSHBACK_KEY, to_status
from hpcgate.server.api.limits import (
    READS,
    STREAMS,
    SUBMITS,
    WRITES,
    Limiter,
    TokenBucket,
    address_key,
    classify,
    method_limits,
    services,
)
from hpcgate.server.app import Gateway
from hpcgate.server.auth.caller import Caller
from hpcgate.server.config import ClassRates, Config, RateLimitsConfig
from hpcgate.server.errors import Code, DomainError
from hpcgate.server.transfers.peer import _PacedUnary
from hpcgate.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    compute_pb2,
    compute_pb2_grpc,
    status_pb2,
    status_pb2_grpc,
)

TOKEN_INFO = "/hpcgate.v1.AuthService/GetTokenInfo"
WATCH_JOBS = "/hpcgate.v1.ComputeService/WatchJobs"
LIST_SYSTEMS = "/hpcgate.v1.StatusService/ListSystems"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def caller(user: str = "alice", client_id: str = "c1") -> Caller:
    at = datetime.now(UTC)
    return Caller(user, client_id, frozenset({"read"}), "hpcgate", "hpcgate", at, at, "t")


def rates(**changes: Any) -> ClassRates:
    return replace(ClassRates(), **changes)


def limited(tmp_path: Path, **changes: object) -> Config:
    base = fast_config(tmp_path)
    return replace(base, rate_limits=replace(base.rate_limits, **changes))


# -- classification ---------------------------------------------------------------------


def test_every_method_of_the_seven_services_has_a_class() -> None:
    table = method_limits()
    every = {f"/{s.full_name}/{m.name}" for s in services() for m in s.methods}
    assert len(services()) == 7 and set(table) == every
    assert {limit.rpc_class for limit in table.values()} == {READS, WRITES, SUBMITS, STREAMS}
    expected = {
        TOKEN_INFO: (READS, False),
        "/hpcgate.v1.UtilitiesService/Stat": (READS, False),
        "/hpcgate.v1.UtilitiesService/Remove": (WRITES, False),
        "/hpcgate.v1.TasksService/CancelTask": (WRITES, False),
        "/hpcgate.v1.ComputeService/SubmitJob": (SUBMITS, False),
        "/hpcgate.v1.StorageService/StartTransfer": (SUBMITS, False),
        "/hpcgate.v1.UtilitiesService/RunCommand": (SUBMITS, True),  # a stream too
        "/hpcgate.v1.UtilitiesService/Upload": (STREAMS, True),
        WATCH_JOBS: (STREAMS, True),
    }
    for method, (rpc_class, stream) in expected.items():
        assert (table[method].rpc_class, table[method].stream) == (rpc_class, stream), method


def test_an_rpc_that_no_rule_covers_stops_the_server() -> None:
    check = health_pb2.DESCRIPTOR.services_by_name["Health"].methods_by_name["Check"]
    with pytest.raises(LookupError, match=r"grpc.health.v1.Health.Check has no rate-limit class"):
        classify(check)


# -- the token bucket and the limiter on a fake clock -------------------------------------


def test_a_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    for _ in range(3):
        assert bucket.wait(0.0) == 0.0
        bucket.take()
    assert bucket.wait(0.0) == pytest.approx(0.5)  # one token every half second
    assert bucket.wait(0.25) == pytest.approx(0.25)
    assert bucket.wait(0.5) == 0.0
    assert not bucket.full(1.0) and bucket.full(1.5)
    assert bucket.wait(100.0) == 0.0 and bucket.tokens == 3.0  # never above the burst


def test_a_refusal_says_when_to_retry_and_spares_other_users() -> None:
    clock = FakeClock()
    limiter = Limiter(RateLimitsConfig(per_user=rates(reads_per_second=4, reads_burst=2)), clock)
    alice, bob = caller("alice"), caller("bob")
    for _ in range(2):
        assert limiter.admit(TOKEN_INFO, alice, "ipv4:127.0.0.1:1") is None
    with pytest.raises(DomainError) as refused:
        limiter.admit(TOKEN_INFO, alice, "ipv4:127.0.0.1:1")
    error = refused.value
    assert error.code == Code.RESOURCE_EXHAUSTED and error.retry_after == pytest.approx(0.25)
    assert "user alice made more than 4 read calls a second (bursts of 2)" in error.message
    assert "retry in 0.25 s" in error.message
    status = to_status(error)
    assert (PUSHBACK_KEY, "250") in status.trailing_metadata
    limiter.admit(TOKEN_INFO, bob, "ipv4:127.0.0.1:1")  # bob has his own bucket
    limiter.admit("/hpcgate.v1.UtilitiesService/Remove", alice, "")  # and writes their own
    clock.now += 0.25
    limiter.admit(TOKEN_INFO, alice, "ipv4:127.0.0.1:1")


def test_a_refused_call_costs_no_token_in_any_bucket() -> None:
    clock = FakeClock()
    config = RateLimitsConfig(
        per_user=rates(reads_per_second=1, reads_burst=2),
        per_client=rates(reads_per_second=1, reads_burst=1),
    )
    limiter = Limiter(config, clock)
    one, other = caller("alice", "one"), caller("alice", "other")
    limiter.admit(TOKEN_INFO, one, "")
    for _ in range(5):  # refused by the client's bucket: the user's keeps its last token
        with pytest.raises(DomainError, match="client one of user alice"):
            limiter.admit(TOKEN_INFO, one, "")
    limiter.admit(TOKEN_INFO, other, "")  # another program of alice's takes it
    clock.now += 1.0
    limiter.admit(TOKEN_INFO, one, "")
    # The user's bucket is empty now: refused although this client's has a token.
    with pytest.raises(DomainError, match="user alice made more than 1 read"):
        limiter.admit(TOKEN_INFO, other, "")
    clock.now += 1.0
    limiter.admit(TOKEN_INFO, other, "")


def test_a_zero_rate_or_disabled_limits_mean_no_limit() -> None:
    clock = FakeClock()
    free_reads = rates(reads_per_second=0, reads_burst=1)
    limiter = Limiter(RateLimitsConfig(per_user=free_reads, per_client=free_reads), clock)
    for _ in range(1000):
        limiter.admit(TOKEN_INFO, caller(), "")
    off = Limiter(RateLimitsConfig(enabled=False, max_streams=1), clock)
    for _ in range(10):
        assert off.admit(WATCH_JOBS, caller(), "") is None
    # Health and reflection are in no class: exempt.
    assert limiter.admit("/grpc.health.v1.Health/Watch", None, "ipv4:1.2.3.4:5") is None


def test_anonymous_callers_are_limited_per_address_ipv6_per_64() -> None:
    assert address_key("ipv4:192.0.2.7:5000") == "192.0.2.7"
    assert address_key("ipv6:[2001:db8:1:2:aaaa::1]:5000") == "2001:db8:1:2::/64"
    assert address_key("unix:/run/hpcgate.sock") == "unix:/run/hpcgate.sock"
    clock = FakeClock()
    config = RateLimitsConfig(per_address=rates(reads_per_second=1, reads_burst=1))
    limiter = Limiter(config, clock)
    limiter.admit(LIST_SYSTEMS, None, "ipv6:[2001:db8::1]:1")
    with pytest.raises(DomainError, match="address 2001:db8::/64"):
        limiter.admit(LIST_SYSTEMS, None, "ipv6:[2001:db8::2]:1")  # same /64
    limiter.admit(LIST_SYSTEMS, None, "ipv4:192.0.2.7:1")
    limiter.admit(LIST_SYSTEMS, caller(), "ipv6:[2001:db8::1]:1")  # with a token: per user


def test_refilled_buckets_are_dropped_so_memory_stays_bounded() -> None:
    clock = FakeClock()
    limiter = Limiter(RateLimitsConfig(), clock)
    for i in range(5000):
        limiter.admit(TOKEN_INFO, caller(f"user{i}"), "")
    assert len(limiter.buckets) == 10000  # a user and a client bucket each
    clock.now += 60.0  # every bucket has refilled (400 tokens at 200/s: 2 s)
    limiter.admit(TOKEN_INFO, caller("late"), "")
    assert len(limiter.buckets) == 2


def test_stream_slots_are_capped_per_user_and_in_all_and_freed_once() -> None:
    limiter = Limiter(RateLimitsConfig(max_streams=3, max_streams_per_user=2), FakeClock())
    first = limiter.admit(WATCH_JOBS, caller("alice"), "")
    second = limiter.admit(WATCH_JOBS, caller("alice"), "")
    assert first is not None and second is not None
    with pytest.raises(DomainError, match="user alice has 2 open") as full:
        limiter.admit(WATCH_JOBS, caller("alice"), "")
    assert full.value.retry_after == 1.0 and "cancel" in full.value.message
    third = limiter.admit(WATCH_JOBS, caller("bob"), "")
    with pytest.raises(DomainError, match="the server has 3 open"):
        limiter.admit(WATCH_JOBS, caller("carol"), "")
    first.release()
    first.release()  # a second release counts nothing
    assert limiter.streams["user alice"] == 1 and limiter.total_streams == 2
    limiter.admit(WATCH_JOBS, caller("alice"), "")
    for slot in (second, third):
        assert slot is not None
        slot.release()
    assert limiter.total_streams == 1 and set(limiter.streams) == {"user alice"}


def test_the_defaults_let_the_heaviest_bursts_of_the_suite_through() -> None:
    """tests/test_watch.py opens 1,000 WatchJobs streams of one user at once; bench-like
    tests send hundreds of reads back to back."""
    limiter = Limiter(RateLimitsConfig(), FakeClock())
    alice = caller("alice", "hpcgate-server-token")
    slots = [limiter.admit(WATCH_JOBS, alice, "ipv4:127.0.0.1:1") for _ in range(1000)]
    assert limiter.total_streams == 1000
    for _ in range(400):
        limiter.admit(TOKEN_INFO, alice, "ipv4:127.0.0.1:1")
    for slot in slots:
        assert slot is not None
        slot.release()
    assert limiter.total_streams == 0 and not limiter.streams


def test_the_client_retries_only_what_waiting_can_cure() -> None:
    policy = RetryPolicy(attempts=3, max_delay=2.0)
    assert policy.should_retry(0, ResourceExhausted("rate limit", retry_delay=0.5))
    assert not policy.should_retry(0, ResourceExhausted("file too large"))  # no hint
    assert not policy.should_retry(0, ResourceExhausted("rate limit", retry_delay=30))
    assert not policy.should_retry(2, ResourceExhausted("rate limit", retry_delay=0.5))
    assert policy.should_retry(0, Unavailable("restarting"))


# -- a real gateway -----------------------------------------------------------------------


def token_info(channel: grpc.aio.Channel, gateway: Gateway, user: str) -> Any:
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    return stub.GetTokenInfo(auth_pb2.GetTokenInfoRequest(), metadata=bearer(gateway, user))


async def test_a_burst_is_refused_with_retry_info_and_pushback_then_served_after_the_delay(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    per_user = rates(reads_per_second=2, reads_burst=3)
    gateway = await gateway_factory(limited(tmp_path, per_user=per_user), wait_ready=False)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        for _ in range(3):
            await token_info(channel, gateway, "alice")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await token_info(channel, gateway, "alice")
        error = refused.value
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "user alice made more than 2 read calls a second" in (error.details() or "")
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
        assert status is not None
        (detail,) = status.details
        info = error_details_pb2.RetryInfo()
        assert detail.Unpack(info)
        delay = info.retry_delay.ToTimedelta().total_seconds()
        assert 0 < delay <= 0.5
        pushback = next(v for k, v in error.trailing_metadata() or () if k == PUSHBACK_KEY)
        assert int(pushback) == pytest.approx(delay * 1000, abs=1)
        await token_info(channel, gateway, "bob")  # at the same time: unaffected
        await asyncio.sleep(delay)
        await token_info(channel, gateway, "alice")


async def test_the_client_library_waits_the_advised_delay_for_safe_calls(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    per_user = rates(reads_per_second=2, reads_burst=1)
    gateway = await gateway_factory(limited(tmp_path, per_user=per_user), wait_ready=False)
    token = bearer(gateway, "alice")[0][1].removeprefix("Bearer ")
    async with Client.connect(f"127.0.0.1:{gateway.port}", token=token) as client:
        stub = auth_pb2_grpc.AuthServiceStub(client.channel)
        request = auth_pb2.GetTokenInfoRequest()
        await client.unary(stub.GetTokenInfo, request, retry=True)
        with pytest.raises(ResourceExhausted) as refused:  # not safe to retry: raised
            await client.unary(stub.GetTokenInfo, request, retry=False)
        assert refused.value.retry_delay is not None and refused.value.retry_delay <= 0.5
        started = time.monotonic()
        for _ in range(3):  # each waits for the next token instead of failing
            await client.unary(stub.GetTokenInfo, request, retry=True)
        assert time.monotonic() - started >= 1.0


async def test_callers_without_a_token_are_limited_per_address(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    per_address = rates(reads_per_second=1, reads_burst=2)
    gateway = await gateway_factory(limited(tmp_path, per_address=per_address), wait_ready=False)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = status_pb2_grpc.StatusServiceStub(channel)
        for _ in range(2):
            await stub.ListSystems(status_pb2.ListSystemsRequest())
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListSystems(status_pb2.ListSystemsRequest())
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "address 127.0.0.1" in (refused.value.details() or "")
        await token_info(channel, gateway, "alice")  # a token's calls count per user


async def open_watch(stub: status_pb2_grpc.StatusServiceStub) -> Any:
    call: Any = stub.WatchSystems(status_pb2.WatchSystemsRequest())
    await call.read()  # the snapshot: admitted
    return call


async def test_the_stream_cap_refuses_one_more_and_frees_the_slot_when_a_stream_ends(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = await gateway_factory(limited(tmp_path, max_streams_per_user=2))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = status_pb2_grpc.StatusServiceStub(channel)
        first, second = [await open_watch(stub) for _ in range(2)]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await open_watch(stub)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "address 127.0.0.1 has 2 open" in (refused.value.details() or "")
        status = rpc_status.from_call(refused.value)  # type: ignore[arg-type]
        assert status is not None and status.details[0].Is(error_details_pb2.RetryInfo.DESCRIPTOR)
        first.cancel()
        for _ in range(100):
            if gateway.limiter.total_streams == 1:
                break
            await asyncio.sleep(0.02)
        third = await open_watch(stub)
        for call in (second, third):
            call.cancel()


async def test_the_total_stream_cap_counts_every_caller(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = await gateway_factory(limited(tmp_path, max_streams=1))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = status_pb2_grpc.StatusServiceStub(channel)
        watch = await open_watch(stub)
        with pytest.raises(grpc.aio.AioRpcError, match="the server has 1 open"):
            await open_watch(stub)
        watch.cancel()


async def test_the_per_user_stream_cap_leaves_other_users_their_streams(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = await gateway_factory(limited(tmp_path, max_streams_per_user=3))
    request = compute_pb2.WatchJobsRequest(parent="systems/local")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = compute_pb2_grpc.ComputeServiceStub(channel)
        alice = [stub.WatchJobs(request, metadata=bearer(gateway, "alice")) for _ in range(3)]
        await asyncio.gather(*(call.read() for call in alice))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.WatchJobs(request, metadata=bearer(gateway, "alice")).read()
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "user alice has 3 open" in (refused.value.details() or "")
        bob = stub.WatchJobs(request, metadata=bearer(gateway, "bob"))
        await bob.read()
        for call in (*alice, bob):
            call.cancel()


async def test_a_peer_facility_client_waits_out_the_peers_rate_limits(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    """The transfer engine's client of a peer (transfers/peer.py) slows down instead of
    failing the transfer: refused unary calls are sent again after the advised delay."""
    per_address = rates(reads_per_second=5, reads_burst=1)
    gateway = await gateway_factory(limited(tmp_path, per_address=per_address), wait_ready=False)
    paced = [_PacedUnary()]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}", interceptors=paced) as ch:
        stub = status_pb2_grpc.StatusServiceStub(ch)
        started = time.monotonic()
        for _ in range(3):
            await stub.ListSystems(status_pb2.ListSystemsRequest())
        assert time.monotonic() - started >= 0.35  # two waits of about 0.2 s
