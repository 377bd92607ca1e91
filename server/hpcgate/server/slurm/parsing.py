"""Parsers for Slurm's command output, tolerant of the formats of Slurm 22.05 and later.

Kept free of I/O so they can be unit-tested on recorded output.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from hpcgate.server.slurm.adapter import (
    AccountInfo,
    AssociationInfo,
    ControllerPing,
    FairShareInfo,
    JobRecord,
    JobStepRecord,
    NodeInfo,
    PartitionInfo,
    ReservationRecord,
    SlurmError,
    SlurmUnavailable,
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
        load = _opt_int(node.get("cpu_load"))
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
                alloc_memory_mb=_int(node.get("alloc_memory")),
                # 22.05 says free_memory, 23.02+ free_mem.
                free_memory_mb=_int(node.get("free_mem", node.get("free_memory"))),
                cpu_load=load / 100 if load is not None else None,  # Slurm sends load * 100
                gres_used=_text(node.get("gres_used")),
                features=_feature_list(node.get("features")),
                active_features=_feature_list(node.get("active_features")),
                sockets=_int(node.get("sockets")),
                cores_per_socket=_int(node.get("cores")),
                threads_per_core=_int(node.get("threads")),
                architecture=_text(node.get("architecture")),
                boot_time=_epoch(node.get("boot_time")),
                reason_time=_epoch(node.get("reason_changed_at")),
                reason_user=_text(node.get("reason_set_by_user")),
            )
        )
    return nodes


def _feature_list(value: Any) -> tuple[str, ...]:
    # 22.05: "a,b"; 23.02+: ["a", "b"].
    items = value.split(",") if isinstance(value, str) else list(value or ())
    return tuple(str(i).strip() for i in items if str(i).strip() and str(i) != "(null)")


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
ACCOUNT_FIELDS = (
    "Account", "Cluster", "User", "ParentName", "Org", "GrpTRESMins", "Coordinators", "Descr",
)  # fmt: skip
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
                coordinators=tuple(c for c in f["Coordinators"].split(",") if c),
                group_tres_minutes=parse_tres(f["GrpTRESMins"]),
            )
        )
    return accounts


def parse_tres_used(output: str) -> dict[str, dict[str, int]]:
    """`sshare -n -P -A A,B -o Account,User,GrpTRESRaw`: each account's own row (empty
    user) as {account: {tres: minutes}}."""
    used: dict[str, dict[str, int]] = {}
    for account, user, raw in _rows(output, 3):
        if account and not user:
            used[account.strip()] = parse_tres(raw)
    return used


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


# --- Jobs and reservations: squeue --json, sacct -P, scontrol show reservation ---

_NO_VAL = 0xFFFFFFFE  # Slurm's "not set" (NO_VAL); INFINITE is one more, 64-bit ones are larger
# Base job states; anything else in a state list is a flag.
_BASE_JOB_STATES = frozenset(
    {
        "PENDING",
        "RUNNING",
        "SUSPENDED",
        "COMPLETED",
        "CANCELLED",
        "FAILED",
        "TIMEOUT",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "OUT_OF_MEMORY",
        "REVOKED",
    }
)
# Flags that `squeue -o %T` shows instead of the base state, in Slurm's order of precedence.
_SUMMARY_FLAGS = (
    ("COMPLETING", "COMPLETING"),
    ("STAGE_OUT", "COMPLETING"),
    ("CONFIGURING", "CONFIGURING"),
    ("POWER_UP_NODE", "CONFIGURING"),
    ("REQUEUED", "REQUEUED"),
)
# 22.05 reports a single word; when it is a flag, the base state it implies.
_FLAG_BASE = {
    "REQUEUE_HOLD": "PENDING",
    "REQUEUE_FED": "PENDING",
    "SPECIAL_EXIT": "PENDING",
    "RESV_DEL_HOLD": "PENDING",
    "RESIZING": "RUNNING",
    "SIGNALING": "RUNNING",
    "STOPPED": "RUNNING",
    "RECONFIG_FAIL": "RUNNING",
}
_NOT_STARTED = frozenset({"PENDING", "REQUEUED"})
_NOT_ENDED = frozenset({"PENDING", "REQUEUED", "RUNNING", "SUSPENDED", "CONFIGURING"})
_DEPENDENCY_NOTE = re.compile(r"\([^)]*\)")
_OUTPUT_PATTERN = re.compile(r"%(%|(\d*)([AaJjNnstux]))")
_ARRAY_TASK_ID_NONE = "4294967294"  # what Slurm writes for %a in a job that is not an array
_JOB_ID_SPEC = re.compile(r"^(\d+)(?:_(\d+))?$")


def _opt_int(value: Any) -> int | None:
    """A number from Slurm's JSON; None when unset, infinite or a NO_VAL sentinel.

    22.05 gives plain numbers (null when unset); 23.02+ wraps them as
    {"set": .., "infinite": .., "number": ..}.
    """
    if isinstance(value, dict):
        if not value.get("set", True) or value.get("infinite", False):
            return None
        value = value.get("number")
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return None if number < 0 or number >= _NO_VAL else number


def _epoch(value: Any) -> datetime | None:
    """A Unix time from Slurm's JSON; 0 and unset mean "no time"."""
    seconds = _opt_int(value)
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _words(value: Any) -> list[str]:
    """A state as a list of upper-case words: 22.05 has one word, 23.02+ a list."""
    items = [value] if isinstance(value, str) else list(value or ())
    return [str(w).upper().replace(" ", "_") for w in items if w]


