"""Cluster mode: what replicas cost slurmctld, how fast a follower hears, failover, GetJob.

Runs `hpcgate-server serve` replicas on loopback as root against the local Slurm, on one
fresh PostgreSQL database (`scripts/postgres.sh createdb`, dropped at the end) and one
shared state_dir (the signing key), with `[watch] poll_floor = 0.5`. Per Slurm system one
replica polls Slurm (it holds the poller lock) and journals job events; the others follow
the journal. Tokens for alice (read + execute) come from `hpcgate-server token`.

1. slurmctld RPCs per minute (`sdiag`, the bench's own sdiag calls excluded) over
   --seconds while every server has --streams WatchJobs streams open and 3 short jobs run:
   1 replica, 2 replicas, and for reference 2 independent servers (SQLite, no [state],
   each its own state_dir), each of which polls Slurm. In brackets the part that reads
   the job queue (REQUEST_JOB_INFO*), which only the poller sends.
2. Event delivery latency, receive wall time - event.time (when the poller saw the
   change), of the STATE_CHANGED events of --jobs `sleep 0.3` jobs submitted through the
   follower: on a stream of the follower and, at the same time, of the poller. p50/p99.
3. Failover, --failovers times: a `sleep 0.2` job every 0.3 s submitted through the
   survivor, kill -9 of the poller; seconds from the kill to the first STATE_CHANGED
   event detected after it (event.time > kill) arriving on a stream of the survivor, and
   to pg_stat_activity showing the survivor's poller session. The killed replica is
   restarted between runs (it follows; the next run kills the other one).
4. GetJob calls/s, --callers concurrent callers on one channel asking for one running
   job for --load-seconds: directly to one replica, and through HAProxy (h2, round robin
   per call) to both; beside them, as the baseline, `squeue -j ID` run back to back for
   5 s. HAProxy is started with scripts/haproxy.sh (its own pid file in the temp dir), or
   with `haproxy -D` if that fails.

Rows measured while another hpcgate server or pytest ran on this machine are marked `*`:
slurmctld's counters are machine-wide. Every job the bench submitted (named
cluster-bench) is cancelled at the end, also on failure. About 2 minutes.

    .venv/bin/python bench/cluster_bench.py [--seconds 20] [--streams 10] [--jobs 30]
                                            [--failovers 3] [--callers 20]
                                            [--load-seconds 8] [--probe-interval 30]
"""

from __future__ import annotations

import os

# This process forks (sdiag, squeue, the servers) while gRPC's threads run; every child
# execs at once, so gRPC's fork handlers are not needed (and would log every fork).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import argparse
import asyncio
import contextlib
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import grpc
import psycopg
from common import cpu_seconds, free_port, percentile, slurmctld_rpc_counts
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hpcgate.v1 import compute_pb2 as S
from hpcgate.v1 import compute_pb2_grpc

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
PARENT = "systems/local"
USER = "alice"
JOB_NAME = "cluster-bench"
OWN_CTLD = {"REQUEST_STATS_INFO"}  # what each sdiag call of this bench adds
TERMINAL = {
    S.JOB_STATE_COMPLETED,
    S.JOB_STATE_FAILED,
    S.JOB_STATE_CANCELLED,
    S.JOB_STATE_TIMEOUT,
    S.JOB_STATE_NODE_FAIL,
    S.JOB_STATE_PREEMPTED,
    S.JOB_STATE_OUT_OF_MEMORY,
    S.JOB_STATE_BOOT_FAIL,
    S.JOB_STATE_DEADLINE,
}
Metadata = list[tuple[str, str]]


# -- servers, PostgreSQL, HAProxy -------------------------------------------------------------


