"""kill -9 of the server in the middle of a transfer: after a restart the task resumes from
its last checkpoint and ends SUCCEEDED, seen by a client that reconnects with WatchTask."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import grpc
from files_helpers import user_dir
from test_server_process import free_port, wait_serving
from transfer_helpers import make_tree, owners, snapshot, wait_task

from hpcgate.v1 import storage_pb2 as s
from hpcgate.v1 import storage_pb2_grpc, tasks_pb2_grpc
from hpcgate.v1 import tasks_pb2 as t


def checkpointed_files(state_dir: Path, task_id: str) -> int:
    """Files done as of the task's last checkpoint (0 before the first)."""
    with sqlite3.connect(state_dir / "hpcgate.sqlite3") as db:
        row = db.execute("SELECT checkpoint FROM tasks WHERE id = ?", (task_id,)).fetchone()
    return int(json.loads(row[0]).get("files_done", 0)) if row and row[0] else 0


async def start_server(
    venv_bin: Path, env: dict[str, str], log: Path
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(venv_bin / "hpcgate-server"),
        "serve",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=open(log, "ab"),
    )


async def test_kill_9_during_a_transfer_then_resume(
    slurm_cluster: None, tmp_path: Path, venv_bin: Path
) -> None:
    port = free_port()
    config = tmp_path / "hpcgate.toml"
    config.write_text(
        '[privsep]\nservice_user = ""\n'  # one root process: state in a private temp dir
        '[http]\nlisten = "127.0.0.1:0"\n'  # the HTTP listener on a free port
        f'[server]\nlisten = "127.0.0.1:{port}"\nstate_dir = "{tmp_path / "state"}"\n'
        "shutdown_grace = 1.0\n[status]\nprobe_interval = 1.0\n"
    )
    env = dict(os.environ, HPCGATE_CONFIG=str(config))
    token = subprocess.run(
        [
            str(venv_bin / "hpcgate-server"),
            "token",
            "--user",
            "alice",
            "--scope",
            "read",
            "--scope",
            "write",
            "--ttl",
            "900",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    md = [("authorization", f"Bearer {token}")]
    address = f"127.0.0.1:{port}"
    with user_dir("alice") as directory:
        make_tree(directory / "src", "alice", files=2500, big=256 * 1024 * 1024)
        server = await start_server(venv_bin, env, tmp_path / "server.log")
        try:
            await wait_serving(address)
            async with grpc.aio.insecure_channel(address) as channel:
                started = await storage_pb2_grpc.StorageServiceStub(channel).StartTransfer(
                    s.StartTransferRequest(
                        kind=t.TRANSFER_KIND_COPY,
                        recursive=True,
                        preserve=True,
                        source=t.TransferEndpoint(system="local", path=f"{directory}/src"),
                        destination=t.TransferEndpoint(system="local", path=f"{directory}/dst"),
                    ),
                    metadata=md,
                )
                name = started.task.name
                tasks = tasks_pb2_grpc.TasksServiceStub(channel)
                for _ in range(600):  # until some files are done and checkpointed
                    task = (await tasks.GetTask(t.GetTaskRequest(name=name), metadata=md)).task
                    if checkpointed_files(tmp_path / "state", name.split("/")[1]) > 0:
                        break
                    await asyncio.sleep(0.05)
                assert task.state == t.TASK_STATE_RUNNING, task
                assert task.progress.files_done < task.progress.files_total
            server.send_signal(signal.SIGKILL)
            await server.wait()

            server = await start_server(venv_bin, env, tmp_path / "server.log")
            await wait_serving(address)
            async with grpc.aio.insecure_channel(address) as channel:
                done = await wait_task(channel, md, name, timeout=180)
            assert done.state == t.TASK_STATE_SUCCEEDED, done.error.message
            assert done.transfer_result.files_transferred == 2502  # files, zz-big.bin, link
            assert snapshot(directory / "dst") == snapshot(directory / "src")
            assert owners(directory / "dst") == {1001}
            assert not [p for p in (directory / "dst").rglob("*.part")]
            # It continued from its checkpoint, not from the beginning.
            resumed = [
                json.loads(line)
                for line in (tmp_path / "server.log").read_text().splitlines()
                if '"transfer resumed"' in line
            ]
            assert resumed and resumed[0]["files_done"] > 0, resumed
        finally:
            if server.returncode is None:
                server.terminate()
                await server.wait()
