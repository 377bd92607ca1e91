"""Measurements shared by the benchmarks: controller RPC counts, process memory and CPU,
sizes."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import socket
import subprocess
from pathlib import Path

MiB = 1024 * 1024
GiB = 1024 * MiB
TICK = os.sysconf("SC_CLK_TCK")


def sdiag_rpc_total() -> int:
    """Total RPCs slurmctld has served (sum of sdiag's per-message-type counts)."""
    out = subprocess.run(["sdiag"], capture_output=True, text=True, check=True).stdout
    section = out.split("Remote Procedure Call statistics by message type", 1)[-1]
    section = section.split("Remote Procedure Call statistics by user", 1)[0]
    return sum(int(n) for n in re.findall(r"count:(\d+)", section))


def rss_mib(pid: int) -> float:
    """Resident memory of process `pid`, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_size(text: str) -> int:
    """`1G`, `256M`, `64K`, `1GiB`, `4096` -> bytes (binary units)."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1G, 256M, 64K)")
    return int(match[1]) * {"": 1, "K": 1024, "M": MiB, "G": GiB}[match[2].upper()]


def human(n: int) -> str:
    for unit, factor in (("G", GiB), ("M", MiB), ("K", 1024)):
        if n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n)


def cpu_seconds(pid: int) -> float:
    """user + sys CPU seconds of process `pid` (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime: fields 14, 15


def descendants_cpu_seconds(pid: int) -> float:
    """user + sys CPU seconds of the live descendants of `pid` (the privsep workers), plus
    what its reaped children used (cutime + cstime of `pid`)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    total = 0.0
    for child in found:
        with contextlib.suppress(OSError):  # exited meanwhile
            total += cpu_seconds(child)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return total + (int(fields[13]) + int(fields[14])) / TICK  # cutime, cstime


def rpc_counts(text: str) -> tuple[dict[str, int], dict[str, int]]:
    """(RPC count by message type, by user) from the text of `sdiag` or of slurmdbd's
    `sacctmgr show stats` (the same "Remote Procedure Call statistics by ..." layout)."""
    by_type: dict[str, int] = {}
    by_user: dict[str, int] = {}
    section: dict[str, int] | None = None
    for line in text.splitlines():
        if "Remote Procedure Call statistics by message type" in line:
            section = by_type
        elif "Remote Procedure Call statistics by user" in line:
            section = by_user
        elif line[:1] not in ("", " ", "\t"):
            section = None  # the next heading (e.g. "Pending RPC statistics")
        elif section is not None and (m := re.match(r"\s+(\S+)\s+\(\s*\d+\)\s+count:(\d+)", line)):
            section[m[1]] = section.get(m[1], 0) + int(m[2])
    return by_type, by_user


def slurmctld_rpc_counts() -> tuple[dict[str, int], dict[str, int]]:
    """slurmctld's RPC counts (`sdiag`) since its start or the last `reset_rpc_counts`."""
    return rpc_counts(subprocess.run(["sdiag"], capture_output=True, text=True, check=True).stdout)


def slurmdbd_rpc_counts() -> tuple[dict[str, int], dict[str, int]]:
    """slurmdbd's RPC counts (`sacctmgr show stats`) since its start or the last reset."""
    out = subprocess.run(
        ["sacctmgr", "show", "stats"], capture_output=True, text=True, check=True
    ).stdout
    return rpc_counts(out)


def reset_rpc_counts() -> None:
    """Zero slurmctld's (`sdiag --reset`) and slurmdbd's (`sacctmgr clear stats`) RPC
    statistics. Needs root (or SlurmUser)."""
    subprocess.run(["sdiag", "--reset"], capture_output=True, check=True)
    subprocess.run(["sacctmgr", "-i", "clear", "stats"], capture_output=True, check=True)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile `q` (0-100) of `values` (p99 of 30 values is the largest)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(len(ordered) * q / 100) - 1))]
