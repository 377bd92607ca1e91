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

class SystemState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SYSTEM_STATE_UNSPECIFIED: _ClassVar[SystemState]
    SYSTEM_STATE_ACTIVE: _ClassVar[SystemState]
    SYSTEM_STATE_DEGRADED: _ClassVar[SystemState]
    SYSTEM_STATE_UNAVAILABLE: _ClassVar[SystemState]
    SYSTEM_STATE_MAINTENANCE: _ClassVar[SystemState]

class ComponentKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPONENT_KIND_UNSPECIFIED: _ClassVar[ComponentKind]
    COMPONENT_KIND_SCHEDULER: _ClassVar[ComponentKind]
    COMPONENT_KIND_PARTITION: _ClassVar[ComponentKind]
    COMPONENT_KIND_NODES: _ClassVar[ComponentKind]
    COMPONENT_KIND_FILESYSTEM: _ClassVar[ComponentKind]

class OutageStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTAGE_STATUS_UNSPECIFIED: _ClassVar[OutageStatus]
    OUTAGE_STATUS_PLANNED: _ClassVar[OutageStatus]
    OUTAGE_STATUS_ACTIVE: _ClassVar[OutageStatus]
    OUTAGE_STATUS_COMPLETED: _ClassVar[OutageStatus]
SYSTEM_STATE_UNSPECIFIED: SystemState
SYSTEM_STATE_ACTIVE: SystemState
SYSTEM_STATE_DEGRADED: SystemState
SYSTEM_STATE_UNAVAILABLE: SystemState
SYSTEM_STATE_MAINTENANCE: SystemState
COMPONENT_KIND_UNSPECIFIED: ComponentKind
COMPONENT_KIND_SCHEDULER: ComponentKind
COMPONENT_KIND_PARTITION: ComponentKind
COMPONENT_KIND_NODES: ComponentKind
COMPONENT_KIND_FILESYSTEM: ComponentKind
OUTAGE_STATUS_UNSPECIFIED: OutageStatus
OUTAGE_STATUS_PLANNED: OutageStatus
OUTAGE_STATUS_ACTIVE: OutageStatus
OUTAGE_STATUS_COMPLETED: OutageStatus

class System(_message.Message):
    __slots__ = ("name", "display_name", "description", "state", "reason", "updated_at", "state_changed_at", "components", "active_outages", "scheduler_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    STATE_CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_OUTAGES_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    description: str
    state: SystemState
    reason: str
    updated_at: _timestamp_pb2.Timestamp
    state_changed_at: _timestamp_pb2.Timestamp
    components: _containers.RepeatedCompositeFieldContainer[Component]
    active_outages: _containers.RepeatedCompositeFieldContainer[Outage]
    scheduler_version: str
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., state: _Optional[_Union[SystemState, str]] = ..., reason: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state_changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., components: _Optional[_Iterable[_Union[Component, _Mapping]]] = ..., active_outages: _Optional[_Iterable[_Union[Outage, _Mapping]]] = ..., scheduler_version: _Optional[str] = ...) -> None: ...

class Component(_message.Message):
    __slots__ = ("name", "kind", "display_name", "state", "reason", "checked_at", "controller", "partition", "nodes", "filesystem")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CHECKED_AT_FIELD_NUMBER: _ClassVar[int]
    CONTROLLER_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    FILESYSTEM_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: ComponentKind
    display_name: str
    state: SystemState
    reason: str
    checked_at: _timestamp_pb2.Timestamp
    controller: ControllerDetails
    partition: PartitionDetails
    nodes: NodesDetails
    filesystem: FilesystemDetails
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[ComponentKind, str]] = ..., display_name: _Optional[str] = ..., state: _Optional[_Union[SystemState, str]] = ..., reason: _Optional[str] = ..., checked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., controller: _Optional[_Union[ControllerDetails, _Mapping]] = ..., partition: _Optional[_Union[PartitionDetails, _Mapping]] = ..., nodes: _Optional[_Union[NodesDetails, _Mapping]] = ..., filesystem: _Optional[_Union[FilesystemDetails, _Mapping]] = ...) -> None: ...

