"""The pyslurm adapter: libslurm's own API through pyslurm, in worker processes.

Written for two pyslurm releases, read in their sdists: 24.11.0 (Slurm 24.11; every
method also run against a live Slurm 24.11.5 controller and slurmdbd, in the root that
scripts/slurm24.sh builds, and compared with the command-line adapter there) and 25.11.2
(Slurm 25.11; stand-ins only). pyslurm builds only against the libslurm of its own
release. Where the two APIs differ, `pyslurm_api()` decides from pyslurm's
`__version__`, in this one place, which calls and attributes exist (`PyslurmApi` lists
every difference); releases below 25.11 take the 24.11 path.

What each SlurmAdapter method uses (25.11 / 24.11 where they differ):

- ping: `slurmctld.ping_all()`; if that fails, `slurmctld.ping(0)` and `ping(1)` one
  by one, so a backup that answers while the primary is down still counts as up.
  24.11 has no ping in `slurmctld`: the old API's `get_controllers()` (the controllers
  of the running configuration) and `slurm_ping(index)` for each of them.
- version: the controller's Slurm version, `slurmctld.Config.load().version`; 24.11's
  Config has no version: the old API's `config().get()["version"]`.
- partitions, nodes: `Partitions.load()`, `Nodes.load()`.
- reservations: `Reservations.load()`; 24.11 has no Reservations: the old API's
  `reservation().get()`, whose flags are Slurm's own flag string (as scontrol prints).
- queue_jobs: `Jobs.load()` (every job the controller holds, as squeue), filtered here.
  24.11's Job has no TRES attributes: the requested and allocated TRES come from the
  old API's `job().get()` (one more RPC, only when some job was selected).
- accounting_jobs: `db.Jobs.load(db.JobFilter(...))`, with the same time-window
  defaults as sacct (libslurmdb applies them); steps come with the jobs. 24.11's
  db.Job and db.JobStep have no TRES attributes either: the old API's
  `slurmdb_jobs().get(jobids=...)` for the jobs found, with TRES ids named through
  `db.TrackableResources.load()` (two more slurmdbd queries).
- user_default_account: `db.Associations.load(db.AssociationFilter(users=[user]))`,
  the association of this cluster flagged as the user's default.
- Falls back to the command-line adapter (a CommandLineAdapter composed here, so
  Slurm's client tools must be installed as well) for what pyslurm does not provide:
  `fair_share` (sshare: pyslurm has no shares API), `usage` (sreport: pyslurm's only
  report call is in its deprecated module and unusable), `accounts` (pyslurm has no
  account records: no description or organisation) and `user_associations` (pyslurm's
  Association has no default QOS); creating and deleting reservations (scontrol) and
  submitting and signalling jobs (sbatch/scancel, run as the caller).

The old API (pyslurm/deprecated.pyx, in both releases) raises ValueError(message,
errno) where the new one raises pyslurm.RPCError; both become SlurmError here.

What pyslurm (24.11 and 25.11 alike) gets wrong and is corrected here, as sacct and
squeue show it: array task 0 comes as None, like "no task" (u32_parse); an accounting
record's waiting array tasks come as slurmdbd's hex bitmap (`0xC`, sacct: `2-3`); an
accounting job that never ran has 0 CPUs and 0 nodes (sacct: the request).

Differences from the command-line adapter that remain (see the tests):

- raw_state of accounting records is the state word only; sacct says `CANCELLED by 0`
  (pyslurm gives the canceller's name, not the uid sacct prints).
- Exit codes of 128 and more without a signal lose 128, the way sacct and pyslurm
  decode them (squeue --json, which the command-line adapter reads, keeps them).
- With pyslurm 25.11 accounting records also carry stdout/stderr paths and the requeue
  count, which the command-line adapter's sacct query does not ask for (24.11 has
  neither, like the command line); steps are always used for the exit status (signal)
  of a cancelled job, its batch host and its task count, even when `steps=False` leaves
  them out of the record (`sacct --allocations` has no step rows, so `cli` leaves those
  at 0/"" there).
- cpus_per_task is 1 where Slurm keeps "not set" (squeue says null, so 0 there); a
  node's cpu_load is 0.0 where Slurm has no reading (None from the command line).
- Node GRES lose socket bindings (`gpu:a100:2`, not `gpu:a100:2(S:0-1)`). With 25.11,
  reservation flags are the ones pyslurm's ReservationFlags knows, in scontrol's
  spelling; with 24.11 they are scontrol's own, but a reservation's groups are not
  available (the old API leaves them out): always ().
- A user id this host cannot name is reported as the number (pyslurm 25.11 does that;
  24.11 raises KeyError, caught here).
- The stdout/stderr path of a pending array's record keeps `%a`; Slurm 23.02+'s
  `squeue --json` (stdout_expanded) has NO_VAL there (`slurm-7_4294967294.out`).

Every pyslurm call blocks in C *while holding the GIL* (pyslurm never releases it),
so a worker thread would still stall the event loop for as long as slurmctld or slurmdbd
takes to answer. Calls therefore run in a small pool of worker processes (spawned, not
forked, so no gRPC state is inherited), each call with `command_timeout`; the pyslurm
objects are translated to this package's dataclasses inside the worker and only those
cross the process boundary. pyslurm is imported only in the workers: on import it sets
RTLD_GLOBAL|RTLD_DEEPBIND for every later extension import of its process.

The translation functions (`job_record_from_pyslurm`, ...) only use attribute access, so
they are tested on simple stand-ins shaped like the pyslurm 24.11.0 and 25.11.2 objects.
"""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
import pwd
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
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

