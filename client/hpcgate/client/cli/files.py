"""File commands on the system, named after their coreutils: ls, stat, mkdir, mv, cp, rm,
chmod, ln -s, checksum."""

from __future__ import annotations

import click

from hpcgate.client.cli import output
from hpcgate.client.cli.session import Session, async_command
from hpcgate.client.errors import HpcgateError
from hpcgate.v1 import utilities_pb2

NO_SHORT_HELP = {"help_option_names": ["--help"]}  # -h is --human-readable here
DIRECTORY = utilities_pb2.FILE_TYPE_DIRECTORY


def long_row(entry: utilities_pb2.FileEntry, human: bool) -> list[str]:
    name = entry.name + (f" -> {entry.link_target}" if entry.link_target else "")
    return [entry.mode_string, str(entry.link_count), entry.owner, entry.group,
            output.size(entry.size, human=human), output.when(entry.mtime)[:16], name]  # fmt: skip


@click.command(context_settings=NO_SHORT_HELP)
@click.argument("paths", metavar="[PATH]...", nargs=-1)
@click.option("-l", "long", is_flag=True, help="Long listing.")
@click.option("-a", "--all", "hidden", is_flag=True, help="Include names starting with '.'.")
@click.option("-h", "--human-readable", "human", is_flag=True, help="Sizes like 1.5K, 2.0M.")
@click.option("-L", "--dereference", is_flag=True, help="Describe symlinks' targets.")
@async_command
async def ls(
    s: Session, paths: tuple[str, ...], long: bool, hidden: bool, human: bool, dereference: bool
) -> None:
    """List directories (your home directory by default)."""
    await s.system()
    listings = {}
    for given in paths or ("~",):
        path = await s.path(given)
        entry = await s.client.files.stat(path, follow_symlinks=True)
        listings[path] = (
            [e async for e in s.client.files.list(path, hidden=hidden,
                                                  follow_symlinks=dereference)]
            if entry.type == DIRECTORY else [entry]
        )  # fmt: skip
    if s.json:
        many = {p: {"entries": found} for p, found in listings.items()}
        output.emit_json(many if len(many) > 1 else next(iter(many.values())))
        return
    for i, (path, found) in enumerate(listings.items()):
        if len(listings) > 1:
            output.line(("\n" if i else "") + f"{path}:")
        if long:
            output.table([], (long_row(e, human) for e in found), right=(1, 4))
        else:
            for e in found:
                output.line(e.name + ("/" if e.type == DIRECTORY else ""))


@click.command("stat")
@click.argument("paths", metavar="PATH...", nargs=-1, required=True)
@click.option("-L", "--dereference", is_flag=True, help="Follow symlinks.")
@async_command
async def stat_(s: Session, paths: tuple[str, ...], dereference: bool) -> None:
    """Details of files (symlinks themselves, unless -L)."""
    await s.system()
    entries = [await s.client.files.stat(await s.path(p), follow_symlinks=dereference)
               for p in paths]  # fmt: skip
    if s.json:
        output.emit_json(entries[0] if len(entries) == 1 else {"entries": entries})
        return
    for entry in entries:
        kind = utilities_pb2.FileType.Name(entry.type).removeprefix("FILE_TYPE_").lower()
        output.line(f"  File: {entry.path}" + (f" -> {entry.link_target}" if entry.link_target
                                                  else ""))  # fmt: skip
        output.line(f"  Size: {entry.size:<12} {kind}")
        output.line(
            f"Access: ({entry.mode & 0o7777:04o}/{entry.mode_string})  "
            f"Uid: ({entry.uid}/{entry.owner})  Gid: ({entry.gid}/{entry.group})"
        )
        output.line(f"Modify: {output.when(entry.mtime)}")