def summarise_job_state(words: list[str]) -> tuple[str, tuple[str, ...]]:
    """(one-word state, flags) from Slurm's state words, as `squeue -o %T` would say it.

    COMPLETING, CONFIGURING and REQUEUED have JobState values of their own, so they
    win over the base state; other flags (REQUEUE_HOLD, SPECIAL_EXIT, ...) only go into
    the flags. Works for 22.05's single word as for 23.02+'s [base, flag, ...] lists.
    """
    base = next((w for w in words if w in _BASE_JOB_STATES), "")
    flags = tuple(w for w in words if w != base)
    for flag, summary in _SUMMARY_FLAGS:
        if flag in flags:
            return summary, flags
    if base:
        return base, flags
    for flag in flags:
        if flag in _FLAG_BASE:
            return _FLAG_BASE[flag], flags
    return (words[0] if words else "UNKNOWN"), flags


def _exit_status(value: Any) -> tuple[int, int]:
    """(exit code, signal) from a 22.05 wait status or a 23.02+ exit-code object."""
    if isinstance(value, dict):
        code = _opt_int(value.get("return_code")) or 0
        signal = value.get("signal")
        number = signal.get("id", signal.get("signal_id")) if isinstance(signal, dict) else signal
        return code, _opt_int(number) or 0
    status = _opt_int(value)
    if status is None:
        return 0, 0
    return (status >> 8) & 0xFF, status & 0x7F


def _normalise_gres(value: str) -> str:
    # 22.05 writes `gres:gpu:2`, 23.02+ `gres/gpu:2`; the API uses the TRES spelling.
    items = [i.strip() for i in value.split(",") if i.strip() and i.strip() != "(null)"]
    return ",".join("gres/" + i[5:] if i.startswith("gres:") else i for i in items)


