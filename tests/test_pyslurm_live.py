"""pyslurm 24.11 against a live Slurm 24.11: the first test of pyslurm on real daemons.

Runs INSIDE the Debian trixie root of `scripts/slurm24.sh` (cluster `hpcgate24`, its own
ports, pyslurm 24.11.0 built from shared/vendor against the root's libslurm):

    bash scripts/slurm24.sh up
    bash scripts/slurm24.sh run pytest -q -m pyslurm_live tests/test_pyslurm_live.py

`scripts/slurm24.sh run` sets HPCGATE_SLURM24=1 and SLURM_CONF. On the host (Slurm 22.05,
no pyslurm) the `pyslurm_live` marker keeps these tests out of the normal runs; asked for
there anyway, they skip, or fail when CI=true (like every missing dependency in CI).

pyslurm is imported inside the fixture, not at module level: `import pyslurm` connects
libslurm to the configuration in SLURM_CONF at import time, and must not break the
collection of the host's suite.

The first tests use pyslurm itself. The rest build both Slurm adapters the way the gateway
does (factory.make_adapter on the default system, slurm.adapter "pyslurm" and "cli") and
run every method of the SlurmAdapter port through the pyslurm one, on jobs they submit,
signal and cancel as alice through the adapter's JobControl (sbatch/scancel argv, as
ComputeService runs them): one that completes with an srun step, one that fails with exit
3, one running, an array 0-3%2, one held, one pending on a dependency with a comment. Each
job is read through both adapters, from the queue while slurmctld has it and from
accounting once it has ended, and every JobRecord field must be equal but for the
`Allowed` differences below, each with its reason. Everything submitted is scancelled and
every reservation deleted, whatever happens.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import pwd
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from conftest import require
from hpcgate.server import config as config_module
from hpcgate.server.config import SystemConfig
from hpcgate.server.metrics import Metrics
from hpcgate.server.slurm.adapter import (
    JobRecord,
    JobStepRecord,
    ReservationOrder,
    SlurmAdapter,
)
from hpcgate.server.slurm.cli_adapter import CommandLineAdapter
from hpcgate.server.slurm.factory import make_adapter
from hpcgate.server.slurm.parsing import job_matches
from hpcgate.server.slurm.pyslurm_adapter import PyslurmAdapter
from slurm_accounts import remove_limit_accounts

pytestmark = pytest.mark.pyslurm_live

CLUSTER = "hpcgate24"
NODE = socket.gethostname().split(".")[0]
# Jobs stay in slurmctld for MinJobAge=15 s after they end; slurmdbd has them for good.
JOB_WAIT = 60.0


@pytest.fixture(scope="module")
def pyslurm() -> ModuleType:
    require(
        os.environ.get("HPCGATE_SLURM24") == "1",
        "runs inside the Slurm 24.11 root: "
        "bash scripts/slurm24.sh run pytest -m pyslurm_live tests/test_pyslurm_live.py",
    )
    remove_limit_accounts()  # an earlier, failed run's: they would add to alice's
    try:
        return importlib.import_module("pyslurm")
    except ImportError as e:
        require(False, f"pyslurm is not importable in the root ({e}): bash scripts/slurm24.sh up")
        raise


def wait_for(what: str, probe: Any, timeout: float = JOB_WAIT) -> Any:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def test_pyslurm_is_24_11_against_libslurm_24_11(pyslurm: ModuleType) -> None:
    assert pyslurm.__version__.startswith("24.11."), pyslurm.__version__
    # The headers pyslurm was compiled with: SLURM_VERSION_NUMBER as (major, minor, micro).
    major, minor, _ = pyslurm.slurm_api_version()
    assert (major, minor) == (24, 11)


def test_ping_and_config(pyslurm: ModuleType) -> None:
    # pyslurm 24.11 has no pyslurm.slurmctld.ping(): the old API's slurm_ping(index)
    # returns 0, or raises ValueError(message, errno).
    assert pyslurm.slurm_ping(0) == 0
    config = pyslurm.slurmctld.Config.load()
    assert config.cluster == CLUSTER


def test_partitions(pyslurm: ModuleType) -> None:
    partitions = pyslurm.Partitions.load()
    assert set(partitions) >= {"debug", "long"}
    debug, long = partitions["debug"], partitions["long"]
    assert debug.is_default and not long.is_default
    assert debug.state == "UP"
    assert debug.max_time == 60  # minutes
    assert long.max_time == 2 * 24 * 60
    assert debug.nodes == NODE


def test_nodes(pyslurm: ModuleType) -> None:
    nodes = pyslurm.Nodes.load()
    assert NODE in nodes
    node = nodes[NODE]
    assert node.total_cpus == 8
    assert node.real_memory == 8000  # MiB
    assert node.slurm_version.startswith("24.11.")
    assert set(node.partitions) == {"debug", "long"}
    assert node.state.split("+")[0] in {"IDLE", "MIXED", "ALLOCATED", "COMPLETING"}, node.state


def test_submit_as_alice_and_read_back(pyslurm: ModuleType) -> None:
    alice = pwd.getpwnam("alice")
    marker = f"pyslurm-live-{uuid.uuid4().hex[:8]}"
    out = Path(f"/tmp/{marker}.out")
    # root may submit on another user's behalf: user_id/group_id of the description.
    desc = pyslurm.JobSubmitDescription(
        name=marker,
        user_id=alice.pw_uid,
        group_id=alice.pw_gid,
        account="alpha",
        partitions="debug",
        # minutes: an int or "H:MM:SS"; pyslurm 24.11 passes a digits-only str ("5")
        # through unconverted and fails with TypeError.
        time_limit=5,
        ntasks=1,
        memory_per_cpu="100M",
        working_directory="/tmp",
        standard_output=str(out),
        environment={"PATH": "/usr/bin:/bin", "HOME": alice.pw_dir},
        script=f"#!/bin/sh\necho {marker} $(id -un)\n",
    )
    job_id = desc.submit()
    assert isinstance(job_id, int) and job_id > 0

    # The controller's view, while it has the job.
    job = pyslurm.Job.load(job_id)
    assert job.id == job_id
    assert job.name == marker
    assert job.user_name == "alice"
    assert job.account == "alpha"
    assert job.partition == "debug"
    assert job.state in {"PENDING", "RUNNING", "COMPLETING", "COMPLETED"}, job.state
    assert job_id in pyslurm.Jobs.load()

    seen: list[str] = []

    def finished() -> Any:
        job = pyslurm.Job.load(job_id)
        seen[:] = [f"{job.state} ({job.state_reason})"]
        return job.state if job.state in {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"} else None

    try:
        assert wait_for(f"job {job_id} to end", finished) == "COMPLETED"
    except BaseException:
        # A reservation left on the node by another test keeps the job pending: say so.
        pyslurm.Job(job_id).cancel()
        reservations = sorted(pyslurm.reservation().get())
        pytest.fail(f"job {job_id} ended as / stayed {seen}; reservations: {reservations}")
    try:
        assert out.read_text().split() == [marker, "alice"]
        assert out.stat().st_uid == alice.pw_uid
    finally:
        out.unlink(missing_ok=True)

    # slurmdbd's view (sacct): a filter by id, and one job.
    def in_db() -> Any:
        jobs = pyslurm.db.Jobs.load(pyslurm.db.JobFilter(ids=[job_id]))
        return jobs if job_id in jobs and jobs[job_id].state == "COMPLETED" else None

    db_job = wait_for(f"job {job_id} in slurmdbd", in_db)[job_id]
    assert db_job.name == marker
    assert db_job.user_name == "alice"
    assert db_job.account == "alpha"
    assert db_job.cluster == CLUSTER
    assert db_job.exit_code == 0
    one = pyslurm.db.Job.load(job_id)
    assert one.id == job_id and one.state == "COMPLETED"
    assert {s.id for s in one.steps.values()} >= {"batch"}


def test_reservations_through_the_old_api(pyslurm: ModuleType) -> None:
    # pyslurm 24.11 has no pyslurm.Reservations (25.11 has): the old API's
    # reservation().get() gives {name: dict}.
    name = f"pyslurm-live-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["scontrol", "create", "reservation", f"reservationname={name}", "users=alice",
         f"nodes={NODE}", "starttime=now+1hour", "duration=30", "flags=ignore_jobs"],
        check=True, capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    try:
        reservations = pyslurm.reservation().get()
        assert name in reservations
        assert reservations[name]["users"] == ["alice"]
        assert reservations[name]["node_list"] == NODE
    finally:
        subprocess.run(["scontrol", "delete", f"reservationname={name}"], check=False, timeout=20)


# --- Both adapters, as the server builds them, on the same live cluster ---
#
# The gateway makes one adapter per system with factory.make_adapter(system, metrics):
# here the built-in default system with slurm.adapter "pyslurm" and "cli". Jobs are
# submitted, signalled and cancelled the way ComputeService does it: the adapter's
# JobControl builds sbatch's and scancel's argv, which run as the caller (alice).


@dataclass(frozen=True)
class Adapters:
    py: PyslurmAdapter
    cli: CommandLineAdapter


def system_config(adapter: str) -> SystemConfig:
    """The built-in default system (the local cluster) with this Slurm adapter."""
    system = config_module.parse({}).systems[0]
    return replace(system, slurm=replace(system.slurm, adapter=adapter))


@pytest.fixture(scope="module")
def adapters(pyslurm: ModuleType) -> Iterator[Adapters]:
    metrics = Metrics(CollectorRegistry())
    py = make_adapter(system_config("pyslurm"), metrics)
    cli = make_adapter(system_config("cli"), metrics)
    assert isinstance(py, PyslurmAdapter) and isinstance(cli, CommandLineAdapter)
    assert py.pyslurm_version.startswith("24.11.") and py.cluster == CLUSTER
    try:
        yield Adapters(py, cli)
    finally:
        py._discard_executor()  # the spawned worker processes


@dataclass(frozen=True)
class Caller:
    """Runs Slurm's tools as a user, as the compute domain does (through privsep): the
    user's uid, gid and groups, a plain environment, a working directory."""

    name: str
    uid: int
    gid: int
    home: str

    def run(self, argv: list[str], cwd: Path, stdin: str | None = None) -> Any:
        env = {"PATH": "/usr/bin:/bin", "HOME": self.home, "USER": self.name,
               "LOGNAME": self.name, "SLURM_CONF": os.environ.get("SLURM_CONF", "")}  # fmt: skip
        return subprocess.run(
            argv, input=stdin, cwd=cwd, env=env, user=self.uid, group=self.gid,
            extra_groups=os.getgrouplist(self.name, self.gid), capture_output=True,
            text=True, timeout=30, check=False,
        )  # fmt: skip


