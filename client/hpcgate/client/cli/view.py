"""Reading remote files to stdout: cat, head, tail (-f)."""

from __future__ import annotations

import asyncio
import sys

import click

from hpcgate.client.cli.session import Session, async_command
from hpcgate.client.errors import InvalidArgument, OutOfRange

FOLLOW_INTERVAL = 1.0  # seconds between looks at a file `tail -f` follows
CHUNK = 1024 * 1024


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


@click.command()
@click.argument("paths", metavar="PATH...", nargs=-1, required=True)
@async_command
async def cat(s: Session, paths: tuple[str, ...]) -> None:
    """Print files (read a chunk at a time: any size)."""
    await s.system()
    for path in paths:
        absolute, offset = await s.path(path), 0
        while True:
            reply = await s.client.files.view(absolute, offset=offset, length=CHUNK)
            _write(reply.data)
            offset += len(reply.data)
            if not reply.data or offset >= reply.file_size:
                break


@click.command()
@click.argument("path")
@click.option("-n", "--lines", type=click.IntRange(0), default=10, show_default=True)
@click.option("-c", "--bytes", "count", type=click.IntRange(0), help="The first N bytes instead.")
@async_command
async def head(s: Session, path: str, lines: int, count: int | None) -> None:
    """The first lines (or bytes) of a file."""
    await s.system()
    if count == 0 or (count is None and lines == 0):
        return
    _write((await s.client.files.head(await s.path(path), lines=lines, bytes=count)).data)


@click.command()
@click.argument("path")
@click.option("-n", "--lines", type=click.IntRange(0), default=10, show_default=True)
@click.option("-c", "--bytes", "count", type=click.IntRange(1), help="The last N bytes instead.")
@click.option("-f", "--follow", is_flag=True, help="Then print what is appended, until Ctrl-C.")
@async_command
async def tail(s: Session, path: str, lines: int, count: int | None, follow: bool) -> None:
    """The last lines of a file (-f: follow).

    Or the last bytes with -c; with -f, then whatever is appended, until Ctrl-C."""
    await s.system()
    absolute = await s.path(path)
    if count is None and lines == 0:
        offset = (await s.client.files.view(absolute, offset=0, length=1)).file_size
    else:
        reply = await s.client.files.tail(absolute, lines=lines, bytes=count)
        _write(reply.data)
        offset = reply.offset + len(reply.data)
    while follow:
        await asyncio.sleep(FOLLOW_INTERVAL)
        offset = await _appended(s, absolute, offset)


async def _appended(s: Session, path: str, offset: int) -> int:
    """Print what lies past `offset`; the new offset (0 again if the file was truncated)."""
    try:
        reply = await s.client.files.view(path, offset=offset, length=CHUNK)
    except (InvalidArgument, OutOfRange):  # the offset is past the end: truncated
        return 0
    _write(reply.data)
    return offset + len(reply.data)
