"""Advance reservations within a site policy (issue 14), against the real Slurm: granted at
once, used by a job of the requester, refused to a user it does not name, deleted; policy
rules named in refusals; an operator's approval and denial seen by a watcher."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from files_helpers import field_violations
from google.protobuf import duration_pb2, timestamp_pb2

from conftest import GatewayFactory, bearer, fast_config
from hpcgate.server.app import Gateway
from hpcgate.server.config import Config, ReservationPolicy
from hpcgate.v1 import compute_pb2 as C
from hpcgate.v1 import compute_pb2_grpc

pytestmark = pytest.mark.slurm
ALL = ("read", "write", "execute")
POLICY = ReservationPolicy(
    accounts=("alpha",), max_nodes=1, max_duration=1800, max_node_hours=0.5, max_ahead=86400
)


def slurm_reservations() -> dict[str, str]:
    out = subprocess.run(
        ["scontrol", "-o", "show", "reservation"], capture_output=True, text=True, check=False
    ).stdout
    found = {}
    for line in out.splitlines():
        if match := re.search(r"ReservationName=(\S+)", line):
            found[match.group(1)] = line
    return found


@pytest.fixture
def no_leftover_reservations(slurm_cluster: None) -> Iterator[None]:
    """The only node must not stay reserved for later tests."""
    yield
    for name in slurm_reservations():
        if name.startswith("hpcgate-"):
            subprocess.run(
                ["scontrol", "delete", f"ReservationName={name}"], check=False, capture_output=True
            )


def with_policy(config: Config, policy: ReservationPolicy) -> Config:
    system = replace(config.systems[0], reservations=policy)
    return replace(config, systems=(system, *config.systems[1:]))


def minutes(n: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=60 * n)


async def rpc_error(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value


@pytest.fixture
async def auto(
    gateway_factory: GatewayFactory, tmp_path: Path, no_leftover_reservations: None
) -> Gateway:
    return await gateway_factory(with_policy(fast_config(tmp_path), POLICY))


async def test_a_granted_reservation_runs_the_requesters_job_only(auto: Gateway) -> None:
    alice, bob = bearer(auto, "alice", ALL), bearer(auto, "bob", ALL)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{auto.port}") as channel:
        stub = compute_pb2_grpc.ComputeServiceStub(channel)
        made = (
            await stub.CreateReservation(
                C.CreateReservationRequest(
                    parent="systems/local",
                    project="alpha",
                    node_count=1,
                    duration=minutes(10),
                    users=["alice"],
                ),
                metadata=alice,
            )
        ).reservation_request
        assert made.state == C.RESERVATION_REQUEST_STATE_ACTIVE, made.reason
        assert made.reservation == f"hpcgate-{made.id}" and made.nodes
        assert made.end_time.ToSeconds() - made.granted_start_time.ToSeconds() == 600
        line = slurm_reservations()[made.reservation]
        assert "Users=alice" in line and "Accounts=alpha" in line

        job = (
            await stub.SubmitJob(
                C.SubmitJobRequest(
                    parent="systems/local",
                    script="#!/bin/sh\nhostname\n",
                    options=C.JobOptions(
                        reservation=made.reservation, account="alpha", stdout_path="/dev/null"
                    ),
                ),
                metadata=alice,
            )
        ).job
        for _ in range(120):
            done = (await stub.GetJob(C.GetJobRequest(name=job.name), metadata=alice)).job
            if done.state == C.JOB_STATE_COMPLETED:
                break
            await asyncio.sleep(0.5)
        assert done.state == C.JOB_STATE_COMPLETED and list(done.nodes) == [made.nodes]
        refused = await rpc_error(
            stub.SubmitJob(
                C.SubmitJobRequest(
                    parent="systems/local",
                    script="#!/bin/sh\ntrue\n",
                    options=C.JobOptions(reservation=made.reservation, account="alpha"),
                ),
                metadata=bob,
            )
        )
        assert refused.code() == grpc.StatusCode.PERMISSION_DENIED, refused.details()

        listed = await stub.ListReservationRequests(
            C.ListReservationRequestsRequest(parent="systems/local"), metadata=alice
        )
        assert [r.id for r in listed.reservation_requests] == [made.id]
        hidden = await rpc_error(
            stub.GetReservationRequest(C.GetReservationRequestRequest(name=made.name), metadata=bob)
        )
        assert hidden.code() == grpc.StatusCode.NOT_FOUND
        gone = (
            await stub.DeleteReservation(C.DeleteReservationRequest(name=made.name), metadata=alice)
        ).reservation_request
        assert gone.state == C.RESERVATION_REQUEST_STATE_CANCELLED
        assert made.reservation not in slurm_reservations()


async def test_requests_beyond_the_policy_name_the_rule(auto: Gateway) -> None:
    alice, bob = bearer(auto, "alice", ALL), bearer(auto, "bob", ALL)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{auto.port}") as channel:
        stub = compute_pb2_grpc.ComputeServiceStub(channel)

        async def ask(md: list[tuple[str, str]], **fields: object) -> grpc.aio.AioRpcError:
            request = C.CreateReservationRequest(
                parent="systems/local", project="alpha", node_count=1, duration=minutes(10)
            )
            for key, value in fields.items():
                if isinstance(value, duration_pb2.Duration | timestamp_pb2.Timestamp):
                    getattr(request, key).CopyFrom(value)
                else:
                    setattr(request, key, value)
            return await rpc_error(stub.CreateReservation(request, metadata=md))

        cases = [
            (await ask(alice, node_count=2), grpc.StatusCode.FAILED_PRECONDITION, "max_nodes"),
            (
                await ask(alice, duration=minutes(60)),
                grpc.StatusCode.FAILED_PRECONDITION,
                "max_duration",
            ),
            (
                await ask(bob, project="beta"),
                grpc.StatusCode.PERMISSION_DENIED,
                "reservations.accounts",
            ),
            (await ask(alice, project="beta"), grpc.StatusCode.PERMISSION_DENIED, "not a member"),
        ]
        for error, code, words in cases:
            assert error.code() == code and words in (error.details() or ""), error.details()
        bad = await ask(
            alice,
            duration=duration_pb2.Duration(seconds=90),
            node_count=0,
            start_time=timestamp_pb2.Timestamp(seconds=1_000_000_000),
        )
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert {"duration", "node_count", "start_time"} <= set(field_violations(bad))
        malformed = await rpc_error(
            stub.GetReservationRequest(
                C.GetReservationRequestRequest(name="reservations/1"), metadata=alice
            )
        )
        assert malformed.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not [n for n in slurm_reservations() if n.startswith("hpcgate-")]


def operator(state_dir: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`hpcgate-server reservations ...` as an operator runs it, on the same state."""
    config = tmp_path / "operator.toml"
    config.write_text(
        f'[server]\nstate_dir = "{state_dir}"\n[[systems]]\nid = "local"\n'
        '[systems.reservations]\naccounts = ["alpha"]\napproval = "operator"\n'
    )
    env = dict(os.environ, HPCGATE_CONFIG=str(config))
    return subprocess.run(
        [str(Path(sys.executable).parent / "hpcgate-server"), "reservations", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_an_operator_approves_and_denies_while_the_requester_watches(
    gateway_factory: GatewayFactory, tmp_path: Path, no_leftover_reservations: None
) -> None:
    config = with_policy(fast_config(tmp_path), replace(POLICY, approval="operator"))
    gateway = await gateway_factory(config)
    alice = bearer(gateway, "alice", ALL)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = compute_pb2_grpc.ComputeServiceStub(channel)
        asked = C.CreateReservationRequest(
            parent="systems/local", project="alpha", node_count=1, duration=minutes(5)
        )
        first = (await stub.CreateReservation(asked, metadata=alice)).reservation_request
        assert first.state == C.RESERVATION_REQUEST_STATE_PENDING_APPROVAL
        assert first.name not in slurm_reservations()
        stream = stub.WatchReservationRequest(
            C.WatchReservationRequestRequest(name=first.name), metadata=alice
        )
        seen = [(await stream.read()).reservation_request.state]
        approved = await asyncio.to_thread(
            operator, config.server.state_dir, tmp_path, "approve", first.id
        )
        assert approved.returncode == 0 and "ACTIVE" in approved.stdout, approved.stderr
        while seen[-1] != C.RESERVATION_REQUEST_STATE_ACTIVE:
            message = await asyncio.wait_for(stream.read(), 10)
            if message.HasField("reservation_request"):
                seen.append(message.reservation_request.state)
        assert seen == [
            C.RESERVATION_REQUEST_STATE_PENDING_APPROVAL,
            C.RESERVATION_REQUEST_STATE_ACTIVE,
        ]
        stream.cancel()
        await stub.DeleteReservation(C.DeleteReservationRequest(name=first.name), metadata=alice)

        second = (await stub.CreateReservation(asked, metadata=alice)).reservation_request
        denied = await asyncio.to_thread(
            operator,
            config.server.state_dir,
            tmp_path,
            "deny",
            second.id,
            "--reason",
            "beamtime moved",
        )
        assert denied.returncode == 0, denied.stderr
        now = (
            await stub.GetReservationRequest(
                C.GetReservationRequestRequest(name=second.name), metadata=alice
            )
        ).reservation_request
        assert (now.state, now.reason) == (C.RESERVATION_REQUEST_STATE_REJECTED, "beamtime moved")
        listed = await asyncio.to_thread(operator, config.server.state_dir, tmp_path, "list")
        assert first.id in listed.stdout and second.id in listed.stdout


async def test_the_client_and_the_cli_reserve(auto: Gateway, tmp_path: Path) -> None:
    from datetime import timedelta

    from hpcgate.client import FailedPrecondition, connect

    token = bearer(auto, "alice", ALL)[0][1].removeprefix("Bearer ")
    address = f"127.0.0.1:{auto.port}"
    async with connect(address, token=token, system="local") as client:
        made = await client.reservations.create("alpha", 1, timedelta(minutes=5))
        assert made.state == C.RESERVATION_REQUEST_STATE_ACTIVE
        assert [r.id for r in await client.reservations.list()] == [made.id]
        assert (await client.reservations.delete(made.id)).state == (
            C.RESERVATION_REQUEST_STATE_CANCELLED
        )
        with pytest.raises(FailedPrecondition, match="max_nodes"):
            await client.reservations.create("alpha", 2, timedelta(minutes=5))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCGATE_")}
    env |= {
        "HPCGATE_ADDRESS": address,
        "HPCGATE_TOKEN": token,
        "HPCGATE_SYSTEM": "local",
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
    }
    program = str(Path(sys.executable).parent / "hpcgate")

    def hpcgate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [program, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    reserved = await asyncio.to_thread(hpcgate, "reserve", "alpha", "-t", "5", "-u", "alice")
    assert reserved.returncode == 0 and ": ACTIVE; submit with --reservation=hpcgate-" in (
        reserved.stdout
    ), reserved.stderr
    request_id = reserved.stdout.split()[1].rstrip(":")
    listed = await asyncio.to_thread(hpcgate, "reservations")
    assert request_id in listed.stdout and "ACTIVE" in listed.stdout
    cancelled = await asyncio.to_thread(hpcgate, "reservations", "--cancel", request_id)
    assert cancelled.returncode == 0 and "CANCELLED" in cancelled.stdout
    too_big = await asyncio.to_thread(hpcgate, "reserve", "alpha", "-t", "5", "-N", "2")
    assert too_big.returncode == 9 and "max_nodes" in too_big.stderr


async def test_an_automatic_request_the_scheduler_cannot_answer_is_rejected(
    auto: Gateway, restore_slurmctld: None
) -> None:
    """Not left PENDING_APPROVAL forever: with approval = auto nobody would decide it."""
    from conftest import cluster

    alice = bearer(auto, "alice", ALL)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{auto.port}") as channel:
        stub = compute_pb2_grpc.ComputeServiceStub(channel)
        await asyncio.to_thread(cluster, "stop", "slurmctld")
        down = await rpc_error(
            stub.CreateReservation(
                C.CreateReservationRequest(
                    parent="systems/local", project="alpha", node_count=1, duration=minutes(5)
                ),
                metadata=alice,
            )
        )
        assert down.code() == grpc.StatusCode.UNAVAILABLE, down.details()
        listed = await stub.ListReservationRequests(
            C.ListReservationRequestsRequest(parent="systems/local"), metadata=alice
        )
        (request,) = listed.reservation_requests
        assert request.state == C.RESERVATION_REQUEST_STATE_REJECTED
        assert "not granted" in request.reason
