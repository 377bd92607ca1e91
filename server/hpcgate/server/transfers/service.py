"""StartTransfer's logic: validate a request, check it as the caller, start the task; and
the task handler that builds both endpoints and runs the engine.

A transfer runs as the user who asked for it: locally through their privsep worker;
on a peer facility as the service account of the peer's credential (`[[peers]]`), which
only users listed in the peer's `allowed_users` may use.
"""

from __future__ import annotations

import re
from typing import Any

from google.protobuf.json_format import MessageToDict

from hpcgate.server import privsep
from hpcgate.server.api.resources import lookup_system, unknown_system
from hpcgate.server.config import Config
from hpcgate.server.errors import Code, DomainError, FieldViolations
from hpcgate.server.files import paths
from hpcgate.server.tasks.model import (
    RequestIdConflict,
    TaskFailed,
    TaskRecord,
    TooManyTasks,
)
from hpcgate.server.tasks.runner import TaskContext, TaskRunner
from hpcgate.server.transfers.endpoint import Endpoint
from hpcgate.server.transfers.engine import Spec, run_transfer
from hpcgate.server.transfers.local import LocalEndpoint
from hpcgate.server.users import identity_of
from hpcgate.v1 import storage_pb2, tasks_pb2

KIND = "transfer"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_KINDS = {
    tasks_pb2.TRANSFER_KIND_COPY: "COPY",
    tasks_pb2.TRANSFER_KIND_MOVE: "MOVE",
    tasks_pb2.TRANSFER_KIND_SYNC: "SYNC",
}


