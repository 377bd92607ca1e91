"""A TypeScript Connect client (web/src/check.ts, built with @connectrpc/connect-node from
the same protos as the status page) against a real gateway, over the Connect protocol
(binary and JSON) and gRPC-Web, HTTP/1.1 and HTTP/2: unary and streaming calls, with and
without a token, and a bad request whose BadRequest details it decodes."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import IN_CI, bearer
from hpcgate.server.app import Gateway

pytestmark = pytest.mark.slurm
ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"


def run(argv: list[str], cwd: Path = ROOT) -> None:
    env = dict(os.environ, PYTHON=sys.executable)
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")


@pytest.fixture(scope="module")
def check_script() -> Iterator[Path]:
    """web/dist/check.js, built as `make web` builds it (npm ci of the locked packages,
    protoc-gen-es, tsc --strict, esbuild), under a lock: other runs may share web/."""
    lock = os.open(WEB, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            run(["bash", "scripts/node.sh", "web"])
        except RuntimeError as e:
            if IN_CI or shutil.which("node"):
                raise
            pytest.skip(f"Node.js is not available: {e}")
        run(["npm", "run", "--silent", "generate"], cwd=WEB)
        run(["npm", "run", "--silent", "build"], cwd=WEB)
        fcntl.flock(lock, fcntl.LOCK_SH)
        yield WEB / "dist" / "check.js"
    finally:
        os.close(lock)


async def check(script: Path, gateway: Gateway, *args: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        "node", str(script), "--base-url", f"http://127.0.0.1:{gateway.http_port}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("protocol", "http", "format"),
    [("connect", "1.1", "binary"), ("connect", "2", "json"), ("grpc-web", "1.1", "binary"),
     ("grpc-web", "2", "binary")],
)  # fmt: skip
async def test_a_typescript_connect_client_reaches_every_kind_of_call(
    gateway: Gateway, check_script: Path, protocol: str, http: str, format: str
) -> None:
    token = bearer(gateway, "alice", ("read", "execute"))[0][1].removeprefix("Bearer ")
    result = await check(
        check_script, gateway, "--token", token, "--protocol", protocol, "--http", http,
        "--format", format,
    )  # fmt: skip
    assert result["list_systems"] == ["local"], result
    assert result["watch_systems_first"] == ["local"], result
    assert result["token_info"] == {"user": "alice", "scopes": ["execute", "read"]}, result
    assert result["no_token"]["error"] == "Unauthenticated", result
    assert "Bearer" in result["no_token"]["message"]
    bad = result["bad_request"]
    assert bad["error"] == "InvalidArgument", result
    fields = {v["field"] for v in bad["field_violations"]}
    assert "parent" in fields, bad
    assert all(v["description"] for v in bad["field_violations"])
    assert result["watch_jobs"]["kind"] == "snapshot", result


async def test_without_a_token_only_the_public_calls_answer(
    gateway: Gateway, check_script: Path
) -> None:
    result = await check(check_script, gateway)
    assert result["list_systems"] == ["local"]
    assert result["watch_systems_first"] == ["local"]
    assert result["no_token"]["error"] == "Unauthenticated"
    assert result["token_info"] == {"skipped": "no --token given"}
