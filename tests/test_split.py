"""The privilege split (docs/security.md): `hpcgate-server serve` started by root serves
gRPC from a process of the service account, and only the spawner stays root.

Real processes: the server as an operator starts it, the spawner's socket, real users.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from test_server_process import free_port, wait_serving

from conftest import require
from hpcgate.v1 import utilities_pb2, utilities_pb2_grpc

pytestmark = pytest.mark.slurm
SERVICE = "hpcgate"


def _listener_uid(port: int) -> int:
    """The uid of the process holding the listening TCP socket on `port`."""
    out = subprocess.run(["ss", "-H", "-ltnpe", f"sport = :{port}"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    pid = int(out.split("pid=")[1].split(",")[0])
    return os.stat(f"/proc/{pid}").st_uid


@pytest.fixture
def split_dir() -> Iterator[Path]:
    require(os.geteuid() == 0, "the privilege split is started by root")
    require(shutil.which("ss") is not None, "ss (iproute2) is needed")
    try:
        pwd.getpwnam(SERVICE)
    except KeyError:
        require(False, f"the service account {SERVICE} (scripts/cluster.sh creates it)")
    # Not under pytest's 0700 temporary root: the service account must reach its state.
    base = Path(tempfile.mkdtemp(prefix="hpcgate-split-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


class Split:
    def __init__(self, base: Path, port: int, proc: asyncio.subprocess.Process) -> None:
        self.base, self.port, self.proc = base, port, proc
        self.socket = base / "run" / "spawner.sock"
        self.config = base / "hpcgate.toml"


@pytest.fixture
async def split(slurm_cluster: None, split_dir: Path, venv_bin: Path) -> AsyncIterator[Split]:
    port = free_port()
    config = split_dir / "hpcgate.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\nstate_dir = "{split_dir / "state"}"\n'
        f'shutdown_grace = 2.0\n[privsep]\nsocket = "{split_dir / "run" / "spawner.sock"}"\n'
        '[metrics]\nlisten = ""\n[http]\nlisten = "127.0.0.1:0"\n'
    )
    proc = await asyncio.create_subprocess_exec(
        str(venv_bin / "hpcgate-server"), "--config", str(config), "serve",
        stdout=asyncio.subprocess.DEVNULL, stderr=open(split_dir / "server.log", "wb"),  # noqa: SIM115
    )  # fmt: skip
    split = Split(split_dir, port, proc)
    try:
        await wait_serving(f"127.0.0.1:{port}")
        yield split
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _token(split: Split, venv_bin: Path, user: str) -> str:
    out = subprocess.run(
        [str(venv_bin / "hpcgate-server"), "--config", str(split.config), "token",
         "--user", user, "--scope", "execute", "--scope", "read"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.strip().splitlines()[-1]


async def test_the_listening_process_is_the_service_account_and_work_runs_as_users(
    split: Split, venv_bin: Path
) -> None:
    uid = _listener_uid(split.port)
    assert uid == pwd.getpwnam(SERVICE).pw_uid and uid != 0
    # The root supervisor only supervises: it holds no TCP socket.
    assert os.stat(f"/proc/{split.proc.pid}").st_uid == 0
    # State and keys belong to the service account, also after `token` ran as root.
    token = _token(split, venv_bin, "alice")
    for path in [split.base / "state", *(split.base / "state").rglob("*")]:
        assert path.lstat().st_uid == uid, path
    async with grpc.aio.insecure_channel(f"127.0.0.1:{split.port}") as channel:
        stub = utilities_pb2_grpc.UtilitiesServiceStub(channel)
        request = utilities_pb2.RunCommandRequest(system="local", argv=["id", "-un"])
        out = b""
        async for reply in stub.RunCommand(
            request, metadata=[("authorization", f"Bearer {token}")]
        ):
            out += reply.stdout
        assert out == b"alice\n"


_ASK = """
import json, sys
from hpcgate.server.privsep.spawner import SpawnerClient
client = SpawnerClient(sys.argv[1])
try:
    message, fd = client._exchange(sys.argv[2])
    print(json.dumps({"ok": True, "uid": message["credentials"]["uid"]}))
except Exception as exc:
    print(json.dumps({"ok": False, "kind": type(exc).__name__, "message": str(exc)}))
"""


def _ask_as(account: str, socket_path: Path, user: str) -> dict[str, object]:
    entry = pwd.getpwnam(account)
    out = subprocess.run(
        [sys.executable, "-c", _ASK, str(socket_path), user], capture_output=True, text=True,
        user=entry.pw_uid, group=entry.pw_gid, extra_groups=[], cwd="/", check=True,
    ).stdout  # fmt: skip
    answer: dict[str, object] = json.loads(out)
    return answer


async def test_the_spawner_starts_workers_for_users_only(split: Split) -> None:
    alice = await asyncio.to_thread(_ask_as, SERVICE, split.socket, "alice")
    assert alice == {"ok": True, "uid": pwd.getpwnam("alice").pw_uid}
    for user in ("root", "daemon", "slurm", "hpcgate-no-such-user"):
        refused = await asyncio.to_thread(_ask_as, SERVICE, split.socket, user)
        assert refused["ok"] is False, user
        assert refused["kind"] in ("ForbiddenUser", "UnknownUser"), refused


async def test_other_local_users_cannot_talk_to_the_spawner(split: Split) -> None:
    # The socket's directory keeps them out...
    answer = await asyncio.to_thread(_ask_as, "alice", split.socket, "alice")
    assert answer["ok"] is False and "Permission denied" in str(answer["message"])
    # ...and were it open, the spawner checks who connects (SO_PEERCRED).
    split.socket.parent.chmod(0o755)
    split.socket.chmod(0o666)
    answer = await asyncio.to_thread(_ask_as, "alice", split.socket, "alice")
    assert answer["ok"] is False and answer["kind"] == "ForbiddenUser", answer
    assert "may not use the spawner" in str(answer["message"])
