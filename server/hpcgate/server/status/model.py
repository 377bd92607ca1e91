"""What the probers find out about a system, independent of protobuf."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from hpcgate.server.state.store import Outage


class State(enum.Enum):
    UNKNOWN = "unknown"  # not probed yet
    ACTIVE = "active"
    DEGRADED = "degraded"
    UNAVAILABLE = "unavailable"
    MAINTENANCE = "maintenance"


class ComponentKind(enum.Enum):
    SCHEDULER = "scheduler"
    PARTITION = "partition"
    NODES = "nodes"
    FILESYSTEM = "filesystem"


@dataclass(frozen=True)
class ControllerDetails:
    responding_hosts: tuple[str, ...]
    latency: float


@dataclass(frozen=True)
class PartitionDetails:
    scheduler_state: str
    total_nodes: int
    unavailable_nodes: int
    total_cpus: int


@dataclass(frozen=True)
class NodesDetails:
    total_nodes: int
    available_nodes: int
    unavailable_nodes: tuple[str, ...]


@dataclass(frozen=True)
class FilesystemDetails:
    path: str
    total_bytes: int
    used_bytes: int
    available_bytes: int
    latency: float
    total_inodes: int = 0
    used_inodes: int = 0
    available_inodes: int = 0
    read_only: bool = False
    fs_type: str = ""


Details = ControllerDetails | PartitionDetails | NodesDetails | FilesystemDetails


@dataclass(frozen=True)
class Component:
    name: str  # resource name, e.g. systems/local/partitions/debug
    kind: ComponentKind
    display_name: str
    state: State
    reason: str
    checked_at: datetime
    details: Details | None = None


@dataclass(frozen=True)
class SystemStatus:
    system_id: str
    display_name: str
    description: str
    state: State
    reason: str
    updated_at: datetime | None
    state_changed_at: datetime | None
    components: tuple[Component, ...] = ()
    active_outages: tuple[Outage, ...] = ()
    scheduler_version: str = ""
    # Increases by one with every change a watcher should hear about.
    generation: int = field(default=0, compare=False)

    def signature(self) -> tuple[object, ...]:
        """What counts as a change for WatchSystems: states and reasons, not figures."""
        return (
            self.state,
            self.reason,
            tuple((c.name, c.state, c.reason) for c in self.components),
            tuple(o.id for o in self.active_outages),
        )
