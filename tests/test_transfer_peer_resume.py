"""kill -9 of the server pushing a large file to a peer facility, mid-file: after a restart
the transfer resumes that file from the bytes the peer already holds and verified, not
from its start, and nothing incomplete ever appears under the file's name at the peer."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
from pathlib import Path

import grpc
from files_helpers import user_dir
from peer_helpers import register_service_client
from test_server_process import free_port, wait_serving
from test_transfer_crash import start_server
from transfer_helpers import wait_task

from conftest import GatewayFactory, fast_config
from hpcgate.v1 import storage_pb2 as s
from hpcgate.v1 import storage_pb2_grpc
from hpcgate.v1 import tasks_pb2 as t

SIZE = 768 * 1024 * 1024


def write_big(path: Path, size: int) -> str:
    """A file of `size` bytes (each MiB distinct), owned by alice; its SHA-256."""
    digest = hashlib.sha256()
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as f:
        for i in range(size // len(block)):
            data = i.to_bytes(8, "big") + block[8:]
            digest.update(data)
            f.write(data)
    os.chown(path, 1001, 1001)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(1 << 20):
            digest.update(data)
    return digest.hexdigest()


def held_bytes(directory: Path) -> int:
    """Size of the partial upload beside `big.bin` at the peer (0 when there is none)."""
    parts = list(directory.glob(".big.bin.hpcgate-*.part"))
    return max((p.stat().st_size for p in parts), default=0)


async def test_a_peer_transfer_killed_mid_file_resumes_from_the_verified_bytes(
    slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path, venv_bin: Path
) -> None:
    b = await gateway_factory(fast_config(tmp_path / "gateway-b"), wait_ready=False)
    key_file = tmp_path / "site-b.pem"
    client_id = register_service_client(b, "bob", key_file)
    port = free_port()
    config = tmp_path / "a.toml"
    config.write_text(
        '[privsep]\nservice_user = ""\n'
        f'[server]\nlisten = "127.0.0.1:{port}"\nstate_dir = "{tmp_path / "state-a"}"\n'
        "shutdown_grace = 1.0\n[status]\nprobe_interval = 1.0\n"
        f'[[peers]]\nid = "site-b"\naddress = "127.0.0.1:{b.port}"\nclient_id = "{client_id}"\n'
        f'private_key_file = "{key_file}"\naudience = "{b.config.auth.audience}"\n'
        'allowed_users = ["alice"]\ntimeout = 10.0\n'
    )
    env = dict(os.environ, HPCGATE_CONFIG=str(config))
    token_run = await asyncio.create_subprocess_exec(
        str(venv_bin / "hpcgate-server"), "token", "--user", "alice",
        "--scope", "read", "--scope", "write", "--ttl", "900",
        env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    token = (await token_run.communicate())[0].decode().strip()
    md = [("authorization", f"Bearer {token}")]
    address = f"127.0.0.1:{port}"
    log = tmp_path / "a.log"
    with user_dir("alice") as source_dir, user_dir("bob") as target_dir:
        (source_dir / "run").mkdir()
        os.chown(source_dir / "run", 1001, 1001)
        expected = write_big(source_dir / "run" / "big.bin", SIZE)
        final = target_dir / "run" / "big.bin"
        seen_final: list[int] = []

        async def watch_final() -> None:  # the name appears complete, or not at all
            while True:
                if final.exists():
                    seen_final.append(final.stat().st_size)
                await asyncio.sleep(0.02)

        watcher = asyncio.create_task(watch_final())
        server = await start_server(venv_bin, env, log)
        try:
            await wait_serving(address)
            async with grpc.aio.insecure_channel(address) as channel:
                started = await storage_pb2_grpc.StorageServiceStub(channel).StartTransfer(
                    s.StartTransferRequest(
                        kind=t.TRANSFER_KIND_COPY,
                        recursive=True,
                        source=t.TransferEndpoint(system="local", path=f"{source_dir}/run"),
                        destination=t.TransferEndpoint(facility="site-b", path=f"{target_dir}/run"),
                    ),
                    metadata=md,
                )
            for _ in range(1200):  # until the peer holds a good part of the file
                if held_bytes(target_dir / "run") > SIZE // 3:
                    break
                await asyncio.sleep(0.025)
            held_at_kill = held_bytes(target_dir / "run")
            assert SIZE // 3 < held_at_kill < SIZE, held_at_kill
            server.send_signal(signal.SIGKILL)
            await server.wait()
            assert not final.exists()

            server = await start_server(venv_bin, env, log)
            await wait_serving(address)
            async with grpc.aio.insecure_channel(address) as channel:
                done = await wait_task(channel, md, started.task.name, timeout=180)
            assert done.state == t.TASK_STATE_SUCCEEDED, done.error.message
            assert sha256_of(final) == expected
            assert final.stat().st_uid == 1002  # written as bob, the peer's service account
            assert not list((target_dir / "run").glob("*.part"))
            resumed = [
                json.loads(line)
                for line in log.read_text().splitlines()
                if '"transfer resumes a file"' in line
            ]
            # From what the peer held: about `held_at_kill` (it kept receiving what was in
            # flight for a moment, and keeps only the bytes it had hashed).
            assert resumed and SIZE // 4 < resumed[0]["offset"] < SIZE, (held_at_kill, resumed)
            assert set(seen_final) == {SIZE}, seen_final
        finally:
            watcher.cancel()
            if server.returncode is None:
                server.terminate()
                await server.wait()
