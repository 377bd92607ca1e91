"""The pyslurm adapter: libslurm's own API through pyslurm, in worker processes.

Written against the API of pyslurm 25.11.2 (for Slurm 25.11), read in that release's
sdist: `pyslurm.Jobs.load()`, `pyslurm.Partitions.load()`, `pyslurm.Nodes.load()`,
`pyslurm.Reservations.load()`, `pyslurm.slurmctld.ping_all()` / `ping(index)`,
`pyslurm.slurmctld.Config.load()`, `pyslurm.db.Jobs.load(pyslurm.db.JobFilter(...))`,
`pyslurm.db.Associations.load(pyslurm.db.AssociationFilter(users=...))`,
`pyslurm.PyslurmError` / `pyslurm.RPCError`. It has been unit-tested on stand-in objects
only, never run against a live Slurm: pyslurm builds only against the libslurm of its
own release, and the machine this project is developed and tested on runs Slurm 22.05.

What each SlurmAdapter method uses:

- ping: `slurmctld.ping_all()`; if that fails, `slurmctld.ping(0)` and `ping(1)` one
  by one, so a backup that answers while the primary is down still counts as up.
- version: `slurmctld.Config.load().version` (the controller's Slurm version).
- partitions, nodes, reservations: `Partitions.load()`, `Nodes.load()`,
  `Reservations.load()`.
- queue_jobs: `Jobs.load()` (every job the controller holds, as squeue), filtered here.
- accounting_jobs: `db.Jobs.load(db.JobFilter(...))`, with the same time-window
  defaults as sacct (libslurmdb applies them); steps come with the jobs.
- user_default_account: `db.Associations.load(db.AssociationFilter(users=[user]))`,
  the association of this cluster flagged as the user's default.
- Falls back to the command-line adapter (a CommandLineAdapter composed here, so
  Slurm's client tools must be installed as well) for what pyslurm 25.11 does not
  provide: `fair_share` (sshare: pyslurm has no shares API), `usage` (sreport: pyslurm's
  only report call is in its deprecated module and unusable), `accounts` (pyslurm has no
  account records: no description or organisation) and `user_associations` (pyslurm's
  Association has no default QOS).

Differences from the command-line adapter that remain (see the tests):

- raw_state of accounting records is the state word only; sacct says `CANCELLED by 0`
  (pyslurm gives the canceller's name, not the uid sacct prints).
- Exit codes of 128 and more without a signal lose 128, the way sacct and pyslurm
  decode them (squeue --json, which the command-line adapter reads, keeps them).
- Accounting records also carry stdout/stderr paths and the requeue count, which the
  command-line adapter's sacct query does not ask for; steps are always used for the
  exit status of a cancelled job, even when `steps=False` leaves them out of the record.
- cpus_per_task is 1 where Slurm keeps "not set" (squeue says null, so 0 there); a
  node's cpu_load is 0.0 where Slurm has no reading (None from the command line).
- Node GRES lose socket bindings (`gpu:a100:2`, not `gpu:a100:2(S:0-1)`); reservation
  flags are the ones pyslurm's ReservationFlags knows, in scontrol's spelling.

Every pyslurm call blocks in C *while holding the GIL* (pyslurm 25.11 never releases it),
so a worker thread would still stall the event loop for as long as slurmctld or slurmdbd
takes to answer. Calls therefore run in a small pool of worker processes (spawned, not
forked, so no gRPC state is inherited), each call with `command_timeout`; the pyslurm
objects are translated to this package's dataclasses inside the worker and only those
cross the process boundary. pyslurm is imported only in the workers: on import it sets
RTLD_GLOBAL|RTLD_DEEPBIND for every later extension import of its process.

The translation functions (`job_record_from_pyslurm`, ...) only use attribute access, so
they are tested on simple stand-ins shaped like the pyslurm 25.11.2 objects.
"""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
import pwd
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from typing import Any, TypeVar

from hpcgate.server.config import ConfigError, SlurmConfig
from hpcgate.server.metrics import Metrics
from hpcgate.server.slurm.adapter import (
    AccountInfo,
    ControllerPing,
    FairShareInfo,
    JobRecord,
    JobStepRecord,
    NodeInfo,
    PartitionInfo,
    ReservationOrder,
    ReservationRecord,
    SlurmError,
    SlurmUnavailable,
    UsageRecord,
    UserAssociations,
)
from hpcgate.server.slurm.cli_adapter import CommandLineAdapter
from hpcgate.server.slurm.parsing import (
    expand_output_path,
    parse_tres,
    select_jobs,
    split_job_id,
    summarise_job_state,
)

T = TypeVar("T")

