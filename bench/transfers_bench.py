"""StartTransfer throughput: a large file and many small files, against `cp -r` / `rsync -a`.

Writes into a fresh directory in alice's home one file of random bytes (1 GiB by default)
and a tree of small files (10,000 by default, 1-8 KiB of random bytes each, in up to 100
directories), then copies each of them to another directory there:

- with `cp -r`, `cp -r` followed by `sync -f` (syncfs of the destination's filesystem) and
  `rsync -a`, run as alice (median of 3 runs each);
- through StorageService.StartTransfer (TRANSFER_KIND_COPY, preserve) on a
  `hpcgate-server serve` on loopback, as alice (token scopes read + write), followed with
  TasksService.WatchTask until the task ends (one run each);
- unless --skip-peer, across facilities on loopback: a second server B (facility
  "site-b", where server A acts as bob through a client registered at B) receives both
  from A (push: local source, destination at B in a fresh directory in bob's home) and
  A reads them back (pull: source at B, local destination).

Per transfer: wall time, MiB/s, files/s, the ratio to the baselines (or, for the
cross-facility rows, to the local gateway copy), and per server its CPU (user+sys of the
server process, and of its privsep workers, from /proc/PID/stat) and its peak RSS (VmHWM
of the server process, reset through /proc/PID/clear_refs before each transfer).
Prints a table. Runs as root (the servers serve alice and bob through privsep workers).

    .venv/bin/python bench/transfers_bench.py [--size 1G] [--files 10000] [--skip-peer]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import pwd
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO

import grpc
from common import cpu_seconds, descendants_cpu_seconds, free_port, human, parse_size

from hpcgate.v1 import storage_pb2, storage_pb2_grpc, tasks_pb2, tasks_pb2_grpc

BIN = Path(sys.executable).parent
USER, PEER_USER, PEER_ID = "alice", "bob", "site-b"
MiB = 1024 * 1024
GiB = 1024 * MiB
LOCAL, PUSH, PULL = "StartTransfer local", "push A->B", "pull B->A"
ENDED = (
    tasks_pb2.TASK_STATE_SUCCEEDED,
    tasks_pb2.TASK_STATE_FAILED,
    tasks_pb2.TASK_STATE_CANCELLED,
)


# -- measurements ----------------------------------------------------------------------------


def peak_rss_mib(pid: int) -> float:
    """VmHWM of process `pid` (the peak RSS since its last reset), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss(pid: int) -> None:
    """Sets VmHWM back to the current RSS (proc(5): clear_refs, value 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class Usage:
    """One server's share of a transfer."""

    cpu: float = 0.0  # the server process, user+sys seconds
    workers: float = 0.0  # its privsep workers
    peak: float = 0.0  # VmHWM, MiB


@dataclass
class Row:
    method: str
    seconds: float = 0.0
    files: int = 0
    bytes: int = 0
    command_cpu: float | None = None  # baselines: the command's user+sys seconds
    servers: dict[str, Usage] = field(default_factory=dict)  # gateway rows: "A", "B"
    error: str = ""


