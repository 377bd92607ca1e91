"""`client.account`: who the caller is, their projects (with usage) and groups."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
