"""Assembles the gRPC server: services, health, reflection, TLS, probers, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.descriptor_pool import Default as default_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from hpcgate.server.api.account import AccountServicer
from hpcgate.server.api.auth import AuthServicer
from hpcgate.server.api.compute import ComputeServicer
from hpcgate.server.api.interceptors import ObservingInterceptor
from hpcgate.server.api.limits import Limiter
from hpcgate.server.api.status import StatusServicer
from hpcgate.server.api.storage import StorageServicer
from hpcgate.server.api.tasks import TasksServicer
from hpcgate.server.api.utilities import UtilitiesServicer
from hpcgate.server.auth.check import Authenticator
from hpcgate.server.auth.keys import ServerKeys
from hpcgate.server.auth.registry import ClientRegistry
from hpcgate.server.auth.tokens import TokenService
from hpcgate.server.children import install_pidfd_watcher
from hpcgate.server.config import Config, ServerConfig
from hpcgate.server.events.cluster import ClusterJobs
from hpcgate.server.events.hook_listener import HookListener
from hpcgate.server.events.hub import JobHub
from hpcgate.server.events.journal import Journal
from hpcgate.server.files.reading import keep_large_buffers
from hpcgate.server.metrics import Metrics
from hpcgate.server.privsep import PrivilegeSeparation
from hpcgate.server.slurm.factory import make_adapter
from hpcgate.server.state.job_archive import JobArchive
from hpcgate.server.state.store import StateStore
from hpcgate.server.status.hub import StatusHub
from hpcgate.server.status.prober import SystemProber
from hpcgate.server.tasks import SqlTaskStore, TaskRunner
from hpcgate.server.transfers.service import Transfers
from hpcgate.server.web.listener import HttpListener
from hpcgate.v1 import (
    account_pb2,
    account_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    compute_pb2,
    compute_pb2_grpc,
    status_pb2,
    status_pb2_grpc,
    storage_pb2,
    storage_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
    utilities_pb2,
    utilities_pb2_grpc,
)

log = logging.getLogger(__name__)
# Longest any one shutdown step may take: a process stuck in uninterruptible I/O (a dead
# mount) must not keep the server from exiting; the step is abandoned and logged.
STEP_LIMIT = 20.0


async def _bounded(step: Awaitable[object], seconds: float, what: str) -> None:
    """Waits up to `seconds` for one shutdown step, then abandons it, saying where every
    task still running was waiting (what kept the step from ending)."""
    try:
        await asyncio.wait_for(step, seconds)
    except TimeoutError:
        log.error(
            "shutdown step did not finish in time; abandoned",
            extra={"fields": {"step": what, "seconds": seconds, "waiting": _waiting()}},
        )


def _waiting() -> list[str]:
    """`task name: file:line in function` of each unfinished task's innermost frame."""
    found = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task() or task.done():
            continue
        frames = task.get_stack()
        where = "not started"
        if frames:
            code = frames[-1].f_code
            where = f"{code.co_filename}:{frames[-1].f_lineno} in {code.co_name}"
        found.append(f"{task.get_name()}: {where}")
    return sorted(found)


def _connection_age(seconds: float) -> list[tuple[str, int]]:
    """GOAWAY after `seconds` so clients reconnect and spread over replicas again; open
    calls get as long again to finish (watch streams then resume by revision)."""
    if seconds <= 0:
        return []
    ms = int(seconds * 1000)
    return [("grpc.max_connection_age_ms", ms), ("grpc.max_connection_age_grace_ms", ms)]


