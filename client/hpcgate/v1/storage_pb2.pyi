import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from hpcgate.v1 import tasks_pb2 as _tasks_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FilesystemKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FILESYSTEM_KIND_UNSPECIFIED: _ClassVar[FilesystemKind]
    FILESYSTEM_KIND_HOME: _ClassVar[FilesystemKind]
    FILESYSTEM_KIND_SCRATCH: _ClassVar[FilesystemKind]
    FILESYSTEM_KIND_PROJECT: _ClassVar[FilesystemKind]
    FILESYSTEM_KIND_ARCHIVE: _ClassVar[FilesystemKind]
    FILESYSTEM_KIND_OTHER: _ClassVar[FilesystemKind]

class FilesystemState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FILESYSTEM_STATE_UNSPECIFIED: _ClassVar[FilesystemState]
    FILESYSTEM_STATE_ONLINE: _ClassVar[FilesystemState]
    FILESYSTEM_STATE_DEGRADED: _ClassVar[FilesystemState]
    FILESYSTEM_STATE_READ_ONLY: _ClassVar[FilesystemState]
    FILESYSTEM_STATE_OFFLINE: _ClassVar[FilesystemState]
FILESYSTEM_KIND_UNSPECIFIED: FilesystemKind
FILESYSTEM_KIND_HOME: FilesystemKind
FILESYSTEM_KIND_SCRATCH: FilesystemKind
FILESYSTEM_KIND_PROJECT: FilesystemKind
FILESYSTEM_KIND_ARCHIVE: FilesystemKind
FILESYSTEM_KIND_OTHER: FilesystemKind
FILESYSTEM_STATE_UNSPECIFIED: FilesystemState
FILESYSTEM_STATE_ONLINE: FilesystemState
FILESYSTEM_STATE_DEGRADED: FilesystemState
FILESYSTEM_STATE_READ_ONLY: FilesystemState
FILESYSTEM_STATE_OFFLINE: FilesystemState

class StorageQuota(_message.Message):
    __slots__ = ("known", "used_bytes", "soft_limit_bytes", "hard_limit_bytes", "used_inodes", "soft_limit_inodes", "hard_limit_inodes", "grace_expires", "source", "measured_at")
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    SOFT_LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    HARD_LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_INODES_FIELD_NUMBER: _ClassVar[int]
    SOFT_LIMIT_INODES_FIELD_NUMBER: _ClassVar[int]
    HARD_LIMIT_INODES_FIELD_NUMBER: _ClassVar[int]
    GRACE_EXPIRES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MEASURED_AT_FIELD_NUMBER: _ClassVar[int]
    known: bool
    used_bytes: int
    soft_limit_bytes: int
    hard_limit_bytes: int
    used_inodes: int
    soft_limit_inodes: int
    hard_limit_inodes: int
    grace_expires: _timestamp_pb2.Timestamp
    source: str
    measured_at: _timestamp_pb2.Timestamp
    def __init__(self, known: _Optional[bool] = ..., used_bytes: _Optional[int] = ..., soft_limit_bytes: _Optional[int] = ..., hard_limit_bytes: _Optional[int] = ..., used_inodes: _Optional[int] = ..., soft_limit_inodes: _Optional[int] = ..., hard_limit_inodes: _Optional[int] = ..., grace_expires: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[str] = ..., measured_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Filesystem(_message.Message):
    __slots__ = ("name", "filesystem", "system", "display_name", "kind", "mount_path", "user_path", "fs_type", "total_bytes", "used_bytes", "free_bytes", "total_inodes", "used_inodes", "free_inodes", "caller_quota", "state", "reason", "updated_at", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FILESYSTEM_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MOUNT_PATH_FIELD_NUMBER: _ClassVar[int]
    USER_PATH_FIELD_NUMBER: _ClassVar[int]
    FS_TYPE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_INODES_FIELD_NUMBER: _ClassVar[int]
    USED_INODES_FIELD_NUMBER: _ClassVar[int]
    FREE_INODES_FIELD_NUMBER: _ClassVar[int]
    CALLER_QUOTA_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    filesystem: str
    system: str
    display_name: str
    kind: FilesystemKind
    mount_path: str
    user_path: str
    fs_type: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    total_inodes: int
    used_inodes: int
    free_inodes: int
    caller_quota: StorageQuota
    state: FilesystemState
    reason: str
    updated_at: _timestamp_pb2.Timestamp
    description: str
    def __init__(self, name: _Optional[str] = ..., filesystem: _Optional[str] = ..., system: _Optional[str] = ..., display_name: _Optional[str] = ..., kind: _Optional[_Union[FilesystemKind, str]] = ..., mount_path: _Optional[str] = ..., user_path: _Optional[str] = ..., fs_type: _Optional[str] = ..., total_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., total_inodes: _Optional[int] = ..., used_inodes: _Optional[int] = ..., free_inodes: _Optional[int] = ..., caller_quota: _Optional[_Union[StorageQuota, _Mapping]] = ..., state: _Optional[_Union[FilesystemState, str]] = ..., reason: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., description: _Optional[str] = ...) -> None: ...

class ListFilesystemsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListFilesystemsResponse(_message.Message):
    __slots__ = ("filesystems", "next_page_token")
    FILESYSTEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filesystems: _containers.RepeatedCompositeFieldContainer[Filesystem]
    next_page_token: str
    def __init__(self, filesystems: _Optional[_Iterable[_Union[Filesystem, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StartTransferRequest(_message.Message):
    __slots__ = ("request_id", "kind", "source", "destination", "recursive", "preserve", "overwrite", "delete_extraneous", "skip_verification")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    PRESERVE_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    DELETE_EXTRANEOUS_FIELD_NUMBER: _ClassVar[int]
    SKIP_VERIFICATION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    kind: _tasks_pb2.TransferKind
    source: _tasks_pb2.TransferEndpoint
    destination: _tasks_pb2.TransferEndpoint
    recursive: bool
    preserve: bool
    overwrite: bool
    delete_extraneous: bool
    skip_verification: bool
    def __init__(self, request_id: _Optional[str] = ..., kind: _Optional[_Union[_tasks_pb2.TransferKind, str]] = ..., source: _Optional[_Union[_tasks_pb2.TransferEndpoint, _Mapping]] = ..., destination: _Optional[_Union[_tasks_pb2.TransferEndpoint, _Mapping]] = ..., recursive: _Optional[bool] = ..., preserve: _Optional[bool] = ..., overwrite: _Optional[bool] = ..., delete_extraneous: _Optional[bool] = ..., skip_verification: _Optional[bool] = ...) -> None: ...

class StartTransferResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _tasks_pb2.Task
    def __init__(self, task: _Optional[_Union[_tasks_pb2.Task, _Mapping]] = ...) -> None: ...
