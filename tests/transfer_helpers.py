"""Helpers for transfer tests: trees of real files, comparing them, waiting for tasks."""

from __future__ import annotations

import hashlib
import os
import pwd
from pathlib import Path

import grpc

from hpcgate.v1 import tasks_pb2 as t
from hpcgate.v1 import tasks_pb2_grpc

ENDED = {t.TASK_STATE_SUCCEEDED, t.TASK_STATE_FAILED, t.TASK_STATE_CANCELLED}


def make_tree(root: Path, user: str, files: int = 200, big: int = 0) -> None:
    """`files` small files spread over nested directories, a symlink, and optionally one
    file of `big` bytes; all owned by `user`, with varied modes and old mtimes."""
    entry = pwd.getpwnam(user)
    root.mkdir()
    for i in range(files):
        directory = root / f"d{i % 7}" / f"e{i % 3}"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"f{i:05d}.dat"
        path.write_bytes(os.urandom(i % 50) + f"file {i}\n".encode())
        os.chmod(path, 0o640 if i % 2 else 0o600)
        os.utime(path, ns=(1_600_000_000_000_000_000 + i, 1_600_000_000_000_000_000 + i * 10**9))
    os.symlink("d0/e0", root / "link-to-d0")
    if big:
        # Last in walk order: the small files (fast, in batches) are done and checkpointed
        # before it, so tests that interrupt a transfer have its copy as their window.
        with open(root / "zz-big.bin", "wb") as f:
            block = os.urandom(1024 * 1024)
            for i in range(big // len(block)):
                f.write(i.to_bytes(8, "big") + block[8:])
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            os.lchown(os.path.join(dirpath, name), entry.pw_uid, entry.pw_gid)
    os.chown(root, entry.pw_uid, entry.pw_gid)


def snapshot(root: Path, times: bool = True) -> dict[str, tuple[object, ...]]:
    """rel path -> (type, sha256 or link target, mode, mtime seconds) of every entry."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir", st.st_mode & 0o7777)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                mtime = int(st.st_mtime) if times else 0
                out[rel] = ("file", digest, st.st_mode & 0o7777, mtime)
    return out


def owners(root: Path) -> set[int]:
    return {os.lstat(os.path.join(d, n)).st_uid for d, ds, fs in os.walk(root) for n in ds + fs}


async def wait_task(
    channel: grpc.aio.Channel, md: list[tuple[str, str]], name: str, timeout: float = 120
) -> t.Task:
    """Watches the task until it ends; returns its last state."""
    import asyncio

    stub = tasks_pb2_grpc.TasksServiceStub(channel)

    async def watch() -> t.Task:
        last = None
        async for message in stub.WatchTask(t.WatchTaskRequest(name=name), metadata=md):
            if message.WhichOneof("kind") == "task":
                last = message.task
                if last.state in ENDED:
                    return last
        assert last is not None
        return last

    return await asyncio.wait_for(watch(), timeout)
