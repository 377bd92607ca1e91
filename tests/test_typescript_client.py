"""A typed client in another language: clients/typescript, its types generated from the
protos by ts-proto and compiled with `tsc --strict`, runs its scenario against a real
server and the real Slurm (status without a token, submit, watch to the end, read output,
upload and download with checksums, a bad request whose BadRequest it decodes)."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import IN_CI, bearer
from hpcgate.server.app import Gateway

pytestmark = pytest.mark.slurm
ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "clients" / "typescript"


def run(argv: list[str], cwd: Path = ROOT, timeout: float = 600) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")


@pytest.fixture(scope="module")
def scenario() -> Path:
    """The compiled scenario: Node and the locked packages installed (scripts/node.sh),
    the types generated from proto/, tsc --strict."""
    try:
        run(["bash", "scripts/node.sh"])
    except RuntimeError as e:
        if IN_CI or shutil.which("node"):
            raise
        pytest.skip(f"Node.js is not available: {e}")
    run(["bash", "generate.sh"], cwd=PROJECT)
    run([str(PROJECT / "node_modules" / ".bin" / "tsc"), "-p", "."], cwd=PROJECT)
    return PROJECT / "dist" / "scenario.js"


@pytest.fixture
def workdir() -> Iterator[Path]:
    alice = pwd.getpwnam("alice")
    path = Path(alice.pw_dir) / f"hpcgate-ts-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    os.chown(path, alice.pw_uid, alice.pw_gid)
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_the_typescript_scenario_runs_against_a_real_server(
    gateway: Gateway, scenario: Path, workdir: Path
) -> None:
    token = bearer(gateway, "alice", ("read", "write", "execute"))[0][1].removeprefix("Bearer ")
    env = dict(os.environ, HPCGATE_ADDRESS=f"127.0.0.1:{gateway.port}", HPCGATE_TOKEN=token,
               HPCGATE_WORKDIR=str(workdir))  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run, ["node", str(scenario)], env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "SYSTEMS local"
    assert lines[1].startswith("JOB ") and lines[1].endswith(" COMPLETED")
    assert "OUTPUT ok" in lines
    sha = next(line.split()[1] for line in lines if line.startswith("UPLOAD "))
    assert f"DOWNLOAD ok {sha}" in lines
    violations = {line.split()[1].rstrip(":") for line in lines if line.startswith("VIOLATION ")}
    assert {"script", "options.time_limit"} <= violations
    assert lines[-1] == "DONE"
    assert (workdir / "ts-upload.bin").stat().st_uid == pwd.getpwnam("alice").pw_uid