PYSLURM_API_VERSION = "25.11.2"
INSTALL_HINT = "pip install 'hpcgate[pyslurm]' (it must match your Slurm release)"
# Worker processes: each runs one pyslurm call at a time.
WORKERS = 4
# Seconds the first call may take on top of command_timeout: spawning a worker and
# importing pyslurm (which reads slurm.conf).
_STARTUP_ALLOWANCE = 20.0

# pyslurm's spelling of "no limit" (pyslurm.constants.UNLIMITED).
_UNLIMITED = "UNLIMITED"
# What Slurm's own path formatting writes for %a of a pending array record (NO_VAL).
_NO_VAL_TEXT = "4294967294"
# Base states in which a job has not started / not ended (as parsing.py).
_NOT_STARTED = frozenset({"PENDING", "REQUEUED"})
_NOT_ENDED = frozenset({"PENDING", "REQUEUED", "RUNNING", "SUSPENDED", "CONFIGURING"})

# Slurm errno values (slurm/slurm_errno.h, unchanged since before 22.05) that mean the
# controller or slurmdbd could not be reached.
_UNREACHABLE_ERRNOS = frozenset(
    {
        1001,  # SLURM_COMMUNICATIONS_CONNECTION_ERROR
        1002,  # SLURM_COMMUNICATIONS_SEND_ERROR
        1003,  # SLURM_COMMUNICATIONS_RECEIVE_ERROR
        1004,  # SLURM_COMMUNICATIONS_SHUTDOWN_ERROR
        1800,  # SLURMCTLD_COMMUNICATIONS_CONNECTION_ERROR
        1801,  # SLURMCTLD_COMMUNICATIONS_SEND_ERROR
        1802,  # SLURMCTLD_COMMUNICATIONS_RECEIVE_ERROR
        1803,  # SLURMCTLD_COMMUNICATIONS_SHUTDOWN_ERROR
        1804,  # SLURMCTLD_COMMUNICATIONS_BACKOFF
        5004,  # SLURM_PROTOCOL_SOCKET_IMPL_TIMEOUT
        5005,  # SLURM_PROTOCOL_SOCKET_ZERO_BYTES_SENT
        7000,  # ESLURM_DB_CONNECTION
        7008,  # ESLURM_DB_CONNECTION_INVALID
    }
)
# ... and the words they come with; pyslurm's db errors carry no errno at all
# ("Failed to get Jobs from slurmdbd", "Failed to open onnection to slurmdbd").
_UNREACHABLE_PHRASES = (
    "unable to contact slurm controller",
    "socket timed out",
    "connection refused",
    "zero bytes were transmitted",
    "communication connection failure",
    "slurmdbd",
)

# pyslurm ReservationFlags member names -> scontrol's words for the same flags.
_RESERVATION_FLAG_WORDS = {
    "MAINTENANCE": "MAINT",
    "MAGNETIC": "MAGNETIC",
    "FLEX": "FLEX",
    "IGNORE_RUNNING_JOBS": "IGNORE_JOBS",
    "ANY_NODES": "ANY_NODES",
    "STATIC_NODES": "STATIC",
    "PARTITION_NODES_ONLY": "PART_NODES",
    "USER_DELETION": "USER_DELETE",
    "PURGE": "PURGE_COMP",
    "SPECIFIC_NODES": "SPEC_NODES",
    "NO_JOB_HOLD_AFTER_END": "NO_HOLD_JOBS_AFTER_END",
    "OVERLAP": "OVERLAP",
    "ALL_NODES": "ALL_NODES",
    "SKIP": "SKIP",
    "SCHED_FAILED": "SCHED_FAILED",
}
# Keys of pyslurm's dependency dict (core/job/util.pyx dependency_str_to_dict).
_DEPENDENCY_KINDS = ("after", "afterany", "afterburstbuffer", "aftercorr", "afternotok", "afterok")
# pyslurm.db.TrackableResources: single TRES attributes, and dicts of named ones.
_TRES_SINGLE = ("cpu", "mem", "energy", "node", "billing", "vmem", "pages")
_TRES_GROUPS = ("gres", "fs", "license", "interconnect", "other")


# --- Small conversions of pyslurm attribute values ---


def _int(value: Any) -> int:
    """A count; pyslurm gives None for unset and the string UNLIMITED for infinite."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


def _opt_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _names(value: Any) -> tuple[str, ...]:
    """A pyslurm list of names; Slurm's placeholders for "none" become ()."""
    return tuple(str(v) for v in value or () if v and str(v) not in {"(null)", "ALL", "N/A"})


