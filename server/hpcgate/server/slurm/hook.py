#!/usr/bin/python3 -IS
"""Slurm's controller tells the gateways that a job started or ended.

Installed as the controller's hook (docs/slurm-hooks.md): `PrologSlurmctld` (a job
starts) and `JobCompLoc` with `JobCompType=jobcomp/script` (a job ended, whatever the
way: completed, failed, cancelled while pending or running, timed out). It sends one
datagram per call to every gateway socket in HOOK_DIR and exits 0 at once: it never
waits for a gateway, never fails or delays a job (a full or missing socket just loses
the notice; the gateway's poll is the fallback), and starts in about 10 ms, since it
imports nothing but the standard library (`python3 -I -S`).

The notice is JSON: {"v": 1, "event": "started"|"ended", "job": "123",
"cluster": "...", "system": "...", "time": <Unix time of the call>}. `parse_notice` is
what the gateway reads it with (events/hook_listener.py).
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import sys
import time
from dataclasses import dataclass

# Where gateways bind their sockets (`[watch] hook_socket`); override with HPCGATE_HOOK_DIR.
HOOK_DIR = "/run/hpcgate-hooks"
VERSION = 1
MAX_NOTICE_BYTES = 512
EVENTS = ("started", "ended")
_JOB_ID = re.compile(r"^[0-9]{1,10}(?:_[0-9]{1,10})?$")
_NAME = re.compile(r"^[A-Za-z0-9._-]{0,64}$")


@dataclass(frozen=True)
class Notice:
    event: str  # "started" or "ended"
    job_id: str  # Slurm's job id ("123"; an array task's own id, or "123_4" from the CLI)
    cluster: str  # Slurm's ClusterName, "" when unknown
    system: str  # the gateway's system id, "" when the sender did not name one
    time: float  # Unix time the hook was called


def notice_from_environment(env: dict[str, str]) -> Notice | None:
    """The notice a Slurm hook's environment describes, or None when it is not one.

    PrologSlurmctld/EpilogSlurmctld set SLURM_SCRIPT_CONTEXT and SLURM_JOB_ID;
    jobcomp/script sets JOBID (and no SLURM_ variables). Either id is the job's own, an
    array task's too: the number the gateway's records are keyed by."""
    if env.get("SLURM_JOB_ID"):
        context = env.get("SLURM_SCRIPT_CONTEXT", "")
        event = "ended" if context.startswith("epilog") else "started"
        job, cluster = env["SLURM_JOB_ID"], env.get("SLURM_CLUSTER_NAME", "")
    elif env.get("JOBID"):
        event, job, cluster = "ended", env["JOBID"], env.get("CLUSTER", "")
    else:
        return None
    return Notice(event, job, cluster, "", time.time())


def encode_notice(notice: Notice) -> bytes:
    return json.dumps(
        {"v": VERSION, "event": notice.event, "job": notice.job_id,
         "cluster": notice.cluster, "system": notice.system, "time": notice.time},
        separators=(",", ":"),
    ).encode()  # fmt: skip


def parse_notice(data: bytes) -> Notice | None:
    """A notice from a datagram, or None when it is not a valid one (never raises)."""
    if len(data) > MAX_NOTICE_BYTES:
        return None
    try:
        fields = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(fields, dict) or fields.get("v") != VERSION:
        return None
    event, job = fields.get("event"), fields.get("job")
    cluster, system = fields.get("cluster", ""), fields.get("system", "")
    stamp = fields.get("time")
    if event not in EVENTS or not isinstance(job, str) or not _JOB_ID.match(job):
        return None
    if not (isinstance(cluster, str) and _NAME.match(cluster)):
        return None
    if not (isinstance(system, str) and _NAME.match(system)):
        return None
    if isinstance(stamp, bool) or not isinstance(stamp, int | float) or not math.isfinite(stamp):
        return None
    return Notice(event, job, cluster, system, float(stamp))


def send(notice: Notice, directory: str = HOOK_DIR) -> int:
    """Sends the notice to every gateway socket in `directory`, never blocking; returns
    how many took it. Errors (no directory, a gateway gone, a full queue) are ignored."""
    data = encode_notice(notice)
    delivered = 0
    try:
        entries = [e.path for e in os.scandir(directory) if e.name.endswith(".sock")]
    except OSError:
        return 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK) as sock:
        for path in entries:
            try:
                sock.sendto(data, path)
                delivered += 1
            except OSError:
                continue
    return delivered


def main() -> int:
    """The hook's entry point: always exits 0, so that Slurm never holds a job for it."""
    try:
        notice = notice_from_environment(dict(os.environ))
        if notice is not None:
            send(notice, os.environ.get("HPCGATE_HOOK_DIR", HOOK_DIR))
    except Exception:  # noqa: S110 - a hook must never fail or delay the job
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