def expand_output_path(
    pattern: str,
    *,
    job_id: str,
    array_job_id: int = 0,
    array_task_id: int | None = None,
    user: str = "",
    job_name: str = "",
    node: str = "",
    working_directory: str = "",
) -> str:
    """A batch job's stdout/stderr path with Slurm's filename patterns replaced.

    The same rules as slurmstepd for the batch step (checked on 22.05): `%j`/`%J` job id,
    `%A` array job id (the job id outside arrays), `%a` task index (4294967294 outside
    arrays; unknown for a pending array record), `%u`, `%x`, `%N` batch host, `%n`/`%t`
    0, `%s` `batch`, `%%`; a number after `%` zero-pads. A backslash turns expansion off
    (Slurm then drops the backslashes). Patterns whose value is unknown (e.g. `%N` before
    the job starts) are left as they are. A relative path is relative to the working
    directory.
    """
    if "\\" in pattern:
        path = pattern.replace("\\", "")
    else:
        values = {
            "j": job_id,
            "J": job_id,
            "A": str(array_job_id) if array_job_id else job_id,
            # Unknown for the pending record of an array (several tasks): left as `%a`.
            "a": str(array_task_id)
            if array_task_id is not None
            else ("" if array_job_id else _ARRAY_TASK_ID_NONE),
            "u": user,
            "x": job_name,
            "N": node,
            "n": "0",
            "t": "0",
            "s": "batch",
        }

        def replace_one(match: re.Match[str]) -> str:
            if match.group(1) == "%":
                return "%"
            width, letter = match.group(2), match.group(3)
            value = values.get(letter, "")
            if not value:
                return match.group(0)
            if width and letter in "jJAantN" and value.isdigit():
                value = value.zfill(int(width))
            return value

        path = _OUTPUT_PATTERN.sub(replace_one, pattern)
    if path and not path.startswith("/") and working_directory:
        path = working_directory.rstrip("/") + "/" + path
    return path


def split_job_id(job_id: str) -> tuple[int, int | None]:
    """`123` -> (123, None); `123_4` (array job 123, task 4) -> (123, 4); else ValueError."""
    match = _JOB_ID_SPEC.match(job_id.strip())
    if match is None:
        raise ValueError(f"not a Slurm job id: {job_id!r} (use 123 or 123_4)")
    return int(match.group(1)), int(match.group(2)) if match.group(2) is not None else None


def array_spec_contains(spec: str, index: int) -> bool:
    """Whether an array spec such as `0-15:2,20%4` includes `index`."""
    for item in spec.split("%", 1)[0].split(","):
        bounds, _, step_text = item.strip().partition(":")
        low_text, _, high_text = bounds.partition("-")
        try:
            low = int(low_text)
            high = int(high_text) if high_text else low
            step = int(step_text) if step_text else 1
        except ValueError:
            continue
        if low <= index <= high and (index - low) % max(step, 1) == 0:
            return True
    return False


def job_matches(job: JobRecord, wanted: str) -> bool:
    """Whether `job` is the job `wanted` (`123` or `123_4`) names.

    `123_4` also matches the pending array record of 123 while task 4 is still part of
    it (Slurm has not given the task a job id of its own yet).
    """
    try:
        number, task = split_job_id(wanted)
    except ValueError:
        return False
    if task is None:
        return job.job_id == str(number)
    if job.array_job_id != number:
        return False
    if job.array_task_id is not None:
        return job.array_task_id == task
    return array_spec_contains(job.array_task_spec, task)


def select_jobs(
    jobs: Iterable[JobRecord], job_ids: Sequence[str] = (), users: Sequence[str] = ()
) -> list[JobRecord]:
    """The jobs among `jobs` that `job_ids` name (as `job_matches` reads them; all when
    empty) and that belong to `users` (all when empty). Linear in jobs + ids: the watch
    hub asks for hundreds of ids at once."""
    plain: set[str] = set()
    tasks: dict[int, set[int]] = {}
    for wanted in job_ids:
        try:
            number, task = split_job_id(wanted)
        except ValueError:
            continue
        if task is None:
            plain.add(str(number))
        else:
            tasks.setdefault(number, set()).add(task)
    owners = set(users)

    def named(job: JobRecord) -> bool:
        if not job_ids or job.job_id in plain:
            return True
        wanted_tasks = tasks.get(job.array_job_id)
        if not wanted_tasks:
            return False
        if job.array_task_id is not None:
            return job.array_task_id in wanted_tasks
        return any(array_spec_contains(job.array_task_spec, t) for t in wanted_tasks)

    return [j for j in jobs if named(j) and (not owners or j.user in owners)]