class Server:
    """One `hpcgate-server serve` process in a session of its own; a cluster replica when
    given a DSN, else an independent server (SQLite in its state_dir)."""

    def __init__(
        self, tmp: Path, name: str, state_dir: Path, dsn: str | None, probe_interval: float
    ) -> None:
        self.name = name
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = tmp / f"{name}.log"
        text = (
            '[privsep]\nservice_user = ""\n'  # one root process: state in a private temp dir
            '[http]\nlisten = "127.0.0.1:0"\n'  # the HTTP listener on a free port
            f'[server]\nlisten = "{self.address}"\nstate_dir = "{state_dir}"\n'
            "shutdown_grace = 1.0\n"
        )
        if dsn is not None:
            text += f'replica_id = "{name}"\n[state]\nbackend = "postgresql"\ndsn = "{dsn}"\n'
        text += (
            f"[status]\nprobe_interval = {probe_interval}\n"
            "[watch]\npoll_floor = 0.5\npoll_ceiling = 1.0\n"
        )
        config = tmp / f"{name}.toml"
        config.write_text(text)
        self.env = dict(os.environ, HPCGATE_CONFIG=str(config))
        self.proc: asyncio.subprocess.Process | None = None
        self.sessions: list[int] = []  # every process session started (= its leader's pid)

    async def start(self) -> Server:
        with open(self.log, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                str(BIN / "hpcgate-server"),
                "serve",
                env=self.env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        self.sessions.append(self.proc.pid)
        await wait_serving(self.address)
        return self

    def token(self) -> Metadata:
        argv = [str(BIN / "hpcgate-server"), "token", "--user", USER, "--ttl", "900"]
        argv += ["--scope", "read", "--scope", "execute"]
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, check=True)
        return [("authorization", f"Bearer {done.stdout.strip()}")]

    async def kill(self) -> float:
        """kill -9 of the server process (not its workers); the wall time of the kill."""
        assert self.proc is not None
        killed = time.time()
        self.proc.kill()
        await self.proc.wait()
        return killed

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        for session in self.sessions:  # workers left behind by a kill -9
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(session, signal.SIGKILL)

    def pids(self) -> dict[str, int]:
        return {self.name: self.proc.pid} if self.proc is not None else {}

    def rpc_lines(self) -> int:
        """Calls the server logged (one `rpc` line per call at log level info)."""
        return self.log.read_text().count('"message": "rpc"') if self.log.exists() else 0


async def wait_serving(address: str, timeout: float = 60) -> None:
    """Until the server's gRPC health check answers SERVING (after its first probes)."""
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server on {address} never became SERVING")
            await asyncio.sleep(0.1)


def postgres(*args: str) -> str:
    """scripts/postgres.sh ARGS; its standard output."""
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "postgres.sh"), *args],
        env=dict(os.environ, HPCGATE_POSTGRES_QUIET="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/postgres.sh {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def poller_of(dsn: str, system: str = "local") -> list[str]:
    """The replicas holding the poller lock of `system` in this database (pg_locks shows
    every database's: test runs on the same PostgreSQL have pollers too), by the lock
    session's application_name."""
    with psycopg.connect(dsn, autocommit=True) as db:
        rows = db.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.database ="
            " (SELECT oid FROM pg_database WHERE datname = current_database()) AND l.objid ="
            " (hashtextextended(%s, 0) & 4294967295)::oid",
            (f"hpcgate-poller/{system}",),
        ).fetchall()
    return [name.removeprefix("hpcgate-poller ") for (name,) in rows]


async def until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `check()` holds; RuntimeError after `timeout`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


