"""Parsers for Slurm's command output, tolerant of the formats of Slurm 22.05 and later.

Kept free of I/O so they can be unit-tested on recorded output.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hpcgate.server.slurm.adapter import (
    AccountInfo,
    AssociationInfo,
    ControllerPing,
    FairShareInfo,
    NodeInfo,
    PartitionInfo,
    SlurmError,
    UsageRecord,
    UserAssociations,
)

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


# --- Accounting: sacctmgr, sshare, sreport with -n -P (no header, `|`-separated) ---

# sacctmgr prints memory TRES with a unit suffix; its base unit is the MiB.
_MEM_SUFFIX = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2, "P": 1024**3}
_TRES_VALUE = re.compile(r"^(\d+(?:\.\d+)?)([KMGTP]?)$", re.IGNORECASE)
_WALL = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$")
_NO_LIMIT = {"", "UNLIMITED", "INFINITE", "NONE", "N/A"}

# Field lists: the commands in cli_adapter.py ask for exactly these, in this order.
USER_ASSOC_FIELDS = (
    "User",
    "DefaultAccount",
    "Cluster",
    "Account",
    "Partition",
    "QOS",
    "DefaultQOS",
    "GrpTRES",
    "GrpTRESMins",
    "MaxTRES",
    "MaxTRESPerNode",
    "MaxWall",
    "MaxJobs",
    "MaxSubmit",
    "GrpJobs",
    "GrpSubmit",
)
# Descr last: free text, the only field that might contain the separator.
ACCOUNT_FIELDS = ("Account", "Cluster", "User", "ParentName", "Org", "Descr")
SHARE_FIELDS = (
    "Account",
    "User",
    "Partition",
    "RawShares",
    "NormShares",
    "RawUsage",
    "EffectvUsage",
    "FairShare",
)
USAGE_FIELDS = ("Account", "Login", "TRESName", "Used")


def _rows(output: str, width: int) -> list[list[str]]:
    """`-P` rows with exactly `width` fields (the last one keeps any extra `|`).

    Lines with fewer fields (e.g. the `CLUSTER: name` line `-M` adds) are skipped.
    """
    rows = []
    for line in output.splitlines():
        if not line.strip():
            continue
        fields = line.split("|", width - 1)
        if len(fields) == width:
            rows.append([f.strip() for f in fields])
    return rows


def _slurm_text(value: str) -> str:
    # sacctmgr stores a ' typed in a description or organisation as a backtick.
    return value.replace("`", "'")


def parse_tres(value: str) -> dict[str, int]:
    """`cpu=8,mem=8000M,gres/gpu=2` -> {'cpu': 8, 'mem': 8000, 'gres/gpu': 2}.

    Values with a unit suffix (K, M, G, T, P: Slurm prints memory that way) are
    converted to MiB. Empty or unparsable items are skipped.
    """
    tres: dict[str, int] = {}
    for item in value.split(","):
        name, sep, raw = item.strip().partition("=")
        match = _TRES_VALUE.match(raw.strip())
        if not sep or not name or match is None:
            continue
        number, suffix = float(match.group(1)), match.group(2).upper()
        tres[name] = round(number * _MEM_SUFFIX[suffix]) if suffix else int(number)
    return tres


def parse_wall_seconds(value: str) -> int | None:
    """A sacctmgr time limit in seconds: `1-12:30:00`, `12:30:00`, `MM:SS`, `D-HH:MM`, or
    plain minutes. None for no limit (empty, UNLIMITED, ...) or an unparsable value.
    """
    value = value.strip()
    if value.upper() in _NO_LIMIT:
        return None
    if value.isdigit():
        return int(value) * 60
    match = _WALL.match(value)
    if match is None:
        return None
    days, first, second, third = match.groups()
    if first is not None:  # [D-]HH:MM:SS
        hours, minutes, seconds = int(first), int(second), int(third)
    elif days is not None:  # D-HH:MM
        hours, minutes, seconds = int(second), int(third), 0
    else:  # MM:SS
        hours, minutes, seconds = 0, int(second), int(third)
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds


def _limit(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isdigit() else None


def _float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def parse_user_default_account(output: str) -> str:
    """`sacctmgr -n -P show user NAME format=User,DefaultAccount`; "" for no record."""
    for user, default_account in _rows(output, 2):
        if user:
            return default_account
    return ""


def parse_user_associations(output: str, user: str) -> UserAssociations:
    """`sacctmgr -n -P show user NAME withassoc format=<USER_ASSOC_FIELDS>`.

    One row per association; rows with an empty account (a user record without
    associations) only carry the default account.
    """
    default_account = ""
    associations = []
    for row in _rows(output, len(USER_ASSOC_FIELDS)):
        f = dict(zip(USER_ASSOC_FIELDS, row, strict=True))
        default_account = default_account or f["DefaultAccount"]
        if not f["Account"]:
            continue
        associations.append(
            AssociationInfo(
                user=f["User"] or user,
                account=f["Account"],
                cluster=f["Cluster"],
                partition=f["Partition"],
                qos=tuple(q for q in f["QOS"].split(",") if q),
                default_qos=f["DefaultQOS"],
                group_tres=parse_tres(f["GrpTRES"]),
                group_tres_minutes=parse_tres(f["GrpTRESMins"]),
                max_tres_per_job=parse_tres(f["MaxTRES"]),
                max_tres_per_node=parse_tres(f["MaxTRESPerNode"]),
                max_wall_seconds=parse_wall_seconds(f["MaxWall"]),
                max_jobs=_limit(f["MaxJobs"]),
                max_submit_jobs=_limit(f["MaxSubmit"]),
                group_jobs=_limit(f["GrpJobs"]),
                group_submit_jobs=_limit(f["GrpSubmit"]),
            )
        )
    return UserAssociations(user, default_account, tuple(associations))


def parse_accounts(output: str) -> list[AccountInfo]:
    """`sacctmgr -n -P show account where name=A,B withassoc user= format=<ACCOUNT_FIELDS>`.

    Only the accounts' own association rows (empty user) are used: they carry the parent.
    A row without a cluster is an account with no association on the queried cluster.
    """
    accounts = []
    for row in _rows(output, len(ACCOUNT_FIELDS)):
        f = dict(zip(ACCOUNT_FIELDS, row, strict=True))
        if f["User"] or not f["Account"] or not f["Cluster"]:
            continue
        accounts.append(
            AccountInfo(
                name=f["Account"],
                description=_slurm_text(f["Descr"]),
                organization=_slurm_text(f["Org"]),
                parent=f["ParentName"],
                cluster=f["Cluster"],
            )
        )
    return accounts


def parse_fair_share(output: str) -> list[FairShareInfo]:
    """`sshare -n -P -U -u NAME -o <SHARE_FIELDS>` (a `CLUSTER: x` line from -M is skipped).

    With PriorityType=priority/basic Slurm leaves NormShares empty and prints 0 for the
    rest; every normalised figure is then None (the site does not use fair share).
    """
    shares = []
    for row in _rows(output, len(SHARE_FIELDS)):
        f = dict(zip(SHARE_FIELDS, row, strict=True))
        if not f["Account"] or not f["User"]:
            continue
        normalized = _float(f["NormShares"])
        computed = normalized is not None
        shares.append(
            FairShareInfo(
                account=f["Account"],
                user=f["User"],
                partition=f["Partition"],
                raw_shares=int(f["RawShares"]) if f["RawShares"].isdigit() else 0,
                normalized_shares=normalized,
                raw_usage=int(_float(f["RawUsage"]) or 0),
                effective_usage=_float(f["EffectvUsage"]) if computed else None,
                fairshare_factor=_float(f["FairShare"]) if computed else None,
            )
        )
    return shares


def parse_usage(output: str) -> list[UsageRecord]:
    """`sreport -n -P -t seconds cluster AccountUtilizationByUser ... format=<USAGE_FIELDS>`.

    A row with an empty Login is the account's total (its users and sub-accounts).
    """
    records = []
    for row in _rows(output, len(USAGE_FIELDS)):
        f = dict(zip(USAGE_FIELDS, row, strict=True))
        used = _limit(f["Used"])
        if not f["Account"] or used is None:
            continue
        records.append(UsageRecord(f["Account"], f["Login"], f["TRESName"] or "cpu", used))
    return records


def parse_cluster_name(output: str) -> str:
    """The `ClusterName = x` line of `scontrol show config`; "" if absent."""
    match = re.search(r"^ClusterName\s*=\s*(\S+)", output, re.MULTILINE)
    return match.group(1) if match else ""
