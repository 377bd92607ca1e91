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

import contextlib
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


# -- commands -----------------------------------------------------------------------------
# Commands run here, from this small process that already is the user: no root parent
# resolving the working directory, no extra exec to drop privileges, and fork is cheap.
# Short ones (sbatch, scancel, quota tools) run to completion in `run`; long-running,
# streamed ones are started by `spawn`, which hands their pipes to the server, and `wait`
# reports their exit.

RUN_OUTPUT_LIMIT = 1 << 20  # bytes of stdout and of stderr kept (the rest is read, dropped)


class _Run:
    """A command in progress, by its tag, for run_kill and run_release. Registered by the
    reading thread as the request arrives, so a release or kill sent right after it is
    never missed by a run whose thread has not started yet."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.released = threading.Event()
        self.go = False
        self.killed = False


_running: dict[str, _Run] = {}
_running_lock = threading.Lock()


def expect_run(body: dict[str, Any]) -> None:
    args = body.get("args")
    if isinstance(args, dict):
        with _running_lock:
            _running.setdefault(str(args.get("tag", "")), _Run())


def op_run(args: Args) -> Reply:
    """Run argv (no shell) in a new session to completion: {returncode, stdout, stderr}.

    `input` (base64) is fed on stdin, a pipe this user owns (so `/dev/stdin` opens). A
    missing or unrunnable program is exit 127 / 126, as in a shell. Past `timeout`
    seconds the process group is killed and the reply is ETIME.

    With `gated`, the command starts at once but gets its input only after run_release
    says go (it is killed, and the reply is ECANCELED, otherwise): it loads while the
    server makes its decision durable, and a command that reads its work from stdin,
    like sbatch, can do nothing before that. If the server dies first, this worker exits
    and the command reads an empty stdin.
    """
    tag = str(args.get("tag", ""))
    with _running_lock:
        run = _running.setdefault(tag, _Run())
    try:
        return _run(args, run)
    finally:
        with _running_lock:
            _running.pop(tag, None)


def _command(args: Args) -> tuple[list[str], dict[str, str]]:
    argv, env = args.get("argv"), args.get("env") or {}
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        raise OpError(errno.EINVAL, "argv must be a non-empty list of strings")
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise OpError(errno.EINVAL, "env must map strings to strings")
    return argv, env


def _run(args: Args, run: _Run) -> Reply:
    import base64
    import subprocess

    argv, env = _command(args)
    data = base64.b64decode(args.get("input") or "")
    deadline = time.monotonic() + float(args.get("timeout", 60))
    directory = _run_directory(args.get("cwd"))
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=f"/proc/self/fd/{directory}",  # the child's own copy, closed at exec
            env=env,
            start_new_session=True,
            umask=int(args.get("umask", -1)),
        )
    except OSError as exc:  # the program, not the directory (checked above)
        message = f"{argv[0]}: {exc.strerror}\n".encode()
        return {"returncode": 127 if exc.errno == errno.ENOENT else 126, "stdout": "",
                "stderr": base64.b64encode(message).decode()}, []  # fmt: skip
    finally:
        os.close(directory)
    with _running_lock:
        run.pid = proc.pid
    try:
        if args.get("gated"):
            run.released.wait(max(0.0, deadline - time.monotonic()))
        if run.killed or (args.get("gated") and not run.go):
            raise OpError(errno.ECANCELED, f"{argv[0]} was withheld or stopped, and killed")
        out, err, finished = _communicate(proc, data, deadline)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        with proc:  # closes the pipes, reaps the process
            pass
    if not finished:
        raise OpError(errno.ETIME, f"{argv[0]} did not finish in time; its processes were killed")
    encode = base64.b64encode
    return {"returncode": proc.returncode, "stdout": encode(out).decode(),
            "stderr": encode(err).decode()}, []  # fmt: skip


def _run_directory(cwd: object) -> int:
    """The command's working directory, opened as the user: `cwd` (its errors are the
    caller's to see) or else $HOME, or / when the home directory is unusable."""
    if cwd is not None:
        return op_cwd({"path": cwd})[1][0]
    try:
        return op_cwd({"path": os.environ.get("HOME") or "/"})[1][0]
    except OSError:
        return op_cwd({"path": "/"})[1][0]


