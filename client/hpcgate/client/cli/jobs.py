"""Slurm-like commands on single jobs: sbatch, scancel, swait, slog."""

from __future__ import annotations

import asyncio
import re
import sys
from typing import TYPE_CHECKING, Any

import click

from hpcgate.client.cli import output
from hpcgate.client.cli.session import Session, async_command
from hpcgate.client.errors import HpcgateError
from hpcgate.v1 import compute_pb2

if TYPE_CHECKING:
    from hpcgate.client.jobs import Job

_MEMORY = re.compile(r"^(\d+)([KMGT]?)B?$", re.IGNORECASE)
_MIB = {"K": 1 / 1024, "M": 1, "": 1, "G": 1024, "T": 1024 * 1024}


def state_word(state: int) -> str:
    return compute_pb2.JobState.Name(state).removeprefix("JOB_STATE_")  # type: ignore[arg-type]


def job_status(job: compute_pb2.Job) -> int:
    """The exit status `sbatch --wait` gives for a finished job: the script's exit code,
    128+signal when killed, 1 when it did not complete (cancelled, timed out, ...)."""
    if job.exit_code:
        return job.exit_code
    if job.signal:
        return 128 + job.signal
    return 0 if job.state == compute_pb2.JOB_STATE_COMPLETED else 1


def memory_mib(text: str) -> int:
    """Slurm's --mem syntax (`4G`, `500M`, `2000`: MiB by default) in MiB."""
    match = _MEMORY.match(text.strip())
    if not match:
        raise click.BadParameter(f"{text!r}: use a size like 500M, 4G or 2000 (MiB)")
    return max(1, int(int(match.group(1)) * _MIB[match.group(2).upper()]))


def job_options(**given: Any) -> dict[str, Any]:
    """The JobOptions fields the user set (unset flags are left to the server/Slurm)."""
    options = {k: v for k, v in given.items() if v not in (None, "", ())}
    if "memory" in options:
        options["memory_per_node_mib"] = memory_mib(options.pop("memory"))
    return options


@click.command(context_settings={"show_default": False})
@click.argument("script")
@click.argument("arguments", nargs=-1)
@click.option("-J", "--job-name", help="Job name.")
@click.option("-p", "--partition", help="Partition.")
@click.option("-A", "--account", help="Account (project) to charge.")
@click.option("-q", "--qos", help="Quality of service.")
@click.option("-t", "--time", "time_limit", help="Time limit, e.g. 10, 1:00:00, 2-00:00:00.")
@click.option("-N", "--nodes", type=int, help="Number of nodes.")
@click.option("-n", "--ntasks", type=int, help="Number of tasks.")
@click.option("-c", "--cpus-per-task", type=int, help="CPUs per task.")
@click.option("--mem", "memory", help="Memory per node, e.g. 4G (MiB without a unit).")
@click.option("-G", "--gpus", help="GPUs, e.g. 1 or a100:2.")
@click.option("-C", "--constraint", "constraints", help="Node features.")
@click.option("--reservation", help="Run in this advance reservation (`hpcgate reserve`).")
@click.option("-d", "--dependency", help="Dependencies, e.g. afterok:123.")
@click.option("-a", "--array", help="Job array indices, e.g. 0-9%2.")
@click.option("-o", "--output", "stdout_path", help="Standard output file (on the system).")
@click.option("-e", "--error", "stderr_path", help="Standard error file (on the system).")
@click.option("-D", "--chdir", "working_directory", help="Working directory (on the system).")
@click.option("--remote", is_flag=True, help="SCRIPT is a path on the system, not a local file.")
@click.option("--parsable", is_flag=True, help="Print only the job id.")
@click.option("-W", "--wait", is_flag=True, help="Wait for the job; exit with its exit code.")
@click.option(
    "-f", "--follow", is_flag=True, help="Stream its output until it ends (implies --wait)."
)
@async_command
async def sbatch(
    s: Session, /, script: str, arguments: tuple[str, ...], remote: bool, parsable: bool,
    wait: bool, follow: bool, working_directory: str | None, **options: Any,
) -> int:  # fmt: skip
    """Submit a batch script.

    SCRIPT is a local file, `-` for stdin, or with --remote a path on the system.

    Arguments after the script (use `--` before any starting with `-`) go to it."""
    system = await s.system()
    if remote:
        source = {"script_path": await s.path(script)}
    elif script == "-":
        source = {"script": await asyncio.to_thread(sys.stdin.read)}
    else:  # read here and sent inline; its file name is the default job name
        source = {"local_script": script}
    if working_directory:
        options["working_directory"] = await s.path(working_directory)
    job = await s.client.jobs.submit(system, **source, arguments=arguments,
                                     **job_options(**options))  # fmt: skip
    if not s.json:
        output.line(job.id if parsable else f"Submitted batch job {job.id}")
    if not (wait or follow):
        if s.json:
            output.emit_json(job.message)
        return 0
    if follow:  # from its start: until then Slurm may not say where the output goes
        await job.wait(until="running")
        await _copy_output(job, "stdout", follow=True, to_stderr=s.json)
    job = await job.wait()
    if s.json:
        output.emit_json(job.message)
    else:
        output.note(_ended(job.message))
    return job_status(job.message)


