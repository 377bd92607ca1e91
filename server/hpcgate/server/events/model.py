"""What the job hub hands out: job events (with revisions) and scheduler notices."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from hpcgate.server.slurm.adapter import JobRecord

CREATED, STATE_CHANGED, UPDATED = "created", "state_changed", "updated"


@dataclasses.dataclass(frozen=True)
class JobEvent:
    revision: int
    kind: str  # CREATED, STATE_CHANGED or UPDATED
    previous_state: str  # "" for CREATED
    job: JobRecord
    time: datetime


@dataclasses.dataclass(frozen=True)
class SchedulerNotice:
    """The controller became (un)reachable; not part of the revision history."""

    revision: int
    reachable: bool
    reason: str
    since: datetime
