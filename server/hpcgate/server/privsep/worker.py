"""The per-user worker: does filesystem work as one user, and nothing as root.

The broker starts this program already running as the target user (setgroups, setgid and
setuid happened in the child before exec), so every permission decision below is the
kernel's, made for that user. It serves requests on the inherited Unix socket given as
argv[1]: 4-byte big-endian length + UTF-8 JSON, `{id, op, args}` in, `{id, ok, result}` or
`{id, ok: false, error: {errno, message}}` out. Descriptors travel as SCM_RIGHTS on the
reply's frame and the reply says how many (`fds`). Requests run in a small thread pool so a
call stuck on a dead mount does not stall the others; replies carry the request's id.

Standard library only and self-contained: the broker feeds this file to `python -I -S -`
so the user needs an interpreter they can run, not read access to the installation.
`python -I -m hpcgate.server.privsep.worker FD [THREADS]` works too.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

HEADER = struct.Struct(">I")
MAX_FRAME = 4 * 1024 * 1024  # either side closes the connection on a larger frame
MAX_FDS = 16  # descriptors one reply may carry
MAX_PING_DELAY = 10.0

# open(2) flags by name; O_NOFOLLOW, O_CLOEXEC and O_NOCTTY are always added.
OPEN_FLAGS = {
    "read": 0,
    "write": 0,
    "create": os.O_CREAT,
    "exclusive": os.O_EXCL,
    "truncate": os.O_TRUNC,
    "append": os.O_APPEND,
    "directory": os.O_DIRECTORY,
}
_ALWAYS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY

Args = dict[str, Any]
Reply = tuple[dict[str, Any], list[int]]


class OpError(Exception):
    """A refusal by the worker itself (bad arguments...), reported like an errno."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _path(args: Args, key: str = "path") -> str:
    path = args.get(key)
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise OpError(errno.EINVAL, f"{key} must be an absolute path")
    return path


def _stat_dict(st: os.stat_result) -> dict[str, Any]:
    return {
        "mode": st.st_mode,
        "ino": st.st_ino,
        "dev": st.st_dev,
        "nlink": st.st_nlink,
        "uid": st.st_uid,
        "gid": st.st_gid,
        "size": st.st_size,
        "atime_ns": st.st_atime_ns,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
    }


def _open_flags(names: object) -> int:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise OpError(errno.EINVAL, "flags must be a list of names")
    unknown = set(names) - set(OPEN_FLAGS)
    if unknown:
        raise OpError(errno.EINVAL, f"unknown open flags: {sorted(unknown)}")
    read, write = "read" in names, "write" in names
    if "directory" in names:
        if write or {"create", "truncate", "append"} & set(names):
            raise OpError(errno.EINVAL, "a directory can only be opened for reading")
        read = True
    if not (read or write):
        raise OpError(errno.EINVAL, "open needs read or write")
    if "exclusive" in names and "create" not in names:
        raise OpError(errno.EINVAL, "exclusive needs create")
    if ("truncate" in names or "append" in names) and not write:
        raise OpError(errno.EINVAL, "truncate and append need write")
    flags = os.O_RDWR if read and write else os.O_WRONLY if write else os.O_RDONLY
    for name in names:
        flags |= OPEN_FLAGS[name]
    return flags


def _parent_no_symlinks(path: str) -> tuple[int, str]:
    """Walk to the parent of `path` one component at a time, refusing any symlink (ELOOP).

    Returns an O_PATH descriptor of the parent directory and the final name. Each step is
    relative to the previous descriptor, so a concurrent rename cannot redirect the walk.
    """
    parts = [p for p in path.split("/") if p and p != "."]
    final = parts.pop() if parts else "."
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            nfd = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nfd
            mode = os.fstat(fd).st_mode
            if stat.S_ISLNK(mode):
                raise OSError(errno.ELOOP, "a path component is a symbolic link", path)
            if not stat.S_ISDIR(mode):
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
    except BaseException:
        os.close(fd)
        raise
    return fd, final


def op_whoami(args: Args) -> Reply:
    ruid, euid, suid = os.getresuid()
    rgid, egid, sgid = os.getresgid()
    return {
        "uid": ruid,
        "euid": euid,
        "suid": suid,
        "gid": rgid,
        "egid": egid,
        "sgid": sgid,
        "groups": sorted(os.getgroups()),
        "pid": os.getpid(),
    }, []


def op_ping(args: Args) -> Reply:
    delay = args.get("delay", 0)
    if not isinstance(delay, int | float) or not 0 <= delay <= MAX_PING_DELAY:
        raise OpError(errno.EINVAL, f"delay must be between 0 and {MAX_PING_DELAY:g} s")
    time.sleep(delay)
    return {}, []


