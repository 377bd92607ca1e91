"""ComputeService reads and submissions against Slurm's own tools, and what GetJob load costs Slurm.

Starts `hpcgate-server serve` on loopback as root (the default multi-user setup: Slurm
tools run by the server, sbatch as the caller through privsep) against the local Slurm,
with an access token for alice (scopes read + execute). First it makes alice's jobs with
sbatch: one held pending (--begin=now+1hour), one running (sleep 600), one that finished
long enough ago to have left the queue (MinJobAge), and an array of --array tasks (1,000)
that all finish before anything is timed.

Part 1, latency, each row interleaving the gateway call and the plain tool run as alice
(a helper without gRPC forks, setuids and execs the tool: no sudo/runuser in the figure),
median and p99 of --calls calls each after --warmup untimed ones:

  GetJob pending / running                 `squeue -j ID`
  GetJob just finished (still in squeue)   `sacct -j ID -X -P`
  GetJob finished (left the queue)         `sacct -j ID -X -P`
  ListJobs (page of 1,000: the array)      `sacct -u alice -X -P -S T` (same window)
  SubmitJob with a fresh request_id        `sbatch` (the same script and options)
  ListPartitions                           `scontrol show partitions`

Part 2, load: for --seconds per level, N clients (asyncio loops over several channels)
call GetJob back to back, alternating the running and the left-the-queue job. Slurm's
counters are reset before each level (`sdiag --reset`, `sacctmgr clear stats`) and read
after it: slurmctld and slurmdbd RPCs per minute (the bench's own sdiag/sacctmgr calls
excluded), beside the GetJob calls per second achieved. Level 0 is the idle server. The
counters are Slurm-wide: a level during which another hpcgate server or pytest ran here, or
RPCs came as a user other than root/slurm, is marked `*` and its verdict called unreliable.

Every job the bench submitted is cancelled at the end (scancel as root), also on failure.

`--adapter pyslurm` serves through the pyslurm adapter instead of Slurm's tools: run it
inside the Slurm 24.11 root (`bash scripts/slurm24.sh run python bench/jobs_bench.py
--adapter pyslurm`), beside `--adapter cli` there, for the two side by side on one cluster.

    .venv/bin/python bench/jobs_bench.py [--quick] [--calls 30] [--seconds 20]
                                         [--levels 1,10,100] [--array 1000]
"""

from __future__ import annotations

import os

# This process forks (sdiag, squeue, the server) while gRPC's threads run; every child
# execs at once, so gRPC's fork handlers are not needed (and would log every fork).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import argparse
import asyncio
import json
import pwd
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from common import (
    free_port,
    percentile,
    reset_rpc_counts,
    slurmctld_rpc_counts,
    slurmdbd_rpc_counts,
)
from google.protobuf.timestamp_pb2 import Timestamp

from hpcgate.v1 import compute_pb2 as C
from hpcgate.v1 import compute_pb2_grpc

BIN = Path(sys.executable).parent
USER = "alice"
SYSTEM = "local"
SCRIPT = "#!/bin/sh\ntrue\n"
TOKEN_OPTIONS = ["--scope", "read", "--scope", "execute", "--ttl", "7200"]
# What each sdiag / sacctmgr call of this bench adds to the counters it reads.
OWN_CTLD = {"REQUEST_STATS_INFO"}
OWN_DBD = {"DBD_GET_STATS", "DBD_CLEAR_STATS"}


# -- running Slurm's tools as alice ---------------------------------------------------------


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    groups: list[int]
    home: str

    @classmethod
    def named(cls, name: str) -> User:
        entry = pwd.getpwnam(name)
        groups = os.getgrouplist(name, entry.pw_gid)
        return cls(name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir)

    def env(self) -> dict[str, str]:
        """The clean environment the server gives sbatch (privsep's user_env)."""
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": self.home,
            "USER": self.name,
            "LOGNAME": self.name,
            "LANG": "C.UTF-8",
        }


