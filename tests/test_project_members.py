"""PIs manage their team (issue 14): roles and allocations in ListProjects, members of a
project, and adding or removing members as the caller, against the real Slurm. The dev
cluster makes alice a coordinator of alpha; bob coordinates nothing."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
import pytest
from files_helpers import field_violations
from google.protobuf import duration_pb2

from conftest import bearer
from hpcgate.server.app import Gateway
from hpcgate.v1 import account_pb2 as A
from hpcgate.v1 import account_pb2_grpc, compute_pb2_grpc
from hpcgate.v1 import compute_pb2 as C

pytestmark = pytest.mark.slurm
ALL = ("read", "write", "execute")


@pytest.fixture
def bob_back_in_alpha(slurm_cluster: None) -> Iterator[None]:
    """Whatever a test does to alpha's membership, bob is in it again afterwards, with
    no limits of his own."""
    yield
    subprocess.run(
        ["sacctmgr", "-i", "add", "user", "bob", "account=alpha"], capture_output=True, check=False
    )
    subprocess.run(
        [
            "sacctmgr",
            "-i",
            "modify",
            "user",
            "bob",
            "where",
            "account=alpha",
            "set",
            "MaxJobs=-1",
            "MaxSubmitJobs=-1",
            "MaxWall=-1",
        ],
        capture_output=True,
        check=False,
    )


async def rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 20) -> None:
    """slurmdbd tells slurmctld about association changes a moment later."""
    for _ in range(int(within / 0.5)):
        if await check():
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"not within {within} s: {what}")


async def test_roles_and_allocations_in_list_projects(gateway: Gateway) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = account_pb2_grpc.AccountServiceStub(channel)
        mine = await stub.ListProjects(A.ListProjectsRequest(), metadata=bearer(gateway, "alice"))
        alpha = next(p for p in mine.projects if p.name == "alpha")
        assert alpha.role == A.PROJECT_ROLE_COORDINATOR
        assert alpha.compute_allocation.known and not alpha.compute_allocation.tres
        assert "GrpTRESMins" in alpha.compute_allocation.reason
        assert {s.filesystem for s in alpha.storage_allocations} == {"home", "tmp"}
        assert all(
            not s.known and "per-project quotas" in s.reason for s in alpha.storage_allocations
        )
        bobs = await stub.ListProjects(A.ListProjectsRequest(), metadata=bearer(gateway, "bob"))
        assert {p.name: p.role for p in bobs.projects} == {
            "alpha": A.PROJECT_ROLE_MEMBER,
            "beta": A.PROJECT_ROLE_MEMBER,
        }
        members = await stub.ListProjectMembers(
            A.ListProjectMembersRequest(project="alpha"), metadata=bearer(gateway, "bob")
        )
        roles = {m.user: m.role for m in members.members}
        assert (
            roles["alice"] == A.PROJECT_ROLE_COORDINATOR and roles["bob"] == A.PROJECT_ROLE_MEMBER
        )
        # alice is not in beta: its members are not hers to see (as if it did not exist).
        hidden = await rpc_error(
            stub.ListProjectMembers(
                A.ListProjectMembersRequest(project="beta"), metadata=bearer(gateway, "alice")
            )
        )
        assert hidden.code() == grpc.StatusCode.NOT_FOUND
        bad = await rpc_error(
            stub.ListProjectMembers(
                A.ListProjectMembersRequest(project="no such"), metadata=bearer(gateway, "alice")
            )
        )
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and "project" in field_violations(bad)


async def test_a_coordinator_removes_and_adds_a_member(
    gateway: Gateway, bob_back_in_alpha: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hpcgate.audit")
    alice, bob = bearer(gateway, "alice", ALL), bearer(gateway, "bob", ALL)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        accounts = account_pb2_grpc.AccountServiceStub(channel)
        compute = compute_pb2_grpc.ComputeServiceStub(channel)

        async def bob_may_charge_alpha() -> bool:
            try:
                job = await compute.SubmitJob(
                    C.SubmitJobRequest(
                        parent="systems/local",
                        script="#!/bin/sh\ntrue\n",
                        options=C.JobOptions(account="alpha", stdout_path="/dev/null"),
                    ),
                    metadata=bob,
                )
            except grpc.aio.AioRpcError as e:
                assert e.code() == grpc.StatusCode.PERMISSION_DENIED, e.details()
                return False
            await compute.CancelJob(C.CancelJobRequest(name=job.job.name), metadata=bob)
            return True

        await accounts.RemoveProjectMember(
            A.RemoveProjectMemberRequest(project="alpha", user="bob"), metadata=alice
        )
        await eventually(lambda: _not(bob_may_charge_alpha()), "bob's job under alpha refused")
        left = await accounts.ListProjectMembers(
            A.ListProjectMembersRequest(project="alpha"), metadata=alice
        )
        assert "bob" not in {m.user for m in left.members}
        again = await rpc_error(
            accounts.RemoveProjectMember(
                A.RemoveProjectMemberRequest(project="alpha", user="bob"), metadata=alice
            )
        )
        assert again.code() == grpc.StatusCode.NOT_FOUND

        added = await accounts.AddProjectMember(
            A.AddProjectMemberRequest(
                project="alpha",
                user="bob",
                limits=A.MemberLimits(
                    max_jobs=2, max_wall_per_job=duration_pb2.Duration(seconds=600)
                ),
            ),
            metadata=alice,
        )
        assert added.member.user == "bob" and added.member.role == A.PROJECT_ROLE_MEMBER
        assert added.member.limits.max_jobs == 2
        assert added.member.limits.max_wall_per_job.seconds == 600
        await eventually(bob_may_charge_alpha, "bob's job under alpha accepted")
        twice = await rpc_error(
            accounts.AddProjectMember(
                A.AddProjectMemberRequest(project="alpha", user="bob"), metadata=alice
            )
        )
        assert twice.code() == grpc.StatusCode.ALREADY_EXISTS
    audit = [r for r in caplog.records if r.name == "hpcgate.audit"]
    audited = [(r.getMessage(), r.fields) for r in audit]  # type: ignore[attr-defined]
    assert (
        "project member removed",
        {"by": "alice", "project": "alpha", "member": "bob", "settings": []},
    ) in audited
    assert any(
        m == "project member added" and f["by"] == "alice" and "MaxJobs=2" in f["settings"]
        for m, f in audited
    )


async def _not(check: Awaitable[bool]) -> bool:
    return not await check


async def test_only_coordinators_change_members(gateway: Gateway) -> None:
    bob = bearer(gateway, "bob", ALL)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        accounts = account_pb2_grpc.AccountServiceStub(channel)
        denied = await rpc_error(
            accounts.RemoveProjectMember(
                A.RemoveProjectMemberRequest(project="alpha", user="alice"), metadata=bob
            )
        )
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "coordinators" in (denied.details() or "")
        denied = await rpc_error(
            accounts.AddProjectMember(
                A.AddProjectMemberRequest(project="beta", user="alice"), metadata=bob
            )
        )
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        members = await accounts.ListProjectMembers(
            A.ListProjectMembersRequest(project="beta"), metadata=bob
        )
        assert "alice" not in {m.user for m in members.members}
        alice = bearer(gateway, "alice", ALL)
        unknown = await rpc_error(
            accounts.AddProjectMember(
                A.AddProjectMemberRequest(project="alpha", user="hpcgate-no-such-user"),
                metadata=alice,
            )
        )
        assert unknown.code() == grpc.StatusCode.NOT_FOUND
        nothing = await rpc_error(
            accounts.AddProjectMember(
                A.AddProjectMemberRequest(project="no-such-project", user="bob"), metadata=alice
            )
        )
        assert nothing.code() == grpc.StatusCode.NOT_FOUND
        read_only = await rpc_error(
            accounts.AddProjectMember(
                A.AddProjectMemberRequest(project="alpha", user="bob"),
                metadata=bearer(gateway, "alice", ("read",)),
            )
        )
        assert read_only.code() == grpc.StatusCode.PERMISSION_DENIED