class HAProxy:
    """HAProxy on a free loopback port in front of `backends` (HTTP/2 both sides, round
    robin per call), with its pid file in `tmp` (never the shared default one)."""

    def __init__(self, tmp: Path, backends: list[Server]) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        self.config = tmp / "haproxy.cfg"
        self.pidfile = tmp / "haproxy.pid"
        self.env = dict(os.environ, HPCGATE_HAPROXY_PIDFILE=str(self.pidfile))
        self.script = ROOT / "scripts" / "haproxy.sh"
        self.how = ""
        servers = "".join(f"    server {s.name} {s.address} proto h2\n" for s in backends)
        self.config.write_text(
            "global\n    maxconn 4096\n"
            "defaults\n    mode http\n    timeout connect 2s\n    timeout client 1h\n"
            "    timeout server 1h\n    timeout tunnel 1h\n"
            f"frontend bench\n    bind {self.address} proto h2\n    default_backend replicas\n"
            f"backend replicas\n    balance roundrobin\n{servers}"
        )

    def up(self) -> None:
        if self.script.exists():
            done = subprocess.run(
                ["bash", str(self.script), "up", str(self.config)],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if done.returncode == 0:
                self.how = "scripts/haproxy.sh up"
                return
            print(f"scripts/haproxy.sh up failed: {done.stderr.strip()}", file=sys.stderr)
        subprocess.run(
            ["haproxy", "-D", "-f", str(self.config), "-p", str(self.pidfile)], check=True
        )
        self.how = "haproxy -D (scripts/haproxy.sh missing or failed)"

    def pids(self) -> dict[str, int]:
        """The running HAProxy process(es), as `haproxy` (`haproxy PID` if several)."""
        pids = [int(p) for p in self.pidfile.read_text().split()] if self.pidfile.exists() else []
        return {"haproxy" if len(pids) == 1 else f"haproxy {p}": p for p in pids}

    def down(self) -> None:
        if self.script.exists():
            subprocess.run(
                ["bash", str(self.script), "down"], env=self.env, capture_output=True, timeout=60
            )
        if self.pidfile.exists():  # what the script did not stop, or started by hand
            for pid in self.pidfile.read_text().split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGTERM)


def other_clients(sessions: set[int]) -> list[str]:
    """Other hpcgate servers and test runs on this machine (they load Slurm too), as
    `NAME PID`: processes outside this bench's servers' sessions."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            session = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3])
        except (OSError, IndexError, ValueError):
            continue
        if session in sessions:
            continue
        text = " ".join(a.decode(errors="replace") for a in argv[:4])
        if "hpcgate-server" in text and "serve" in text:
            found.append(f"hpcgate-server {entry.name}")
        elif "pytest" in text:
            found.append(f"pytest {entry.name}")
    return found


# -- WatchJobs and jobs -----------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """A STATE_CHANGED event of one of the bench's jobs, as a stream received it."""

    received: float  # wall time
    detected: float  # event.time: when the poller saw the change
    job_id: str
    state: int


class Watch:
    """`n` WatchJobs streams (alice's jobs) on one channel to `address`, each past its
    snapshot, consumed in the background; `seen` holds what the first stream received."""

    def __init__(self, address: str, md: Metadata, n: int = 1) -> None:
        self.address = address
        self.md = md
        self.n = n
        self.seen: list[Seen] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.channel: grpc.aio.Channel | None = None

    async def __aenter__(self) -> Watch:
        self.channel = grpc.aio.insecure_channel(self.address)
        stub = compute_pb2_grpc.ComputeServiceStub(self.channel)
        for i in range(self.n):
            stream = stub.WatchJobs(S.WatchJobsRequest(parent=PARENT), metadata=self.md)
            while True:  # the snapshot may come in several messages
                message = await stream.read()
                if message is grpc.aio.EOF:
                    raise RuntimeError(f"WatchJobs on {self.address} ended at once")
                if message.WhichOneof("kind") == "snapshot" and message.snapshot.last:
                    break
            self.tasks.append(asyncio.create_task(self._consume(stream, i == 0)))
        return self

    async def _consume(self, stream: grpc.aio.UnaryStreamCall, record: bool) -> None:
        while (message := await stream.read()) is not grpc.aio.EOF:
            if not record or message.WhichOneof("kind") != "event":
                continue
            event = message.event
            if event.type == S.JOB_EVENT_TYPE_STATE_CHANGED and event.job.job_name == JOB_NAME:
                detected = event.time.seconds + event.time.nanos / 1e9
                self.seen.append(Seen(time.time(), detected, event.job.job_id, event.state))

    async def __aexit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.channel is not None:
            await self.channel.close()

    def ended(self, job_ids: set[str]) -> bool:
        """Every one of `job_ids` reached a terminal state on the recorded stream."""
        return job_ids <= {s.job_id for s in self.seen if s.state in TERMINAL}