def op_open(args: Args) -> Reply:
    """Open as the user; never follows a symlink in the final component; returns the fd.

    O_NONBLOCK during open so a FIFO cannot hang a thread; only regular files and
    directories are handed out.
    """
    path = _path(args)
    flags = _open_flags(args.get("flags", ["read"])) | _ALWAYS | os.O_NONBLOCK
    mode = args.get("mode", 0o666)
    if not isinstance(mode, int) or not 0 <= mode <= 0o7777:
        raise OpError(errno.EINVAL, "mode must be a permission mode")
    if args.get("no_symlinks", False):
        parent, name = _parent_no_symlinks(path)
        try:
            fd = os.open(name, flags, mode, dir_fd=parent)
        finally:
            os.close(parent)
    else:
        fd = os.open(path, flags, mode)
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            os.set_blocking(fd, True)
        elif not stat.S_ISDIR(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file or directory", path)
    except BaseException:
        os.close(fd)
        raise
    return {}, [fd]


def op_stat(args: Args) -> Reply:
    path = _path(args)
    follow = bool(args.get("follow_symlinks", False))
    return _stat_dict(os.stat(path, follow_symlinks=follow)), []


def op_cwd(args: Args) -> Reply:
    """An O_PATH descriptor of a directory the user may chdir into (search permission).

    The broker makes it a command's working directory through /proc, so the directory is
    resolved as the user rather than by the root parent of the command.
    """
    path = _path(args)
    fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.stat(".", dir_fd=fd)  # the lookup needs search (x) permission, like chdir
    except BaseException:
        os.close(fd)
        raise
    return {}, [fd]


def op_killpg(args: Args) -> Reply:
    """Signal a process group as the user: a stale or reused group id can only ever reach
    this user's own processes."""
    pgid, signum = args.get("pgid"), args.get("signal", int(signal.SIGKILL))
    if not isinstance(pgid, int) or pgid <= 1 or not isinstance(signum, int):
        raise OpError(errno.EINVAL, "pgid and signal must be integers, pgid > 1")
    os.killpg(pgid, signum)
    return {}, []


# The operation table: name -> handler(args) -> (result, descriptors to pass back).
OPS: dict[str, Callable[[Args], Reply]] = {
    "whoami": op_whoami,
    "ping": op_ping,
    "open": op_open,
    "stat": op_stat,
    "cwd": op_cwd,
    "killpg": op_killpg,
}


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return HEADER.pack(len(body)) + body


class Worker:
    """Reads requests on the main thread, runs them in a pool, replies under a lock."""

    def __init__(self, sock: socket.socket, threads: int) -> None:
        self.sock = sock
        self.send_lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="op")

    def send(self, message: dict[str, Any], fds: list[int]) -> None:
        frame = encode(message)
        try:
            with self.send_lock:
                sent = socket.send_fds(self.sock, [frame], fds) if fds else 0
                self.sock.sendall(frame[sent:])
        except OSError:
            os._exit(0)  # the server is gone
        finally:
            for fd in fds:
                os.close(fd)

    def handle(self, body: bytes) -> None:
        rid: object = None
        try:
            request = json.loads(body)
            rid = request["id"]
            handler = OPS.get(request["op"])
            if handler is None:
                raise OpError(errno.ENOSYS, f"unknown operation {request['op']!r}")
            args = request.get("args") or {}
            if not isinstance(args, dict):
                raise OpError(errno.EINVAL, "args must be an object")
            result, fds = handler(args)
        except OSError as exc:
            code = exc.errno if exc.errno in errno.errorcode else errno.EIO
            assert code is not None
            message = exc.strerror or str(exc)
            self.send(_error(rid, code, message, exc.filename), [])
            return
        except OpError as exc:
            self.send(_error(rid, exc.code, str(exc)), [])
            return
        except (ValueError, TypeError, KeyError) as exc:
            self.send(_error(rid, errno.EINVAL, f"bad request: {exc!r}"), [])
            return
        except Exception as exc:
            self.send(_error(rid, errno.EIO, f"internal error: {exc!r}"), [])
            return
        reply: dict[str, Any] = {"id": rid, "ok": True, "result": result}
        if fds:
            reply["fds"] = len(fds)
        self.send(reply, fds)

    def serve(self) -> None:
        buffer = bytearray()
        while True:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                return
            buffer += chunk
            while len(buffer) >= HEADER.size:
                (size,) = HEADER.unpack_from(buffer)
                if size > MAX_FRAME:
                    print(f"privsep worker: frame of {size} bytes, closing", file=sys.stderr)
                    return
                if len(buffer) < HEADER.size + size:
                    break
                body = bytes(buffer[HEADER.size : HEADER.size + size])
                del buffer[: HEADER.size + size]
                self.pool.submit(self.handle, body)


def _error(rid: object, code: int, message: str, filename: object = None) -> dict[str, Any]:
    error: dict[str, Any] = {"errno": errno.errorcode.get(code, "EIO"), "message": message}
    if isinstance(filename, str):
        error["path"] = filename
    return {"id": rid, "ok": False, "error": error}


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or not all(a.isdigit() for a in argv[1:]):
        print("usage: worker FD [THREADS]", file=sys.stderr)
        return 2
    if 0 in os.getresuid():
        print("privsep worker: refusing to run with a root uid", file=sys.stderr)
        return 3
    sock = socket.socket(fileno=int(argv[1]))
    threads = int(argv[2]) if len(argv) == 3 else 8
    try:
        os.chdir(os.environ.get("HOME") or "/")
    except OSError:
        os.chdir("/")
    worker = Worker(sock, max(1, threads))
    hello, _ = op_whoami({})
    worker.send({"id": 0, "ok": True, "result": hello}, [])
    try:
        worker.serve()
    except OSError as exc:
        print(f"privsep worker: {exc}", file=sys.stderr)
    os._exit(0)  # without waiting for a thread stuck on a dead mount


if __name__ == "__main__":
    sys.exit(main(sys.argv))
