"""The beamline workflow end to end against a real server and the real Slurm, three ways:
examples/beamline.py through `Client`, the same steps through `SyncClient`, and the
`hpcgate` CLI in a subprocess. Upload data, submit a job that reads it, follow its output,
wait, download the result, copy the run to scratch, list projects."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from conftest import bearer
from hpcgate.client import SyncClient, connect
from hpcgate.server.app import Gateway

pytestmark = pytest.mark.slurm
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "beamline.py"
HOME = Path("/home/alice")
SCRATCH = Path("/tmp/alice")  # the default scratch filesystem is /tmp


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("beamline_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run() -> Iterator[str]:
    """A unique run name; its directories in alice's home and scratch go afterwards."""
    name = f"run-{uuid.uuid4().hex[:8]}"
    yield name
    shutil.rmtree(HOME / "beamline" / name, ignore_errors=True)
    shutil.rmtree(SCRATCH / f"beamline-{name}", ignore_errors=True)


@pytest.fixture
def frames(tmp_path: Path) -> Path:
    path = tmp_path / "frames.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    return path


def token(gateway: Gateway) -> str:
    return bearer(gateway, "alice", ("read", "write", "execute"))[0][1].removeprefix("Bearer ")


def check_outcome(frames: Path, result: Path, run: str) -> None:
    """What every route must leave: the job's result and a verified copy on scratch."""
    digest = hashlib.sha256(frames.read_bytes()).hexdigest()
    lines = result.read_text().splitlines()
    assert lines[0].split()[0] == digest  # the job read exactly the uploaded bytes
    assert lines[1] == f"frames: {frames.stat().st_size}"
    archived = SCRATCH / f"beamline-{run}"
    assert (archived / "frames.bin").read_bytes() == frames.read_bytes()
    assert (archived / "reduced.txt").read_text() == result.read_text()
    assert archived.stat().st_uid == (HOME.stat().st_uid)  # written as alice, not root


async def test_the_example_through_client(
    gateway: Gateway, frames: Path, run: str, tmp_path: Path
) -> None:
    example = load_example()
    async with connect(f"127.0.0.1:{gateway.port}", token=token(gateway), system="local") as c:
        outcome = await example.beamline(c, frames, tmp_path, run)
    assert (outcome.job_state, outcome.archived_to) == ("COMPLETED", f"{SCRATCH}/beamline-{run}")
    assert outcome.log.splitlines() == [
        f"reducing {frames.stat().st_size} bytes of frames",
        "reduction done",
    ]
    assert outcome.projects  # alice charges at least one Slurm account
    check_outcome(frames, outcome.result, run)


def sync_workflow(address: str, access: str, frames: Path, results: Path, run: str) -> str:
    """The example's steps with the blocking client, as a script or notebook would."""
    example = load_example()
    with SyncClient.connect(address, token=access, system="local") as client:
        workdir = f"{client.account.user().home_directory}/beamline/{run}"
        client.files.mkdir(workdir, parents=True)
        client.files.mkdir(str(SCRATCH), parents=True)
        seen: list[int] = []
        client.files.upload(frames, f"{workdir}/frames.bin", progress=lambda d, _: seen.append(d))
        assert seen == sorted(seen) and seen[-1] == frames.stat().st_size
        job = client.jobs.submit(
            script=example.REDUCE, arguments=[workdir], working_directory=workdir,
            stdout_path=f"{workdir}/log",
        )  # fmt: skip
        log = "".join(str(text) for text in job.output(follow=True))
        assert job.wait().state == "COMPLETED", log
        client.files.download(f"{workdir}/reduced.txt", results / "reduced.txt")
        task = client.storage.transfer(workdir, f"{SCRATCH}/beamline-{run}", recursive=True)
        assert task.wait().state == "SUCCEEDED"
        assert client.account.projects()
        return log


async def test_the_same_steps_through_sync_client(
    gateway: Gateway, frames: Path, run: str, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{gateway.port}"
    log = await asyncio.to_thread(sync_workflow, address, token(gateway), frames, tmp_path, run)
    assert "reduction done" in log
    check_outcome(frames, tmp_path / "reduced.txt", run)


async def test_the_same_steps_through_the_cli(
    gateway: Gateway, venv_bin: Path, frames: Path, run: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCGATE_")}
    env |= {
        "HPCGATE_ADDRESS": f"127.0.0.1:{gateway.port}",
        "HPCGATE_TOKEN": token(gateway),
        "HPCGATE_SYSTEM": "local",
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
    }

    async def hpcgate(*args: str) -> str:
        done = await asyncio.to_thread(
            subprocess.run, [str(venv_bin / "hpcgate"), *args], env=env, capture_output=True,
            text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"hpcgate {' '.join(args)}: {done.stderr}"
        return done.stdout

    workdir = f"{HOME}/beamline/{run}"
    script = tmp_path / "reduce.sh"
    script.write_text(load_example().REDUCE)
    await hpcgate("mkdir", "-p", workdir, str(SCRATCH))
    await hpcgate("put", str(frames), f"{workdir}/frames.bin")
    log = await hpcgate("sbatch", "--follow", "-D", workdir, "-o", f"{workdir}/log", "-t", "5",
                        str(script), workdir)  # fmt: skip
    assert "reduction done" in log
    await hpcgate("get", f"{workdir}/reduced.txt", str(tmp_path / "reduced.txt"))
    await hpcgate("transfer", "-r", workdir, f"{SCRATCH}/beamline-{run}")
    assert json.loads(await hpcgate("--json", "projects"))
    check_outcome(frames, tmp_path / "reduced.txt", run)