async def submit(address: str, md: Metadata, body: str) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await compute_pb2_grpc.ComputeServiceStub(channel).SubmitJob(
            S.SubmitJobRequest(
                parent=PARENT,
                script=f"#!/bin/sh\n{body}\n",
                options=S.JobOptions(job_name=JOB_NAME, stdout_path="/dev/null"),
            ),
            metadata=md,
        )
    return str(reply.job.job_id)


# -- 1. slurmctld RPCs per minute -------------------------------------------------------------


@dataclass
class Rate:
    setup: str
    servers: int
    total: float  # RPCs per minute
    job_info: float  # of which REQUEST_JOB_INFO* per minute
    others: list[str] = field(default_factory=list)


async def rpc_rate(
    setup: str, servers: list[Server], mds: list[Metadata], streams: int, seconds: float
) -> Rate:
    """slurmctld RPCs/min while each server has `streams` streams open and 3 `sleep 1` jobs
    are submitted (through the first) over `seconds`."""
    async with contextlib.AsyncExitStack() as stack:
        for server, md in zip(servers, mds, strict=True):
            await stack.enter_async_context(Watch(server.address, md, streams))
        await asyncio.sleep(3)  # every poller at the fast rate, start-up reads done
        sessions = {p for s in servers for p in s.sessions}
        others = set(other_clients(sessions))
        before, _ = slurmctld_rpc_counts()
        started = time.monotonic()
        for _ in range(3):
            await submit(servers[0].address, mds[0], "sleep 1")
            await asyncio.sleep(seconds / 3)
        after, _ = slurmctld_rpc_counts()
        elapsed = time.monotonic() - started
        others |= set(other_clients(sessions))
    delta = {k: v - before.get(k, 0) for k, v in after.items() if k not in OWN_CTLD}
    job_info = sum(v for k, v in delta.items() if k.startswith("REQUEST_JOB_INFO"))
    per_min = 60 / elapsed
    rate = Rate(
        setup, len(servers), sum(delta.values()) * per_min, job_info * per_min, sorted(others)
    )
    busiest = sorted(delta.items(), key=lambda kv: -kv[1])[:4]
    print(
        f"  {setup}: {rate.total:.0f} RPC/min ({rate.job_info:.0f} job info); "
        + ", ".join(f"{k} {v}" for k, v in busiest),
        file=sys.stderr,
    )
    return rate


# -- 2. delivery latency ----------------------------------------------------------------------


async def latencies(
    poller: Server, follower: Server, md: Metadata, jobs: int
) -> tuple[list[float], list[float]]:
    """Milliseconds from detection to receipt of the jobs' STATE_CHANGED events, on a stream
    of the follower and one of the poller; the jobs are submitted through the follower."""
    async with Watch(follower.address, md) as on_follower, Watch(poller.address, md) as on_poller:
        ids = set()
        for _ in range(jobs):
            ids.add(await submit(follower.address, md, "sleep 0.3"))
            await asyncio.sleep(0.2)
        await until(lambda: on_follower.ended(ids) and on_poller.ended(ids), 90, "every job ended")

    def delays(watch: Watch) -> list[float]:
        return [(s.received - s.detected) * 1000 for s in watch.seen if s.job_id in ids]

    return delays(on_follower), delays(on_poller)


# -- 3. failover ------------------------------------------------------------------------------


@dataclass
class Failover:
    victim: str
    event: float  # seconds from the kill to the first new event on the survivor's stream
    detected: float  # ... to that event's detection (event.time)
    lock: float  # ... to pg_stat_activity showing the survivor as the poller