def run_as(argv: list[str], uid: int, gid: int) -> tuple[float, float]:
    """Runs `argv` as uid/gid; (wall seconds, user+sys CPU seconds of it and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, user=uid, group=gid, extra_groups=[], check=True)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


_copies = itertools.count(1)


def fresh(directory: Path, stem: str) -> Path:
    """A destination name not used before in this run."""
    return directory / f"{stem}-{next(_copies)}"


def settle(path: Path) -> None:
    """After a run (not timed): flushes, so its writeback does not disturb the next run, and
    removes the copy if it is a single file. Trees stay until the end: on ext4 without a
    journal, creating inodes within 60 s of deleting many others scans past the recently
    deleted ones (fs/ext4/ialloc.c, recently_deleted()); here that made a `cp -r` of the
    small files after an `rm -rf` of a previous copy up to 20 times slower."""
    if path.is_file():
        path.unlink()
    os.sync()


def baselines(source: Path) -> list[tuple[str, Callable[[Path], list[str]]]]:
    """The copy commands compared, as functions of the destination."""

    def cp(to: Path) -> list[str]:
        return ["cp", "-r", str(source), str(to)]

    def cp_sync(to: Path) -> list[str]:
        return ["sh", "-c", 'cp -r "$1" "$2" && sync -f "$2"', "sh", str(source), str(to)]

    def rsync(to: Path) -> list[str]:  # a trailing slash: the tree's contents go into `to`
        return ["rsync", "-a", f"{source}/" if source.is_dir() else str(source), str(to)]

    return [("cp -r", cp), ("cp -r && sync", cp_sync), ("rsync -a", rsync)]


def baseline(
    method: str,
    argv: Callable[[Path], list[str]],
    target: Callable[[], Path],
    uid: int,
    gid: int,
    files: int,
    size: int,
) -> Row:
    """The median (by wall time) of 3 runs of a copy command, each to a new destination."""
    runs = []
    for _ in range(3):
        destination = target()
        runs.append(run_as(argv(destination), uid, gid))
        settle(destination)
    seconds, cpu = sorted(runs)[1]
    return Row(method, seconds, files, size, command_cpu=cpu)


# -- test data ------------------------------------------------------------------------------


def write_data(workdir: Path, size: int, files: int, uid: int, gid: int) -> tuple[Path, Path, int]:
    """`big.bin` (`size` random bytes) and `small/dNNN/fNNNNN` (`files` files of 1-8 KiB),
    owned by the user; returns (big, small, total bytes of small)."""
    big = workdir / "big.bin"
    with open(big, "wb") as f:
        left = size
        while left:
            data = os.urandom(min(4 * MiB, left))
            f.write(data)
            left -= len(data)
    small = workdir / "small"
    small.mkdir()
    directories = max(1, min(100, files // 10))
    rng = random.Random(7)
    small_bytes = 0
    for i in range(files):
        directory = small / f"d{i % directories:03d}"
        directory.mkdir(exist_ok=True)
        n = rng.randint(1024, 8 * 1024)
        (directory / f"f{i:05d}").write_bytes(os.urandom(n))
        small_bytes += n
    for root, dirs, names in os.walk(workdir):
        os.chown(root, uid, gid)
        for name in dirs + names:
            os.chown(os.path.join(root, name), uid, gid)
    os.sync()
    # Page-cache warm: everything read once (just written, so this only makes sure).
    for root, _, names in os.walk(workdir):
        for name in names:
            with open(os.path.join(root, name), "rb", buffering=0) as f:
                while f.read(4 * MiB):
                    pass
    return big, small, small_bytes


# -- the servers ----------------------------------------------------------------------------


def hpcgate_server(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [str(BIN / "hpcgate-server"), *args], env=env, capture_output=True, text=True, check=True
    ).stdout


@dataclass
class Server:
    name: str
    port: int
    directory: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    @classmethod
    def configure(cls, name: str, directory: Path, port: int, extra: str = "") -> Server:
        config = directory / "hpcgate.toml"
        config.write_text(
            '[privsep]\nservice_user = ""\n'  # one root process: state in a private temp dir
            '[http]\nlisten = "127.0.0.1:0"\n'  # the HTTP listener on a free port
            f'[server]\nlisten = "127.0.0.1:{port}"\nstate_dir = "{directory}/state"\n'
            f'log_level = "warning"\n[rate_limits]\nenabled = false\n{extra}'
        )
        return cls(name, port, directory, dict(os.environ, HPCGATE_CONFIG=str(config)))

    def start(self) -> None:
        self.log = open(self.directory / "server.log", "wb")  # noqa: SIM115 - the server's life
        self.process = subprocess.Popen(
            [str(BIN / "hpcgate-server"), "serve"], env=self.env, stderr=self.log
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log is not None:
            self.log.close()

    def log_tail(self) -> str:
        text = (self.directory / "server.log").read_text(errors="replace")
        return f"server {self.name} log (tail):\n{text[-2000:]}"


def register_peer_client(b: Server, key_file: Path) -> str:
    """At B: a client acting as bob (read, write; loopback only); its private key goes to
    `key_file`. Returns the client id."""
    out = hpcgate_server(
        b.env,
        "clients",
        "add",
        "--user",
        PEER_USER,
        "--scope",
        "read",
        "--scope",
        "write",
        "--cidr",
        "127.0.0.1/32",
        "--expires",
        "12h",
        "--description",
        "transfers_bench: server A",
    )
    client_id = re.search(r"^client id: (\S+)$", out, re.MULTILINE)
    key = re.search(r"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----\n", out, re.DOTALL)
    if client_id is None or key is None:
        raise RuntimeError(f"unexpected output of `clients add`:\n{out}")
    key_file.write_text(key[0])
    key_file.chmod(0o600)
    return client_id[1]


def peer_table(b: Server, client_id: str, key_file: Path) -> str:
    return (
        f'\n[[peers]]\nid = "{PEER_ID}"\naddress = "127.0.0.1:{b.port}"\n'
        f'client_id = "{client_id}"\nprivate_key_file = "{key_file}"\ntls = false\n'
        f'allowed_users = ["{USER}"]\ntimeout = 120.0\n'
    )


# -- transfers through the gateway ----------------------------------------------------------


def local(path: Path | str) -> tasks_pb2.TransferEndpoint:
    return tasks_pb2.TransferEndpoint(system="local", path=str(path))


def remote(path: Path | str) -> tasks_pb2.TransferEndpoint:
    return tasks_pb2.TransferEndpoint(facility=PEER_ID, path=str(path))


@dataclass
class Gateway:
    storage: storage_pb2_grpc.StorageServiceStub
    tasks: tasks_pb2_grpc.TasksServiceStub
    metadata: list[tuple[str, str]]
    servers: list[Server]

    async def copy(
        self,
        method: str,
        source: tasks_pb2.TransferEndpoint,
        destination: tasks_pb2.TransferEndpoint,
        expected: tuple[int, int],
        recursive: bool = False,
    ) -> Row:
        """One StartTransfer COPY, watched until it ends; the servers' CPU and peak RSS.
        `expected`: the files and bytes the task must report transferred and verified."""
        row = Row(method)
        before = {}
        for server in self.servers:
            reset_peak_rss(server.pid)
            before[server.name] = (cpu_seconds(server.pid), descendants_cpu_seconds(server.pid))
        t0 = time.perf_counter()
        task = None
        try:
            started = await self.storage.StartTransfer(
                storage_pb2.StartTransferRequest(
                    kind=tasks_pb2.TRANSFER_KIND_COPY,
                    source=source,
                    destination=destination,
                    recursive=recursive,
                    preserve=True,
                ),
                metadata=self.metadata,
            )
            task = started.task
            async for message in self.tasks.WatchTask(
                tasks_pb2.WatchTaskRequest(name=task.name), metadata=self.metadata
            ):
                if message.WhichOneof("kind") == "task":
                    task = message.task
                    if task.state in ENDED:
                        break
        except grpc.aio.AioRpcError as e:
            row.error = f"{e.code().name}: {e.details()}"
        row.seconds = time.perf_counter() - t0
        for server in self.servers:
            cpu0, workers0 = before[server.name]
            row.servers[server.name] = Usage(
                cpu_seconds(server.pid) - cpu0,
                descendants_cpu_seconds(server.pid) - workers0,
                peak_rss_mib(server.pid),
            )
        if task is not None and not row.error:
            result = task.transfer_result
            row.files, row.bytes = result.files_transferred, result.bytes_transferred
            done = (result.files_transferred, result.bytes_transferred)
            if task.state != tasks_pb2.TASK_STATE_SUCCEEDED:
                state = tasks_pb2.TaskState.Name(task.state)
                row.error = f"{state}: {task.error.message}"
            elif done != expected or result.files_verified != expected[0]:
                row.error = (
                    f"{done[0]} files, {done[1]} bytes, {result.files_verified} verified; "
                    f"expected {expected[0]} files, {expected[1]} bytes"
                )
        print(f"  {method}: {row.seconds:.2f} s {row.error}", file=sys.stderr)
        return row


async def gateway_rows(
    servers: list[Server],
    token: str,
    data: dict[str, tuple[Path, int, int]],
    workdir: Path,
    peerdir: Path | None,
) -> dict[str, list[Row]]:
    """The StartTransfer rows of each data set: local copy, then (with `peerdir`) push to B
    and pull back from B."""
    rows: dict[str, list[Row]] = {name: [] for name in data}
    for server in servers:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as probe:
            await asyncio.wait_for(probe.channel_ready(), 60)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{servers[0].port}") as channel:
        gw = Gateway(
            storage_pb2_grpc.StorageServiceStub(channel),
            tasks_pb2_grpc.TasksServiceStub(channel),
            [("authorization", f"Bearer {token}")],
            servers,
        )
        # Warm-up, untimed: starts alice's worker at A (and bob's at B, A's peer channel and
        # token exchange) before anything is measured.
        seed = workdir / "warm-up.txt"
        seed.write_text("warm-up\n")
        os.chown(seed, *owner(workdir))
        targets = [local(workdir / "warm-up.copy")]
        if peerdir is not None:
            targets.append(remote(peerdir / "warm-up.txt"))
        for end in targets:
            warm = await gw.copy("warm-up", local(seed), end, (1, 8))
            if warm.error:
                raise RuntimeError(f"warm-up transfer failed: {warm.error}")
        for name, (source, files, size) in data.items():
            tree, target = source.is_dir(), fresh(workdir, f"gateway-{source.name}")
            rows[name].append(
                await gw.copy(LOCAL, local(source), local(target), (files, size), tree)
            )
            settle(target)
        if peerdir is None:
            return rows
        for name, (source, files, size) in data.items():
            tree = source.is_dir()
            there, back = fresh(peerdir, source.name), fresh(workdir, f"pulled-{source.name}")
            rows[name].append(
                await gw.copy(PUSH, local(source), remote(there), (files, size), tree)
            )
            settle(Path("/"))  # flushes only: the pull reads this copy
            rows[name].append(await gw.copy(PULL, remote(there), local(back), (files, size), tree))
            settle(back)
            settle(there)
    return rows


def owner(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid


# -- the table ------------------------------------------------------------------------------


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def print_table(
    data: dict[str, tuple[Path, int, int]], rows: dict[str, list[Row]], before: str
) -> None:
    load = loadavg()
    print(
        "\nStorageService.StartTransfer (COPY, preserve) vs cp/rsync, within alice's home on this"
        f"\nmachine ({os.cpu_count()} CPUs; load average {before} at start, {load} at end)."
        "\nEvery run is page-cache warm (sources read just before, nothing dropped). The gateway"
        "\nverifies every file's SHA-256 at the destination (reads it back) and flushes with"
        "\nsyncfs; cp and rsync do neither: `cp -r && sync` (`sync -f`: syncfs) is the fairer one."
        "\nBaselines: median of 3 runs, as alice. Gateway: one run each, StartTransfer until"
        "\nWatchTask shows the end. push/pull: server A <-> server B (facility) on loopback;"
        "\na large file: B's Upload fsyncs it, then A has B re-read it (Checksum); small files:"
        "\nin batches (UploadFiles / DownloadFiles), each file verified, one syncfs per checkpoint."
    )
    print(
        "  x cp, x c+s, x rsync  gateway speed over cp -r's, cp -r && sync's, rsync -a's\n"
        "  x gw                  push/pull MiB/s over the local StartTransfer's (0.5 = half)\n"
        "  cmd CPU               the baseline command's user+sys CPU-seconds\n"
        "  A/B CPU srv+wrk       server process + its privsep workers, user+sys CPU-seconds\n"
        "  A/B RSS               server process peak RSS (VmHWM, reset before each run), MiB\n"
    )
    header = (
        f"{'method':<19} {'seconds':>7} {'MiB/s':>7} {'files/s':>7} {'x cp':>5} {'x c+s':>5} "
        f"{'x rsync':>7} {'x gw':>5} {'cmd CPU':>7} {'A CPU srv+wrk':>13} {'A RSS':>5} "
        f"{'B CPU srv+wrk':>13} {'B RSS':>5}"
    )
    for name, (_, files, size) in data.items():
        print(f"{name}:")
        print(header)
        print("-" * len(header))
        section = rows[name]
        base = {r.method: r for r in section if r.command_cpu is not None}
        gateway_local = next((r for r in section if r.method == LOCAL), None)

        def rate(value: float) -> str:
            return f"{value:.0f}" if value >= 10 else f"{value:.2f}"

        def mibs(r: Row, size: int = size) -> float:
            return size / MiB / r.seconds

        def ratio(r: Row, reference: Row | None) -> str:
            return f"{mibs(r) / mibs(reference):.2f}" if reference and not reference.error else "-"

        for r in section:
            if r.error:
                print(f"{r.method:<19} FAILED after {r.seconds:.2f} s: {r.error}"[:160])
                continue
            cells = ["-", "-", "-", "-"]
            if r.servers:  # the gateway's rows, local and across facilities
                cells[:3] = [ratio(r, base.get(m)) for m in ("cp -r", "cp -r && sync", "rsync -a")]
            if r.servers and r.method != LOCAL:
                cells[3] = ratio(r, gateway_local)
            usage = []
            for server in ("A", "B"):
                u = r.servers.get(server)
                usage += [f"{u.cpu:.2f}+{u.workers:.2f}", f"{u.peak:.0f}"] if u else ["-", "-"]
            cmd = f"{r.command_cpu:.2f}" if r.command_cpu is not None else "-"
            print(
                f"{r.method:<19} {r.seconds:>7.2f} {mibs(r):>7.1f} {rate(files / r.seconds):>7} "
                f"{cells[0]:>5} {cells[1]:>5} {cells[2]:>7} {cells[3]:>5} {cmd:>7} "
                f"{usage[0]:>13} {usage[1]:>5} {usage[2]:>13} {usage[3]:>5}"
            )
        gw_rows = [r for r in section if r.servers and not r.error]
        if files > 1 and gw_rows:
            per_file = ", ".join(f"{r.method} {r.seconds / files * 1000:.2f}" for r in gw_rows)
            cp = base.get("cp -r")
            cp_ms = f"; cp -r {cp.seconds / files * 1000:.3f}" if cp else ""
            print(f"  ms per file: {per_file}{cp_ms}")


# -- main -----------------------------------------------------------------------------------


def run(args: argparse.Namespace, workdir: Path, peerdir: Path | None) -> None:
    uid, gid = owner(workdir)
    before = loadavg()
    t0 = time.perf_counter()
    big, small, small_bytes = write_data(workdir, args.size, args.files, uid, gid)
    directories = len(list(small.iterdir()))
    print(f"wrote the data in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    size_label = human(args.size).replace("G", " GiB").replace("M", " MiB").replace("K", " KiB")
    data = {
        f"(a) one {size_label} file (random bytes)": (big, 1, args.size),
        f"(b) {args.files} files of 1-8 KiB in {directories} directories "
        f"({small_bytes / MiB:.1f} MiB)": (small, args.files, small_bytes),
    }
    # An untimed copy first: in a VM, memory the guest has not touched yet costs a host page
    # fault per page on first use, which would be charged to whichever run came first.
    subprocess.run(["cp", str(big), str(workdir / "untimed.bin")], check=True)
    settle(workdir / "untimed.bin")

    rows: dict[str, list[Row]] = {}
    for name, (source, files, size) in data.items():
        rows[name] = []
        for method, argv in baselines(source):
            target = partial(fresh, workdir, f"copy-{source.name}")
            rows[name].append(baseline(method, argv, target, uid, gid, files, size))
            print(f"  {method} {source.name}: {rows[name][-1].seconds:.2f} s", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="hpcgate-transfers-bench-") as tmp:
        ports = [free_port()]
        while len(ports) < 2:
            port = free_port()
            if port not in ports:
                ports.append(port)
        servers: list[Server] = []
        extra = ""
        if peerdir is not None:
            (Path(tmp) / "b").mkdir()
            b = Server.configure("B", Path(tmp) / "b", ports[1])
            key_file = Path(tmp) / "site-b.key"
            extra = peer_table(b, register_peer_client(b, key_file), key_file)
            servers.append(b)
        (Path(tmp) / "a").mkdir()
        a = Server.configure("A", Path(tmp) / "a", ports[0], extra)
        servers.insert(0, a)
        token = hpcgate_server(
            a.env, "token", "--user", USER, "--scope", "read", "--scope", "write", "--ttl", "7200"
        ).strip()
        failed = True
        try:
            for server in reversed(servers):
                server.start()
            gateway = asyncio.run(gateway_rows(servers, token, data, workdir, peerdir))
            failed = any(r.error for section in gateway.values() for r in section)
        finally:
            for server in servers:
                server.stop()
            if failed:
                for server in servers:
                    print(server.log_tail(), file=sys.stderr)
    for name in data:
        rows[name] += gateway[name]
    print_table(data, rows, before)


def make_private_dir(user: str, prefix: str) -> Path:
    entry = pwd.getpwnam(user)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=entry.pw_dir))
    os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o700)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=GiB, help="large file, e.g. 1G, 256M")
    parser.add_argument("--files", type=int, default=10000, help="number of small files")
    parser.add_argument("--skip-peer", action="store_true", help="no cross-facility runs")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("transfers_bench.py runs as root: the servers act as alice and bob (privsep)")
    created: list[Path] = []
    try:
        workdir = make_private_dir(USER, "hpcgate-transfers-bench-")
        created.append(workdir)
        peerdir = None
        if not args.skip_peer:
            peerdir = make_private_dir(PEER_USER, "hpcgate-transfers-bench-")
            created.append(peerdir)
        run(args, workdir, peerdir)
    finally:
        for path in created:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
