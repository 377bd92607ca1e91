"""Rate limits and stream caps, checked by the interceptor once the caller is known.

Why: one runaway script (a loop without a sleep, a thousand forgotten watchers) must not
take the gateway, or the scheduler behind it, away from everyone else. Every RPC of the
seven services falls in one class: reads, writes, submits (work for the scheduler or a
task: SubmitJob, StartTransfer, RunCommand, CreateReservation) and streams (opening a
Watch*, ReadJobOutput, Download or Upload). The classes come from the service
descriptors when the server starts, so a new RPC without a class stops the server (and
the tests) instead of going unlimited.

Each call takes a token from a bucket of its class per user and per client (user plus
client id: one program of the user); calls without a token (StatusService,
ExchangeToken) from a bucket per source address (IPv6: per /64, what one host usually
gets). Health and reflection are exempt: a load balancer's health check must never be
refused, and both are cheap. Behind a proxy that hides client addresses every anonymous
caller shares the proxy's bucket: raise `per_address` there.

Streams also hold a slot while open: at most `max_streams_per_user` per user (per
address without a token) and `max_streams` in all. A refusal is RESOURCE_EXHAUSTED with
a RetryInfo (and the `grpc-retry-pushback-ms` trailer, errors.py): the time until a
token is there, or a second for a full stream cap, when slots free as streams end.
Refusals are counted in `metrics.RATE_LIMITED`, by scope (user, client, address) and
method.

Memory stays bounded: a bucket that has refilled completely is the same as a new one,
so such buckets are dropped, by a sweep at most every SWEEP_INTERVAL seconds. What is
kept grows with the callers active within one refill time, not with all callers ever.
"""

from __future__ import annotations

import ipaddress
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from hpcgate.server.auth.caller import Caller
from hpcgate.server.auth.check import caller_peer, peer_address
from hpcgate.server.config import ClassRates, RateLimitsConfig
from hpcgate.server.errors import Code, DomainError
from hpcgate.server.metrics import RATE_LIMITED
from hpcgate.v1 import (
    account_pb2,
    auth_pb2,
    compute_pb2,
    status_pb2,
    storage_pb2,
    tasks_pb2,
    utilities_pb2,
)

READS, WRITES, SUBMITS, STREAMS = "reads", "writes", "submits", "streams"
# Work handed to the scheduler, a task or a process: the costliest calls, whatever shape.
SUBMIT_METHODS = frozenset({"SubmitJob", "StartTransfer", "RunCommand", "CreateReservation"})
# Reads beyond the Get*/List* names.
READ_METHODS = frozenset({"Stat", "View", "Checksum"})
# Unary calls that change something. ExchangeToken is here: it signs a token, and a low
# limit per address slows down guessing.
WRITE_METHODS = frozenset(
    {
        "ExchangeToken", "AddProjectMember", "RemoveProjectMember", "CancelJob",
        "DeleteReservation", "MakeDirectory", "Move", "Copy", "Remove", "ChangeMode",
        "CreateSymlink", "CancelTask",
    }
)  # fmt: skip
SWEEP_INTERVAL = 10.0  # seconds between sweeps of refilled buckets
CAP_RETRY = 1.0  # seconds advised after a full stream cap: slots free as streams end
Clock = Callable[[], float]
# The interceptor's auth check (api/interceptors.py): the caller, None for public RPCs.
Authenticate = Callable[[str, Any], Awaitable[Caller | None]]


def services() -> tuple[ServiceDescriptor, ...]:
    """The seven hpcgate services."""
    return (
        status_pb2.DESCRIPTOR.services_by_name["StatusService"],
        auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
        account_pb2.DESCRIPTOR.services_by_name["AccountService"],
        compute_pb2.DESCRIPTOR.services_by_name["ComputeService"],
        utilities_pb2.DESCRIPTOR.services_by_name["UtilitiesService"],
        storage_pb2.DESCRIPTOR.services_by_name["StorageService"],
        tasks_pb2.DESCRIPTOR.services_by_name["TasksService"],
    )


def classify(method: MethodDescriptor) -> str:
    """The RPC class of `method`; LookupError for one no rule covers."""
    name = method.name
    if name in SUBMIT_METHODS:
        return SUBMITS
    if method.client_streaming or method.server_streaming:
        return STREAMS
    if name.startswith(("Get", "List")) or name in READ_METHODS:
        return READS
    if name in WRITE_METHODS:
        return WRITES
    raise LookupError(
        f"{method.containing_service.full_name}.{name} has no rate-limit class: "
        "add it to one in hpcgate/server/api/limits.py"
    )


@dataclass(frozen=True)
class MethodLimit:
    rpc_class: str
    stream: bool  # holds a stream slot while open


def method_limits() -> dict[str, MethodLimit]:
    """`/package.Service/Method` -> its class, for every method of the seven services."""
    return {
        f"/{service.full_name}/{m.name}": MethodLimit(
            classify(m), m.client_streaming or m.server_streaming
        )
        for service in services()
        for m in service.methods
    }


class TokenBucket:
    """`rate` tokens a second, at most `burst`; a call takes one. Starts full."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def wait(self, now: float) -> float:
        """Seconds until a token is there (0: one is there now)."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1.0

    def full(self, now: float) -> bool:
        """Refilled completely: as good as a new bucket, so it may be dropped."""
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