def _when(value: Any) -> datetime | None:
    """A pyslurm Unix timestamp (None or 0 when unset) as an aware datetime."""
    seconds = _opt_int(value)
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


def _minutes_text(value: Any, unset: str) -> str:
    """Minutes (or UNLIMITED) the way scontrol prints a time limit: [D-]HH:MM:SS."""
    if value == _UNLIMITED:
        return _UNLIMITED
    minutes = _opt_int(value)
    if minutes is None:
        return unset
    days, rest = divmod(minutes * 60, 86400)
    clock = f"{rest // 3600:02}:{rest % 3600 // 60:02}:{rest % 60:02}"
    return f"{days}-{clock}" if days else clock


def _limit_text(value: Any) -> str:
    return _UNLIMITED if value == _UNLIMITED else str(_int(value))


def tres_from_pyslurm(tres: Any) -> dict[str, int]:
    """A pyslurm.db.TrackableResources as {Slurm TRES name: count}, `mem` in MiB.

    pyslurm keeps cpu, mem, node, billing, ... as attributes and gres, fs, license, ...
    as dicts of TrackableResource/GPU objects, each with `type_and_name` (`gres/gpu:a100`)
    and `count`. pyslurm already converts `mem` to MiB. None (no TRES) gives {}.
    """
    if tres is None:
        return {}
    out: dict[str, int] = {}
    for name in _TRES_SINGLE:
        item = getattr(tres, name, None)
        if item is not None and _opt_int(item.count) is not None:
            out[name] = item.count
    for group in _TRES_GROUPS:
        for item in (getattr(tres, group, None) or {}).values():
            if _opt_int(item.count) is not None:
                out[item.type_and_name] = item.count
    return out


def _gres_text(gres: Any, prefix: str = "") -> str:
    """A pyslurm GRES dict ({"gpu:a100": 2} or, with index details, {"gpu": {"count":
    2, ...}}) as Slurm writes GRES: `gpu:a100:2`, with `prefix` before each name."""
    items = []
    for name, value in (gres or {}).items():
        count = value.get("count", 0) if isinstance(value, dict) else value
        bare = str(name).removeprefix("gres/").removeprefix("gres:")
        items.append(f"{prefix}{bare}:{_int(count)}")
    return ",".join(items)


def _dependency_text(deps: Any) -> str:
    """pyslurm's dependency dict back to Slurm's syntax, without the `(unfulfilled)`-
    style notes slurmctld appends (as the command-line adapter reports it)."""
    if not deps:
        return ""
    items = [
        f"{kind}:{str(job).split('(', 1)[0]}"
        for kind in _DEPENDENCY_KINDS
        for job in deps.get(kind) or ()
    ]
    if deps.get("singleton"):
        items.append("singleton")
    return ("?" if deps.get("satisfy") == "any" else ",").join(items)


def _array_spec(waiting: Any, parallel: Any) -> str:
    """pyslurm drops the `%N` throttle from the array task string; put it back."""
    if not waiting:
        return ""
    limit = _opt_int(parallel)
    return f"{waiting}%{limit}" if limit else str(waiting)


def _elapsed(
    state: str,
    start: datetime | None,
    end: datetime | None,
    suspended_at: datetime | None,
    pre_suspend: int,
    now: datetime,
) -> int | None:
    """Run time the way squeue computes TIME (as the command-line adapter does)."""
    if state in _NOT_STARTED:
        return 0
    if start is None:
        return None
    if state == "SUSPENDED":
        return pre_suspend
    until = end if end is not None else now
    if suspended_at is not None:
        return max(0, int((until - suspended_at).total_seconds()) + pre_suspend)
    return max(0, int((until - start).total_seconds()))


# --- Translation of pyslurm 25.11 objects ---