class Transfers:
    def __init__(
        self, config: Config, users: privsep.PrivilegeSeparation, runner: TaskRunner
    ) -> None:
        self.config = config
        self.users = users
        self.runner = runner
        runner.register(KIND, self.handle, resumable=True)

    # -- endpoints ----------------------------------------------------------------------

    def _peer(self, facility: str, user: str) -> Any:
        peer = self.config.peer(facility)
        if peer is None:
            raise DomainError(
                Code.PERMISSION_DENIED,
                f"facility {facility!r} is not a peer configured on this server; known: "
                + (", ".join(p.id for p in self.config.peers) or "none"),
            )
        if "*" not in peer.allowed_users and user not in peer.allowed_users:
            raise DomainError(
                Code.PERMISSION_DENIED,
                f"{user} may not transfer to or from facility {peer.id} (see the peer's "
                "allowed_users in the server configuration)",
            )
        return peer

    def _endpoint(
        self, end: tasks_pb2.TransferEndpoint, user: str, identity: privsep.UserIdentity
    ) -> Endpoint:
        if end.facility:
            from hpcgate.server.transfers.peer import PeerEndpoint

            return PeerEndpoint(self._peer(end.facility, user))
        system = self.config.system(end.system.removeprefix("systems/"))
        if system is None:
            raise unknown_system(self.config, end.system.removeprefix("systems/"))
        return LocalEndpoint(self.users, identity, system, self.config.files)

    async def _identity(self, user: str) -> privsep.UserIdentity:
        return await identity_of(self.users, user)

    # -- StartTransfer ------------------------------------------------------------------

    def validate(self, request: storage_pb2.StartTransferRequest) -> None:
        errors = FieldViolations()
        if request.kind not in _KINDS:
            errors.add("kind", "choose TRANSFER_KIND_COPY, _MOVE or _SYNC")
        for field, end in (("source", request.source), ("destination", request.destination)):
            if not end.facility:
                lookup_system(self.config, end.system, f"{field}.system", errors, bare_id=True)
            path = paths.checked(errors, f"{field}.path", end.path)
            if path == "/":
                errors.add(f"{field}.path", "'/' cannot be transferred or replaced")
        if request.source.facility and request.destination.facility:
            errors.add("destination.facility", "at most one end may be another facility")
        if request.delete_extraneous and request.kind != tasks_pb2.TRANSFER_KIND_SYNC:
            errors.add("delete_extraneous", "only applies to TRANSFER_KIND_SYNC")
        src, dst = request.source, request.destination
        same_place = (src.facility, src.system.removeprefix("systems/")) == (
            dst.facility,
            dst.system.removeprefix("systems/"),
        )
        if same_place and src.path and (dst.path + "/").startswith(src.path.rstrip("/") + "/"):
            errors.add("destination.path", "must not be the source or inside it")
        if request.request_id and not _REQUEST_ID.match(request.request_id):
            errors.add("request_id", "1-128 characters of A-Z a-z 0-9 . _ : -")
        errors.raise_if_any()

    async def start(self, request: storage_pb2.StartTransferRequest, user: str) -> TaskRecord:
        """Validates, checks the request against both ends as `user`, then starts the task.
        A retry (same `request_id`, same request) returns the first task in whatever state
        it is, before any check: the files may have changed because it ran."""
        self.validate(request)
        identity = await self._identity(user)
        spec = tasks_pb2.TransferSpec(
            kind=request.kind,
            source=request.source,
            destination=request.destination,
            recursive=request.recursive,
            preserve=request.preserve,
            overwrite=request.overwrite,
            delete_extraneous=request.delete_extraneous,
            skip_verification=request.skip_verification,
        )
        description = (
            f"{_KINDS[request.kind].lower()} {_where(request.source)} -> "
            f"{_where(request.destination)}"
        )
        asked = MessageToDict(spec, preserving_proto_field_name=True)
        system = request.source.system or request.destination.system
        try:
            if request.request_id:
                first = await self.runner.find_request(
                    user=user,
                    kind=KIND,
                    request=asked,
                    system=system,
                    request_id=request.request_id,
                )
                if first is not None:
                    return first
            source = self._endpoint(request.source, user, identity)
            dest = self._endpoint(request.destination, user, identity)
            try:
                await self._precheck(request, source, dest)
            except TaskFailed as failure:
                raise DomainError(_status(failure.error.code), failure.error.message) from None
            finally:
                await source.close()
                await dest.close()
            record, _ = await self.runner.submit(
                user=user,
                kind=KIND,
                request=asked,
                system=system,
                description=description,
                request_id=request.request_id,
            )
        except RequestIdConflict:
            raise DomainError(
                Code.ALREADY_EXISTS,
                f"request_id {request.request_id!r} was used for a different transfer in the "
                "last 24 hours; use a new request_id",
            ) from None
        except TooManyTasks as e:
            raise DomainError(
                Code.RESOURCE_EXHAUSTED,
                f"{e} (at most {self.runner.settings.max_unfinished_per_user}); retry when one "
                "has ended, or cancel one (TasksService.ListTasks, CancelTask)",
            ) from None
        return record

    async def _precheck(
        self, request: storage_pb2.StartTransferRequest, source: Endpoint, dest: Endpoint
    ) -> None:
        """What StartTransfer promises to refuse at once rather than in a failed task."""
        src, dst = request.source.path, request.destination.path
        root = await source.describe(src)
        if root is None:
            raise DomainError(Code.NOT_FOUND, f"{source.label}:{src} does not exist")
        if isinstance(source, LocalEndpoint):
            await source.check_readable(src, root.kind)
        if root.kind == "dir" and not request.recursive:
            raise DomainError(
                Code.FAILED_PRECONDITION,
                f"{src} is a directory; set recursive to transfer a tree",
            )
        parent = dst.rpartition("/")[0] or "/"
        there = await dest.describe(parent)
        if there is None or there.kind != "dir":
            raise DomainError(
                Code.NOT_FOUND,
                f"{dest.label}:{parent}, the destination's directory, does not "
                "exist (create it first)",
            )
        existing = await dest.describe(dst)
        sync = request.kind == tasks_pb2.TRANSFER_KIND_SYNC
        if existing is not None and not (sync or request.overwrite):
            raise DomainError(
                Code.ALREADY_EXISTS,
                f"{dest.label}:{dst} exists; set overwrite (or use SYNC)",
            )
        if existing is not None and existing.kind != root.kind:
            raise DomainError(
                Code.FAILED_PRECONDITION,
                f"{dst} is a {existing.kind} and the source a {root.kind}",
            )

    # -- the task -----------------------------------------------------------------------

    async def handle(self, ctx: TaskContext) -> dict[str, Any]:
        request = ctx.task.request
        spec = Spec.from_request(request)
        source_end = _endpoint_message(request["source"])
        dest_end = _endpoint_message(request["destination"])
        try:
            identity = await self._identity(ctx.task.user)
            source = self._endpoint(source_end, ctx.task.user, identity)
            dest = self._endpoint(dest_end, ctx.task.user, identity)
        except DomainError as e:
            raise TaskFailed(int(e.code), e.message) from None
        try:
            if spec.kind == "MOVE" and not ctx.resumed and await _renamed(spec, source, dest):
                return {"files_transferred": 1}
            return await run_transfer(ctx, spec, source, dest)
        finally:
            await source.close()
            await dest.close()


async def _renamed(spec: Spec, source: Endpoint, dest: Endpoint) -> bool:
    """A MOVE within one local filesystem is a rename (atomic, nothing to verify)."""
    if not (isinstance(source, LocalEndpoint) and isinstance(dest, LocalEndpoint)):
        return False
    if source.system.id != dest.system.id:
        return False
    if await dest.describe(spec.destination_path) is not None:
        return False  # merging into an existing tree: file by file
    return await source.rename(spec.source_path, spec.destination_path)


def _endpoint_message(data: dict[str, Any]) -> tasks_pb2.TransferEndpoint:
    return tasks_pb2.TransferEndpoint(
        system=str(data.get("system", "")),
        path=str(data.get("path", "")),
        facility=str(data.get("facility", "")),
    )


def _where(end: tasks_pb2.TransferEndpoint) -> str:
    return f"{end.facility or end.system}:{end.path}"


def _status(code: int) -> Code:
    """The Code of a google.rpc.Code number."""
    return next((c for c in Code if c == code), Code.INTERNAL)
