"""Prometheus metrics: one `Metrics` per gateway, served over HTTP from a thread.

Every gateway owns its own CollectorRegistry (tests run several gateways in one
process, and a shared registry would refuse the second set of names). Components take
an optional `Metrics`; without one they get `Metrics.unexposed()`, whose metrics are in
no registry: recording costs a few attribute updates and is never scraped. Only the
HTTP server runs off the event loop (prometheus_client's WSGI app on a threading
server in a daemon thread); recording is lock-protected counters, cheap enough for the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    make_wsgi_app,
)
from prometheus_client.exposition import ThreadingWSGIServer

log = logging.getLogger(__name__)

# How often the metrics thread looks for a shutdown request: closing the gateway waits
# up to this long for it (socketserver's default, 0.5 s, was most of a gateway's stop).
SHUTDOWN_POLL = 0.05

# Task runs last from a second to a day: the default (sub-second) buckets would lump them.
TASK_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0)
# RPCs that keep a stream open, by the method's short name (the `kind` of open streams).
STREAM_KINDS = frozenset(
    {
        "WatchJobs",
        "WatchTask",
        "WatchSystems",
        "ReadJobOutput",
        "Download",
        "Upload",
        "RunCommand",
    }
)

# Refusals by the rate limiter (api/limits.py). Process-wide and registered in every
# gateway's registry, so the limiter can count without holding a Metrics object; with
# several gateways in one process (tests) they share it: compare before and after.
RATE_LIMITED = Counter(
    "hpcgate_rate_limited",
    "RPCs refused by the rate limiter, by user class and method",
    ["user_class", "method"],
    registry=None,
)


class Metrics:
    """The gateway's metric objects; `registry` None makes them unexposed (a sink)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry
        self._rpcs(registry)
        self._jobs(registry)
        self._tasks(registry)
        self.slurm_commands = Counter(
            "hpcgate_slurm_commands", "Slurm commands run", ["command"], registry=registry
        )
        self.slurm_seconds = Histogram(
            "hpcgate_slurm_command_duration_seconds",
            "Slurm command duration",
            ["command"],
            registry=registry,
        )
        self.privsep_workers = Gauge(
            "hpcgate_privsep_workers", "Per-user worker processes alive", registry=registry
        )
        self.rate_limited = RATE_LIMITED
        if registry is not None:
            registry.register(RATE_LIMITED)
            ProcessCollector(registry=registry)  # process_*: CPU, memory, open descriptors
        self._server: tuple[WSGIServer, threading.Thread] | None = None

    def _rpcs(self, r: CollectorRegistry | None) -> None:
        self.rpcs = Counter("hpcgate_rpcs", "RPCs finished", ["method", "code"], registry=r)
        self.rpc_seconds = Histogram(
            "hpcgate_rpc_duration_seconds", "RPC latency", ["method", "code"], registry=r
        )
        self.open_streams = Gauge(
            "hpcgate_open_streams", "Streaming RPCs open now", ["kind"], registry=r
        )

    def _jobs(self, r: CollectorRegistry | None) -> None:
        self.job_polls = Counter(
            "hpcgate_job_polls", "Queue polls by the job hub", ["system"], registry=r
        )
        self.job_poll_seconds = Histogram(
            "hpcgate_job_poll_duration_seconds", "Duration of one queue poll", ["system"],
            registry=r,
        )  # fmt: skip
        self.job_poll_interval = Gauge(
            "hpcgate_job_poll_interval_seconds",
            "Seconds the job hub waits before its next queue poll (floor when busy)",
            ["system"],
            registry=r,
        )
        self.hook_notices = Counter(
            "hpcgate_hook_notices",
            "Notices from Slurm's hooks, by system and event (invalid: not a notice; "
            "not_polling: this replica does not poll the system)",
            ["system", "event"],
            registry=r,
        )
        self.job_reads = Counter(
            "hpcgate_job_reads",
            "Job reads answered by the hub alone (hit) or that asked Slurm (miss)",
            ["system", "result"],
            registry=r,
        )

    def _tasks(self, r: CollectorRegistry | None) -> None:
        self.tasks = Gauge(
            "hpcgate_tasks", "Tasks queued or running in this process", ["state"], registry=r
        )
        self.task_seconds = Histogram(
            "hpcgate_task_duration_seconds",
            "Task run time from start to end, by kind and end state",
            ["kind", "state"],
            buckets=TASK_BUCKETS,
            registry=r,
        )
        self.transfer_bytes = Counter(
            "hpcgate_transfer_bytes", "Bytes copied and verified by transfers", registry=r
        )

    @classmethod
    def unexposed(cls) -> Metrics:
        """Metrics nobody scrapes: the default of components built without a gateway."""
        return cls(None)

    # -- recording ----------------------------------------------------------------------

    def rpc_started(self, method: str) -> None:
        """Counts a streaming RPC as open until `rpc_finished` (unary ones: nothing)."""
        kind = method.rsplit("/", 1)[-1]
        if kind in STREAM_KINDS:
            self.open_streams.labels(kind).inc()

    def rpc_finished(self, method: str, code: str, seconds: float) -> None:
        kind = method.rsplit("/", 1)[-1]
        if kind in STREAM_KINDS:
            self.open_streams.labels(kind).dec()
        self.rpcs.labels(method, code).inc()
        self.rpc_seconds.labels(method, code).observe(seconds)

    @contextlib.contextmanager
    def slurm_command(self, tool: str) -> Iterator[None]:
        """Counts and times one run of Slurm's `tool` (a name or a path to it)."""
        command = tool.rsplit("/", 1)[-1]
        started = time.monotonic()
        try:
            yield
        finally:
            self.slurm_commands.labels(command).inc()
            self.slurm_seconds.labels(command).observe(time.monotonic() - started)

    def job_poll(self, system: str, seconds: float, next_interval: float) -> None:
        self.job_polls.labels(system).inc()
        self.job_poll_seconds.labels(system).observe(seconds)
        self.job_poll_interval.labels(system).set(next_interval)

    def hook_notice(self, system: str, event: str) -> None:
        self.hook_notices.labels(system, event).inc()

    def job_read(self, system: str, *, hit: bool) -> None:
        self.job_reads.labels(system, "hit" if hit else "miss").inc()

    def task_ended(self, kind: str, state: str, seconds: float) -> None:
        self.task_seconds.labels(kind, state).observe(seconds)

    def track_tasks(self, pending: Callable[[], float], running: Callable[[], float]) -> None:
        """Task gauges read at scrape time (from the HTTP thread: plain reads only)."""
        self.tasks.labels("pending").set_function(pending)
        self.tasks.labels("running").set_function(running)

    # -- serving ------------------------------------------------------------------------

    async def serve(self, listen: str) -> int:
        """Serve /metrics on HOST:PORT (port 0 picks one) and return the bound port; 0
        when `listen` is empty or the address cannot be bound. A taken port is logged,
        not fatal: losing the metrics must not take the gRPC service down with them."""
        if not listen or self.registry is None:
            return 0
        host, port = listen.rsplit(":", 1)
        try:
            self._server = await asyncio.to_thread(
                _start_server, host.strip("[]"), int(port), self.registry
            )
        except OSError as e:
            log.error("METRICS NOT SERVED: cannot listen on %s: %s", listen, e)
            return 0
        bound = int(self._server[0].server_address[1])
        log.info("metrics", extra={"fields": {"address": f"{host}:{bound}"}})
        return bound

    async def close(self) -> None:
        """Stop the HTTP server (shutdown waits for its loop, so off the event loop)."""
        if self._server is None:
            return
        server, thread = self._server
        self._server = None
        await asyncio.to_thread(_shut_down, server, thread)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Scrapes are not logged (wsgiref would write each to stderr)."""


class _IPv6Server(ThreadingWSGIServer):
    address_family = socket.AF_INET6


def _family(host: str, port: int) -> socket.AddressFamily:
    """The address family `host` resolves to first (an IPv6 literal, or a host name with
    only IPv6 addresses, needs an AF_INET6 socket), as prometheus_client chooses it."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]


def _start_server(
    host: str, port: int, registry: CollectorRegistry
) -> tuple[WSGIServer, threading.Thread]:
    """prometheus_client's WSGI app on a threading server of our own, so that its loop
    polls for shutdown every SHUTDOWN_POLL seconds rather than every half second."""
    v6 = _family(host, port) == socket.AF_INET6
    server_class = _IPv6Server if v6 else ThreadingWSGIServer
    server = make_server(
        host, port, make_wsgi_app(registry), server_class, handler_class=_QuietHandler
    )
    thread = threading.Thread(
        target=server.serve_forever, args=(SHUTDOWN_POLL,), name="metrics", daemon=True
    )
    thread.start()
    return server, thread


def _shut_down(server: WSGIServer, thread: threading.Thread) -> None:
    server.shutdown()
    server.server_close()
    thread.join(timeout=5.0)
