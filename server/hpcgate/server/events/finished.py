"""Final records of ended jobs: a bounded cache the hub answers reads from.

A job whose end accounting has recorded does not change any more (unless requeued, which
makes it a queued job again), so its merged record can be served from memory forever
after. The cache holds at most `capacity` jobs and drops the ones that entered it first;
`complete_since` says from which submit time on the cache (with the hub's queue) knows
every job, so that ListJobs can tell whether it may answer a window from memory.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from hpcgate.server.slurm.adapter import JobRecord, JobStepRecord


@dataclasses.dataclass(frozen=True)
class CachedJob:
    """One ended job's record, with the hub revision and time at which it last changed."""

    record: JobRecord
    revision: int
    updated_at: datetime
    has_steps: bool  # False for records read without steps (the start-up backfill)


class FinishedJobs:
    """Ended jobs by id and by user, oldest entry dropped first beyond `capacity`."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._jobs: collections.OrderedDict[str, CachedJob] = collections.OrderedDict()
        self._by_user: dict[str, set[str]] = collections.defaultdict(set)
        self._array_tasks: dict[tuple[int, int], str] = {}  # (array job, task) -> job id
        # Every job submitted at or after this is here or in the hub's queue; None: unknown.
        self.complete_since: datetime | None = None

    def __len__(self) -> int:
        return len(self._jobs)

    def get(self, job_id: str) -> CachedJob | None:
        return self._jobs.get(job_id)

    def find(self, wanted: str) -> CachedJob | None:
        """The entry `wanted` names: `123` (a job's own id) or `123_4` (array task)."""
        number, _, task = wanted.partition("_")
        if not task:
            return self._jobs.get(wanted)
        job_id = self._array_tasks.get((int(number), int(task)))
        return self._jobs.get(job_id) if job_id is not None else None

    def put(self, entry: CachedJob) -> list[CachedJob]:
        """Add or replace an entry; returns the entries dropped to stay within capacity."""
        job = entry.record
        old = self._jobs.pop(job.job_id, None)
        if old is not None and old.record.user != job.user:
            self._by_user[old.record.user].discard(job.job_id)
        self._jobs[job.job_id] = entry
        self._by_user[job.user].add(job.job_id)
        if job.array_job_id and job.array_task_id is not None:
            self._array_tasks[(job.array_job_id, job.array_task_id)] = job.job_id
        dropped = []
        while len(self._jobs) > self.capacity:
            _, gone = self._jobs.popitem(last=False)
            self._forget_user(gone)
            dropped.append(gone)
            # What was dropped is no longer known: the complete window starts after it.
            submitted = gone.record.submit_time
            if submitted is not None and self.complete_since is not None:
                self.complete_since = max(
                    self.complete_since, submitted + timedelta(microseconds=1)
                )
        return dropped

    def remove(self, job_id: str) -> None:
        """Forget a job (it was requeued and is live again)."""
        gone = self._jobs.pop(job_id, None)
        if gone is not None:
            self._forget_user(gone)

    def _forget_user(self, gone: CachedJob) -> None:
        job = gone.record
        if job.array_job_id and job.array_task_id is not None:
            self._array_tasks.pop((job.array_job_id, job.array_task_id), None)
        ids = self._by_user.get(gone.record.user)
        if ids is not None:
            ids.discard(gone.record.job_id)
            if not ids:
                del self._by_user[gone.record.user]

    def of_users(self, users: Iterable[str] | None) -> Iterator[CachedJob]:
        """Entries of `users` (None: everyone's)."""
        if users is None:
            yield from self._jobs.values()
            return
        for user in users:
            for job_id in self._by_user.get(user, ()):
                yield self._jobs[job_id]


# -- a stable text form for the state store ------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _build(cls: Any, data: dict[str, Any]) -> Any:
    """`cls(**data)`, turning text back into datetimes and lists into tuples; fields the
    class no longer has are ignored and new ones keep their defaults."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value, kind = data[f.name], str(f.type)
        if f.name == "steps":
            value = tuple(_build(JobStepRecord, step) for step in value)
        elif value is not None and "datetime" in kind:
            value = datetime.fromisoformat(value)
        elif isinstance(value, list):
            value = tuple(value)
        values[f.name] = value
    return cls(**values)


def encode_job(job: JobRecord) -> str:
    """A job record as stable JSON text (the job event log, events/journal.py)."""
    return json.dumps(_plain(dataclasses.asdict(job)), separators=(",", ":"))


def decode_job(text: str) -> JobRecord:
    """The record `encode_job` wrote; ValueError/KeyError/TypeError for anything else."""
    job: JobRecord = _build(JobRecord, json.loads(text))
    return job


def encode(entry: CachedJob) -> str:
    return json.dumps(
        {
            "record": _plain(dataclasses.asdict(entry.record)),
            "revision": entry.revision,
            "updated_at": entry.updated_at.isoformat(),
            "has_steps": entry.has_steps,
        },
        separators=(",", ":"),
    )


def decode(text: str) -> CachedJob:
    """The entry `encode` wrote; ValueError/KeyError/TypeError for anything else."""
    data = json.loads(text)
    return CachedJob(
        record=_build(JobRecord, data["record"]),
        revision=int(data["revision"]),
        updated_at=datetime.fromisoformat(data["updated_at"]),
        has_steps=bool(data["has_steps"]),
    )