async def failover(replicas: list[Server], md: Metadata, dsn: str) -> Failover:
    """kill -9 the poller while jobs trickle in through the survivor; then restart it."""
    polling = await asyncio.to_thread(poller_of, dsn)
    if len(polling) != 1:
        raise RuntimeError(f"expected one poller, found {polling}")
    victim = next(r for r in replicas if r.name == polling[0])
    survivor = next(r for r in replicas if r is not victim)
    stop = asyncio.Event()

    async def trickle() -> None:
        while not stop.is_set():
            with contextlib.suppress(grpc.aio.AioRpcError):
                await submit(survivor.address, md, "sleep 0.2")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.3)

    async with Watch(survivor.address, md) as watch:
        trickling = asyncio.create_task(trickle())
        try:
            await asyncio.sleep(2)  # steady: jobs start and end, the poller reports them
            killed = await victim.kill()

            async def survivor_polls() -> bool:
                return await asyncio.to_thread(poller_of, dsn) == [survivor.name]

            started = time.monotonic()
            while not await survivor_polls():
                if time.monotonic() - started > 30:
                    raise RuntimeError(f"{survivor.name} did not take the poller lock in 30 s")
                await asyncio.sleep(0.05)
            lock = time.time() - killed
            await until(
                lambda: any(s.detected > killed for s in watch.seen), 30, "an event after the kill"
            )
            first = next(s for s in watch.seen if s.detected > killed)
        finally:
            stop.set()
            await trickling
    await victim.start()  # it follows now
    result = Failover(victim.name, first.received - killed, first.detected - killed, lock)
    print(
        f"  kill -9 {victim.name}: event after {result.event:.2f} s, "
        f"lock after {result.lock:.2f} s",
        file=sys.stderr,
    )
    return result


# -- 4. GetJob throughput ---------------------------------------------------------------------


@dataclass
class Load:
    setup: str
    rate: float
    errors: int = 0
    note: str = ""


async def getjob_load(
    setup: str,
    address: str,
    md: Metadata,
    name: str,
    args: argparse.Namespace,
    processes: dict[str, int],
) -> Load:
    """GetJob calls/s of --callers concurrent callers sharing one channel, for
    --load-seconds; the note tells the CPU (% of one core) this client and `processes`
    (name: pid) used."""
    request = S.GetJobRequest(name=name)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = compute_pb2_grpc.ComputeServiceStub(channel)
        await stub.GetJob(request, metadata=md, wait_for_ready=True, timeout=30)
        done = errors = 0
        stop = time.monotonic() + args.load_seconds

        async def caller() -> None:
            nonlocal done, errors
            while time.monotonic() < stop:
                try:
                    await stub.GetJob(request, metadata=md)
                    done += 1
                except grpc.aio.AioRpcError:
                    errors += 1

        pids = list(processes.values())
        cpu_before = [time.process_time(), *(cpu_seconds(p) for p in pids)]
        started = time.monotonic()
        await asyncio.gather(*(caller() for _ in range(args.callers)))
        elapsed = time.monotonic() - started
        cpu = [time.process_time(), *(cpu_seconds(p) for p in pids)]
    used = [(after - before) / elapsed for after, before in zip(cpu, cpu_before, strict=True)]
    note = f"CPU: client {used[0]:.0%}, " + ", ".join(
        f"{label} {u:.0%}" for label, u in zip(processes, used[1:], strict=True)
    )
    load = Load(setup, done / elapsed, errors, note)
    print(f"  GetJob {setup}: {load.rate:.0f}/s, {errors} errors, {note}", file=sys.stderr)
    return load


def squeue_rate(job_id: str, seconds: float) -> float:
    """`squeue -j ID` runs per second, one after the other."""
    done, stop = 0, time.monotonic() + seconds
    started = time.monotonic()
    while time.monotonic() < stop:
        subprocess.run(["squeue", "-h", "-j", job_id], stdout=subprocess.DEVNULL, check=True)
        done += 1
    return done / (time.monotonic() - started)


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Results:
    rates: list[Rate] = field(default_factory=list)
    follower_ms: list[float] = field(default_factory=list)
    poller_ms: list[float] = field(default_factory=list)
    failovers: list[Failover] = field(default_factory=list)
    loads: list[Load] = field(default_factory=list)
    haproxy: str = ""
    errors: list[str] = field(default_factory=list)


