"""Whom per-user work may run as in multi-user mode.

Checked by the gateway (`PrivilegeSeparation.authorize`) and again by the root spawner
(`spawner.py`), which must not trust the unprivileged gateway that asks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hpcgate.server.privsep.errors import ForbiddenUser
from hpcgate.server.privsep.identity import UserIdentity


@dataclass(frozen=True)
class Policy:
    """Never root or a member of group 0 (not configurable); never a system account
    (uid < `min_uid`) or an account in `deny_users`."""

    min_uid: int = 1000
    deny_users: frozenset[str] = field(default_factory=lambda: frozenset({"slurm"}))

    def check(self, identity: UserIdentity) -> None:
        """Raises ForbiddenUser unless per-user work may run as `identity`."""
        if identity.uid == 0:
            raise ForbiddenUser(f"refusing to do per-user work as {identity.name!r} (uid 0)")
        if identity.name in self.deny_users:
            raise ForbiddenUser(f"per-user work as {identity.name!r} is denied by configuration")
        if identity.uid < self.min_uid:
            raise ForbiddenUser(
                f"{identity.name!r} is a system account (uid {identity.uid} < {self.min_uid})"
            )
        if identity.gid == 0 or 0 in identity.groups:
            raise ForbiddenUser(f"{identity.name!r} is a member of group 0 (root)")
