"""The `hpcgate` command line, run as a subprocess (the installed entry point) against a
real server and the real Slurm: jobs, files, run, JSON output, exit codes, profiles."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import bearer
from hpcgate.server.app import Gateway

ALICE_HOME = Path("/home/alice")


@dataclass
class Cli:
    """`hpcgate --address ... --token ... --system local ARGS` as alice, in a subprocess
    (off the event loop, which serves the in-process gateway)."""

    program: Path
    address: str
    token: str
    env: dict[str, str]

    async def __call__(
        self, *args: str, connect: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        given = ["--address", self.address, "--token", self.token, "--system", "local"]
        argv = [str(self.program), *(given if connect else []), *args]
        return await asyncio.to_thread(
            subprocess.run, argv, env=self.env, input=input, capture_output=True, text=True,
            timeout=90, check=False,
        )  # fmt: skip

    async def ok(self, *args: str) -> str:
        result = await self(*args)
        assert result.returncode == 0, f"hpcgate {' '.join(args)}: {result.stderr}"
        return result.stdout


@pytest.fixture
def cli(gateway: Gateway, venv_bin: Path, tmp_path: Path) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCGATE_")}
    env |= {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "COLUMNS": "200"}
    token = bearer(gateway, "alice", ("read", "write", "execute"))[0][1].removeprefix("Bearer ")
    return Cli(venv_bin / "hpcgate", f"127.0.0.1:{gateway.port}", token, env)


@pytest.fixture
def remote_dir() -> Iterator[str]:
    """A fresh directory name under alice's home (relative: the CLI resolves it there)."""
    name = f"hpcgate-cli-{uuid.uuid4().hex[:8]}"
    yield name
    shutil.rmtree(ALICE_HOME / name, ignore_errors=True)


async def test_status_whoami_and_projects(cli: Cli) -> None:
    status = await cli.ok("status", "-v")
    assert "systems/local" in status and "active" in status and "controller" in status
    assert "user: alice (uid 1001)" in await cli.ok("whoami")
    assert json.loads(await cli.ok("--json", "whoami"))["user"] == "alice"
    projects = await cli.ok("projects")
    assert projects.splitlines()[0].split()[0] == "PROJECT" and "alpha" in projects
    listed = json.loads(await cli.ok("--json", "projects"))["projects"]
    assert "alpha" in {p["name"] for p in listed}
    partitions = json.loads(await cli.ok("--json", "sinfo"))["partitions"]
    assert {"debug", "long"} <= {p["partition"] for p in partitions}


async def test_sbatch_wait_then_squeue_sacct_and_slog(
    cli: Cli, tmp_path: Path, remote_dir: str
) -> None:
    marker = uuid.uuid4().hex[:8]
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/sh\necho hello-{marker}\necho oops-{marker} >&2\n")
    await cli.ok("mkdir", remote_dir)
    submitted = await cli("sbatch", "--wait", "-J", f"cli-{marker}", "-t", "5", "-D", remote_dir,
                          "-o", "job.out", "-e", "job.err", str(script))  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.split("Submitted batch job ")[1].split()[0]
    assert job_id.isdigit() and "COMPLETED" in submitted.stderr
    history = json.loads(await cli.ok("--json", "sacct"))["jobs"]
    ours = next(j for j in history if j["job_id"] == job_id)
    assert ours["state"] == "JOB_STATE_COMPLETED" and ours["job_name"] == f"cli-{marker}"
    assert ours["exit_code"] == 0
    queued = json.loads(await cli.ok("--json", "squeue"))["jobs"]
    assert job_id not in {j["job_id"] for j in queued}  # finished: not in the queue
    everything = json.loads(await cli.ok("--json", "squeue", "--all-states"))["jobs"]
    assert job_id in {j["job_id"] for j in everything}
    assert job_id in await cli.ok("sacct")  # the table too
    assert (await cli.ok("slog", job_id)).strip() == f"hello-{marker}"
    assert (await cli.ok("slog", "--stderr", job_id)).strip() == f"oops-{marker}"
    # --follow streams the output and exits with the job's exit code.
    script.write_text(f"#!/bin/sh\necho bye-{marker}\nexit 3\n")
    followed = await cli("sbatch", "--follow", "--parsable", "-D", remote_dir, str(script))
    assert followed.returncode == 3, followed.stderr
    first, *rest = followed.stdout.splitlines()
    assert first.isdigit() and rest == [f"bye-{marker}"]


