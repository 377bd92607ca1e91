"""TaskRecord -> hpcgate.v1.Task.

Kinds and their proto shapes: a kind's request and result are stored as the JSON of its
spec and result messages (`json_format.MessageToDict(msg, preserving_proto_field_name=True)`),
so they come back here without a kind-specific converter. Kinds the proto does not know
(none today) are sent as TASK_KIND_UNSPECIFIED without spec or result.
"""

from __future__ import annotations

from google.protobuf import json_format

from hpcgate.server.api.timeconv import timestamp
from hpcgate.server.tasks.model import TaskRecord, TaskState
from hpcgate.v1 import tasks_pb2

TRANSFER = "transfer"
KIND_TO_PROTO = {TRANSFER: tasks_pb2.TASK_KIND_TRANSFER}
KIND_FROM_PROTO = {v: k for k, v in KIND_TO_PROTO.items()}
STATE_TO_PROTO = {
    TaskState.PENDING: tasks_pb2.TASK_STATE_PENDING,
    TaskState.RUNNING: tasks_pb2.TASK_STATE_RUNNING,
    TaskState.SUCCEEDED: tasks_pb2.TASK_STATE_SUCCEEDED,
    TaskState.FAILED: tasks_pb2.TASK_STATE_FAILED,
    TaskState.CANCELLED: tasks_pb2.TASK_STATE_CANCELLED,
}
STATE_FROM_PROTO = {v: k for k, v in STATE_TO_PROTO.items()}


def progress_to_proto(record: TaskRecord) -> tasks_pb2.Progress:
    p = record.progress
    msg = tasks_pb2.Progress(
        bytes_done=p.bytes_done,
        files_done=p.files_done,
        message=p.message,
        bytes_per_second=p.bytes_per_second if record.state == TaskState.RUNNING else 0.0,
    )
    if p.bytes_total is not None:
        msg.bytes_total = p.bytes_total
    if p.files_total is not None:
        msg.files_total = p.files_total
    if record.state == TaskState.SUCCEEDED:
        msg.percent = 100.0
    elif (percent := p.percent) is not None:
        msg.percent = percent
    return msg


def task_to_proto(record: TaskRecord) -> tasks_pb2.Task:
    task = tasks_pb2.Task(
        name=record.name,
        task_id=record.id,
        kind=KIND_TO_PROTO.get(record.kind, tasks_pb2.TASK_KIND_UNSPECIFIED),
        state=STATE_TO_PROTO[record.state],
        owner=record.user,
        description=record.description,
        create_time=timestamp(record.create_time),
        update_time=timestamp(record.update_time),
        start_time=timestamp(record.start_time),
        end_time=timestamp(record.end_time),
        progress=progress_to_proto(record),
        cancel_requested=record.cancel_requested and not record.state.ended,
        request_id=record.request_id,
        metadata={**({"system": record.system} if record.system else {}), **record.labels},
    )
    if record.error is not None and record.state == TaskState.FAILED:
        task.error.CopyFrom(
            tasks_pb2.TaskError(
                code=record.error.code, message=record.error.message, path=record.error.path
            )
        )
    if record.kind == TRANSFER:
        if isinstance(record.request, dict):
            json_format.ParseDict(record.request, task.transfer, ignore_unknown_fields=True)
        if isinstance(record.result, dict):
            json_format.ParseDict(record.result, task.transfer_result, ignore_unknown_fields=True)
    return task