async def cluster_part(args: argparse.Namespace, tmp: Path, dsn: str, out: Results) -> None:
    """1 and 2 replicas: RPC rates, latency, GetJob load, failover."""
    state = tmp / "cluster-state"
    a, b = (Server(tmp, n, state, dsn, args.probe_interval) for n in ("bench-a", "bench-b"))
    proxy: HAProxy | None = None
    job_id = ""
    try:
        await a.start()
        await until(lambda: poller_of(dsn) == [a.name], 20, "bench-a polls")
        md = a.token()
        out.rates.append(await rpc_rate("1 replica", [a], [md], args.streams, args.seconds))
        await b.start()
        await asyncio.sleep(1)
        if poller_of(dsn) != [a.name]:
            raise RuntimeError(f"expected bench-a to poll, not {poller_of(dsn)}")
        out.rates.append(await rpc_rate("2 replicas", [a, b], [md, md], args.streams, args.seconds))
        out.follower_ms, out.poller_ms = await latencies(a, b, md, args.jobs)
        print(f"  latency: {len(out.follower_ms)} events per stream", file=sys.stderr)

        job_id = await submit(a.address, md, "sleep 600")
        name = f"{PARENT}/jobs/{job_id}"
        await asyncio.sleep(1.5)  # b takes the job in from the journal
        direct = f"directly to {a.name}"
        out.loads.append(await getjob_load(direct, a.address, md, name, args, a.pids()))
        proxy = HAProxy(tmp, [a, b])
        proxy.up()
        out.haproxy = proxy.how
        before = (a.rpc_lines(), b.rpc_lines())
        processes = proxy.pids() | a.pids() | b.pids()
        load = await getjob_load("HAProxy -> 2 replicas", proxy.address, md, name, args, processes)
        served = (a.rpc_lines() - before[0], b.rpc_lines() - before[1])
        if sum(served):
            split = f"served {served[0] / sum(served):.0%} / {served[1] / sum(served):.0%}"
            load.note = f"{split}; {load.note}"
        out.loads.append(load)
        rate = await asyncio.to_thread(squeue_rate, job_id, 5)
        out.loads.append(Load("`squeue -j ID` back to back (no gateway)", rate))
        subprocess.run(["scancel", job_id], check=False)
        job_id = ""

        for _ in range(args.failovers):
            out.failovers.append(await failover([a, b], md, dsn))
    finally:
        if job_id:
            subprocess.run(["scancel", job_id], check=False)
        if proxy is not None:
            proxy.down()
        await asyncio.gather(a.stop(), b.stop())


async def independent_part(args: argparse.Namespace, tmp: Path, out: Results) -> None:
    """2 servers without cluster mode: each polls Slurm."""
    names = ("bench-solo-1", "bench-solo-2")
    servers = [Server(tmp, n, tmp / f"{n}-state", None, args.probe_interval) for n in names]
    try:
        for server in servers:
            await server.start()
        mds = [s.token() for s in servers]
        setup = "2 independent servers (SQLite)"
        out.rates.append(await rpc_rate(setup, servers, mds, args.streams, args.seconds))
    finally:
        await asyncio.gather(*(s.stop() for s in servers))


def ms(values: list[float]) -> str:
    if not values:
        return "no events"
    return f"{percentile(values, 50):.0f} / {percentile(values, 99):.0f} ms ({len(values)} events)"