def job_record_from_pyslurm(job: Any, now: datetime) -> JobRecord:
    """A pyslurm.Job (the controller's view, like squeue) as a JobRecord.

    `now` is the time elapsed times of running jobs are computed to.
    """
    state, flags = summarise_job_state([_text(job.state).upper()] if job.state else [])
    job_id = str(job.id)
    array_job_id = _int(job.array_id)
    array_task_id = _opt_int(job.array_task_id) if array_job_id else None
    start, end = _when(job.start_time), _when(job.end_time)
    estimated = None
    if state in _NOT_STARTED:
        estimated, start, end = start, None, None
    elif state in _NOT_ENDED:
        end = None
    user, name = _text(job.user_name), _text(job.name)
    cwd, batch_host = _text(job.working_directory), _text(job.batch_host)

    def path(formatted: Any) -> str:
        # Slurm has expanded %A %a %j %u %x and made the path absolute; fill what it
        # leaves (%N, %n, %t, %s) the way slurmstepd would.
        text = _text(formatted)
        if array_job_id and array_task_id is None:
            text = text.replace(_NO_VAL_TEXT, "%a")  # a pending array record's %a
        return expand_output_path(
            text,
            job_id=job_id,
            array_job_id=array_job_id,
            array_task_id=array_task_id,
            user=user,
            job_name=name,
            node=batch_host,
            working_directory=cwd,
        )

    stdout_path = path(job.standard_output)
    time_limit = _opt_int(job.time_limit)
    reason = _text(job.state_reason)
    return JobRecord(
        job_id=job_id,
        source="queue",
        array_job_id=array_job_id,
        array_task_id=array_task_id,
        array_task_spec=_array_spec(job.array_tasks_waiting, job.array_tasks_parallel)
        if array_task_id is None
        else "",
        job_name=name,
        user=user,
        uid=_opt_int(job.user_id),
        account=_text(job.account),
        partition=_text(job.partition),
        qos=_text(job.qos),
        state=state,
        raw_state=_text(job.state),
        state_flags=flags,
        reason="" if reason == "None" else reason,
        exit_code=_int(job.exit_code),
        signal=_int(job.exit_code_signal),
        submit_time=_when(job.submit_time),
        eligible_time=_when(job.eligible_time),
        start_time=start,
        end_time=end,
        estimated_start_time=estimated,
        elapsed_seconds=_elapsed(
            state, start, end, _when(job.suspend_time), _int(job.pre_suspension_time), now
        ),
        time_limit_seconds=time_limit * 60 if time_limit is not None else None,
        node_count=_int(job.num_nodes),
        node_list=_text(job.allocated_nodes),
        cpus=_int(job.cpus),
        ntasks=_int(job.ntasks),
        cpus_per_task=_int(job.cpus_per_task),
        memory_per_node_mib=_int(job.memory_per_node),
        memory_per_cpu_mib=_int(job.memory_per_cpu),
        requested_tres=tres_from_pyslurm(job.requested_tres),
        allocated_tres=tres_from_pyslurm(job.allocated_tres),
        # `gres_per_node` is deprecated in pyslurm 25.11 (tres_per_node cannot read
        # Slurm's `gres/gpu:2` spelling); absent in a later release, gres stays "".
        gres=_gres_text(getattr(job, "gres_per_node", None), prefix="gres/"),
        working_directory=cwd,
        stdout_path=stdout_path,
        stderr_path=path(job.standard_error) or stdout_path,
        dependency=_dependency_text(job.dependencies),
        reservation=_text(job.reservation),
        constraints=_text(job.constraints),
        priority=_int(job.priority),
        batch_host=batch_host,
        restart_count=_int(job.requeue_count),
        comment=_text(job.comment),
    )


def job_step_from_pyslurm(step: Any) -> JobStepRecord:
    """A pyslurm.db.JobStep (accounting, like a `123.batch` row of sacct)."""
    state, _ = summarise_job_state([_text(step.state).upper()] if step.state else [])
    node_list = _text(step.nodelist)
    return JobStepRecord(
        step_id=str(step.id),
        name=_text(step.name),
        state=state,
        raw_state=_text(step.state),
        exit_code=_int(step.exit_code),
        signal=_int(step.exit_code_signal),
        start_time=_when(step.start_time),
        end_time=_when(step.end_time),
        # pyslurm gives None for 0 seconds; sacct's ElapsedRaw says 0.
        elapsed_seconds=_int(step.elapsed_time),
        node_count=_int(step.num_nodes),
        node_list="" if node_list == "None assigned" else node_list,
        ntasks=_int(step.ntasks),
        allocated_tres=tres_from_pyslurm(step.tres),
    )