def _communicate(proc: Any, data: bytes, deadline: float) -> tuple[bytes, bytes, bool]:
    """Feed stdin, keep up to RUN_OUTPUT_LIMIT of each output, wait for the exit; False
    as the third value when the deadline came first."""
    import selectors
    import subprocess

    kept: dict[int, bytearray] = {proc.stdout.fileno(): bytearray(),
                                  proc.stderr.fileno(): bytearray()}  # fmt: skip
    view = memoryview(data)
    stdin_fd = proc.stdin.fileno()
    with selectors.PollSelector() as selector:
        if view:
            os.set_blocking(proc.stdin.fileno(), False)
            selector.register(proc.stdin, selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
        selector.register(proc.stdout, selectors.EVENT_READ)
        selector.register(proc.stderr, selectors.EVENT_READ)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return b"", b"", False
            for key, _ in selector.select(left):
                if key.fd == stdin_fd:
                    try:
                        view = view[os.write(key.fd, view[: 1 << 16]) :]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        view = view[:0]
                    if not view:
                        selector.unregister(proc.stdin)
                        proc.stdin.close()
                    continue
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                buffer = kept[key.fd]
                buffer += chunk[: max(0, RUN_OUTPUT_LIMIT - len(buffer))]
    out, err = (bytes(kept[f.fileno()]) for f in (proc.stdout, proc.stderr))
    try:
        proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return out, err, False
    return out, err, True


def op_run_kill(args: Args) -> Reply:
    """Kill the process group of a run still in progress (its caller went away)."""
    with _running_lock:
        run = _running.get(str(args.get("tag", "")))
        if run is not None:
            run.killed = True  # a run that has not started its command yet won't
            pid = run.pid
    if run is not None:
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        run.released.set()  # a gated run stops waiting
    return {"killed": run is not None}, []


def op_run_release(args: Args) -> Reply:
    """Let a gated run have its input (`go`), or kill it."""
    with _running_lock:
        run = _running.get(str(args.get("tag", "")))
    if run is not None:
        run.go = bool(args.get("go"))
        run.released.set()
    return {"found": run is not None}, []


class _Child:
    """A command `spawn` started: reaped by a thread of its own, its exit status kept
    until a `wait` has collected it."""

    def __init__(self, proc: Any) -> None:
        self.proc = proc
        self.returncode: int | None = None
        self.waiters: list[object] = []  # ids of `wait` requests to answer at its exit


_children: dict[int, _Child] = {}
_children_lock = threading.Lock()
# How replies leave this process (Worker.send); set once the worker serves.
_reply: Callable[[dict[str, Any], list[int]], None] | None = None


def op_spawn(args: Args) -> Reply:
    """Start argv (no shell) in a new session and hand back the server's ends of its
    pipes: stdout, stderr and, with `stdin`, its input. {pid}; `wait` reports the exit.

    The pipes are created here, so they belong to the user (`/dev/stdin` and `/dev/stderr`
    can be reopened by name). The working directory and environment follow `run`'s rules;
    a program that cannot be executed is the OSError of exec (ENOENT, EACCES)."""
    import subprocess

    argv, env = _command(args)
    directory = _run_directory(args.get("cwd"))
    ours: list[int] = []
    theirs: list[int] = []
    try:
        for _ in range(2):  # stdout, stderr: the server reads, the command writes
            read_end, write_end = os.pipe()
            ours.append(read_end)
            theirs.append(write_end)
        if args.get("stdin"):  # the server writes, the command reads
            read_end, write_end = os.pipe()
            ours.append(write_end)
            theirs.append(read_end)
        proc = subprocess.Popen(
            argv,
            stdin=theirs[2] if len(theirs) == 3 else subprocess.DEVNULL,
            stdout=theirs[0],
            stderr=theirs[1],
            cwd=f"/proc/self/fd/{directory}",  # the child's own copy, closed at exec
            env=env,
            start_new_session=True,
            umask=int(args.get("umask", -1)),
        )
    except BaseException:
        for fd in ours:
            os.close(fd)
        raise
    finally:
        os.close(directory)
        for fd in theirs:
            os.close(fd)
    child = _Child(proc)
    with _children_lock:
        _children[proc.pid] = child
    threading.Thread(target=_reap_child, args=(child,), daemon=True).start()
    return {"pid": proc.pid}, ours


def _reap_child(child: _Child) -> None:
    returncode = child.proc.wait()
    with _children_lock:
        child.returncode = returncode
        waiters, child.waiters = child.waiters, []
        if waiters:
            _children.pop(child.proc.pid, None)
    for rid in waiters:
        _answer_wait(rid, returncode)


def kill_children() -> None:
    """SIGKILLs the process group of every spawned command still running: the server is
    gone (or closed this worker), so nothing could collect their output or end them."""
    with _children_lock:
        running = [c.proc.pid for c in _children.values() if c.returncode is None]
    for pgid in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def wait_child(rid: object, args: Args) -> None:
    """`wait` {pid}: answered with {returncode} when the spawned command has exited (at
    once if it already has). Served on the reading thread and answered by the command's
    reaper, so waiting commands hold no pool thread."""
    pid = args.get("pid")
    with _children_lock:
        child = _children.get(pid) if isinstance(pid, int) else None
        if child is not None and child.returncode is None:
            child.waiters.append(rid)
            return
        if child is not None:
            del _children[child.proc.pid]
    if child is None:
        assert _reply is not None
        _reply(_error(rid, errno.ECHILD, f"no command {pid!r} was spawned here"), [])
        return
    assert child.returncode is not None
    _answer_wait(rid, child.returncode)


def _answer_wait(rid: object, returncode: int) -> None:
    assert _reply is not None
    _reply({"id": rid, "ok": True, "result": {"returncode": returncode}}, [])


# -- files ------------------------------------------------------------------------------
# Every file operation below resolves paths as the user and, when the request carries
# `roots` (the directories a site exposes), checks the *resolved* location of the object
# it is about to touch against them. Checks are made on descriptors (O_PATH), and the
# operation then goes through that descriptor or through `dir_fd` + a single name, so a
# concurrent rename or symlink swap cannot redirect it after the check.

RENAME_NOREPLACE = 1
LIST_BUDGET = 2 * 1024 * 1024  # bytes of JSON a listing page may carry (frames are 4 MiB)
_libc: Any = None


def _roots(args: Args) -> list[str] | None:
    roots = args.get("roots")
    if roots is None:
        return None
    if not isinstance(roots, list) or not all(isinstance(r, str) and r[:1] == "/" for r in roots):
        raise OpError(errno.EINVAL, "roots must be a list of absolute paths")
    return [os.path.realpath(r) for r in roots]  # as the user: their view of the tree


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def _inside(real: str, roots: list[str]) -> bool:
    return any(real == r or real.startswith(r.rstrip("/") + "/") for r in roots)


def _check(real: str, roots: list[str] | None, path: str) -> None:
    if roots is not None and not _inside(real, roots):
        raise OpError(
            errno.EACCES,
            f"{path} resolves to {real}, outside the directories this system serves "
            f"({', '.join(roots) or 'none'})",
        )


def _parent(path: str, roots: list[str] | None) -> tuple[int, str]:
    """An O_PATH descriptor of `path`'s directory (symlinks on the way followed, as the
    user) and the final name; the entry's resolved location must be inside `roots`."""
    head, _, name = path.rpartition("/")
    if not name or name in (".", ".."):
        raise OpError(errno.EINVAL, f"{path!r} does not name an entry in a directory")
    fd = os.open(head or "/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if roots is not None:
            _check(os.path.join(_fd_path(fd), name), roots, path)
    except BaseException:
        os.close(fd)
        raise
    return fd, name


def _target(path: str, roots: list[str] | None, follow: bool) -> int:
    """An O_PATH descriptor of `path` itself (its symlink target with `follow`)."""
    flags = os.O_PATH | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        _check(_fd_path(fd), roots, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


_names: dict[tuple[str, int], str] = {}


def _name_of(kind: str, number: int) -> str:
    key = (kind, number)
    if key not in _names:
        import grp
        import pwd

        try:
            _names[key] = (
                pwd.getpwuid(number).pw_name if kind == "u" else grp.getgrgid(number).gr_name
            )
        except KeyError:
            _names[key] = ""
    return _names[key]


def _entry(name: str, path: str, st: os.stat_result, link: str | None) -> dict[str, Any]:
    return {
        "name": name,
        "path": path,
        "stat": _stat_dict(st),
        "link": link,
        "owner": _name_of("u", st.st_uid),
        "group": _name_of("g", st.st_gid),
    }


def _describe(path: str, roots: list[str] | None, follow: bool) -> dict[str, Any]:
    fd = _target(path, roots, follow)
    try:
        st = os.fstat(fd)
        link = os.readlink("", dir_fd=fd) if stat.S_ISLNK(st.st_mode) else None
    finally:
        os.close(fd)
    return _entry(path.rpartition("/")[2] or "/", path, st, link)


def _int(args: Args, key: str, default: int, limit: int = 1 << 62) -> int:
    value = args.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
        raise OpError(errno.EINVAL, f"{key} must be an integer between 0 and {limit}")
    return value


def op_entry(args: Args) -> Reply:
    return _describe(_path(args), _roots(args), bool(args.get("follow_symlinks"))), []


def op_list(args: Args) -> Reply:
    """One page of a directory: entries sorted by raw name bytes, after `after`."""
    path, roots = _path(args), _roots(args)
    show_hidden, follow = bool(args.get("show_hidden")), bool(args.get("follow_symlinks"))
    limit = _int(args, "limit", 1000, 100_000)
    after = args.get("after")
    after_key = os.fsencode(after) if isinstance(after, str) else None
    fd = _target(path, roots, follow=True)
    try:
        dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)
    try:
        keys = sorted(os.fsencode(n) for n in os.listdir(dfd))
        if not show_hidden:
            keys = [k for k in keys if not k.startswith(b".")]
        if after_key is not None:
            keys = [k for k in keys if k > after_key]
        entries: list[dict[str, Any]] = []
        budget = LIST_BUDGET
        base = path.rstrip("/")
        for key in keys:
            if len(entries) >= limit or budget <= 0:
                break
            name = os.fsdecode(key)
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                link = None
                if stat.S_ISLNK(st.st_mode):
                    link = os.readlink(name, dir_fd=dfd)
                    if follow:
                        st = _followed(name, dfd, roots) or st
            except FileNotFoundError:
                continue  # removed while listing
            entry = _entry(name, f"{base}/{name}", st, link)
            budget -= len(json.dumps(entry)) + 8
            entries.append(entry)
        more = len(keys) > len(entries)
    finally:
        os.close(dfd)
    return {"entries": entries, "more": more}, []


def _followed(name: str, dfd: int, roots: list[str] | None) -> os.stat_result | None:
    """The stat of a listed symlink's target, or None when dangling or outside roots."""
    try:
        fd = os.open(name, os.O_PATH | os.O_CLOEXEC, dir_fd=dfd)
    except OSError:
        return None
    try:
        if roots is not None and not _inside(_fd_path(fd), roots):
            return None
        return os.fstat(fd)
    finally:
        os.close(fd)


def op_mkdir(args: Args) -> Reply:
    path, roots = _path(args), _roots(args)
    mode = _int(args, "mode", 0o755, 0o7777)
    if args.get("parents"):
        parts = [p for p in path.split("/") if p]
        for i in range(1, len(parts) + 1):
            prefix = "/" + "/".join(parts[:i])
            try:
                if not stat.S_ISDIR(os.stat(prefix).st_mode):
                    raise OSError(
                        errno.ENOTDIR if i < len(parts) else errno.EEXIST,
                        "exists and is not a directory",
                        prefix,
                    )
                continue
            except FileNotFoundError:
                pass
            _mkdir(prefix, roots, mode, exist_ok=True)
    else:
        _mkdir(path, roots, mode, exist_ok=False)
    return _describe(path, roots, follow=False), []


def _mkdir(path: str, roots: list[str] | None, mode: int, exist_ok: bool) -> None:
    fd, name = _parent(path, roots)
    try:
        try:
            os.mkdir(name, mode, dir_fd=fd)
        except FileExistsError:
            if exist_ok and stat.S_ISDIR(os.stat(name, dir_fd=fd).st_mode):
                return
            raise
        os.chmod(name, mode, dir_fd=fd)  # exactly `mode`: the umask is not applied
    finally:
        os.close(fd)


def _rename_noreplace(sfd: int, sname: str, dfd: int, dname: str) -> None:
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    import ctypes

    rc = _libc.renameat2(sfd, os.fsencode(sname), dfd, os.fsencode(dname), RENAME_NOREPLACE)
    if rc == 0:
        return
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS):  # filesystem without RENAME_NOREPLACE
        try:
            os.stat(dname, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            os.rename(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd)
            return
        code = errno.EEXIST
    raise OSError(code, os.strerror(code), dname)


def op_rename(args: Args) -> Reply:
    """rename(2) as the user; across filesystems (EXDEV) a bounded copy, then removal."""
    src, dst, roots = _path(args, "source"), _path(args, "destination"), _roots(args)
    overwrite = bool(args.get("overwrite"))
    sfd, sname = _parent(src, roots)
    try:
        dfd, dname = _parent(dst, roots)
        try:
            try:
                if overwrite:
                    os.rename(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd)
                else:
                    _rename_noreplace(sfd, sname, dfd, dname)
            except OSError as exc:
                if exc.errno != errno.EXDEV or args.get("no_copy"):
                    raise
                _copy(sfd, sname, dfd, dname, args, recursive=True, preserve=True)
                _remove_entry(sfd, sname, recursive=True, path=src)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)
    return _describe(dst, roots, follow=False), []


def _tree_size(fd: int, name: str, recursive: bool, max_bytes: int, max_files: int) -> None:
    """Refuses (EFBIG) a source larger than the synchronous limits, before copying."""
    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    total, files = st.st_size if stat.S_ISREG(st.st_mode) else 0, 1
    if stat.S_ISDIR(st.st_mode):
        if not recursive:
            raise OSError(errno.EISDIR, "is a directory (set recursive to copy a tree)", name)
        for _, _, filenames, dirfd in os.fwalk(name, dir_fd=fd):
            for filename in filenames:
                sub = os.stat(filename, dir_fd=dirfd, follow_symlinks=False)
                files += 1
                total += sub.st_size if stat.S_ISREG(sub.st_mode) else 0
            if total > max_bytes or files > max_files:
                break
    if total > max_bytes or files > max_files:
        raise OpError(
            errno.EFBIG,
            f"the source is larger than the synchronous limit ({max_bytes} bytes or "
            f"{max_files} files); use StorageService.StartTransfer",
        )


def _copy(
    sfd: int, sname: str, dfd: int, dname: str, args: Args, *, recursive: bool, preserve: bool
) -> tuple[int, int]:
    """Copies an entry (file, symlink, or tree) from sfd/sname to dfd/dname; (bytes, files)."""
    max_bytes = _int(args, "max_bytes", 1 << 30)
    max_files = _int(args, "max_files", 10_000)
    _tree_size(sfd, sname, recursive, max_bytes, max_files)
    return _copy_entry(sfd, sname, dfd, dname, bool(args.get("overwrite")), preserve)


def _copy_entry(
    sfd: int, sname: str, dfd: int, dname: str, overwrite: bool, preserve: bool
) -> tuple[int, int]:
    st = os.stat(sname, dir_fd=sfd, follow_symlinks=False)
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(sname, dir_fd=sfd)
        if overwrite:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dname, dir_fd=dfd)
        os.symlink(target, dname, dir_fd=dfd)
        return 0, 1
    if stat.S_ISDIR(st.st_mode):
        try:
            os.mkdir(dname, 0o700, dir_fd=dfd)
        except FileExistsError:
            if not overwrite or not stat.S_ISDIR(os.stat(dname, dir_fd=dfd).st_mode):
                raise
        src = os.open(
            sname, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd
        )
        try:
            dst = os.open(
                dname, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd
            )
            try:
                total, files = 0, 0
                for child in sorted(os.listdir(src)):
                    b, f = _copy_entry(src, child, dst, child, overwrite, preserve)
                    total, files = total + b, files + f
            finally:
                os.close(dst)
        finally:
            os.close(src)
        os.chmod(dname, stat.S_IMODE(st.st_mode) if preserve else 0o755 & ~_umask(), dir_fd=dfd)
        if preserve:
            os.utime(dname, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dfd)
        return total, files
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "only files, directories and symlinks can be copied", sname)
    if not overwrite:
        try:
            os.stat(dname, dir_fd=dfd, follow_symlinks=False)
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), dname)
        except FileNotFoundError:
            pass
    src = os.open(sname, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=sfd)
    try:
        temp, dst = _temp_file(dfd, dname)
        try:
            copied = _copy_data(src, dst)
            os.fchmod(dst, stat.S_IMODE(st.st_mode) if preserve else 0o666 & ~_umask())
            if preserve:
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.close(dst)
            dst = -1
            if overwrite:
                os.rename(temp, dname, src_dir_fd=dfd, dst_dir_fd=dfd)
            else:
                _rename_noreplace(dfd, temp, dfd, dname)
        except BaseException:
            if dst >= 0:
                os.close(dst)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=dfd)
            raise
    finally:
        os.close(src)
    return copied, 1


