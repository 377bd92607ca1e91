"""The interface every Slurm adapter implements, and the plain data it returns.

The rest of the server only sees these types; which adapter produced them (command
line tools or in-process pyslurm) is a configuration detail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

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
    """Async access to one Slurm cluster. Implementations never block the event loop."""

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