def accounting_job_from_pyslurm(job: Any, *, steps: bool = True) -> JobRecord:
    """A pyslurm.db.Job (slurmdbd's view, like sacct) as a JobRecord, with its steps
    unless `steps` is False."""
    all_steps = [job_step_from_pyslurm(s) for s in (job.steps or {}).values()]
    state, flags = summarise_job_state([_text(job.state).upper()] if job.state else [])
    exit_code, signal = _int(job.exit_code), _int(job.exit_code_signal)
    batch = next((s for s in all_steps if s.step_id == "batch"), None)
    if (exit_code, signal) == (0, 0) and batch is not None:
        # A cancelled job records 0:0 while its batch step has the signal (0:15).
        exit_code, signal = batch.exit_code, batch.signal
    array_job_id = _int(job.array_id)
    array_task_id = _opt_int(job.array_task_id) if array_job_id else None
    time_limit = _opt_int(job.time_limit)  # "PartitionLimit" when none was asked for
    node_list = _text(job.nodelist)
    reason = _text(job.state_reason)
    srun_tasks = [s.ntasks for s in all_steps if s.step_id.isdigit()]
    stdout_path = _text(job.standard_output)
    return JobRecord(
        job_id=str(job.id),
        source="accounting",
        array_job_id=array_job_id,
        array_task_id=array_task_id,
        array_task_spec=_array_spec(job.array_tasks_waiting, job.array_tasks_parallel)
        if array_job_id and array_task_id is None
        else "",
        job_name=_text(job.name),
        user=_text(job.user_name),
        uid=_opt_int(job.user_id),
        account=_text(job.account),
        partition=_text(job.partition),
        qos=_text(job.qos),
        state=state,
        raw_state=_text(job.state),
        state_flags=flags,
        reason="" if reason == "None" else reason,
        exit_code=exit_code,
        signal=signal,
        submit_time=_when(job.submit_time),
        eligible_time=_when(job.eligible_time),
        start_time=_when(job.start_time),
        end_time=_when(job.end_time),
        elapsed_seconds=_int(job.elapsed_time),  # None for 0 in pyslurm
        time_limit_seconds=time_limit * 60 if time_limit is not None else None,
        node_count=_int(job.num_nodes),
        node_list="" if node_list == "None assigned" else node_list,
        cpus=_int(job.cpus),
        ntasks=max(srun_tasks, default=0),
        # Since 21.08 accounting does not say how memory was requested (per node or
        # per CPU); the total is requested_tres["mem"], as with sacct.
        memory_per_node_mib=0,
        memory_per_cpu_mib=0,
        requested_tres=tres_from_pyslurm(job.requested_tres),
        allocated_tres=tres_from_pyslurm(job.allocated_tres),
        working_directory=_text(job.working_directory),
        stdout_path=stdout_path,
        stderr_path=_text(job.standard_error) or stdout_path,
        reservation=_text(job.reservation),
        constraints=_text(job.constraints),
        priority=_int(job.priority),
        batch_host=batch.node_list if batch is not None else "",
        restart_count=_int(job.requeue_count),
        comment=_text(job.comment),
        steps=tuple(all_steps) if steps else (),
    )


def partition_info_from_pyslurm(part: Any) -> PartitionInfo:
    """A pyslurm.Partition as a PartitionInfo.

    `extra` holds the scontrol keys the rest of the server reads, in scontrol's words
    (UNLIMITED, NONE, ALL, [D-]HH:MM:SS), made from pyslurm's values.
    """
    max_time = _minutes_text(part.max_time, "")
    extra = {
        "PartitionName": _text(part.name),
        "State": _text(part.state),
        "Nodes": _text(part.nodes),
        "TotalNodes": str(_int(part.total_nodes)),
        "TotalCPUs": str(_int(part.total_cpus)),
        "Default": "YES" if part.is_default else "NO",
        "MaxTime": max_time,
        "DefaultTime": _minutes_text(part.default_time, "NONE"),
        "MaxNodes": _limit_text(part.max_nodes),
        "MinNodes": str(_int(part.min_nodes)),
        "MaxCPUsPerNode": _limit_text(part.max_cpus_per_node),
        "AllowAccounts": _text(part.allowed_accounts) or "ALL",
        "AllowGroups": _text(part.allowed_groups) or "ALL",
        "AllowQos": _text(part.allowed_qos) or "ALL",
        "QoS": _text(part.qos) or "N/A",
        "PriorityTier": str(_int(part.priority_tier)),
        "PriorityJobFactor": str(_int(part.priority_job_factor)),
        "OverSubscribe": _text(part.oversubscribe),
        "PreemptMode": _text(part.preempt_mode),
        "Hidden": "YES" if part.is_hidden else "NO",
    }
    # scontrol shows these only when set; pyslurm says ["ALL"] for "not set".
    for key, value in (("DenyAccounts", part.denied_accounts), ("DenyQos", part.denied_qos)):
        if _names(value):
            extra[key] = _text(value)
    # Memory defaults and limits are either per CPU or per node (pyslurm returns None
    # for the other one); 0 per node means UNLIMITED, which pyslurm already says.
    for key, value in (
        ("DefMemPerCPU", part.default_memory_per_cpu),
        ("DefMemPerNode", part.default_memory_per_node),
        ("MaxMemPerCPU", part.max_memory_per_cpu),
        ("MaxMemPerNode", part.max_memory_per_node),
    ):
        if value is not None:
            extra[key] = _limit_text(value)
    return PartitionInfo(
        name=_text(part.name),
        state=_text(part.state).upper() or "UNKNOWN",
        node_list=_text(part.nodes),
        total_nodes=_int(part.total_nodes),
        total_cpus=_int(part.total_cpus),
        is_default=bool(part.is_default),
        max_time=max_time,
        extra=extra,
    )


