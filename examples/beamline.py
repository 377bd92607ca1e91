"""The seed workflow of a beamline, end to end, with the hpcgate Python client.

A detector run produces a file of frames; the facility's workflow pushes it to the HPC
system, runs a reduction job on it, follows the job's log while it runs, fetches the
result (verified), copies the run to scratch for the next stage and checks what the
project has spent. After `make run`, as the README says:

    export HPCGATE_TOKEN=...              # alice's token, printed by `make run`
    .venv/bin/python examples/beamline.py [FRAMES_FILE]

Without FRAMES_FILE, 4 MiB of made-up frames are used. Everything runs as the token's user.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hpcgate.client import Client, connect
from hpcgate.v1 import storage_pb2

# The reduction: reads the frames the workflow uploaded, writes a small result file.
REDUCE = """#!/bin/bash
set -euo pipefail
cd "$1"
echo "reducing $(stat -c %s frames.bin) bytes of frames"
sha256sum frames.bin > reduced.txt
echo "frames: $(od -An -tu1 -v frames.bin | wc -w)" >> reduced.txt
echo "reduction done"
"""


@dataclass
class Outcome:
    """What a run of the workflow produced."""

    job_id: str
    job_state: str
    log: str
    result: Path
    archived_to: str
    projects: list[str]


async def beamline(client: Client, frames: Path, results: Path, run: str) -> Outcome:
    """Upload `frames`, reduce them in a Slurm job, fetch the result into `results`, copy
    the run to a scratch filesystem. `run` names the run (its directories)."""
    user = await client.account.user()
    workdir = f"{user.home_directory}/beamline/{run}"
    await client.files.mkdir(workdir, parents=True)

    def show(done: int, total: int | None) -> None:
        print(f"\ruploading {done}/{total} bytes", end="", file=sys.stderr)

    await client.files.upload(frames, f"{workdir}/frames.bin", progress=show)
    print(file=sys.stderr)

    job = await client.jobs.submit(
        script=REDUCE, arguments=[workdir], job_name=f"reduce-{run}", time_limit=10,
        working_directory=workdir, stdout_path=f"{workdir}/reduce.log",
    )  # fmt: skip
    print(f"submitted job {job.id}", file=sys.stderr)
    log = ""
    async for text in job.output(follow=True):  # streamed while the job writes it
        print(text, end="")
        log += str(text)
    await job.wait()  # on WatchJobs: the server says when it ended
    if job.state != "COMPLETED":
        raise SystemExit(f"job {job.id} ended {job.state} (exit code {job.exit_code})")

    result = results / f"{run}-reduced.txt"
    await client.files.download(f"{workdir}/reduced.txt", result, overwrite=True)

    scratch = await scratch_directory(client, user.name)
    archive = f"{scratch}/beamline-{run}"
    task = await client.storage.transfer(workdir, archive, recursive=True)
    await task.wait()  # a durable task on the server: verified copy, survives restarts

    projects = [p.name for p in await client.account.projects()]
    return Outcome(job.id, job.state, log, result, archive, projects)


async def scratch_directory(client: Client, user: str) -> str:
    """The caller's directory on the first scratch filesystem (made if needed)."""
    for fs in await client.storage.filesystems():
        if fs.kind == storage_pb2.FILESYSTEM_KIND_SCRATCH:
            directory = fs.user_path or f"{fs.mount_path.rstrip('/')}/{user}"
            await client.files.mkdir(directory, parents=True)
            return directory
    raise SystemExit("this system has no scratch filesystem")


async def main() -> None:
    run = time.strftime("run-%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory() as scratch:
        if len(sys.argv) > 1:
            frames = Path(sys.argv[1])
        else:
            frames = Path(scratch) / "frames.bin"
            frames.write_bytes(os.urandom(4 * 1024 * 1024))
        # Address from $HPCGATE_ADDRESS, token from $HPCGATE_TOKEN, system $HPCGATE_SYSTEM.
        async with connect(system=os.environ.get("HPCGATE_SYSTEM", "local")) as client:
            outcome = await beamline(client, frames, Path.cwd(), run)
    print(f"job {outcome.job_id} {outcome.job_state}; result in {outcome.result}")
    print(f"run copied to {outcome.archived_to}; projects: {', '.join(outcome.projects)}")


if __name__ == "__main__":
    asyncio.run(main())