def _copy_data(src: int, dst: int) -> int:
    copied = 0
    while True:
        try:
            n = os.copy_file_range(src, dst, 1 << 30)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            n = os.sendfile(dst, src, None, 1 << 30)
        if n == 0:
            return copied
        copied += n


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temp_file(dfd: int, name: str) -> tuple[str, int]:
    """A new 0600 file beside `name`, hidden and marked as hpcgate's."""
    import secrets

    stem = os.fsdecode(os.fsencode(name)[:180])
    temp = f".{stem}.hpcgate-{secrets.token_hex(6)}.part"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return temp, os.open(temp, flags, 0o600, dir_fd=dfd)


def op_copy(args: Args) -> Reply:
    src, dst, roots = _path(args, "source"), _path(args, "destination"), _roots(args)
    # Like cp, a symlink given as the source is followed: copy what it resolves to.
    fd = _target(src, roots, follow=True)
    try:
        real = _fd_path(fd)
    finally:
        os.close(fd)
    sfd, sname = _parent(real, roots)
    try:
        dfd, dname = _parent(dst, roots)
        try:
            copied, files = _copy(
                sfd,
                sname,
                dfd,
                dname,
                args,
                recursive=bool(args.get("recursive")),
                preserve=bool(args.get("preserve")),
            )
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)
    return {"bytes": copied, "files": files, "entry": _describe(dst, roots, False)}, []


