"""Who per-user work runs as: a POSIX account resolved once, off the event loop.

Name service lookups (passwd, group membership) may go to LDAP or SSSD and block, so they
run in a thread. Root is never a target: the server must not do a user's work with its own
privileges, so `lookup` refuses uid 0 before anything else sees the identity.
"""

from __future__ import annotations

import asyncio
import os
import pwd
from dataclasses import dataclass

from hpcgate.server.privsep.errors import ForbiddenUser, UnknownUser


@dataclass(frozen=True)
class UserIdentity:
    """The credentials a worker or command runs with: uid, primary gid and all groups."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary groups, the primary gid included (first)
    home: str
    shell: str


def _from_passwd(entry: pwd.struct_passwd) -> UserIdentity:
    others = sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid)) - {entry.pw_gid})
    return UserIdentity(
        name=entry.pw_name,
        uid=entry.pw_uid,
        gid=entry.pw_gid,
        groups=(entry.pw_gid, *others),
        home=entry.pw_dir or "/",
        shell=entry.pw_shell,
    )


def lookup_blocking(name: str) -> UserIdentity:
    """`lookup` for synchronous callers (start-up code, threads): may block on NSS."""
    if not name or "\0" in name or "/" in name:
        raise UnknownUser(f"no such user: {name!r}")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise UnknownUser(f"no such user: {name!r}") from None
    if entry.pw_uid == 0:
        raise ForbiddenUser(f"refusing to do per-user work as {name!r}: uid 0 is root")
    return _from_passwd(entry)


def lookup_uid_blocking(uid: int) -> UserIdentity:
    """The account of `uid` (used for the server's own user in single-user mode)."""
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        raise UnknownUser(f"uid {uid} has no passwd entry") from None
    if entry.pw_uid == 0:
        raise ForbiddenUser("refusing to do per-user work as root (uid 0)")
    return _from_passwd(entry)


async def lookup(name: str) -> UserIdentity:
    """The account `name`; `UnknownUser` if there is none, `ForbiddenUser` for root."""
    return await asyncio.to_thread(lookup_blocking, name)