# The helper that runs the tools: a fresh interpreter without gRPC's threads and memory, so a
# fork costs what it costs a shell; it times fork + setgroups/setgid/setuid + exec + exit.
LAUNCHER = """
import json, subprocess, sys, time
for line in sys.stdin:
    r = json.loads(line)
    t0 = time.perf_counter()
    p = subprocess.run(r["argv"], input=r["stdin"], capture_output=True, text=True,
                       user=r["uid"], group=r["gid"], extra_groups=r["groups"], cwd=r["cwd"],
                       env=r["env"])
    ms = (time.perf_counter() - t0) * 1000
    print(json.dumps([ms, p.returncode, p.stdout, p.stderr]), flush=True)
"""


class Tools:
    """Runs Slurm's tools as `user` (no runuser or sudo in between) in their home directory."""

    def __init__(self, user: User) -> None:
        self.user = user
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", LAUNCHER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, argv: list[str], stdin: str | None = None) -> tuple[float, str]:
        """(milliseconds, stdout) of `argv` run as the user; RuntimeError if it fails."""
        u = self.user
        request = {"argv": argv, "stdin": stdin, "uid": u.uid, "gid": u.gid}
        request |= {"groups": u.groups, "cwd": u.home, "env": u.env()}
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the tool launcher exited")
        ms, returncode, out, err = json.loads(line)
        if returncode != 0:
            raise RuntimeError(f"`{' '.join(argv)}` as {u.name}: {err.strip()}")
        return ms, out

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(10)


