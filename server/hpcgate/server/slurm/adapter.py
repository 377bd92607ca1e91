"""The interface every Slurm adapter implements, and the plain data it returns.

The rest of the server only sees these types; which adapter produced them (command
line tools or in-process pyslurm) is a configuration detail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Protocol

from hpcgate.server.slurm.job_control import JobControl
from hpcgate.server.slurm.membership import MembershipControl

# Node states in which a node cannot take new work, as Slurm spells them (upper case).
UNAVAILABLE_NODE_STATES = frozenset(
    {
        "DOWN",
        "DRAIN",
        "DRAINED",
        "DRAINING",
        "FAIL",
        "FAILING",
        "NOT_RESPONDING",
        "NO_RESPOND",
        "FUTURE",
        "UNKNOWN",
        "INVAL",
        "MAINTENANCE",
        "REBOOT_ISSUED",
        "POWERED_DOWN",
    }
)


class SlurmError(Exception):
    """A Slurm command or call failed; the message is Slurm's own words."""


class SlurmUnavailable(SlurmError):
    """The controller (or slurmdbd) did not answer in time."""


@dataclass(frozen=True)
class ControllerPing:
    """Result of pinging the controllers."""

    up: bool
    responding_hosts: tuple[str, ...]
    detail: str
    latency: float


@dataclass(frozen=True)
class NodeInfo:
    name: str
    # Base state plus flags, upper case, e.g. ("IDLE",) or ("IDLE", "DRAIN").
    states: tuple[str, ...]
    cpus: int
    alloc_cpus: int
    real_memory_mb: int
    partitions: tuple[str, ...]
    reason: str = ""
    gres: str = ""
    # Details for ComputeService.ListNodes; defaults where a Slurm version does not say.
    alloc_memory_mb: int = 0
    free_memory_mb: int = 0  # as the node's OS reports it; 0 = not reported
    cpu_load: float | None = None  # one-minute load average
    gres_used: str = ""
    features: tuple[str, ...] = ()
    active_features: tuple[str, ...] = ()
    sockets: int = 0
    cores_per_socket: int = 0
    threads_per_core: int = 0
    architecture: str = ""
    boot_time: datetime | None = None
    reason_time: datetime | None = None
    reason_user: str = ""

    @property
    def available(self) -> bool:
        return not (set(self.states) & UNAVAILABLE_NODE_STATES)


@dataclass(frozen=True)
class PartitionInfo:
    name: str
    state: str  # UP, DOWN, DRAIN or INACTIVE
    node_list: str  # hostlist expression, e.g. node[01-16]
    total_nodes: int
    total_cpus: int
    is_default: bool = False
    max_time: str = ""
    extra: dict[str, str] = field(default_factory=dict)


# --- Jobs (squeue, sacct) and reservations ---

# Base job states after which a job does not change any more (unless requeued).
JOB_FINISHED_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "NODE_FAIL",
        "PREEMPTED",
        "OUT_OF_MEMORY",
        "BOOT_FAIL",
        "DEADLINE",
        "REVOKED",
    }
)


@dataclass(frozen=True)
class JobStepRecord:
    """One step of a job, from accounting: `batch`, `extern`, `interactive`, `0`, `1`, ..."""

    step_id: str
    name: str = ""
    state: str = ""  # base state word, upper case, as JobRecord.state
    raw_state: str = ""
    exit_code: int = 0
    signal: int = 0
    start_time: datetime | None = None
    end_time: datetime | None = None
    elapsed_seconds: int | None = None
    node_count: int = 0
    node_list: str = ""
    ntasks: int = 0
    allocated_tres: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class JobRecord:
    """A job as the queue (squeue), accounting (sacct) or both (`merge_job`) describe it.

    `job_id` is Slurm's own id of this record in decimal (an array task's own id). Times
    are aware datetimes, None when unset; durations are seconds, None when unknown or
    unlimited. Memory is in MiB; TRES maps use Slurm's TRES names (`mem` in MiB).
    `state` is one upper-case word: a base state (PENDING, RUNNING, COMPLETED, FAILED,
    CANCELLED, TIMEOUT, OUT_OF_MEMORY, ...) or COMPLETING, CONFIGURING, REQUEUED, the
    way `squeue -o %T` summarises a job; `raw_state` keeps Slurm's words.
    """

    job_id: str
    source: str = "queue"  # "queue", "accounting" or "merged"
    array_job_id: int = 0
    array_task_id: int | None = None
    array_task_spec: str = ""  # pending array record: the tasks it stands for, e.g. 0-9%2
    job_name: str = ""
    user: str = ""
    uid: int | None = None
    account: str = ""
    partition: str = ""
    qos: str = ""
    state: str = "UNKNOWN"
    raw_state: str = ""
    state_flags: tuple[str, ...] = ()
    reason: str = ""  # "" for Slurm's `None`
    exit_code: int = 0
    signal: int = 0
    submit_time: datetime | None = None
    eligible_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    estimated_start_time: datetime | None = None
    elapsed_seconds: int | None = None
    time_limit_seconds: int | None = None
    node_count: int = 0
    node_list: str = ""
    cpus: int = 0
    ntasks: int = 0
    cpus_per_task: int = 0
    memory_per_node_mib: int = 0
    memory_per_cpu_mib: int = 0
    requested_tres: dict[str, int] = field(default_factory=dict)
    allocated_tres: dict[str, int] = field(default_factory=dict)
    gres: str = ""
    working_directory: str = ""
    stdout_path: str = ""
    stderr_path: str = ""
    dependency: str = ""
    reservation: str = ""
    constraints: str = ""
    priority: int = 0
    batch_host: str = ""
    restart_count: int = 0
    comment: str = ""
    steps: tuple[JobStepRecord, ...] = ()

    @property
    def finished(self) -> bool:
        return self.state in JOB_FINISHED_STATES