@dataclass(frozen=True)
class LiveJobs:
    """The jobs of one module run, submitted as alice, by role."""

    alice: Caller
    tag: str  # in every job name, `TAG-done`, ...
    directory: Path  # alice's; the jobs' working directory and output
    submitted_at: datetime
    done: str  # an srun step, exit 0 (stdout and stderr files named with %x-%j)
    failed: str  # exit 3
    running: str  # runs until cancelled; its batch shell traps SIGUSR1
    array: str  # --array=0-3%2: tasks 0 and 1 run (until cancelled), 2-3 wait
    held: str  # --hold, then cancelled
    waiting: str  # --dependency=afterok:<running> and a comment, then cancelled

    @property
    def ids(self) -> list[str]:
        return [self.done, self.failed, self.running, self.array, self.held, self.waiting]

    def roles(self, records: list[JobRecord]) -> dict[str, JobRecord]:
        """Our records among `records`, by role: `done`, ..., `array[0]`, `array[2-3%2]`."""
        names = {self.done: "done", self.failed: "failed", self.running: "running",
                 self.held: "held", self.waiting: "waiting"}  # fmt: skip
        out = {}
        for record in records:
            if record.array_job_id == int(self.array):
                task = record.array_task_id
                out[f"array[{record.array_task_spec if task is None else task}]"] = record
            elif record.job_id in names:
                out[names[record.job_id]] = record
        return out

    def lookup_ids(self) -> list[str]:
        """Ids that name every record of ours: the array's tasks that ran by task (`N`
        alone is one record, the one with id N: here the record of tasks 2-3, which never
        ran; sacct -j N_2 does not find those, see test_accounting_records_...)."""
        tasks = [f"{self.array}_0", f"{self.array}_1", self.array]
        return [self.done, self.failed, self.running, self.held, self.waiting, *tasks]