def node_info_from_pyslurm(node: Any) -> NodeInfo:
    """A pyslurm.Node as a NodeInfo.

    pyslurm's state is Slurm's complete state string, base state first: `IDLE+DRAIN`.
    """
    load = node.cpu_load
    return NodeInfo(
        name=_text(node.name),
        states=tuple(w.upper() for w in _text(node.state).split("+") if w) or ("UNKNOWN",),
        cpus=_int(node.total_cpus),
        alloc_cpus=_int(node.allocated_cpus),
        real_memory_mb=_int(node.real_memory),
        partitions=tuple(node.partitions or ()),
        reason=_text(node.reason),
        gres=_gres_text(node.configured_gres),
        alloc_memory_mb=_int(node.allocated_memory),
        free_memory_mb=_int(node.free_memory),
        cpu_load=float(load) if isinstance(load, (int, float)) else None,
        gres_used=_gres_text(node.allocated_gres),
        features=tuple(node.available_features or ()),
        active_features=tuple(node.active_features or ()),
        sockets=_int(node.sockets),
        cores_per_socket=_int(node.cores_per_socket),
        threads_per_core=_int(node.threads_per_core),
        architecture=_text(node.architecture),
        boot_time=_when(node.boot_time),
        reason_time=_when(node.reason_time),
        reason_user=_text(node.reason_user),
    )


def reservation_from_pyslurm(resv: Any) -> ReservationRecord:
    """A pyslurm.Reservation as a ReservationRecord (flags in scontrol's words)."""
    start, end = _opt_int(resv.start_time), _opt_int(resv.end_time)
    if start and end and end >= start:
        duration: int | None = end - start
    else:
        minutes = _opt_int(resv.duration)
        duration = minutes * 60 if minutes is not None else None
    flags = [
        _RESERVATION_FLAG_WORDS.get(member.name, member.name)
        for member in resv.flags or ()
        if member.name
    ]
    reoccurrence = _text(resv.reoccurrence)  # a str enum: NO, DAILY, WEEKLY, ...
    if reoccurrence and reoccurrence.upper() != "NO":
        flags.append(reoccurrence.upper())
    tres = resv.tres or {}
    return ReservationRecord(
        name=_text(resv.name),
        state="ACTIVE" if resv.is_active else "INACTIVE",
        start_time=_when(start),
        end_time=_when(end),
        duration_seconds=duration,
        node_list=_text(resv.nodes),
        node_count=_int(resv.node_count),
        core_count=_int(resv.cpus),
        users=_names(resv.users),
        accounts=_names(resv.accounts),
        groups=_names(resv.groups),
        partition=_text(resv.partition),
        flags=tuple(flags),
        features=_text(resv.features),
        tres=parse_tres(",".join(f"{k}={v}" for k, v in tres.items())),
    )


def default_account_from_pyslurm(associations: Iterable[Any], user: str, cluster: str) -> str:
    """The account of `user`'s association flagged as default (on `cluster`, if given);
    "" when there is none (no Slurm user record)."""
    for assoc in associations:
        if assoc.user != user or (cluster and assoc.cluster != cluster):
            continue
        if assoc.is_default and assoc.account:
            return str(assoc.account)
    return ""


def slurm_error_from_pyslurm(error: BaseException) -> SlurmError:
    """A pyslurm exception as SlurmUnavailable (controller or slurmdbd unreachable) or
    SlurmError. pyslurm.RPCError carries Slurm's errno and message."""
    if isinstance(error, SlurmError):
        return error
    message = str(error) or type(error).__name__
    errno = getattr(error, "errno", None)
    if errno in _UNREACHABLE_ERRNOS or any(p in message.lower() for p in _UNREACHABLE_PHRASES):
        return SlurmUnavailable(message)
    return SlurmError(message)


# --- The calls, run in a worker process (module-level so they can be pickled) ---


def _load_pyslurm() -> Any:
    return importlib.import_module("pyslurm")


def _is_pyslurm_error(error: BaseException) -> bool:
    pyslurm = sys.modules.get("pyslurm")
    base = getattr(pyslurm, "PyslurmError", None)
    return isinstance(base, type) and isinstance(error, base)