class ControllerDetails(_message.Message):
    __slots__ = ("responding_hosts", "latency")
    RESPONDING_HOSTS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    responding_hosts: _containers.RepeatedScalarFieldContainer[str]
    latency: _duration_pb2.Duration
    def __init__(self, responding_hosts: _Optional[_Iterable[str]] = ..., latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class PartitionDetails(_message.Message):
    __slots__ = ("scheduler_state", "total_nodes", "unavailable_nodes", "total_cpus")
    SCHEDULER_STATE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_NODES_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_NODES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CPUS_FIELD_NUMBER: _ClassVar[int]
    scheduler_state: str
    total_nodes: int
    unavailable_nodes: int
    total_cpus: int
    def __init__(self, scheduler_state: _Optional[str] = ..., total_nodes: _Optional[int] = ..., unavailable_nodes: _Optional[int] = ..., total_cpus: _Optional[int] = ...) -> None: ...

class NodesDetails(_message.Message):
    __slots__ = ("total_nodes", "available_nodes", "unavailable_nodes")
    TOTAL_NODES_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_NODES_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_NODES_FIELD_NUMBER: _ClassVar[int]
    total_nodes: int
    available_nodes: int
    unavailable_nodes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, total_nodes: _Optional[int] = ..., available_nodes: _Optional[int] = ..., unavailable_nodes: _Optional[_Iterable[str]] = ...) -> None: ...

class FilesystemDetails(_message.Message):
    __slots__ = ("path", "total_bytes", "used_bytes", "available_bytes", "latency")
    PATH_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    path: str
    total_bytes: int
    used_bytes: int
    available_bytes: int
    latency: _duration_pb2.Duration
    def __init__(self, path: _Optional[str] = ..., total_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ..., available_bytes: _Optional[int] = ..., latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ListSystemsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSystemsResponse(_message.Message):
    __slots__ = ("systems", "next_page_token")
    SYSTEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    systems: _containers.RepeatedCompositeFieldContainer[System]
    next_page_token: str
    def __init__(self, systems: _Optional[_Iterable[_Union[System, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetSystemRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetSystemResponse(_message.Message):
    __slots__ = ("system",)
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    system: System
    def __init__(self, system: _Optional[_Union[System, _Mapping]] = ...) -> None: ...

class WatchSystemsRequest(_message.Message):
    __slots__ = ("names", "heartbeat_interval")
    NAMES_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    heartbeat_interval: _duration_pb2.Duration
    def __init__(self, names: _Optional[_Iterable[str]] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class WatchSystemsResponse(_message.Message):
    __slots__ = ("snapshot", "change", "heartbeat")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    snapshot: SystemsSnapshot
    change: SystemChange
    heartbeat: _common_pb2.Heartbeat
    def __init__(self, snapshot: _Optional[_Union[SystemsSnapshot, _Mapping]] = ..., change: _Optional[_Union[SystemChange, _Mapping]] = ..., heartbeat: _Optional[_Union[_common_pb2.Heartbeat, _Mapping]] = ...) -> None: ...

class SystemsSnapshot(_message.Message):
    __slots__ = ("systems",)
    SYSTEMS_FIELD_NUMBER: _ClassVar[int]
    systems: _containers.RepeatedCompositeFieldContainer[System]
    def __init__(self, systems: _Optional[_Iterable[_Union[System, _Mapping]]] = ...) -> None: ...

class SystemChange(_message.Message):
    __slots__ = ("system", "previous_state")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STATE_FIELD_NUMBER: _ClassVar[int]
    system: System
    previous_state: SystemState
    def __init__(self, system: _Optional[_Union[System, _Mapping]] = ..., previous_state: _Optional[_Union[SystemState, str]] = ...) -> None: ...

class Outage(_message.Message):
    __slots__ = ("name", "system", "start_time", "end_time", "description", "status", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    system: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    description: str
    status: OutageStatus
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., system: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., description: _Optional[str] = ..., status: _Optional[_Union[OutageStatus, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListOutagesRequest(_message.Message):
    __slots__ = ("system", "statuses", "page_size", "page_token")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    system: str
    statuses: _containers.RepeatedScalarFieldContainer[OutageStatus]
    page_size: int
    page_token: str
    def __init__(self, system: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[OutageStatus, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListOutagesResponse(_message.Message):
    __slots__ = ("outages", "next_page_token")
    OUTAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    outages: _containers.RepeatedCompositeFieldContainer[Outage]
    next_page_token: str
    def __init__(self, outages: _Optional[_Iterable[_Union[Outage, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Note(_message.Message):
    __slots__ = ("name", "system", "text", "author", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    system: str
    text: str
    author: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., system: _Optional[str] = ..., text: _Optional[str] = ..., author: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListNotesRequest(_message.Message):
    __slots__ = ("system", "page_size", "page_token")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    system: str
    page_size: int
    page_token: str
    def __init__(self, system: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListNotesResponse(_message.Message):
    __slots__ = ("notes", "next_page_token")
    NOTES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    notes: _containers.RepeatedCompositeFieldContainer[Note]
    next_page_token: str
    def __init__(self, notes: _Optional[_Iterable[_Union[Note, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
