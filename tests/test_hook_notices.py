"""Slurm's hook and the gateway's listener without Slurm: the notice format, the hook's
promise never to fail or block, delivery over a real socket, and the hub's coalescing.

The hub here reads from a recording stand-in for the scheduler port (its answers are the
records a test sets); tests/test_slurm_hooks.py runs the same path on the real Slurm.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from hpcgate.server.config import ConfigError, SystemConfig, WatchConfig, parse
from hpcgate.server.events.hook_listener import HookListener
from hpcgate.server.events.hub import JobHub
from hpcgate.server.slurm import hook
from hpcgate.server.slurm.adapter import JobRecord
from hpcgate.server.slurm.hook import Notice, encode_notice, notice_from_environment, parse_notice

HOOK_SCRIPT = Path(hook.__file__)


def test_a_prolog_is_a_start_and_jobcomp_an_end() -> None:
    prolog = notice_from_environment(
        {"SLURM_JOB_ID": "42", "SLURM_SCRIPT_CONTEXT": "prolog_slurmctld",
         "SLURM_CLUSTER_NAME": "hpcgate"}
    )  # fmt: skip
    assert prolog is not None and (prolog.event, prolog.job_id, prolog.cluster) == (
        "started", "42", "hpcgate",
    )  # fmt: skip
    epilog = notice_from_environment(
        {"SLURM_JOB_ID": "42", "SLURM_SCRIPT_CONTEXT": "epilog_slurmctld"}
    )
    assert epilog is not None and epilog.event == "ended"
    jobcomp = notice_from_environment({"JOBID": "43", "CLUSTER": "c1", "JOBSTATE": "CANCELLED"})
    assert jobcomp is not None and (jobcomp.event, jobcomp.job_id, jobcomp.cluster) == (
        "ended", "43", "c1",
    )  # fmt: skip
    assert notice_from_environment({"PATH": "/bin"}) is None
    assert abs(jobcomp.time - time.time()) < 5


def test_a_notice_survives_the_wire_and_garbage_does_not_parse() -> None:
    notice = Notice("ended", "123", "hpcgate", "local", 1.7e9)
    assert parse_notice(encode_notice(notice)) == notice
    good = json.loads(encode_notice(notice))
    bad = [
        b"", b"\xff\xfe", b"[]", b"null", b"x" * 600,
        *(json.dumps({**good, **change}).encode() for change in (
            {"v": 2}, {"event": "held"}, {"job": "12;rm -rf /"}, {"job": 123},
            {"job": "1" * 11}, {"cluster": "a b"}, {"system": "../x"}, {"time": "now"},
            {"time": True}, {"time": None},
        )),
        json.dumps(good).replace("1700000000.0", "NaN").encode(),
    ]  # fmt: skip
    for data in bad:
        assert parse_notice(data) is None, data


def test_the_hook_exits_0_at_once_with_no_gateway_and_with_a_dead_one(tmp_path: Path) -> None:
    """A hook that failed would make Slurm hold the job (PrologSlurmctld) or log errors."""
    dead = tmp_path / "dead.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(dead))
    sock.close()  # a gateway killed with -9: its socket file stays, nobody listens
    for directory in (tmp_path / "missing", tmp_path):
        env = {"JOBID": "7", "HPCGATE_HOOK_DIR": str(directory), "PATH": "/usr/bin:/bin"}
        started = time.monotonic()
        done = subprocess.run([str(HOOK_SCRIPT)], env=env, capture_output=True, timeout=10)
        assert done.returncode == 0 and done.stderr == b""
        assert time.monotonic() - started < 2
    # Garbage environment: still 0.
    done = subprocess.run([str(HOOK_SCRIPT)], env={"JOBID": "x" * 5000}, timeout=10)
    assert done.returncode == 0


def test_the_hook_never_blocks_on_a_gateway_that_does_not_read(tmp_path: Path) -> None:
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.bind(str(tmp_path / "stuck.sock"))
    try:
        notice = Notice("ended", "1", "", "", time.time())
        started = time.monotonic()
        delivered = sum(hook.send(notice, str(tmp_path)) for _ in range(2000))
        assert time.monotonic() - started < 5
        assert 0 < delivered < 2000  # the queue filled; the rest were dropped, not waited for
    finally:
        stuck.close()


def test_the_hook_socket_setting_is_checked() -> None:
    assert parse({"watch": {"hook_socket": ""}}).watch.hook_socket is None
    path = parse({"watch": {"hook_socket": "/run/x/gw1.sock"}}).watch.hook_socket
    assert path == Path("/run/x/gw1.sock")
    for bad in ("relative.sock", "/run/x/gw1"):
        with pytest.raises(ConfigError, match="hook_socket"):
            parse({"watch": {"hook_socket": bad}})


class _Scheduler:
    """The scheduler port's queue_jobs, answering from `jobs`, counting calls."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobRecord] = {}
        self.calls: list[tuple[str, ...]] = []
        self.delay = 0.0

    async def queue_jobs(
        self, job_ids: Sequence[str] = (), users: Sequence[str] = ()
    ) -> list[JobRecord]:
        self.calls.append(tuple(job_ids))
        snapshot = dict(self.jobs)
        await asyncio.sleep(self.delay)
        return [j for jid, j in snapshot.items() if not job_ids or jid in job_ids]

    async def accounting_jobs(self, *args: object, **kwargs: object) -> list[JobRecord]:
        return []