def _remove_entry(fd: int, name: str, recursive: bool, path: str = "") -> None:
    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=fd)
    elif recursive:
        _rmtree(fd, name, st, path or name)
    else:
        os.rmdir(name, dir_fd=fd)


def _not_yours(exc: OSError, owner_uid: int, directory: str, target: str) -> OSError:
    """`exc` (raised on `target`) explained when the kernel refused it because
    `directory` belongs to someone else, which the removal does not change."""
    if exc.errno not in (errno.EACCES, errno.EPERM) or owner_uid == os.geteuid():
        return exc if exc.filename else OSError(exc.errno, exc.strerror, target)
    owner = _name_of("u", owner_uid) or f"uid {owner_uid}"
    what = (
        f"{directory} belongs to {owner}, not you, and was left as it is"
        if target == directory
        else f"{target} is in {directory}, which belongs to {owner}, not you; both were left "
        "as they are"
    )
    ask = f"ask {owner} to remove it or to give you write and search permission on it"
    # No filename: the message names the paths (files/errors.py shows it as it is).
    return OSError(exc.errno, f"{exc.strerror}: {what}; {ask}")


def _enter(dfd: int, name: str, st: os.stat_result, path: str) -> int:
    """A descriptor to list and empty the directory `name` in `dfd` (lstat `st`). A
    directory the caller owns but cannot read, write or search (e.g. mode 000) first gets
    u+rwx, as `chmod u+rwx` would: it is about to be removed, and only its owner's bits
    change. Never follows a symlink; never changes a directory the caller does not own."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    if st.st_uid == os.geteuid() and st.st_mode & stat.S_IRWXU != stat.S_IRWXU:
        pfd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            now = os.fstat(pfd)
            if (now.st_dev, now.st_ino, now.st_uid) != (st.st_dev, st.st_ino, st.st_uid):
                raise OSError(errno.EAGAIN, "changed while being removed; try again", path)
            # The object the descriptor holds, not a name that could be swapped meanwhile.
            os.chmod(f"/proc/self/fd/{pfd}", stat.S_IMODE(now.st_mode) | stat.S_IRWXU)
            fd = os.open(f"/proc/self/fd/{pfd}", flags & ~os.O_NOFOLLOW)
        finally:
            os.close(pfd)
        return fd
    fd = os.open(name, flags, dir_fd=dfd)
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise OSError(errno.EAGAIN, "changed while being removed; try again", path)
    return fd


def _rmtree(parent: int, name: str, st: os.stat_result, path: str) -> None:
    """Removes the directory `name` in `parent` (lstat `st`, shown as `path`) with
    everything below it, as the caller: descriptor-relative at every level (no symlink is
    ever followed, nothing can be swapped in), iterative (any depth), and going on past
    entries that cannot be removed, like `rm -rf`; then raises the first failure."""
    failures: list[OSError] = []

    def opened(dfd: int, entry: str, est: os.stat_result, where: str) -> tuple[int, list[str]]:
        fd = _enter(dfd, entry, est, where)
        try:
            return fd, os.listdir(fd)
        except OSError:
            os.close(fd)
            raise

    try:
        fd, listed = opened(parent, name, st, path)
    except OSError as exc:
        raise _not_yours(exc, st.st_uid, path, path) from None
    # Directories being emptied: (descriptor, lstat, name in its parent, path, names left).
    stack = [(fd, os.fstat(fd), name, path, listed)]
    try:
        while stack:
            dfd, dst, dname, dpath, names = stack[-1]
            if names:
                entry = names.pop()
                child = f"{dpath.rstrip('/')}/{entry}"
                try:
                    est = os.stat(entry, dir_fd=dfd, follow_symlinks=False)
                    if not stat.S_ISDIR(est.st_mode):
                        os.unlink(entry, dir_fd=dfd)
                        continue
                except FileNotFoundError:
                    continue  # removed meanwhile: that is what was asked
                except OSError as exc:
                    failures.append(_not_yours(exc, dst.st_uid, dpath, child))
                    continue
                try:
                    cfd, listed = opened(dfd, entry, est, child)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    failures.append(_not_yours(exc, est.st_uid, child, child))
                    continue
                stack.append((cfd, os.fstat(cfd), entry, child, listed))
                continue
            stack.pop()
            os.close(dfd)
            above = stack[-1][0] if stack else parent
            try:
                os.rmdir(dname, dir_fd=above)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and failures:
                    continue  # what is left inside was reported already
                above_uid = stack[-1][1].st_uid if stack else os.fstat(parent).st_uid
                above_path = stack[-1][3] if stack else os.path.dirname(dpath.rstrip("/")) or "/"
                failures.append(_not_yours(exc, above_uid, above_path, dpath))
    finally:
        for left in stack:
            os.close(left[0])

    if failures:
        raise failures[0]


def op_remove(args: Args) -> Reply:
    path, roots = _path(args), _roots(args)
    fd, name = _parent(path, roots)
    try:
        real = os.path.join(_fd_path(fd), name)
        home = os.environ.get("HOME")
        if home and real == os.path.realpath(home):
            raise OpError(errno.EBUSY, f"{path} is your home directory; it cannot be removed")
        try:
            _remove_entry(fd, name, bool(args.get("recursive")), real)
        except FileNotFoundError:
            if not args.get("allow_missing"):
                raise
    finally:
        os.close(fd)
    return {}, []


def op_chmod(args: Args) -> Reply:
    path, roots = _path(args), _roots(args)
    mode = _int(args, "mode", 0, 0o7777)
    fd = _target(path, roots, follow=True)
    try:
        os.chmod(f"/proc/self/fd/{fd}", mode)  # the object the check was made on
    finally:
        os.close(fd)
    return _describe(path, roots, follow=True), []


def op_symlink(args: Args) -> Reply:
    path, roots, target = _path(args), _roots(args), args.get("target")
    if not isinstance(target, str) or not target or "\0" in target:
        raise OpError(errno.EINVAL, "target must be a non-empty path")
    fd, name = _parent(path, roots)
    try:
        os.symlink(target, name, dir_fd=fd)
    finally:
        os.close(fd)
    return _describe(path, roots, follow=False), []


def op_open_file(args: Args) -> Reply:
    """A read-only descriptor of a regular file, symlinks followed, checked against roots."""
    path, roots = _path(args), _roots(args)
    fd = _target(path, roots, follow=True)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        # Re-opened through the checked descriptor; the kernel checks read permission.
        rfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    finally:
        os.close(fd)
    return {}, [rfd]


def op_upload_begin(args: Args) -> Reply:
    """A temporary file beside the target, for the server to fill through the descriptor."""
    path, roots = _path(args), _roots(args)
    overwrite = bool(args.get("overwrite"))
    fd, name = _parent(path, roots)
    try:
        mode = args.get("mode")
        try:
            st = os.stat(name, dir_fd=fd)
        except FileNotFoundError:
            st = None
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
            if not overwrite:
                raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), path)
            if mode is None:
                mode = stat.S_IMODE(st.st_mode)
        if mode is None:
            mode = 0o644
        if not isinstance(mode, int) or not 0 <= mode <= 0o7777:
            raise OpError(errno.EINVAL, "mode must be a permission mode")
        temp, tfd = _temp_file(fd, name)
    finally:
        os.close(fd)
    return {"temp": temp, "mode": mode}, [tfd]


def op_upload_commit(args: Args) -> Reply:
    """Renames the filled temporary file into place (atomically; no-replace unless asked)."""
    path, roots, temp = _path(args), _roots(args), args.get("temp")
    if not isinstance(temp, str) or "/" in temp or not temp.endswith(".part"):
        raise OpError(errno.EINVAL, "temp must be the name upload_begin returned")
    mode = _int(args, "mode", 0o644, 0o7777)
    fd, name = _parent(path, roots)
    try:
        try:
            os.chmod(temp, mode, dir_fd=fd, follow_symlinks=True)
            mtime_ns = args.get("mtime_ns")
            if mtime_ns is not None:
                mtime_ns = _int(args, "mtime_ns", 0)
                os.utime(temp, ns=(mtime_ns, mtime_ns), dir_fd=fd)
            if args.get("overwrite"):
                os.rename(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
            else:
                _rename_noreplace(fd, temp, fd, name)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=fd)
            raise
    finally:
        os.close(fd)
    return _describe(path, roots, follow=False), []


def op_upload_reopen(args: Args) -> Reply:
    """The temporary file of an interrupted resumable upload, opened again for the server
    to hash what it holds and write on (read-write, at the offset it chooses)."""
    path, roots, temp = _path(args), _roots(args), args.get("temp")
    if not isinstance(temp, str) or "/" in temp or not temp.endswith(".part"):
        raise OpError(errno.EINVAL, "temp must be the name upload_begin returned")
    fd, _ = _parent(path, roots)
    try:
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY
        tfd = os.open(temp, flags, dir_fd=fd)
    finally:
        os.close(fd)
    st = os.fstat(tfd)
    if not stat.S_ISREG(st.st_mode):
        os.close(tfd)
        raise OSError(errno.EINVAL, "not a regular file", temp)
    return {"size": st.st_size}, [tfd]


def op_upload_abort(args: Args) -> Reply:
    path, temp = _path(args), args.get("temp")
    if not isinstance(temp, str) or "/" in temp or not temp.endswith(".part"):
        raise OpError(errno.EINVAL, "temp must be the name upload_begin returned")
    fd, _ = _parent(path, None)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=fd)
    finally:
        os.close(fd)
    return {}, []


def _walk_item(rel: bytes, st: os.stat_result, link: str | None) -> dict[str, Any]:
    kind = "dir" if stat.S_ISDIR(st.st_mode) else "link" if link is not None else "file"
    return {
        "rel": os.fsdecode(rel),
        "kind": kind,
        "size": st.st_size if kind == "file" else 0,
        "mode": stat.S_IMODE(st.st_mode),
        "mtime_ns": st.st_mtime_ns,
        "link": link,
    }


def op_walk(args: Args) -> Reply:
    """One page of a tree below `path`: parents before children, siblings sorted by raw
    name, symlinks reported and never followed; other file types (FIFOs, sockets,
    devices) are skipped. `after` (the last `rel` of the previous page) resumes the walk:
    subtrees wholly before it are skipped without being read again."""
    path, roots = _path(args), _roots(args)
    limit = _int(args, "limit", 5000, 100_000)
    after = args.get("after") or ""
    cursor = tuple(os.fsencode(after).split(b"/")) if isinstance(after, str) and after else None
    fd = _target(path, roots, follow=True)
    try:
        top = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)
    items: list[dict[str, Any]] = []
    budget = [LIST_BUDGET]

    def visit(dfd: int, prefix: tuple[bytes, ...]) -> bool:
        for key in sorted(os.fsencode(n) for n in os.listdir(dfd)):
            here = (*prefix, key)
            if cursor is not None and here <= cursor and cursor[: len(here)] != here:
                continue  # this entry and everything below it were on earlier pages
            name = os.fsdecode(key)
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            link = os.readlink(name, dir_fd=dfd) if stat.S_ISLNK(st.st_mode) else None
            if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode) or link is not None):
                continue
            if cursor is None or here > cursor:
                if len(items) >= limit or budget[0] <= 0:
                    return False
                item = _walk_item(b"/".join(here), st, link)
                items.append(item)
                budget[0] -= len(json.dumps(item)) + 8
            if stat.S_ISDIR(st.st_mode):
                sub = os.open(
                    name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd
                )
                try:
                    if not visit(sub, here):
                        return False
                finally:
                    os.close(sub)
        return True

    try:
        complete = visit(top, ())
    except RecursionError:
        raise OpError(errno.ELOOP, f"{path} is nested too deeply to walk") from None
    finally:
        os.close(top)
    return {"items": items, "more": not complete}, []


def op_utime(args: Args) -> Reply:
    """Sets the modification time (atime untouched) of `path`, symlinks followed."""
    path, roots = _path(args), _roots(args)
    mtime_ns = _int(args, "mtime_ns", 0)
    fd = _target(path, roots, follow=True)
    try:
        st = os.fstat(fd)
        os.utime(f"/proc/self/fd/{fd}", ns=(st.st_atime_ns, mtime_ns))
    finally:
        os.close(fd)
    return {}, []


def op_syncfs(args: Args) -> Reply:
    """syncfs(2) on the filesystem holding `path`: a durability barrier for many files."""
    import ctypes

    path = _path(args)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), path)
    finally:
        os.close(fd)
    return {}, []


# -- batches of small files (transfers) ---------------------------------------------------
# One request copies, reads or writes many small files: a file costs a few system calls
# here instead of several round trips through the server. A batch stops at its first
# failure and says which file failed; the server handles that file on its own (with its
# usual retry and error message) and goes on.

BATCH_MAX_ITEMS = 1000
BATCH_MAX_BYTES = 2 * 1024 * 1024  # of content read at once: 4/3 of it in base64 < MAX_FRAME


def _batch_items(args: Args) -> list[dict[str, Any]]:
    items = args.get("items")
    if not isinstance(items, list) or len(items) > BATCH_MAX_ITEMS:
        raise OpError(errno.EINVAL, f"items must be a list of at most {BATCH_MAX_ITEMS}")
    for item in items:
        rel = item.get("rel") if isinstance(item, dict) else None
        parts = rel.split("/") if isinstance(rel, str) else [""]
        if "\0" in str(rel) or any(p in ("", ".", "..") for p in parts):
            raise OpError(errno.EINVAL, f"{rel!r} is not a relative path below the root")
    return items


class _Directories:
    """O_PATH descriptors of the directories a batch touches, opened once each."""

    def __init__(self, root: str, roots: list[str] | None) -> None:
        self.root, self.roots = root.rstrip("/"), roots
        self.fds: dict[str, int] = {}

    def of(self, rel: str) -> tuple[int, str]:
        head, _, name = rel.rpartition("/")
        fd = self.fds.get(head)
        if fd is None:
            # _parent checks the entry against the roots: every name in it is as inside.
            fd, _ = _parent(f"{self.root}/{rel}", self.roots)
            self.fds[head] = fd
        return fd, name

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)


def _read_whole(fd: int, size: int, limit: int, name: str) -> tuple[bytes, Any]:
    """The content of a regular file from its start, hashed: one read sized by `size` (its
    size as stat saw it) does for a file that did not grow; EFBIG past `limit` bytes."""
    import hashlib

    digest, parts, done = hashlib.sha256(), [], 0
    want = min(size, limit) + 1  # a short read of a regular file is its end
    while data := os.pread(fd, want, done):
        done += len(data)
        if done > limit:
            raise OSError(
                errno.EFBIG, f"larger than a batch holds ({limit} bytes): send it alone", name
            )
        digest.update(data)
        parts.append(data)
        if len(data) < want:
            break
        want = min(1 << 20, limit + 1 - done)
    return b"".join(parts) if len(parts) != 1 else parts[0], digest


def _read_regular(dfd: int, name: str, limit: int = BATCH_MAX_BYTES) -> tuple[bytes, Any]:
    """The whole content of a regular file (never a symlink) and its SHA-256 object."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dfd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", name)
        return _read_whole(fd, st.st_size, limit, name)
    finally:
        os.close(fd)


