"""One background prober per system: asks Slurm and the filesystems how they are.

Each round pings the controller, then (only if it answered) reads partitions and nodes,
checks every configured filesystem in parallel, looks up active outages, folds it all
into one SystemStatus and hands it to the hub. A failing probe is data, not an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from hpcgate.server.config import StatusConfig, SystemConfig
from hpcgate.server.slurm import NodeInfo, PartitionInfo, SlurmAdapter, SlurmError
from hpcgate.server.slurm.adapter import ReservationRecord
from hpcgate.server.state.store import Outage, StateStore
from hpcgate.server.status.filesystem_probe import FilesystemProbe, FilesystemReading
from hpcgate.server.status.model import (
    Component,
    ComponentKind,
    ControllerDetails,
    FilesystemDetails,
    NodesDetails,
    PartitionDetails,
    State,
    SystemStatus,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inventory:
    """Partitions, nodes and reservations as the last successful probe read them; what
    ListPartitions, ListNodes, ListReservations and SubmitJob's checks answer from."""

    partitions: list[PartitionInfo]
    nodes: list[NodeInfo]
    reservations: list[ReservationRecord]
    read_at: datetime
    read_monotonic: float


MAX_NAMES_IN_REASON = 10


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES_IN_REASON])
    more = len(names) - MAX_NAMES_IN_REASON
    return shown + (f" and {more} more" if more > 0 else "")


def partition_component(
    system_id: str, part: PartitionInfo, nodes: dict[str, NodeInfo], now: datetime
) -> Component:
    # Membership from the nodes' own partition lists: no hostlist expansion needed.
    members = [n for n in nodes.values() if part.name in n.partitions]
    down = [n.name for n in members if not n.available]
    state, reason = State.ACTIVE, ""
    if part.state != "UP":
        meaning = {
            "DOWN": "jobs may be queued but none start",
            "DRAIN": "no new jobs are accepted",
            "INACTIVE": "no jobs are accepted or started",
        }.get(part.state, "not usable")
        state, reason = State.UNAVAILABLE, f"partition is {part.state}: {meaning}"
    elif members and len(down) == len(members):
        state, reason = State.UNAVAILABLE, f"all {len(members)} nodes are unavailable"
    elif down:
        state = State.DEGRADED
        reason = f"{len(down)} of {len(members)} nodes unavailable: {_names(down)}"
    return Component(
        name=f"systems/{system_id}/partitions/{part.name}",
        kind=ComponentKind.PARTITION,
        display_name=part.name,
        state=state,
        reason=reason,
        checked_at=now,
        details=PartitionDetails(part.state, len(members), len(down), part.total_cpus),
    )


def nodes_component(system_id: str, nodes: list[NodeInfo], now: datetime) -> Component:
    down = [n for n in nodes if not n.available]
    state, reason = State.ACTIVE, ""
    if not nodes:
        state, reason = State.UNAVAILABLE, "the scheduler reports no nodes"
    elif len(down) == len(nodes):
        state, reason = State.UNAVAILABLE, f"all {len(nodes)} nodes are unavailable"
    elif down:
        state = State.DEGRADED
        reason = f"{len(down)} of {len(nodes)} nodes unavailable: " + _names(
            [f"{n.name} ({'+'.join(n.states)}{': ' + n.reason if n.reason else ''})" for n in down]
        )
    return Component(
        name=f"systems/{system_id}/nodes",
        kind=ComponentKind.NODES,
        display_name="nodes",
        state=state,
        reason=reason,
        checked_at=now,
        details=NodesDetails(len(nodes), len(nodes) - len(down), tuple(n.name for n in down)),
    )


def filesystem_component(
    system_id: str,
    name: str,
    path: str,
    reading: FilesystemReading,
    full_percent: float,
    now: datetime,
) -> Component:
    state, reason = State.ACTIVE, ""
    if not reading.ok:
        state, reason = State.UNAVAILABLE, reading.error
    elif reading.total_bytes and 100 * reading.used_bytes / reading.total_bytes >= full_percent:
        state = State.DEGRADED
        reason = f"{100 * reading.used_bytes / reading.total_bytes:.0f}% full"
    return Component(
        name=f"systems/{system_id}/filesystems/{name}",
        kind=ComponentKind.FILESYSTEM,
        display_name=name,
        state=state,
        reason=reason,
        checked_at=now,
        details=FilesystemDetails(
            path,
            reading.total_bytes,
            reading.used_bytes,
            reading.available_bytes,
            reading.latency,
            reading.total_inodes,
            reading.used_inodes,
            reading.available_inodes,
            reading.read_only,
            reading.fs_type,
        )
        if reading.ok
        else None,
    )


def overall_state(
    components: list[Component], controller: Component, outages: list[Outage]
) -> tuple[State, str]:
    """MAINTENANCE beats UNAVAILABLE beats DEGRADED beats ACTIVE."""
    if outages:
        return State.MAINTENANCE, "planned outage in progress: " + "; ".join(
            o.description for o in outages
        )
    if controller.state is not State.ACTIVE:
        return State.UNAVAILABLE, controller.reason
    troubled = [c for c in components if c.state is not State.ACTIVE]
    if troubled:
        return State.DEGRADED, "; ".join(f"{c.display_name}: {c.reason}" for c in troubled)
    return State.ACTIVE, ""


