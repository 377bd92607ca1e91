"""The client's core against a real server: typed errors with their details, retries
only where safe, the credential kinds, and the blocking SyncClient over the same code."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from conftest import bearer
from hpcgate.client import (
    Client,
    HpcgateError,
    InvalidArgument,
    NotFound,
    RetryPolicy,
    SyncClient,
    TokenCommand,
    Unauthenticated,
    Unavailable,
    connect,
)
from hpcgate.client.errors import FieldViolation
from hpcgate.server.app import Gateway
from hpcgate.v1 import status_pb2, status_pb2_grpc


def token_of(gateway: Gateway, user: str = "alice") -> str:
    return bearer(gateway, user, ("read", "write", "execute"))[0][1].removeprefix("Bearer ")


def address(gateway: Gateway) -> str:
    return f"127.0.0.1:{gateway.port}"


async def test_errors_are_typed_and_carry_every_field_violation(gateway: Gateway) -> None:
    async with connect(address(gateway), token=token_of(gateway), system="local") as client:
        with pytest.raises(NotFound) as missing:
            await client.status.system("no-such-system")
        assert missing.value.code == grpc.StatusCode.NOT_FOUND
        assert missing.value.exit_code == 5 and "no-such-system" in str(missing.value)
        stub = status_pb2_grpc.StatusServiceStub(client.channel)
        with pytest.raises(InvalidArgument) as bad:
            request = status_pb2.ListSystemsRequest(page_token="not a token", page_size=-1)
            await client.unary(stub.ListSystems, request, retry=True)
        fields = {v.field for v in bad.value.violations}
        assert {"page_token", "page_size"} <= fields, bad.value.violations
        assert all(isinstance(v, FieldViolation) for v in bad.value.violations)
        assert "page_size" in str(bad.value)  # printed with the message


async def test_unavailable_is_retried_with_backoff_then_raised() -> None:
    retry = RetryPolicy(attempts=4, initial_delay=0.05, max_delay=0.2)
    started = time.monotonic()
    # Nothing listens on port 1: every attempt fails UNAVAILABLE.
    async with Client.connect("127.0.0.1:1", token="x", retry=retry, timeout=2) as client:
        with pytest.raises(Unavailable):
            await client.status.systems()
        retried = time.monotonic() - started
        started = time.monotonic()
        stub = status_pb2_grpc.StatusServiceStub(client.channel)
        with pytest.raises(Unavailable):  # a write without request_id: never retried
            await client.unary(stub.ListSystems, status_pb2.ListSystemsRequest(), retry=False)
        once = time.monotonic() - started
    assert retried >= 3 * 0.025 and retried > once  # three waits between four attempts


def test_retry_delay_honours_retry_info_and_caps() -> None:
    policy = RetryPolicy(attempts=5, initial_delay=0.1, max_delay=2.0)
    told = Unavailable("busy", retry_delay=1.5)
    assert policy.delay(0, told) == 1.5
    assert policy.delay(0, Unavailable("busy", retry_delay=60)) == 2.0
    plain = Unavailable("busy")
    assert 0.05 <= policy.delay(0, plain) <= 0.1
    assert policy.delay(10, plain) <= 2.0


async def test_a_token_command_supplies_the_token(gateway: Gateway, tmp_path: Path) -> None:
    script = tmp_path / "get-token"
    script.write_text(f"#!/bin/sh\necho {token_of(gateway)}\n")
    script.chmod(0o700)
    async with connect(address(gateway), credentials=TokenCommand(str(script))) as client:
        assert (await client.account.user()).name == "alice"
    failing = TokenCommand(["sh", "-c", "echo no >&2; exit 3"])
    async with connect(address(gateway), credentials=failing) as client:
        with pytest.raises(Unauthenticated, match="exit 3"):
            await client.account.user()


async def test_a_bad_token_is_unauthenticated(gateway: Gateway) -> None:
    async with connect(address(gateway), token="garbage") as client:
        with pytest.raises(Unauthenticated) as e:
            await client.account.projects()
        assert isinstance(e.value, HpcgateError) and e.value.exit_code == 16


async def test_sync_client_runs_the_same_methods_blocking(gateway: Gateway) -> None:
    # Blocking calls run in a thread: the gateway serves from this test's own loop.
    await asyncio.to_thread(_sync_session, gateway)


def _sync_session(gateway: Gateway) -> None:
    with SyncClient.connect(address(gateway), token=token_of(gateway), system="local") as client:
        systems = client.status.systems()
        assert [s.name for s in systems] == ["systems/local"]
        assert client.status.system().name == "systems/local"
        assert client.account.user().name == "alice"
        assert isinstance(client.account.projects(), list)
        assert isinstance(list(client.tasks.list()), list)  # iterates every page
        with pytest.raises(NotFound):
            client.tasks.get("no-such-task")
        watch = client.status.watch(heartbeat=1)
        first = next(iter(watch))
        assert first.WhichOneof("kind") == "snapshot"
        watch.close()
