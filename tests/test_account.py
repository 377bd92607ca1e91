"""AccountService end to end (real Slurm, real gateway with auth), plus the servicer's
degraded paths: slurmdbd down (real tools, wrong port), sshare or sreport failing."""

from __future__ import annotations

import os
import pwd
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from conftest import bearer, fast_config
from hpcgate.server.api.account import AccountServicer
from hpcgate.server.api.errors import to_status
from hpcgate.server.app import Gateway
from hpcgate.server.auth.caller import Caller, reset_caller, set_caller
from hpcgate.server.errors import Code, DomainError
from hpcgate.server.privsep import PrivilegeSeparation
from hpcgate.server.slurm.adapter import (
    AccountInfo,
    AssociationInfo,
    FairShareInfo,
    SlurmAdapter,
    SlurmError,
    SlurmUnavailable,
    UsageRecord,
    UserAssociations,
)
from hpcgate.server.slurm.cli_adapter import CommandLineAdapter
from hpcgate.server.slurm.commands import CommandResult
from hpcgate.v1 import account_pb2, account_pb2_grpc

pytestmark = pytest.mark.slurm
NOW = datetime.now(UTC)


@pytest.fixture
async def account(auth_gateway: Gateway) -> AsyncIterator[account_pb2_grpc.AccountServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{auth_gateway.port}") as channel:
        yield account_pb2_grpc.AccountServiceStub(channel)


def bad_request_fields(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    return [v.field for v in bad_request.field_violations]


# --- End to end: a started gateway with auth on, tokens of alice and bob ---


async def test_get_user_describes_the_caller(
    auth_gateway: Gateway, account: account_pb2_grpc.AccountServiceStub
) -> None:
    reply = await account.GetUser(
        account_pb2.GetUserRequest(), metadata=bearer(auth_gateway, "alice")
    )
    user = reply.user
    assert (user.name, user.uid, user.primary_group) == ("alice", 1001, "alice")
    assert user.default_account == "alpha"
    assert user.home_directory == "/home/alice" and user.shell
    groups = [g.name for g in user.groups]
    assert groups[0] == "alice" and "hpcgate-test" in groups  # primary first
    assert user.groups[0].gid == user.gid
    assert all(not g.members for g in user.groups)  # members only in ListGroups


async def test_get_user_of_another_user_like_id(
    auth_gateway: Gateway, account: account_pb2_grpc.AccountServiceStub
) -> None:
    reply = await account.GetUser(
        account_pb2.GetUserRequest(user="bob"), metadata=bearer(auth_gateway, "alice")
    )
    assert (reply.user.name, reply.user.uid, reply.user.default_account) == ("bob", 1002, "beta")
    # A POSIX user with no Slurm user record has no default account.
    nobody = await account.GetUser(
        account_pb2.GetUserRequest(user="nobody"), metadata=bearer(auth_gateway, "alice")
    )
    assert nobody.user.name == "nobody" and nobody.user.default_account == ""


async def test_get_user_errors(
    auth_gateway: Gateway, account: account_pb2_grpc.AccountServiceStub
) -> None:
    metadata = bearer(auth_gateway, "alice")
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await account.GetUser(account_pb2.GetUserRequest(user="no-such-user"), metadata=metadata)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-user" in (missing.value.details() or "")
    for bad in ("bob,alice", "-rf", "a b", "x=1", "a" * 80):
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await account.GetUser(account_pb2.GetUserRequest(user=bad), metadata=metadata)
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
        assert bad_request_fields(invalid.value) == ["user"]
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await account.GetUser(account_pb2.GetUserRequest())
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_bob_has_two_projects_beta_by_default(
    auth_gateway: Gateway, account: account_pb2_grpc.AccountServiceStub
) -> None:
    reply = await account.ListProjects(
        account_pb2.ListProjectsRequest(), metadata=bearer(auth_gateway, "bob")
    )
    projects = {p.name: p for p in reply.projects}
    assert [p.name for p in reply.projects] == ["alpha", "beta"] and not reply.next_page_token
    assert projects["alpha"].description == "alice and bob's project"
    assert projects["beta"].description == "bob's second project"
    assert projects["beta"].is_default and not projects["alpha"].is_default
    assert projects["alpha"].organization == "hpcgate"
    assert projects["alpha"].parent_account == ""  # a child of root
    for project in reply.projects:
        assert [a.user for a in project.associations] == ["bob"]
        association = project.associations[0]
        assert association.partition == "" and "normal" in association.qos
        assert not association.limits.HasField("max_jobs")  # no limits on this cluster
        assert not association.HasField("fair_share")  # priority/basic: no fair share
        for usage in (project.project_usage, project.user_usage):
            assert usage.known
            start, end = usage.period_start.ToDatetime(UTC), usage.period_end.ToDatetime(UTC)
            assert start <= end <= datetime.now(UTC)
            assert end - start <= timedelta(days=31)
            assert not usage.HasField("cpu_hours_allocated")
        assert project.user_usage.cpu_hours_used <= project.project_usage.cpu_hours_used


async def test_alice_has_only_alpha(
    auth_gateway: Gateway, account: account_pb2_grpc.AccountServiceStub
) -> None:
    reply = await account.ListProjects(
        account_pb2.ListProjectsRequest(), metadata=bearer(auth_gateway, "alice")
    )
    assert [p.name for p in reply.projects] == ["alpha"]
    assert reply.projects[0].is_default
    assert [a.user for a in reply.projects[0].associations] == ["alice"]


async def test_list_projects_pages(
    auth_gateway: Gateway, account: account_pb2_grpc.AccountServiceStub
) -> None:
    metadata = bearer(auth_gateway, "bob")
    first = await account.ListProjects(
        account_pb2.ListProjectsRequest(page_size=1), metadata=metadata
    )
    assert [p.name for p in first.projects] == ["alpha"] and first.next_page_token
    second = await account.ListProjects(
        account_pb2.ListProjectsRequest(page_size=1, page_token=first.next_page_token),
        metadata=metadata,
    )
    assert [p.name for p in second.projects] == ["beta"] and not second.next_page_token
    assert second.projects[0].is_default
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await account.ListProjects(
            account_pb2.ListProjectsRequest(page_size=-1, page_token="nonsense"),
            metadata=metadata,
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(bad.value) == ["page_size", "page_token"]


async def test_list_groups_primary_first_with_members(
    auth_gateway: Gateway, account: account_pb2_grpc.AccountServiceStub
) -> None:
    metadata = bearer(auth_gateway, "alice")
    reply = await account.ListGroups(account_pb2.ListGroupsRequest(), metadata=metadata)
    names = [g.name for g in reply.groups]
    assert names[0] == "alice" and "hpcgate-test" in names and not reply.next_page_token
    assert names[1:] == sorted(names[1:])
    shared = next(g for g in reply.groups if g.name == "hpcgate-test")
    assert {"alice", "bob"} <= set(shared.members)
    first = await account.ListGroups(account_pb2.ListGroupsRequest(page_size=1), metadata=metadata)
    assert [g.name for g in first.groups] == ["alice"] and first.next_page_token
    rest = await account.ListGroups(
        account_pb2.ListGroupsRequest(page_token=first.next_page_token), metadata=metadata
    )
    assert [g.name for g in rest.groups] == names[1:]


# --- The servicer with real tools but slurmdbd unreachable, or with a scripted adapter ---


class called_as:
    """Runs servicer methods directly as `user` (what the auth interceptor does)."""

    def __init__(self, user: str) -> None:
        self.caller = Caller(
            user, "test", frozenset({"read"}), "test", "test", NOW, NOW + timedelta(hours=1), "t"
        )

    def __enter__(self) -> None:
        self.token = set_caller(self.caller)

    def __exit__(self, *exc: object) -> None:
        reset_caller(self.token)


@pytest.fixture
def unreachable_slurmdbd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Slurm's tools read a slurm.conf that points at a port where no slurmdbd listens."""
    real = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf"))
    lines = [
        line
        for line in real.read_text().splitlines()
        if not line.strip().lower().startswith("accountingstorageport")
    ]
    conf = tmp_path / "slurm.conf"
    conf.write_text("\n".join([*lines, "AccountingStoragePort=9"]) + "\n")
    monkeypatch.setenv("SLURM_CONF", str(conf))
    yield


async def test_a_caller_without_an_account_is_not_found(
    auth_gateway: Gateway, account: account_pb2_grpc.AccountServiceStub
) -> None:
    """A valid token for a user the system does not know (removed since, or a typo in
    `hpcgate-server token --user`): every RPC about the caller is NOT_FOUND, saying so."""
    metadata = bearer(auth_gateway, "hpcgate-no-such-user")
    for call in (
        account.GetUser(account_pb2.GetUserRequest(), metadata=metadata),
        account.ListProjects(account_pb2.ListProjectsRequest(), metadata=metadata),
        account.ListGroups(account_pb2.ListGroupsRequest(), metadata=metadata),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call
        assert e.value.code() == grpc.StatusCode.NOT_FOUND, e.value.details()
        assert "your user 'hpcgate-no-such-user' does not exist" in (e.value.details() or "")
    # ... and a bad page token is INVALID_ARGUMENT before that.
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await account.ListGroups(account_pb2.ListGroupsRequest(page_token="zzz"), metadata=metadata)
    assert bad_request_fields(bad.value) == ["page_token"]


def servicer_with(adapter: SlurmAdapter, tmp_path: Path) -> AccountServicer:
    config = fast_config(tmp_path)
    # Reads only: the privilege separation for member changes is never started.
    return AccountServicer(config, {config.systems[0].id: adapter}, PrivilegeSeparation())


async def test_slurmdbd_down_is_unavailable_with_retry_info(
    slurm_cluster: None, unreachable_slurmdbd: None, tmp_path: Path
) -> None:
    config = fast_config(tmp_path)
    servicer = servicer_with(CommandLineAdapter(config.systems[0].slurm), tmp_path)
    for call in (
        lambda: servicer.ListProjects(account_pb2.ListProjectsRequest(), None),
        lambda: servicer.GetUser(account_pb2.GetUserRequest(), None),
    ):
        with called_as("bob"), pytest.raises(DomainError) as e:
            await call()
        assert e.value.code == Code.UNAVAILABLE
        assert "slurmdbd" in e.value.message and "retry in" in e.value.message
        retry = error_details_pb2.RetryInfo()
        details = status_pb2.Status.FromString(
            dict(to_status(e.value).trailing_metadata)["grpc-status-details-bin"]
        ).details
        assert details[0].Unpack(retry) and retry.retry_delay.seconds > 0


async def test_list_projects_costs_a_constant_number_of_slurm_calls(
    slurm_cluster: None, tmp_path: Path
) -> None:
    config = fast_config(tmp_path)
    adapter = CommandLineAdapter(config.systems[0].slurm)
    servicer = servicer_with(adapter, tmp_path)
    calls: list[str] = []
    run = adapter.commands.run

    async def counting(tool: str, *args: str, check: bool = True) -> CommandResult:
        calls.append(tool)
        return await run(tool, *args, check=check)

    adapter.commands.run = counting  # type: ignore[method-assign]
    with called_as("bob"):
        await servicer.ListProjects(account_pb2.ListProjectsRequest(), None)
        calls.clear()  # the first call may also look the cluster name up, once
        reply = await servicer.ListProjects(account_pb2.ListProjectsRequest(), None)
    assert len(reply.projects) == 2
    assert sorted(calls) == ["sacctmgr", "sacctmgr", "sreport", "sshare"]


class ScriptedAdapter:
    """Accounting answers from memory; `fail` names the methods that raise."""

    def __init__(self, fail: Sequence[str] = ()) -> None:
        self.fail = set(fail)

    def _check(self, method: str) -> None:
        if method in self.fail:
            raise SlurmUnavailable(f"{method}: Socket timed out on send/recv operation")

    async def user_associations(self, user: str) -> UserAssociations:
        self._check("user_associations")
        limited = AssociationInfo(
            user=user,
            account="alpha",
            cluster="c",
            qos=("normal", "high"),
            default_qos="normal",
            group_tres={"cpu": 8, "mem": 8000},
            group_tres_minutes={"cpu": 60000},
            max_tres_per_job={"cpu": 4, "gres/gpu": 1},
            max_tres_per_node={"mem": 512},
            max_wall_seconds=36 * 3600,
            max_jobs=0,
            max_submit_jobs=20,
        )
        per_partition = AssociationInfo(user=user, account="alpha", cluster="c", partition="long")
        other = AssociationInfo(user=user, account="gamma", cluster="c")
        return UserAssociations(user, "gamma", (per_partition, limited, other))

    async def accounts(self, names: Sequence[str]) -> list[AccountInfo]:
        self._check("accounts")
        known = [
            AccountInfo("alpha", "first", "org", "root"),
            AccountInfo("gamma", "", "", "alpha"),
        ]
        return [a for a in known if a.name in names]

    async def fair_share(self, user: str) -> list[FairShareInfo]:
        self._check("fair_share")
        return [FairShareInfo("alpha", user, "", 10, 0.25, 7200, 0.125, 0.64)]

    async def usage(
        self, accounts: Sequence[str], start: datetime, end: datetime
    ) -> list[UsageRecord]:
        self._check("usage")
        return [
            UsageRecord("alpha", "", "cpu", 36000),
            UsageRecord("alpha", "", "gres/gpu", 7200),
            UsageRecord("alpha", "carol", "cpu", 3600),
            UsageRecord("alpha", "other", "cpu", 32400),
        ]

    async def user_default_account(self, user: str) -> str:
        self._check("user_default_account")
        return "gamma"


def project(reply: account_pb2.ListProjectsResponse, name: str) -> account_pb2.Project:
    return next(p for p in reply.projects if p.name == name)


@pytest.fixture
def as_carol(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Calls as `carol`, a passwd entry of the test's own (the scripted adapter answers)."""
    carol = pwd.struct_passwd(("carol", "x", 5000, 5000, "Carol C,,,", "/home/carol", "/bin/sh"))
    real = pwd.getpwnam
    monkeypatch.setattr(pwd, "getpwnam", lambda name: carol if name == "carol" else real(name))
    with called_as("carol"):
        yield


async def test_projects_map_limits_fair_share_and_usage(tmp_path: Path, as_carol: None) -> None:
    servicer = servicer_with(ScriptedAdapter(), tmp_path)
    reply = await servicer.ListProjects(account_pb2.ListProjectsRequest(), None)
    assert [p.name for p in reply.projects] == ["alpha", "gamma"]
    alpha, gamma = project(reply, "alpha"), project(reply, "gamma")
    assert gamma.is_default and not alpha.is_default
    assert (alpha.parent_account, gamma.parent_account) == ("", "alpha")
    assert [a.partition for a in alpha.associations] == ["", "long"]
    limited = alpha.associations[0]
    assert list(limited.qos) == ["normal", "high"] and limited.default_qos == "normal"
    limits = limited.limits
    assert dict(limits.group_tres) == {"cpu": 8, "mem": 8000}
    assert dict(limits.group_tres_minutes) == {"cpu": 60000}
    assert dict(limits.max_tres_per_job) == {"cpu": 4, "gres/gpu": 1}
    assert dict(limits.max_tres_per_node) == {"mem": 512}
    assert limits.max_wall_per_job.seconds == 36 * 3600
    assert limits.HasField("max_jobs") and limits.max_jobs == 0  # 0 is a limit, not "none"
    assert limits.max_submit_jobs == 20 and not limits.HasField("group_jobs")
    unlimited = alpha.associations[1].limits
    assert not unlimited.HasField("max_wall_per_job") and not unlimited.group_tres
    share = limited.fair_share
    assert (share.raw_shares, share.normalized_shares, share.raw_usage) == (10, 0.25, 7200)
    assert (share.effective_usage, share.fairshare_factor) == (0.125, 0.64)
    assert not alpha.associations[1].HasField("fair_share")  # no sshare row for it
    assert alpha.project_usage.known and alpha.project_usage.cpu_hours_used == 10.0
    assert alpha.project_usage.gpu_hours_used == 2.0
    assert alpha.user_usage.cpu_hours_used == 1.0 and alpha.user_usage.gpu_hours_used == 0.0
    assert gamma.project_usage.known and gamma.project_usage.cpu_hours_used == 0.0


async def test_failing_sshare_and_sreport_degrade_to_unknown(
    tmp_path: Path, as_carol: None
) -> None:
    servicer = servicer_with(ScriptedAdapter(fail=("fair_share", "usage")), tmp_path)
    reply = await servicer.ListProjects(account_pb2.ListProjectsRequest(), None)
    alpha = project(reply, "alpha")
    assert alpha.description == "first"
    assert not any(a.HasField("fair_share") for a in alpha.associations)
    assert not alpha.project_usage.known and not alpha.user_usage.known
    assert alpha.project_usage.HasField("period_start")


async def test_user_database_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    servicer = servicer_with(ScriptedAdapter(), tmp_path)
    servicer.directory.timeout = 0.2
    monkeypatch.setattr(pwd, "getpwnam", lambda name: time.sleep(1))  # a hung LDAP
    with called_as("alice"), pytest.raises(DomainError) as hung:
        await servicer.GetUser(account_pb2.GetUserRequest(), None)
    assert hung.value.code == Code.UNAVAILABLE
    assert "user database" in hung.value.message

    def missing(name: str) -> Any:
        raise KeyError(name)

    monkeypatch.setattr(pwd, "getpwnam", missing)
    with called_as("ghost"), pytest.raises(DomainError) as gone:
        await servicer.ListGroups(account_pb2.ListGroupsRequest(), None)
    assert gone.value.code == Code.NOT_FOUND and "ghost" in gone.value.message


async def test_other_slurm_errors_are_not_hidden(tmp_path: Path) -> None:
    class Broken(ScriptedAdapter):
        async def user_associations(self, user: str) -> UserAssociations:
            raise SlurmError("sacctmgr: error: Unknown field 'bogus'")

    servicer = servicer_with(Broken(), tmp_path)
    with called_as("alice"), pytest.raises(SlurmError):  # INTERNAL via the interceptor
        await servicer.ListProjects(account_pb2.ListProjectsRequest(), None)