class SystemProber:
    """Probes one system on an interval and reports every result to `publish`."""

    def __init__(
        self,
        system: SystemConfig,
        adapter: SlurmAdapter,
        store: StateStore,
        settings: StatusConfig,
        publish: Callable[[SystemStatus], None],
    ) -> None:
        self.system = system
        self.adapter = adapter
        self.store = store
        self.settings = settings
        self.publish = publish
        self.filesystems = [
            (fs.name, FilesystemProbe(str(fs.path), settings.filesystem_timeout))
            for fs in system.filesystems
        ]
        self._last_partitions: list[PartitionInfo] = []
        self.inventory: Inventory | None = None
        self._version = ""

    async def probe_once(self) -> SystemStatus:
        sid = self.system.id
        fs_task = asyncio.gather(*(probe.check() for _, probe in self.filesystems))
        outages_task = asyncio.create_task(self._active_outages())
        ping = await self.adapter.ping()
        now = datetime.now(UTC)
        controller = Component(
            name=f"systems/{sid}/controller",
            kind=ComponentKind.SCHEDULER,
            display_name="controller",
            state=State.ACTIVE if ping.up else State.UNAVAILABLE,
            reason="" if ping.up else f"scheduler controller unreachable: {ping.detail}",
            checked_at=now,
            details=ControllerDetails(ping.responding_hosts, ping.latency),
        )
        components = [controller] + await self._scheduler_components(ping.up, now)
        for (name, probe), reading in zip(self.filesystems, await fs_task, strict=True):
            components.append(
                filesystem_component(
                    sid, name, probe.path, reading, self.settings.filesystem_full_percent, now
                )
            )
        outages = await outages_task
        state, reason = overall_state(components, controller, outages)
        return SystemStatus(
            system_id=sid,
            display_name=self.system.display_name,
            description=self.system.description,
            state=state,
            reason=reason,
            updated_at=now,
            state_changed_at=now,
            components=tuple(components),
            active_outages=tuple(outages),
            scheduler_version=f"slurm {self._version}" if self._version else "",
        )

    async def _scheduler_components(self, controller_up: bool, now: datetime) -> list[Component]:
        sid = self.system.id
        if controller_up:
            try:
                if not self._version:
                    self._version = await self.adapter.version()
                partitions, nodes, reservations = await asyncio.gather(
                    self.adapter.partitions(), self.adapter.nodes(), self._reservations()
                )
            except SlurmError as e:
                reason = f"could not read partitions and nodes: {e}"
            else:
                self._last_partitions = partitions
                self.inventory = Inventory(partitions, nodes, reservations, now, time.monotonic())
                by_name = {n.name: n for n in nodes}
                return [partition_component(sid, p, by_name, now) for p in partitions] + [
                    nodes_component(sid, nodes, now)
                ]
        else:
            reason = "unknown while the scheduler controller is unreachable"
        # Keep the component list stable for dashboards: same names, state unknown.
        unknown = [
            Component(
                f"systems/{sid}/partitions/{p.name}",
                ComponentKind.PARTITION,
                p.name,
                State.UNAVAILABLE,
                reason,
                now,
            )
            for p in self._last_partitions
        ]
        unknown.append(
            Component(
                f"systems/{sid}/nodes", ComponentKind.NODES, "nodes", State.UNAVAILABLE, reason, now
            )
        )
        return unknown

    async def _reservations(self) -> list[ReservationRecord]:
        """Reservations, or the last ones read if Slurm fails to list them this time."""
        try:
            return await self.adapter.reservations()
        except SlurmError as e:
            log.warning("reading reservations of %s failed: %s", self.system.id, e)
            return self.inventory.reservations if self.inventory is not None else []

    def fresh_inventory(self) -> Inventory | None:
        """The last inventory if it is at most two probe intervals old, else None."""
        inventory = self.inventory
        if inventory is None:
            return None
        if time.monotonic() - inventory.read_monotonic > 2 * self.settings.probe_interval:
            return None
        return inventory

    async def _active_outages(self) -> list[Outage]:
        now = datetime.now(UTC)
        outages = await asyncio.to_thread(self.store.list_outages, self.system.id)
        return [o for o in outages if o.status(now) == "active"]

    async def run(self) -> None:
        """Probe forever; a probe that raises is logged and reported, never fatal."""
        while True:
            try:
                status = await self.probe_once()
            except Exception as e:
                log.exception("probe of system %s failed", self.system.id)
                status = self._failed_status(e)
            self.publish(status)
            await asyncio.sleep(self.settings.probe_interval)

    def _failed_status(self, error: Exception) -> SystemStatus:
        now = datetime.now(UTC)
        return SystemStatus(
            system_id=self.system.id,
            display_name=self.system.display_name,
            description=self.system.description,
            state=State.UNAVAILABLE,
            reason=f"the status probe itself failed: {type(error).__name__}: {error}",
            updated_at=now,
            state_changed_at=now,
        )
