"""The server's configuration: one TOML file, every key documented in example-config.toml.

Loading validates everything up front and reports the offending key, so a typo fails
at start-up with a clear message instead of at the first request.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcgate.server import paths

EXAMPLE_CONFIG = Path(__file__).with_name("example-config.toml")
SYSTEM_ID_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
FILESYSTEM_KINDS = ("home", "scratch", "project", "archive", "other")
QUOTA_TOOLS = ("auto", "lfs", "quota", "none")
ADAPTERS = ("cli", "pyslurm")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and what is expected."""


@dataclass(frozen=True)
class TlsConfig:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    require_client_cert: bool = False


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:50051"
    state_dir: Path = field(default_factory=paths.default_state_dir)
    shutdown_grace: float = 5.0
    log_level: str = "info"
    tls: TlsConfig | None = None
    # Seconds after which a client connection is sent GOAWAY so that clients reconnect
    # and spread over the replicas again (cluster mode); 0: never.
    max_connection_age: float = 0.0
    # Seconds of silence after which the server pings a client, and seconds it waits for
    # the answer before closing the connection: dead clients (a laptop that left, a NAT
    # that dropped its mapping) free their streams instead of holding them for hours.
    keepalive_time: float = 60.0
    keepalive_timeout: float = 20.0
    # Clients may ping this often (seconds), with or without open calls; more often is
    # answered with GOAWAY "too_many_pings". Below the client library's keepalive
    # (channel.py), so that idle channels can keep a NAT's 60 s idle timer from expiring.
    min_client_ping_interval: float = 30.0
    # Calls that arrived but are not yet taken by the server (a burst of reconnecting
    # watchers); beyond this many, grpc-core cancels new ones (its default is 1000).
    max_pending_requests: int = 10_000
    # This replica's name in task leases and logs; "" = hostname:pid.
    replica_id: str = ""

    @property
    def replica_name(self) -> str:
        """`replica_id`, or hostname:pid: unique among replicas running at once."""
        return self.replica_id or f"{socket.gethostname()}:{os.getpid()}"

    @property
    def listens_on_loopback_only(self) -> bool:
        host = self.listen.rsplit(":", 1)[0].strip("[]")
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


STATE_BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class StateConfig:
    """Where durable state lives: SQLite in state_dir (one server), or PostgreSQL (any
    number of replicas sharing it: cluster mode, docs/deployment.md)."""

    backend: str = "sqlite"
    dsn: str = ""  # libpq connection string or URI, for "postgresql"
    pool_size: int = 10  # connections per replica

    @property
    def clustered(self) -> bool:
        return self.backend == "postgresql"


@dataclass(frozen=True)
class StatusConfig:
    probe_interval: float = 30.0
    filesystem_timeout: float = 5.0
    heartbeat_interval: float = 15.0
    filesystem_full_percent: float = 95.0


@dataclass(frozen=True)
class LimitsConfig:
    max_message_bytes: int = 4 * 1024 * 1024
    # A call's request headers (metadata) in all, as HTTP/2 counts them. grpc's own
    # default is a soft 8 KiB and a hard 16 KiB limit, between which it refuses calls at
    # random; one value for both makes the limit exact.
    max_metadata_bytes: int = 16 * 1024
    max_concurrent_rpcs: int = 10_000


@dataclass(frozen=True)
class WatchConfig:
    # Seconds between queue polls while jobs change or someone watches...
    poll_floor: float = 1.0
    # ...growing (doubling) to this when idle.
    poll_ceiling: float = 10.0
    # Job events kept for clients that resume by revision.
    history_size: int = 10000
    # Events buffered per WatchJobs stream before a slow consumer is cut off.
    stream_queue_size: int = 1000
    # Default seconds between heartbeats on a quiet WatchJobs stream.
    heartbeat_interval: float = 15.0
    # Seconds a finished job stays in the hub after it left the queue.
    retention: float = 3600.0
    # Seconds between accounting refreshes of a running job's steps (one sacct call per
    # interval for all running jobs; jobs that change state are refreshed at once).
    accounting_interval: float = 10.0
    # Final records of ended jobs kept for GetJob/ListJobs (oldest dropped first).
    finished_cache_size: int = 100_000
    # At start, read this many seconds of accounting (all users, one call) so that
    # ListJobs over that window is answered from memory; 0 disables it.
    backfill: float = 86400.0
    # The Unix datagram socket Slurm's hooks notify (slurm/hook.py sends to every *.sock
    # in /run/hpcgate-hooks); None: no hooks, polling only.
    hook_socket: Path | None = Path("/run/hpcgate-hooks/gateway.sock")
    # The group that may send to it (the controller's SlurmUser's); root always may.
    hook_group: str = "slurm"
    # At most one targeted read of hook-named jobs per this many seconds (per system).
    hook_min_interval: float = 0.05


@dataclass(frozen=True)
class ComputeConfig:
    # Largest inline batch script accepted by SubmitJob, bytes.
    max_script_bytes: int = 1024 * 1024
    # Whether callers may read (never cancel) other users' jobs.
    show_other_users_jobs: bool = False
    # ListJobs without a submit-time window covers this many seconds back.
    default_list_window: float = 86400.0
    # Seconds sbatch/scancel may take before the RPC fails with UNAVAILABLE.
    submit_timeout: float = 30.0


