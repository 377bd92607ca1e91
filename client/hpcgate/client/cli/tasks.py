"""Server-side transfers and the tasks that run them: transfer (live progress), tasks."""

from __future__ import annotations

import click

from hpcgate.client.cli import output
from hpcgate.client.cli.progress import bars
from hpcgate.client.cli.session import Session, async_command
from hpcgate.client.tasks import Task
from hpcgate.v1 import tasks_pb2

TASKS = ["TASK", "STATE", "PROGRESS", "CREATED", "DESCRIPTION"]


def _progress_text(task: tasks_pb2.Task) -> str:
    p = task.progress
    total = f"/{output.size(p.bytes_total)}" if p.HasField("bytes_total") else ""
    files = f"/{p.files_total}" if p.HasField("files_total") else ""
    return f"{output.size(p.bytes_done)}{total} {p.files_done}{files} files"


@click.command()
@click.argument("source")
@click.argument("destination")
@click.option("--move", "kind", flag_value="move", help="Move: remove the source after copying.")
@click.option("--sync", "kind", flag_value="sync", help="Copy only what differs.")
@click.option("-r", "--recursive", is_flag=True, help="Directories and their contents.")
@click.option("--to-system", help="Destination system (default: the same one).")
@click.option("--overwrite", is_flag=True, help="Replace existing destination files.")
@click.option("--preserve", is_flag=True, help="Keep modes and modification times.")
@click.option("--delete", is_flag=True, help="With --sync: delete extra destination files.")
@click.option("--no-wait", is_flag=True, help="Print the task id and return at once.")
@async_command
async def transfer(
    s: Session, source: str, destination: str, kind: str | None, recursive: bool,
    to_system: str | None, overwrite: bool, preserve: bool, delete: bool, no_wait: bool,
) -> None:  # fmt: skip
    """Copy, move or sync on the server side.

    The transfer is a durable task on the server: Ctrl-C stops watching, not the task."""
    await s.system()
    destination_path = destination if to_system else await s.path(destination)
    task = await s.client.storage.transfer(
        await s.path(source), destination_path, destination_system=to_system,
        kind=kind or "copy", recursive=recursive, overwrite=overwrite, preserve=preserve,
        delete_extraneous=delete,
    )  # fmt: skip
    if not s.json:
        output.note(f"transfer task {task.id} (`hpcgate tasks {task.id}` to check on it)")
    if not no_wait:
        await _wait_with_bar(s, task)
    if s.json:
        output.emit_json(task.message)
    elif task.done:
        output.line(_summary(task.message))


async def _wait_with_bar(s: Session, task: Task) -> None:
    with bars(quiet=s.json) as progress:
        bar = progress.add_task(f"task {task.id}", total=None)

        def update(p: tasks_pb2.Progress) -> None:
            total = p.bytes_total if p.HasField("bytes_total") else None
            progress.update(bar, completed=p.bytes_done, total=total,
                            description=p.message or f"task {task.id}")  # fmt: skip

        await task.wait(progress=update)


def _summary(task: tasks_pb2.Task) -> str:
    word = tasks_pb2.TaskState.Name(task.state).removeprefix("TASK_STATE_")
    r = task.transfer_result
    return (f"task {task.task_id} {word}: {r.files_transferred} files, "
            f"{output.size(r.bytes_transferred)} transferred, {r.files_skipped} skipped, "
            f"{r.files_deleted} deleted")  # fmt: skip


@click.command()
@click.argument("task_ids", metavar="[TASK]...", nargs=-1)
@click.option("-s", "--state", "states", multiple=True, help="Only tasks in this state.")
@click.option("--cancel", is_flag=True, help="Cancel the given tasks.")
@async_command
async def tasks(
    s: Session, task_ids: tuple[str, ...], states: tuple[str, ...], cancel: bool
) -> None:
    """Your server-side tasks (transfers).

    Newest first; or just the given ones."""
    if cancel and not task_ids:
        raise click.UsageError("--cancel needs the ids of the tasks to cancel")
    if task_ids:
        act = s.client.tasks.cancel if cancel else s.client.tasks.get
        found = [(await act(t)).message for t in task_ids]
    else:
        found = [t.message async for t in s.client.tasks.list(states=list(states) or None)]
    if s.json:
        output.emit_json({"tasks": found})
        return
    output.table(TASKS, (_task_row(t) for t in found), state=1)


def _task_row(t: tasks_pb2.Task) -> list[str]:
    word = tasks_pb2.TaskState.Name(t.state).removeprefix("TASK_STATE_")
    return [t.task_id, word, _progress_text(t), output.when(t.create_time), t.description]
