"""Durable asynchronous tasks: records (model), persistence (store), execution (runner),
and the per-task watch feed (watch), on one server's SQLite database or shared by the
replicas of a cluster on PostgreSQL. TasksService (api/tasks.py) reads them; kinds such
as transfers plug in with `TaskRunner.register(kind, handler, resumable=True)`.
"""

from hpcgate.server.tasks.model import (
    NewTask,
    Progress,
    RequestIdConflict,
    TaskError,
    TaskFailed,
    TaskQuery,
    TaskRecord,
    TaskState,
    TooManyTasks,
)
from hpcgate.server.tasks.runner import Handler, TaskContext, TaskRunner
from hpcgate.server.tasks.store import SqlTaskStore, TaskStore
from hpcgate.server.tasks.watch import TaskFeed, TaskWatch

__all__ = [
    "Handler",
    "NewTask",
    "Progress",
    "RequestIdConflict",
    "SqlTaskStore",
    "TaskContext",
    "TaskError",
    "TaskFailed",
    "TaskFeed",
    "TaskQuery",
    "TaskRecord",
    "TaskRunner",
    "TaskState",
    "TaskStore",
    "TaskWatch",
    "TooManyTasks",
]
