"""AccountService: the caller's POSIX identity and groups, and their Slurm projects.

Slurm accounting is per cluster and the requests name no system, so accounting is read
through the first configured system's adapter (`systems[0]`); a site whose systems
share one slurmdbd sees the same projects either way.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

from google.protobuf import duration_pb2

from hpcgate.server import privsep
from hpcgate.server.accounts import posix
from hpcgate.server.accounts.members import Member, MemberChanges, visible_members
from hpcgate.server.accounts.projects import Allocation, Membership, Project, Usage, list_projects
from hpcgate.server.api.errors import DomainError, FieldViolations, not_found, unavailable
from hpcgate.server.api.pagination import check_page_request, paginate
from hpcgate.server.api.timeconv import read_duration, timestamp
from hpcgate.server.auth.caller import current_caller
from hpcgate.server.config import Config
from hpcgate.server.slurm.adapter import AssociationInfo, SlurmAdapter, SlurmUnavailable
from hpcgate.server.slurm.membership import MemberLimitSettings
from hpcgate.server.users import identity_of
from hpcgate.v1 import account_pb2, account_pb2_grpc

RETRY_SECONDS = 10


def _usage_to_proto(u: Usage) -> account_pb2.ComputeUsage:
    # No site allocation is known to Slurm itself: the *_allocated fields stay unset.
    return account_pb2.ComputeUsage(
        known=u.known,
        cpu_hours_used=u.cpu_hours,
        gpu_hours_used=u.gpu_hours,
        period_start=timestamp(u.period_start),
        period_end=timestamp(u.period_end),
    )


def _association_to_proto(m: Membership) -> account_pb2.Association:
    a = m.association
    limits = _limits_to_proto(a)
    msg = account_pb2.Association(
        user=a.user,
        partition=a.partition,
        qos=a.qos,
        default_qos=a.default_qos,
        limits=limits,
    )
    s = m.fair_share
    if s is not None:
        msg.fair_share.CopyFrom(
            account_pb2.FairShare(
                raw_shares=s.raw_shares,
                normalized_shares=s.normalized_shares or 0.0,
                raw_usage=s.raw_usage,
                effective_usage=s.effective_usage or 0.0,
                fairshare_factor=s.fairshare_factor or 0.0,
            )
        )
    return msg


def _allocation_to_proto(a: Allocation) -> account_pb2.ComputeAllocation:
    tres = []
    for t in a.tres:
        entry = account_pb2.TresAllocation(tres=t.tres, minutes_allocated=t.minutes_allocated)
        if t.minutes_used is not None:
            entry.minutes_used = t.minutes_used
            entry.minutes_remaining = max(0, t.minutes_allocated - t.minutes_used)
        tres.append(entry)
    return account_pb2.ComputeAllocation(known=a.known, tres=tres, reason=a.reason)


_NO_PROJECT_QUOTAS = (
    "per-project quotas are not read by this server (ListFilesystems shows your own quota "
    "where the site's tools give it)"
)


_NO_PROJECT_QUOTAS = (
    "per-project quotas are not read by this server (ListFilesystems shows your own quota "
    "where the site's tools give it)"
)


def _storage_allocations(config: Config) -> list[account_pb2.StorageAllocation]:
    """Per-project quotas are not read yet: every configured filesystem says so."""
    return [
        account_pb2.StorageAllocation(filesystem=fs.name, known=False, reason=_NO_PROJECT_QUOTAS)
        for fs in config.systems[0].filesystems
    ]


def _limits_to_proto(a: AssociationInfo) -> account_pb2.AssociationLimits:
    limits = account_pb2.AssociationLimits(
        group_tres=a.group_tres,
        group_tres_minutes=a.group_tres_minutes,
        max_tres_per_job=a.max_tres_per_job,
        max_tres_per_node=a.max_tres_per_node,
        max_jobs=a.max_jobs,
        max_submit_jobs=a.max_submit_jobs,
        group_jobs=a.group_jobs,
        group_submit_jobs=a.group_submit_jobs,
    )
    if a.max_wall_seconds is not None:
        limits.max_wall_per_job.CopyFrom(duration_pb2.Duration(seconds=a.max_wall_seconds))
    return limits


def _role(coordinator: bool) -> account_pb2.ProjectRole:
    return account_pb2.PROJECT_ROLE_COORDINATOR if coordinator else account_pb2.PROJECT_ROLE_MEMBER


def member_to_proto(m: Member) -> account_pb2.ProjectMember:
    return account_pb2.ProjectMember(
        user=m.user, role=_role(m.coordinator), limits=_limits_to_proto(m.association)
    )


def project_to_proto(p: Project) -> account_pb2.Project:
    a = p.account
    return account_pb2.Project(
        name=a.name,
        description=a.description,
        organization=a.organization,
        # The proto leaves the parent empty for root's children (top-level projects).
        parent_account="" if a.parent == "root" else a.parent,
        associations=[_association_to_proto(m) for m in p.memberships],
        is_default=p.is_default,
        project_usage=_usage_to_proto(p.project_usage),
        user_usage=_usage_to_proto(p.user_usage),
        role=_role(p.coordinator),
        compute_allocation=_allocation_to_proto(p.allocation),
    )


def _group_to_proto(g: posix.PosixGroup, members: bool) -> account_pb2.Group:
    return account_pb2.Group(name=g.name, gid=g.gid, members=g.members if members else ())


def _slurm_unavailable(e: SlurmUnavailable) -> DomainError:
    return unavailable(f"Slurm's accounting (slurmdbd) is not answering: {e}", RETRY_SECONDS)


class AccountServicer(account_pb2_grpc.AccountServiceServicer):
    def __init__(
        self, config: Config, adapters: dict[str, SlurmAdapter],
        users: privsep.PrivilegeSeparation,
    ) -> None:  # fmt: skip
        self.config = config
        # Accounting comes from the first configured system (see the module docstring).
        self.adapter = adapters[config.systems[0].id]
        self.directory = posix.UserDirectory()
        self.users = users
        self.changes = MemberChanges(self.adapter, users)

    async def _user(self, name: str, *, caller: bool) -> posix.PosixUser:
        try:
            return await self.directory.user(name)
        except posix.UserNotFound:
            if caller:
                raise not_found(
                    f"your user {name!r} does not exist on this system; "
                    "ask the facility to create your account"
                ) from None
            raise not_found(f"no user {name!r} on this system; check the spelling") from None
        except posix.DirectoryUnavailable as e:
            raise unavailable(str(e), RETRY_SECONDS) from None

    async def _caller_user(self) -> posix.PosixUser:
        name = current_caller().user
        if not posix.valid_user_name(name):
            raise not_found(f"your user {name!r} does not exist on this system")
        return await self._user(name, caller=True)

    async def _groups(self, user: posix.PosixUser) -> list[posix.PosixGroup]:
        try:
            return await self.directory.groups(user)
        except posix.DirectoryUnavailable as e:
            raise unavailable(str(e), RETRY_SECONDS) from None

    async def GetUser(
        self, request: account_pb2.GetUserRequest, context: Any
    ) -> account_pb2.GetUserResponse:
        """The caller (empty `user`) or any named user, like `id NAME`: passwd and group
        entries (public on a POSIX system) plus the Slurm default account.

        Two look-ups in the user database and one Slurm call (`sacctmgr show user`).
        """
        errors = FieldViolations()
        if request.user and not posix.valid_user_name(request.user):
            errors.add(
                "user",
                "must be a login name (letters, digits, `_ . @ -`, at most 64 characters, "
                "not starting with `-` or `.`), or empty for yourself",
            )
        errors.raise_if_any()
        if request.user:
            current_caller()  # UNAUTHENTICATED without a caller, as for the caller's own
            user = await self._user(request.user, caller=False)
        else:
            user = await self._caller_user()
        groups_task = asyncio.ensure_future(self._groups(user))
        try:
            default_account = await self.adapter.user_default_account(user.name)
        except SlurmUnavailable as e:
            groups_task.cancel()
            raise _slurm_unavailable(e) from None
        except BaseException:
            groups_task.cancel()
            raise
        groups = await groups_task
        return account_pb2.GetUserResponse(
            user=account_pb2.User(
                name=user.name,
                uid=user.uid,
                gid=user.gid,
                primary_group=user.primary_group,
                groups=[_group_to_proto(g, members=False) for g in groups],
                default_account=default_account,
                home_directory=user.home_directory,
                shell=user.shell,
                full_name=user.full_name,
            )
        )

    async def ListProjects(
        self, request: account_pb2.ListProjectsRequest, context: Any
    ) -> account_pb2.ListProjectsResponse:
        """The caller's Slurm accounts by name, one page at a time.

        Four Slurm calls per page whatever the number of projects (plus, once per server
        life, `scontrol show config` for the local cluster name when none is configured):
        `sacctmgr show user NAME withassoc` (default account, associations and limits) and
        `sshare -U -u NAME` (fair share) in parallel, then for the page's accounts
        `sacctmgr show account where name=A,B,...` (description, organisation, parent)
        and `sreport cluster AccountUtilizationByUser accounts=A,B,...` (usage).

        Usage covers the current calendar month in the server's time zone, up to the start
        of the current hour (slurmdbd's hourly roll-up). Fair share is unset when the site
        does not use it (PriorityType=priority/basic) or the controller does not answer;
        usage is `known=false` when sreport fails. UNAVAILABLE when slurmdbd does not answer.
        """
        errors = FieldViolations()
        check_page_request(request.page_size, request.page_token, errors)
        errors.raise_if_any()
        user = await self._caller_user()

        def select(names: list[str]) -> tuple[list[str], str]:
            return paginate(names, request.page_size, request.page_token)

        try:
            result = await list_projects(self.adapter, user.name, select, datetime.now(UTC))
        except SlurmUnavailable as e:
            raise _slurm_unavailable(e) from None
        storage = _storage_allocations(self.config)
        projects = [project_to_proto(p) for p in result.projects]
        for project in projects:
            project.storage_allocations.extend(storage)
        return account_pb2.ListProjectsResponse(
            projects=projects, next_page_token=result.next_page_token
        )

    async def ListGroups(
        self, request: account_pb2.ListGroupsRequest, context: Any
    ) -> account_pb2.ListGroupsResponse:
        """The caller's primary and supplementary groups (`os.getgrouplist`), primary first,
        then by name. `members` is the group database's member list (gr_mem) only: users
        whose primary group it is are listed only if the group entry names them too."""
        errors = FieldViolations()
        check_page_request(request.page_size, request.page_token, errors)
        errors.raise_if_any()
        groups = await self._groups(await self._caller_user())
        page, token = paginate(groups, request.page_size, request.page_token)
        return account_pb2.ListGroupsResponse(
            groups=[_group_to_proto(g, members=True) for g in page], next_page_token=token
        )

    # -- members ------------------------------------------------------------------------

    def _project_and_user(self, request: Any, errors: FieldViolations) -> tuple[str, str]:
        if not _PROJECT.match(request.project):
            errors.add("project", "must be a Slurm account name: 1-64 letters, digits, `_ . -`")
        user = getattr(request, "user", None)
        if user is not None and not posix.valid_user_name(user):
            errors.add("user", "must be a login name (letters, digits, `_ . @ -`)")
        return request.project, user or ""

    async def ListProjectMembers(
        self, request: account_pb2.ListProjectMembersRequest, context: Any
    ) -> account_pb2.ListProjectMembersResponse:
        errors = FieldViolations()
        project, _ = self._project_and_user(request, errors)
        check_page_request(request.page_size, request.page_token, errors)
        errors.raise_if_any()
        caller = await self._caller_user()
        try:
            listed = await visible_members(self.adapter, caller.name, project)
        except SlurmUnavailable as e:
            raise _slurm_unavailable(e) from None
        page, token = paginate(listed, request.page_size, request.page_token)
        return account_pb2.ListProjectMembersResponse(
            members=[member_to_proto(m) for m in page], next_page_token=token
        )

    async def AddProjectMember(
        self, request: account_pb2.AddProjectMemberRequest, context: Any
    ) -> account_pb2.AddProjectMemberResponse:
        errors = FieldViolations()
        project, user = self._project_and_user(request, errors)
        limits = _member_limits(request.limits, errors)
        errors.raise_if_any()
        identity = await identity_of(self.users, (await self._caller_user()).name)
        await self._user(user, caller=False)  # NOT_FOUND for a user unknown here
        try:
            member = await self.changes.add(identity, project, user, limits)
        except SlurmUnavailable as e:
            raise _slurm_unavailable(e) from None
        return account_pb2.AddProjectMemberResponse(member=member_to_proto(member))

    async def RemoveProjectMember(
        self, request: account_pb2.RemoveProjectMemberRequest, context: Any
    ) -> account_pb2.RemoveProjectMemberResponse:
        errors = FieldViolations()
        project, user = self._project_and_user(request, errors)
        errors.raise_if_any()
        identity = await identity_of(self.users, (await self._caller_user()).name)
        try:
            await self.changes.remove(identity, project, user)
        except SlurmUnavailable as e:
            raise _slurm_unavailable(e) from None
        return account_pb2.RemoveProjectMemberResponse()


_PROJECT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _member_limits(
    limits: account_pb2.MemberLimits, errors: FieldViolations
) -> MemberLimitSettings:
    wall = read_duration(limits, "max_wall_per_job", errors, "limits.max_wall_per_job")
    minutes = None
    if wall is not None:
        if wall.total_seconds() < 60 or wall.total_seconds() % 60:
            errors.add("limits.max_wall_per_job", "must be whole minutes, at least one")
        minutes = int(wall.total_seconds() // 60)
    return MemberLimitSettings(
        max_jobs=limits.max_jobs if limits.HasField("max_jobs") else None,
        max_submit_jobs=limits.max_submit_jobs if limits.HasField("max_submit_jobs") else None,
        max_wall_minutes=minutes,
    )