# The pyslurm releases whose API this module was written against (see PyslurmApi).
PYSLURM_API_VERSIONS = ("24.11.0", "25.11.2")
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
# Slurm's ids of the special steps (slurm/slurm.h), as pyslurm names them
# (utils/helpers.pyx humanize_step_id); the old API keys steps by the raw number.
_STEP_NAMES = {
    0xFFFFFFFA: "interactive",  # SLURM_INTERACTIVE_STEP
    0xFFFFFFFB: "batch",  # SLURM_BATCH_SCRIPT
    0xFFFFFFFC: "extern",  # SLURM_EXTERN_CONT
    0xFFFFFFFD: "pending",  # SLURM_PENDING_STEP
}
# Counts at or above this are Slurm's NO_VAL64/INFINITE64 markers, not amounts.
_NO_VAL64 = 0xFFFFFFFFFFFFFFFE
# Jobs per old-API slurmdbd query (a job id list becomes one SQL condition each).
_OLD_API_BATCH = 500


# --- Where pyslurm releases differ: decided here, from pyslurm's version ---


@dataclass(frozen=True)
class PyslurmApi:
    """What the running pyslurm release offers where 24.11 and 25.11 differ.

    `pyslurm_api()` is the one place that decides, from `pyslurm.__version__`; the
    calls below only ask these flags. Differences that need no flag: the old API
    (deprecated.pyx, present in both) raises ValueError(message, errno), not RPCError
    (see `slurm_error_from_pyslurm`); uid_to_name raises KeyError in 24.11 for a uid
    this host cannot name where 25.11 returns the number (see `_user_name`).
    """

    release: tuple[int, int, int]
    # pyslurm.slurmctld.ping_all() / ping(index) / Config.load().version: 25.11
    # (core/slurmctld/base.pyx, config.pyx). 24.11's slurmctld is one module with a
    # Config of cluster, preempt_mode, suspend/resume_program only: the old API's
    # get_controllers(), slurm_ping(index) and config().get()["version"] instead.
    slurmctld_calls: bool
    # pyslurm.Reservations / Reservation / ReservationFlags: 25.11
    # (core/reservation.pyx). 24.11 has no core reservation module: the old API's
    # reservation().get() gives {name: dict} with Slurm's flag string and no groups.
    reservations: bool
    # pyslurm.Job.requested_tres / allocated_tres, pyslurm.db.Job.requested_tres /
    # allocated_tres and pyslurm.db.JobStep.tres: 25.11.1 and later (not in 24.11, nor
    # in 25.11.0). Without them the TRES strings are read through the old API.
    tres: bool
    # The old API's job().get() (deprecated.pyx `job`, with squeue's TRES strings): up
    # to 24.11; 25.11 removed it (and `reservation`, `config`, `slurm_ping`), so with
    # 25.11.0 the queue's records have no TRES. Its slurmdb_jobs and
    # db.TrackableResources.load(name_is_key=...) are still in 25.11.0.
    old_job_table: bool
    # pyslurm.db.Job.standard_output / standard_error / requeue_count: 25.11.1 and
    # later. Not in 24.11 (nor in its old API): "" and 0, as the command line reports.
    accounting_io: bool


