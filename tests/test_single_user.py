"""Single-user mode: a server run by an ordinary user serves that user only; and the
command-line tools (`hpcgate-server token`, `hpcgate whoami`) work end to end."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from test_server_process import free_port, wait_serving

from conftest import require
from hpcgate.v1 import auth_pb2, auth_pb2_grpc


@pytest.fixture
def alice_dir(slurm_cluster: None) -> Iterator[Path]:
    """A state directory alice owns (pytest's tmp_path is private to root)."""
    require(shutil.which("runuser") is not None, "runuser is needed")
    path = Path(tempfile.mkdtemp(prefix="hpcgate-alice-", dir="/tmp"))
    shutil.chown(path, "alice", "alice")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def as_alice(venv_bin: Path, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "runuser",
            "-u",
            "alice",
            "--",
            "env",
            f"HPCGATE_STATE_DIR={state}",
            str(venv_bin / "hpcgate-server"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
async def alice_server(alice_dir: Path, venv_bin: Path) -> AsyncIterator[str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        "runuser",
        "-u",
        "alice",
        "--",
        "env",
        f"HPCGATE_STATE_DIR={alice_dir}",
        str(venv_bin / "hpcgate-server"),
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--http-listen",
        "127.0.0.1:0",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    address = f"127.0.0.1:{port}"
    try:
        await wait_serving(address)
        yield address
    finally:
        proc.terminate()
        await proc.wait()


async def test_single_user_server_refuses_other_users_tokens(
    alice_server: str, alice_dir: Path, venv_bin: Path
) -> None:
    for_alice = as_alice(venv_bin, alice_dir, "token", "--user", "alice")
    for_bob = as_alice(venv_bin, alice_dir, "token", "--user", "bob")
    assert for_alice.returncode == 0 and for_bob.returncode == 0, for_alice.stderr
    async with grpc.aio.insecure_channel(alice_server) as ch:
        stub = auth_pb2_grpc.AuthServiceStub(ch)
        info = await stub.GetTokenInfo(
            auth_pb2.GetTokenInfoRequest(),
            metadata=[("authorization", f"Bearer {for_alice.stdout.strip()}")],
        )
        assert info.user == "alice" and info.uid == 1001
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.GetTokenInfo(
                auth_pb2.GetTokenInfoRequest(),
                metadata=[("authorization", f"Bearer {for_bob.stdout.strip()}")],
            )
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "single-user mode" in (e.value.details() or "")
    # The signing key is private to alice.
    keys = alice_dir / "keys"
    assert keys.stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o077 == 0 for p in keys.iterdir())


async def test_token_command_and_client_cli(
    alice_server: str, alice_dir: Path, venv_bin: Path
) -> None:
    token = as_alice(venv_bin, alice_dir, "token", "--scope", "read", "--scope", "execute")
    assert token.returncode == 0, token.stderr
    result = await asyncio.to_thread(
        subprocess.run,
        [str(venv_bin / "hpcgate"), "--address", alice_server, "whoami"],
        env=dict(os.environ, HPCGATE_TOKEN=token.stdout.strip()),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "user: alice (uid 1001)" in result.stdout and "execute read" in result.stdout
    too_long = as_alice(venv_bin, alice_dir, "token", "--ttl", "999999")
    assert too_long.returncode != 0 and "--ttl" in too_long.stderr


async def test_registered_client_through_the_cli(
    alice_server: str, alice_dir: Path, venv_bin: Path, tmp_path: Path
) -> None:
    added = as_alice(
        venv_bin,
        alice_dir,
        "clients",
        "add",
        "--user",
        "alice",
        "--scope",
        "read",
        "--expires",
        "1d",
        "--description",
        "beamline",
    )
    assert added.returncode == 0, added.stderr
    client_id = added.stdout.split("client id: ")[1].split()[0]
    key = tmp_path / "client.pem"
    key.write_text(added.stdout[added.stdout.index("-----BEGIN") :])
    result = await asyncio.to_thread(
        subprocess.run,
        [
            str(venv_bin / "hpcgate"),
            "--address",
            alice_server,
            "--client-id",
            client_id,
            "--key-file",
            str(key),
            "whoami",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"client: {client_id}" in result.stdout
    listed = as_alice(venv_bin, alice_dir, "clients", "list")
    assert client_id in listed.stdout and "active" in listed.stdout
    assert as_alice(venv_bin, alice_dir, "clients", "revoke", client_id).returncode == 0
    assert "revoked" in as_alice(venv_bin, alice_dir, "clients", "list").stdout
