"""POSIX users and groups from the name service, without blocking the event loop.

`pwd`/`grp` go through NSS, which may ask LDAP or SSSD and hang when a directory server
does. Lookups therefore run in a small thread pool of their own with a deadline: a hung
directory ties up those few threads (callers get `DirectoryUnavailable`), never the
default executor the rest of the server relies on.
"""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

# Login names we accept: letters, digits, `_ . @ -` (SSSD's user@domain), a trailing `$`
# (machine accounts); not starting with `-` or `.`. Anything else cannot name a user and
# would not be safe inside a Slurm `where name=...` clause (`,` `=` and spaces are out).
USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}\$?")
NSS_TIMEOUT = 10.0


class UserNotFound(Exception):
    """No such user in the name service."""


class DirectoryUnavailable(Exception):
    """The name service did not answer in time (or failed)."""


@dataclass(frozen=True)
class PosixGroup:
    name: str  # "" when the gid has no entry in the group database
    gid: int
    members: tuple[str, ...]  # gr_mem: the explicit members only


@dataclass(frozen=True)
class PosixUser:
    name: str
    uid: int
    gid: int
    primary_group: str
    home_directory: str
    shell: str
    full_name: str  # first GECOS field


def valid_user_name(name: str) -> bool:
    return USER_NAME.fullmatch(name) is not None


def _lookup_user(name: str) -> PosixUser:
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise UserNotFound(name) from None
    try:
        primary = grp.getgrgid(pw.pw_gid).gr_name
    except KeyError:
        primary = ""
    return PosixUser(
        name=pw.pw_name,
        uid=pw.pw_uid,
        gid=pw.pw_gid,
        primary_group=primary,
        home_directory=pw.pw_dir,
        shell=pw.pw_shell,
        full_name=pw.pw_gecos.split(",", 1)[0].strip(),
    )


def _lookup_groups(name: str, gid: int) -> list[PosixGroup]:
    groups = []
    for g in dict.fromkeys([gid, *os.getgrouplist(name, gid)]):
        try:
            entry = grp.getgrgid(g)
        except KeyError:
            groups.append(PosixGroup("", g, ()))
            continue
        groups.append(PosixGroup(entry.gr_name, entry.gr_gid, tuple(entry.gr_mem)))
    # The primary group first, then by name (unnamed gids last, by number).
    return sorted(groups, key=lambda x: (x.gid != gid, x.name == "", x.name, x.gid))


class UserDirectory:
    """Async user and group look-ups with a deadline, in a dedicated thread pool."""

    def __init__(self, timeout: float = NSS_TIMEOUT, max_threads: int = 4) -> None:
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="nss")

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._pool, fn), self.timeout)
        except TimeoutError:
            raise DirectoryUnavailable(
                f"the user database did not answer {what} within {self.timeout:g} s"
            ) from None
        except OSError as e:
            raise DirectoryUnavailable(f"the user database failed {what}: {e}") from None

    async def user(self, name: str) -> PosixUser:
        """The passwd entry of `name`. Raises UserNotFound or DirectoryUnavailable."""
        return await self._call(f"for user {name!r}", lambda: _lookup_user(name))

    async def groups(self, user: PosixUser) -> list[PosixGroup]:
        """The user's primary and supplementary groups, primary first, then by name."""
        return await self._call(
            f"for the groups of {user.name!r}", lambda: _lookup_groups(user.name, user.gid)
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
