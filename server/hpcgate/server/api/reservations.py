"""The reservation-request RPCs of ComputeService: request checks and messages; the
domain is compute/reservations.py."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from hpcgate.server.accounts import posix
from hpcgate.server.api.errors import FieldViolations, not_found
from hpcgate.server.api.pagination import check_page_request, paginate
from hpcgate.server.api.resources import lookup_system
from hpcgate.server.api.streaming import heartbeat, heartbeat_interval, unless_draining
from hpcgate.server.api.timeconv import read_duration, read_timestamp, timestamp
from hpcgate.server.auth.caller import current_caller
from hpcgate.server.compute import reservations as R
from hpcgate.server.config import Config
from hpcgate.server.errors import unavailable
from hpcgate.server.slurm.adapter import SlurmAdapter, SlurmUnavailable
from hpcgate.v1 import compute_pb2 as C

_NAME = re.compile(r"^systems/([a-z][a-z0-9-]{0,62})/reservationRequests/([0-9a-f]{12})$")
_PROJECT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_STATES = {
    R.PENDING: C.RESERVATION_REQUEST_STATE_PENDING_APPROVAL,
    R.ACTIVE: C.RESERVATION_REQUEST_STATE_ACTIVE,
    R.REJECTED: C.RESERVATION_REQUEST_STATE_REJECTED,
    R.ENDED: C.RESERVATION_REQUEST_STATE_ENDED,
    R.CANCELLED: C.RESERVATION_REQUEST_STATE_CANCELLED,
}
PAST_TOLERANCE = timedelta(minutes=1)


def request_to_proto(r: R.ReservationRequest) -> C.ReservationRequest:
    message = C.ReservationRequest(
        name=f"systems/{r.system}/reservationRequests/{r.id}", id=r.id, system=r.system,
        owner=r.owner, project=r.project, node_count=r.node_count, partition=r.partition,
        users=r.users, state=_STATES[r.state], reason=r.reason, reservation=r.slurm_name,
        nodes=r.nodes, create_time=timestamp(r.created), update_time=timestamp(r.updated),
    )  # fmt: skip
    message.duration.FromTimedelta(timedelta(seconds=r.duration))
    if r.start is not None:
        message.start_time.FromDatetime(r.start)
    if r.granted_start is not None and r.end is not None:
        message.granted_start_time.FromDatetime(r.granted_start)
        message.end_time.FromDatetime(r.end)
    return message


def ask_from(request: C.CreateReservationRequest, errors: FieldViolations) -> R.Ask:
    if not _PROJECT.match(request.project):
        errors.add("project", "must be a Slurm account name (ListProjects shows yours)")
    if request.node_count < 1:
        errors.add("node_count", "must be at least 1")
    length = read_duration(request, "duration", errors)
    if length is None and not request.HasField("duration"):
        errors.add("duration", "is required: how long, in whole minutes")
    elif length is not None and (length.total_seconds() < 60 or length.total_seconds() % 60):
        errors.add("duration", "must be whole minutes, at least one")
    start = read_timestamp(request, "start_time", errors)
    if start is not None and start < datetime.now(UTC) - PAST_TOLERANCE:
        errors.add("start_time", "is in the past: leave it unset for as soon as possible")
    for i, user in enumerate(request.users):
        if not posix.valid_user_name(user):
            errors.add(f"users[{i}]", "must be a login name")
    if request.partition and not _PROJECT.match(request.partition):
        errors.add("partition", "must be a partition name (ListPartitions)")
    return R.Ask(
        project=request.project, node_count=request.node_count,
        duration=length.total_seconds() if length else 0.0, start=start,
        partition=request.partition, users=tuple(request.users),
    )  # fmt: skip


class ReservationEndpoints:
    """What ComputeService's reservation RPCs do, for the servicer to delegate to."""

    def __init__(
        self, config: Config, service: R.Reservations, adapters: dict[str, SlurmAdapter],
        draining: asyncio.Event, default_heartbeat: float,
    ) -> None:  # fmt: skip
        self.config = config
        self.service = service
        self.adapters = adapters
        self.draining = draining
        self.default_heartbeat = default_heartbeat

    def _request_id(self, name: str, errors: FieldViolations) -> str:
        match = _NAME.match(name)
        if match is None:
            errors.add("name", "must look like systems/{system}/reservationRequests/{id}")
            return ""
        if self.config.system(match.group(1)) is None:
            raise not_found(f"no system 'systems/{match.group(1)}' here")
        return match.group(2)

    async def create(self, request: C.CreateReservationRequest) -> C.CreateReservationResponse:
        errors = FieldViolations()
        system = lookup_system(self.config, request.parent, "parent", errors)
        ask = ask_from(request, errors)
        errors.raise_if_any()
        assert system is not None
        user = current_caller().user
        try:
            mine = await self.adapters[system.id].user_associations(user)
        except SlurmUnavailable as e:
            raise unavailable(f"Slurm's accounting does not answer: {e}", 10) from None
        member_of = {a.account for a in mine.associations}
        created = await self.service.ask(system, user, ask, member_of)
        return C.CreateReservationResponse(reservation_request=request_to_proto(created))

    async def get(self, request: C.GetReservationRequestRequest) -> C.GetReservationRequestResponse:
        errors = FieldViolations()
        rid = self._request_id(request.name, errors)
        errors.raise_if_any()
        found = await self.service.get(rid, current_caller().user)
        return C.GetReservationRequestResponse(reservation_request=request_to_proto(found))

    async def list(
        self, request: C.ListReservationRequestsRequest
    ) -> C.ListReservationRequestsResponse:
        errors = FieldViolations()
        system = lookup_system(self.config, request.parent, "parent", errors)
        check_page_request(request.page_size, request.page_token, errors)
        errors.raise_if_any()
        assert system is not None
        mine = [r for r in await self.service.list(current_caller().user) if r.system == system.id]
        page, token = paginate(mine, request.page_size, request.page_token)
        return C.ListReservationRequestsResponse(
            reservation_requests=[request_to_proto(r) for r in page], next_page_token=token
        )

    async def watch(
        self, request: C.WatchReservationRequestRequest
    ) -> AsyncIterator[C.WatchReservationRequestResponse]:
        errors = FieldViolations()
        rid = self._request_id(request.name, errors)
        interval = heartbeat_interval(request, errors, self.default_heartbeat)
        errors.raise_if_any()
        updates = aiter(self.service.watch(rid, current_caller().user, interval))
        while True:
            try:
                item = await unless_draining(
                    anext(updates), self.draining,
                    "the server is shutting down; reconnect to keep watching",
                )  # fmt: skip
            except StopAsyncIteration:
                return
            if item is None:
                yield C.WatchReservationRequestResponse(heartbeat=heartbeat())
            else:
                yield C.WatchReservationRequestResponse(reservation_request=request_to_proto(item))

    async def delete(self, request: C.DeleteReservationRequest) -> C.DeleteReservationResponse:
        errors = FieldViolations()
        rid = self._request_id(request.name, errors)
        errors.raise_if_any()
        done = await self.service.delete(rid, current_caller().user)
        return C.DeleteReservationResponse(reservation_request=request_to_proto(done))
