"""Slurm-like listings: squeue (also live), sacct, sinfo."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from hpcgate.client.cli import output
from hpcgate.client.cli.jobs import state_word
from hpcgate.client.cli.session import Session, async_command
from hpcgate.v1 import compute_pb2, compute_pb2_grpc

ACTIVE = ["PENDING", "RUNNING", "SUSPENDED", "COMPLETING", "CONFIGURING", "REQUEUED"]
SQUEUE = ["JOBID", "PARTITION", "NAME", "USER", "STATE", "TIME", "NODES", "NODELIST(REASON)"]
SACCT = ["JOBID", "NAME", "PARTITION", "ACCOUNT", "STATE", "EXITCODE", "ELAPSED", "START", "END"]


def squeue_rows(jobs: Iterable[compute_pb2.Job]) -> Iterable[list[str]]:
    for j in jobs:
        where = (
            f"({j.reason or 'None'})" if j.state == compute_pb2.JOB_STATE_PENDING else j.node_list
        )
        time = output.duration(j.elapsed, empty="0:00")
        yield [j.job_id, j.partition, j.job_name, j.user, state_word(j.state), time,
               str(j.node_count or ""), where]  # fmt: skip


def sacct_rows(jobs: Iterable[compute_pb2.Job]) -> Iterable[list[str]]:
    for j in jobs:
        yield [j.job_id, j.job_name, j.partition, j.account, state_word(j.state),
               f"{j.exit_code}:{j.signal}", output.duration(j.elapsed, empty="00:00:00", full=True),
               output.when(j.start_time, empty="Unknown"), output.when(j.end_time,
               empty="Unknown")]  # fmt: skip


def states_of(given: str | None, default: list[str]) -> list[str]:
    if given:
        return [w.strip().upper() for w in given.split(",") if w.strip()]
    return default


_RELATIVE = re.compile(r"^now-(\d+)(minutes?|hours?|days?|weeks?)$")


def since(text: str) -> datetime:
    """sacct's --starttime: an ISO date or time (local), or `now-<N><minutes|hours|days|weeks>`."""
    relative = _RELATIVE.match(text.strip().lower())
    if relative:
        unit = relative.group(2).rstrip("s") + "s"
        return datetime.now(UTC) - timedelta(**{unit: int(relative.group(1))})
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: use 2026-01-31, 2026-01-31T08:00 or now-2days", param_hint="--starttime"
        ) from None


async def list_jobs(s: Session, **query: Any) -> list[compute_pb2.Job]:
    system = await s.system()
    return [job.message async for job in s.client.jobs.list(system, **query)]


@click.command()
@click.option("-t", "--states", help="Only these states (comma-separated, e.g. PENDING,RUNNING).")
@click.option("--all-states", is_flag=True, help="Finished jobs too (the last day's).")
@click.option("-a", "--all-users", is_flag=True, help="Everyone's jobs (where allowed).")
@click.option("-i", "--watch", is_flag=True, help="A live list, until interrupted.")
@async_command
async def squeue(
    s: Session, states: str | None, all_states: bool, all_users: bool, watch: bool
) -> None:
    """Your pending and running jobs."""
    wanted = states_of(states, [] if all_states else ACTIVE)
    if watch:
        from hpcgate.client.cli.live import watch_jobs

        await watch_jobs(s, wanted, all_users)
        return
    jobs = await list_jobs(s, states=wanted or None, all_users=all_users)
    if s.json:
        output.emit_json({"jobs": jobs})
    else:
        output.table(SQUEUE, squeue_rows(jobs), state=4)


@click.command()
@click.option("-s", "--states", help="Only these states (comma-separated).")
@click.option(
    "-S", "--starttime", help="Submitted since: 2026-01-31[THH:MM], now-2days, now-6hours."
)
@click.option("-a", "--all-users", is_flag=True, help="Everyone's jobs (where allowed).")
@async_command
async def sacct(s: Session, states: str | None, starttime: str | None, all_users: bool) -> None:
    """Your jobs, finished ones included.

    Those submitted since --starttime (default: the last day), and all still queued."""
    query: dict[str, Any] = {"states": states_of(states, []) or None, "all_users": all_users}
    if starttime:
        query["submitted_after"] = since(starttime)
    jobs = await list_jobs(s, **query)
    if s.json:
        output.emit_json({"jobs": jobs})
    else:
        output.table(SACCT, sacct_rows(jobs), state=4)


@click.command()
@click.option("-N", "--nodes", "by_node", is_flag=True, help="One line per node.")
@async_command
async def sinfo(s: Session, by_node: bool) -> None:
    """Partitions (or nodes) and their state."""
    stub = compute_pb2_grpc.ComputeServiceStub(s.client.channel)
    parent = f"systems/{await s.system()}"
    if by_node:
        nodes = await s.client.unary(
            stub.ListNodes, compute_pb2.ListNodesRequest(parent=parent, page_size=1000), retry=True
        )
        _print_nodes(s, list(nodes.nodes))
        return
    reply = await s.client.unary(
        stub.ListPartitions, compute_pb2.ListPartitionsRequest(parent=parent), retry=True
    )
    partitions = list(reply.partitions)
    if s.json:
        output.emit_json({"partitions": partitions})
        return
    output.table(["PARTITION", "AVAIL", "TIMELIMIT", "NODES(A/I/O/T)", "CPUS(A/I/O/T)",
                  "NODELIST"], (_partition_row(p) for p in partitions), state=1)  # fmt: skip


def _partition_row(p: compute_pb2.Partition) -> list[str]:
    avail = compute_pb2.PartitionState.Name(p.state).removeprefix("PARTITION_STATE_")
    return [p.partition + ("*" if p.is_default else ""), avail,
            output.duration(p.max_time, empty="infinite"),
            f"{p.allocated_nodes}/{p.idle_nodes}/{p.unavailable_nodes}/{p.total_nodes}",
            f"{p.allocated_cpus}/{p.idle_cpus}/{p.unavailable_cpus}/{p.total_cpus}",
            p.node_list]  # fmt: skip


def _print_nodes(s: Session, nodes: list[compute_pb2.Node]) -> None:
    if s.json:
        output.emit_json({"nodes": nodes})
        return
    rows = ([n.node, compute_pb2.NodeState.Name(n.state).removeprefix("NODE_STATE_"),
             f"{n.allocated_cpus}/{n.cpus}", f"{n.real_memory_mib}", ",".join(n.partitions),
             n.reason] for n in nodes)  # fmt: skip
    output.table(["NODE", "STATE", "CPUS(A/T)", "MEMORY(MiB)", "PARTITIONS", "REASON"], rows,
                 state=1)  # fmt: skip
