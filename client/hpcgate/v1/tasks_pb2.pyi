import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from hpcgate.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_UNSPECIFIED: _ClassVar[TaskState]
    TASK_STATE_PENDING: _ClassVar[TaskState]
    TASK_STATE_RUNNING: _ClassVar[TaskState]
    TASK_STATE_SUCCEEDED: _ClassVar[TaskState]
    TASK_STATE_FAILED: _ClassVar[TaskState]
    TASK_STATE_CANCELLED: _ClassVar[TaskState]

class TaskKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_KIND_UNSPECIFIED: _ClassVar[TaskKind]
    TASK_KIND_TRANSFER: _ClassVar[TaskKind]

class TransferKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSFER_KIND_UNSPECIFIED: _ClassVar[TransferKind]
    TRANSFER_KIND_COPY: _ClassVar[TransferKind]
    TRANSFER_KIND_MOVE: _ClassVar[TransferKind]
    TRANSFER_KIND_SYNC: _ClassVar[TransferKind]
TASK_STATE_UNSPECIFIED: TaskState
TASK_STATE_PENDING: TaskState
TASK_STATE_RUNNING: TaskState
TASK_STATE_SUCCEEDED: TaskState
TASK_STATE_FAILED: TaskState
TASK_STATE_CANCELLED: TaskState
TASK_KIND_UNSPECIFIED: TaskKind
TASK_KIND_TRANSFER: TaskKind
TRANSFER_KIND_UNSPECIFIED: TransferKind
TRANSFER_KIND_COPY: TransferKind
TRANSFER_KIND_MOVE: TransferKind
TRANSFER_KIND_SYNC: TransferKind

class Task(_message.Message):
    __slots__ = ("name", "task_id", "kind", "state", "owner", "description", "create_time", "update_time", "start_time", "end_time", "progress", "error", "cancel_requested", "request_id", "metadata", "transfer", "transfer_result")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_RESULT_FIELD_NUMBER: _ClassVar[int]
    name: str
    task_id: str
    kind: TaskKind
    state: TaskState
    owner: str
    description: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    progress: Progress
    error: TaskError
    cancel_requested: bool
    request_id: str
    metadata: _containers.ScalarMap[str, str]
    transfer: TransferSpec
    transfer_result: TransferResult
    def __init__(self, name: _Optional[str] = ..., task_id: _Optional[str] = ..., kind: _Optional[_Union[TaskKind, str]] = ..., state: _Optional[_Union[TaskState, str]] = ..., owner: _Optional[str] = ..., description: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., error: _Optional[_Union[TaskError, _Mapping]] = ..., cancel_requested: _Optional[bool] = ..., request_id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., transfer: _Optional[_Union[TransferSpec, _Mapping]] = ..., transfer_result: _Optional[_Union[TransferResult, _Mapping]] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("bytes_done", "bytes_total", "files_done", "files_total", "message", "percent", "bytes_per_second")
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FILES_DONE_FIELD_NUMBER: _ClassVar[int]
    FILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    BYTES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    bytes_done: int
    bytes_total: int
    files_done: int
    files_total: int
    message: str
    percent: float
    bytes_per_second: float
    def __init__(self, bytes_done: _Optional[int] = ..., bytes_total: _Optional[int] = ..., files_done: _Optional[int] = ..., files_total: _Optional[int] = ..., message: _Optional[str] = ..., percent: _Optional[float] = ..., bytes_per_second: _Optional[float] = ...) -> None: ...

class TaskError(_message.Message):
    __slots__ = ("code", "message", "path")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    path: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class TransferEndpoint(_message.Message):
    __slots__ = ("system", "path", "facility")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FACILITY_FIELD_NUMBER: _ClassVar[int]
    system: str
    path: str
    facility: str
    def __init__(self, system: _Optional[str] = ..., path: _Optional[str] = ..., facility: _Optional[str] = ...) -> None: ...

class TransferSpec(_message.Message):
    __slots__ = ("kind", "source", "destination", "recursive", "preserve", "overwrite", "delete_extraneous", "skip_verification")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    PRESERVE_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    DELETE_EXTRANEOUS_FIELD_NUMBER: _ClassVar[int]
    SKIP_VERIFICATION_FIELD_NUMBER: _ClassVar[int]
    kind: TransferKind
    source: TransferEndpoint
    destination: TransferEndpoint
    recursive: bool
    preserve: bool
    overwrite: bool
    delete_extraneous: bool
    skip_verification: bool
    def __init__(self, kind: _Optional[_Union[TransferKind, str]] = ..., source: _Optional[_Union[TransferEndpoint, _Mapping]] = ..., destination: _Optional[_Union[TransferEndpoint, _Mapping]] = ..., recursive: _Optional[bool] = ..., preserve: _Optional[bool] = ..., overwrite: _Optional[bool] = ..., delete_extraneous: _Optional[bool] = ..., skip_verification: _Optional[bool] = ...) -> None: ...

class TransferResult(_message.Message):
    __slots__ = ("files_transferred", "bytes_transferred", "files_skipped", "files_deleted", "directories_created", "files_verified")
    FILES_TRANSFERRED_FIELD_NUMBER: _ClassVar[int]
    BYTES_TRANSFERRED_FIELD_NUMBER: _ClassVar[int]
    FILES_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    FILES_DELETED_FIELD_NUMBER: _ClassVar[int]
    DIRECTORIES_CREATED_FIELD_NUMBER: _ClassVar[int]
    FILES_VERIFIED_FIELD_NUMBER: _ClassVar[int]
    files_transferred: int
    bytes_transferred: int
    files_skipped: int
    files_deleted: int
    directories_created: int
    files_verified: int
    def __init__(self, files_transferred: _Optional[int] = ..., bytes_transferred: _Optional[int] = ..., files_skipped: _Optional[int] = ..., files_deleted: _Optional[int] = ..., directories_created: _Optional[int] = ..., files_verified: _Optional[int] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "states", "kinds", "created_after", "created_before")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AFTER_FIELD_NUMBER: _ClassVar[int]
    CREATED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    states: _containers.RepeatedScalarFieldContainer[TaskState]
    kinds: _containers.RepeatedScalarFieldContainer[TaskKind]
    created_after: _timestamp_pb2.Timestamp
    created_before: _timestamp_pb2.Timestamp
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., states: _Optional[_Iterable[_Union[TaskState, str]]] = ..., kinds: _Optional[_Iterable[_Union[TaskKind, str]]] = ..., created_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks", "next_page_token")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    next_page_token: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelTaskRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CancelTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class WatchTaskRequest(_message.Message):
    __slots__ = ("name", "heartbeat_interval")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    name: str
    heartbeat_interval: _duration_pb2.Duration
    def __init__(self, name: _Optional[str] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class WatchTaskResponse(_message.Message):
    __slots__ = ("task", "heartbeat")
    TASK_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    task: Task
    heartbeat: _common_pb2.Heartbeat
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., heartbeat: _Optional[_Union[_common_pb2.Heartbeat, _Mapping]] = ...) -> None: ...
