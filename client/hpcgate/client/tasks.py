"""Durable server-side tasks (`client.tasks`) and transfers that create them (`client.storage`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import grpc
from google.protobuf import duration_pb2

from hpcgate.client.errors import (
    FieldViolation,
    HpcgateError,
    InvalidArgument,
    error_class,
    retryable,
)
from hpcgate.v1 import storage_pb2, storage_pb2_grpc, tasks_pb2, tasks_pb2_grpc

if TYPE_CHECKING:
    from hpcgate.client.core import Client

ProgressCallback = Callable[[tasks_pb2.Progress], object]
_ENDED = {tasks_pb2.TASK_STATE_SUCCEEDED, tasks_pb2.TASK_STATE_FAILED,
          tasks_pb2.TASK_STATE_CANCELLED}  # fmt: skip


def task_name(task: str) -> str:
    return task if task.startswith("tasks/") else f"tasks/{task}"


class Task:
    """A server-side task (a transfer). `message` is its latest `tasks_pb2.Task`."""

    def __init__(self, client: Client, message: tasks_pb2.Task) -> None:
        self._client = client
        self.message = message

    @property
    def id(self) -> str:
        return self.message.task_id

    @property
    def state(self) -> str:
        """PENDING, RUNNING, SUCCEEDED, FAILED or CANCELLED."""
        return tasks_pb2.TaskState.Name(self.message.state).removeprefix("TASK_STATE_")

    @property
    def done(self) -> bool:
        return self.message.state in _ENDED

    def __repr__(self) -> str:
        return f"Task({self.id!r}, state={self.state})"

    async def refresh(self) -> Task:
        self.message = await self._client.tasks._get(self.message.name)
        return self

    async def cancel(self) -> Task:
        stub = tasks_pb2_grpc.TasksServiceStub(self._client.channel)
        reply = await self._client.unary(
            stub.CancelTask, tasks_pb2.CancelTaskRequest(name=self.message.name), retry=True
        )
        self.message = reply.task
        return self

    async def wait(
        self, progress: ProgressCallback | None = None, *, raise_on_failure: bool = True
    ) -> Task:
        """Until the task ends, on WatchTask (no polling; reconnects if the stream drops).
        `progress` gets every Progress the server reports. A FAILED task raises the
        HpcgateError its error describes, unless `raise_on_failure` is False."""
        drops = 0
        while not self.done:
            try:
                async for message in self._watch():
                    drops = 0
                    self.message = message
                    if progress is not None and message.HasField("progress"):
                        progress(message.progress)
                    if self.done:
                        break
            except HpcgateError as e:
                if e.code != grpc.StatusCode.CANCELLED and not retryable(e):
                    raise
                # The stream dropped (a restart) or was refused (a rate limit): back off,
                # then pick up where the task is.
                await asyncio.sleep(self._client.retry.delay(drops, e))
                drops += 1
                await self.refresh()
        if raise_on_failure and self.message.state == tasks_pb2.TASK_STATE_FAILED:
            code = next((c for c in grpc.StatusCode if c.value[0] == self.message.error.code),
                        grpc.StatusCode.UNKNOWN)  # fmt: skip
            raise error_class(code)(
                f"task {self.id} failed: {self.message.error.message}", code=code
            )
        return self

    async def _watch(self) -> AsyncIterator[tasks_pb2.Task]:
        stub = tasks_pb2_grpc.TasksServiceStub(self._client.channel)
        request = tasks_pb2.WatchTaskRequest(
            name=self.message.name, heartbeat_interval=duration_pb2.Duration(seconds=30)
        )
        async for reply in self._client.stream(stub.WatchTask, request):
            if reply.WhichOneof("kind") == "task":
                yield reply.task


class Tasks:
    """`client.tasks`: get, list and cancel the caller's tasks."""

    def __init__(self, client: Client) -> None:
        self._client = client

    async def _get(self, name: str) -> tasks_pb2.Task:
        stub = tasks_pb2_grpc.TasksServiceStub(self._client.channel)
        reply = await self._client.unary(
            stub.GetTask, tasks_pb2.GetTaskRequest(name=task_name(name)), retry=True
        )
        return reply.task

    async def get(self, task: str) -> Task:
        return Task(self._client, await self._get(task))

    async def list(self, *, states: list[str] | None = None) -> AsyncIterator[Task]:
        """Every task of the caller, newest first, over all pages."""
        stub = tasks_pb2_grpc.TasksServiceStub(self._client.channel)
        wanted = [f"TASK_STATE_{s.upper()}" for s in states or []]
        known = set(tasks_pb2.TaskState.keys())
        unknown = [w for w in wanted if w not in known]
        if unknown:
            raise InvalidArgument(
                f"no task state {', '.join(u.removeprefix('TASK_STATE_') for u in unknown)}: "
                "use PENDING, RUNNING, SUCCEEDED, FAILED or CANCELLED",
                violations=(FieldViolation("states", "unknown task state"),),
            )
        token = ""
        while True:
            request = tasks_pb2.ListTasksRequest(page_size=200, page_token=token, states=wanted)
            reply = await self._client.unary(stub.ListTasks, request, retry=True)
            for message in reply.tasks:
                yield Task(self._client, message)
            token = reply.next_page_token
            if not token:
                return

    async def cancel(self, task: str) -> Task:
        return await (await self.get(task)).cancel()


class Storage:
    """`client.storage`: filesystems, and transfers between them and between systems."""

    def __init__(self, client: Client) -> None:
        self._client = client

    async def filesystems(self, system: str | None = None) -> list[storage_pb2.Filesystem]:
        stub = storage_pb2_grpc.StorageServiceStub(self._client.channel)
        found: list[storage_pb2.Filesystem] = []
        token = ""
        while True:
            request = storage_pb2.ListFilesystemsRequest(
                parent=self._client.system(system), page_token=token
            )
            reply = await self._client.unary(stub.ListFilesystems, request, retry=True)
            found += reply.filesystems
            token = reply.next_page_token
            if not token:
                return found

    async def transfer(
        self,
        source: str,
        destination: str,
        *,
        system: str | None = None,
        destination_system: str | None = None,
        kind: str = "copy",
        recursive: bool = False,
        overwrite: bool = False,
        preserve: bool = False,
        delete_extraneous: bool = False,
        request_id: str | None = None,
    ) -> Task:
        """Start a transfer task (`kind` copy, move or sync) and return its handle; a
        retry with the same request_id (filled in for you) returns the same task."""
        src_system = self._client.system(system).removeprefix("systems/")
        dst_system = (
            self._client.system(destination_system).removeprefix("systems/")
            if destination_system
            else src_system
        )
        request = storage_pb2.StartTransferRequest(
            request_id=request_id or f"client-{uuid.uuid4().hex}",
            kind=f"TRANSFER_KIND_{kind.upper()}",
            source=tasks_pb2.TransferEndpoint(system=src_system, path=source),
            destination=tasks_pb2.TransferEndpoint(system=dst_system, path=destination),
            recursive=recursive,
            overwrite=overwrite,
            preserve=preserve,
            delete_extraneous=delete_extraneous,
        )
        stub = storage_pb2_grpc.StorageServiceStub(self._client.channel)
        reply = await self._client.unary(stub.StartTransfer, request, retry=True)
        return Task(self._client, reply.task)