def _ended(job: compute_pb2.Job) -> str:
    word = state_word(job.state)
    code = f"exit {job.exit_code}" + (f", signal {job.signal}" if job.signal else "")
    return f"job {job.job_id} {word} ({code})"


async def _copy_output(job: Job, stream: str, *, follow: bool, to_stderr: bool = False) -> None:
    sink = sys.stderr.buffer if to_stderr else sys.stdout.buffer
    async for chunk in job.output(stream, follow=follow, text=False):
        sink.write(chunk if isinstance(chunk, bytes) else chunk.encode())
        sink.flush()


@click.command()
@click.argument("job_ids", metavar="JOB...", nargs=-1, required=True)
@async_command
async def scancel(s: Session, job_ids: tuple[str, ...]) -> int:
    """Cancel jobs.

    Every job is tried; the first failure sets the exit status."""
    system = await s.system()
    status, cancelled = 0, []
    for job_id in job_ids:
        try:
            cancelled.append((await s.client.jobs.cancel(job_id, system)).message)
        except HpcgateError as e:
            output.stderr.print(f"hpcgate: scancel {job_id}: {e}", markup=False)
            status = status or e.exit_code
    if s.json:
        output.emit_json({"jobs": cancelled})
    elif s.settings.verbose:
        for job in cancelled:
            output.note(f"job {job.job_id} {state_word(job.state)}")
    return status


@click.command()
@click.argument("job_ids", metavar="JOB...", nargs=-1, required=True)
@click.option("--running", is_flag=True, help="Only until the jobs have started.")
@click.option("--max-wait", type=float, help="Give up after this many seconds (exit 4).")
@async_command
async def swait(s: Session, job_ids: tuple[str, ...], running: bool, max_wait: float | None) -> int:
    """Wait for jobs to finish (or start).

    Exits with the first non-zero job status (as `sbatch --wait` does)."""
    system = await s.system()
    until = "running" if running else "finished"

    async def one(job_id: str) -> compute_pb2.Job:
        job = await s.client.jobs.get(job_id, system)
        done = (await job.wait(until=until, timeout=max_wait)).message
        if not s.json:
            output.line(
                _ended(done) if not running else f"job {done.job_id} {state_word(done.state)}"
            )
        return done

    finished = await asyncio.gather(*(one(j) for j in job_ids))
    if s.json:
        output.emit_json({"jobs": list(finished)})
    return 0 if running else next((c for c in map(job_status, finished) if c), 0)


@click.command()
@click.argument("job_id", metavar="JOB")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the job ends.")
@click.option("--stderr", "errors", is_flag=True, help="Standard error instead of output.")
@async_command
async def slog(s: Session, job_id: str, follow: bool, errors: bool) -> None:
    """Print a job's output (or --stderr)."""
    job = await s.client.jobs.get(job_id, await s.system())
    if follow:  # a pending job's output file may not be known yet
        await job.wait(until="running")
    await _copy_output(job, "stderr" if errors else "stdout", follow=follow)