class _TempNames:
    """Temporary names for a batch's files, `.NAME.hpcgate-HEX.part` as _temp_file makes
    them: 8 random hex digits per batch and a counter, not a getrandom per file."""

    def __init__(self) -> None:
        self.prefix, self.count = os.urandom(4).hex(), 0

    def create(self, dfd: int, name: str) -> tuple[str, int]:
        stem = os.fsdecode(os.fsencode(name)[:180])
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        while True:
            self.count += 1
            if self.count > 0xFFFF:
                self.prefix, self.count = os.urandom(4).hex(), 1
            temp = f".{stem}.hpcgate-{self.prefix}{self.count:04x}.part"
            try:
                return temp, os.open(temp, flags, 0o600, dir_fd=dfd)
            except FileExistsError:
                continue


def _write_verified(
    dfd: int, name: str, data: bytes, expected: str, item: Args, temps: _TempNames
) -> None:
    """Writes `data` under a temporary name, re-reads and hashes what the file holds when
    `expected` is given, and renames it over `name` only if it matches."""
    mode = item.get("mode")
    if mode is None:
        try:
            mode = stat.S_IMODE(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            mode = 0o644
    temp, fd = temps.create(dfd, name)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, int(mode) & 0o7777)
        mtime_ns = item.get("mtime_ns")
        if mtime_ns is not None:
            os.utime(fd, ns=(int(mtime_ns), int(mtime_ns)))
        if expected:
            _, digest = _read_whole(fd, len(data), BATCH_MAX_BYTES, name)
            if digest.hexdigest() != expected:
                raise OSError(errno.EBADMSG, f"{name}: the written copy's SHA-256 differs")
        os.close(fd)
        fd = -1
        os.rename(temp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=dfd)
        raise


