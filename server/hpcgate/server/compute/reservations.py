"""Advance reservations within a site policy: durable requests, granted by the server.

A request is a row of the state database with a state: PENDING_APPROVAL, then ACTIVE
(granted: the reservation exists in Slurm), REJECTED (by the policy's operator, or by
Slurm when the nodes are not free in that window), CANCELLED (deleted by the requester or
an operator) or ENDED (its window has passed; noticed on the next read). A system's
`[systems.reservations]` policy says which projects may ask, how much and how far ahead,
and whether requests are granted at once (`approval = "auto"`) or wait for an operator
(`hpcgate-server reservations approve|deny`). Granting runs `scontrol create reservation`
with the server's privileges, for the requesting project only (and only the named users
when the request names some), so only they may submit into it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from hpcgate.server.config import ReservationPolicy, SystemConfig
from hpcgate.server.errors import Code, DomainError, not_found
from hpcgate.server.slurm.adapter import (
    ReservationOrder,
    SlurmAdapter,
    SlurmError,
    SlurmUnavailable,
)
from hpcgate.server.state.store import StateStore

log = logging.getLogger("hpcgate.audit")
PENDING, ACTIVE, REJECTED, ENDED, CANCELLED = (
    "PENDING_APPROVAL", "ACTIVE", "REJECTED", "ENDED", "CANCELLED",
)  # fmt: skip
FINAL = frozenset({REJECTED, ENDED, CANCELLED})
WATCH_POLL = 1.0  # seconds between reads of a watched request (operators act elsewhere)
_COLUMNS = ("id, system, owner, project, node_count, partition, start, duration, users, "
            "state, reason, slurm_name, nodes, granted_start, created, updated")  # fmt: skip


@dataclass(frozen=True)
class ReservationRequest:
    id: str
    system: str
    owner: str
    project: str
    node_count: int
    partition: str
    start: datetime | None  # None: as soon as possible
    duration: float  # seconds
    users: tuple[str, ...]  # () = everyone in the project
    state: str
    reason: str
    slurm_name: str  # the reservation's name in Slurm, once granted
    nodes: str  # the reserved nodes (Slurm's hostlist), once granted
    granted_start: datetime | None
    created: datetime
    updated: datetime

    @property
    def end(self) -> datetime | None:
        if self.granted_start is None:
            return None
        return self.granted_start + timedelta(seconds=self.duration)


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _row(row: tuple[object, ...]) -> ReservationRequest:
    (rid, system, owner, project, nodes_n, partition, start, duration, users, state, reason,
     slurm_name, nodes, granted, created, updated) = row  # fmt: skip
    return ReservationRequest(
        str(rid), str(system), str(owner), str(project), int(str(nodes_n)), str(partition),
        _ts(start if start is None else float(str(start))), float(str(duration)),
        tuple(json.loads(str(users))), str(state), str(reason), str(slurm_name), str(nodes),
        _ts(granted if granted is None else float(str(granted))),
        datetime.fromtimestamp(float(str(created)), UTC),
        datetime.fromtimestamp(float(str(updated)), UTC),
    )  # fmt: skip


class ReservationStore:
    """The requests in the state database (blocking calls: run them in a thread)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def insert(self, r: ReservationRequest) -> None:
        with self.store.connect() as db:
            db.execute(
                f"INSERT INTO reservation_requests ({_COLUMNS}) VALUES "  # noqa: S608 (constant)
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (r.id, r.system, r.owner, r.project, r.node_count, r.partition,
                 r.start.timestamp() if r.start else None, r.duration, json.dumps(r.users),
                 r.state, r.reason, r.slurm_name, r.nodes,
                 r.granted_start.timestamp() if r.granted_start else None,
                 r.created.timestamp(), r.updated.timestamp()),
            )  # fmt: skip

    def update(self, r: ReservationRequest, expected_state: str) -> bool:
        """Write `r` if the stored request is still in `expected_state` (one decision
        wins when the server and an operator act at once)."""
        with self.store.connect() as db:
            cursor = db.execute(
                "UPDATE reservation_requests SET state = ?, reason = ?, slurm_name = ?, "
                "nodes = ?, granted_start = ?, updated = ? WHERE id = ? AND state = ?",
                (r.state, r.reason, r.slurm_name, r.nodes,
                 r.granted_start.timestamp() if r.granted_start else None,
                 time.time(), r.id, expected_state),
            )  # fmt: skip
            return cursor.rowcount == 1

    def get(self, rid: str) -> ReservationRequest | None:
        with self.store.connect() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM reservation_requests WHERE id = ?",  # noqa: S608
                (rid,),
            ).fetchone()
        return None if row is None else _row(row)

    def list(self, owner: str | None = None) -> list[ReservationRequest]:
        """Newest first; every user's when `owner` is None (operators)."""
        query = f"SELECT {_COLUMNS} FROM reservation_requests"  # noqa: S608 (constant)
        args: tuple[str, ...] = ()
        if owner is not None:
            query += " WHERE owner = ?"
            args = (owner,)
        with self.store.connect() as db:
            rows = db.execute(query + " ORDER BY created DESC", args).fetchall()
        return [_row(r) for r in rows]