# Base job options: short limits (a reservation test starts hours ahead), small requests.
BASE_OPTIONS = ["--account=alpha", "--partition=debug", "--time=5"]
SLEEPER = "#!/bin/sh\nwhile :; do sleep 1; done\n"


def submit(
    adapters: Adapters, jobs_dir: Path, alice: Caller, options: list[str], script: str,
    comment: str | None = None,
) -> str:  # fmt: skip
    """Submit as alice through the pyslurm adapter's JobControl (sbatch, script on stdin)."""
    control = adapters.py.jobs
    argv = control.submit_argv([*BASE_OPTIONS, *options], comment=comment)
    result = alice.run(argv, jobs_dir, stdin=script)
    assert result.returncode == 0, control.submit_refusal(result.stderr)
    job_id = control.submitted_job_id(result.stdout)
    assert job_id is not None, result.stdout
    return job_id


@pytest.fixture(scope="module")
def live_jobs(adapters: Adapters) -> Iterator[LiveJobs]:
    """Submits the jobs; scancels every one of them and removes their directory after,
    whatever happened."""
    entry = pwd.getpwnam("alice")
    alice = Caller("alice", entry.pw_uid, entry.pw_gid, entry.pw_dir)
    tag = f"live-{uuid.uuid4().hex[:6]}"
    jobs_dir = Path(f"/tmp/hpcgate-{tag}")
    jobs_dir.mkdir(mode=0o755)
    os.chown(jobs_dir, alice.uid, alice.gid)
    submitted: list[str] = []

    def job(options: list[str], script: str, comment: str | None = None) -> str:
        submitted.append(submit(adapters, jobs_dir, alice, options, script, comment))
        return submitted[-1]

    try:
        started = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
        small = ["--ntasks=1", "--mem-per-cpu=100M"]
        done = job([f"--job-name={tag}-done", *small, "--output=%x-%j.out", "--error=%x-%j.err"],
                   "#!/bin/sh\nsrun --ntasks=1 hostname\n")  # fmt: skip
        failed = job([f"--job-name={tag}-failed", *small], "#!/bin/sh\necho no >&2\nexit 3\n")
        running = job(
            [f"--job-name={tag}-running", "--ntasks=1", "--cpus-per-task=2", "--mem=200M"],
            "#!/bin/sh\ntrap 'echo usr1 > usr1' USR1\nwhile :; do sleep 1; done\n",
        )
        array = job([f"--job-name={tag}-array", *small, "--array=0-3%2"], SLEEPER)
        held = job([f"--job-name={tag}-held", *small, "--hold"], SLEEPER)
        waiting = job(
            [f"--job-name={tag}-waiting", *small, f"--dependency=afterok:{running}"],
            SLEEPER,
            comment=f"{tag} waits for {running}",
        )
        yield LiveJobs(alice, tag, jobs_dir, started, done, failed, running, array, held, waiting)
    finally:
        if submitted:
            subprocess.run(["scancel", *submitted], capture_output=True, timeout=30, check=False)
        shutil.rmtree(jobs_dir, ignore_errors=True)


