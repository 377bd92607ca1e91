"""Privilege separation against real accounts: alice (uid 1001) and bob (uid 1002).

Files are created as root in setup with the owners and modes a real site would have; every
access then goes through a worker or command that runs as the user, so each PermissionError
below is the kernel's decision. Needs root (multi-user mode); skipped locally without it,
a failure under CI=true.
"""

from __future__ import annotations

import asyncio
import errno
import grp
import json
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT, require
from hpcgate.server.privsep import (
    CommandTimeout,
    CommandWithheld,
    ForbiddenUser,
    PrivilegeSeparation,
    UnknownUser,
    UserIdentity,
    WorkerTimeout,
    WorkerUnavailable,
    lookup,
)
from hpcgate.server.privsep.launcher import default_worker_python

SECRET = "hpcgate-test-secret"
MANY = 200


def _account(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


@dataclass(frozen=True)
class Tree:
    alice_secret: Path
    bob_secret: Path
    link: Path  # alice's symlink to her own secret
    many: Path  # alice's directory of MANY small files
    dirlink: Path  # alice's symlink to that directory


def _create(path: Path, text: str, owner: pwd.struct_passwd, mode: int) -> None:
    path.write_text(text)
    os.chown(path, owner.pw_uid, owner.pw_gid)
    os.chmod(path, mode)


@pytest.fixture(scope="module")
def tree() -> Iterator[Tree]:
    require(os.geteuid() == 0, "privilege separation tests need root (multi-user mode)")
    alice, bob = _account("alice"), _account("bob")
    require(alice is not None and bob is not None, "test users alice and bob are needed")
    assert alice is not None and bob is not None
    home_a, home_b = Path(alice.pw_dir), Path(bob.pw_dir)
    t = Tree(
        alice_secret=home_a / SECRET,
        bob_secret=home_b / SECRET,
        link=home_a / "hpcgate-test-link",
        many=home_a / "hpcgate-test-many",
        dirlink=home_a / "hpcgate-test-dirlink",
    )
    _cleanup(t)
    _create(t.alice_secret, "alice's secret\n", alice, 0o600)
    _create(t.bob_secret, "bob's secret\n", bob, 0o600)
    t.link.symlink_to(SECRET)
    os.lchown(t.link, alice.pw_uid, alice.pw_gid)
    t.many.mkdir(mode=0o700)
    os.chown(t.many, alice.pw_uid, alice.pw_gid)
    for i in range(MANY):
        _create(t.many / f"f{i}", f"file {i}\n", alice, 0o600)
    t.dirlink.symlink_to(t.many.name)
    os.lchown(t.dirlink, alice.pw_uid, alice.pw_gid)
    yield t
    _cleanup(t)


def _cleanup(t: Tree) -> None:
    for path in (t.alice_secret, t.bob_secret, t.link, t.dirlink):
        path.unlink(missing_ok=True)
    shutil.rmtree(t.many, ignore_errors=True)


@pytest.fixture
async def ps(tree: Tree) -> AsyncIterator[PrivilegeSeparation]:
    p = PrivilegeSeparation()
    yield p
    await p.close()


@pytest.fixture
async def alice(ps: PrivilegeSeparation) -> UserIdentity:
    return await ps.identity("alice")


@pytest.fixture
async def bob(ps: PrivilegeSeparation) -> UserIdentity:
    return await ps.identity("bob")


def _read_fd(fd: int) -> str:
    with os.fdopen(fd, "r") as f:
        return f.read()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_root_server_is_multi_user(ps: PrivilegeSeparation) -> None:
    assert ps.mode == "multi-user"
    assert ps.served_user is None


async def test_alice_reads_her_file_and_not_bobs(
    ps: PrivilegeSeparation, alice: UserIdentity, tree: Tree
) -> None:
    worker = await ps.worker(alice)
    fd = await worker.open(str(tree.alice_secret))
    assert _read_fd(fd) == "alice's secret\n"
    with pytest.raises(PermissionError) as caught:
        await worker.open(str(tree.bob_secret))
    assert caught.value.errno == errno.EACCES
    assert caught.value.filename == str(tree.bob_secret)
    with pytest.raises(PermissionError):
        await worker.stat(str(tree.bob_secret))


async def test_bob_reads_his_file_and_not_alices(
    ps: PrivilegeSeparation, bob: UserIdentity, tree: Tree
) -> None:
    worker = await ps.worker(bob)
    assert _read_fd(await worker.open(str(tree.bob_secret))) == "bob's secret\n"
    with pytest.raises(PermissionError):
        await worker.open(str(tree.alice_secret))
    creds = await worker.whoami()
    assert (creds.uid, creds.euid, creds.suid) == (1002, 1002, 1002)


async def test_whoami_has_the_users_credentials(
    ps: PrivilegeSeparation, alice: UserIdentity
) -> None:
    creds = await (await ps.worker(alice)).whoami()
    shared = grp.getgrnam("hpcgate-test").gr_gid
    assert (creds.uid, creds.euid, creds.suid) == (alice.uid, alice.uid, alice.uid)
    assert (creds.gid, creds.egid, creds.sgid) == (alice.gid, alice.gid, alice.gid)
    assert creds.euid != 0
    assert shared in creds.groups and alice.gid in creds.groups and 0 not in creds.groups
    assert set(creds.groups) == set(alice.groups)
    assert creds.pid != os.getpid()


async def test_a_second_lane_is_another_process_of_the_same_user(
    ps: PrivilegeSeparation, alice: UserIdentity
) -> None:
    """Lanes run CPU-bound batches on two cores; each is the user, nobody more."""
    first, second = await ps.worker(alice), await ps.worker(alice, lane=1)
    one, two = await first.whoami(), await second.whoami()
    assert one.pid != two.pid and first is not second
    assert (two.uid, two.euid, two.gid, set(two.groups)) == (
        one.uid, one.euid, one.gid, set(one.groups),
    )  # fmt: skip
    assert await ps.worker(alice, lane=1) is second
    assert ps.workers_alive == 2
    with pytest.raises(ValueError, match="lane"):
        await ps.worker(alice, lane=99)


async def test_missing_file_and_relative_path(
    ps: PrivilegeSeparation, alice: UserIdentity, tree: Tree
) -> None:
    worker = await ps.worker(alice)
    with pytest.raises(FileNotFoundError):
        await worker.open(str(tree.many / "absent"))
    with pytest.raises(OSError) as caught:
        await worker.open("relative/path")
    assert caught.value.errno == errno.EINVAL
    with pytest.raises(OSError) as caught:
        await worker.open(str(tree.alice_secret), ["truncate"])
    assert caught.value.errno == errno.EINVAL


async def test_symlinks_are_not_followed(
    ps: PrivilegeSeparation, alice: UserIdentity, tree: Tree
) -> None:
    worker = await ps.worker(alice)
    with pytest.raises(OSError) as caught:
        await worker.open(str(tree.link))
    assert caught.value.errno == errno.ELOOP
    assert (await worker.stat(str(tree.link))).is_symlink
    assert (await worker.stat(str(tree.link), follow_symlinks=True)).is_file
    # A symlinked directory in the middle: allowed by default, refused with no_symlinks.
    through = str(tree.dirlink / "f1")
    assert _read_fd(await worker.open(through)) == "file 1\n"
    with pytest.raises(OSError) as caught:
        await worker.open(through, no_symlinks=True)
    assert caught.value.errno == errno.ELOOP
    assert _read_fd(await worker.open(str(tree.many / "f1"), no_symlinks=True)) == "file 1\n"


async def test_created_files_belong_to_the_user(
    ps: PrivilegeSeparation, alice: UserIdentity, tree: Tree
) -> None:
    worker = await ps.worker(alice)
    target = str(tree.many / "created")
    fd = await worker.open(target, ["write", "create", "exclusive"], 0o640)
    try:
        os.write(fd, b"written by the server on alice's descriptor\n")
    finally:
        os.close(fd)
    st = os.stat(target)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (alice.uid, alice.gid, 0o640)
    with pytest.raises(FileExistsError):
        await worker.open(target, ["write", "create", "exclusive"])
    fd = await worker.open(str(tree.many), ["directory"])
    try:
        assert "created" in os.listdir(fd)
    finally:
        os.close(fd)
    os.unlink(target)


async def test_commands_run_as_the_user(
    ps: PrivilegeSeparation, alice: UserIdentity, tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPCGATE_SERVER_ONLY", "leak")
    out = await ps.run(alice, ["id", "-u"])
    assert (out.returncode, out.stdout) == (0, b"1001\n")
    # The command's own children are alice too: bob's file stays closed to them.
    out = await ps.run(alice, ["sh", "-c", f"cat {tree.bob_secret}"])
    assert out.returncode != 0 and b"Permission denied" in out.stderr
    out = await ps.run(alice, ["sh", "-c", f"cat {tree.alice_secret}; pwd; env"])
    lines = out.stdout.decode().splitlines()
    assert lines[:2] == ["alice's secret", alice.home]
    assert "USER=alice" in lines and f"HOME={alice.home}" in lines
    assert not any("HPCGATE_SERVER_ONLY" in line for line in lines)
    out = await ps.run(alice, ["env"], env={"EXTRA": "1"})
    assert b"EXTRA=1\n" in out.stdout


async def test_command_cwd_is_resolved_as_the_user(
    ps: PrivilegeSeparation, alice: UserIdentity, bob: UserIdentity
) -> None:
    assert (await ps.run(alice, ["pwd"], cwd="/tmp")).stdout == b"/tmp\n"
    # Python would chdir as root before dropping privileges; the broker must not.
    with pytest.raises(PermissionError):
        await ps.spawn(alice, ["pwd"], cwd=bob.home)
    with pytest.raises(FileNotFoundError):
        await ps.spawn(alice, ["pwd"], cwd="/nonexistent-hpcgate-dir")
    with pytest.raises(FileNotFoundError):
        await ps.spawn(alice, ["hpcgate-no-such-command"])
    # `run` reports a missing program as exit 127, as a shell would.
    missing = await ps.run(alice, ["hpcgate-no-such-command"])
    assert missing.returncode == 127 and b"hpcgate-no-such-command" in missing.stderr


async def test_timeout_kills_the_process_group(
    ps: PrivilegeSeparation, alice: UserIdentity
) -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        await ps.run(alice, ["sh", "-c", "sleep 30 & sleep 30"], time_limit=0.5)
    assert time.monotonic() - started < 10
    proc = await ps.spawn(alice, ["sh", "-c", "sleep 30 & sleep 30"])
    await asyncio.sleep(0.2)
    await ps.kill_group(alice, proc)
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while True:  # the background sleep dies with the group
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "the command's process group survived"
        await asyncio.sleep(0.05)


async def _gone(pid_file: Path) -> None:
    """Waits until the process group whose leader wrote `pid_file` has no process left."""
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "the command never started"
        await asyncio.sleep(0.02)
    pgid = int(pid_file.read_text())
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, "the command's process group survived"
        await asyncio.sleep(0.05)


def _scratch(name: str) -> Path:
    """A path alice's commands can write (/tmp is sticky and world-writable)."""
    path = Path("/tmp") / f"hpcgate-{name}-{os.getpid()}-{time.monotonic_ns()}"
    path.unlink(missing_ok=True)
    return path


async def test_run_kills_the_whole_group_on_timeout_and_on_cancel(
    ps: PrivilegeSeparation, alice: UserIdentity
) -> None:
    pid_file = _scratch("timeout")
    with pytest.raises(CommandTimeout):
        await ps.run(alice, ["sh", "-c", f"echo $$ > {pid_file}; sleep 30 & sleep 30"],
                     time_limit=0.5)  # fmt: skip
    await _gone(pid_file)
    # The caller goes away (a cancelled RPC): the command does not outlive it.
    pid_file = _scratch("cancel")
    running = asyncio.create_task(
        ps.run(alice, ["sh", "-c", f"echo $$ > {pid_file}; sleep 30 & sleep 30"])
    )
    while not pid_file.exists():
        await asyncio.sleep(0.02)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await _gone(pid_file)


async def test_a_gated_command_is_fed_only_when_let_go(
    ps: PrivilegeSeparation, alice: UserIdentity
) -> None:
    async def answer(go: bool, after: float) -> bool:
        await asyncio.sleep(after)
        return go

    for after in (0.0, 0.2):  # decided before and after the command is up
        out = await ps.run(alice, ["cat"], input=b"the script", gate=answer(True, after))
        assert (out.returncode, out.stdout) == (0, b"the script")
    # Refused: the command is killed before it reads a byte, so it can do nothing.
    marker = _scratch("withheld")
    for after in (0.0, 0.2):
        with pytest.raises(CommandWithheld):
            await ps.run(alice, ["sh", "-c", f"read line; touch {marker}"], input=b"go\n",
                         gate=answer(False, after))  # fmt: skip
    await asyncio.sleep(0.3)
    assert not marker.exists()


async def test_a_gated_command_reads_nothing_if_the_server_goes_away(tree: Tree) -> None:
    """The worker exits with its server; the command then sees an empty stdin, so what it
    would have done with its input (sbatch: submit the script) cannot happen."""
    ps = PrivilegeSeparation()
    alice = await ps.identity("alice")
    got = _scratch("orphan")
    never: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    running = asyncio.create_task(
        ps.run(
            alice,
            ["sh", "-c", f"cat > {got}.part; mv {got}.part {got}"],
            input=b"the script",
            gate=never,
        )
    )
    await asyncio.sleep(0.5)  # the command is up, waiting on its stdin
    await ps.close()
    with pytest.raises((WorkerUnavailable, asyncio.CancelledError)):
        await running
    deadline = time.monotonic() + 10
    while not got.exists():
        assert time.monotonic() < deadline, "the command did not see end of input"
        await asyncio.sleep(0.05)
    assert got.read_bytes() == b""
    got.unlink()


async def test_identities_are_remembered_for_a_while(tree: Tree) -> None:
    ps = PrivilegeSeparation(identity_ttl=0.3)
    try:
        first = await ps.identity("alice")
        assert await ps.identity("alice") is first  # no second NSS lookup
        await asyncio.sleep(0.4)
        again = await ps.identity("alice")
        assert again == first and again is not first  # looked up afresh
    finally:
        await ps.close()


async def test_unknown_user() -> None:
    with pytest.raises(UnknownUser):
        await lookup("hpcgate-no-such-user")


async def test_root_and_system_accounts_are_refused(ps: PrivilegeSeparation) -> None:
    with pytest.raises(ForbiddenUser):
        await lookup("root")
    with pytest.raises(ForbiddenUser):
        await ps.identity("root")
    with pytest.raises(UnknownUser):
        await ps.identity("hpcgate-no-such-user")
    forged = UserIdentity("root", 0, 0, (0,), "/root", "/bin/sh")
    with pytest.raises(ForbiddenUser):
        await ps.worker(forged)
    with pytest.raises(ForbiddenUser):
        await ps.spawn(forged, ["id"])
    with pytest.raises(ForbiddenUser):
        await ps.identity("daemon")  # uid < 1000
    if _account("slurm") is not None:
        with pytest.raises(ForbiddenUser):
            await ps.identity("slurm")  # Slurm's own account: denied by default


async def test_crashed_worker_is_restarted(ps: PrivilegeSeparation, alice: UserIdentity) -> None:
    worker = await ps.worker(alice)
    first = worker.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    creds = await worker.whoami()  # no waiting: the in-flight retry covers the race
    assert creds.pid != first and worker.pid == creds.pid
    assert worker.starts == 2
    assert await ps.worker(alice) is worker


async def test_loop_runs_while_the_worker_is_busy(
    ps: PrivilegeSeparation, alice: UserIdentity
) -> None:
    worker = await ps.worker(alice)
    busy = asyncio.create_task(worker.ping(delay=1.0))
    ticks = 0
    started = time.monotonic()
    while time.monotonic() - started < 0.5:
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks > 20
    assert (await worker.whoami()).uid == alice.uid  # answered while the ping still sleeps
    assert not busy.done()
    await busy


async def test_concurrent_opens_pass_the_right_descriptors(
    ps: PrivilegeSeparation, alice: UserIdentity, tree: Tree
) -> None:
    worker = await ps.worker(alice)
    before = _open_fds()
    fds = await asyncio.gather(*(worker.open(str(tree.many / f"f{i}")) for i in range(MANY)))
    assert len(set(fds)) == MANY
    contents = [_read_fd(fd) for fd in fds]
    assert contents == [f"file {i}\n" for i in range(MANY)]
    # Refusals interleaved with successes keep the pairing right.
    paths = [str(tree.bob_secret if i % 2 else tree.many / f"f{i}") for i in range(40)]
    results = await asyncio.gather(*(worker.open(p) for p in paths), return_exceptions=True)
    for i, result in enumerate(results):
        if i % 2:
            assert isinstance(result, PermissionError)
        else:
            assert isinstance(result, int) and _read_fd(result) == f"file {i}\n"
    assert _open_fds() <= before  # nothing leaked (other tests may close fds meanwhile)


async def test_request_timeout(tree: Tree) -> None:
    ps = PrivilegeSeparation(request_timeout=0.3)
    try:
        worker = await ps.worker(await ps.identity("alice"))
        with pytest.raises(WorkerTimeout):
            await worker.ping(delay=2.0)
        assert (await worker.whoami()).uid == 1001
    finally:
        await ps.close()


async def test_idle_worker_is_stopped_and_comes_back(tree: Tree) -> None:
    ps = PrivilegeSeparation(idle_timeout=0.2)
    try:
        worker = await ps.worker(await ps.identity("alice"))
        first = worker.pid
        assert first is not None
        deadline = time.monotonic() + 5
        while worker.pid is not None:
            assert time.monotonic() < deadline, "the idle worker was not stopped"
            await asyncio.sleep(0.05)
        # pid is None from the moment the worker is being stopped; it exits (and is reaped)
        # just after.
        while True:
            try:
                os.kill(first, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, "the idle worker did not exit"
            await asyncio.sleep(0.05)
        assert (await worker.whoami()).pid != first
    finally:
        await ps.close()


async def test_close_stops_workers(tree: Tree) -> None:
    ps = PrivilegeSeparation()
    alice = await ps.identity("alice")
    pid = (await ps.worker(alice)).pid
    assert pid is not None
    await ps.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(WorkerUnavailable):
        await ps.worker(alice)


async def test_worker_that_cannot_start(tree: Tree) -> None:
    for python in ("/nonexistent/python3", "/bin/false"):
        ps = PrivilegeSeparation(worker_python=python, start_timeout=5)
        try:
            with pytest.raises(WorkerUnavailable):
                await ps.worker(await ps.identity("alice"))
        finally:
            await ps.close()


# Runs as alice: a server started by an ordinary user is in single-user mode.
_SINGLE_USER = """
import asyncio, json, sys
from hpcgate.server.privsep import ForbiddenUser, PrivilegeSeparation

async def main():
    ps = PrivilegeSeparation()
    out = {"mode": ps.mode, "served": ps.served_user}
    try:
        await ps.identity("bob")
        out["bob"] = "allowed"
    except ForbiddenUser as exc:
        out["bob"] = "forbidden"
    me = await ps.identity("alice")
    worker = await ps.worker(me)
    out["uid"] = (await worker.whoami()).uid
    with open(await worker.open(sys.argv[1])) as f:
        out["own"] = f.read()
    try:
        await worker.open(sys.argv[2])
        out["other"] = "read"
    except PermissionError:
        out["other"] = "EACCES"
    out["id"] = (await ps.run(me, ["id", "-u"])).stdout.decode().strip()
    await ps.close()
    print(json.dumps(out))

asyncio.run(main())
"""


def test_single_user_mode_serves_only_its_user(tree: Tree) -> None:
    alice = _account("alice")
    assert alice is not None
    result = subprocess.run(
        [default_worker_python(), "-c", _SINGLE_USER, str(tree.alice_secret), str(tree.bob_secret)],
        user=alice.pw_uid,
        group=alice.pw_gid,
        extra_groups=os.getgrouplist("alice", alice.pw_gid),
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "server"), "HOME": alice.pw_dir},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "mode": "single-user",
        "served": "alice",
        "bob": "forbidden",
        "uid": 1001,
        "own": "alice's secret\n",
        "other": "EACCES",
        "id": "1001",
    }
