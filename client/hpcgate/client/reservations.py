"""`client.reservations`: advance reservations within the system's policy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from google.protobuf import duration_pb2

from hpcgate.v1 import compute_pb2 as C
from hpcgate.v1 import compute_pb2_grpc

if TYPE_CHECKING:
    from hpcgate.client.core import Client

FINAL = frozenset({C.RESERVATION_REQUEST_STATE_REJECTED, C.RESERVATION_REQUEST_STATE_ENDED,
                   C.RESERVATION_REQUEST_STATE_CANCELLED})  # fmt: skip


def state_name(state: int) -> str:
    return C.ReservationRequestState.Name(state).removeprefix("RESERVATION_REQUEST_STATE_")


class Reservations:
    def __init__(self, client: Client) -> None:
        self._client = client

    def _stub(self) -> compute_pb2_grpc.ComputeServiceAsyncStub:
        return compute_pb2_grpc.ComputeServiceStub(self._client.channel)

    def _name(self, request_id: str, system: str | None) -> str:
        if request_id.startswith("systems/"):
            return request_id
        return f"{self._client.system(system)}/reservationRequests/{request_id}"

    async def create(
        self, project: str, nodes: int, duration: timedelta, *, start: datetime | None = None,
        partition: str = "", users: Sequence[str] = (), system: str | None = None,
    ) -> C.ReservationRequest:  # fmt: skip
        """Ask for `nodes` nodes for `project` from `start` (None: as soon as possible) for
        `duration` (whole minutes), usable by every member or only `users`. ACTIVE when
        granted at once, PENDING_APPROVAL when an operator decides. Not retried."""
        request = C.CreateReservationRequest(
            parent=self._client.system(system), project=project, node_count=nodes,
            partition=partition, users=list(users),
            duration=duration_pb2.Duration(seconds=int(duration.total_seconds())),
        )  # fmt: skip
        if start is not None:
            request.start_time.FromDatetime(start)
        reply = await self._client.unary(self._stub().CreateReservation, request, retry=False)
        return reply.reservation_request

    async def get(self, request_id: str, system: str | None = None) -> C.ReservationRequest:
        request = C.GetReservationRequestRequest(name=self._name(request_id, system))
        reply = await self._client.unary(self._stub().GetReservationRequest, request, retry=True)
        return reply.reservation_request

    async def list(self, system: str | None = None) -> list[C.ReservationRequest]:
        """Your requests on the system, newest first."""
        found: list[C.ReservationRequest] = []
        token = ""
        while True:
            request = C.ListReservationRequestsRequest(
                parent=self._client.system(system), page_token=token
            )
            reply = await self._client.unary(
                self._stub().ListReservationRequests, request, retry=True
            )
            found += reply.reservation_requests
            token = reply.next_page_token
            if not token:
                return found

    async def watch(
        self, request_id: str, system: str | None = None
    ) -> AsyncIterator[C.ReservationRequest]:
        """The request now, then after each change, until it is final."""
        request = C.WatchReservationRequestRequest(name=self._name(request_id, system))
        async for reply in self._client.stream(self._stub().WatchReservationRequest, request):
            if reply.HasField("reservation_request"):
                yield reply.reservation_request

    async def wait_decided(
        self, request_id: str, system: str | None = None
    ) -> C.ReservationRequest:
        """Until the request is no longer PENDING_APPROVAL (granted, rejected, ...)."""
        async for current in self.watch(request_id, system):
            if current.state != C.RESERVATION_REQUEST_STATE_PENDING_APPROVAL:
                return current
        return await self.get(request_id, system)

    async def delete(self, request_id: str, system: str | None = None) -> C.ReservationRequest:
        """Cancel it; a granted reservation leaves Slurm."""
        request = C.DeleteReservationRequest(name=self._name(request_id, system))
        reply = await self._client.unary(self._stub().DeleteReservation, request, retry=True)
        return reply.reservation_request
