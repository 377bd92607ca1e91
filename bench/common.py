"""Measurements shared by the benchmarks: controller RPC counts and process memory."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path


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