async def settle(
    what: str,
    probe: Callable[[], Awaitable[Any]],
    seen: Mapping[str, Any] | None = None,
    timeout: float = JOB_WAIT,
) -> Any:
    """Poll `probe` until it returns something truthy; after `timeout`, fail with `what`
    and what `probe` last put in `seen`."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {seen}")
        await asyncio.sleep(0.3)


def summary(records: Mapping[str, JobRecord]) -> dict[str, str]:
    return {k: r.state + (f" ({r.reason})" if r.reason else "") for k, r in sorted(records.items())}


# --- Field parity: the differences each comparison allows, each with its reason ---


@dataclass(frozen=True)
class Allowed:
    """A field that may differ between the pyslurm record (`mine`) and the command
    line's (`theirs`) when `holds(mine, theirs)`; `why` says why."""

    field: str
    why: str
    holds: Callable[[Any, Any], bool]


ELAPSED_WHILE_RUNNING = Allowed(
    "elapsed_seconds",
    "a running job's run time is computed to the moment of each read (reads are apart)",
    lambda m, t: m.state == "RUNNING" and abs(m.elapsed_seconds - t.elapsed_seconds) <= 3,
)


def pending_array_path(name: str) -> Allowed:
    def holds(m: JobRecord, t: JobRecord) -> bool:
        mine, theirs = getattr(m, name), getattr(t, name)
        return (
            bool(m.array_job_id)
            and m.array_task_id is None
            and mine.replace("%a", "4294967294") == theirs
        )

    return Allowed(
        name, "the pending array record's path keeps %a; squeue --json has NO_VAL there", holds
    )


PENDING_ARRAY_PATHS = [pending_array_path("stdout_path"), pending_array_path("stderr_path")]
CANCELLED_BY = Allowed(
    "raw_state",
    "sacct says `CANCELLED by <uid>`; pyslurm's db record has the state word only",
    lambda m, t: m.raw_state == "CANCELLED" and t.raw_state.startswith("CANCELLED by "),
)
QUEUE_ALLOWED = [ELAPSED_WHILE_RUNNING, *PENDING_ARRAY_PATHS]
ACCOUNTING_ALLOWED = [CANCELLED_BY]
STEP_ALLOWED: list[Allowed] = []  # steps: no exception (sacct says CANCELLED, no "by")
# accounting_jobs(steps=False): sacct --allocations lists no step rows, while pyslurm's
# db records always come with their steps, from which the adapter still takes these
# (test_accounting_records_without_steps checks they are the values WITH steps).
STEPLESS_ALLOWED = [
    CANCELLED_BY,
    Allowed(
        "signal",
        "a cancelled job records 0:0; the signal is its batch step's, a step row",
        lambda m, t: m.state == "CANCELLED" and (t.exit_code, t.signal) == (0, 0),
    ),
    Allowed(
        "batch_host",
        "the batch step's node, a step row",
        lambda m, t: t.batch_host == "" and m.batch_host == m.node_list,
    ),
    Allowed("ntasks", "the largest srun step's task count, a step row", lambda m, t: t.ntasks == 0),
]


