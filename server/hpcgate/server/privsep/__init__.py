"""Privilege separation: work done on behalf of a user runs as that user, never as the server.

See docs/privsep.md for the model. Callers resolve an identity once per request
(`PrivilegeSeparation.identity`), then use that user's worker (`worker(identity)`:
open/stat/whoami, descriptors passed back) or run commands (`spawn`, `run`).
"""

from hpcgate.server.privsep.broker import (
    CommandOutput,
    FileStat,
    Mode,
    PrivilegeSeparation,
    SpawnedCommand,
    UserWorker,
    is_loader_variable,
)
from hpcgate.server.privsep.errors import (
    CommandTimeout,
    CommandWithheld,
    ForbiddenUser,
    PrivsepError,
    UnknownUser,
    WorkerTimeout,
    WorkerUnavailable,
)
from hpcgate.server.privsep.identity import UserIdentity, lookup
from hpcgate.server.privsep.launcher import WorkerCredentials
from hpcgate.server.privsep.policy import Policy
from hpcgate.server.privsep.spawner import Spawner

__all__ = [
    "CommandOutput",
    "CommandTimeout",
    "CommandWithheld",
    "FileStat",
    "ForbiddenUser",
    "Mode",
    "Policy",
    "PrivilegeSeparation",
    "PrivsepError",
    "SpawnedCommand",
    "Spawner",
    "UnknownUser",
    "UserIdentity",
    "UserWorker",
    "WorkerCredentials",
    "WorkerTimeout",
    "WorkerUnavailable",
    "is_loader_variable",
    "lookup",
]