def _job(job_id: str, state: str) -> JobRecord:
    return JobRecord(job_id=job_id, job_name="j", user="alice", account="alpha",
                     partition="debug", state=state)  # fmt: skip


def _hub(scheduler: _Scheduler, **settings: float) -> JobHub:
    config = WatchConfig(backfill=0, poll_floor=30, poll_ceiling=30, **settings)  # type: ignore[arg-type]
    return JobHub("local", scheduler, config)  # type: ignore[arg-type]


async def _started(hub: JobHub) -> asyncio.Task[None]:
    task = asyncio.create_task(hub.run())
    await asyncio.wait_for(hub.wait_first_poll(), 5)
    return task


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_flood_of_notices_costs_a_bounded_number_of_reads() -> None:
    scheduler = _Scheduler()
    scheduler.jobs = {str(i): _job(str(i), "RUNNING") for i in range(1000, 1500)}
    hub = _hub(scheduler, hook_min_interval=0.05)
    task = await _started(hub)
    with hub.subscribe(lambda job: True) as subscription:
        scheduler.calls.clear()
        for jid in list(scheduler.jobs):
            scheduler.jobs[jid] = _job(jid, "COMPLETED")
        started = time.monotonic()
        for i, jid in enumerate(scheduler.jobs):  # 500 ends spread over one second
            assert hub.notified(jid, time.time())
            if i % 50 == 49:
                await asyncio.sleep(0.1)
        ended = set()
        while len(ended) < 500:
            event = await subscription.next(5)
            assert event is not None
            ended.add(event.job.job_id)  # type: ignore[union-attr]
        elapsed = time.monotonic() - started
    await _stop(task)
    # One read per 50 ms at most, each for every job named meanwhile.
    assert len(scheduler.calls) <= elapsed / 0.05 + 2, (len(scheduler.calls), elapsed)
    assert sum(len(c) for c in scheduler.calls) == 500


async def test_a_job_caught_completing_is_read_again_until_it_settles() -> None:
    scheduler = _Scheduler()
    scheduler.jobs = {"7": _job("7", "RUNNING")}
    hub = _hub(scheduler, hook_min_interval=0.0)
    task = await _started(hub)
    scheduler.jobs["7"] = _job("7", "COMPLETING")
    told = time.time()
    hub.notified("7", told)
    await asyncio.sleep(0.05)
    assert hub.get("7").state == "COMPLETING"  # type: ignore[union-attr]
    scheduler.jobs["7"] = _job("7", "COMPLETED")
    for _ in range(100):
        if hub.get("7").state == "COMPLETED":  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.02)
    await _stop(task)
    assert hub.get("7").state == "COMPLETED"  # type: ignore[union-attr]
    # The events carry the hook's call time: when Slurm said the job ended.
    last = hub.history[-1]
    assert last.job.state == "COMPLETED" and abs(last.time.timestamp() - told) < 1e-3


async def test_a_slow_poll_begun_earlier_never_takes_back_what_a_hook_read_saw() -> None:
    scheduler = _Scheduler()
    scheduler.jobs = {"9": _job("9", "RUNNING")}
    hub = _hub(scheduler, hook_min_interval=0.0)
    task = await _started(hub)
    scheduler.delay = 0.3
    poll = asyncio.create_task(hub.poll_queue())  # reads RUNNING, answers in 0.3 s
    await asyncio.sleep(0.05)
    scheduler.jobs["9"] = _job("9", "COMPLETED")
    scheduler.delay = 0.0
    hub.notified("9", time.time())
    for _ in range(50):
        if hub.get("9").state == "COMPLETED":  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.01)
    await poll
    await _stop(task)
    assert hub.get("9").state == "COMPLETED"  # type: ignore[union-attr]
    assert [e.job.state for e in hub.history].count("RUNNING") == 1  # never back to RUNNING


