"""StartTransfer's logic: validate a request, check it as the caller, start the task; and
the task handler that builds both endpoints and runs the engine.

A transfer runs as the user who asked for it: locally through their privsep worker;
on a peer facility as the service account of the peer's credential (`[[peers]]`), which
only users listed in the peer's `allowed_users` may use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpcgate.server import privsep
from hpcgate.server.config import Config
from hpcgate.server.errors import Code, DomainError, not_found
from hpcgate.server.metrics import Metrics
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

KIND = "transfer"
KINDS = ("COPY", "MOVE", "SYNC")


@dataclass(frozen=True)
class End:
    """One end of a transfer: a path on one of this server's systems, or on a peer."""

    system: str = ""  # a system id ("local"), when not a facility
    path: str = ""
    facility: str = ""  # a configured peer's id or HOST:PORT

    def stored(self) -> dict[str, str]:
        return {k: v for k, v in vars(self).items() if v}

    def __str__(self) -> str:
        return f"{self.facility or self.system}:{self.path}"


@dataclass(frozen=True)
class TransferRequest:
    """A StartTransfer request as the edge validated it (api/transfer_request.py)."""

    kind: str  # one of KINDS
    source: End
    destination: End
    recursive: bool = False
    preserve: bool = False
    overwrite: bool = False
    delete_extraneous: bool = False
    skip_verification: bool = False
    request_id: str = ""

    def stored(self) -> dict[str, Any]:
        """The task's request as kept in the task store (and compared on a retry): the
        shape the API's TransferSpec has in JSON, unset fields left out."""
        flags = ("recursive", "preserve", "overwrite", "delete_extraneous", "skip_verification")
        return {
            "kind": f"TRANSFER_KIND_{self.kind}",
            "source": self.source.stored(),
            "destination": self.destination.stored(),
            **{flag: True for flag in flags if getattr(self, flag)},
        }


class Transfers:
    def __init__(
        self,
        config: Config,
        users: privsep.PrivilegeSeparation,
        runner: TaskRunner,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.users = users
        self.runner = runner
        self.metrics = metrics  # bytes transferred; None: not counted
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

    def _endpoint(self, end: End, user: str, identity: privsep.UserIdentity) -> Endpoint:
        if end.facility:
            from hpcgate.server.transfers.peer import PeerEndpoint

            return PeerEndpoint(self._peer(end.facility, user))
        system = self.config.system(end.system)
        if system is None:
            raise not_found(f"no system 'systems/{end.system}' here")
        return LocalEndpoint(self.users, identity, system, self.config.files)

    async def _identity(self, user: str) -> privsep.UserIdentity:
        return await identity_of(self.users, user)

    # -- StartTransfer ------------------------------------------------------------------

    async def start(self, request: TransferRequest, user: str) -> TaskRecord:
        """Checks the request against both ends as `user`, then starts the task. A retry
        (same `request_id`, same request) returns the first task in whatever state it is,
        before any check: the files may have changed because it ran."""
        identity = await self._identity(user)
        description = f"{request.kind.lower()} {request.source} -> {request.destination}"
        asked = request.stored()
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

    async def _precheck(self, request: TransferRequest, source: Endpoint, dest: Endpoint) -> None:
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
        sync = request.kind == "SYNC"
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
        source_end = _end(request["source"])
        dest_end = _end(request["destination"])
        try:
            identity = await self._identity(ctx.task.user)
            source = self._endpoint(source_end, ctx.task.user, identity)
            dest = self._endpoint(dest_end, ctx.task.user, identity)
        except DomainError as e:
            raise TaskFailed(int(e.code), e.message) from None
        try:
            if spec.kind == "MOVE" and not ctx.resumed and await _renamed(spec, source, dest):
                return {"files_transferred": 1}
            return await run_transfer(ctx, spec, source, dest, self.metrics)
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


def _end(data: dict[str, Any]) -> End:
    return End(
        system=str(data.get("system", "")).removeprefix("systems/"),
        path=str(data.get("path", "")),
        facility=str(data.get("facility", "")),
    )


def _status(code: int) -> Code:
    """The Code of a google.rpc.Code number."""
    return next((c for c in Code if c == code), Code.INTERNAL)
