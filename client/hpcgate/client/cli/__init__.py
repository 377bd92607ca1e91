"""`hpcgate`: the command-line client (click + rich) over the asyncio `Client`.

Slurm-like job commands (sbatch, squeue, sacct, scancel, sinfo, swait, slog), coreutils-
like file commands (ls, stat, mkdir, mv, cp, rm, chmod, ln, cat, head, tail, checksum),
put/get with progress bars, server-side transfers and tasks, run, and the facility's
status. Each command is one asyncio.run over one connection; see `hpcgate --help`.
"""

from __future__ import annotations

import click

from hpcgate.client.cli import copy, files, info, jobs, login, queue, reserve, run, tasks, view
from hpcgate.client.cli.root import cli

COMMANDS = [
    jobs.sbatch, queue.squeue, queue.sacct, jobs.scancel, queue.sinfo, jobs.swait, jobs.slog,
    files.ls, files.stat_, files.mkdir, files.mv, files.cp, files.rm, files.chmod, files.ln,
    view.cat, view.head, view.tail, files.checksum, copy.put, copy.get, tasks.transfer,
    tasks.tasks, run.run, info.projects, info.whoami, info.status, info.watch, info.outages,
    info.notes, login.login, reserve.reserve, reserve.reservations,
]  # fmt: skip
for command in COMMANDS:
    cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    """The `hpcgate` entry point: the exit status (a command's, or an error's gRPC code)."""
    try:
        result = cli.main(args=argv, prog_name="hpcgate", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        return 1
    return result if isinstance(result, int) else 0


__all__ = ["cli", "main"]