async def test_notices_reach_the_hub_of_their_system_over_the_socket(tmp_path: Path) -> None:
    scheduler = _Scheduler()
    scheduler.jobs = {"5": _job("5", "RUNNING")}
    hub = _hub(scheduler, hook_min_interval=0.0)
    other = _hub(_Scheduler())
    systems = [SystemConfig("local"), SystemConfig("other")]
    listener = HookListener(tmp_path / "gw.sock", "", {"local": hub, "other": other}, systems)
    task = await _started(hub)
    try:
        assert await listener.start()
        assert os.stat(tmp_path / "gw.sock").st_mode & 0o777 == 0o660
        scheduler.jobs["5"] = _job("5", "FAILED")
        for data in (b"not json", encode_notice(Notice("ended", "5", "", "local", time.time()))):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.sendto(data, str(tmp_path / "gw.sock"))
            sock.close()
        for _ in range(100):
            if hub.get("5").state == "FAILED":  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.01)
        assert hub.get("5").state == "FAILED"  # type: ignore[union-attr]
        assert (listener.received_count, listener.ignored_count) == (1, 1)
        assert other.get("5") is None  # named "local": the other system never read it
        # A second gateway may not take the socket of one that listens.
        assert not await HookListener(tmp_path / "gw.sock", "", {}, systems).start()
    finally:
        await listener.close()
        await _stop(task)
    assert not (tmp_path / "gw.sock").exists()


async def test_notices_are_drained_while_the_event_loop_is_busy(tmp_path: Path) -> None:
    """The kernel queues only net.unix.max_dgram_qlen (10) datagrams per socket: a loop
    blocked for a moment must not make the hook drop the notices that come meanwhile."""
    scheduler = _Scheduler()
    scheduler.jobs = {str(i): _job(str(i), "RUNNING") for i in range(100, 200)}
    hub = _hub(scheduler, hook_min_interval=0.0)
    listener = HookListener(tmp_path / "gw.sock", "", {"local": hub}, [SystemConfig("local")])
    task = await _started(hub)
    try:
        assert await listener.start()
        delivered = 0
        for jid in scheduler.jobs:  # the event loop is blocked throughout this loop
            delivered += hook.send(Notice("ended", jid, "", "", time.time()), str(tmp_path))
            time.sleep(0.002)
        assert delivered == 100
        for _ in range(100):
            if listener.received_count == 100:
                break
            await asyncio.sleep(0.02)
        assert listener.received_count == 100
    finally:
        await listener.close()
        await _stop(task)


async def test_a_follower_replica_ignores_notices() -> None:
    hub = _hub(_Scheduler())
    assert not hub.notified("1", time.time())  # not polling: the poller's journal tells it


def test_the_hook_imports_nothing_of_hpcgate() -> None:
    """It starts in milliseconds on the controller: standard library only."""
    code = (
        "import runpy, sys; sys.argv = ['hook']; "
        f"runpy.run_path({str(HOOK_SCRIPT)!r}, run_name='not_main'); "
        "print(sorted(m for m in sys.modules if m.startswith('hpcgate')))"
    )
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                          text=True, timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_notify_command_tells_the_gateways_and_refuses_a_bad_id(tmp_path: Path) -> None:
    gateway = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    gateway.bind(str(tmp_path / "gw.sock"))
    gateway.settimeout(10)
    config = tmp_path / "hpcgate.toml"
    config.write_text(f'[watch]\nhook_socket = "{tmp_path}/other.sock"\n')
    program = Path(sys.executable).parent / "hpcgate-server"
    env = {**os.environ, "HPCGATE_CONFIG": str(config)}
    try:
        done = subprocess.run(
            [str(program), "notify", "--job", "77", "--event", "started", "--system", "local"],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "notified 1 gateway socket(s)" in done.stdout
        notice = parse_notice(gateway.recv(4096))
        assert notice is not None and (notice.job_id, notice.event, notice.system) == (
            "77", "started", "local",
        )  # fmt: skip
        bad = subprocess.run([str(program), "notify", "--job", "7;x"], capture_output=True,
                             text=True, timeout=60, env=env)  # fmt: skip
        assert bad.returncode == 2 and "not a valid job id" in bad.stderr
    finally:
        gateway.close()