@click.command()
@click.argument("paths", metavar="PATH...", nargs=-1, required=True)
@click.option(
    "-p", "--parents", is_flag=True, help="Make parents as needed; no error if it exists."
)
@async_command
async def mkdir(s: Session, paths: tuple[str, ...], parents: bool) -> None:
    """Make directories."""
    await s.system()
    for path in paths:
        await s.client.files.mkdir(await s.path(path), parents=parents)


@click.command()
@click.argument("source")
@click.argument("destination")
@click.option("-f", "--force", is_flag=True, help="Replace an existing destination.")
@async_command
async def mv(s: Session, source: str, destination: str, force: bool) -> None:
    """Move or rename on the system.

    DESTINATION is the full new path."""
    await s.system()
    await s.client.files.move(await s.path(source), await s.path(destination), overwrite=force)


@click.command()
@click.argument("source")
@click.argument("destination")
@click.option("-r", "-R", "--recursive", is_flag=True, help="Copy directories recursively.")
@click.option("-f", "--force", is_flag=True, help="Replace existing files.")
@click.option("-p", "--preserve", is_flag=True, help="Keep modes and modification times.")
@async_command
async def cp(
    s: Session, source: str, destination: str, recursive: bool, force: bool, preserve: bool
) -> None:
    """Copy on the system (small data).

    A file, or with -r a directory; use `transfer` for big data."""
    await s.system()
    await s.client.files.copy(await s.path(source), await s.path(destination),
                              recursive=recursive, overwrite=force, preserve=preserve)  # fmt: skip


@click.command()
@click.argument("paths", metavar="PATH...", nargs=-1, required=True)
@click.option(
    "-r", "-R", "--recursive", is_flag=True, help="Remove directories and their contents."
)
@click.option("-f", "--force", is_flag=True, help="No error for missing files.")
@async_command
async def rm(s: Session, paths: tuple[str, ...], recursive: bool, force: bool) -> None:
    """Remove files (or with -r directories)."""
    await s.system()
    for path in paths:
        await s.client.files.remove(await s.path(path), recursive=recursive, missing_ok=force)


@click.command()
@click.argument("mode")
@click.argument("paths", metavar="PATH...", nargs=-1, required=True)
@async_command
async def chmod(s: Session, mode: str, paths: tuple[str, ...]) -> None:
    """Change permissions: octal (750) or symbolic (u+x,g-w)."""
    await s.system()
    bits: int | str = int(mode, 8) if mode.isdigit() else mode
    for path in paths:
        await s.client.files.chmod(await s.path(path), bits)


@click.command()
@click.argument("target")
@click.argument("link")
@click.option("-s", "--symbolic", is_flag=True, help="Symbolic (the only kind there is here).")
@async_command
async def ln(s: Session, target: str, link: str, symbolic: bool) -> None:
    """Make a symbolic link.

    LINK points at TARGET (kept as given when relative)."""
    if not symbolic:
        raise click.UsageError("only symbolic links can be made: use `ln -s TARGET LINK`")
    await s.system()
    await s.client.files.symlink(target, await s.path(link))


@click.command()
@click.argument("paths", metavar="PATH...", nargs=-1, required=True)
@click.option("-a", "--algorithm", default="sha256", show_default=True,
              type=click.Choice(["sha256", "sha512", "md5", "blake2b"]))  # fmt: skip
@async_command
async def checksum(s: Session, paths: tuple[str, ...], algorithm: str) -> int:
    """Checksums, computed on the system.

    Printed as sha256sum prints them."""
    await s.system()
    status, results = 0, []
    for given in paths:
        path = await s.path(given)
        try:
            result = await s.client.files.checksum(path, algorithm=algorithm)
        except HpcgateError as e:
            output.stderr.print(f"hpcgate: checksum {given}: {e}", markup=False)
            status = status or e.exit_code
            continue
        results.append({"path": path, "algorithm": algorithm, "digest": result.hex_digest})
        if not s.json:
            output.line(f"{result.hex_digest}  {given}")
    if s.json:
        output.emit_json({"checksums": results})
    return status
