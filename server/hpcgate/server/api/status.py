"""StatusService: public, served from the probers' latest results."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from hpcgate.server.api.errors import FieldViolations
from hpcgate.server.api.pagination import check_page_request, paginate
from hpcgate.server.api.resources import (
    system_id_from_filter,
    system_id_from_name,
    unknown_system,
)
from hpcgate.server.api.streaming import heartbeat, heartbeat_interval, unless_draining
from hpcgate.server.api.timeconv import duration, timestamp
from hpcgate.server.config import Config
from hpcgate.server.state.store import Note, Outage, StateStore
from hpcgate.server.status import model
from hpcgate.server.status.hub import StatusHub
from hpcgate.v1 import status_pb2, status_pb2_grpc

_STATE = {
    model.State.UNKNOWN: status_pb2.SYSTEM_STATE_UNSPECIFIED,
    model.State.ACTIVE: status_pb2.SYSTEM_STATE_ACTIVE,
    model.State.DEGRADED: status_pb2.SYSTEM_STATE_DEGRADED,
    model.State.UNAVAILABLE: status_pb2.SYSTEM_STATE_UNAVAILABLE,
    model.State.MAINTENANCE: status_pb2.SYSTEM_STATE_MAINTENANCE,
}
_KIND = {
    model.ComponentKind.SCHEDULER: status_pb2.COMPONENT_KIND_SCHEDULER,
    model.ComponentKind.PARTITION: status_pb2.COMPONENT_KIND_PARTITION,
    model.ComponentKind.NODES: status_pb2.COMPONENT_KIND_NODES,
    model.ComponentKind.FILESYSTEM: status_pb2.COMPONENT_KIND_FILESYSTEM,
}
_OUTAGE_STATUS = {
    "planned": status_pb2.OUTAGE_STATUS_PLANNED,
    "active": status_pb2.OUTAGE_STATUS_ACTIVE,
    "completed": status_pb2.OUTAGE_STATUS_COMPLETED,
}


def component_to_proto(c: model.Component) -> status_pb2.Component:
    msg = status_pb2.Component(
        name=c.name,
        kind=_KIND[c.kind],
        display_name=c.display_name,
        state=_STATE[c.state],
        reason=c.reason,
        checked_at=timestamp(c.checked_at),
    )
    d = c.details
    if isinstance(d, model.ControllerDetails):
        msg.controller.CopyFrom(
            status_pb2.ControllerDetails(
                responding_hosts=d.responding_hosts, latency=duration(d.latency)
            )
        )
    elif isinstance(d, model.PartitionDetails):
        msg.partition.CopyFrom(
            status_pb2.PartitionDetails(
                scheduler_state=d.scheduler_state,
                total_nodes=d.total_nodes,
                unavailable_nodes=d.unavailable_nodes,
                total_cpus=d.total_cpus,
            )
        )
    elif isinstance(d, model.NodesDetails):
        msg.nodes.CopyFrom(
            status_pb2.NodesDetails(
                total_nodes=d.total_nodes,
                available_nodes=d.available_nodes,
                unavailable_nodes=d.unavailable_nodes,
            )
        )
    elif isinstance(d, model.FilesystemDetails):
        msg.filesystem.CopyFrom(
            status_pb2.FilesystemDetails(
                path=d.path,
                total_bytes=d.total_bytes,
                used_bytes=d.used_bytes,
                available_bytes=d.available_bytes,
                latency=duration(d.latency),
            )
        )
    return msg


def outage_to_proto(o: Outage, now: datetime) -> status_pb2.Outage:
    return status_pb2.Outage(
        name=f"systems/{o.system}/outages/{o.id}",
        system=o.system,
        start_time=timestamp(o.start_time),
        end_time=timestamp(o.end_time),
        description=o.description,
        status=_OUTAGE_STATUS[o.status(now)],
        create_time=timestamp(o.create_time),
    )


def note_to_proto(n: Note) -> status_pb2.Note:
    return status_pb2.Note(
        name=f"systems/{n.system}/notes/{n.id}",
        system=n.system,
        text=n.text,
        author=n.author,
        create_time=timestamp(n.create_time),
    )


def system_to_proto(s: model.SystemStatus) -> status_pb2.System:
    now = datetime.now(UTC)
    return status_pb2.System(
        name=f"systems/{s.system_id}",
        display_name=s.display_name,
        description=s.description,
        state=_STATE[s.state],
        reason=s.reason,
        updated_at=timestamp(s.updated_at),
        state_changed_at=timestamp(s.state_changed_at),
        components=[component_to_proto(c) for c in s.components],
        active_outages=[outage_to_proto(o, now) for o in s.active_outages],
        scheduler_version=s.scheduler_version,
    )


class StatusServicer(status_pb2_grpc.StatusServiceServicer):
    def __init__(
        self, config: Config, hub: StatusHub, store: StateStore, draining: asyncio.Event
    ) -> None:
        self.config = config
        self.hub = hub
        self.store = store
        self.draining = draining

    def _status_of(self, system_id: str) -> model.SystemStatus:
        """The latest status; before the first probe, an UNSPECIFIED placeholder."""
        system = self.config.system(system_id)
        if system is None:
            raise unknown_system(self.config, system_id)
        status = self.hub.get(system_id)
        if status is None:
            status = model.SystemStatus(
                system_id,
                system.display_name,
                system.description,
                model.State.UNKNOWN,
                "not probed yet; the first probe is running",
                None,
                None,
            )
        return status

    def _check_system_filter(self, value: str, field: str, errors: FieldViolations) -> str:
        system_id = system_id_from_filter(value, field, errors)
        errors.raise_if_any()
        if system_id:
            self._status_of(system_id)  # NOT_FOUND for unknown systems
        return system_id

    async def ListSystems(
        self, request: status_pb2.ListSystemsRequest, context: Any
    ) -> status_pb2.ListSystemsResponse:
        errors = FieldViolations()
        check_page_request(request.page_size, request.page_token, errors)
        errors.raise_if_any()
        statuses = [self._status_of(s.id) for s in self.config.systems]
        page, token = paginate(statuses, request.page_size, request.page_token)
        return status_pb2.ListSystemsResponse(
            systems=[system_to_proto(s) for s in page], next_page_token=token
        )

    async def GetSystem(
        self, request: status_pb2.GetSystemRequest, context: Any
    ) -> status_pb2.GetSystemResponse:
        errors = FieldViolations()
        system_id = system_id_from_name(request.name, "name", errors)
        errors.raise_if_any()
        return status_pb2.GetSystemResponse(system=system_to_proto(self._status_of(system_id)))

    async def WatchSystems(
        self, request: status_pb2.WatchSystemsRequest, context: Any
    ) -> AsyncIterator[status_pb2.WatchSystemsResponse]:
        errors = FieldViolations()
        ids = [system_id_from_name(n, f"names[{i}]", errors) for i, n in enumerate(request.names)]
        interval = heartbeat_interval(request, errors, self.config.status.heartbeat_interval)
        errors.raise_if_any()
        selected = [self._status_of(i).system_id for i in ids] or [
            s.id for s in self.config.systems
        ]
        # Subscribe before taking the snapshot, so no change can fall between the two.
        with self.hub.subscribe(selected) as subscription:
            yield status_pb2.WatchSystemsResponse(
                snapshot=status_pb2.SystemsSnapshot(
                    systems=[system_to_proto(self._status_of(i)) for i in selected]
                )
            )
            while True:
                changes = await unless_draining(
                    subscription.next_changes(interval), self.draining,
                    "the server is shutting down; reconnect to continue watching",
                )  # fmt: skip
                if not changes:
                    yield status_pb2.WatchSystemsResponse(heartbeat=heartbeat())
                for change in changes:
                    yield status_pb2.WatchSystemsResponse(
                        change=status_pb2.SystemChange(
                            system=system_to_proto(change.status),
                            previous_state=_STATE[change.previous_state],
                        )
                    )

    async def ListOutages(
        self, request: status_pb2.ListOutagesRequest, context: Any
    ) -> status_pb2.ListOutagesResponse:
        errors = FieldViolations()
        check_page_request(request.page_size, request.page_token, errors)
        for i, s in enumerate(request.statuses):
            if s not in _OUTAGE_STATUS.values():
                errors.add(f"statuses[{i}]", "must be PLANNED, ACTIVE or COMPLETED")
        system_id = self._check_system_filter(request.system, "system", errors)
        now = datetime.now(UTC)
        outages = [
            outage_to_proto(o, now)
            for o in await asyncio.to_thread(self.store.list_outages, system_id or None)
        ]
        if request.statuses:
            wanted = set(request.statuses)
            outages = [o for o in outages if o.status in wanted]
        page, token = paginate(outages, request.page_size, request.page_token)
        return status_pb2.ListOutagesResponse(outages=page, next_page_token=token)

    async def ListNotes(
        self, request: status_pb2.ListNotesRequest, context: Any
    ) -> status_pb2.ListNotesResponse:
        errors = FieldViolations()
        check_page_request(request.page_size, request.page_token, errors)
        system_id = self._check_system_filter(request.system, "system", errors)
        notes = await asyncio.to_thread(self.store.list_notes, system_id or None)
        page, token = paginate(
            [note_to_proto(n) for n in notes], request.page_size, request.page_token
        )
        return status_pb2.ListNotesResponse(notes=page, next_page_token=token)