def _failed(rel: str, exc: OSError | OpError) -> dict[str, Any]:
    number = exc.code if isinstance(exc, OpError) else exc.errno
    return {"rel": rel, "errno": number or errno.EIO, "message": str(exc)}


def op_copy_files(args: Args) -> Reply:
    """Copies regular files `items` ({rel, mode?, mtime_ns?}) from below `source` to below
    `destination` (their directories must exist), each hashed as it is read, written under
    a temporary name, verified (re-read and hashed) when `verify`, then renamed into place.
    Answers {done: [{rel, size, sha256}], failed?: {rel, errno, message}}."""
    roots, verify = _roots(args), bool(args.get("verify"))
    items = _batch_items(args)
    sources = _Directories(_path(args, "source"), roots)
    destinations = _Directories(_path(args, "destination"), roots)
    done: list[dict[str, Any]] = []
    temps = _TempNames()
    try:
        for item in items:
            rel = item["rel"]
            try:
                data, digest = _read_regular(*sources.of(rel))
                sha256 = digest.hexdigest()
                where = destinations.of(rel)
                _write_verified(*where, data, sha256 if verify else "", item, temps)
            except (OSError, OpError) as exc:
                return {"done": done, "failed": _failed(rel, exc)}, []
            done.append({"rel": rel, "size": len(data), "sha256": sha256})
    finally:
        sources.close()
        destinations.close()
    return {"done": done}, []


