"""The caller's Slurm projects: associations, fair share and usage, in a few queries.

One ListProjects page costs a constant number of Slurm calls whatever the number of
projects: the user's associations and fair share (in parallel), then the page's account
records (with coordinators and allocation limits) and usage (in parallel,
comma-separated where clauses), and one `sshare` for the allocations' usage when a
project on the page has an allocation.

Usage period: the current calendar month in the server's time zone, from the 1st at
00:00 to the start of the current hour. Figures come from `sreport` (slurmdbd's hourly
usage roll-up), which is cheap whatever the number of jobs but lags the hour in progress.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from hpcgate.server.slurm.adapter import (
    AccountInfo,
    AssociationInfo,
    FairShareInfo,
    SlurmAdapter,
    SlurmError,
    UsageRecord,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
GPU_TRES = "gres/gpu"


@dataclass(frozen=True)
class Usage:
    known: bool  # False: the accounting query failed; the hours mean nothing
    cpu_hours: float
    gpu_hours: float
    period_start: datetime
    period_end: datetime


@dataclass(frozen=True)
class Membership:
    """One association of the user, with its fair-share standing if the site has one."""

    association: AssociationInfo
    fair_share: FairShareInfo | None


@dataclass(frozen=True)
class TresAllocation:
    tres: str
    minutes_allocated: int
    minutes_used: int | None  # None: accounting did not say


@dataclass(frozen=True)
class Allocation:
    """A project's compute allocation: its own association's GrpTRESMins."""

    known: bool
    tres: tuple[TresAllocation, ...]
    reason: str


@dataclass(frozen=True)
class Project:
    account: AccountInfo
    memberships: tuple[Membership, ...]
    is_default: bool
    project_usage: Usage
    user_usage: Usage
    coordinator: bool = False  # the user may manage the project's members
    allocation: Allocation = Allocation(True, (), "no compute allocation limit")


@dataclass(frozen=True)
class ProjectPage:
    """Full records for one page of the user's projects (sorted by name)."""

    projects: list[Project]
    next_page_token: str


def usage_period(now: datetime) -> tuple[datetime, datetime]:
    """The current calendar month in the server's local time zone, up to the start of the
    current hour (sreport only has whole hours that slurmdbd has rolled up)."""
    local = now.astimezone()
    end = local.replace(minute=0, second=0, microsecond=0)
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    # replace() keeps the UTC offset of `now`: re-resolve across a DST change.
    return start.replace(tzinfo=None).astimezone(), end


async def _optional(what: str, call: Callable[[], Awaitable[T]]) -> T | None:
    """The call's result, or None (logged) when it fails: the data is optional."""
    try:
        return await call()
    except SlurmError as e:
        log.warning("%s unavailable: %s", what, e, extra={"fields": {"error": str(e)}})
        return None


def _usage(
    records: Sequence[UsageRecord] | None, account: str, user: str, start: datetime, end: datetime
) -> Usage:
    if records is None:
        return Usage(False, 0.0, 0.0, start, end)
    cpu = gpu = 0
    for r in records:
        if r.account == account and r.user == user:
            if r.tres == "cpu":
                cpu += r.tres_seconds
            elif r.tres == GPU_TRES:
                gpu += r.tres_seconds
    return Usage(True, cpu / 3600, gpu / 3600, start, end)


def _fair_share_for(
    shares: Sequence[FairShareInfo] | None, a: AssociationInfo
) -> FairShareInfo | None:
    """The association's sshare row, if fair share is in use (normalised figures exist)."""
    for s in shares or ():
        if (s.account, s.user, s.partition) == (a.account, a.user, a.partition):
            return s if s.fairshare_factor is not None else None
    return None


async def list_projects(
    adapter: SlurmAdapter,
    user: str,
    select: Callable[[list[str]], tuple[list[str], str]],
    now: datetime,
) -> ProjectPage:
    """The user's projects; `select` picks the page out of the sorted account names and
    returns it with the next page's token.

    Raises SlurmUnavailable (slurmdbd down) for the associations and account records;
    fair share (slurmctld) and usage (sreport) are optional and degrade to "unknown".
    """
    shares_task = asyncio.ensure_future(
        _optional("fair share (sshare)", lambda: adapter.fair_share(user))
    )
    try:
        assoc = await adapter.user_associations(user)
    except BaseException:
        shares_task.cancel()
        raise
    names = sorted({a.account for a in assoc.associations})
    page, next_page_token = select(names)
    start, end = usage_period(now)
    accounts_task = asyncio.ensure_future(adapter.accounts(page))
    usage_task = asyncio.ensure_future(
        _optional("usage (sreport)", lambda: adapter.usage(page, start, end))
    )
    try:
        accounts = await accounts_task
        records, shares = await usage_task, await shares_task
    except BaseException:
        for task in (accounts_task, usage_task, shares_task):
            task.cancel()
        raise
    by_name = {a.name: a for a in accounts}
    allocated = [a.name for a in accounts if a.group_tres_minutes]
    used: dict[str, dict[str, int]] | None = {}
    if allocated:
        used = await _optional("allocation usage", lambda: adapter.tres_used_minutes(allocated))
    projects = []
    for name in page:
        memberships = tuple(
            Membership(a, _fair_share_for(shares, a))
            for a in sorted(assoc.associations, key=lambda a: a.partition)
            if a.account == name
        )
        projects.append(
            Project(
                account=by_name.get(name, AccountInfo(name)),
                memberships=memberships,
                is_default=name == assoc.default_account,
                project_usage=_usage(records, name, "", start, end),
                user_usage=_usage(records, name, user, start, end),
                coordinator=user in by_name.get(name, AccountInfo(name)).coordinators,
                allocation=_allocation(by_name.get(name, AccountInfo(name)), used),
            )
        )
    return ProjectPage(projects, next_page_token)


def _allocation(account: AccountInfo, used: dict[str, dict[str, int]] | None) -> Allocation:
    if not account.group_tres_minutes:
        return Allocation(True, (), "no compute allocation limit (GrpTRESMins) is set")
    spent = None if used is None else used.get(account.name, {})
    tres = tuple(
        TresAllocation(name, minutes, None if spent is None else spent.get(name, 0))
        for name, minutes in sorted(account.group_tres_minutes.items())
    )
    reason = "" if spent is not None else "usage unknown: sshare did not answer"
    return Allocation(True, tres, reason)