@dataclass(frozen=True)
class FilesConfig:
    # ListDirectory page size when the request gives none, and the largest allowed.
    list_page_size: int = 1000
    list_max_page_size: int = 10000
    # Download chunk size when the request gives none, and the largest allowed.
    download_chunk_size: int = 1024 * 1024
    max_chunk_size: int = 3 * 1024 * 1024
    # Largest file Upload accepts, bytes (enforced while streaming).
    upload_max_bytes: int = 100 * 1024**3
    # Seconds the partial file of an interrupted resumable Upload is kept after its last
    # stream ended, and seconds between sweeps removing expired ones.
    upload_resume_retention: float = 86400.0
    upload_sweep_interval: float = 600.0
    # Synchronous Copy (and cross-filesystem Move) limits; beyond them: StartTransfer.
    copy_max_bytes: int = 1024**3
    copy_max_files: int = 10000
    # View: bytes returned when the request gives no cap, and the largest cap.
    view_default_bytes: int = 1024 * 1024
    view_max_bytes: int = 3 * 1024 * 1024
    # Seconds a file operation (copy, recursive remove, checksum...) may take.
    operation_timeout: float = 300.0


@dataclass(frozen=True)
class CommandsConfig:
    # Whether RunCommand is offered at all (PERMISSION_DENIED when false).
    enabled: bool = True
    # Timeout when the request gives none, and the largest a request may ask for.
    default_timeout: float = 60.0
    max_timeout: float = 300.0
    # Output cap (stdout + stderr) when the request gives none, and the largest allowed.
    default_output_bytes: int = 1024 * 1024
    max_output_bytes: int = 16 * 1024 * 1024
    # Seconds between SIGTERM and SIGKILL of a timed-out command (cancelled: SIGKILL at once).
    kill_grace: float = 5.0
    # Commands one user may run at once (RESOURCE_EXHAUSTED beyond).
    max_per_user: int = 4


@dataclass(frozen=True)
class TasksConfig:
    # Tasks running at once per user and per system; further ones wait PENDING.
    max_running_per_user: int = 4
    max_running_per_system: int = 8
    # PENDING + RUNNING tasks one user may have; beyond: RESOURCE_EXHAUSTED.
    max_unfinished_per_user: int = 1000
    # Seconds between two commits (and WatchTask messages) of a task's progress.
    progress_interval: float = 1.0
    # Default seconds between heartbeats on a quiet WatchTask stream.
    heartbeat_interval: float = 15.0
    # Seconds ended tasks are kept (7 days).
    retention: float = 7 * 86400.0
    # A task interrupted by restarts this many times ends FAILED instead of resuming.
    max_attempts: int = 10
    # Seconds running tasks get to clean up when the server stops.
    stop_timeout: float = 10.0
    # Seconds a replica's claim on a running task lasts unless renewed (renewed every
    # third of it); a replica silent longer loses its tasks to the others.
    lease_seconds: float = 15.0


@dataclass(frozen=True)
class StorageConfig:
    # Seconds a quota command (quota, lfs quota) may take, run as the caller.
    quota_timeout: float = 10.0
    # Seconds a caller's quota figures are reused before the tool runs again.
    quota_cache: float = 60.0


RPC_CLASSES = ("reads", "writes", "submits", "streams")


@dataclass(frozen=True)
class ClassRates:
    """One token bucket per RPC class: `<class>_per_second` tokens added each second, up
    to `<class>_burst`; a call takes one. A rate of 0 leaves that class unlimited."""

    reads_per_second: float = 200.0
    reads_burst: int = 400
    writes_per_second: float = 100.0
    writes_burst: int = 400
    submits_per_second: float = 10.0
    submits_burst: int = 100
    streams_per_second: float = 100.0
    streams_burst: int = 2000

    def bucket(self, rpc_class: str) -> tuple[float, int]:
        """(per second, burst) of `rpc_class`, one of RPC_CLASSES."""
        rate: float = getattr(self, f"{rpc_class}_per_second")
        burst: int = getattr(self, f"{rpc_class}_burst")
        return rate, burst


@dataclass(frozen=True)
class RateLimitsConfig:
    """Rate limits per user, per client and per source address, and stream caps."""

    enabled: bool = True
    # Streams (WatchJobs, Download, Upload, RunCommand, ...) open at once: all callers
    # together (below limits.max_concurrent_rpcs, so unary calls always find room)...
    max_streams: int = 8000
    # ...and per user (per source address for calls without a token).
    max_streams_per_user: int = 5000
    per_user: ClassRates = field(default_factory=ClassRates)
    per_client: ClassRates = field(default_factory=ClassRates)
    per_address: ClassRates = field(default_factory=ClassRates)


@dataclass(frozen=True)
class MetricsConfig:
    # HOST:PORT of the Prometheus endpoint (/metrics, plain HTTP); port 0 picks one;
    # "" disables it. Loopback by default: the endpoint has no authentication.
    listen: str = "127.0.0.1:9464"


@dataclass(frozen=True)
class HttpConfig:
    """`[http]`: the same API over Connect and gRPC-Web for browsers and curl, and the
    public status page (docs/http.md)."""

    # HOST:PORT of the HTTP listener (HTTP/1.1 and cleartext HTTP/2); port 0 picks one;
    # "" turns it off. Loopback by default: put TLS in front of it (a proxy) elsewhere.
    listen: str = "127.0.0.1:8080"
    # Origins (scheme://host[:port]) whose pages may call the API from a browser; empty:
    # no CORS headers at all (same-origin only); "*": any origin.
    cors_allowed_origins: tuple[str, ...] = ()
    # Seconds a browser may cache a CORS preflight answer.
    cors_max_age: int = 600


