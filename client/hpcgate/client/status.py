"""`client.status`: systems and their health, outages and notes (no token needed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from google.protobuf import duration_pb2

from hpcgate.v1 import status_pb2, status_pb2_grpc

if TYPE_CHECKING:
    from hpcgate.client.core import Client


class Status:
    def __init__(self, client: Client) -> None:
        self._client = client

    def _stub(self) -> status_pb2_grpc.StatusServiceAsyncStub:
        return status_pb2_grpc.StatusServiceStub(self._client.channel)

    async def systems(self) -> list[status_pb2.System]:
        found: list[status_pb2.System] = []
        token = ""
        while True:
            request = status_pb2.ListSystemsRequest(page_token=token)
            reply = await self._client.unary(self._stub().ListSystems, request, retry=True)
            found += reply.systems
            token = reply.next_page_token
            if not token:
                return found

    async def system(self, system: str | None = None) -> status_pb2.System:
        request = status_pb2.GetSystemRequest(name=self._client.system(system))
        reply = await self._client.unary(self._stub().GetSystem, request, retry=True)
        return reply.system

    async def watch(
        self, systems: list[str] | None = None, *, heartbeat: int = 30
    ) -> AsyncIterator[status_pb2.WatchSystemsResponse]:
        """The snapshot, then every change (and heartbeats), until you stop iterating."""
        request = status_pb2.WatchSystemsRequest(
            names=[self._client.system(s) for s in systems or []],
            heartbeat_interval=duration_pb2.Duration(seconds=heartbeat),
        )
        async for message in self._client.stream(self._stub().WatchSystems, request):
            yield message

    async def outages(self, system: str | None = None) -> list[status_pb2.Outage]:
        found: list[status_pb2.Outage] = []
        token = ""
        name = self._client.system(system).removeprefix("systems/") if system else ""
        while True:
            request = status_pb2.ListOutagesRequest(system=name, page_token=token)
            reply = await self._client.unary(self._stub().ListOutages, request, retry=True)
            found += reply.outages
            token = reply.next_page_token
            if not token:
                return found

    async def notes(self, system: str | None = None) -> list[status_pb2.Note]:
        found: list[status_pb2.Note] = []
        token = ""
        name = self._client.system(system).removeprefix("systems/") if system else ""
        while True:
            request = status_pb2.ListNotesRequest(system=name, page_token=token)
            reply = await self._client.unary(self._stub().ListNotes, request, retry=True)
            found += reply.notes
            token = reply.next_page_token
            if not token:
                return found
