"""Helpers for UtilitiesService tests: per-test directories owned by real users."""

from __future__ import annotations

import os
import pwd
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def make_owned(path: Path, user: str, mode: int = 0o700, data: bytes | None = None) -> Path:
    """Create a directory (data None) or file owned by `user` (tests run as root)."""
    entry = pwd.getpwnam(user)
    if data is None:
        path.mkdir()
    else:
        path.write_bytes(data)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(path, mode)
    return path


@contextmanager
def user_dir(user: str, mode: int = 0o700) -> Iterator[Path]:
    """A fresh directory in `user`'s home, removed afterwards."""
    home = Path(pwd.getpwnam(user).pw_dir)
    path = make_owned(home / f"hpcgate-test-{uuid.uuid4().hex[:8]}", user, mode)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def field_violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """The BadRequest field violations of an INVALID_ARGUMENT error."""
    status = rpc_status.from_call(error)
    assert status is not None, "no rich status"
    out: dict[str, str] = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out.update({v.field: v.description for v in bad.field_violations})
    return out