@dataclass(frozen=True)
class Ask:
    """What a caller asks for (validated by the edge)."""

    project: str
    node_count: int
    duration: float  # seconds
    start: datetime | None = None  # None: as soon as possible
    partition: str = ""
    users: tuple[str, ...] = ()


def check_policy(policy: ReservationPolicy, system: str, ask: Ask, now: datetime) -> None:
    """PERMISSION_DENIED or FAILED_PRECONDITION naming the rule a request breaks."""
    rule = f"systems/{system} reservations."
    if not policy.accounts:
        raise DomainError(Code.PERMISSION_DENIED,
                          f"systems/{system} takes no reservation requests "
                          f"({rule}accounts is empty): ask the facility")  # fmt: skip
    if not policy.allows(ask.project):
        raise DomainError(Code.PERMISSION_DENIED,
                          f"project {ask.project} may not reserve nodes on systems/{system} "
                          f"(not in {rule}accounts)")  # fmt: skip
    if ask.node_count > policy.max_nodes:
        raise DomainError(
            Code.FAILED_PRECONDITION,
            f"{ask.node_count} nodes exceed {rule}max_nodes = {policy.max_nodes}",
        )
    if ask.duration > policy.max_duration:
        raise DomainError(Code.FAILED_PRECONDITION,
                          f"{ask.duration / 60:g} minutes exceed {rule}max_duration = "
                          f"{policy.max_duration / 60:g} minutes")  # fmt: skip
    node_hours = ask.node_count * ask.duration / 3600
    if node_hours > policy.max_node_hours + 1e-9:
        raise DomainError(Code.FAILED_PRECONDITION,
                          f"{node_hours:g} node-hours exceed {rule}max_node_hours = "
                          f"{policy.max_node_hours:g}")  # fmt: skip
    if ask.start is not None and (ask.start - now).total_seconds() > policy.max_ahead:
        raise DomainError(Code.FAILED_PRECONDITION,
                          f"the start is more than {rule}max_ahead = "
                          f"{policy.max_ahead / 3600:g} hours ahead")  # fmt: skip


