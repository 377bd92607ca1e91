"""The POSIX identity that work on behalf of a user runs as, looked up in one place."""

from __future__ import annotations

from hpcgate.server import privsep
from hpcgate.server.errors import from_privsep


async def identity_of(users: privsep.PrivilegeSeparation, user: str) -> privsep.UserIdentity:
    """`user`'s uid, gid and groups (cached by privsep); a user who does not exist here or
    may not be acted for (root, system accounts) is the error privsep's refusal maps to."""
    try:
        return await users.identity(user)
    except privsep.PrivsepError as e:
        raise from_privsep(e, f"cannot act as {user!r}") from None