def _release(version: str) -> tuple[int, int, int]:
    numbers = [int(n) for n in re.findall(r"\d+", version)[:3]]
    major, minor, micro = (*numbers, 0, 0, 0)[:3]
    return major, minor, micro


def pyslurm_api(version: str) -> PyslurmApi:
    """The API of the pyslurm release `version` (`pyslurm.__version__`, e.g. 24.11.0)."""
    release = _release(version)
    return PyslurmApi(
        release=release,
        slurmctld_calls=release >= (25, 11, 0),
        reservations=release >= (25, 11, 0),
        tres=release >= (25, 11, 1),
        old_job_table=release < (25, 11, 0),
        accounting_io=release >= (25, 11, 1),
    )


def _api(pyslurm: Any) -> PyslurmApi:
    return pyslurm_api(str(getattr(pyslurm, "__version__", "")))


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


def _user_name(record: Any, name: str = "user_name", uid: str | None = "user_id") -> str:
    """A user-name property of a pyslurm object. pyslurm 24.11's uid_to_name raises
    KeyError for a uid this host cannot name (err_on_invalid=True); 25.11 returns the
    uid as text: that is what both give here ("" when there is no uid to show)."""
    try:
        return _text(getattr(record, name))
    except KeyError:
        number = _opt_int(getattr(record, uid)) if uid else None
        return "" if number is None else str(number)


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


def tres_from_ids(text: Any, names: Mapping[int, str]) -> dict[str, int]:
    """slurmdbd's TRES string (`1=2,2=100,4=1,1001=1`: TRES ids, memory in MiB), as the
    old API gives it, as {Slurm TRES name: count} with `names` from
    db.TrackableResources.load(name_is_key=False); unknown ids and markers are left out."""
    out: dict[str, int] = {}
    for item in _text(text).split(","):
        key, _, value = item.partition("=")
        if not key.strip().isdigit() or not value.strip().isdigit():
            continue
        name, count = names.get(int(key)), int(value)
        if name and count < _NO_VAL64:
            out[name] = count
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


def _task_ranges(waiting: str) -> str:
    """slurmdbd keeps the waiting tasks of an array as a hex bitmap (`0xC`: tasks 2 and
    3), which pyslurm passes on as it is; sacct shows ranges (`2-3`), as here."""
    if not waiting.lower().startswith("0x"):
        return waiting
    try:
        mask = int(waiting, 16)
    except ValueError:
        return waiting
    ranges: list[str] = []
    task, top = 0, mask.bit_length()
    while task < top:
        if not mask >> task & 1:
            task += 1
            continue
        first = task
        while task < top and mask >> task & 1:
            task += 1
        ranges.append(str(first) if task - 1 == first else f"{first}-{task - 1}")
    return ",".join(ranges)


def _array_task_id(job: Any, array_job_id: int) -> int | None:
    """The task id of an array job's record; None for the record of its pending tasks.

    pyslurm (24.11 and 25.11, core and db alike) reads array_task_id with u32_parse,
    which turns task 0 into None like NO_VAL: a record of an array that has no task id
    and no tasks waiting (array_task_str) is task 0.
    """
    if not array_job_id:
        return None
    task = _opt_int(job.array_task_id)
    if task is None and not job.array_tasks_waiting:
        return 0
    return task


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


# --- Translation of pyslurm objects ---


def job_record_from_pyslurm(
    job: Any, now: datetime, tres: tuple[dict[str, int], dict[str, int]] | None = None
) -> JobRecord:
    """A pyslurm.Job (the controller's view, like squeue) as a JobRecord.

    `now` is the time elapsed times of running jobs are computed to. `tres` is the
    job's (requested, allocated) TRES for pyslurm releases whose Job has no TRES
    attributes (24.11: see PyslurmApi.tres); None reads them from the Job.
    """
    state, flags = summarise_job_state([_text(job.state).upper()] if job.state else [])
    job_id = str(job.id)
    array_job_id = _int(job.array_id)
    array_task_id = _array_task_id(job, array_job_id)
    start, end = _when(job.start_time), _when(job.end_time)
    estimated = None
    if state in _NOT_STARTED:
        estimated, start, end = start, None, None
    elif state in _NOT_ENDED:
        end = None
    user, name = _user_name(job), _text(job.name)
    cwd, batch_host = _text(job.working_directory), _text(job.batch_host)
    if tres is None:
        tres = tres_from_pyslurm(job.requested_tres), tres_from_pyslurm(job.allocated_tres)

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
        requested_tres=tres[0],
        allocated_tres=tres[1],
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


