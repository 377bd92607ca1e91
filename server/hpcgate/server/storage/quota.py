"""The caller's usage and quota on a filesystem, from the site's own tools, as the caller.

`lfs quota -u USER MOUNT` (Lustre) or `quota -u -v -w -p --show-mntpoint --hide-device
-f MOUNT` (Linux quota tools) run as the caller through privsep, so a user only ever
sees what the tool shows them. Results are cached per user and filesystem for
`storage.quota_cache` seconds; anything that goes wrong is "unknown" with the reason,
never an error of the RPC.

Both tools print one table row: filesystem, used blocks (KiB; '*' when over the soft
limit), soft limit, hard limit, grace, used files, soft, hard, grace. `quota -p` gives
the grace as seconds since the epoch (0 = none); lfs as a duration ("6d23h59m") or '-'.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hpcgate.server import privsep
from hpcgate.server.config import FilesystemConfig, StorageConfig

KIB = 1024
_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


@dataclass(frozen=True)
class Quota:
    """The caller's figures; when `known` is False only `source` (the reason) counts."""

    known: bool
    source: str
    used_bytes: int = 0
    soft_limit_bytes: int = 0
    hard_limit_bytes: int = 0
    used_inodes: int = 0
    soft_limit_inodes: int = 0
    hard_limit_inodes: int = 0
    grace_expires: datetime | None = None
    measured_at: datetime | None = None


def unknown(reason: str) -> Quota:
    return Quota(known=False, source=reason, measured_at=datetime.now(UTC))


def _number(token: str) -> int:
    return int(token.rstrip("*"))


def _grace(token: str, now: datetime, epoch: bool) -> datetime | None:
    token = token.strip("[]")
    if token in ("", "-", "none", "0"):
        return None
    if epoch:
        return datetime.fromtimestamp(int(token), UTC)
    if token.lower() == "expired":
        return now
    match = _DURATION.match(token)
    if match is None or not any(match.groups()):
        return None
    w, d, h, m, s = (int(g or 0) for g in match.groups())
    return now + timedelta(weeks=w, days=d, hours=h, minutes=m, seconds=s)


def parse_quota_table(text: str, mount: str, source: str, now: datetime) -> Quota | None:
    """The row of `mount` in `quota`/`lfs quota` output; None if there is none."""
    lines = text.splitlines()
    header = next((i for i, line in enumerate(lines) if "Filesystem" in line.split()), None)
    if header is None:
        return None
    tokens = " ".join(lines[header + 1 :]).split()
    # Rows start with the filesystem; find ours (a long name may sit on its own line).
    for i, word in enumerate(tokens):
        if (word.rstrip("/") or "/") != (mount.rstrip("/") or "/"):
            continue
        row = tokens[i + 1 : i + 9]
        if len(row) != 8:
            return None
        blocks, soft, hard, grace, files, isoft, ihard, igrace = row
        try:
            epoch = source == "quota"
            return Quota(
                known=True,
                source=source,
                used_bytes=_number(blocks) * KIB,
                soft_limit_bytes=_number(soft) * KIB,
                hard_limit_bytes=_number(hard) * KIB,
                used_inodes=_number(files),
                soft_limit_inodes=_number(isoft),
                hard_limit_inodes=_number(ihard),
                grace_expires=_grace(grace, now, epoch) or _grace(igrace, now, epoch),
                measured_at=now,
            )
        except ValueError:
            return None
    return None


class QuotaReader:
    """Runs the quota tools as callers, with a deadline and a cache."""

    def __init__(self, users: privsep.PrivilegeSeparation, settings: StorageConfig) -> None:
        self.users = users
        self.settings = settings
        self._cache: dict[tuple[str, str, str], tuple[float, Quota]] = {}
        self._tools: dict[str, str | None] = {}

    async def _tool(self, name: str) -> str | None:
        """Where `name` is on the PATH per-user commands get (looked up once)."""
        if name not in self._tools:
            self._tools[name] = await asyncio.to_thread(shutil.which, name, path=self.users.path)
        return self._tools[name]

    async def _command(
        self, fs: FilesystemConfig, fs_type: str, user: str
    ) -> tuple[str, list[str]] | str:
        """(source, argv) to run, or why there is none."""
        mount = str(fs.path)
        if fs.quota == "none":
            return "quota reporting is switched off for this filesystem in the configuration"
        lfs = await self._tool("lfs") if fs.quota in ("auto", "lfs") else None
        if lfs and (fs.quota == "lfs" or fs_type == "lustre"):
            return "lfs quota", [lfs, "quota", "-u", user, mount]
        if fs.quota == "lfs":
            return "the Lustre client tool `lfs` is not installed on the server"
        tool = await self._tool("quota")
        if tool:
            argv = [tool, "-u", "-v", "-w", "-p", "--show-mntpoint", "--hide-device", "-f", mount]
            return "quota", argv
        if fs.quota == "quota":
            return "the `quota` tool is not installed on the server"
        return "no quota tool (lfs quota, quota) is installed on the server"

    async def read(
        self, identity: privsep.UserIdentity, system_id: str, fs: FilesystemConfig, fs_type: str
    ) -> Quota:
        key = (identity.name, system_id, fs.name)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        quota = await self._measure(identity, fs, fs_type)
        self._cache[key] = (time.monotonic() + self.settings.quota_cache, quota)
        return quota

    async def _measure(
        self, identity: privsep.UserIdentity, fs: FilesystemConfig, fs_type: str
    ) -> Quota:
        command = await self._command(fs, fs_type, identity.name)
        if isinstance(command, str):
            return unknown(command)
        source, argv = command
        try:
            out = await self.users.run(
                identity,
                argv,
                env=self.users.user_env(identity),
                time_limit=self.settings.quota_timeout,
            )
        except privsep.CommandTimeout:
            return unknown(f"`{source}` did not answer within {self.settings.quota_timeout:g} s")
        except (privsep.PrivsepError, OSError) as e:
            return unknown(f"`{source}` could not run as {identity.name}: {e}")
        now = datetime.now(UTC)
        text = out.stdout.decode(errors="replace")
        parsed = parse_quota_table(text, str(fs.path), source, now)
        if parsed is not None:
            return parsed
        said = (out.stderr.decode(errors="replace").strip() or text.strip()).splitlines()
        detail = said[0] if said else f"exit status {out.returncode}"
        return unknown(f"`{source}` gave no figures for {fs.path}: {detail}")
