"""Shared fixtures: the real local Slurm, and real hpcgate servers on loopback."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from hpcgate.server import config as config_module
from hpcgate.server.app import Gateway
from hpcgate.server.config import Config, StatusConfig
from slurm_accounts import remove_limit_accounts

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_SCRIPT = ROOT / "scripts" / "cluster.sh"
IN_CI = os.environ.get("CI") == "true"
# Inside the Slurm 24.11 root of scripts/slurm24.sh (`make test-pyslurm`): that cluster is
# already up (its script, not cluster.sh, manages it) and the gateways use pyslurm.
IN_SLURM24 = os.environ.get("HPCGATE_SLURM24") == "1"
# Fixtures of real PostgreSQL (tests/postgres.py): `postgres`, `pg_dsn`.
pytest_plugins = ["postgres"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `slurm` every test that needs the local cluster, judged by the fixtures it
    uses (directly or through others), so `make test-unit` (`-m "not slurm"`) runs
    exactly the tests that need no Slurm daemon (some still need root and the demo
    users, and skip without them outside CI)."""
    for item in items:
        if "slurm_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slurm)


def require(condition: bool, why: str) -> None:
    """Skip locally when a real dependency is missing; in CI that is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and a required dependency is missing: {why}")
    pytest.skip(why)


def cluster(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run scripts/cluster.sh with `args` (e.g. 'stop', 'slurmctld'); raises on failure."""
    if IN_SLURM24:  # it manages the host's 22.05 cluster: from the root it would stop that
        raise RuntimeError("scripts/cluster.sh cannot manage the Slurm 24.11 cluster")
    return subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, HPCGATE_CLUSTER_QUIET="1"),
    )


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """The real single-node Slurm, brought up by the project's own script (idempotent)."""
    require(os.geteuid() == 0, "the local Slurm cluster needs root (scripts/cluster.sh)")
    require(shutil.which("bash") is not None, "bash is needed")
    if IN_SLURM24:
        subprocess.run(["scontrol", "ping"], check=True, capture_output=True, timeout=30)
    else:
        cluster("up", timeout=600)
    remove_limit_accounts()  # what an earlier, failed run left behind


# Slurm's ClusterName of the cluster under test (scripts/cluster.sh, scripts/slurm24.sh).
SLURM_CLUSTER = "hpcgate24" if IN_SLURM24 else "hpcgate"


def adapter_under_test() -> str:
    """The Slurm adapter the suite's gateways use: pyslurm inside the 24.11 root."""
    return "pyslurm" if IN_SLURM24 else "cli"


def fast_config(tmp_path: Path, **status: Any) -> Config:
    """The built-in default config with a private state dir, ephemeral ports (gRPC, HTTP
    and metrics: gateways run side by side) and fast probes."""
    base = config_module.parse(
        {"metrics": {"listen": "127.0.0.1:0"}, "http": {"listen": "127.0.0.1:0"}}
    )
    settings = replace(
        StatusConfig(probe_interval=0.5, heartbeat_interval=1.0, filesystem_timeout=3.0), **status
    )
    # Its own socket for Slurm's hooks: gateways of one test (and `make run`) side by side.
    hook_socket = Path(base.watch.hook_socket or "/run/hpcgate-hooks/x.sock").with_name(
        f"test-{uuid.uuid4().hex[:12]}.sock"
    )
    systems = tuple(
        replace(s, slurm=replace(s.slurm, adapter=adapter_under_test())) for s in base.systems
    )
    return replace(
        base,
        server=replace(
            base.server, listen="127.0.0.1:0", state_dir=tmp_path / "state", shutdown_grace=1.0
        ),
        status=settings,
        watch=replace(base.watch, hook_socket=hook_socket),
        systems=systems,
    )


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def gateway_factory(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    """Starts in-process gateways (real grpc.aio servers on loopback); stops them after."""
    started: list[Gateway] = []

    async def start(config: Config | None = None, wait_ready: bool = True) -> Gateway:
        gateway = Gateway(config or fast_config(tmp_path))
        await gateway.start()
        started.append(gateway)
        if wait_ready:
            await asyncio.wait_for(gateway.hub.wait_ready(), 30)
        return gateway

    yield start
    for gateway in started:
        await gateway.stop()


@pytest.fixture
async def gateway(slurm_cluster: None, gateway_factory: GatewayFactory) -> Gateway:
    return await gateway_factory()


@pytest.fixture
async def channel(gateway: Gateway) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as ch:
        yield ch


@pytest.fixture
def venv_bin() -> Path:
    return Path(sys.executable).parent


@pytest.fixture
def restore_slurmctld(slurm_cluster: None) -> Iterator[None]:
    """Whatever a fault test does to slurmctld, it is running again afterwards."""
    yield
    cluster("start", "slurmctld")


@pytest.fixture
async def auth_gateway(gateway: Gateway) -> Gateway:
    """A started gateway (auth is always on); named for tests that are about callers."""
    return gateway


def bearer(
    gateway: Gateway, user: str, scopes: tuple[str, ...] = ("read",)
) -> list[tuple[str, str]]:
    """Call metadata with an access token of `user`, as `hpcgate-server token` makes them."""
    from hpcgate.server.auth.tokens import ADMIN_CLIENT_ID

    token, _ = gateway.tokens.mint(
        user, ADMIN_CLIENT_ID, frozenset(scopes), 300, ("127.0.0.0/8", "::1/128")
    )
    return [("authorization", f"Bearer {token}")]