def differences(mine: Any, theirs: Any, allowed: list[Allowed]) -> dict[str, tuple[Any, Any]]:
    """Every dataclass field of `mine` and `theirs` that differs and is not allowed to;
    a JobRecord's steps are compared step by step (as `steps[ID].field`)."""
    out: dict[str, tuple[Any, Any]] = {}
    for f in fields(mine):
        a, b = getattr(mine, f.name), getattr(theirs, f.name)
        if a == b:
            continue
        if f.name == "steps" and isinstance(mine, JobRecord):
            out.update(step_differences(a, b))
            continue
        if any(rule.field == f.name and rule.holds(mine, theirs) for rule in allowed):
            continue
        out[f.name] = (a, b)
    return out


def step_differences(
    mine: tuple[JobStepRecord, ...], theirs: tuple[JobStepRecord, ...]
) -> dict[str, tuple[Any, Any]]:
    if [s.step_id for s in mine] != [s.step_id for s in theirs]:
        return {"steps": ([s.step_id for s in mine], [s.step_id for s in theirs])}
    out = {}
    for a, b in zip(mine, theirs, strict=True):
        for name, pair in differences(a, b, STEP_ALLOWED).items():
            out[f"steps[{a.step_id}].{name}"] = pair
    return out


async def same_records(
    what: str,
    read: Callable[[SlurmAdapter], Awaitable[dict[str, JobRecord]]],
    adapters: Adapters,
    allowed: list[Allowed],
    expected: set[str],
    attempts: int = 4,
) -> dict[str, JobRecord]:
    """Read the same records through both adapters (the command line first) and assert
    each pair equal, field by field, but for `allowed`. A pair that differs is read
    again (a job may move on between the two reads) up to `attempts` times."""
    for attempt in range(attempts):
        theirs = await read(adapters.cli)
        mine = await read(adapters.py)
        assert set(theirs) == expected, (what, summary(theirs))
        assert set(mine) == expected, (what, summary(mine))
        diffs = {k: d for k in sorted(expected) if (d := differences(mine[k], theirs[k], allowed))}
        if not diffs:
            return mine
        if attempt < attempts - 1:
            await asyncio.sleep(0.5)
    names = {k: sorted(d) for k, d in diffs.items()}
    pytest.fail(f"{what}: pyslurm and the command line differ in {names}: {diffs}")


# --- The queue ---

QUEUED = {
    "done": ("COMPLETED", None),
    "failed": ("FAILED", None),
    "running": ("RUNNING", None),
    "array[0]": ("RUNNING", None),
    "array[1]": ("RUNNING", None),
    "array[2-3%2]": ("PENDING", None),
    "held": ("PENDING", "JobHeldUser"),
    "waiting": ("PENDING", "Dependency"),
}


def queue_reader(jobs: LiveJobs) -> Callable[[SlurmAdapter], Awaitable[dict[str, JobRecord]]]:
    async def read(adapter: SlurmAdapter) -> dict[str, JobRecord]:
        return jobs.roles(await adapter.queue_jobs(users=["alice"]))

    return read


def in_states(
    records: Mapping[str, JobRecord], wanted: Mapping[str, tuple[str, str | None]]
) -> bool:
    return set(records) == set(wanted) and all(
        records[k].state == state and (reason is None or records[k].reason == reason)
        for k, (state, reason) in wanted.items()
    )


@pytest.fixture(scope="module")
async def queued(adapters: Adapters, live_jobs: LiveJobs) -> LiveJobs:
    """The jobs once the queue shows each as QUEUED says (both adapters)."""
    read = queue_reader(live_jobs)
    seen: dict[str, Any] = {}

    async def probe() -> bool:
        for name, adapter in (("cli", adapters.cli), ("pyslurm", adapters.py)):
            records = await read(adapter)
            seen[name] = summary(records)
            if not in_states(records, QUEUED):
                return False
        return True

    await settle(f"the jobs' queue states {QUEUED}", probe, seen)
    return live_jobs


async def test_queue_records_match_the_command_line(adapters: Adapters, queued: LiveJobs) -> None:
    records = await same_records(
        "queue", queue_reader(queued), adapters, QUEUE_ALLOWED, set(QUEUED)
    )
    # What the translation had to get right, beyond agreeing with squeue.
    done, failed, running = records["done"], records["failed"], records["running"]
    assert done.stdout_path == f"{queued.directory}/{done.job_name}-{done.job_id}.out"
    assert done.stderr_path == f"{queued.directory}/{done.job_name}-{done.job_id}.err"
    assert Path(done.stdout_path).read_text().split() == [NODE]  # from its srun step
    assert (failed.exit_code, failed.signal) == (3, 0)
    assert running.cpus_per_task == 2 and running.memory_per_node_mib == 200
    assert running.requested_tres["cpu"] == 2 and running.allocated_tres["mem"] == 200
    assert records["array[0]"].array_task_id == 0  # pyslurm says None for task 0
    pending = records["array[2-3%2]"]
    assert pending.array_task_spec == "2-3%2" and pending.stdout_path.endswith("_%a.out")
    waiting = records["waiting"]
    assert waiting.dependency == f"afterok:{queued.running}"
    assert waiting.comment == f"{queued.tag} waits for {queued.running}"
    assert records["held"].priority == 0