def op_read_files(args: Args) -> Reply:
    """The content (base64) and SHA-256 of regular files `items` ({rel}) below `path`, up to
    BATCH_MAX_BYTES in all: {files: [{rel, data, sha256}], failed?: {...}}; a file that
    would pass the budget ends the answer early (the caller asks again for the rest)."""
    import base64

    items = _batch_items(args)
    directories = _Directories(_path(args), _roots(args))
    files: list[dict[str, Any]] = []
    budget = BATCH_MAX_BYTES
    try:
        for item in items:
            rel = item["rel"]
            try:
                data, digest = _read_regular(*directories.of(rel))
            except (OSError, OpError) as exc:
                return {"files": files, "failed": _failed(rel, exc)}, []
            budget -= len(data)
            if budget < 0 and files:
                break
            encoded = base64.b64encode(data).decode()
            files.append({"rel": rel, "data": encoded, "sha256": digest.hexdigest()})
    finally:
        directories.close()
    return {"files": files}, []


def op_write_files(args: Args) -> Reply:
    """Writes files `items` ({rel, data (base64), sha256, mode?, mtime_ns?}) below `path`:
    each is checked against its sha256 before it is written, and re-read and checked again
    when `verify`, then renamed into place. Answers {done: [{rel, size, sha256}], failed?}."""
    import base64
    import hashlib

    verify = bool(args.get("verify"))
    items = _batch_items(args)
    directories = _Directories(_path(args), _roots(args))
    done: list[dict[str, Any]] = []
    temps = _TempNames()
    try:
        for item in items:
            rel, expected = item["rel"], item.get("sha256")
            try:
                data = base64.b64decode(str(item.get("data", "")), validate=True)
                sha256 = hashlib.sha256(data).hexdigest()
                if sha256 != expected:
                    raise OSError(
                        errno.EBADMSG, f"{rel}: the content's SHA-256 differs from {expected}"
                    )
                where = directories.of(rel)
                _write_verified(*where, data, sha256 if verify else "", item, temps)
            except (OSError, OpError) as exc:
                return {"done": done, "failed": _failed(rel, exc)}, []
            except ValueError:
                return {
                    "done": done,
                    "failed": _failed(rel, OSError(errno.EINVAL, "bad base64")),
                }, []
            done.append({"rel": rel, "size": len(data), "sha256": sha256})
    finally:
        directories.close()
    return {"done": done}, []