def report(args: argparse.Namespace, out: Results) -> None:
    rows: list[tuple[str, str, str]] = []
    marked = False
    for i, r in enumerate(out.rates):
        star = "*" if r.others else ""
        marked |= bool(star)
        what = "slurmctld RPC/min (job-info part)" if i == 0 else ""
        each = " each" if r.servers > 1 else ""
        setup = f"{r.setup}, {args.streams} streams{each}"
        rows.append((what, setup, f"{r.total:.0f} ({r.job_info:.0f}){star}"))
    rows.append(("event latency p50 / p99", "stream on the follower", ms(out.follower_ms)))
    rows.append(("", "stream on the poller (same events)", ms(out.poller_ms)))
    if out.failovers:
        f = out.failovers
        runs = ", ".join(f"{x.event:.2f}" for x in f)
        rows.append(
            (
                "failover: kill -9 -> first new event on survivor",
                f"2 replicas, {len(f)} runs",
                f"{runs} s (median {statistics.median(x.event for x in f):.2f} s)",
            )
        )
        detected = ", ".join(f"{x.detected:.2f}" for x in f)
        rows.append(("", "... -> its detection (event.time)", f"{detected} s"))
        locks = ", ".join(f"{x.lock:.2f}" for x in f)
        rows.append(
            (
                "failover: kill -9 -> survivor is poller",
                "pg_stat_activity",
                f"{locks} s (median {statistics.median(x.lock for x in f):.2f} s)",
            )
        )
    for i, load in enumerate(out.loads):
        what = f"GetJob calls/s ({args.callers} callers, one job)" if i == 0 else ""
        extra = [load.note] if load.note else []
        if load.errors:
            extra.append(f"{load.errors} errors")
        suffix = f" ({', '.join(extra)})" if extra else ""
        rows.append((what, load.setup, f"{load.rate:.0f}{suffix}"))
    headers = ("measurement", "setup", "result")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print()
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    print(
        f"\n- poll_floor 0.5 s, status probe_interval {args.probe_interval:g} s (per server: "
        f"every replica probes Slurm itself); RPC rates over {args.seconds:g} s with 3 "
        "`sleep 1` jobs submitted, the bench's sdiag calls excluded."
    )
    print(
        f"- Latency: {args.jobs} `sleep 0.3` jobs submitted through the follower, "
        "receive wall time - event.time of their STATE_CHANGED events."
    )
    if out.failovers:
        victims = ", ".join(f.victim for f in out.failovers)
        print(f"- Failover victims in order: {victims}; a `sleep 0.2` job every 0.3 s.")
    if out.loads:
        print(
            f"- GetJob: one client process, one channel; CPU in % of one core, "
            f"{os.cpu_count()} cores here (the client, HAProxy and the replicas share them)."
        )
    if out.haproxy:
        print(f"- HAProxy started with {out.haproxy}; the split is from the replicas' rpc logs.")
    if marked:
        others = sorted({o for r in out.rates for o in r.others})
        print(f"- * measured while other Slurm clients ran here: {', '.join(others)}")
    for error in out.errors:
        print(f"- FAILED: {error}")


def show_logs(tmp: Path) -> None:
    """The end of every server log (on stderr), before the temp dir goes."""
    for log in sorted(tmp.glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-15:]
        print(f"---- {log.name}\n" + "\n".join(lines), file=sys.stderr)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per RPC-rate row")
    parser.add_argument("--streams", type=int, default=10, help="WatchJobs streams per server")
    parser.add_argument("--jobs", type=int, default=30, help="jobs for the latency")
    parser.add_argument("--failovers", type=int, default=3)
    parser.add_argument("--callers", type=int, default=20, help="concurrent GetJob callers")
    parser.add_argument("--load-seconds", type=float, default=8.0)
    parser.add_argument(
        "--probe-interval", type=float, default=30.0, help="[status] probe_interval (default 30)"
    )
    args = parser.parse_args()
    started = time.monotonic()
    postgres("up")
    database = f"bench_cluster_{secrets.token_hex(4)}"
    dsn = postgres("createdb", database).splitlines()[-1]
    out = Results()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                await cluster_part(args, Path(tmp), dsn, out)
            except Exception as e:
                out.errors.append(f"cluster mode: {e!r}")
                show_logs(Path(tmp))
            try:
                await independent_part(args, Path(tmp), out)
            except Exception as e:
                out.errors.append(f"independent servers: {e!r}")
                show_logs(Path(tmp))
    finally:
        subprocess.run(["scancel", "-u", USER, "-n", JOB_NAME], check=False)
        postgres("dropdb", database)
    report(args, out)
    print(f"- total run time {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