class Reservations:
    """Requests of one server: asking, granting, deciding, deleting, watching."""

    def __init__(self, store: StateStore, adapters: dict[str, SlurmAdapter]) -> None:
        self.store = ReservationStore(store)
        self.adapters = adapters

    async def ask(
        self, system: SystemConfig, owner: str, ask: Ask, member_of: set[str]
    ) -> ReservationRequest:
        """Record a request within the policy; granted at once when the policy says so
        (FAILED_PRECONDITION with Slurm's words when Slurm refuses, and the request stays
        REJECTED with that reason)."""
        if ask.project not in member_of:
            raise DomainError(Code.PERMISSION_DENIED,
                              f"you are not a member of project {ask.project}")  # fmt: skip
        now = datetime.now(UTC)
        check_policy(system.reservations, system.id, ask, now)
        request = ReservationRequest(
            id=uuid.uuid4().hex[:12], system=system.id, owner=owner, project=ask.project,
            node_count=ask.node_count, partition=ask.partition or system.reservations.partition,
            start=ask.start, duration=ask.duration, users=ask.users, state=PENDING,
            reason="waiting for an operator's approval" if system.reservations.approval
            == "operator" else "", slurm_name="", nodes="", granted_start=None,
            created=now, updated=now,
        )  # fmt: skip
        await asyncio.to_thread(self.store.insert, request)
        audit("reservation requested", owner, request)
        if system.reservations.approval == "auto":
            try:
                request = await self.grant(request)
            except DomainError as e:
                # Nobody would ever decide it: an automatic request ends here.
                failed = replace(request, state=REJECTED, reason=f"not granted: {e.message}")
                await asyncio.to_thread(self.store.update, failed, PENDING)
                raise
            if request.state == REJECTED:
                raise DomainError(Code.FAILED_PRECONDITION, request.reason)
        return request

    async def grant(self, request: ReservationRequest) -> ReservationRequest:
        """Create the reservation in Slurm: ACTIVE, or REJECTED with Slurm's reason."""
        order = ReservationOrder(
            name=f"hpcgate-{request.id}", node_count=request.node_count,
            minutes=max(1, math.ceil(request.duration / 60)), accounts=(request.project,),
            users=request.users, partition=request.partition, start=request.start,
        )  # fmt: skip
        try:
            made = await self.adapters[request.system].create_reservation(order)
        except SlurmUnavailable as e:
            raise DomainError(Code.UNAVAILABLE, f"the scheduler does not answer: {e}",
                              retry_after=10) from None  # fmt: skip
        except SlurmError as e:
            decided = replace(request, state=REJECTED, reason=f"Slurm refused: {e}")
        else:
            decided = replace(request, state=ACTIVE, reason="", slurm_name=made.name,
                              nodes=made.node_list,
                              granted_start=made.start_time or datetime.now(UTC))  # fmt: skip
        if not await asyncio.to_thread(self.store.update, decided, request.state):
            if decided.state == ACTIVE:  # someone decided first: undo ours
                await self.adapters[request.system].delete_reservation(decided.slurm_name)
            raise DomainError(Code.ABORTED, f"reservation request {request.id} changed "
                              "meanwhile; read it again")  # fmt: skip
        audit(f"reservation {decided.state.lower()}", "server", decided)
        return decided

    async def get(self, rid: str, user: str, operator: bool = False) -> ReservationRequest:
        """The request (its owner's, or anyone's for an operator); ENDED once its window
        has passed. NOT_FOUND for another user's, as for one that does not exist."""
        request = await asyncio.to_thread(self.store.get, rid)
        if request is None or (request.owner != user and not operator):
            raise not_found(f"no reservation request {rid!r} of yours")
        return await self._settle(request)

    async def list(self, user: str | None) -> list[ReservationRequest]:
        found = await asyncio.to_thread(self.store.list, user)
        return [await self._settle(r) for r in found]

    async def _settle(self, request: ReservationRequest) -> ReservationRequest:
        end = request.end
        if request.state == ACTIVE and end is not None and end <= datetime.now(UTC):
            ended = replace(request, state=ENDED, reason="its window has passed")
            await asyncio.to_thread(self.store.update, ended, ACTIVE)
            return ended
        return request

    async def decide(
        self, rid: str, approve: bool, by: str, reason: str = ""
    ) -> ReservationRequest:
        """An operator's approval (grant now) or denial of a PENDING_APPROVAL request."""
        request = await asyncio.to_thread(self.store.get, rid)
        if request is None:
            raise not_found(f"no reservation request {rid!r}")
        if request.state != PENDING:
            raise DomainError(
                Code.FAILED_PRECONDITION, f"request {rid} is {request.state}, not PENDING_APPROVAL"
            )
        if approve:
            return await self.grant(request)
        denied = replace(request, state=REJECTED, reason=reason or f"denied by {by}")
        if not await asyncio.to_thread(self.store.update, denied, PENDING):
            raise DomainError(Code.ABORTED, f"reservation request {rid} changed meanwhile")
        audit("reservation rejected", by, denied)
        return denied

    async def delete(self, rid: str, user: str, operator: bool = False) -> ReservationRequest:
        """Cancel a request: the reservation leaves Slurm if it was granted."""
        request = await self.get(rid, user, operator)
        if request.state in FINAL:
            return request
        if request.state == ACTIVE:
            try:
                await self.adapters[request.system].delete_reservation(request.slurm_name)
            except SlurmUnavailable as e:
                raise DomainError(Code.UNAVAILABLE, f"the scheduler does not answer: {e}",
                                  retry_after=10) from None  # fmt: skip
            except SlurmError as e:
                raise DomainError(Code.FAILED_PRECONDITION, f"Slurm refused: {e}") from None
        cancelled = replace(request, state=CANCELLED, reason=f"deleted by {user}")
        if not await asyncio.to_thread(self.store.update, cancelled, request.state):
            raise DomainError(Code.ABORTED, f"reservation request {rid} changed meanwhile")
        audit("reservation cancelled", user, cancelled)
        return cancelled

    async def watch(
        self, rid: str, user: str, heartbeat: float
    ) -> AsyncIterator[ReservationRequest | None]:
        """The request now, then each change (read every WATCH_POLL seconds: decisions
        come from operators' commands, another process), None as a heartbeat after each
        quiet `heartbeat`; ends after the request reaches a final state."""
        current = await self.get(rid, user)
        yield current
        quiet_since = time.monotonic()
        while current.state not in FINAL:
            await asyncio.sleep(WATCH_POLL)
            latest = await self.get(rid, user)
            if (latest.state, latest.reason, latest.nodes) != (
                current.state, current.reason, current.nodes,
            ):  # fmt: skip
                current = latest
                quiet_since = time.monotonic()
                yield current
            elif time.monotonic() - quiet_since >= heartbeat:
                quiet_since = time.monotonic()
                yield None


def audit(event: str, by: str, request: ReservationRequest) -> None:
    log.info(event, extra={"fields": {
        "by": by, "request": request.id, "system": request.system, "project": request.project,
        "owner": request.owner, "nodes": request.node_count, "state": request.state,
        "reason": request.reason,
    }})  # fmt: skip
