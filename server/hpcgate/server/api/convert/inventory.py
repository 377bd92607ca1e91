"""Partitions, nodes and reservations as ComputeService describes them.

The servicer answers from the status prober's inventory (`*_from` functions, no Slurm
call; `updated_at` is when the probe read it); the `list_*` functions read Slurm live,
for when no recent inventory exists (at most three concurrent calls).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from datetime import UTC, datetime

from hpcgate.server.api.timeconv import duration, timestamp
from hpcgate.server.slurm.adapter import (
    JobRecord,
    NodeInfo,
    PartitionInfo,
    ReservationRecord,
    SlurmAdapter,
)
from hpcgate.server.slurm.parsing import expand_hostlist, parse_wall_seconds
from hpcgate.v1 import compute_pb2

_PARTITION_STATES = {
    "UP": compute_pb2.PARTITION_STATE_UP,
    "DOWN": compute_pb2.PARTITION_STATE_DOWN,
    "DRAIN": compute_pb2.PARTITION_STATE_DRAIN,
    "INACTIVE": compute_pb2.PARTITION_STATE_INACTIVE,
}
_BASE_NODE_STATES = {
    "IDLE": compute_pb2.NODE_STATE_IDLE,
    "MIXED": compute_pb2.NODE_STATE_MIXED,
    "ALLOCATED": compute_pb2.NODE_STATE_ALLOCATED,
    "COMPLETING": compute_pb2.NODE_STATE_COMPLETING,
    "DOWN": compute_pb2.NODE_STATE_DOWN,
    "DRAINED": compute_pb2.NODE_STATE_DRAINED,
    "DRAINING": compute_pb2.NODE_STATE_DRAINING,
    "FAIL": compute_pb2.NODE_STATE_FAIL,
    "FAILING": compute_pb2.NODE_STATE_FAIL,
    "FUTURE": compute_pb2.NODE_STATE_FUTURE,
    "MAINT": compute_pb2.NODE_STATE_MAINTENANCE,
    "MAINTENANCE": compute_pb2.NODE_STATE_MAINTENANCE,
    "UNKNOWN": compute_pb2.NODE_STATE_UNKNOWN,
}
_BUSY = frozenset({"ALLOCATED", "MIXED", "COMPLETING"})
_POWERED_DOWN = frozenset({"POWERED_DOWN", "POWER_DOWN", "POWERING_DOWN"})
_POWERING_UP = frozenset({"POWERING_UP", "POWER_UP", "REBOOT_ISSUED"})
_NO_VALUE = frozenset({"", "NONE", "(NULL)", "N/A", "ALL", "UNLIMITED"})
# A comma between GRES entries, not one inside `(S:0,1)` or `(IDX:0,2)`.
_GRES_SEPARATOR = re.compile(r",(?![^(]*\))")


def node_state(states: Iterable[str]) -> compute_pb2.NodeState:
    """The one-word summary `sinfo -o %T` gives for a node's base state and flags."""
    words = [s.upper() for s in states]
    base = words[0] if words else "UNKNOWN"
    flags = set(words[1:])
    busy = base in _BUSY or "COMPLETING" in flags
    if "MAINT" in flags or "MAINTENANCE" in flags:
        return compute_pb2.NODE_STATE_MAINTENANCE
    if "DRAIN" in flags:
        return compute_pb2.NODE_STATE_DRAINING if busy else compute_pb2.NODE_STATE_DRAINED
    if base == "DOWN":
        return compute_pb2.NODE_STATE_DOWN
    if "FAIL" in flags:
        return compute_pb2.NODE_STATE_FAIL
    if flags & _POWERED_DOWN:
        return compute_pb2.NODE_STATE_POWERED_DOWN
    if flags & _POWERING_UP:
        return compute_pb2.NODE_STATE_POWERING_UP
    if "COMPLETING" in flags:
        return compute_pb2.NODE_STATE_COMPLETING
    if base == "IDLE" and "RESERVED" in flags:
        return compute_pb2.NODE_STATE_RESERVED
    return _BASE_NODE_STATES.get(base, compute_pb2.NODE_STATE_OTHER)


def _seconds(value: str) -> int | None:
    return None if value.strip().upper() in _NO_VALUE else parse_wall_seconds(value)


def _number(value: str) -> int:
    value = value.strip()
    return int(value) if value.isdigit() else 0


def _list(value: str) -> list[str]:
    return [] if value.strip().upper() in _NO_VALUE else [v for v in value.split(",") if v]