def job_step_from_pyslurm(step: Any, tres: dict[str, int] | None = None) -> JobStepRecord:
    """A pyslurm.db.JobStep (accounting, like a `123.batch` row of sacct).

    `tres` is the step's allocated TRES where db.JobStep has no `tres` (24.11: see
    PyslurmApi.tres); None reads `step.tres`.
    """
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
        allocated_tres=tres_from_pyslurm(step.tres) if tres is None else tres,
    )


@dataclass(frozen=True)
class AccountingTres:
    """An accounting job's TRES as pyslurm's old API reads them (slurmdb_jobs), for the
    releases whose db.Job and db.JobStep have no TRES attributes (PyslurmApi.tres)."""

    requested: dict[str, int] = field(default_factory=dict)
    allocated: dict[str, int] = field(default_factory=dict)
    steps: dict[str, dict[str, int]] = field(default_factory=dict)  # by step id


def accounting_job_from_pyslurm(
    job: Any,
    *,
    steps: bool = True,
    tres: AccountingTres | None = None,
    with_io: bool = True,
) -> JobRecord:
    """A pyslurm.db.Job (slurmdbd's view, like sacct) as a JobRecord, with its steps
    unless `steps` is False.

    For pyslurm 24.11 (see PyslurmApi): `tres` holds the TRES of the job and its steps
    (None reads them from the objects), and `with_io` False leaves out the
    stdout/stderr paths and requeue count, which 24.11's db.Job does not have.
    """
    all_steps = [
        job_step_from_pyslurm(s, None if tres is None else tres.steps.get(str(s.id), {}))
        for s in (job.steps or {}).values()
    ]
    state, flags = summarise_job_state([_text(job.state).upper()] if job.state else [])
    exit_code, signal = _int(job.exit_code), _int(job.exit_code_signal)
    batch = next((s for s in all_steps if s.step_id == "batch"), None)
    if (exit_code, signal) == (0, 0) and batch is not None:
        # A cancelled job records 0:0 while its batch step has the signal (0:15).
        exit_code, signal = batch.exit_code, batch.signal
    array_job_id = _int(job.array_id)
    array_task_id = _array_task_id(job, array_job_id)
    time_limit = _opt_int(job.time_limit)  # "PartitionLimit" when none was asked for
    node_list = _text(job.nodelist)
    reason = _text(job.state_reason)
    srun_tasks = [s.ntasks for s in all_steps if s.step_id.isdigit()]
    stdout_path = _text(job.standard_output) if with_io else ""
    if tres is None:
        tres = AccountingTres(
            tres_from_pyslurm(job.requested_tres), tres_from_pyslurm(job.allocated_tres)
        )
    return JobRecord(
        job_id=str(job.id),
        source="accounting",
        array_job_id=array_job_id,
        array_task_id=array_task_id,
        array_task_spec=_array_spec(
            _task_ranges(_text(job.array_tasks_waiting)), job.array_tasks_parallel
        )
        if array_job_id and array_task_id is None
        else "",
        job_name=_text(job.name),
        user=_user_name(job),
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
        # pyslurm (24.11 and 25.11) says 0 nodes and 0 CPUs for a job that never ran
        # (its empty allocated TRES string counts as 0, not as "look at the request");
        # sacct shows the request.
        node_count=_int(job.num_nodes) or tres.requested.get("node", 0),
        node_list="" if node_list == "None assigned" else node_list,
        cpus=_int(job.cpus) or tres.requested.get("cpu", 0),
        ntasks=max(srun_tasks, default=0),
        # Since 21.08 accounting does not say how memory was requested (per node or
        # per CPU); the total is requested_tres["mem"], as with sacct.
        memory_per_node_mib=0,
        memory_per_cpu_mib=0,
        requested_tres=tres.requested,
        allocated_tres=tres.allocated,
        working_directory=_text(job.working_directory),
        stdout_path=stdout_path,
        stderr_path=(_text(job.standard_error) if with_io else "") or stdout_path,
        reservation=_text(job.reservation),
        constraints=_text(job.constraints),
        priority=_int(job.priority),
        batch_host=batch.node_list if batch is not None else "",
        restart_count=_int(job.requeue_count) if with_io else 0,
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
        reason_user=_user_name(node, "reason_user", uid=None),
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


def reservation_from_old_api(
    name: str, resv: Mapping[str, Any], now: datetime
) -> ReservationRecord:
    """One entry of the old API's reservation().get() (pyslurm 24.11, which has no
    Reservations class; see PyslurmApi.reservations) as a ReservationRecord.

    The dict has Slurm's own flag string (slurm_reservation_flags_string, what scontrol
    prints, recurrence included) but no groups. A reservation is active from its start
    to its end, as scontrol and pyslurm 25.11 decide.
    """
    start, end = _opt_int(resv.get("start_time")), _opt_int(resv.get("end_time"))
    moment = int(now.timestamp())
    active = bool(start and end and start <= moment <= end)
    return ReservationRecord(
        name=name,
        state="ACTIVE" if active else "INACTIVE",
        start_time=_when(start),
        end_time=_when(end),
        duration_seconds=end - start if start and end and end >= start else None,
        node_list=_text(resv.get("node_list")),
        node_count=_int(resv.get("node_cnt")),
        core_count=_int(resv.get("core_cnt")),
        users=_names(resv.get("users")),
        accounts=_names(resv.get("accounts")),
        groups=(),  # not in the old API's dict
        partition=_text(resv.get("partition")),
        flags=tuple(f.strip().upper() for f in _text(resv.get("flags")).split(",") if f.strip()),
        features=_text(resv.get("features")),
        tres=parse_tres(_text(resv.get("tres_str"))),
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
    SlurmError. pyslurm.RPCError carries Slurm's errno and message; the old API
    (deprecated.pyx, all that pyslurm 24.11 has for some calls) raises
    ValueError(message, errno) instead."""
    if isinstance(error, SlurmError):
        return error
    message = str(error) or type(error).__name__
    errno = getattr(error, "errno", None)
    args = error.args
    if errno is None and len(args) == 2 and isinstance(args[1], int):
        message, errno = str(args[0]) or message, args[1]
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


def _old_api(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call pyslurm's old API (deprecated.pyx), which raises ValueError(message, errno)
    where the new one raises RPCError: as SlurmError or SlurmUnavailable."""
    try:
        return call(*args, **kwargs)
    except ValueError as e:
        raise slurm_error_from_pyslurm(e) from None


def _ping() -> tuple[tuple[str, ...], str]:
    """(hosts of the controllers that answer, why the others did not)."""
    pyslurm = _load_pyslurm()
    if not _api(pyslurm).slurmctld_calls:
        return _ping_old_api(pyslurm)
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


def _ping_old_api(pyslurm: Any) -> tuple[tuple[str, ...], str]:
    """pyslurm 24.11 (no slurmctld.ping_all/ping): the old API's get_controllers(), the
    SlurmctldHost list of the running configuration (an RPC that libslurm sends to a
    backup when the primary does not answer), then slurm_ping(index) for each; both
    raise ValueError(message, errno). Only existing indexes are pinged: libslurm fails
    (and logs to stderr) for a backup that is not configured."""
    try:
        controllers = [_text(c) for c in pyslurm.get_controllers()]
    except ValueError as e:
        return (), str(slurm_error_from_pyslurm(e))  # no controller answered
    hosts, detail = [], ""
    for index, host in enumerate(controllers):
        try:
            pyslurm.slurm_ping(index)
        except ValueError as e:
            detail = detail or f"{host}: {slurm_error_from_pyslurm(e)}"
            continue
        hosts.append(host)
    return tuple(hosts), detail


def _version() -> str:
    pyslurm = _load_pyslurm()
    if not _api(pyslurm).slurmctld_calls:
        # pyslurm 24.11's slurmctld.Config has no `version`: the old API's config().
        return _text(_old_api(lambda: pyslurm.config().get()).get("version"))
    return _text(pyslurm.slurmctld.Config.load().version)


def _partitions() -> list[PartitionInfo]:
    return [partition_info_from_pyslurm(p) for p in _load_pyslurm().Partitions.load().values()]


def _nodes() -> list[NodeInfo]:
    return [node_info_from_pyslurm(n) for n in _load_pyslurm().Nodes.load().values()]


def _reservations() -> list[ReservationRecord]:
    pyslurm = _load_pyslurm()
    if not _api(pyslurm).reservations:
        # pyslurm 24.11 has no pyslurm.Reservations: the old API's {name: dict}.
        now = datetime.now(UTC)
        found = _old_api(lambda: pyslurm.reservation().get())
        return [reservation_from_old_api(str(n), r, now) for n, r in found.items()]
    return [reservation_from_pyslurm(r) for r in pyslurm.Reservations.load().values()]


def _queue_jobs(job_ids: Sequence[str], users: Sequence[str]) -> list[JobRecord]:
    pyslurm = _load_pyslurm()
    now = datetime.now(UTC)
    loaded = pyslurm.Jobs.load().values()
    api = _api(pyslurm)
    if api.tres:
        return select_jobs([job_record_from_pyslurm(j, now) for j in loaded], job_ids, users)
    # pyslurm 24.11's Job has no requested_tres/allocated_tres: select first, then read
    # the TRES strings (squeue's tres_req_str/tres_alloc_str) from the old API's job
    # table, a second RPC. A job that ended in between keeps {}.
    jobs = select_jobs(
        [job_record_from_pyslurm(j, now, tres=({}, {})) for j in loaded], job_ids, users
    )
    if not jobs or not api.old_job_table:
        return jobs
    table: Mapping[Any, Mapping[str, Any]] = _old_api(lambda: pyslurm.job().get())
    by_id = {str(k): v for k, v in table.items()}
    out = []
    for job in jobs:
        old = by_id.get(job.job_id)
        if old is not None:
            job = replace(
                job,
                requested_tres=parse_tres(_text(old.get("tres_req_str"))),
                allocated_tres=parse_tres(_text(old.get("tres_alloc_str"))),
            )
        out.append(job)
    return out


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
    pyslurm = _load_pyslurm()
    api, db = _api(pyslurm), pyslurm.db
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
    records = list(db.Jobs.load(db.JobFilter(**conditions)).values())
    if api.tres:
        jobs = [accounting_job_from_pyslurm(j, steps=steps) for j in records]
        return select_jobs(jobs, job_ids, users)
    # pyslurm 24.11's db.Job/db.JobStep have no TRES (nor stdout/stderr/requeue count):
    # select first, then read the TRES of the jobs selected through the old API.
    blank = AccountingTres()
    by_id: dict[str, Any] = {}
    jobs = []
    for record in records:
        job = accounting_job_from_pyslurm(
            record, steps=steps, tres=blank, with_io=api.accounting_io
        )
        by_id[job.job_id] = record
        jobs.append(job)
    selected = select_jobs(jobs, job_ids, users)
    tres = _accounting_tres_old_api(pyslurm, [int(j.job_id) for j in selected], cluster)
    return [
        accounting_job_from_pyslurm(
            by_id[j.job_id],
            steps=steps,
            tres=tres.get(int(j.job_id), blank),
            with_io=api.accounting_io,
        )
        for j in selected
    ]


def _accounting_tres_old_api(
    pyslurm: Any, job_ids: Sequence[int], cluster: str
) -> dict[int, AccountingTres]:
    """The TRES of `job_ids` (and of their steps) from slurmdbd through the old API's
    slurmdb_jobs().get(jobids=...), TRES ids named by db.TrackableResources.load(
    name_is_key=False): for pyslurm 24.11, whose db objects do not show them. Without
    a time window the old API applies none, so the ids alone select the records."""
    wanted = sorted(set(job_ids))
    if not wanted:
        return {}
    loaded = pyslurm.db.TrackableResources.load(name_is_key=False)
    names = {int(k): _text(t.type_and_name) for k, t in loaded.items()}
    out: dict[int, AccountingTres] = {}
    for first in range(0, len(wanted), _OLD_API_BATCH):
        batch = [str(i) for i in wanted[first : first + _OLD_API_BATCH]]
        found = _old_api(
            lambda batch=batch: pyslurm.slurmdb_jobs().get(
                jobids=batch, clusters=[cluster] if cluster else []
            )
        )
        for job_id, job in found.items():
            steps = {
                _STEP_NAMES.get(int(k), str(k)): tres_from_ids(step.get("tres_alloc_str"), names)
                for k, step in (job.get("steps") or {}).items()
            }
            out[int(job_id)] = AccountingTres(
                requested=tres_from_ids(job.get("tres_req_str"), names),
                allocated=tres_from_ids(job.get("tres_alloc_str"), names),
                steps=steps,
            )
    return out


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