async def test_queue_selection_by_ids_and_users(adapters: Adapters, queued: LiveJobs) -> None:
    array = queued.array
    # Unknown ids are left out. (Not a malformed id: squeue then refuses the whole list,
    # so the command line gives [], where pyslurm's selection skips just that id.)
    by_ids = [queued.running, f"{array}_0", "999999999"]
    for adapter in (adapters.py, adapters.cli):
        named = queued.roles(await adapter.queue_jobs(job_ids=by_ids))
        assert set(named) == {"running", "array[0]"}, summary(named)
        assert set(queued.roles(await adapter.queue_jobs())) == set(QUEUED)
        assert set(queued.roles(await adapter.queue_jobs(users=["alice"]))) == set(QUEUED)
        assert queued.roles(await adapter.queue_jobs(users=["bob"])) == {}
        assert await adapter.queue_jobs(users=["no-such-user-xyz"]) == []
        assert await adapter.queue_jobs(job_ids=["999999999"]) == []
    # A waiting task: its pending array record. pyslurm's selection keeps the record as
    # it is (tasks 2-3%2); squeue --json --jobs=N_3 narrows it to the task asked for.
    # Both are the record job_matches() takes for N_3 (what GetJob does with it).
    task = f"{array}_3"
    (mine,) = await adapters.py.queue_jobs(job_ids=[task])
    (theirs,) = await adapters.cli.queue_jobs(job_ids=[task])
    assert (mine.job_id, mine.array_task_id, mine.array_task_spec) == (array, None, "2-3%2")
    assert (theirs.job_id, theirs.array_task_id, theirs.array_task_spec) == (array, 3, "")
    assert job_matches(mine, task) and job_matches(theirs, task)


# --- Signalling and cancelling (as the caller), then the ended jobs ---

CANCELLED = {
    "done": ("COMPLETED", None),
    "failed": ("FAILED", None),
    "running": ("CANCELLED", None),
    "array[0]": ("CANCELLED", None),
    "array[1]": ("CANCELLED", None),
    "array[2-3%2]": ("CANCELLED", None),
    "held": ("CANCELLED", None),
    "waiting": ("CANCELLED", None),
}


async def test_signal_and_cancel_as_the_caller(adapters: Adapters, queued: LiveJobs) -> None:
    control, alice, where = adapters.py.jobs, queued.alice, queued.directory
    # CancelJob with a signal: scancel --signal=USR1 --batch, as alice.
    result = alice.run(control.cancel_argv(queued.running, signal="USR1", batch_only=True), where)
    assert result.returncode == 0, control.cancel_refusal(result.stderr)

    async def trapped() -> bool:
        return (where / "usr1").exists()

    await settle("the batch shell to trap SIGUSR1", trapped)
    (running,) = await adapters.py.queue_jobs(job_ids=[queued.running])
    assert running.state == "RUNNING"  # signalled, not ended
    # (Slurm 24.11's scancel of an unknown job says nothing and exits 0 unless -v; a
    # signal for one it refuses.)
    refused = alice.run(control.cancel_argv("999999999", signal="USR1"), where)
    assert (
        refused.returncode != 0
        and "Invalid job id" in control.cancel_refusal(refused.stderr).message
    )
    for job_id in (queued.waiting, queued.held, queued.array, queued.running):
        result = alice.run(control.cancel_argv(job_id), where)
        assert result.returncode == 0, (job_id, control.cancel_refusal(result.stderr))
    read = queue_reader(queued)

    async def cancelled() -> bool:
        return in_states(await read(adapters.cli), CANCELLED) and in_states(
            await read(adapters.py), CANCELLED
        )

    await settle("the cancelled jobs in the queue", cancelled)
    # The ended records, while slurmctld still has them (MinJobAge).
    await same_records("queue after scancel", read, adapters, QUEUE_ALLOWED, set(CANCELLED))


def accounting_reader(
    jobs: LiveJobs, steps: bool = True
) -> Callable[[SlurmAdapter], Awaitable[dict[str, JobRecord]]]:
    async def read(adapter: SlurmAdapter) -> dict[str, JobRecord]:
        return jobs.roles(await adapter.accounting_jobs(jobs.lookup_ids(), steps=steps))

    return read