@dataclass(frozen=True)
class PrivsepConfig:
    """`[privsep]`: who the network-facing process runs as, and whom it may act for."""

    # Started by root, `serve` runs the gRPC server as this account and keeps only the
    # spawner as root; "" serves as root in one process (not recommended).
    service_user: str = "hpcgate"
    # The root spawner's Unix socket (its directory: root-owned, created if missing).
    socket: Path = Path("/run/hpcgate/spawner.sock")
    # A server started unprivileged gets its workers from the spawner (multi-user mode)
    # instead of serving only its own account (`serve --spawner` sets it too).
    use_spawner: bool = False
    # Per-user work never runs as root or a member of group 0; nor as these.
    min_uid: int = 1000
    deny_users: tuple[str, ...] = ("slurm",)


@dataclass(frozen=True)
class ClientPolicy:
    """Site bounds on registered clients (NERSC-style security levels)."""

    # Clients with a powerful scope (write, execute): short-lived and tied to few networks.
    powerful_max_lifetime: float = 2 * 86400.0
    powerful_max_cidrs: int = 2
    # Read-only clients may live long and need not name networks.
    read_only_max_lifetime: float = 60 * 86400.0


@dataclass(frozen=True)
class ExternalIssuer:
    """An OIDC issuer whose tokens are accepted as access tokens."""

    issuer: str
    audience: str
    jwks_file: Path | None = None
    jwks_url: str = ""
    username_claim: str = "preferred_username"
    scopes_claim: str = "scope"
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    allowed_cidrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthConfig:
    audience: str = "hpcgate"
    issuer: str = "hpcgate"
    access_token_ttl: float = 600.0
    max_access_token_ttl: float = 86400.0
    max_assertion_lifetime: float = 300.0
    leeway: float = 10.0
    policy: ClientPolicy = field(default_factory=ClientPolicy)
    issuers: tuple[ExternalIssuer, ...] = ()


@dataclass(frozen=True)
class SlurmConfig:
    adapter: str = "cli"
    bin_dir: Path | None = None
    command_timeout: float = 10.0
    cluster: str = ""


@dataclass(frozen=True)
class FilesystemConfig:
    name: str
    path: Path
    kind: str = "other"
    display_name: str = ""
    description: str = ""
    # The caller's directory on it; "{user}" is replaced. Empty: the home directory for
    # kind "home", else <path>/<user> when that exists.
    user_path: str = ""
    # How the caller's quota is read: auto, lfs, quota or none.
    quota: str = "auto"


@dataclass(frozen=True)
class ReservationPolicy:
    """Who may ask for an advance reservation on a system, and how much
    (`[systems.reservations]`)."""

    accounts: tuple[str, ...] = ()  # projects that may ask; () = nobody, ("*",) = any
    max_nodes: int = 1
    max_duration: float = 4 * 3600.0  # seconds
    max_node_hours: float = 4.0
    max_ahead: float = 7 * 86400.0  # how far in the future a reservation may start
    approval: str = "auto"  # "auto": granted at once; "operator": waits for approve/deny
    partition: str = ""  # default partition ("" = Slurm's default)

    def allows(self, account: str) -> bool:
        return "*" in self.accounts or account in self.accounts


APPROVALS = ("auto", "operator")


@dataclass(frozen=True)
class SystemConfig:
    id: str
    display_name: str = ""
    description: str = ""
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    filesystems: tuple[FilesystemConfig, ...] = ()
    # Where UtilitiesService may touch files ("~" = the caller's home, "{user}" = their
    # name); empty = anywhere the caller's own permissions allow.
    allowed_roots: tuple[str, ...] = ()
    reservations: ReservationPolicy = field(default_factory=ReservationPolicy)

    @property
    def name(self) -> str:
        return f"systems/{self.id}"


