"""A project's members, and adding or removing them as the caller.

The changes run `sacctmgr` as the caller through privilege separation, so Slurm decides
who may (a project's coordinators, Slurm's administrators); this module checks what it
can answer better first (the user exists, the project exists, is or is not a member) and
writes every change to the audit log.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from hpcgate.server import privsep
from hpcgate.server.errors import Code, DomainError, from_privsep, from_refusal, not_found
from hpcgate.server.slurm.adapter import AssociationInfo, SlurmAdapter
from hpcgate.server.slurm.membership import MemberLimitSettings

log = logging.getLogger("hpcgate.audit")
SACCTMGR_TIMEOUT = 30.0


@dataclass(frozen=True)
class Member:
    user: str
    coordinator: bool
    association: AssociationInfo


async def roster(adapter: SlurmAdapter, project: str) -> tuple[bool, list[Member]]:
    """Whether `project` exists, and everyone with an association to it, by user name (one
    per user: the association for all partitions when there are several)."""
    found, accounts = await asyncio.gather(
        adapter.project_members(project), adapter.accounts([project])
    )
    coordinators = set(accounts[0].coordinators) if accounts else set()
    by_user: dict[str, AssociationInfo] = {}
    for a in found.associations:
        if a.user and (a.user not in by_user or not a.partition):
            by_user[a.user] = a
    listed = [Member(user, user in coordinators, a) for user, a in sorted(by_user.items())]
    return bool(accounts), listed


async def members(adapter: SlurmAdapter, project: str) -> list[Member]:
    return (await roster(adapter, project))[1]


async def visible_members(adapter: SlurmAdapter, caller: str, project: str) -> list[Member]:
    """The members, for a caller who is one of them; NOT_FOUND otherwise (as for a
    project that does not exist: membership is not revealed to outsiders)."""
    listed = await members(adapter, project)
    if not any(m.user == caller for m in listed):
        raise not_found(f"no project {project!r} that you belong to; ListProjects shows yours")
    return listed


class MemberChanges:
    """Adds and removes members as the caller (privilege separation runs sacctmgr)."""

    def __init__(self, adapter: SlurmAdapter, users: privsep.PrivilegeSeparation) -> None:
        self.adapter = adapter
        self.users = users

    async def _run(self, identity: privsep.UserIdentity, argv: list[str], what: str) -> None:
        try:
            result = await self.users.run(
                identity, argv, env=self.users.user_env(identity), time_limit=SACCTMGR_TIMEOUT
            )
        except privsep.PrivsepError as e:
            raise from_privsep(e, what) from None
        output = (result.stdout + result.stderr).decode(errors="replace")
        refusal = self.adapter.members.refusal(output)
        if refusal is not None:
            raise from_refusal(refusal)
        if result.returncode != 0:
            raise DomainError(Code.FAILED_PRECONDITION, f"{what}: {output.strip()}")

    async def add(
        self, identity: privsep.UserIdentity, project: str, user: str,
        limits: MemberLimitSettings,
    ) -> Member:  # fmt: skip
        exists, current = await roster(self.adapter, project)
        if not exists:
            raise not_found(f"no project {project!r} on this system")
        if any(m.user == user for m in current):
            raise DomainError(Code.ALREADY_EXISTS, f"{user} is a member of {project} already")
        argv = self.adapter.members.add_argv(project, user, limits)
        await self._run(identity, argv, f"adding {user} to {project}")
        audit("project member added", identity.name, project, user, limits.sacctmgr_args())
        added = [m for m in await members(self.adapter, project) if m.user == user]
        if not added:
            raise DomainError(
                Code.FAILED_PRECONDITION,
                f"Slurm accepted adding {user} to {project} but does not list them",
            )
        return added[0]

    async def remove(self, identity: privsep.UserIdentity, project: str, user: str) -> None:
        current = await members(self.adapter, project)
        if not any(m.user == user for m in current):
            raise not_found(f"{user} is not a member of project {project!r}")
        argv = self.adapter.members.remove_argv(project, user)
        await self._run(identity, argv, f"removing {user} from {project}")
        audit("project member removed", identity.name, project, user, [])


def audit(event: str, by: str, project: str, user: str, settings: list[str]) -> None:
    """One line in the audit log: who changed which project's members, and how."""
    log.info(event, extra={"fields": {"by": by, "project": project, "member": user,
                                      "settings": settings}})  # fmt: skip