def _run(call: Callable[..., T], *args: Any) -> T:
    """Run `call` in the worker; every failure leaves it as a (picklable) SlurmError."""
    try:
        return call(*args)
    except SlurmError:
        raise
    except ImportError as e:
        raise SlurmError(f"pyslurm cannot be loaded: {e}; {INSTALL_HINT}") from None
    except Exception as e:
        if _is_pyslurm_error(e):
            raise slurm_error_from_pyslurm(e) from None
        # Most likely an API difference in an untested pyslurm release.
        raise SlurmError(f"pyslurm call failed: {type(e).__name__}: {e}") from None


def _probe() -> tuple[str, str]:
    """(pyslurm version, the local cluster's name)."""
    pyslurm = _load_pyslurm()
    settings = importlib.import_module("pyslurm.settings")
    return str(getattr(pyslurm, "__version__", "")), str(settings.LOCAL_CLUSTER or "")


def _ping() -> tuple[tuple[str, ...], str]:
    """(hosts of the controllers that answer, why the others did not)."""
    pyslurm = _load_pyslurm()
    slurmctld = pyslurm.slurmctld
    try:
        return tuple(_text(r.hostname) for r in slurmctld.ping_all()), ""
    except pyslurm.PyslurmError as e:
        # ping_all stops at the first controller that does not answer.
        detail = str(e)
    hosts = []
    for index in (0, 1):  # the primary and the first backup, each on its own
        try:
            hosts.append(_text(slurmctld.ping(index).hostname))
        except pyslurm.PyslurmError:
            continue
    return tuple(hosts), detail


def _version() -> str:
    return _text(_load_pyslurm().slurmctld.Config.load().version)


def _partitions() -> list[PartitionInfo]:
    return [partition_info_from_pyslurm(p) for p in _load_pyslurm().Partitions.load().values()]


def _nodes() -> list[NodeInfo]:
    return [node_info_from_pyslurm(n) for n in _load_pyslurm().Nodes.load().values()]


def _reservations() -> list[ReservationRecord]:
    records = _load_pyslurm().Reservations.load().values()
    return [reservation_from_pyslurm(r) for r in records]


def _queue_jobs(job_ids: Sequence[str], users: Sequence[str]) -> list[JobRecord]:
    now = datetime.now(UTC)
    jobs = [job_record_from_pyslurm(j, now) for j in _load_pyslurm().Jobs.load().values()]
    return select_jobs(jobs, job_ids, users)


def _known_users(users: Sequence[str]) -> list[str]:
    # pyslurm turns names into uids with getpwnam and raises KeyError for unknown ones.
    known = []
    for user in users:
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        known.append(user)
    return known


def _accounting_jobs(
    job_ids: Sequence[str],
    users: Sequence[str],
    start: datetime | None,
    end: datetime | None,
    steps: bool,
    cluster: str,
) -> list[JobRecord]:
    db = _load_pyslurm().db
    numbers = []
    for wanted in job_ids:
        try:
            numbers.append(split_job_id(wanted)[0])
        except ValueError:
            continue
    known_users = _known_users(users)
    if (job_ids and not numbers) or (users and not known_users):
        return []  # only ids or users Slurm cannot know (sacct: "invalid ...")
    conditions: dict[str, Any] = {}
    if numbers:
        conditions["ids"] = sorted(set(numbers))
    if known_users:
        conditions["users"] = known_users
    if cluster:
        conditions["clusters"] = [cluster]
    # Unset times take sacct's defaults (libslurmdb's slurmdb_job_cond_def_start_end):
    # Epoch 0 with job ids, else midnight today; end now.
    if start is not None:
        conditions["start_time"] = int(start.timestamp())
    if end is not None:
        conditions["end_time"] = int(end.timestamp())
    records = db.Jobs.load(db.JobFilter(**conditions)).values()
    jobs = [accounting_job_from_pyslurm(j, steps=steps) for j in records]
    return select_jobs(jobs, job_ids, users)


def _user_default_account(user: str, cluster: str) -> str:
    db = _load_pyslurm().db
    associations = db.Associations.load(db.AssociationFilter(users=[user]))
    return default_account_from_pyslurm(associations.values(), user, cluster)


def _spawn_pool() -> Executor:
    return ProcessPoolExecutor(max_workers=WORKERS, mp_context=multiprocessing.get_context("spawn"))