# The operation table: name -> handler(args) -> (result, descriptors to pass back).
OPS: dict[str, Callable[[Args], Reply]] = {
    "whoami": op_whoami,
    "ping": op_ping,
    "open": op_open,
    "stat": op_stat,
    "cwd": op_cwd,
    "killpg": op_killpg,
    "run": op_run,
    "run_kill": op_run_kill,
    "run_release": op_run_release,
    "spawn": op_spawn,
    "entry": op_entry,
    "list": op_list,
    "mkdir": op_mkdir,
    "rename": op_rename,
    "copy": op_copy,
    "remove": op_remove,
    "chmod": op_chmod,
    "symlink": op_symlink,
    "open_file": op_open_file,
    "upload_begin": op_upload_begin,
    "upload_commit": op_upload_commit,
    "upload_abort": op_upload_abort,
    "upload_reopen": op_upload_reopen,
    "walk": op_walk,
    "utime": op_utime,
    "syncfs": op_syncfs,
    "copy_files": op_copy_files,
    "read_files": op_read_files,
    "write_files": op_write_files,
}


# Served on the reading thread: they only signal a run that holds a pool thread.
INLINE_OPS = frozenset({"run_kill", "run_release"})


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return HEADER.pack(len(body)) + body


class Worker:
    """Reads requests on the main thread, runs them in a pool, replies under a lock."""

    def __init__(self, sock: socket.socket, threads: int) -> None:
        self.sock = sock
        self.send_lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="op")
        global _reply
        _reply = self.send

    def send(self, message: dict[str, Any], fds: list[int]) -> None:
        frame = encode(message)
        try:
            with self.send_lock:
                sent = socket.send_fds(self.sock, [frame], fds) if fds else 0
                self.sock.sendall(frame[sent:])
        except OSError:
            kill_children()
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
                request = _parsed(body)
                if request.get("op") in INLINE_OPS:  # instant; must not wait for a thread
                    self.handle(body)
                    continue
                if request.get("op") == "wait":  # answered when the command exits
                    args = request.get("args")
                    wait_child(request.get("id"), args if isinstance(args, dict) else {})
                    continue
                if request.get("op") == "run":
                    expect_run(request)
                self.pool.submit(self.handle, body)


def _parsed(body: bytes) -> dict[str, Any]:
    try:
        request = json.loads(body)
    except ValueError:
        return {}
    return request if isinstance(request, dict) else {}


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
    kill_children()
    os._exit(0)  # without waiting for a thread stuck on a dead mount


if __name__ == "__main__":
    sys.exit(main(sys.argv))