def _gres_entries(nodes: Iterable[NodeInfo]) -> list[str]:
    entries: list[str] = []
    for node in nodes:
        for entry in _GRES_SEPARATOR.split(node.gres):
            entry = entry.strip()
            if entry and entry != "(null)" and entry not in entries:
                entries.append(entry)
    return entries


def _members(partition: PartitionInfo, nodes: list[NodeInfo]) -> list[NodeInfo]:
    members = [n for n in nodes if partition.name in n.partitions]
    if members or not partition.node_list:
        return members
    names = set(expand_hostlist(partition.node_list))
    return [n for n in nodes if n.name in names]


def partition_to_proto(
    partition: PartitionInfo,
    nodes: list[NodeInfo],
    jobs: list[JobRecord],
    system_id: str,
    now: datetime,
) -> compute_pb2.Partition:
    """One partition with figures from its nodes and the queue's jobs."""
    kv = partition.extra
    # Every node counts once: allocated if it runs a job (even while draining), else
    # idle or unavailable; CPUs likewise (allocated, free and usable, or unusable).
    members = _members(partition, nodes)
    usable = [n for n in members if n.available]
    unusable = [n for n in members if not n.available]
    max_time = _seconds(kv.get("MaxTime", partition.max_time))
    default_time = _seconds(kv.get("DefaultTime", ""))
    in_partition = [j for j in jobs if partition.name in j.partition.split(",")]
    return compute_pb2.Partition(
        name=f"systems/{system_id}/partitions/{partition.name}",
        partition=partition.name,
        system=system_id,
        state=_PARTITION_STATES.get(partition.state, compute_pb2.PARTITION_STATE_UNSPECIFIED),
        is_default=partition.is_default,
        total_nodes=partition.total_nodes or len(members),
        idle_nodes=sum(1 for n in usable if n.alloc_cpus == 0),
        allocated_nodes=sum(1 for n in members if n.alloc_cpus > 0),
        unavailable_nodes=sum(1 for n in unusable if n.alloc_cpus == 0),
        total_cpus=partition.total_cpus or sum(n.cpus for n in members),
        idle_cpus=sum(max(0, n.cpus - n.alloc_cpus) for n in usable),
        allocated_cpus=sum(n.alloc_cpus for n in members),
        unavailable_cpus=sum(max(0, n.cpus - n.alloc_cpus) for n in unusable),
        max_time=duration(max_time),
        default_time=duration(default_time if default_time is not None else max_time),
        max_nodes=_number(kv.get("MaxNodes", "")),
        min_nodes=_number(kv.get("MinNodes", "")),
        max_cpus_per_node=_number(kv.get("MaxCPUsPerNode", "")),
        default_memory_per_cpu_mib=_number(kv.get("DefMemPerCPU", "")),
        default_memory_per_node_mib=_number(kv.get("DefMemPerNode", "")),
        max_memory_per_cpu_mib=_number(kv.get("MaxMemPerCPU", "")),
        max_memory_per_node_mib=_number(kv.get("MaxMemPerNode", "")),
        allowed_accounts=_list(kv.get("AllowAccounts", "")),
        denied_accounts=_list(kv.get("DenyAccounts", "")),
        allowed_qos=_list(kv.get("AllowQos", "")),
        denied_qos=_list(kv.get("DenyQos", "")),
        allowed_groups=_list(kv.get("AllowGroups", "")),
        qos="" if kv.get("QoS", "").upper() in _NO_VALUE else kv["QoS"],
        priority_tier=_number(kv.get("PriorityTier", "")),
        node_list=partition.node_list,
        gres=_gres_entries(members),
        pending_jobs=sum(1 for j in in_partition if j.state == "PENDING"),
        running_jobs=sum(1 for j in in_partition if j.state == "RUNNING"),
        updated_at=timestamp(now),
    )


async def list_partitions(adapter: SlurmAdapter, system_id: str) -> list[compute_pb2.Partition]:
    """Every partition, in the scheduler's order (three concurrent calls)."""
    partitions, nodes, jobs = await asyncio.gather(
        adapter.partitions(), adapter.nodes(), adapter.queue_jobs()
    )
    return partitions_from(partitions, nodes, jobs, system_id, datetime.now(UTC))


def partitions_from(
    partitions: list[PartitionInfo],
    nodes: list[NodeInfo],
    jobs: list[JobRecord],
    system_id: str,
    read_at: datetime,
) -> list[compute_pb2.Partition]:
    return [partition_to_proto(p, nodes, jobs, system_id, read_at) for p in partitions]