class PyslurmAdapter:
    """SlurmAdapter over pyslurm (libslurm's API), see the module docstring.

    `executor_factory` makes the executor the calls run in (default: a pool of spawned
    worker processes); tests pass a thread pool.
    """

    def __init__(
        self,
        settings: SlurmConfig,
        *,
        executor_factory: Callable[[], Executor] = _spawn_pool,
        metrics: Metrics | None = None,
    ) -> None:
        self.timeout = settings.command_timeout
        self._executor_factory = executor_factory
        self._executor: Executor | None = None
        # sshare, sreport and sacctmgr (accounts, user associations) have no pyslurm
        # counterpart: those four methods use Slurm's tools.
        self.cli = CommandLineAdapter(settings, metrics)
        self.jobs = self.cli.jobs  # sbatch/scancel run as the caller: Slurm's tools
        self.members = self.cli.members  # sacctmgr, as the caller too
        # Load pyslurm once now (in a worker) so a missing or mismatched pyslurm
        # fails at start-up with a clear message rather than on the first request.
        executor = self._get_executor()
        try:
            future = executor.submit(_run, _probe)
            self.pyslurm_version, local_cluster = future.result(
                timeout=self.timeout + _STARTUP_ALLOWANCE
            )
        except Exception as e:
            self._discard_executor()
            detail = str(e) or f"no answer within {self.timeout + _STARTUP_ALLOWANCE:g} s"
            raise ConfigError(f"adapter 'pyslurm': {detail}") from None
        if settings.cluster and local_cluster and settings.cluster != local_cluster:
            self._discard_executor()
            raise ConfigError(
                f"adapter 'pyslurm' talks to this host's cluster {local_cluster!r} only, "
                f"not cluster = {settings.cluster!r} (use adapter = 'cli' for that)"
            )
        self.cluster = settings.cluster or local_cluster

    def _get_executor(self) -> Executor:
        if self._executor is None:
            self._executor = self._executor_factory()
        return self._executor

    def _discard_executor(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    async def _call(self, call: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        what = call.__name__.lstrip("_")
        try:
            future = loop.run_in_executor(self._get_executor(), _run, call, *args)
            return await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            # The worker finishes (or times out in libslurm) on its own.
            raise SlurmUnavailable(
                f"pyslurm {what} did not answer within {self.timeout:g} s"
            ) from None
        except BrokenProcessPool as e:
            self._discard_executor()
            raise SlurmUnavailable(f"the pyslurm worker process died during {what}: {e}") from None

    async def ping(self) -> ControllerPing:
        started = time.monotonic()
        try:
            hosts, detail = await self._call(_ping)
        except SlurmError as e:
            return ControllerPing(False, (), str(e), time.monotonic() - started)
        if not hosts and not detail:
            detail = "no controller answered"
        return ControllerPing(bool(hosts), hosts, detail, time.monotonic() - started)

    async def version(self) -> str:
        return await self._call(_version)

    async def partitions(self) -> list[PartitionInfo]:
        return await self._call(_partitions)

    async def nodes(self) -> list[NodeInfo]:
        return await self._call(_nodes)

    async def user_default_account(self, user: str) -> str:
        return await self._call(_user_default_account, user, self.cluster)

    async def user_associations(self, user: str) -> UserAssociations:
        return await self.cli.user_associations(user)  # pyslurm: no default QOS

    async def accounts(self, names: Sequence[str]) -> list[AccountInfo]:
        return await self.cli.accounts(names)  # pyslurm: no account records

    async def fair_share(self, user: str) -> list[FairShareInfo]:
        return await self.cli.fair_share(user)  # pyslurm: no shares API

    async def create_reservation(self, request: ReservationOrder) -> ReservationRecord:
        return await self.cli.create_reservation(request)  # scontrol, as the server

    async def delete_reservation(self, name: str) -> None:
        await self.cli.delete_reservation(name)

    async def project_members(self, account: str) -> UserAssociations:
        return await self.cli.project_members(account)  # pyslurm: no default QOS

    async def tres_used_minutes(self, accounts: Sequence[str]) -> dict[str, dict[str, int]]:
        return await self.cli.tres_used_minutes(accounts)  # pyslurm: no shares API

    async def usage(
        self, accounts: Sequence[str], start: datetime, end: datetime
    ) -> list[UsageRecord]:
        return await self.cli.usage(accounts, start, end)  # pyslurm: no usable reports

    async def queue_jobs(
        self, job_ids: Sequence[str] = (), users: Sequence[str] = ()
    ) -> list[JobRecord]:
        return await self._call(_queue_jobs, tuple(job_ids), tuple(users))

    async def accounting_jobs(
        self,
        job_ids: Sequence[str] = (),
        users: Sequence[str] = (),
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        steps: bool = True,
    ) -> list[JobRecord]:
        if start is not None and start >= (end or datetime.now(UTC)):
            return []  # an empty window
        return await self._call(
            _accounting_jobs, tuple(job_ids), tuple(users), start, end, steps, self.cluster
        )

    async def reservations(self) -> list[ReservationRecord]:
        return await self._call(_reservations)