def _run_seconds(
    job: dict[str, Any], state: str, start: datetime | None, end: datetime | None, now: datetime
) -> int | None:
    """Elapsed time the way squeue computes TIME (suspended time excluded)."""
    if state in _NOT_STARTED or start is None:
        return 0 if state in _NOT_STARTED else None
    pre_suspend = _opt_int(job.get("pre_sus_time")) or 0
    if state == "SUSPENDED":
        return pre_suspend
    until = end if end is not None else now
    resumed = _epoch(job.get("suspend_time"))
    if resumed is not None:
        return max(0, int((until - resumed).total_seconds()) + pre_suspend)
    return max(0, int((until - start).total_seconds()))


def _queue_job(job: dict[str, Any], now: datetime) -> JobRecord:
    state_words = _words(job.get("job_state"))
    state, flags = summarise_job_state(state_words)
    job_id = str(_opt_int(job.get("job_id")) or "")
    array_job_id = _opt_int(job.get("array_job_id")) or 0
    array_task_id = _opt_int(job.get("array_task_id")) if array_job_id else None
    user, name = _text(job.get("user_name")), _text(job.get("name"))
    cwd = _text(job.get("current_working_directory"))
    batch_host = _text(job.get("batch_host"))
    # squeue's start_time is the expected start while pending, and its end_time the
    # expected end while running: only report what has happened.
    start, end = _epoch(job.get("start_time")), _epoch(job.get("end_time"))
    estimated = None
    if state in _NOT_STARTED:
        estimated, start, end = start, None, None
    elif state in _NOT_ENDED:
        end = None
    time_limit = _opt_int(job.get("time_limit"))
    node_list = _text(job.get("nodes"))
    stdout = _text(job.get("stdout_expanded")) or _text(job.get("standard_output"))
    stderr = _text(job.get("stderr_expanded")) or _text(job.get("standard_error"))
    if not stdout:
        stdout = "slurm-%A_%a.out" if array_job_id else "slurm-%j.out"

    def expand(pattern: str) -> str:
        return expand_output_path(
            pattern,
            job_id=job_id,
            array_job_id=array_job_id,
            array_task_id=array_task_id,
            user=user,
            job_name=name,
            node=batch_host,
            working_directory=cwd,
        )

    stdout_path = expand(stdout)
    stderr_path = expand(stderr) if stderr else stdout_path
    reason = _text(job.get("state_reason"))
    exit_code, signal = _exit_status(job.get("exit_code"))
    return JobRecord(
        job_id=job_id,
        source="queue",
        array_job_id=array_job_id,
        array_task_id=array_task_id,
        array_task_spec=_text(job.get("array_task_string")) if array_task_id is None else "",
        job_name=name,
        user=user,
        uid=_opt_int(job.get("user_id")),
        account=_text(job.get("account")),
        partition=_text(job.get("partition")),
        qos=_text(job.get("qos")),
        state=state,
        raw_state="+".join(state_words),
        state_flags=flags,
        reason="" if reason == "None" else reason,
        exit_code=exit_code,
        signal=signal,
        submit_time=_epoch(job.get("submit_time")),
        eligible_time=_epoch(job.get("eligible_time")),
        start_time=start,
        end_time=end,
        estimated_start_time=estimated,
        elapsed_seconds=_run_seconds(job, state, start, end, now),
        time_limit_seconds=time_limit * 60 if time_limit is not None else None,
        node_count=_opt_int(job.get("node_count")) or 0,
        node_list="" if node_list == "None assigned" else node_list,
        cpus=_opt_int(job.get("cpus")) or 0,
        ntasks=_opt_int(job.get("tasks")) or 0,
        cpus_per_task=_opt_int(job.get("cpus_per_task")) or 0,
        memory_per_node_mib=_opt_int(job.get("memory_per_node")) or 0,
        memory_per_cpu_mib=_opt_int(job.get("memory_per_cpu")) or 0,
        requested_tres=parse_tres(_text(job.get("tres_req_str"))),
        allocated_tres=parse_tres(_text(job.get("tres_alloc_str"))),
        gres=_normalise_gres(_text(job.get("tres_per_node"))),
        working_directory=cwd,
        stdout_path=stdout_path,
        stderr_path=stderr_path,
        dependency=_DEPENDENCY_NOTE.sub("", _text(job.get("dependency"))),
        reservation=_text(job.get("resv_name")),
        constraints=_text(job.get("features")),
        priority=_opt_int(job.get("priority")) or 0,
        batch_host=batch_host,
        restart_count=_opt_int(job.get("restart_cnt")) or 0,
        comment=_text(job.get("comment")),
    )