@pytest.fixture(scope="module")
async def ended(adapters: Adapters, queued: LiveJobs) -> LiveJobs:
    """The jobs once every one has ended and slurmdbd has recorded it (both adapters).
    Cancels what test_signal_and_cancel_as_the_caller did not (when run alone)."""
    subprocess.run(["scancel", *queued.ids], capture_output=True, timeout=30, check=False)
    read = accounting_reader(queued, steps=False)
    seen: dict[str, Any] = {}

    async def recorded() -> bool:
        for name, adapter in (("cli", adapters.cli), ("pyslurm", adapters.py)):
            records = await read(adapter)
            seen[name] = summary(records)
            if not in_states(records, CANCELLED) or any(
                r.end_time is None for r in records.values()
            ):
                return False
        return True

    await settle(f"the jobs' ends in slurmdbd {CANCELLED}", recorded, seen)
    return queued


async def test_accounting_records_match_the_command_line(
    adapters: Adapters, ended: LiveJobs
) -> None:
    records = await same_records(
        "accounting", accounting_reader(ended), adapters, ACCOUNTING_ALLOWED, set(CANCELLED)
    )
    done = records["done"]
    assert {"batch", "0"} <= {s.step_id for s in done.steps} and done.ntasks == 1
    assert (records["failed"].exit_code, records["failed"].signal) == (3, 0)
    assert records["running"].signal == 15  # SIGTERM, from the batch step
    assert records["array[0]"].array_task_id == 0
    never_ran = records["array[2-3%2]"]
    assert never_ran.start_time is None and (never_ran.cpus, never_ran.node_count) == (1, 1)
    assert records["waiting"].comment == f"{ended.tag} waits for {ended.running}"
    # A task that never ran, by its own id: pyslurm's selection finds it in the array's
    # record of waiting tasks (as in the queue); sacct -j N_2 matches only records of
    # tasks that ran, so the command line finds nothing.
    task = f"{ended.array}_2"
    assert [j.job_id for j in await adapters.py.accounting_jobs([task])] == [ended.array]
    assert await adapters.cli.accounting_jobs([task]) == []


async def test_accounting_records_without_steps(adapters: Adapters, ended: LiveJobs) -> None:
    without = await same_records(
        "accounting without steps", accounting_reader(ended, steps=False), adapters,
        STEPLESS_ALLOWED, set(CANCELLED),
    )  # fmt: skip
    assert all(r.steps == () for r in without.values())
    # pyslurm's records without steps are its records with steps, less the steps.
    with_steps = await accounting_reader(ended)(adapters.py)
    for role, record in without.items():
        assert differences(record, replace(with_steps[role], steps=()), []) == {}, role
    assert without["running"].signal == 15  # SIGTERM, from the batch step


async def test_accounting_selection_by_window_and_users(
    adapters: Adapters, ended: LiveJobs
) -> None:
    start, end = ended.submitted_at, datetime.now(UTC) + timedelta(seconds=1)
    ours = {"done", "failed", "running", "array[0]", "array[1]"}  # those that ran
    window: dict[str, dict[str, JobRecord]] = {}
    for name, adapter in (("pyslurm", adapters.py), ("cli", adapters.cli)):
        everyone = await adapter.accounting_jobs(start=start, end=end, steps=False)
        assert ours <= set(ended.roles(everyone)), (name, summary(ended.roles(everyone)))
        alice = await adapter.accounting_jobs(users=["alice"], start=start, end=end)
        assert {j.user for j in alice} == {"alice"} and ours <= set(ended.roles(alice))
        window[name] = {j.job_id: j for j in alice}
        bob = await adapter.accounting_jobs(users=["bob"], start=start, end=end)
        assert not ended.roles(bob) and all(j.user == "bob" for j in bob)
        assert await adapter.accounting_jobs(start=end, end=start) == []  # an empty window
        assert await adapter.accounting_jobs(job_ids=["999999999"]) == []
        assert await adapter.accounting_jobs(users=["no-such-user-xyz"]) == []
    # The window's records, each: the same as by id (ended jobs do not move on).
    assert sorted(window["pyslurm"]) == sorted(window["cli"])
    diffs = {
        job_id: sorted(d)
        for job_id, job in window["pyslurm"].items()
        if (d := differences(job, window["cli"][job_id], ACCOUNTING_ALLOWED))
    }
    assert diffs == {}, f"accounting by window: pyslurm and the command line differ in {diffs}"


# --- Everything else the port defines ---


