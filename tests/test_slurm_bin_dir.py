"""Every Slurm command honours the system's `slurm.bin_dir` and `slurm.cluster` (`-M`),
SubmitJob's sbatch and CancelJob's scancel included (they run as the caller): the bin_dir
here holds wrappers that log each call and exec the real tool. A check that no Slurm
command is named outside slurm/ runs in `make lint` (scripts/check_slurm_boundary.py) and
here."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from conftest import GatewayFactory, bearer, fast_config
from hpcgate.v1 import compute_pb2, compute_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("sbatch", "scancel", "squeue", "sacct", "scontrol", "sinfo", "sacctmgr", "sshare",
         "sreport")  # fmt: skip
WRAPPER = """#!/bin/sh
echo "$(id -un) $(basename "$0") $*" >> {log}
exec {real} "$@"
"""


def local_cluster_name() -> str:
    """The local Slurm's ClusterName (registered in its slurmdbd, so `-M` reaches it)."""
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                            check=True).stdout  # fmt: skip
    match = re.search(r"^ClusterName\s*=\s*(\S+)", config, re.M)
    assert match is not None, "scontrol show config names no ClusterName"
    return match.group(1)


@pytest.fixture
def bin_dir() -> Iterator[tuple[Path, Path]]:
    """(a directory of logging wrappers, their log); readable and executable by alice,
    whose sbatch and scancel go through them too."""
    directory = Path(tempfile.mkdtemp(prefix="hpcgate-bin-"))
    directory.chmod(0o755)
    log = directory / "calls.log"
    log.touch()
    log.chmod(0o666)
    for tool in TOOLS:
        real = shutil.which(tool)
        assert real is not None, f"{tool} is not installed"
        wrapper = directory / tool
        wrapper.write_text(WRAPPER.format(log=log, real=real))
        wrapper.chmod(0o755)
    yield directory, log
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("with_cluster", [False, True], ids=["bin_dir", "bin_dir+cluster"])
async def test_submit_and_cancel_run_through_bin_dir(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path,
    bin_dir: tuple[Path, Path], with_cluster: bool,
) -> None:  # fmt: skip
    directory, log = bin_dir
    cluster = local_cluster_name() if with_cluster else ""
    config = fast_config(tmp_path)
    slurm = replace(config.systems[0].slurm, bin_dir=directory, cluster=cluster)
    gateway = await gateway_factory(replace(config, systems=(replace(config.systems[0],
                                                                     slurm=slurm),)))  # fmt: skip
    metadata = bearer(gateway, "alice", ("read", "execute"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = compute_pb2_grpc.ComputeServiceStub(channel)
        submitted = await stub.SubmitJob(
            compute_pb2.SubmitJobRequest(
                parent="systems/local", script="#!/bin/sh\nsleep 60\n",
                options=compute_pb2.JobOptions(job_name="bin-dir", stdout_path="/dev/null"),
            ),
            metadata=metadata,
        )  # fmt: skip
        job = submitted.job.name
        cancelled = await stub.CancelJob(compute_pb2.CancelJobRequest(name=job), metadata=metadata)
        for _ in range(100):  # the hub's reads go through the wrappers too
            calls = log.read_text().splitlines()
            if any(" squeue " in c for c in calls):
                break
            await asyncio.sleep(0.1)
    job_id = submitted.job.job_id
    assert job_id.isdigit() and cancelled.job.job_id == job_id  # `ID;CLUSTER` read right
    clusters = f"-M {cluster} " if cluster else ""
    assert any(c.startswith(f"alice sbatch {clusters}--parsable") for c in calls), calls
    assert f"alice scancel {clusters}{job_id}" in calls, calls
    assert any(c.startswith(f"root squeue {clusters}") for c in calls), calls
    if not cluster:
        assert not any(" -M " in c for c in calls), calls


def test_no_slurm_command_is_named_outside_slurm() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_slurm_boundary.py")],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_boundary_check_catches_a_slurm_command_elsewhere(tmp_path: Path) -> None:
    package = tmp_path / "server" / "hpcgate" / "server"
    (package / "slurm").mkdir(parents=True)
    (package / "slurm" / "ok.py").write_text('ARGV = ["squeue", "-h"]\n')
    (package / "compute").mkdir()
    (package / "compute" / "bad.py").write_text(
        '"""sbatch is fine in a docstring."""\n'
        'ARGV = ["scancel", job_id]  # scancel is fine in a comment\n'
        'LINE = "squeue -h -o %i"\n'
        'SHOW = ("scontrol show config", f"{BIN}/sacct")\n'
        'ERRORS = ("running sbatch", "sbatch gave no job id", "fair share (sshare)")\n'
    )  # fmt: skip
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_slurm_boundary.py"),
                           str(package)], capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 1
    found = sorted(line.split(": ")[1] for line in done.stdout.splitlines())
    assert found == ["'/sacct'", "'scancel'", "'scontrol show config'", "'squeue -h -o %i'"]
    assert all(line.startswith("compute/bad.py:") for line in done.stdout.splitlines())
