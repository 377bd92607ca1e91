"""Every Slurm command honours the system's `slurm.bin_dir`, SubmitJob's sbatch and
CancelJob's scancel included (they run as the caller): the bin_dir here holds wrappers that
log each call and exec the real tool. A check that no Slurm command is named outside
slurm/ runs in `make lint` (scripts/check_slurm_boundary.py) and here."""

from __future__ import annotations

import asyncio
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

pytestmark = pytest.mark.slurm
ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("sbatch", "scancel", "squeue", "sacct", "scontrol", "sinfo", "sacctmgr", "sshare",
         "sreport")  # fmt: skip
WRAPPER = """#!/bin/sh
echo "$(id -un) $(basename "$0") $*" >> {log}
exec {real} "$@"
"""


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


async def test_submit_and_cancel_run_through_bin_dir(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path,
    bin_dir: tuple[Path, Path],
) -> None:  # fmt: skip
    directory, log = bin_dir
    config = fast_config(tmp_path)
    system = replace(config.systems[0], slurm=replace(config.systems[0].slurm, bin_dir=directory))
    gateway = await gateway_factory(replace(config, systems=(system,)))
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
        await stub.CancelJob(compute_pb2.CancelJobRequest(name=job), metadata=metadata)
        for _ in range(100):  # the hub's reads go through the wrappers too
            calls = log.read_text().splitlines()
            if any(" squeue " in c for c in calls):
                break
            await asyncio.sleep(0.1)
    job_id = submitted.job.job_id
    assert any(c.startswith("alice sbatch --parsable") for c in calls), calls
    assert f"alice scancel {job_id}" in calls, calls
    assert any(c.startswith("root squeue ") for c in calls), calls


def test_no_slurm_command_is_named_outside_slurm() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_slurm_boundary.py")],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_boundary_check_catches_a_slurm_command_elsewhere(tmp_path: Path) -> None:
    package = tmp_path / "server" / "hpcgate" / "server"
    (package / "slurm").mkdir(parents=True)
    (package / "slurm" / "ok.py").write_text('ARGV = ["squeue", "-h"]\n')
    (package / "compute").mkdir()
    (package / "compute" / "bad.py").write_text('"""sbatch is fine in a docstring."""\n'
                                                'ARGV = ["scancel", job_id]\n')  # fmt: skip
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_slurm_boundary.py"),
                           str(package)], capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 1
    assert "compute/bad.py:2" in done.stdout and "scancel" in done.stdout
    assert "ok.py" not in done.stdout and "docstring" not in done.stdout
