"""Parsers for Slurm's command output, tolerant of the formats of Slurm 22.05 and later.

Kept free of I/O so they can be unit-tested on recorded output.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hpcgate.server.slurm.adapter import ControllerPing, NodeInfo, PartitionInfo, SlurmError

_KEY_VALUE = re.compile(r"(\w+)=(.*?)(?=\s+\w+=|\s*$)")
_PING_LINE = re.compile(r"at\s+(\S+)\s+is\s+(UP|DOWN)", re.IGNORECASE)


def parse_key_values(line: str) -> dict[str, str]:
    """`A=1 B=x y C=3` (one `scontrol -o show ...` record) -> {'A': '1', 'B': 'x y', 'C': '3'}."""
    return {m.group(1): m.group(2) for m in _KEY_VALUE.finditer(line.strip())}


def parse_ping(output: str, latency: float) -> ControllerPing:
    """`scontrol ping` output, e.g. `Slurmctld(primary) at vm is UP`."""
    up_hosts, down = [], []
    for line in output.splitlines():
        match = _PING_LINE.search(line)
        if match is None:
            continue
        if match.group(2).upper() == "UP":
            up_hosts.append(match.group(1))
        else:
            down.append(line.strip())
    detail = "; ".join(down) if down else ("" if up_hosts else output.strip()[:300])
    return ControllerPing(bool(up_hosts), tuple(up_hosts), detail, latency)


def parse_partitions(output: str) -> list[PartitionInfo]:
    """`scontrol -o show partition` output, one partition per line."""
    partitions = []
    for line in output.splitlines():
        if not line.strip():
            continue
        kv = parse_key_values(line)
        if "PartitionName" not in kv:
            continue
        partitions.append(
            PartitionInfo(
                name=kv["PartitionName"],
                state=kv.get("State", "UNKNOWN").upper(),
                node_list=kv.get("Nodes", ""),
                total_nodes=int(kv.get("TotalNodes", "0") or 0),
                total_cpus=int(kv.get("TotalCPUs", "0") or 0),
                is_default=kv.get("Default", "NO") == "YES",
                max_time=kv.get("MaxTime", ""),
                extra=kv,
            )
        )
    return partitions


def _node_states(node: dict[str, Any]) -> tuple[str, ...]:
    # 22.05 (openapi v0.0.38): "state": "idle", "state_flags": ["DRAIN"];
    # 23.02+ (v0.0.39+):       "state": ["IDLE", "DRAIN"].
    state = node.get("state", [])
    states = [state] if isinstance(state, str) else list(state)
    states += list(node.get("state_flags") or [])
    return tuple(s.upper().replace(" ", "_") for s in states if s)


def _int(value: Any) -> int:
    # 23.02+ wraps numbers as {"set": true, "number": 8}.
    if isinstance(value, dict):
        value = value.get("number", 0) if value.get("set", True) else 0
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def parse_nodes_json(output: str) -> list[NodeInfo]:
    """`sinfo --json` (22.05) or `scontrol --json show nodes` (23.02+) output."""
    try:
        data = json.loads(output)
    except json.JSONDecodeError as e:
        raise SlurmError(f"unparsable node data from Slurm: {e}") from None
    if "nodes" not in data:
        raise SlurmError("Slurm's JSON output has no 'nodes' list")
    nodes = []
    for node in data["nodes"]:
        gres = node.get("gres", "")
        nodes.append(
            NodeInfo(
                name=node["name"],
                states=_node_states(node),
                cpus=_int(node.get("cpus")),
                alloc_cpus=_int(node.get("alloc_cpus")),
                real_memory_mb=_int(node.get("real_memory")),
                partitions=tuple(node.get("partitions") or ()),
                reason=node.get("reason") or "",
                gres=gres if isinstance(gres, str) else "",
            )
        )
    return nodes
