"""A typed client in another language: clients/typescript, its types generated from the
protos by ts-proto and compiled with `tsc --strict`, runs its scenario against a real
server and the real Slurm (status without a token, submit, watch to the end, read output,
upload and download with checksums, a bad request whose BadRequest it decodes)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pwd
import shutil
import subprocess
import sys
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
    # generate.sh takes the interpreter with grpcio-tools from $PYTHON, which a caller of
    # `make` may have set to a system one: give it the suite's own.
    env = dict(os.environ, PYTHON=sys.executable)
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")


@pytest.fixture(scope="module")
def scenario() -> Iterator[Path]:
    """The compiled scenario: Node and the locked packages installed (scripts/node.sh),
    the types generated from proto/, tsc --strict (incremental: seconds when unchanged).

    Other sessions in the same checkout may run this test at the same time: the build
    (npm ci, src/gen, dist) happens under an exclusive lock on clients/typescript, and
    the scenario runs under a shared one, so nobody rebuilds it while it runs."""
    lock = os.open(PROJECT, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            run(["bash", "scripts/node.sh"])
        except RuntimeError as e:
            if IN_CI or shutil.which("node"):
                raise
            pytest.skip(f"Node.js is not available: {e}")
        run(["bash", "generate.sh"], cwd=PROJECT)
        run([str(PROJECT / "node_modules" / ".bin" / "tsc"), "-p", "."], cwd=PROJECT)
        fcntl.flock(lock, fcntl.LOCK_SH)
        yield PROJECT / "dist" / "scenario.js"
    finally:
        os.close(lock)


@pytest.fixture
def workdir() -> Iterator[Path]:
    alice = pwd.getpwnam("alice")
    path = Path(alice.pw_dir) / f"hpcgate-ts-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    os.chown(path, alice.pw_uid, alice.pw_gid)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# The first run on a fresh machine may install Node from Debian and the npm packages.
@pytest.mark.timeout(900)
async def test_the_typescript_scenario_runs_against_a_real_server(
    gateway: Gateway, scenario: Path, workdir: Path
) -> None:
    token = bearer(gateway, "alice", ("read", "write", "execute"))[0][1].removeprefix("Bearer ")
    env = dict(
        os.environ,
        HPCGATE_ADDRESS=f"127.0.0.1:{gateway.port}",
        HPCGATE_TOKEN=token,
        HPCGATE_WORKDIR=str(workdir),
    )
    done = await asyncio.to_thread(
        subprocess.run,
        ["node", str(scenario)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
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