# Fields accounting knows exactly once it has recorded the job's end.
_ENDED_FIELDS = ("end_time", "elapsed_seconds")
# Live fields: the queue's value stands even when empty (accounting's may be stale).
_LIVE_FIELDS = frozenset(
    {
        "job_id",
        "source",
        "steps",
        "state",
        "raw_state",
        "state_flags",
        "reason",
        "estimated_start_time",
        "start_time",
        "end_time",
        "elapsed_seconds",
        "exit_code",
        "signal",
        "priority",
        "restart_count",
    }
)


def merge_job(queue: JobRecord | None, accounting: JobRecord | None) -> JobRecord:
    """One record from the queue's and accounting's views of the same job.

    The queue is the controller's live state, so it wins for state, reason, times and
    the request; accounting adds the steps, fills what the queue leaves empty (e.g. the
    allocated TRES), and supplies the exit status, end time and elapsed time once it has
    recorded the job's end. With only one of the two, that one is returned.
    """
    if queue is None:
        if accounting is None:
            raise ValueError("merge_job needs at least one record")
        return accounting
    if accounting is None:
        return queue
    changes: dict[str, object] = {"source": "merged", "steps": accounting.steps or queue.steps}
    for f in fields(JobRecord):
        if f.name in _LIVE_FIELDS:
            continue
        mine, theirs = getattr(queue, f.name), getattr(accounting, f.name)
        if mine in (None, "", 0, (), {}) and theirs not in (None, "", 0, (), {}):
            changes[f.name] = theirs
    if queue.finished and accounting.finished:
        for name in _ENDED_FIELDS:
            value = getattr(accounting, name)
            if value is not None:
                changes[name] = value
        if (queue.exit_code, queue.signal) == (0, 0):
            changes["exit_code"], changes["signal"] = accounting.exit_code, accounting.signal
    return replace(queue, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ReservationRecord:
    """An advance reservation as `scontrol show reservation` describes it."""

    name: str
    state: str  # ACTIVE or INACTIVE
    start_time: datetime | None
    end_time: datetime | None
    duration_seconds: int | None = None
    node_list: str = ""
    node_count: int = 0
    core_count: int = 0
    users: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    partition: str = ""
    flags: tuple[str, ...] = ()
    features: str = ""
    tres: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ReservationOrder:
    """What to reserve: `node_count` nodes (of `partition`, "" = any) from `start` (None:
    now) for `minutes`, usable by `accounts` and, when given, only these `users`."""

    name: str
    node_count: int
    minutes: int
    accounts: tuple[str, ...]
    users: tuple[str, ...] = ()
    partition: str = ""
    start: datetime | None = None


# --- Accounting (slurmdbd): associations, accounts, fair share, usage ---


@dataclass(frozen=True)
class AssociationInfo:
    """One user association (sacctmgr): user, account, optional partition, and limits.

    TRES maps use Slurm's TRES names as keys with integer values, `mem` in MiB; a limit
    that is not set is None (scalars) or absent from the map.
    """

    user: str
    account: str
    cluster: str = ""
    partition: str = ""  # "" = all partitions
    qos: tuple[str, ...] = ()
    default_qos: str = ""
    group_tres: dict[str, int] = field(default_factory=dict)
    group_tres_minutes: dict[str, int] = field(default_factory=dict)
    max_tres_per_job: dict[str, int] = field(default_factory=dict)
    max_tres_per_node: dict[str, int] = field(default_factory=dict)
    max_wall_seconds: int | None = None
    max_jobs: int | None = None
    max_submit_jobs: int | None = None
    group_jobs: int | None = None
    group_submit_jobs: int | None = None


@dataclass(frozen=True)
class UserAssociations:
    """A Slurm user's record: the default account and every association of the user."""

    user: str
    default_account: str  # "" when the user has no Slurm user record
    associations: tuple[AssociationInfo, ...]


@dataclass(frozen=True)
class AccountInfo:
    """A Slurm account (a project) as sacctmgr describes it."""

    name: str
    description: str = ""
    organization: str = ""
    parent: str = ""  # "" for the root account
    cluster: str = ""
    coordinators: tuple[str, ...] = ()  # users who may manage its members
    group_tres_minutes: dict[str, int] = field(default_factory=dict)  # its allocation


@dataclass(frozen=True)
class FairShareInfo:
    """One user association's fair-share standing (sshare).

    The normalised figures are None when Slurm does not compute them, which is the
    case with PriorityType=priority/basic (no fair share at the site).
    """

    account: str
    user: str
    partition: str
    raw_shares: int  # 0 when the association takes its parent's shares (`parent`)
    normalized_shares: float | None
    raw_usage: int
    effective_usage: float | None
    fairshare_factor: float | None


@dataclass(frozen=True)
class UsageRecord:
    """TRES-seconds consumed in a period by an account (user "") or one user in it."""

    account: str
    user: str
    tres: str  # `cpu`, `gres/gpu`, ...
    tres_seconds: int


class SlurmAdapter(Protocol):
    """Async access to one Slurm cluster. Implementations never block the event loop.

    `jobs` builds the command lines of submission and cancellation (and reads their
    answers); those commands run as the caller, so the compute domain runs them."""

    jobs: JobControl
    members: MembershipControl

    async def ping(self) -> ControllerPing:
        """Ping the controller(s). Never raises for an unreachable controller: up=False."""
        ...

    async def version(self) -> str:
        """The Slurm version, e.g. `22.05.8`."""
        ...

    async def partitions(self) -> list[PartitionInfo]:
        """All partitions. Raises SlurmUnavailable when the controller does not answer."""
        ...

    async def nodes(self) -> list[NodeInfo]:
        """All nodes. Raises SlurmUnavailable when the controller does not answer."""
        ...

    async def user_default_account(self, user: str) -> str:
        """The user's default account; "" when the user has no Slurm user record.

        Raises SlurmUnavailable when slurmdbd does not answer.
        """
        ...

    async def user_associations(self, user: str) -> UserAssociations:
        """The user's default account and associations on this cluster (one query).

        Raises SlurmUnavailable when slurmdbd does not answer.
        """
        ...

    async def accounts(self, names: Sequence[str]) -> list[AccountInfo]:
        """The named accounts on this cluster (one query); unknown names are left out.

        Raises SlurmUnavailable when slurmdbd does not answer.
        """
        ...

    async def project_members(self, account: str) -> UserAssociations:
        """Every user association of `account` (one query; `user` of the result is "")."""
        ...

    async def create_reservation(self, request: ReservationOrder) -> ReservationRecord:
        """Create an advance reservation (`scontrol create reservation`, with the
        server's privileges) and return it as Slurm has it. SlurmError with Slurm's
        words when it refuses (e.g. the nodes are not free in that window)."""
        ...

    async def delete_reservation(self, name: str) -> None:
        """Delete a reservation (`scontrol delete`); a reservation that is gone is fine."""
        ...

    async def tres_used_minutes(self, accounts: Sequence[str]) -> dict[str, dict[str, int]]:
        """Each account's decayed TRES-minutes used (`sshare` GrpTRESRaw of the account's
        own row): what `GrpTRESMins` limits count against."""
        ...

    async def fair_share(self, user: str) -> list[FairShareInfo]:
        """The user's fair-share standing in each association (one query, to slurmctld).

        Raises SlurmUnavailable when the controller does not answer.
        """
        ...

    async def usage(
        self, accounts: Sequence[str], start: datetime, end: datetime
    ) -> list[UsageRecord]:
        """CPU and GPU TRES-seconds of the accounts and of each of their users between
        `start` and `end` (whole hours: Slurm's hourly usage roll-up), one query.

        Accounts without usage in the period have no records. Raises SlurmUnavailable
        when slurmdbd does not answer.
        """
        ...

    async def queue_jobs(
        self, job_ids: Sequence[str] = (), users: Sequence[str] = ()
    ) -> list[JobRecord]:
        """Jobs the controller holds (pending, running, and ended within MinJobAge), one
        query, optionally only the given job ids (`123`, `123_4`) or users.

        Unknown job ids are left out (never an error). Raises SlurmUnavailable when the
        controller does not answer.
        """
        ...

    async def accounting_jobs(
        self,
        job_ids: Sequence[str] = (),
        users: Sequence[str] = (),
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        steps: bool = True,
    ) -> list[JobRecord]:
        """Jobs from accounting (one query), with their steps unless `steps` is False.

        With `job_ids` and no `start`, jobs of any age; otherwise jobs eligible or running
        between `start` (default: midnight today, Slurm's default) and `end` (default:
        now), aware datetimes; an empty window gives [] without a query. All users
        unless `users` is given. Raises SlurmUnavailable when slurmdbd does not answer.
        """
        ...

    async def reservations(self) -> list[ReservationRecord]:
        """All advance reservations (one query). Raises SlurmUnavailable when the
        controller does not answer.
        """
        ...
