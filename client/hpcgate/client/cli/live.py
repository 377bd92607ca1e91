"""`squeue --watch`: the job list kept current from WatchJobs (no polling) — a live
table in a terminal, one line per change in a pipe, NDJSON with --json."""

from __future__ import annotations

import asyncio

import click
import grpc
from google.protobuf import duration_pb2
from rich.live import Live

from hpcgate.client.cli import output
from hpcgate.client.cli.jobs import state_word
from hpcgate.client.cli.queue import SQUEUE, squeue_rows
from hpcgate.client.cli.session import Session
from hpcgate.client.errors import HpcgateError
from hpcgate.v1 import compute_pb2, compute_pb2_grpc


class JobBoard:
    """The jobs matching the filter, updated from snapshots and events."""

    def __init__(self, states: list[str]) -> None:
        unknown = [s for s in states if not hasattr(compute_pb2, f"JOB_STATE_{s}")]
        if unknown:
            raise click.BadParameter(f"no job state {', '.join(unknown)}", param_hint="-t")
        self.states = {getattr(compute_pb2, f"JOB_STATE_{s}") for s in states}
        self.jobs: dict[str, compute_pb2.Job] = {}
        self.revision = 0

    def apply(self, message: compute_pb2.WatchJobsResponse) -> compute_pb2.Job | None:
        """Take in one message; the job it changed, if any."""
        self.revision = max(self.revision, message.revision)
        kind = message.WhichOneof("kind")
        if kind == "snapshot":
            self.jobs.update((j.job_id, j) for j in message.snapshot.jobs)
        elif kind == "event":
            job = message.event.job
            if self.states and job.state not in self.states:
                self.jobs.pop(job.job_id, None)
            else:
                self.jobs[job.job_id] = job
            return job
        elif kind == "resync_required":
            self.jobs.clear()
            self.revision = 0
        return None

    def rows(self) -> list[list[str]]:
        ordered = sorted(self.jobs.values(), key=lambda j: int(j.job_id or 0), reverse=True)
        return list(squeue_rows(ordered))


async def watch_jobs(s: Session, states: list[str], all_users: bool) -> None:
    board = JobBoard(states)
    live = Live(output.rich_table(SQUEUE, []), console=output.stdout, auto_refresh=False) \
        if output.stdout.is_terminal and not s.json else None  # fmt: skip
    if live is not None:
        live.start()
    try:
        drops = 0
        while True:
            revision = board.revision
            try:
                await _follow(s, board, all_users, live)
            except HpcgateError as e:
                if e.code != grpc.StatusCode.UNAVAILABLE:
                    raise
                drops = 0 if board.revision != revision else drops + 1
                delay = s.client.retry.delay(drops, e)
                output.note(f"hpcgate: reconnecting in {delay:.1f} s after: {e.message}")
                await asyncio.sleep(delay)
    finally:
        if live is not None:
            live.stop()


async def _follow(s: Session, board: JobBoard, all_users: bool, live: Live | None) -> None:
    stub = compute_pb2_grpc.ComputeServiceStub(s.client.channel)
    request = compute_pb2.WatchJobsRequest(
        parent=f"systems/{await s.system()}",
        filter=compute_pb2.JobFilter(states=sorted(board.states), user="*" if all_users else ""),
        resume_from_revision=board.revision,
        heartbeat_interval=duration_pb2.Duration(seconds=30),
        include_updates=True,
    )
    async for message in s.client.stream(stub.WatchJobs, request):
        changed = board.apply(message)
        if s.json:
            if message.WhichOneof("kind") != "heartbeat":
                output.emit_line(message)
        elif live is not None:
            live.update(output.rich_table(SQUEUE, board.rows(), state=4), refresh=True)
        elif message.WhichOneof("kind") == "snapshot" and message.snapshot.last:
            output.table(SQUEUE, board.rows(), state=4)
        elif changed is not None:
            output.line(f"{output.when(message.event.time)}  {changed.job_id:<10} "
                        f"{state_word(changed.state):<12} {changed.job_name}")  # fmt: skip
