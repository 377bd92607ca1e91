"""TasksService: read, list, cancel and watch the caller's durable tasks.

Tasks belong to the user who created them. Another user's task is NOT_FOUND, exactly as
a task that does not exist, so task ids reveal nothing. The runner (tasks/runner.py)
owns every change; this module only validates, checks ownership and converts.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

from hpcgate.server.api.convert.tasks import KIND_FROM_PROTO, STATE_FROM_PROTO, task_to_proto
from hpcgate.server.api.errors import DomainError, FieldViolations, not_found
from hpcgate.server.api.pagination import check_page_request, next_page_token, page_window
from hpcgate.server.api.streaming import heartbeat, heartbeat_interval, unless_draining
from hpcgate.server.api.timeconv import read_timestamp
from hpcgate.server.auth.caller import current_caller
from hpcgate.server.config import TasksConfig
from hpcgate.server.tasks.model import TaskQuery, TaskRecord
from hpcgate.server.tasks.runner import TaskRunner
from hpcgate.v1 import tasks_pb2, tasks_pb2_grpc

_TASK_NAME = re.compile(r"^tasks/([A-Za-z0-9][A-Za-z0-9_-]{0,63})$")


def task_id_from_name(name: str, field: str, errors: FieldViolations) -> str:
    """`tasks/{id}` -> id; records a violation and returns '' when malformed."""
    match = _TASK_NAME.match(name)
    if match is None:
        errors.add(field, f"must look like 'tasks/{{task_id}}'; got {name!r}")
        return ""
    return match.group(1)


def _missing(name: str) -> DomainError:
    return not_found(f"no task {name!r} (tasks are visible only to the user who started them)")


class TasksServicer(tasks_pb2_grpc.TasksServiceServicer):
    def __init__(self, runner: TaskRunner, settings: TasksConfig, draining: asyncio.Event) -> None:
        self.runner = runner
        self.settings = settings
        self.draining = draining

    async def _own_task(self, name: str) -> TaskRecord:
        errors = FieldViolations()
        task_id = task_id_from_name(name, "name", errors)
        errors.raise_if_any()
        record = await self.runner.get(task_id, current_caller().user)
        if record is None:
            raise _missing(name)
        return record

    async def GetTask(
        self, request: tasks_pb2.GetTaskRequest, context: Any
    ) -> tasks_pb2.GetTaskResponse:
        record = await self._own_task(request.name)
        return tasks_pb2.GetTaskResponse(task=task_to_proto(record))

    async def ListTasks(
        self, request: tasks_pb2.ListTasksRequest, context: Any
    ) -> tasks_pb2.ListTasksResponse:
        caller = current_caller()
        errors = FieldViolations()
        check_page_request(request.page_size, request.page_token, errors)
        states = []
        for i, state in enumerate(request.states):
            if state not in STATE_FROM_PROTO:
                errors.add(f"states[{i}]", "must be PENDING, RUNNING, SUCCEEDED, FAILED or "
                           "CANCELLED")  # fmt: skip
            else:
                states.append(STATE_FROM_PROTO[state])
        kinds = []
        for i, kind in enumerate(request.kinds):
            if kind not in KIND_FROM_PROTO:
                errors.add(f"kinds[{i}]", "must be a task kind such as TASK_KIND_TRANSFER")
            else:
                kinds.append(KIND_FROM_PROTO[kind])
        after = read_timestamp(request, "created_after", errors)
        before = read_timestamp(request, "created_before", errors)
        if after is not None and before is not None and before <= after:
            errors.add("created_before", "must be later than created_after")
        errors.raise_if_any()
        query = TaskQuery(tuple(states), tuple(kinds), after, before)
        offset, size = page_window(request.page_size, request.page_token)
        # One more than the page: tells whether another page follows without a COUNT.
        records = await self.runner.list_tasks(caller.user, query, offset, size + 1)
        page = records[:size]
        return tasks_pb2.ListTasksResponse(
            tasks=[task_to_proto(r) for r in page],
            next_page_token=next_page_token(offset, len(page), len(records) > size),
        )

    async def CancelTask(
        self, request: tasks_pb2.CancelTaskRequest, context: Any
    ) -> tasks_pb2.CancelTaskResponse:
        errors = FieldViolations()
        task_id = task_id_from_name(request.name, "name", errors)
        errors.raise_if_any()
        record = await self.runner.cancel(task_id, current_caller().user)
        if record is None:
            raise _missing(request.name)
        return tasks_pb2.CancelTaskResponse(task=task_to_proto(record))

    async def WatchTask(
        self, request: tasks_pb2.WatchTaskRequest, context: Any
    ) -> AsyncIterator[tasks_pb2.WatchTaskResponse]:
        caller = current_caller()
        errors = FieldViolations()
        task_id = task_id_from_name(request.name, "name", errors)
        interval = heartbeat_interval(request, errors, self.settings.heartbeat_interval)
        errors.raise_if_any()
        # Subscribed before reading the task: no change can fall between the two.
        with self.runner.watch(task_id) as watch:
            record = await self.runner.get(task_id, caller.user)
            if record is None:
                raise _missing(request.name)
            yield tasks_pb2.WatchTaskResponse(task=task_to_proto(record))
            last = record.revision
            while not record.state.ended:
                update = await unless_draining(
                    watch.next(interval), self.draining,
                    "the server is shutting down; the task continues (or resumes when the "
                    "server is back): reconnect to keep watching",
                )  # fmt: skip
                if update is None:
                    yield tasks_pb2.WatchTaskResponse(heartbeat=heartbeat())
                elif update.revision > last:  # older copies were published before our read
                    record, last = update, update.revision
                    yield tasks_pb2.WatchTaskResponse(task=task_to_proto(record))