async def test_put_get_ls_and_rm_round_trip(cli: Cli, tmp_path: Path, remote_dir: str) -> None:
    local = tmp_path / "data"
    (local / "sub").mkdir(parents=True)
    payload = os.urandom(1024 * 1024 + 7)
    (local / "big.bin").write_bytes(payload)
    (local / "sub" / "note.txt").write_text("hello\n")
    await cli.ok("mkdir", "-p", remote_dir)
    await cli.ok("put", "-r", str(local), remote_dir)
    listing = await cli.ok("ls", "-la", f"{remote_dir}/data")
    rows = {line.split()[-1]: line.split() for line in listing.splitlines()}
    assert rows["big.bin"][4] == str(len(payload)) and rows["big.bin"][0].startswith("-rw")
    assert rows["sub"][0].startswith("d") and rows["sub"][2] == "alice"
    entries = json.loads(await cli.ok("--json", "ls", f"~/{remote_dir}/data/sub"))["entries"]
    assert [e["name"] for e in entries] == ["note.txt"]
    assert (ALICE_HOME / remote_dir / "data" / "big.bin").read_bytes() == payload
    back = tmp_path / "back"
    await cli.ok("get", "-r", f"{remote_dir}/data", str(back))
    assert (back / "big.bin").read_bytes() == payload
    assert (back / "sub" / "note.txt").read_text() == "hello\n"
    assert await cli.ok("cat", f"{remote_dir}/data/sub/note.txt") == "hello\n"
    await cli.ok("rm", "-r", remote_dir)
    gone = await cli("ls", remote_dir)
    assert gone.returncode == 5 and "NOT_FOUND" in gone.stderr


async def test_run_exits_with_the_remote_exit_code(cli: Cli) -> None:
    result = await cli("run", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert result.returncode == 3
    assert result.stdout == "out\n" and result.stderr == "err\n"
    assert (await cli.ok("run", "--", "id", "-un")).strip() == "alice"


async def test_errors_exit_with_the_grpc_code_and_print_every_violation(
    cli: Cli, tmp_path: Path
) -> None:
    missing = await cli("scancel", "999999999")
    assert missing.returncode == 5, missing.stderr  # NOT_FOUND
    assert "NOT_FOUND" in missing.stderr and "999999999" in missing.stderr
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\ntrue\n")
    bad = await cli("sbatch", "-t", "soon", "-d", "whenever", str(script))
    assert bad.returncode == 3, bad.stderr  # INVALID_ARGUMENT, with each field named
    assert "  options.time_limit: " in bad.stderr and "  options.dependency: " in bad.stderr
    anonymous = await cli("--address", cli.address, "whoami", connect=False)
    assert anonymous.returncode == 16 and "UNAUTHENTICATED" in anonymous.stderr
    usage = await cli("ls", "--no-such-flag")
    assert usage.returncode == 2 and "no-such-flag" in usage.stderr


async def test_login_stores_a_profile_that_later_commands_use(cli: Cli, tmp_path: Path) -> None:
    login = await cli("login", "--address", cli.address, "--token", cli.token,
                      "--system", "local", connect=False)  # fmt: skip
    assert login.returncode == 0, login.stderr
    config = tmp_path / "xdg" / "hpcgate" / "config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    profile = tomllib.loads(config.read_text())["profiles"]["default"]
    assert profile == {"address": cli.address, "system": "local", "token": cli.token}
    assert "user: alice" in (await cli("whoami", connect=False)).stdout
    assert (await cli("run", "--", "true", connect=False)).returncode == 0  # system from it
    other = await cli("--profile", "elsewhere", "whoami", connect=False)
    assert other.returncode == 2 and "elsewhere" in other.stderr
    refused = await cli("login", "--address", cli.address, "--token", "not-a-token",
                        connect=False)  # fmt: skip
    assert refused.returncode == 16  # checked with the server before it is stored
    assert tomllib.loads(config.read_text())["profiles"]["default"] == profile