@dataclass(frozen=True)
class _Scope:
    """One bucket owner: its kind (user, client, address), key, rates and name in
    messages."""

    kind: str
    key: str
    rates: ClassRates
    who: str

    @property
    def owner(self) -> str:
        """The key of its stream count (users and addresses apart)."""
        return f"{self.kind} {self.key}"


def address_key(peer: str) -> str:
    """The source address an anonymous caller is limited by: IPv4 as is, IPv6 by /64."""
    address = peer_address(peer)
    if address is None:
        return peer  # a unix socket: one local caller
    ip = ipaddress.ip_address(address)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return address


class Limiter:
    """The buckets and stream counts of one server; `admit` is the interceptor's check."""

    def __init__(self, config: RateLimitsConfig, clock: Clock = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.methods = method_limits()
        self.buckets: dict[tuple[str, str, str], TokenBucket] = {}
        self.streams: Counter[str] = Counter()
        self.total_streams = 0
        self._swept = clock()

    def guard(self, authenticate: Authenticate) -> Authenticate:
        """`authenticate`, then this limiter's check of the caller it found. A stream's
        slot is freed when the RPC ends, however it ends (the call's done callback)."""

        async def checked(method: str, context: Any) -> Caller | None:
            caller = await authenticate(method, context)
            slot = self.admit(method, caller, caller_peer(context))
            if slot is not None:
                context.add_done_callback(slot.release)
            return caller

        return checked

    def admit(self, method: str, caller: Caller | None, peer: str) -> StreamSlot | None:
        """Takes a token for the call or refuses it (DomainError); for a stream, also
        takes the slot it holds until `release`."""
        limit = self.methods.get(method)
        if limit is None or not self.config.enabled:
            return None
        scopes = self._scopes(caller, peer)
        if limit.stream:
            self._check_room(method, scopes[0])  # before the token: a refusal costs none
        self._take(method, limit.rpc_class, scopes)
        return StreamSlot(self, scopes[0].owner) if limit.stream else None

    def _scopes(self, caller: Caller | None, peer: str) -> list[_Scope]:
        """The bucket owners of a call; the first also owns its stream slots."""
        c = self.config
        if caller is None:
            address = address_key(peer)
            return [_Scope("address", address, c.per_address, f"address {address}")]
        return [
            _Scope("user", caller.user, c.per_user, f"user {caller.user}"),
            _Scope(
                "client",
                f"{caller.user}\0{caller.client_id}",
                c.per_client,
                f"client {caller.client_id} of user {caller.user}",
            ),
        ]

    def _take(self, method: str, rpc_class: str, scopes: list[_Scope]) -> None:
        """One token from every scope's bucket, or none at all: a refused call must not
        use up the allowance of the scopes that still had tokens."""
        now = self.clock()
        self._sweep(now)
        buckets = []
        for scope in scopes:
            rate, burst = scope.rates.bucket(rpc_class)
            if rate <= 0:
                continue  # this class is unlimited in this scope
            bucket = self.buckets.get((scope.kind, scope.key, rpc_class))
            if bucket is None:
                bucket = self.buckets[(scope.kind, scope.key, rpc_class)] = TokenBucket(
                    rate, burst, now
                )
            wait = bucket.wait(now)
            if wait > 0:
                raise self._refusal(method, rpc_class, scope, rate, burst, wait)
            buckets.append(bucket)
        for bucket in buckets:
            bucket.take()

    def _refusal(
        self, method: str, rpc_class: str, scope: _Scope, rate: float, burst: int, wait: float
    ) -> DomainError:
        RATE_LIMITED.labels(scope.kind, method).inc()
        return DomainError(
            Code.RESOURCE_EXHAUSTED,
            f"rate limit: {scope.who} made more than {rate:g} {rpc_class[:-1]} calls a "
            f"second (bursts of {burst}); retry in {wait:.3g} s and spread your calls out, "
            "or ask the operators for a higher limit",
            retry_after=wait,
        )

    def _check_room(self, method: str, owner: _Scope) -> None:
        """Refuses a stream when its owner or the server has no slot left."""
        c = self.config
        if self.streams[owner.owner] >= c.max_streams_per_user:
            raise self._full(method, owner, f"{owner.who} has {c.max_streams_per_user} open")
        if self.total_streams >= c.max_streams:
            raise self._full(method, owner, f"the server has {c.max_streams} open")

    def _full(self, method: str, owner: _Scope, why: str) -> DomainError:
        RATE_LIMITED.labels(owner.kind, method).inc()
        return DomainError(
            Code.RESOURCE_EXHAUSTED,
            f"too many streams: {why}, the most allowed; end (cancel) streams you no "
            "longer read and retry",
            retry_after=CAP_RETRY,
        )

    def _sweep(self, now: float) -> None:
        """Drops buckets that have refilled completely (see the module doc)."""
        if now - self._swept < SWEEP_INTERVAL:
            return
        self._swept = now
        full = [key for key, bucket in self.buckets.items() if bucket.full(now)]
        for key in full:
            del self.buckets[key]


class StreamSlot:
    """One open stream of `owner`, counted until `release` (which may come twice: once
    is counted)."""

    def __init__(self, limiter: Limiter, owner: str) -> None:
        self.limiter = limiter
        self.owner = owner
        self.held = True
        limiter.streams[owner] += 1
        limiter.total_streams += 1

    def release(self, *_: object) -> None:
        if not self.held:
            return
        self.held = False
        limiter = self.limiter
        limiter.total_streams -= 1
        limiter.streams[self.owner] -= 1
        if limiter.streams[self.owner] <= 0:
            del limiter.streams[self.owner]