def root(*argv: str, check: bool = True) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}`: {result.stderr.strip()}")
    return result.stdout


def sbatch(tools: Tools, name: str, *options: str, script: str = SCRIPT) -> str:
    _, out = tools.run(
        ["sbatch", "--parsable", f"--job-name={name}", "--output=/dev/null", *options],
        stdin=script,
    )
    return out.strip().split(";")[0]


def queue_state(job_id: str) -> str:
    """The job's state in the controller's queue ('' once it has left it)."""
    out = root("squeue", "-h", "--states=all", "-j", job_id, "-o", "%T", check=False)
    return out.strip().splitlines()[0] if out.strip() else ""


def ended(job_ids: list[str]) -> bool:
    """Whether none of `job_ids` is still pending, running or completing (one squeue)."""
    out = root("squeue", "-h", "-j", ",".join(job_ids), "-o", "%T", check=False)
    return not any(s in ("PENDING", "RUNNING", "COMPLETING") for s in out.split())


def wait_until(what: str, done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(0.5)


def check_cluster() -> None:
    """Exit with a clear message unless slurmctld and slurmdbd answer and alice exists."""
    if os.geteuid() != 0:
        sys.exit("jobs_bench.py runs as root: it starts the server and resets Slurm's counters")
    try:
        pwd.getpwnam(USER)
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
        if "UP" not in ping.stdout:
            raise RuntimeError(f"slurmctld: {(ping.stdout + ping.stderr).strip()}")
        dbd = subprocess.run(
            ["sacctmgr", "-n", "show", "cluster", "format=cluster"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        if dbd.returncode != 0 or not dbd.stdout.strip():
            raise RuntimeError(f"slurmdbd: {(dbd.stdout + dbd.stderr).strip()}")
    except (KeyError, OSError, RuntimeError, subprocess.TimeoutExpired) as e:
        sys.exit(
            f"jobs_bench.py: the local Slurm cluster is not up ({e}).\n"
            "Bring it up first: make cluster   (or: bash scripts/cluster.sh up)"
        )


# -- part 1: latency ------------------------------------------------------------------------


@dataclass
class Row:
    call: str
    tool: str
    gateway_ms: list[float] = field(default_factory=list)
    tool_ms: list[float] = field(default_factory=list)
    note: str = ""
    error: str = ""

    def medians(self) -> tuple[float, float]:
        return statistics.median(self.gateway_ms), statistics.median(self.tool_ms)


async def measure(
    row: Row,
    gateway: Callable[[], Awaitable[Any]],
    tool: Callable[[], float],
    calls: int,
    warmup: int,
    still_valid: Callable[[], bool] = lambda: True,
) -> Row:
    """`warmup` untimed then `calls` timed rounds of (gateway call, tool run), interleaved
    so both see the same cluster. Stops early (with a note) once `still_valid` fails."""
    try:
        for i in range(warmup + calls):
            if i >= warmup and i % 5 == 0 and not still_valid():
                row.note = f"condition ended after {len(row.gateway_ms)} calls"
                break
            t0 = time.perf_counter()
            await gateway()
            gateway_ms = (time.perf_counter() - t0) * 1000
            tool_ms = tool()
            if i >= warmup:
                row.gateway_ms.append(gateway_ms)
                row.tool_ms.append(tool_ms)
    except grpc.aio.AioRpcError as e:
        row.error = f"{e.code().name}: {e.details()}"
    except RuntimeError as e:
        row.error = str(e)
    print(f"  {row.call}: {len(row.gateway_ms)} calls {row.error}", file=sys.stderr)
    return row


def print_latency(rows: list[Row], calls: int, warmup: int, spawn: list[float]) -> None:
    print(
        f"\nComputeService latency vs Slurm's tools, as {USER}; {calls} calls each after "
        f"{warmup} warm-up, gateway and tool interleaved ({os.cpu_count()} CPUs).\n"
        "Tools: fork + setuid + exec from a small helper process (no gRPC); that alone "
        "(`true`) costs "
        f"median {statistics.median(spawn):.1f} ms, p99 {percentile(spawn, 99):.1f} ms "
        "(included in every tool figure).\n"
        f"p99 is nearest-rank: of {calls} calls it is the slowest."
    )
    header = (
        f"{'call':<34} {'hpcgate median':>14} {'p99':>8}  {'plain tool':<32} "
        f"{'tool median':>11} {'p99':>8} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        if not r.gateway_ms:
            print(f"{r.call:<34} FAILED: {r.error or r.note}")
            continue
        g, t = r.medians()
        print(
            f"{r.call:<34} {g:>11.1f} ms {percentile(r.gateway_ms, 99):>5.1f} ms  {r.tool:<32} "
            f"{t:>8.1f} ms {percentile(r.tool_ms, 99):>5.1f} ms {g / t:>6.2f}"
        )
        for extra in (r.note, r.error):
            if extra:
                print(f"{'':<34} ({extra})")


def verdicts(rows: list[Row]) -> list[str]:
    by_call = {r.call.split(" (")[0]: r for r in rows if r.gateway_ms}
    lines = []
    queued = [t for r in rows if r.tool.startswith("squeue -j") for t in r.tool_ms]
    if queued:
        ref = statistics.median(queued)
        for r in rows:
            if r.call.startswith("GetJob") and r.gateway_ms:
                g = statistics.median(r.gateway_ms)
                lines.append(
                    f"{'PASS' if g <= ref else 'FAIL'}  {r.call}: median {g:.1f} ms vs "
                    f"`squeue -j` of a queued job {ref:.1f} ms (target: <=)"
                )
    if (r := by_call.get("SubmitJob")) is not None:
        g, t = r.medians()
        lines.append(
            f"{'PASS' if g <= 1.3 * t else 'FAIL'}  SubmitJob: median {g:.1f} ms = "
            f"{g / t:.2f}x sbatch's {t:.1f} ms (target: <= 1.3x)"
        )
    if (r := by_call.get("ListPartitions")) is not None:
        g, t = r.medians()
        lines.append(
            f"{'PASS' if g <= t else 'FAIL'}  ListPartitions: median {g:.1f} ms = {g / t:.2f}x "
            f"`scontrol show partitions`' {t:.1f} ms (target: <=)"
        )
    if (r := by_call.get("ListJobs")) is not None:
        g, t = r.medians()
        lines.append(f"info  ListJobs: median {g:.1f} ms = {g / t:.2f}x sacct's {t:.1f} ms")
    return lines


# -- part 2: load on Slurm ------------------------------------------------------------------


def own_dbd_sessions(by_type: dict[str, int]) -> int:
    """sacctmgr sessions of this bench in slurmdbd's counts: the clear, the reads, and the
    read being answered (its SLURM_PERSIST_INIT is counted already)."""
    return sum(by_type.get(t, 0) for t in OWN_DBD) + 1


def slurm_load(seconds: float) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """(slurmctld by type, slurmdbd by type, users seen by either) since the last reset,
    without this bench's own sdiag and sacctmgr calls."""
    ctld, ctld_users = slurmctld_rpc_counts()
    dbd, dbd_users = slurmdbd_rpc_counts()
    sessions = own_dbd_sessions(dbd)
    ctld = {k: v for k, v in ctld.items() if k not in OWN_CTLD}
    dbd = {k: v for k, v in dbd.items() if k not in OWN_DBD}
    for t, own in (("SLURM_PERSIST_INIT", sessions), ("DBD_FINI", sessions - 1)):
        if t in dbd:
            dbd[t] = max(0, dbd[t] - own)
    users = {f"ctld:{u}": n for u, n in ctld_users.items()}
    users |= {f"dbd:{u}": n for u, n in dbd_users.items()}
    return ctld, {k: v for k, v in dbd.items() if v}, users


@dataclass
class Level:
    clients: int
    seconds: float
    calls: int
    errors: int
    ctld: dict[str, int]
    dbd: dict[str, int]
    users: dict[str, int]
    others: list[str]  # other Slurm clients seen on this machine at the start or the end

    def per_min(self, counts: dict[str, int]) -> float:
        return sum(counts.values()) / self.seconds * 60


async def load_level(
    address: str,
    md: list[tuple[str, str]],
    names: list[str],
    clients: int,
    seconds: float,
    server_pid: int,
) -> Level:
    channels = [grpc.aio.insecure_channel(address) for _ in range(max(1, min(10, clients // 10)))]
    stubs = [compute_pb2_grpc.ComputeServiceStub(c) for c in channels]
    calls = errors = 0
    stop = asyncio.Event()

    async def client(k: int) -> None:
        nonlocal calls, errors
        stub = stubs[k % len(stubs)]
        i = k
        while not stop.is_set():
            try:
                await stub.GetJob(C.GetJobRequest(name=names[i % len(names)]), metadata=md)
                calls += 1
            except grpc.aio.AioRpcError:
                errors += 1
            i += 1

    try:
        tasks = [asyncio.create_task(client(k)) for k in range(clients)]
        await asyncio.sleep(min(2.0, seconds / 4) if clients else 0)  # connections, workers
        await asyncio.to_thread(reset_rpc_counts)
        others = other_clients(server_pid)
        calls = errors = 0
        started = time.monotonic()
        await asyncio.sleep(seconds)
        stop.set()
        ctld, dbd, users = await asyncio.to_thread(slurm_load, seconds)
        others += [o for o in other_clients(server_pid) if o not in others]
        elapsed = time.monotonic() - started
        done = calls
        await asyncio.gather(*tasks)
    finally:
        for c in channels:
            await c.close()
    level = Level(clients, elapsed, done, errors, ctld, dbd, users, others)
    print(
        f"  {clients} clients: {done / elapsed:.1f} GetJob/s, ctld {level.per_min(ctld):.0f}/min, "
        f"dbd {level.per_min(dbd):.0f}/min",
        file=sys.stderr,
    )
    return level


def top(counts: dict[str, int], n: int = 4) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:n])


def other_clients(server_pid: int) -> list[str]:
    """Other hpcgate servers and test runs on this machine (they load Slurm too), as
    `NAME PID`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in (server_pid, os.getpid()):
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = " ".join(a.decode(errors="replace") for a in argv[:4])
        if "hpcgate-server" in text and "serve" in text:
            found.append(f"hpcgate-server {entry.name}")
        elif "pytest" in text:
            found.append(f"pytest {entry.name}")
    return found


def disturbances(level: Level) -> list[str]:
    """Signs that something besides this bench's server used Slurm during `level`."""
    users = sorted({u.split(":", 1)[1] for u in level.users} - {"root", "slurm"})
    found = [f"RPCs as {', '.join(users)}"] if users else []
    if level.others:
        found.append("running here: " + ", ".join(level.others))
    return found


def disturbed(level: Level) -> bool:
    return bool(disturbances(level))


def print_load(levels: list[Level], seconds: float) -> None:
    print(
        f"\nGetJob load on Slurm: N clients calling GetJob back to back (running job and a job "
        f"that left the queue, alternately), {seconds:g} s per level; counters reset before "
        "each level;\nthe bench's own sdiag/sacctmgr calls excluded. Level 0: the server "
        "idle (its status prober and watch hub only)."
    )
    header = (
        f"{'clients':>7} {'GetJob/s':>9} {'slurmctld RPC/min':>18} {'slurmdbd RPC/min':>17} "
        f"{'ctld RPC/GetJob':>15} {'dbd RPC/GetJob':>14} {'errors':>6}"
    )
    print(header)
    print("-" * len(header))
    for lv in levels:
        rate = lv.calls / lv.seconds
        ctld, dbd = lv.per_min(lv.ctld), lv.per_min(lv.dbd)
        per = (
            (f"{ctld / 60 / rate:>15.2f} {dbd / 60 / rate:>14.2f}")
            if lv.calls
            else f"{'-':>15} {'-':>14}"
        )
        mark = "  *" if disturbed(lv) else ""
        print(f"{lv.clients:>7} {rate:>9.1f} {ctld:>18.0f} {dbd:>17.0f} {per} {lv.errors:>6}{mark}")
    print("\nRPCs per level by message type (top 4) and by user (both daemons):")
    for lv in levels:
        print(f"  {lv.clients:>3} clients  slurmctld: {top(lv.ctld) or '-'}")
        print(f"  {'':>11}  slurmdbd:  {top(lv.dbd) or '-'}")
        print(f"  {'':>11}  users:     {top(lv.users, 8) or '-'}")
    if any(disturbed(lv) for lv in levels):
        print(
            "* someone else used Slurm during this level, so its figures include their RPCs "
            "(this server makes\n  none as alice or bob):"
        )
        for lv in levels:
            if disturbed(lv):
                print(f"  {lv.clients:>3} clients: " + "; ".join(disturbances(lv)))
    loaded = [lv for lv in levels if lv.clients]
    if len(loaded) >= 2:
        one, most = loaded[0], loaded[-1]
        # Slack: the server's own periodic calls (a hub poll, an accounting refresh: one
        # sacct is ~5 slurmdbd RPCs) land in a level or not; 10 RPCs per level absorbs that.
        slack = 10 / seconds * 60
        for daemon in ("slurmctld", "slurmdbd"):
            a = one.per_min(one.ctld if daemon == "slurmctld" else one.dbd)
            b = most.per_min(most.ctld if daemon == "slurmctld" else most.dbd)
            flat = b <= 1.5 * a + slack
            doubt = " - unreliable, see *" if disturbed(one) or disturbed(most) else ""
            print(
                f"{'flat' if flat else 'NOT flat'}  {daemon}: {b:.0f} RPC/min with "
                f"{most.clients} clients vs {a:.0f} with {one.clients} "
                f"(flat: <= 1.5x + {slack:.0f}/min, i.e. 10 RPCs per level){doubt}"
            )


# -- the run --------------------------------------------------------------------------------


@dataclass
class Jobs:
    """Every job this run submitted (cancelled at the end) and the ones it reads."""

    name: str
    ids: list[str] = field(default_factory=list)

    def add(self, job_id: str) -> str:
        self.ids.append(job_id)
        return job_id

    def cancel_all(self) -> None:
        for chunk in range(0, len(self.ids), 200):
            root("scancel", *self.ids[chunk : chunk + 200], check=False)
        root("scancel", "-u", USER, "-n", self.name, check=False)


class Setup:
    """alice's jobs the reads are timed on; replaced if they disappear meanwhile (a test
    suite running on the same cluster may cancel other runs' jobs)."""

    def __init__(self, tools: Tools, jobs: Jobs) -> None:
        self.tools, self.jobs = tools, jobs
        self.pending = self.running = ""

    def ensure_pending(self) -> str:
        if not self.pending or queue_state(self.pending) != "PENDING":
            self._replaced(self.pending, "pending")
            self.pending = self.jobs.add(
                sbatch(self.tools, self.jobs.name, "--begin=now+1hour", "--time=5")
            )
        return self.pending

    def ensure_running(self) -> str:
        if not self.running or queue_state(self.running) != "RUNNING":
            self._replaced(self.running, "running")
            script = "#!/bin/sh\nsleep 600\n"
            job = self.jobs.add(sbatch(self.tools, self.jobs.name, "--time=20", script=script))
            wait_until(f"job {job} to run", lambda: queue_state(job) == "RUNNING", 120)
            self.running = job
        return self.running

    @staticmethod
    def _replaced(job_id: str, what: str) -> None:
        if job_id:
            print(
                f"job {job_id} is no longer {what} (cancelled by someone else?); "
                "submitting another",
                file=sys.stderr,
            )


async def run(args: argparse.Namespace, tools: Tools, jobs: Jobs, tmp: Path) -> None:
    # Jobs first, so the cluster is quiet again before anything is timed.
    setup = Setup(tools, jobs)
    setup.ensure_pending()
    setup.ensure_running()
    old = jobs.add(sbatch(tools, jobs.name, "--time=1"))
    window = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    t0 = time.monotonic()
    array = jobs.add(sbatch(tools, jobs.name, f"--array=0-{args.array - 1}", "--time=1"))
    print(f"submitted {args.array} array tasks (job {array}), waiting for them", file=sys.stderr)
    wait_until("the array to finish", lambda: queue_state(array) == "", 60 + args.array)
    wait_until(f"job {old} to leave the queue", lambda: queue_state(old) == "", 120)
    print(f"array done in {time.monotonic() - t0:.0f} s", file=sys.stderr)

    port = free_port()
    config = tmp / "bench.toml"
    config.write_text(
        '[privsep]\nservice_user = ""\n'  # one root process: state in a private temp dir
        '[http]\nlisten = "127.0.0.1:0"\n'  # the HTTP listener on a free port
        f'[server]\nlisten = "127.0.0.1:{port}"\nstate_dir = "{tmp}/state"\nlog_level = "warning"\n'
        "[rate_limits]\nenabled = false\n"  # 100 callers of one user: measure, not throttle
        f'[[systems]]\nid = "{SYSTEM}"\n[systems.slurm]\nadapter = "{args.adapter}"\n'
    )
    env = dict(os.environ, HPCGATE_CONFIG=str(config))
    token = subprocess.run(
        [str(BIN / "hpcgate-server"), "token", "--user", USER, *TOKEN_OPTIONS],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 - open for the server's life
    server = subprocess.Popen([str(BIN / "hpcgate-server"), "serve"], env=env, stderr=log)
    md = [("authorization", f"Bearer {token}")]
    address = f"127.0.0.1:{port}"
    rows: list[Row] = []
    levels: list[Level] = []
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
            stub = compute_pb2_grpc.ComputeServiceStub(channel)
            parent = f"systems/{SYSTEM}"

            def get(job_id: str) -> Callable[[], Awaitable[Any]]:
                return lambda: stub.GetJob(
                    C.GetJobRequest(name=f"{parent}/jobs/{job_id}"), metadata=md
                )

            def tool(*argv: str) -> Callable[[], float]:
                return lambda: tools.run(list(argv))[0]

            await get(old)()  # the first call starts the watch hub
            spawn = [tools.run(["true"])[0] for _ in range(args.calls + args.warmup)]
            spawn = spawn[args.warmup :]
            n, w = args.calls, args.warmup
            for call, state, ensure in (
                ("GetJob pending", "PENDING", setup.ensure_pending),
                ("GetJob running", "RUNNING", setup.ensure_running),
            ):
                job = ensure()
                rows.append(
                    await measure(
                        Row(call, "squeue -j ID"),
                        get(job),
                        tool("squeue", "-j", job),
                        n,
                        w,
                        still_valid=lambda job=job, state=state: queue_state(job) == state,
                    )
                )

            # A job that has just ended: still in squeue (for MinJobAge).
            fresh = jobs.add(sbatch(tools, jobs.name, "--time=1"))
            wait_until(f"job {fresh} to finish", lambda: queue_state(fresh) == "COMPLETED", 60)
            rows.append(
                await measure(
                    Row("GetJob just finished (in squeue)", "sacct -j ID -X -P"),
                    get(fresh),
                    tool("sacct", "-j", fresh, "-X", "-P"),
                    n,
                    w,
                    still_valid=lambda: queue_state(fresh) == "COMPLETED",
                )
            )
            rows.append(
                await measure(
                    Row("GetJob finished (left squeue)", "sacct -j ID -X -P"),
                    get(old),
                    tool("sacct", "-j", old, "-X", "-P"),
                    n,
                    w,
                )
            )

            after = Timestamp()
            after.FromDatetime(window)
            listed: list[int] = []

            async def list_jobs() -> None:
                response = await stub.ListJobs(
                    C.ListJobsRequest(parent=parent, page_size=1000, submitted_after=after),
                    metadata=md,
                )
                listed.append(len(response.jobs))

            since = window.astimezone().strftime("%Y-%m-%dT%H:%M:%S")
            rows.append(
                await measure(
                    Row("ListJobs", f"sacct -u {USER} -X -P -S T"),
                    list_jobs,
                    tool("sacct", "-u", USER, "-X", "-P", "-S", since),
                    n,
                    w,
                )
            )
            if listed:
                rows[-1].call = f"ListJobs ({listed[-1]} jobs)"
                out = tools.run(["sacct", "-u", USER, "-X", "-n", "-P", "-S", since])[1]
                rows[-1].note = (
                    f"page_size 1000, submitted_after T; sacct lists {len(out.splitlines())} "
                    "jobs for the same window"
                )

            options = C.JobOptions(job_name=jobs.name, time_limit="1", stdout_path="/dev/null")

            async def submit() -> None:
                request = C.SubmitJobRequest(
                    parent=parent,
                    script=SCRIPT,
                    options=options,
                    request_id=f"jobs-bench-{uuid.uuid4().hex}",
                )
                response = await stub.SubmitJob(request, metadata=md)
                jobs.add(response.job.job_id)

            def plain_sbatch() -> float:
                # What the server runs for that request, minus its --comment.
                argv = ["sbatch", "--parsable", f"--job-name={jobs.name}", "--time=1"]
                argv += ["--output=/dev/null", "--export=ALL"]
                ms, out = tools.run(argv, stdin=SCRIPT)
                jobs.add(out.strip().split(";")[0])
                return ms

            first_submitted = len(jobs.ids)
            row = Row("SubmitJob (request_id)", "sbatch (same script)")
            rows.append(await measure(row, submit, plain_sbatch, n, w))
            rows.append(
                await measure(
                    Row("ListPartitions", "scontrol show partitions"),
                    lambda: stub.ListPartitions(
                        C.ListPartitionsRequest(parent=parent), metadata=md
                    ),
                    tool("scontrol", "show", "partitions"),
                    n,
                    w,
                )
            )
            print_latency(rows, n, w, spawn)
            for line in verdicts(rows):
                print(line)

            # Part 2. Let the submitted jobs end first so the queue is as quiet as before.
            submitted = jobs.ids[first_submitted:]
            if submitted:
                wait_until("the submitted jobs to end", lambda: ended(submitted), 120)
            for clients in [0, *args.levels]:
                names = [f"{parent}/jobs/{setup.ensure_running()}", f"{parent}/jobs/{old}"]
                level = await load_level(address, md, names, clients, args.seconds, server.pid)
                levels.append(level)
            print_load(levels, args.seconds)
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        failed = any(r.error for r in rows) or server.returncode not in (0, -15)
        if failed or any(lv.errors for lv in levels):
            tail = (tmp / "server.log").read_text(errors="replace")[-3000:]
            print(f"server log (tail):\n{tail}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="sanity run: 10 calls, 5 s levels of 1 and 10 clients, a 100-task array",
    )
    parser.add_argument("--calls", type=int, help="timed calls per row (default 30)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seconds", type=float, help="seconds per load level (default 20)")
    parser.add_argument("--levels", help="client counts, comma-separated (default 1,10,100)")
    parser.add_argument("--array", type=int, help="array tasks for ListJobs (default 1000)")
    parser.add_argument(
        "--adapter", choices=("cli", "pyslurm"), default="cli",
        help="the server's Slurm adapter (pyslurm: inside the 24.11 root, "
        "`scripts/slurm24.sh run python bench/jobs_bench.py --adapter pyslurm`)",
    )  # fmt: skip
    args = parser.parse_args()
    quick = args.quick
    args.calls = args.calls or (10 if quick else 30)
    args.seconds = args.seconds or (5.0 if quick else 20.0)
    args.levels = [int(n) for n in (args.levels or ("1,10" if quick else "1,10,100")).split(",")]
    args.array = args.array or (100 if quick else 1000)
    check_cluster()
    tools = Tools(User.named(USER))
    jobs = Jobs(name=f"jobs-bench-{os.getpid()}")
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(run(args, tools, jobs, Path(tmp)))
    except RuntimeError as e:
        sys.exit(f"jobs_bench.py: {e}")
    finally:
        jobs.cancel_all()
        tools.close()
        print(
            f"\n{len(jobs.ids)} jobs submitted and cancelled (name {jobs.name}); "
            f"bench ran {time.monotonic() - started:.0f} s",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