async def test_controller_and_inventory_match_the_command_line(adapters: Adapters) -> None:
    py, cli = adapters.py, adapters.cli
    ping = await py.ping()
    assert ping.up and ping.responding_hosts == (await cli.ping()).responding_hosts, ping
    assert ping.responding_hosts == (NODE,)
    version = await py.version()
    assert version.startswith("24.11.") and version == await cli.version()

    mine = {p.name: p for p in await py.partitions()}
    theirs = {p.name: p for p in await cli.partitions()}
    assert set(mine) == set(theirs) >= {"debug", "long"}
    for name, partition in mine.items():
        # `extra` is scontrol's keys: pyslurm fills the ones the server reads.
        assert differences(partition, theirs[name], []).keys() <= {"extra"}, name
        shared = partition.extra.keys() & theirs[name].extra.keys()
        assert {k: partition.extra[k] for k in shared} == {
            k: theirs[name].extra[k] for k in shared
        }, name
    assert mine["debug"].is_default and mine["debug"].max_time == "01:00:00"

    node_allowed = [
        Allowed("cpu_load", "pyslurm says 0.0 where slurmd has no reading (None)",
                lambda m, t: m.cpu_load == 0.0 and t.cpu_load is None),
    ]  # fmt: skip
    for _attempt in range(4):  # jobs of other tests may start or end between the reads
        node_mine, node_theirs = await py.nodes(), await cli.nodes()
        assert [n.name for n in node_mine] == [n.name for n in node_theirs] == [NODE]
        diffs = differences(node_mine[0], node_theirs[0], node_allowed)
        if not diffs:
            break
        await asyncio.sleep(0.5)
    assert diffs == {}, f"nodes differ in {sorted(diffs)}: {diffs}"
    node = node_mine[0]
    assert (node.cpus, node.real_memory_mb, node.partitions) == (8, 8000, ("debug", "long"))


async def test_reservations_create_list_delete(adapters: Adapters) -> None:
    py, cli = adapters.py, adapters.cli
    name = f"hpcgate-live-{uuid.uuid4().hex[:8]}"
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    order = ReservationOrder(
        name=name, node_count=1, minutes=30, accounts=("alpha",), users=("alice",), start=start
    )
    try:
        created = await py.create_reservation(order)
        assert created.name == name and created.start_time == start
        assert created.duration_seconds == 30 * 60 and created.node_list == NODE
        assert created.accounts == ("alpha",) and created.users == ("alice",)
        mine = {r.name: r for r in await py.reservations()}
        theirs = {r.name: r for r in await cli.reservations()}
        assert name in mine and name in theirs
        assert differences(mine[name], theirs[name], []) == {}
        assert differences(mine[name], created, []) == {}
        assert mine[name].state == "INACTIVE"
    finally:
        await py.delete_reservation(name)
    assert name not in {r.name for r in await py.reservations()}
    assert name not in {r.name for r in await cli.reservations()}


async def test_deleting_a_reservation_that_is_gone_is_fine(adapters: Adapters) -> None:
    """The port promises it (a reservation request cancelled after its reservation was
    removed by other means); scontrol says "Requested reservation is invalid"."""
    await adapters.py.delete_reservation(f"hpcgate-live-gone-{uuid.uuid4().hex[:8]}")
    await adapters.cli.delete_reservation(f"hpcgate-live-gone-{uuid.uuid4().hex[:8]}")


async def test_accounting_methods(adapters: Adapters) -> None:
    py, cli = adapters.py, adapters.cli
    assert await py.user_default_account("alice") == "alpha"
    assert await py.user_default_account("bob") == "beta"
    for user in ("daemon", "no-such-user-xyz"):  # no Slurm user record
        assert await py.user_default_account(user) == await cli.user_default_account(user) == ""

    associations = await py.user_associations("alice")
    assert associations == await cli.user_associations("alice")
    assert associations.default_account == "alpha"
    assert {(a.user, a.account, a.cluster) for a in associations.associations} == {
        ("alice", "alpha", CLUSTER)
    }

    accounts = await py.accounts(["alpha", "beta", "no-such-account"])
    assert accounts == await cli.accounts(["alpha", "beta", "no-such-account"])
    by_name = {a.name: a for a in accounts}
    assert set(by_name) == {"alpha", "beta"} and by_name["alpha"].coordinators == ("alice",)
    assert await py.accounts([]) == []

    members = await py.project_members("alpha")
    assert members == await cli.project_members("alpha")
    assert {a.user for a in members.associations} == {"alice", "bob", "root"}

    shares = await py.fair_share("alice")
    assert [(s.account, s.user) for s in shares] == [("alpha", "alice")]
    assert [(s.account, s.user) for s in await cli.fair_share("alice")] == [("alpha", "alice")]

    used = await py.tres_used_minutes(["alpha", "beta"])
    assert set(used) == {"alpha", "beta"} and set(used) == set(
        await cli.tres_used_minutes(["alpha", "beta"])
    )
    assert await py.tres_used_minutes([]) == {}

    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=2)
    usage = await py.usage(["alpha", "beta"], start, end)
    assert usage == await cli.usage(["alpha", "beta"], start, end)
    assert {u.account for u in usage} <= {"alpha", "beta"}
    assert all(u.tres in {"cpu", "gres/gpu"} and u.tres_seconds >= 0 for u in usage)
    assert await py.usage(["alpha"], end, start) == []