def parse_squeue_json(output: str, now: datetime | None = None) -> list[JobRecord]:
    """`squeue --json` output (22.05's openapi v0.0.38 and the 23.02+ data_parser shapes).

    `now` is the time elapsed times of running jobs are computed to (default: now).
    """
    try:
        data = json.loads(output)
    except json.JSONDecodeError as e:
        raise SlurmError(f"unparsable job data from squeue: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        raise SlurmError("squeue's JSON output has no 'jobs' list")
    errors = [e for e in data.get("errors") or [] if isinstance(e, dict)]
    if errors:
        # squeue --json exits 0 even when it could not load any job; 22.05 says only
        # "Failed while looking for jobs" when the controller does not answer.
        text = "; ".join(
            f"{e.get('description', '')} ({e.get('error', '')})".strip() for e in errors
        )
        if "invalid job id" in text.lower() or "invalid user" in text.lower():
            return []
        raise SlurmUnavailable(f"squeue could not load jobs: {text}")
    when = now or datetime.now(UTC)
    return [_queue_job(job, when) for job in data["jobs"] if isinstance(job, dict)]


# sacct -n -P with a separator no job name or path contains. The free-text fields come
# last; a record continued on the next line (a newline in a path or name) is re-joined.
SACCT_DELIMITER = "\x1f"
SACCT_FIELDS = (
    "JobIDRaw",
    "JobID",
    "State",
    "ExitCode",
    "Reason",
    "User",
    "UID",
    "Account",
    "Partition",
    "QOS",
    "Submit",
    "Eligible",
    "Start",
    "End",
    "ElapsedRaw",
    "TimelimitRaw",
    "NNodes",
    "NodeList",
    "AllocCPUS",
    "ReqCPUS",
    "NTasks",
    "ReqMem",
    "ReqTRES",
    "AllocTRES",
    "Reservation",
    "Constraints",
    "Priority",
    "WorkDir",
    "Comment",
    "JobName",
)
_SACCT_RECORD_START = re.compile(r"^\d+[\w.+]*\x1f\d+[\w.+\[\]%,:-]*\x1f")
_SACCT_ARRAY = re.compile(r"^(\d+)_(?:(\d+)|\[(.*)\])$")
_REQ_MEM = re.compile(r"^(\d+(?:\.\d+)?)([KMGTP]?)([cn]?)$")


def _local_time(value: str) -> datetime | None:
    """A time printed by Slurm's tools (SLURM_TIME_FORMAT=standard: local time)."""
    value = value.strip()
    if not value or value in {"Unknown", "None", "N/A", "(null)"}:
        return None
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except ValueError:
        return None


def _count(value: str) -> int:
    value = value.strip()
    return int(value) if value.isdigit() else 0


def _exit_pair(value: str) -> tuple[int, int]:
    """sacct's `code:signal`."""
    code, _, signal = value.partition(":")
    return _count(code), _count(signal)


def _sacct_records(output: str) -> list[dict[str, str]]:
    width = len(SACCT_FIELDS)
    texts: list[str] = []
    for line in output.rstrip("\n").split("\n"):
        if _SACCT_RECORD_START.match(line) or not texts:
            texts.append(line)
        else:
            texts[-1] += "\n" + line
    records = []
    for text in texts:
        values = text.split(SACCT_DELIMITER, width - 1)
        if len(values) == width:
            records.append(dict(zip(SACCT_FIELDS, values, strict=True)))
    return records


def _sacct_memory(req_mem: str) -> tuple[int, int]:
    """(per node, per cpu) MiB from ReqMem.

    Slurm < 21.08 suffixes `n`/`c`; later releases print the job's total without saying
    how it was requested, so both stay 0 then (the total is in requested_tres `mem`).
    """
    match = _REQ_MEM.match(req_mem.strip())
    if match is None or not match.group(3):
        return 0, 0
    mib = round(float(match.group(1)) * _MEM_SUFFIX[match.group(2).upper() or "M"])
    return (mib, 0) if match.group(3) == "n" else (0, mib)


def _sacct_step(f: dict[str, str]) -> JobStepRecord:
    state_text = f["State"].strip()
    words = state_text.split()[:1]
    state, _ = summarise_job_state([w.upper() for w in words])
    exit_code, signal = _exit_pair(f["ExitCode"])
    elapsed = f["ElapsedRaw"].strip()
    node_list = f["NodeList"].strip()
    return JobStepRecord(
        step_id=f["JobIDRaw"].split(".", 1)[1],
        name=f["JobName"],
        state=state,
        raw_state=state_text,
        exit_code=exit_code,
        signal=signal,
        start_time=_local_time(f["Start"]),
        end_time=_local_time(f["End"]),
        elapsed_seconds=int(elapsed) if elapsed.isdigit() else None,
        node_count=_count(f["NNodes"]),
        node_list="" if node_list == "None assigned" else node_list,
        ntasks=_count(f["NTasks"]),
        allocated_tres=parse_tres(f["AllocTRES"]),
    )


def _sacct_job(f: dict[str, str], steps: list[JobStepRecord]) -> JobRecord:
    state_text = f["State"].strip()
    words = [w.upper() for w in state_text.split()[:1]]
    state, flags = summarise_job_state(words)
    exit_code, signal = _exit_pair(f["ExitCode"])
    array_job_id, array_task_id, array_spec = 0, None, ""
    array = _SACCT_ARRAY.match(f["JobID"].strip())
    if array is not None:
        array_job_id = int(array.group(1))
        if array.group(2) is not None:
            array_task_id = int(array.group(2))
        else:
            array_spec = array.group(3) or ""
    limit = f["TimelimitRaw"].strip()
    elapsed = f["ElapsedRaw"].strip()
    node_list = f["NodeList"].strip()
    per_node, per_cpu = _sacct_memory(f["ReqMem"])
    reason = f["Reason"].strip()
    batch = next((s for s in steps if s.step_id == "batch"), None)
    if (exit_code, signal) == (0, 0) and batch is not None:
        # A cancelled job shows 0:0 while its batch step shows the signal (0:15).
        exit_code, signal = batch.exit_code, batch.signal
    srun_tasks = [s.ntasks for s in steps if s.step_id.isdigit()]
    return JobRecord(
        job_id=f["JobIDRaw"].strip(),
        source="accounting",
        array_job_id=array_job_id,
        array_task_id=array_task_id,
        array_task_spec=array_spec,
        job_name=f["JobName"],
        user=f["User"].strip(),
        uid=int(f["UID"]) if f["UID"].strip().isdigit() else None,
        account=f["Account"].strip(),
        partition=f["Partition"].strip(),
        qos=f["QOS"].strip(),
        state=state,
        raw_state=state_text,
        state_flags=flags,
        reason="" if reason == "None" else reason,
        exit_code=exit_code,
        signal=signal,
        submit_time=_local_time(f["Submit"]),
        eligible_time=_local_time(f["Eligible"]),
        start_time=_local_time(f["Start"]),
        end_time=_local_time(f["End"]),
        elapsed_seconds=int(elapsed) if elapsed.isdigit() else None,
        time_limit_seconds=int(limit) * 60 if limit.isdigit() else None,
        node_count=_count(f["NNodes"]),
        node_list="" if node_list == "None assigned" else node_list,
        cpus=_count(f["AllocCPUS"]) or _count(f["ReqCPUS"]),
        ntasks=_count(f["NTasks"]) or max(srun_tasks, default=0),
        memory_per_node_mib=per_node,
        memory_per_cpu_mib=per_cpu,
        requested_tres=parse_tres(f["ReqTRES"]),
        allocated_tres=parse_tres(f["AllocTRES"]),
        working_directory=f["WorkDir"],
        reservation=f["Reservation"].strip(),
        constraints=f["Constraints"].strip(),
        priority=_count(f["Priority"]),
        batch_host=batch.node_list if batch is not None else "",
        comment=f["Comment"],
        steps=tuple(steps),
    )


def parse_sacct(output: str) -> list[JobRecord]:
    """`sacct -n -P --delimiter=SACCT_DELIMITER -o <SACCT_FIELDS>`: jobs with their steps.

    Step rows (`123.batch`, `123.0`) follow their job's row and become its steps;
    steps whose job row is missing are dropped.
    """
    rows = _sacct_records(output)
    steps: dict[str, list[JobStepRecord]] = {}
    for f in rows:
        job_id, dot, _ = f["JobIDRaw"].partition(".")
        if dot:
            steps.setdefault(job_id, []).append(_sacct_step(f))
    return [_sacct_job(f, steps.get(f["JobIDRaw"], [])) for f in rows if "." not in f["JobIDRaw"]]


def _names(value: str) -> tuple[str, ...]:
    if value.strip() in {"", "(null)", "ALL", "N/A"}:
        return ()
    return tuple(v for v in value.split(",") if v)


def parse_reservations(output: str) -> list[ReservationRecord]:
    """`scontrol -o show reservation`; "No reservations in the system" gives []."""
    records = []
    for line in output.splitlines():
        raw = parse_key_values(line)
        if "ReservationName" not in raw:
            continue
        kv = {k: "" if v.strip() in {"(null)", "N/A", "n/a"} else v.strip() for k, v in raw.items()}

        def get(key: str, kv: dict[str, str] = kv) -> str:
            return kv.get(key, "")

        start, end = _local_time(get("StartTime")), _local_time(get("EndTime"))
        state = get("State").upper()
        if not state:
            now = datetime.now(UTC)
            active = start is not None and start <= now and (end is None or now < end)
            state = "ACTIVE" if active else "INACTIVE"
        records.append(
            ReservationRecord(
                name=kv["ReservationName"],
                state=state,
                start_time=start,
                end_time=end,
                duration_seconds=parse_wall_seconds(get("Duration")),
                node_list=get("Nodes"),
                node_count=_count(get("NodeCnt")),
                core_count=_count(get("CoreCnt")),
                users=_names(get("Users")),
                accounts=_names(get("Accounts")),
                groups=_names(get("Groups")),
                partition=get("PartitionName"),
                flags=tuple(f.upper() for f in _names(get("Flags"))),
                features=get("Features"),
                tres=parse_tres(get("TRES")),
            )
        )
    return records


def _split_top_level(expr: str) -> list[str]:
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for char in expr:
        if char == "," and depth == 0:
            items.append("".join(current))
            current = []
            continue
        depth += {"[": 1, "]": -1}.get(char, 0)
        current.append(char)
    items.append("".join(current))
    return [i.strip() for i in items if i.strip()]


def _expand_host_item(item: str) -> Iterator[str]:
    open_at = item.find("[")
    close_at = item.find("]", open_at + 1)
    if open_at < 0 or close_at < 0:
        yield item
        return
    prefix, body, rest = item[:open_at], item[open_at + 1 : close_at], item[close_at + 1 :]
    ranges = []
    for part in body.split(","):
        low, sep, high = part.strip().partition("-")
        if not low.isdigit() or (sep and not high.isdigit()):
            yield item  # not a range Slurm would write: keep it verbatim
            return
        ranges.append((low, high if sep else low))
    for low, high in ranges:
        for n in range(int(low), int(high) + 1):
            yield from _expand_host_item(f"{prefix}{str(n).zfill(len(low))}{rest}")


def expand_hostlist(expr: str, limit: int = 100_000) -> list[str]:
    """`nid[001-003,007],login1` -> ['nid001', 'nid002', 'nid003', 'nid007', 'login1'].

    Zero padding follows each range's first number; several bracket groups multiply.
    At most `limit` names (a guard against absurd expressions).
    """
    if expr.strip() in {"", "None assigned", "(null)"}:
        return []
    names = itertools.chain.from_iterable(_expand_host_item(i) for i in _split_top_level(expr))
    return list(itertools.islice(names, limit))
