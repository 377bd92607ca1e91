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
"""

from __future__ import annotations

import importlib
import os
import pwd
import socket
import subprocess
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conftest import require

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