def _keepalive(server: ServerConfig) -> list[tuple[str, int]]:
    """The server pings quiet clients so that dead ones are found and their streams freed,
    and accepts clients' pings (with or without calls) as often as configured: the client
    library pings idle channels so that a NAT's idle timeout never drops them."""
    min_ping_ms = int(server.min_client_ping_interval * 1000)
    return [
        ("grpc.keepalive_time_ms", int(server.keepalive_time * 1000)),
        ("grpc.keepalive_timeout_ms", int(server.keepalive_timeout * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", min_ping_ms),
    ]


def _pending_requests(limit: int) -> list[tuple[str, int]]:
    """grpc-core cancels arriving calls (CANCELLED, no message, before any servicer) once
    this many wait to be taken, randomly from its soft limit on (default 1000) and all
    from its hard limit (3000): a burst of watchers reconnecting after a restart would lose
    some. Both at `limit`: nothing is refused below it, everything above."""
    return [
        ("grpc.server.max_pending_requests", limit),
        ("grpc.server.max_pending_requests_hard_limit", limit),
    ]


def http_services() -> list[ServiceDescriptor]:
    """The services the HTTP listener serves: the API's and the health service."""
    return [
        *(default_pool().FindServiceByName(name) for name in service_names()),
        health_pb2.DESCRIPTOR.services_by_name["Health"],
    ]


def service_names() -> list[str]:
    """Full names of the seven hpcgate services, StatusService first."""
    names = [
        status_pb2.DESCRIPTOR.services_by_name["StatusService"].full_name,
        auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
        account_pb2.DESCRIPTOR.services_by_name["AccountService"].full_name,
        compute_pb2.DESCRIPTOR.services_by_name["ComputeService"].full_name,
        utilities_pb2.DESCRIPTOR.services_by_name["UtilitiesService"].full_name,
        storage_pb2.DESCRIPTOR.services_by_name["StorageService"].full_name,
        tasks_pb2.DESCRIPTOR.services_by_name["TasksService"].full_name,
    ]
    return names


def token_service(config: Config, store: StateStore) -> TokenService:
    """The token service over the state directory (also used by `hpcgate-server token`)."""
    keys = ServerKeys(config.server.state_dir, config.auth.max_access_token_ttl)
    return TokenService(config.auth, keys, ClientRegistry(store, config.auth.policy))


class Gateway:
    """The running server. `start()`, then `serve_until_signal()` or `stop()`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = StateStore.open(config)
        self.hub = StatusHub(s.id for s in config.systems)
        # This gateway's Prometheus metrics (its own registry: tests run several gateways).
        self.metrics = Metrics(CollectorRegistry())
        self.metrics_port = 0  # bound by start() when [metrics] listen is set
        self.adapters = {s.id: make_adapter(s, self.metrics) for s in config.systems}
        self.tokens = token_service(config, self.store)
        # Per-user work (files, commands, sbatch) runs through this, never as the server.
        # In a split deployment it asks the root spawner for workers ([privsep]).
        split = config.privsep.use_spawner
        self.privsep = PrivilegeSeparation(
            spawner=str(config.privsep.socket) if split else None,
            min_uid=config.privsep.min_uid,
            deny_users=config.privsep.deny_users,
        )
        self.metrics.privsep_workers.set_function(lambda: self.privsep.workers_alive)
        self.authenticator = Authenticator(self.tokens, self.privsep.served_user)
        self.health = HealthServicer()
        self.draining = asyncio.Event()
        # One shared job poller per system (events/hub.py); in cluster mode one across
        # all replicas, elected, and the journal they all follow (events/cluster.py).
        dsn = config.state.dsn if config.state.clustered else ""
        self.hubs = {
            s.id: JobHub(
                s.id, self.adapters[s.id], config.watch,
                JobArchive(self.store, s.id, config.watch.finished_cache_size),
                Journal(dsn, s.id, config.watch.history_size) if dsn else None,
                self.metrics,
            )
            for s in config.systems
        }  # fmt: skip
        self.cluster_jobs = ClusterJobs(dsn, self.hubs, config.server.replica_name) if dsn else None
        # Slurm's hooks name jobs that started or ended: the hubs read them at once.
        hook_socket = config.watch.hook_socket
        self.hooks = (
            HookListener(hook_socket, config.watch.hook_group, self.hubs, config.systems,
                         self.metrics,
                         self.cluster_jobs.forward_notice if self.cluster_jobs else None)
            if hook_socket is not None else None
        )  # fmt: skip
        # One status prober per system; its inventory also answers ComputeService's lists.
        self.probers = {
            s.id: SystemProber(s, self.adapters[s.id], self.store, config.status, self.hub.publish)
            for s in config.systems
        }
        # Durable tasks; kinds (e.g. transfers) register their handlers on it.
        self.tasks = TaskRunner(
            SqlTaskStore(self.store), config.tasks, config.server.replica_name, self.metrics
        )
        # StartTransfer's tasks (registers the "transfer" kind on the runner).
        self.transfers = Transfers(config, self.privsep, self.tasks, self.metrics)
        self.port = 0
        # Connect and gRPC-Web for browsers and curl, and the status page ([http]).
        self.http = HttpListener(config, http_services()) if config.http.listen else None
        self.http_port = 0
        self._tasks: list[asyncio.Task[None]] = []
        # Per-user, per-client and per-address rate limits and stream caps (api/limits.py).
        self.limiter = Limiter(config.rate_limits)
        interceptor = ObservingInterceptor(
            self.authenticator.authenticate, self.metrics, limiter=self.limiter
        )
        self.server = grpc.aio.server(
            interceptors=[interceptor],
            maximum_concurrent_rpcs=config.limits.max_concurrent_rpcs,
            options=[
                ("grpc.max_receive_message_length", config.limits.max_message_bytes),
                ("grpc.max_send_message_length", config.limits.max_message_bytes),
                ("grpc.max_metadata_size", config.limits.max_metadata_bytes),
                ("grpc.absolute_max_metadata_size", config.limits.max_metadata_bytes),
                ("grpc.so_reuseport", 0),
                *_connection_age(config.server.max_connection_age),
                *_keepalive(config.server),
                *_pending_requests(config.server.max_pending_requests),
            ],
        )
        status_pb2_grpc.add_StatusServiceServicer_to_server(
            StatusServicer(config, self.hub, self.store, self.draining), self.server
        )
        auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(self.tokens), self.server)
        account_pb2_grpc.add_AccountServiceServicer_to_server(
            AccountServicer(config, self.adapters, self.privsep), self.server
        )
        compute_pb2_grpc.add_ComputeServiceServicer_to_server(
            ComputeServicer(
                config,
                self.adapters,
                self.store,
                self.privsep,
                self.hubs,
                self.draining,
                self.probers,
                self.metrics,
            ),
            self.server,
        )
        self.utilities = UtilitiesServicer(config, self.privsep, self.store)
        utilities_pb2_grpc.add_UtilitiesServiceServicer_to_server(self.utilities, self.server)
        storage_pb2_grpc.add_StorageServiceServicer_to_server(
            StorageServicer(config, self.hub, self.privsep, self.transfers), self.server
        )
        tasks_pb2_grpc.add_TasksServiceServicer_to_server(
            TasksServicer(self.tasks, config.tasks, self.draining), self.server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [
                *service_names(),
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            self.server,
        )

    def _bind(self) -> int:
        server_cfg = self.config.server
        if server_cfg.tls is None:
            if not server_cfg.listens_on_loopback_only:
                log.warning(
                    "LISTENING ON %s WITHOUT TLS: tokens and data cross the network in "
                    "clear text. Configure [server.tls] cert_file and key_file.",
                    server_cfg.listen,
                )
            return self.server.add_insecure_port(server_cfg.listen)
        tls = server_cfg.tls
        credentials = grpc.ssl_server_credentials(
            [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
            root_certificates=tls.client_ca_file.read_bytes() if tls.client_ca_file else None,
            require_client_auth=tls.require_client_cert,
        )
        return self.server.add_secure_port(server_cfg.listen, credentials)

    async def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        for name in ["", *service_names()]:
            await self.health.set(name, status)

    async def start(self) -> int:
        """Bind, start serving, start the probers. Health is SERVING after the first probes."""
        install_pidfd_watcher()
        # Chunk-sized buffers (Download, Upload, transfers) reused, not page-faulted anew.
        keep_large_buffers()
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self.port = self._bind()
        if self.port == 0:
            raise OSError(f"could not listen on {self.config.server.listen}")
        if self.http is not None:
            self.http.attach(self.server)
        self.metrics_port = await self.metrics.serve(self.config.metrics.listen)
        # Tasks a previous run left unfinished are resumed or failed before RPCs see them.
        await self.tasks.start()
        await self.server.start()
        if self.http is not None:
            self.http_port = await self.http.start()
        for system_id, prober in self.probers.items():
            self._tasks.append(asyncio.create_task(prober.run(), name=f"prober-{system_id}"))
        if self.cluster_jobs is not None:
            self._tasks.append(asyncio.create_task(self.cluster_jobs.run(), name="jobs-cluster"))
        else:
            for system_id, hub in self.hubs.items():
                self._tasks.append(asyncio.create_task(hub.run(), name=f"jobs-{system_id}"))
        if self.hooks is not None:
            await self.hooks.start()
        self._tasks.append(asyncio.create_task(self._serve_when_probed(), name="readiness"))
        self._tasks.append(asyncio.create_task(self.utilities.sweep_uploads(), name="uploads"))
        host = self.config.server.listen.rsplit(":", 1)[0]
        log.info(
            "listening",
            extra={
                "fields": {
                    "address": f"{host}:{self.port}",
                    "tls": self.config.server.tls is not None,
                }
            },
        )
        return self.port

    async def _serve_when_probed(self) -> None:
        await self.hub.wait_ready()
        if not self.draining.is_set():
            await self._set_health(health_pb2.HealthCheckResponse.SERVING)
            log.info("ready: first probes done, health is SERVING")

    async def stop(self) -> None:
        """Graceful shutdown: NOT_SERVING, refuse new RPCs, let open ones finish within the
        grace period, end watch streams with UNAVAILABLE just before it runs out."""
        grace = self.config.server.shutdown_grace
        log.info("shutting down", extra={"fields": {"grace_seconds": grace}})
        await self.health.enter_graceful_shutdown()
        if self.http is not None:
            self.http.begin_stop()
        stopping = asyncio.create_task(self.server.stop(grace))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(stopping), max(grace - 0.5, 0.0))
        self.draining.set()
        await _bounded(stopping, grace + STEP_LIMIT, "stopping the gRPC server")
        if self.http is not None:
            await _bounded(self.http.stop(), grace + STEP_LIMIT, "stopping the HTTP listener")
        # Running tasks are interrupted; resumable ones continue at the next start.
        await _bounded(self.tasks.stop(), STEP_LIMIT, "interrupting tasks")
        for task in self._tasks:
            task.cancel()
        await _bounded(
            asyncio.gather(*self._tasks, return_exceptions=True),
            STEP_LIMIT,
            "stopping probers and pollers",
        )
        # Commands still running are killed through their users' workers, so before those go.
        if self.hooks is not None:
            await self.hooks.close()
        await _bounded(self.utilities.commands.close(), STEP_LIMIT, "killing commands")
        await _bounded(self.privsep.close(), STEP_LIMIT, "stopping per-user workers")
        for hub in self.hubs.values():
            if hub.journal is not None:
                await _bounded(hub.journal.close(), STEP_LIMIT, "closing the job journal")
        if self.cluster_jobs is not None:
            await _bounded(self.cluster_jobs.close(), STEP_LIMIT, "closing the hook forwarder")
        await _bounded(self.metrics.close(), STEP_LIMIT, "stopping the metrics endpoint")
        await asyncio.to_thread(self.store.close)
        log.info("stopped")

    async def serve_until_signal(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await self.stop()
