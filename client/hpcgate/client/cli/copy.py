"""Copying between this machine and the system: put and get (-r for directories), with a
progress bar per source (bytes, rate, ETA). Both ends check each file's SHA-256."""

from __future__ import annotations

import asyncio
import os
import posixpath
from pathlib import Path

import click

from hpcgate.client.cli import output
from hpcgate.client.cli.progress import bars, file_bar
from hpcgate.client.cli.session import Session, async_command
from hpcgate.client.errors import NotFound
from hpcgate.client.files import Transferred
from hpcgate.v1 import utilities_pb2

DIRECTORY = utilities_pb2.FILE_TYPE_DIRECTORY


def _split(paths: tuple[str, ...], what: str) -> tuple[list[str], str]:
    if len(paths) < 2:
        raise click.UsageError(f"give at least one {what} path and the destination")
    return list(paths[:-1]), paths[-1]


def _local_name(path: str) -> str:
    """The name a local source gets at the destination (`.` is the current directory's)."""
    return os.path.basename(os.path.abspath(path))


async def _remote_is_dir(s: Session, path: str) -> bool:
    try:
        return bool((await s.client.files.stat(path, follow_symlinks=True)).type == DIRECTORY)
    except NotFound:
        return False


def _report(s: Session, key: str, done: list[Transferred]) -> None:
    if s.json:
        output.emit_json({key: done})
    elif s.settings.verbose:
        for t in done:
            output.note(f"{t.source} -> {t.destination} ({t.size} bytes, sha256 {t.sha256})")


@click.command()
@click.argument("paths", metavar="LOCAL... REMOTE", nargs=-1, required=True)
@click.option("-r", "--recursive", is_flag=True, help="Copy directories recursively.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing remote files.")
@click.option("-p", "--preserve", is_flag=True, help="Keep modes and modification times.")
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Continue an interrupted upload of a file of 8 MiB or more from what the server "
    "holds (when its SHA-256 matches the local file's start).",
)
@async_command
async def put(
    s: Session, paths: tuple[str, ...], recursive: bool, force: bool, preserve: bool,
    resume: bool,
) -> None:  # fmt: skip
    """Upload files (or with -r directories).

    With several sources, or a REMOTE that is a directory (or ends in /), each goes
    inside it under its own name; otherwise REMOTE is the new file's full path. An
    interrupted upload continues where it stopped when run again (--no-resume: anew)."""
    sources, remote = _split(paths, "local")
    await s.system()
    destination = await s.path(remote)
    into = len(sources) > 1 or remote.endswith("/") or await _remote_is_dir(s, destination)
    done: list[Transferred] = []
    with bars(quiet=s.json) as progress:
        for source in sources:
            is_dir = await asyncio.to_thread(os.path.isdir, source)
            if is_dir and not recursive:
                raise click.UsageError(f"{source} is a directory (use -r)")
            name = _local_name(source)
            target = posixpath.join(destination, name) if into else destination
            bar = file_bar(progress, name, None)
            sent = await s.client.files.upload(
                source, target, recursive=is_dir, overwrite=force, preserve=preserve,
                progress=bar, resume=resume,
            )  # fmt: skip
            done += sent if isinstance(sent, list) else [sent]
    _report(s, "uploaded", done)


@click.command()
@click.argument("paths", metavar="REMOTE... LOCAL", nargs=-1, required=True)
@click.option("-r", "--recursive", is_flag=True, help="Copy directories recursively.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing local files.")
@click.option("-p", "--preserve", is_flag=True, help="Keep modes and modification times.")
@async_command
async def get(
    s: Session, paths: tuple[str, ...], recursive: bool, force: bool, preserve: bool
) -> None:
    """Download files (or with -r directories).

    An interrupted download continues from its LOCAL.part file when run again."""
    sources, local = _split(paths, "remote")
    await s.system()
    is_dir = await asyncio.to_thread(os.path.isdir, local)
    into = len(sources) > 1 or local.endswith(("/", os.sep)) or is_dir
    done: list[Transferred] = []
    with bars(quiet=s.json) as progress:
        for source in sources:
            remote = await s.path(source)
            directory = await _remote_is_dir(s, remote)
            if directory and not recursive:
                raise click.UsageError(f"{source} is a directory (use -r)")
            target = Path(local) / posixpath.basename(remote) if into else Path(local)
            bar = file_bar(progress, posixpath.basename(remote), None)
            got = await s.client.files.download(
                remote, target, recursive=directory, overwrite=force, preserve=preserve,
                progress=bar,
            )  # fmt: skip
            done += got if isinstance(got, list) else [got]
    _report(s, "downloaded", done)