def node_to_proto(node: NodeInfo, system_id: str, now: datetime) -> compute_pb2.Node:
    return compute_pb2.Node(
        name=f"systems/{system_id}/nodes/{node.name}",
        node=node.name,
        system=system_id,
        state=node_state(node.states),
        state_flags=list(node.states[1:]),
        raw_state="+".join(node.states),
        reason=node.reason,
        reason_time=timestamp(node.reason_time) if node.reason else None,
        reason_user=node.reason_user if node.reason else "",
        cpus=node.cpus,
        allocated_cpus=node.alloc_cpus,
        idle_cpus=max(0, node.cpus - node.alloc_cpus) if node.available else 0,
        cpu_load=node.cpu_load or 0.0,
        real_memory_mib=node.real_memory_mb,
        allocated_memory_mib=node.alloc_memory_mb,
        free_memory_mib=node.free_memory_mb,
        gres="" if node.gres == "(null)" else node.gres,
        gres_used="" if node.gres_used == "(null)" else node.gres_used,
        partitions=list(node.partitions),
        features=list(node.features),
        active_features=list(node.active_features),
        sockets=node.sockets,
        cores_per_socket=node.cores_per_socket,
        threads_per_core=node.threads_per_core,
        architecture=node.architecture,
        boot_time=timestamp(node.boot_time),
        updated_at=timestamp(now),
    )


async def list_nodes(adapter: SlurmAdapter, system_id: str) -> list[compute_pb2.Node]:
    """Every node, sorted by name (one call)."""
    return nodes_from(await adapter.nodes(), system_id, datetime.now(UTC))


def nodes_from(nodes: list[NodeInfo], system_id: str, read_at: datetime) -> list[compute_pb2.Node]:
    return [node_to_proto(n, system_id, read_at) for n in sorted(nodes, key=lambda n: n.name)]


def _whole_nodes(reservation: ReservationRecord, nodes: list[NodeInfo]) -> bool:
    """Whether the reserved cores are all the cores of the reserved nodes."""
    if reservation.node_list.upper() == "ALL":
        reserved = nodes
    else:
        names = set(expand_hostlist(reservation.node_list))
        reserved = [n for n in nodes if n.name in names]
    if not reserved or len(reserved) < reservation.node_count:
        return False
    cores = sum(n.sockets * n.cores_per_socket or n.cpus for n in reserved)
    return reservation.core_count >= cores


def reservation_to_proto(
    reservation: ReservationRecord, nodes: list[NodeInfo], system_id: str, now: datetime
) -> compute_pb2.Reservation:
    r = reservation
    if r.state in ("ACTIVE", "INACTIVE"):
        active = r.state == "ACTIVE"
    else:
        active = r.start_time is not None and r.start_time <= now
        active = active and (r.end_time is None or now < r.end_time)
    length = r.duration_seconds
    if length is None and r.start_time is not None and r.end_time is not None:
        length = int((r.end_time - r.start_time).total_seconds())
    return compute_pb2.Reservation(
        name=f"systems/{system_id}/reservations/{r.name}",
        reservation=r.name,
        system=system_id,
        state=(
            compute_pb2.RESERVATION_STATE_ACTIVE
            if active
            else compute_pb2.RESERVATION_STATE_INACTIVE
        ),
        start_time=timestamp(r.start_time),
        end_time=timestamp(r.end_time),
        duration=duration(length if r.end_time is not None else None),
        node_list=r.node_list,
        node_count=r.node_count,
        core_count=0 if _whole_nodes(r, nodes) else r.core_count,
        users=list(r.users),
        accounts=list(r.accounts),
        groups=list(r.groups),
        partition=r.partition,
        flags=list(r.flags),
        features=r.features,
        tres={k: v for k, v in r.tres.items() if v >= 0},
    )


async def list_reservations(adapter: SlurmAdapter, system_id: str) -> list[compute_pb2.Reservation]:
    """Every reservation, by start time (two concurrent calls: the nodes tell whether a
    reservation holds whole nodes or some cores)."""
    reservations, nodes = await asyncio.gather(adapter.reservations(), adapter.nodes())
    return reservations_from(reservations, nodes, system_id, datetime.now(UTC))


def reservations_from(
    reservations: list[ReservationRecord], nodes: list[NodeInfo], system_id: str, now: datetime
) -> list[compute_pb2.Reservation]:
    far = datetime.max.replace(tzinfo=UTC)
    ordered = sorted(reservations, key=lambda r: (r.start_time or far, r.name))
    return [reservation_to_proto(r, nodes, system_id, now) for r in ordered]