@dataclass(frozen=True)
class PeerConfig:
    """Another hpcgate server that transfers may read from or write to, server to server.

    This server acts there as a client registered at the peer (`client_id`, its private
    key); the peer maps that client to one of ITS local users, the service account that
    owns whatever the transfer writes there and whose permissions bound what it reads.
    """

    id: str
    address: str  # HOST:PORT of the peer's gRPC endpoint
    client_id: str
    private_key_file: Path
    # The peer's auth.audience, which our client assertions must name.
    audience: str = "hpcgate"
    # The peer's system whose files are transferred (paths are absolute paths there).
    system: str = "local"
    # Plaintext (false) is only sensible on loopback; TLS verifies the peer's
    # certificate against ca_file, or the system's roots without it.
    tls: bool = False
    ca_file: Path | None = None
    # Local users who may transfer to/from this peer; empty = nobody, "*" = everyone.
    allowed_users: tuple[str, ...] = ()
    # Seconds each unary call to the peer may take (streams: seconds without progress).
    timeout: float = 30.0

    def allows(self, user: str) -> bool:
        return "*" in self.allowed_users or user in self.allowed_users

    @property
    def plaintext_off_loopback(self) -> bool:
        """True when tokens and data would cross a network unencrypted."""
        return not self.tls and not _is_loopback(self.address.rsplit(":", 1)[0].strip("[]"))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    state: StateConfig = field(default_factory=StateConfig)
    status: StatusConfig = field(default_factory=StatusConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    files: FilesConfig = field(default_factory=FilesConfig)
    commands: CommandsConfig = field(default_factory=CommandsConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    rate_limits: RateLimitsConfig = field(default_factory=RateLimitsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    privsep: PrivsepConfig = field(default_factory=PrivsepConfig)
    systems: tuple[SystemConfig, ...] = ()
    peers: tuple[PeerConfig, ...] = ()
    source: Path | None = None

    def system(self, system_id: str) -> SystemConfig | None:
        return next((s for s in self.systems if s.id == system_id), None)

    def peer(self, id_or_address: str) -> PeerConfig | None:
        """The configured peer named by its id or its address (as in TransferEndpoint)."""
        return next((p for p in self.peers if id_or_address in (p.id, p.address)), None)


def default_systems() -> tuple[SystemConfig, ...]:
    """The embedded default: the local Slurm through its command-line tools."""
    filesystems = [
        FilesystemConfig("home", Path("/home"), "home", "Home", "Home directories"),
        FilesystemConfig(
            "tmp",
            Path("/tmp"),  # noqa: S108
            "scratch",
            "Scratch (/tmp)",
            "Local temporary space: not backed up, may be cleaned at reboot",
        ),
    ]
    return (
        SystemConfig(
            id="local",
            display_name="Local cluster",
            description="The Slurm cluster on this machine",
            filesystems=tuple(filesystems),
        ),
    )


class _Section:
    """Typed access to one TOML table that remembers its path for error messages."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a table")
        self.data: dict[str, Any] = data
        self.where = where
        self.used: set[str] = set()

    def _get(self, key: str, types: tuple[type, ...], kind: str) -> Any:
        self.used.add(key)
        if key not in self.data:
            return None
        value = self.data[key]
        if isinstance(value, bool) and bool not in types:
            raise ConfigError(f"{self.key(key)}: expected {kind}, got {value!r}")
        if not isinstance(value, types):
            raise ConfigError(f"{self.key(key)}: expected {kind}, got {value!r}")
        return value

    def key(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def text(self, key: str, default: str) -> str:
        value = self._get(key, (str,), "a string")
        return default if value is None else value

    def path(self, key: str, default: Path | None = None) -> Path | None:
        value = self._get(key, (str,), "a path string")
        return default if value is None else Path(value)

    def seconds(self, key: str, default: float, minimum: float = 0.001) -> float:
        value = self._get(key, (int, float), "a number of seconds")
        if value is None:
            return default
        if value < minimum:
            raise ConfigError(f"{self.key(key)}: must be at least {minimum} seconds, got {value}")
        return float(value)

    def rate(self, key: str, default: float) -> float:
        """A non-negative number per second (0 usually meaning "no limit")."""
        value = self._get(key, (int, float), "a number per second")
        if value is None:
            return default
        if value < 0:
            raise ConfigError(f"{self.key(key)}: must be 0 (no limit) or more, got {value}")
        return float(value)

    def integer(self, key: str, default: int, minimum: int = 1) -> int:
        value = self._get(key, (int,), "an integer")
        if value is None:
            return default
        if value < minimum:
            raise ConfigError(f"{self.key(key)}: must be at least {minimum}, got {value}")
        return int(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self._get(key, (bool,), "true or false")
        return default if value is None else value

    def table(self, key: str) -> _Section | None:
        self.used.add(key)
        if key not in self.data:
            return None
        return _Section(self.data[key], self.key(key))

    def tables(self, key: str) -> list[_Section]:
        self.used.add(key)
        value = self.data.get(key, [])
        if not isinstance(value, list):
            raise ConfigError(f"{self.key(key)}: expected an array of tables ([[{self.key(key)}]])")
        return [_Section(item, f"{self.key(key)}[{i}]") for i, item in enumerate(value)]

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            names = ", ".join(self.key(k) for k in unknown)
            raise ConfigError(f"unknown key(s): {names} (see example-config.toml for valid keys)")


def _tls(section: _Section | None) -> TlsConfig | None:
    if section is None:
        return None
    cert = section.path("cert_file")
    key = section.path("key_file")
    if cert is None or key is None:
        raise ConfigError(f"{section.where}: both cert_file and key_file are required")
    tls = TlsConfig(
        cert_file=cert,
        key_file=key,
        client_ca_file=section.path("client_ca_file"),
        require_client_cert=section.flag("require_client_cert", False),
    )
    section.finish()
    if tls.require_client_cert and tls.client_ca_file is None:
        raise ConfigError(f"{section.where}.require_client_cert needs client_ca_file")
    return tls


def _system(section: _Section) -> SystemConfig:
    system_id = section.text("id", "")
    if not SYSTEM_ID_RE.match(system_id):
        raise ConfigError(
            f"{section.key('id')}: {system_id!r} must be lower-case letters, digits and '-', "
            "starting with a letter"
        )
    slurm_section = section.table("slurm")
    slurm = SlurmConfig()
    if slurm_section is not None:
        adapter = slurm_section.text("adapter", "cli")
        if adapter not in ADAPTERS:
            raise ConfigError(f"{slurm_section.key('adapter')}: must be one of {ADAPTERS}")
        slurm = SlurmConfig(
            adapter=adapter,
            bin_dir=slurm_section.path("bin_dir"),
            command_timeout=slurm_section.seconds("command_timeout", 10.0),
            cluster=slurm_section.text("cluster", ""),
        )
        slurm_section.finish()
    filesystems = []
    for fs in section.tables("filesystems"):
        name = fs.text("name", "")
        path = fs.path("path")
        kind = fs.text("kind", "other")
        if not SYSTEM_ID_RE.match(name):
            raise ConfigError(f"{fs.key('name')}: {name!r} must be lower-case letters, digits, '-'")
        if path is None or not path.is_absolute():
            raise ConfigError(f"{fs.key('path')}: an absolute path is required")
        if kind not in FILESYSTEM_KINDS:
            raise ConfigError(f"{fs.key('kind')}: must be one of {FILESYSTEM_KINDS}")
        quota = fs.text("quota", "auto")
        if quota not in QUOTA_TOOLS:
            raise ConfigError(f"{fs.key('quota')}: must be one of {QUOTA_TOOLS}")
        user_path = fs.text("user_path", "")
        if user_path and not user_path.startswith("/"):
            raise ConfigError(f"{fs.key('user_path')}: an absolute path (with {{user}}) or ''")
        filesystems.append(
            FilesystemConfig(
                name,
                path,
                kind,
                display_name=fs.text("display_name", ""),
                description=fs.text("description", ""),
                user_path=user_path,
                quota=quota,
            )
        )
        fs.finish()
    if len({f.name for f in filesystems}) != len(filesystems):
        raise ConfigError(f"{section.where}.filesystems: names must be unique")
    roots = section.data.get("allowed_roots", [])
    section.used.add("allowed_roots")
    if not isinstance(roots, list) or not all(
        isinstance(r, str) and (r == "~" or r.startswith(("/", "~/"))) and ".." not in r.split("/")
        for r in roots
    ):
        raise ConfigError(
            f"{section.key('allowed_roots')}: a list of absolute paths, '~' or '~/...' "
            "('{user}' is replaced by the caller's name), without '..'"
        )
    system = SystemConfig(
        id=system_id,
        display_name=section.text("display_name", system_id),
        description=section.text("description", ""),
        slurm=slurm,
        filesystems=tuple(filesystems),
        allowed_roots=tuple(roots),
        reservations=_reservations(section.table("reservations")),
    )
    section.finish()
    return system


def _reservations(section: _Section | None) -> ReservationPolicy:
    if section is None:
        return ReservationPolicy()
    accounts = section.data.get("accounts", [])
    section.used.add("accounts")
    if not isinstance(accounts, list) or not all(isinstance(a, str) and a for a in accounts):
        raise ConfigError(f'{section.key("accounts")}: a list of project names, or ["*"]')
    approval = section.text("approval", "auto")
    if approval not in APPROVALS:
        raise ConfigError(f"{section.key('approval')}: must be one of {APPROVALS}")
    hours = section.seconds("max_node_hours", 4.0, minimum=0.01)  # a number, in hours
    policy = ReservationPolicy(
        accounts=tuple(accounts),
        max_nodes=section.integer("max_nodes", 1),
        max_duration=section.seconds("max_duration", 4 * 3600.0, minimum=60),
        max_node_hours=hours,
        max_ahead=section.seconds("max_ahead", 7 * 86400.0, minimum=0),
        approval=approval,
        partition=section.text("partition", ""),
    )
    section.finish()
    return policy


# Asymmetric algorithms only: an HMAC or "none" algorithm is never accepted.
ASYMMETRIC_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)


def _cidrs(section: _Section, key: str) -> tuple[str, ...]:
    value = section.data.get(key, [])
    section.used.add(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{section.key(key)}: expected a list of CIDR strings")
    for cidr in value:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"{section.key(key)}: {cidr!r} is not a CIDR") from None
    return tuple(value)


def _issuer(section: _Section) -> ExternalIssuer:
    issuer = section.text("issuer", "")
    audience = section.text("audience", "")
    if not issuer or not audience:
        raise ConfigError(f"{section.where}: issuer and audience are required")
    algorithms = section.data.get("algorithms", ["RS256", "ES256"])
    section.used.add("algorithms")
    if not isinstance(algorithms, list) or not algorithms:
        raise ConfigError(f"{section.key('algorithms')}: expected a non-empty list")
    for alg in algorithms:
        if alg not in ASYMMETRIC_ALGORITHMS:
            raise ConfigError(
                f"{section.key('algorithms')}: {alg!r} is not allowed; use asymmetric "
                f"algorithms only: {', '.join(ASYMMETRIC_ALGORITHMS)}"
            )
    result = ExternalIssuer(
        issuer=issuer,
        audience=audience,
        jwks_file=section.path("jwks_file"),
        jwks_url=section.text("jwks_url", ""),
        username_claim=section.text("username_claim", "preferred_username"),
        scopes_claim=section.text("scopes_claim", "scope"),
        algorithms=tuple(algorithms),
        allowed_cidrs=_cidrs(section, "allowed_cidrs"),
    )
    if (result.jwks_file is None) == (not result.jwks_url):
        raise ConfigError(f"{section.where}: set exactly one of jwks_file and jwks_url")
    if result.jwks_url and not result.jwks_url.startswith("https://"):
        raise ConfigError(f"{section.key('jwks_url')}: must be an https:// URL")
    section.finish()
    return result


def _auth(section: _Section | None) -> AuthConfig:
    if section is None:
        return AuthConfig()
    d = AuthConfig()
    policy = ClientPolicy()
    if (p := section.table("policy")) is not None:
        policy = ClientPolicy(
            powerful_max_lifetime=p.seconds("powerful_max_lifetime", policy.powerful_max_lifetime),
            powerful_max_cidrs=p.integer("powerful_max_cidrs", policy.powerful_max_cidrs),
            read_only_max_lifetime=p.seconds(
                "read_only_max_lifetime", policy.read_only_max_lifetime
            ),
        )
        p.finish()
    auth = AuthConfig(
        audience=section.text("audience", d.audience),
        issuer=section.text("issuer", d.issuer),
        access_token_ttl=section.seconds("access_token_ttl", d.access_token_ttl, minimum=1),
        max_access_token_ttl=section.seconds("max_access_token_ttl", d.max_access_token_ttl, 1),
        max_assertion_lifetime=section.seconds(
            "max_assertion_lifetime", d.max_assertion_lifetime, 1
        ),
        leeway=section.seconds("leeway", d.leeway, minimum=0),
        policy=policy,
        issuers=tuple(_issuer(i) for i in section.tables("issuers")),
    )
    section.finish()
    if auth.access_token_ttl > auth.max_access_token_ttl:
        raise ConfigError("auth.access_token_ttl must not exceed auth.max_access_token_ttl")
    if any(i.issuer == auth.issuer for i in auth.issuers):
        raise ConfigError("auth.issuers: an external issuer cannot reuse auth.issuer")
    return auth


_ADDRESS_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")


def _peer(section: _Section) -> PeerConfig:
    peer_id = section.text("id", "")
    if not SYSTEM_ID_RE.match(peer_id):
        raise ConfigError(
            f"{section.key('id')}: {peer_id!r} must be lower-case letters, digits and '-', "
            "starting with a letter"
        )
    address = section.text("address", "")
    match = _ADDRESS_RE.match(address)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise ConfigError(f"{section.key('address')}: {address!r} must be HOST:PORT")
    client_id = section.text("client_id", "")
    key_file = section.path("private_key_file")
    if not client_id or key_file is None:
        raise ConfigError(
            f"{section.where}: client_id and private_key_file are required (a client "
            "registered at the peer: hpcgate-server clients add there)"
        )
    system = section.text("system", "local")
    if not SYSTEM_ID_RE.match(system):
        raise ConfigError(f"{section.key('system')}: {system!r} is not a system id")
    users = section.data.get("allowed_users", [])
    section.used.add("allowed_users")
    if not isinstance(users, list) or not all(isinstance(u, str) and u for u in users):
        raise ConfigError(
            f'{section.key("allowed_users")}: a list of local user names, or ["*"] for all'
        )
    peer = PeerConfig(
        id=peer_id,
        address=address,
        client_id=client_id,
        private_key_file=key_file,
        audience=section.text("audience", "hpcgate"),
        system=system,
        tls=section.flag("tls", False),
        ca_file=section.path("ca_file"),
        allowed_users=tuple(users),
        timeout=section.seconds("timeout", 30.0, minimum=0.1),
    )
    section.finish()
    if peer.ca_file is not None and not peer.tls:
        raise ConfigError(f"{section.key('ca_file')}: only used with tls = true")
    return peer


def _state(section: _Section | None) -> StateConfig:
    if section is None:
        return StateConfig()
    state = StateConfig(
        backend=section.text("backend", "sqlite"),
        dsn=section.text("dsn", ""),
        pool_size=section.integer("pool_size", StateConfig.pool_size, minimum=2),
    )
    section.finish()
    if state.backend not in STATE_BACKENDS:
        raise ConfigError(f"state.backend: must be one of {', '.join(STATE_BACKENDS)}")
    if state.clustered and not state.dsn:
        raise ConfigError('state.dsn: required with backend = "postgresql" (a libpq URI)')
    if not state.clustered and state.dsn:
        raise ConfigError('state.dsn: only used with backend = "postgresql"')
    return state


def _class_rates(section: _Section | None) -> ClassRates:
    """One `[rate_limits.per_*]` table: every class's rate (0 = unlimited) and burst."""
    d = ClassRates()
    if section is None:
        return d
    s = section
    rates = ClassRates(
        reads_per_second=s.rate("reads_per_second", d.reads_per_second),
        reads_burst=s.integer("reads_burst", d.reads_burst),
        writes_per_second=s.rate("writes_per_second", d.writes_per_second),
        writes_burst=s.integer("writes_burst", d.writes_burst),
        submits_per_second=s.rate("submits_per_second", d.submits_per_second),
        submits_burst=s.integer("submits_burst", d.submits_burst),
        streams_per_second=s.rate("streams_per_second", d.streams_per_second),
        streams_burst=s.integer("streams_burst", d.streams_burst),
    )
    section.finish()
    return rates


def _rate_limits(section: _Section | None) -> RateLimitsConfig:
    d = RateLimitsConfig()
    if section is None:
        return d
    limits = RateLimitsConfig(
        enabled=section.flag("enabled", d.enabled),
        max_streams=section.integer("max_streams", d.max_streams),
        max_streams_per_user=section.integer("max_streams_per_user", d.max_streams_per_user),
        per_user=_class_rates(section.table("per_user")),
        per_client=_class_rates(section.table("per_client")),
        per_address=_class_rates(section.table("per_address")),
    )
    section.finish()
    return limits


def _privsep(section: _Section | None) -> PrivsepConfig:
    if section is None:
        return PrivsepConfig()
    d = PrivsepConfig()
    deny = section._get("deny_users", (list,), "a list of account names")
    if deny is not None and not all(isinstance(u, str) and u for u in deny):
        raise ConfigError(f"{section.key('deny_users')}: expected a list of account names")
    privsep = PrivsepConfig(
        service_user=section.text("service_user", d.service_user),
        socket=section.path("socket", d.socket) or d.socket,
        use_spawner=section.flag("use_spawner", d.use_spawner),
        min_uid=section.integer("min_uid", d.min_uid),
        deny_users=d.deny_users if deny is None else tuple(deny),
    )
    section.finish()
    if not privsep.socket.is_absolute():
        raise ConfigError(f"{section.key('socket')}: must be an absolute path")
    return privsep


def _check_optional_address(key: str, value: str, empty_means: str) -> None:
    """HOST:PORT (port 0 picks one) or "" (`empty_means`), so a typo fails at start-up."""
    match = _ADDRESS_RE.match(value)
    if value and (match is None or int(match.group(2)) > 65535):
        raise ConfigError(
            f'{key}: {value!r} must be HOST:PORT (port 0 picks one), or "" to {empty_means}'
        )


def _metrics(section: _Section | None) -> MetricsConfig:
    """`[metrics]`: checked like server.listen, so a typo fails at start-up, not later."""
    if section is None:
        return MetricsConfig()
    metrics = MetricsConfig(listen=section.text("listen", MetricsConfig.listen))
    section.finish()
    _check_optional_address("metrics.listen", metrics.listen, "turn the endpoint off")
    return metrics


_ORIGIN_RE = re.compile(r"^https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$")


def _http(section: _Section | None) -> HttpConfig:
    """`[http]`: the listen address checked like server.listen, origins checked as URLs."""
    d = HttpConfig()
    if section is None:
        return d
    origins = section._get("cors_allowed_origins", (list,), "a list of origins")
    http = HttpConfig(
        listen=section.text("listen", d.listen),
        cors_allowed_origins=d.cors_allowed_origins if origins is None else tuple(origins),
        cors_max_age=section.integer("cors_max_age", d.cors_max_age, minimum=0),
    )
    section.finish()
    _check_optional_address("http.listen", http.listen, "serve gRPC only")
    for origin in http.cors_allowed_origins:
        if not isinstance(origin, str) or not (origin == "*" or _ORIGIN_RE.match(origin)):
            raise ConfigError(
                f"http.cors_allowed_origins: {origin!r} must be an origin such as "
                '"https://portal.example.org" (scheme, host, optional port; no path), or "*"'
            )
    return http


def _tasks(section: _Section | None) -> TasksConfig:
    d = TasksConfig()
    if section is None:
        return d
    tasks = TasksConfig(
        max_running_per_user=section.integer("max_running_per_user", d.max_running_per_user),
        max_running_per_system=section.integer("max_running_per_system", d.max_running_per_system),
        max_unfinished_per_user=section.integer(
            "max_unfinished_per_user", d.max_unfinished_per_user
        ),
        progress_interval=section.seconds("progress_interval", d.progress_interval),
        heartbeat_interval=section.seconds("heartbeat_interval", d.heartbeat_interval, 1.0),
        retention=section.seconds("retention", d.retention, minimum=3600.0),
        max_attempts=section.integer("max_attempts", d.max_attempts),
        stop_timeout=section.seconds("stop_timeout", d.stop_timeout, minimum=0.0),
        lease_seconds=section.seconds("lease_seconds", d.lease_seconds, minimum=1.0),
    )
    section.finish()
    return tasks


def _hook_socket(section: _Section, default: Path | None) -> Path | None:
    value = section.text("hook_socket", "-")
    if value == "-":
        return default
    if not value:
        return None
    path = Path(value)
    if not path.is_absolute() or path.suffix != ".sock":
        raise ConfigError(
            f"{section.key('hook_socket')}: must be an absolute path ending in .sock "
            '(Slurm\'s hook sends to every *.sock of its directory), or "" for no hooks'
        )
    return path


def parse(data: dict[str, Any], source: Path | None = None) -> Config:
    """Build a Config from parsed TOML, validating every key."""
    root = _Section(data, "")
    server = ServerConfig()
    if (s := root.table("server")) is not None:
        level = s.text("log_level", "info").lower()
        if level not in ("debug", "info", "warning", "error"):
            raise ConfigError("server.log_level: must be debug, info, warning or error")
        server = ServerConfig(
            listen=s.text("listen", server.listen),
            state_dir=s.path("state_dir") or paths.default_state_dir(),
            shutdown_grace=s.seconds("shutdown_grace", 5.0, minimum=0.0),
            log_level=level,
            tls=_tls(s.table("tls")),
            max_connection_age=s.seconds("max_connection_age", 0.0, minimum=0.0),
            keepalive_time=s.seconds("keepalive_time", server.keepalive_time, minimum=1.0),
            keepalive_timeout=s.seconds("keepalive_timeout", server.keepalive_timeout, minimum=1.0),
            min_client_ping_interval=s.seconds(
                "min_client_ping_interval", server.min_client_ping_interval, minimum=1.0
            ),
            max_pending_requests=s.integer(
                "max_pending_requests", server.max_pending_requests, minimum=1
            ),
            replica_id=s.text("replica_id", ""),
        )
        s.finish()
    if ":" not in server.listen:
        raise ConfigError(f"server.listen: {server.listen!r} must be HOST:PORT")
    state = _state(root.table("state"))
    status = StatusConfig()
    if (s := root.table("status")) is not None:
        status = StatusConfig(
            probe_interval=s.seconds("probe_interval", status.probe_interval, minimum=0.1),
            filesystem_timeout=s.seconds("filesystem_timeout", status.filesystem_timeout),
            heartbeat_interval=s.seconds("heartbeat_interval", status.heartbeat_interval),
            filesystem_full_percent=s.seconds(
                "filesystem_full_percent", status.filesystem_full_percent
            ),
        )
        s.finish()
    limits = LimitsConfig()
    if (s := root.table("limits")) is not None:
        limits = LimitsConfig(
            max_message_bytes=s.integer("max_message_bytes", limits.max_message_bytes, 1024),
            max_metadata_bytes=s.integer("max_metadata_bytes", limits.max_metadata_bytes, 4096),
            max_concurrent_rpcs=s.integer("max_concurrent_rpcs", limits.max_concurrent_rpcs),
        )
        s.finish()
    auth = _auth(root.table("auth"))
    watch = WatchConfig()
    if (s := root.table("watch")) is not None:
        watch = WatchConfig(
            poll_floor=s.seconds("poll_floor", watch.poll_floor, minimum=0.1),
            poll_ceiling=s.seconds("poll_ceiling", watch.poll_ceiling, minimum=0.1),
            history_size=s.integer("history_size", watch.history_size, 100),
            stream_queue_size=s.integer("stream_queue_size", watch.stream_queue_size, 10),
            heartbeat_interval=s.seconds("heartbeat_interval", watch.heartbeat_interval),
            retention=s.seconds("retention", watch.retention),
            accounting_interval=s.seconds(
                "accounting_interval", watch.accounting_interval, minimum=0.1
            ),
            finished_cache_size=s.integer("finished_cache_size", watch.finished_cache_size, 100),
            backfill=s.seconds("backfill", watch.backfill, minimum=0),
            hook_socket=_hook_socket(s, watch.hook_socket),
            hook_group=s.text("hook_group", watch.hook_group),
            hook_min_interval=s.seconds("hook_min_interval", watch.hook_min_interval, 0),
        )
        s.finish()
        if watch.poll_ceiling < watch.poll_floor:
            raise ConfigError("watch.poll_ceiling must not be below watch.poll_floor")
    compute = ComputeConfig()
    if (s := root.table("compute")) is not None:
        compute = ComputeConfig(
            max_script_bytes=s.integer("max_script_bytes", compute.max_script_bytes, 64),
            show_other_users_jobs=s.flag("show_other_users_jobs", False),
            default_list_window=s.seconds("default_list_window", compute.default_list_window),
            submit_timeout=s.seconds("submit_timeout", compute.submit_timeout),
        )
        s.finish()
    files = FilesConfig()
    if (s := root.table("files")) is not None:
        d = files
        files = FilesConfig(
            list_page_size=s.integer("list_page_size", d.list_page_size),
            list_max_page_size=s.integer("list_max_page_size", d.list_max_page_size),
            download_chunk_size=s.integer("download_chunk_size", d.download_chunk_size, 4096),
            max_chunk_size=s.integer("max_chunk_size", d.max_chunk_size, 4096),
            upload_max_bytes=s.integer("upload_max_bytes", d.upload_max_bytes),
            upload_resume_retention=s.seconds(
                "upload_resume_retention", d.upload_resume_retention, 1.0
            ),
            upload_sweep_interval=s.seconds("upload_sweep_interval", d.upload_sweep_interval, 1.0),
            copy_max_bytes=s.integer("copy_max_bytes", d.copy_max_bytes, 0),
            copy_max_files=s.integer("copy_max_files", d.copy_max_files),
            view_default_bytes=s.integer("view_default_bytes", d.view_default_bytes),
            view_max_bytes=s.integer("view_max_bytes", d.view_max_bytes),
            operation_timeout=s.seconds("operation_timeout", d.operation_timeout, 1.0),
        )
        s.finish()
    if files.max_chunk_size + 64 * 1024 > limits.max_message_bytes:
        raise ConfigError(
            "files.max_chunk_size must stay at least 64 KiB below limits.max_message_bytes"
        )
    if files.download_chunk_size > files.max_chunk_size:
        raise ConfigError("files.download_chunk_size must not exceed files.max_chunk_size")
    if files.view_max_bytes + 64 * 1024 > limits.max_message_bytes:
        raise ConfigError("files.view_max_bytes must stay 64 KiB below limits.max_message_bytes")
    commands = CommandsConfig()
    if (s := root.table("commands")) is not None:
        d2 = commands
        commands = CommandsConfig(
            enabled=s.flag("enabled", d2.enabled),
            default_timeout=s.seconds("default_timeout", d2.default_timeout),
            max_timeout=s.seconds("max_timeout", d2.max_timeout),
            default_output_bytes=s.integer("default_output_bytes", d2.default_output_bytes),
            max_output_bytes=s.integer("max_output_bytes", d2.max_output_bytes),
            kill_grace=s.seconds("kill_grace", d2.kill_grace, 0.0),
            max_per_user=s.integer("max_per_user", d2.max_per_user),
        )
        s.finish()
    if commands.default_timeout > commands.max_timeout:
        raise ConfigError("commands.default_timeout must not exceed commands.max_timeout")
    tasks = _tasks(root.table("tasks"))
    storage = StorageConfig()
    if (s := root.table("storage")) is not None:
        storage = StorageConfig(
            quota_timeout=s.seconds("quota_timeout", storage.quota_timeout),
            quota_cache=s.seconds("quota_cache", storage.quota_cache, minimum=0.0),
        )
        s.finish()
    rate_limits = _rate_limits(root.table("rate_limits"))
    metrics = _metrics(root.table("metrics"))
    http = _http(root.table("http"))
    privsep = _privsep(root.table("privsep"))
    systems = tuple(_system(s) for s in root.tables("systems")) or default_systems()
    if len({s.id for s in systems}) != len(systems):
        raise ConfigError("systems: ids must be unique")
    peers = tuple(_peer(p) for p in root.tables("peers"))
    if len({p.id for p in peers}) != len(peers):
        raise ConfigError("peers: ids must be unique")
    if len({p.address for p in peers}) != len(peers):
        raise ConfigError("peers: addresses must be unique")
    root.finish()
    return Config(
        server=server,
        state=state,
        status=status,
        limits=limits,
        auth=auth,
        compute=compute,
        watch=watch,
        files=files,
        commands=commands,
        tasks=tasks,
        storage=storage,
        rate_limits=rate_limits,
        metrics=metrics,
        http=http,
        privsep=privsep,
        systems=systems,
        peers=peers,
        source=source,
    )


def load(path: Path | None = None) -> Config:
    """Load the configuration from `path`, the default location, or built-in defaults."""
    path = path or paths.default_config_path()
    if path is None:
        return parse({})
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    try:
        return parse(data, source=path)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
