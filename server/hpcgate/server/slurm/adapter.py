"""The interface every Slurm adapter implements, and the plain data it returns.

The rest of the server only sees these types; which adapter produced them (command
line tools or in-process pyslurm) is a configuration detail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
