"""`client.account`: who the caller is, their projects (with usage, role and allocations),
a project's members (and, for its coordinators, adding and removing them) and groups."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from google.protobuf import duration_pb2

from hpcgate.v1 import account_pb2, account_pb2_grpc

if TYPE_CHECKING:
    from hpcgate.client.core import Client


class Account:
    def __init__(self, client: Client) -> None:
        self._client = client

    def _stub(self) -> account_pb2_grpc.AccountServiceAsyncStub:
        return account_pb2_grpc.AccountServiceStub(self._client.channel)

    async def user(self, user: str = "") -> account_pb2.User:
        """The caller (or `user`, where the site lets you see others)."""
        request = account_pb2.GetUserRequest(user=user)
        return (await self._client.unary(self._stub().GetUser, request, retry=True)).user

    async def projects(self) -> list[account_pb2.Project]:
        found: list[account_pb2.Project] = []
        token = ""
        while True:
            request = account_pb2.ListProjectsRequest(page_token=token)
            reply = await self._client.unary(self._stub().ListProjects, request, retry=True)
            found += reply.projects
            token = reply.next_page_token
            if not token:
                return found

    async def groups(self) -> list[account_pb2.Group]:
        found: list[account_pb2.Group] = []
        token = ""
        while True:
            request = account_pb2.ListGroupsRequest(page_token=token)
            reply = await self._client.unary(self._stub().ListGroups, request, retry=True)
            found += reply.groups
            token = reply.next_page_token
            if not token:
                return found

    async def members(self, project: str) -> list[account_pb2.ProjectMember]:
        """The members of a project you belong to, with their roles and limits."""
        found: list[account_pb2.ProjectMember] = []
        token = ""
        while True:
            request = account_pb2.ListProjectMembersRequest(project=project, page_token=token)
            reply = await self._client.unary(self._stub().ListProjectMembers, request, retry=True)
            found += reply.members
            token = reply.next_page_token
            if not token:
                return found

    async def add_member(
        self, project: str, user: str, *, max_jobs: int | None = None,
        max_submit_jobs: int | None = None, max_wall: timedelta | None = None,
    ) -> account_pb2.ProjectMember:  # fmt: skip
        """Add `user` to `project` (you must be one of its coordinators), with optional
        per-user limits; AlreadyExists when they are a member."""
        limits = account_pb2.MemberLimits(max_jobs=max_jobs, max_submit_jobs=max_submit_jobs)
        if max_wall is not None:
            limits.max_wall_per_job.CopyFrom(
                duration_pb2.Duration(seconds=int(max_wall.total_seconds()))
            )
        request = account_pb2.AddProjectMemberRequest(project=project, user=user, limits=limits)
        # Not retried: a retry after a lost answer would say AlreadyExists.
        reply = await self._client.unary(self._stub().AddProjectMember, request, retry=False)
        return reply.member

    async def remove_member(self, project: str, user: str) -> None:
        """Remove `user` from `project` (you must be one of its coordinators)."""
        request = account_pb2.RemoveProjectMemberRequest(project=project, user=user)
        await self._client.unary(self._stub().RemoveProjectMember, request, retry=False)
