"""`hpcgate run -- CMD...`: a short command on the system (a login node), output live."""

from __future__ import annotations

import asyncio
import dataclasses
import sys

import click

from hpcgate.client.cli import output
from hpcgate.client.cli.session import Session, async_command
from hpcgate.client.files import CommandResult


def exit_status(result: CommandResult) -> int:
    """The command's exit code; 128+N when killed by signal N; 124 when it timed out."""
    if result.timed_out:
        return 124
    return 128 + result.signal if result.signal else result.exit_code


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("argv", metavar="-- CMD [ARG]...", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("-C", "--cwd", help="Working directory (default: your home directory).")
@click.option("-e", "--env", "environment", multiple=True, metavar="NAME=VALUE",
              help="Set an environment variable (repeatable).")  # fmt: skip
@click.option("--stdin", "send_stdin", is_flag=True, help="Send this terminal's stdin to it.")
@click.option("--time-limit", type=float, help="Seconds before the server kills it.")
@async_command
async def run(
    s: Session, argv: tuple[str, ...], cwd: str | None, environment: tuple[str, ...],
    send_stdin: bool, time_limit: float | None,
) -> int:  # fmt: skip
    """Run a command; exit with its exit code.

    It runs on the system's login host without a shell: `run -- sh -c '...'` for one.
    Killed by signal N: exit 128+N; over --time-limit: exit 124."""
    await s.system()
    env = dict(item.partition("=")[::2] for item in environment)
    stdin = await asyncio.to_thread(sys.stdin.buffer.read) if send_stdin else None
    directory = await s.path(cwd) if cwd else None
    result = CommandResult(exit_code=1)
    collected: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    async for event in s.client.files.run_stream(list(argv), cwd=directory, env=env, stdin=stdin,
                                                 timeout=time_limit):  # fmt: skip
        if isinstance(event, CommandResult):
            result = event
        elif s.json:
            collected[event.stream].append(event.data)
        else:
            sink = sys.stdout.buffer if event.stream == "stdout" else sys.stderr.buffer
            sink.write(event.data)
            sink.flush()
    if s.json:
        out, err = (b"".join(collected[k]).decode(errors="replace") for k in ("stdout", "stderr"))
        output.emit_json(dataclasses.replace(result, stdout=out, stderr=err))
    elif result.output_truncated:
        output.note("hpcgate: the output was truncated (the server's limit)")
    return exit_status(result)
