"""StorageService: a system's filesystems (storage tiers) with capacity, quota and state.

Capacity, inodes, type and state come from the status prober's last check of each
filesystem (statvfs in a child process with a deadline, see status/filesystem_probe.py),
so listing never touches a mount from the server and a dead one cannot hang it. The
caller's quota and own directory are looked up as the caller (storage/quota.py, privsep),
and skipped for a filesystem the prober found offline.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hpcgate.server import privsep
from hpcgate.server.api.convert.tasks import task_to_proto
from hpcgate.server.api.errors import FieldViolations
from hpcgate.server.api.pagination import check_page_request, paginate
from hpcgate.server.api.resources import lookup_system
from hpcgate.server.api.timeconv import timestamp
from hpcgate.server.api.transfer_request import transfer_request
from hpcgate.server.auth.caller import current_caller
from hpcgate.server.config import Config, FilesystemConfig, SystemConfig
from hpcgate.server.status import model
from hpcgate.server.status.hub import StatusHub
from hpcgate.server.storage.quota import Quota, QuotaReader, unknown
from hpcgate.server.transfers.service import Transfers
from hpcgate.server.users import identity_of
from hpcgate.v1 import storage_pb2, storage_pb2_grpc

_KIND = {
    "home": storage_pb2.FILESYSTEM_KIND_HOME,
    "scratch": storage_pb2.FILESYSTEM_KIND_SCRATCH,
    "project": storage_pb2.FILESYSTEM_KIND_PROJECT,
    "archive": storage_pb2.FILESYSTEM_KIND_ARCHIVE,
    "other": storage_pb2.FILESYSTEM_KIND_OTHER,
}
_STATE = {
    model.State.ACTIVE: storage_pb2.FILESYSTEM_STATE_ONLINE,
    model.State.DEGRADED: storage_pb2.FILESYSTEM_STATE_DEGRADED,
    model.State.UNAVAILABLE: storage_pb2.FILESYSTEM_STATE_OFFLINE,
}


def _quota_to_proto(quota: Quota) -> storage_pb2.StorageQuota:
    return storage_pb2.StorageQuota(
        known=quota.known,
        used_bytes=quota.used_bytes,
        soft_limit_bytes=quota.soft_limit_bytes,
        hard_limit_bytes=quota.hard_limit_bytes,
        used_inodes=quota.used_inodes,
        soft_limit_inodes=quota.soft_limit_inodes,
        hard_limit_inodes=quota.hard_limit_inodes,
        grace_expires=timestamp(quota.grace_expires),
        source=quota.source,
        measured_at=timestamp(quota.measured_at),
    )


def _under(path: str, mount: str) -> bool:
    mount = mount.rstrip("/") or "/"
    return path == mount or path.startswith(mount if mount == "/" else mount + "/")


class StorageServicer(storage_pb2_grpc.StorageServiceServicer):
    def __init__(
        self,
        config: Config,
        hub: StatusHub,
        users: privsep.PrivilegeSeparation,
        transfers: Transfers,
    ) -> None:
        self.transfers = transfers
        self.config = config
        self.hub = hub
        self.users = users
        self.quotas = QuotaReader(users, config.storage)

    def _system(self, name: str, errors: FieldViolations) -> SystemConfig | None:
        return lookup_system(self.config, name, "parent", errors)

    async def ListFilesystems(
        self, request: storage_pb2.ListFilesystemsRequest, context: Any
    ) -> storage_pb2.ListFilesystemsResponse:
        caller = current_caller()
        errors = FieldViolations()
        system = self._system(request.parent, errors)
        check_page_request(request.page_size, request.page_token, errors)
        errors.raise_if_any()
        assert system is not None
        identity = await identity_of(self.users, caller.user)
        page, token = paginate(system.filesystems, request.page_size, request.page_token)
        status = self.hub.get(system.id)
        filesystems = await asyncio.gather(
            *(self._filesystem(system, fs, status, identity) for fs in page)
        )
        return storage_pb2.ListFilesystemsResponse(filesystems=filesystems, next_page_token=token)

    async def _filesystem(
        self,
        system: SystemConfig,
        fs: FilesystemConfig,
        status: model.SystemStatus | None,
        identity: privsep.UserIdentity,
    ) -> storage_pb2.Filesystem:
        name = f"{system.name}/filesystems/{fs.name}"
        msg = storage_pb2.Filesystem(
            name=name,
            filesystem=fs.name,
            system=system.id,
            display_name=fs.display_name or fs.name,
            kind=_KIND[fs.kind],
            mount_path=str(fs.path),
            description=fs.description,
        )
        component = None
        if status is not None:
            component = next((c for c in status.components if c.name == name), None)
        if component is None:
            msg.state = storage_pb2.FILESYSTEM_STATE_UNSPECIFIED
            msg.reason = status.reason if status is not None and status.reason else \
                "not probed yet"  # fmt: skip
            msg.caller_quota.CopyFrom(_quota_to_proto(unknown("the filesystem is not probed yet")))
            return msg
        msg.state = _STATE.get(component.state, storage_pb2.FILESYSTEM_STATE_UNSPECIFIED)
        msg.reason = component.reason
        if (checked := timestamp(component.checked_at)) is not None:
            msg.updated_at.CopyFrom(checked)
        details = component.details
        fs_type = ""
        if isinstance(details, model.FilesystemDetails):
            fs_type = details.fs_type
            msg.fs_type = details.fs_type
            msg.total_bytes = details.total_bytes
            msg.used_bytes = details.used_bytes
            msg.free_bytes = details.available_bytes
            msg.total_inodes = details.total_inodes
            msg.used_inodes = details.used_inodes
            msg.free_inodes = details.available_inodes
            if details.read_only and component.state is model.State.ACTIVE:
                msg.state = storage_pb2.FILESYSTEM_STATE_READ_ONLY
                msg.reason = "mounted read-only"
        if msg.state == storage_pb2.FILESYSTEM_STATE_OFFLINE:
            quota = unknown("the filesystem is offline")
        else:
            quota, msg.user_path = await asyncio.gather(
                self.quotas.read(identity, system.id, fs, fs_type),
                self._user_path(fs, identity),
            )
        msg.caller_quota.CopyFrom(_quota_to_proto(quota))
        return msg

    async def _user_path(self, fs: FilesystemConfig, identity: privsep.UserIdentity) -> str:
        """The caller's directory on `fs`: configured, the home directory, or PATH/USER."""
        mount = str(fs.path)
        if fs.user_path:
            return fs.user_path.replace("{user}", identity.name)
        if fs.kind == "home":
            return identity.home if _under(identity.home, mount) else ""
        candidate = f"{mount.rstrip('/')}/{identity.name}"
        try:
            worker = await self.users.worker(identity)
            found = await asyncio.wait_for(
                worker.stat(candidate, follow_symlinks=True), self.config.storage.quota_timeout
            )
        except (OSError, TimeoutError, privsep.PrivsepError):
            return ""  # absent, not the caller's to see, or the mount is slow: none shown
        return candidate if found.is_dir else ""

    async def StartTransfer(
        self, request: storage_pb2.StartTransferRequest, context: Any
    ) -> storage_pb2.StartTransferResponse:
        caller = current_caller()
        record = await self.transfers.start(transfer_request(request, self.config), caller.user)
        return storage_pb2.StartTransferResponse(task=task_to_proto(record))
