"""StartTransferRequest -> TransferRequest: every field checked, systems resolved."""

from __future__ import annotations

import re

from hpcgate.server.api.resources import lookup_system
from hpcgate.server.config import Config
from hpcgate.server.errors import FieldViolations
from hpcgate.server.files import paths
from hpcgate.server.transfers.service import End, TransferRequest
from hpcgate.v1 import storage_pb2, tasks_pb2

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_KINDS = {
    tasks_pb2.TRANSFER_KIND_COPY: "COPY",
    tasks_pb2.TRANSFER_KIND_MOVE: "MOVE",
    tasks_pb2.TRANSFER_KIND_SYNC: "SYNC",
}


def _end(
    config: Config, end: tasks_pb2.TransferEndpoint, field: str, errors: FieldViolations
) -> End:
    system_id = ""
    if not end.facility:
        system = lookup_system(config, end.system, f"{field}.system", errors, bare_id=True)
        system_id = system.id if system is not None else ""
    path = paths.checked(errors, f"{field}.path", end.path)
    if path == "/":
        errors.add(f"{field}.path", "'/' cannot be transferred or replaced")
    return End(system=system_id, path=end.path, facility=end.facility)


def transfer_request(request: storage_pb2.StartTransferRequest, config: Config) -> TransferRequest:
    """Raises one INVALID_ARGUMENT naming every bad field (NOT_FOUND for an unknown system)."""
    errors = FieldViolations()
    if request.kind not in _KINDS:
        errors.add("kind", "choose TRANSFER_KIND_COPY, _MOVE or _SYNC")
    source = _end(config, request.source, "source", errors)
    destination = _end(config, request.destination, "destination", errors)
    if request.source.facility and request.destination.facility:
        errors.add("destination.facility", "at most one end may be another facility")
    if request.delete_extraneous and request.kind != tasks_pb2.TRANSFER_KIND_SYNC:
        errors.add("delete_extraneous", "only applies to TRANSFER_KIND_SYNC")
    same_place = (source.facility, source.system) == (destination.facility, destination.system)
    src, dst = source.path, destination.path
    if same_place and src and (dst + "/").startswith(src.rstrip("/") + "/"):
        errors.add("destination.path", "must not be the source or inside it")
    if request.request_id and not _REQUEST_ID.match(request.request_id):
        errors.add("request_id", "1-128 characters of A-Z a-z 0-9 . _ : -")
    errors.raise_if_any()
    return TransferRequest(
        kind=_KINDS[request.kind],
        source=source,
        destination=destination,
        recursive=request.recursive,
        preserve=request.preserve,
        overwrite=request.overwrite,
        delete_extraneous=request.delete_extraneous,
        skip_verification=request.skip_verification,
        request_id=request.request_id,
    )
