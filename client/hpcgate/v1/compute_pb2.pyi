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

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_PENDING: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUSPENDED: _ClassVar[JobState]
    JOB_STATE_COMPLETING: _ClassVar[JobState]
    JOB_STATE_COMPLETED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
    JOB_STATE_TIMEOUT: _ClassVar[JobState]
    JOB_STATE_NODE_FAIL: _ClassVar[JobState]
    JOB_STATE_PREEMPTED: _ClassVar[JobState]
    JOB_STATE_OUT_OF_MEMORY: _ClassVar[JobState]
    JOB_STATE_BOOT_FAIL: _ClassVar[JobState]
    JOB_STATE_DEADLINE: _ClassVar[JobState]
    JOB_STATE_REQUEUED: _ClassVar[JobState]
    JOB_STATE_CONFIGURING: _ClassVar[JobState]
    JOB_STATE_OTHER: _ClassVar[JobState]

class ExportEnvironment(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_ENVIRONMENT_UNSPECIFIED: _ClassVar[ExportEnvironment]
    EXPORT_ENVIRONMENT_MINIMAL: _ClassVar[ExportEnvironment]
    EXPORT_ENVIRONMENT_NONE: _ClassVar[ExportEnvironment]
    EXPORT_ENVIRONMENT_LOGIN: _ClassVar[ExportEnvironment]

class JobEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_EVENT_TYPE_UNSPECIFIED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_CREATED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_STATE_CHANGED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_UPDATED: _ClassVar[JobEventType]

class JobOutputStream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_OUTPUT_STREAM_UNSPECIFIED: _ClassVar[JobOutputStream]
    JOB_OUTPUT_STREAM_STDOUT: _ClassVar[JobOutputStream]
    JOB_OUTPUT_STREAM_STDERR: _ClassVar[JobOutputStream]

class PartitionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PARTITION_STATE_UNSPECIFIED: _ClassVar[PartitionState]
    PARTITION_STATE_UP: _ClassVar[PartitionState]
    PARTITION_STATE_DOWN: _ClassVar[PartitionState]
    PARTITION_STATE_DRAIN: _ClassVar[PartitionState]
    PARTITION_STATE_INACTIVE: _ClassVar[PartitionState]

class NodeState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_STATE_UNSPECIFIED: _ClassVar[NodeState]
    NODE_STATE_IDLE: _ClassVar[NodeState]
    NODE_STATE_MIXED: _ClassVar[NodeState]
    NODE_STATE_ALLOCATED: _ClassVar[NodeState]
    NODE_STATE_COMPLETING: _ClassVar[NodeState]
    NODE_STATE_DOWN: _ClassVar[NodeState]
    NODE_STATE_DRAINED: _ClassVar[NodeState]
    NODE_STATE_DRAINING: _ClassVar[NodeState]
    NODE_STATE_FAIL: _ClassVar[NodeState]
    NODE_STATE_FUTURE: _ClassVar[NodeState]
    NODE_STATE_MAINTENANCE: _ClassVar[NodeState]
    NODE_STATE_RESERVED: _ClassVar[NodeState]
    NODE_STATE_POWERED_DOWN: _ClassVar[NodeState]
    NODE_STATE_POWERING_UP: _ClassVar[NodeState]
    NODE_STATE_UNKNOWN: _ClassVar[NodeState]
    NODE_STATE_OTHER: _ClassVar[NodeState]

class ReservationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESERVATION_STATE_UNSPECIFIED: _ClassVar[ReservationState]
    RESERVATION_STATE_ACTIVE: _ClassVar[ReservationState]
    RESERVATION_STATE_INACTIVE: _ClassVar[ReservationState]

class ReservationRequestState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESERVATION_REQUEST_STATE_UNSPECIFIED: _ClassVar[ReservationRequestState]
    RESERVATION_REQUEST_STATE_PENDING_APPROVAL: _ClassVar[ReservationRequestState]
    RESERVATION_REQUEST_STATE_ACTIVE: _ClassVar[ReservationRequestState]
    RESERVATION_REQUEST_STATE_REJECTED: _ClassVar[ReservationRequestState]
    RESERVATION_REQUEST_STATE_ENDED: _ClassVar[ReservationRequestState]
    RESERVATION_REQUEST_STATE_CANCELLED: _ClassVar[ReservationRequestState]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_PENDING: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUSPENDED: JobState
JOB_STATE_COMPLETING: JobState
JOB_STATE_COMPLETED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
JOB_STATE_TIMEOUT: JobState
JOB_STATE_NODE_FAIL: JobState
JOB_STATE_PREEMPTED: JobState
JOB_STATE_OUT_OF_MEMORY: JobState
JOB_STATE_BOOT_FAIL: JobState
JOB_STATE_DEADLINE: JobState
JOB_STATE_REQUEUED: JobState
JOB_STATE_CONFIGURING: JobState
JOB_STATE_OTHER: JobState
EXPORT_ENVIRONMENT_UNSPECIFIED: ExportEnvironment
EXPORT_ENVIRONMENT_MINIMAL: ExportEnvironment
EXPORT_ENVIRONMENT_NONE: ExportEnvironment
EXPORT_ENVIRONMENT_LOGIN: ExportEnvironment
JOB_EVENT_TYPE_UNSPECIFIED: JobEventType
JOB_EVENT_TYPE_CREATED: JobEventType
JOB_EVENT_TYPE_STATE_CHANGED: JobEventType
JOB_EVENT_TYPE_UPDATED: JobEventType
JOB_OUTPUT_STREAM_UNSPECIFIED: JobOutputStream
JOB_OUTPUT_STREAM_STDOUT: JobOutputStream
JOB_OUTPUT_STREAM_STDERR: JobOutputStream
PARTITION_STATE_UNSPECIFIED: PartitionState
PARTITION_STATE_UP: PartitionState
PARTITION_STATE_DOWN: PartitionState
PARTITION_STATE_DRAIN: PartitionState
PARTITION_STATE_INACTIVE: PartitionState
NODE_STATE_UNSPECIFIED: NodeState
NODE_STATE_IDLE: NodeState
NODE_STATE_MIXED: NodeState
NODE_STATE_ALLOCATED: NodeState
NODE_STATE_COMPLETING: NodeState
NODE_STATE_DOWN: NodeState
NODE_STATE_DRAINED: NodeState
NODE_STATE_DRAINING: NodeState
NODE_STATE_FAIL: NodeState
NODE_STATE_FUTURE: NodeState
NODE_STATE_MAINTENANCE: NodeState
NODE_STATE_RESERVED: NodeState
NODE_STATE_POWERED_DOWN: NodeState
NODE_STATE_POWERING_UP: NodeState
NODE_STATE_UNKNOWN: NodeState
NODE_STATE_OTHER: NodeState
RESERVATION_STATE_UNSPECIFIED: ReservationState
RESERVATION_STATE_ACTIVE: ReservationState
RESERVATION_STATE_INACTIVE: ReservationState
RESERVATION_REQUEST_STATE_UNSPECIFIED: ReservationRequestState
RESERVATION_REQUEST_STATE_PENDING_APPROVAL: ReservationRequestState
RESERVATION_REQUEST_STATE_ACTIVE: ReservationRequestState
RESERVATION_REQUEST_STATE_REJECTED: ReservationRequestState
RESERVATION_REQUEST_STATE_ENDED: ReservationRequestState
RESERVATION_REQUEST_STATE_CANCELLED: ReservationRequestState

class Job(_message.Message):
    __slots__ = ("name", "job_id", "system", "job_name", "user", "uid", "account", "partition", "qos", "state", "raw_state", "state_flags", "reason", "exit_code", "signal", "submit_time", "eligible_time", "start_time", "end_time", "estimated_start_time", "elapsed", "time_limit", "node_count", "node_list", "nodes", "cpus", "ntasks", "cpus_per_task", "memory_per_node_mib", "memory_per_cpu_mib", "requested_tres", "allocated_tres", "gres", "working_directory", "stdout_path", "stderr_path", "array_job_id", "array_task_id", "array_task_spec", "dependency", "reservation", "constraints", "steps", "priority", "batch_host", "restart_count", "revision", "updated_at")
    class RequestedTresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class AllocatedTresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RAW_STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_FLAGS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    SUBMIT_TIME_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_START_TIME_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_FIELD_NUMBER: _ClassVar[int]
    NODE_COUNT_FIELD_NUMBER: _ClassVar[int]
    NODE_LIST_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    NTASKS_FIELD_NUMBER: _ClassVar[int]
    CPUS_PER_TASK_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PER_NODE_MIB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PER_CPU_MIB_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_TRES_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_TRES_FIELD_NUMBER: _ClassVar[int]
    GRES_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    STDOUT_PATH_FIELD_NUMBER: _ClassVar[int]
    STDERR_PATH_FIELD_NUMBER: _ClassVar[int]
    ARRAY_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ARRAY_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ARRAY_TASK_SPEC_FIELD_NUMBER: _ClassVar[int]
    DEPENDENCY_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    BATCH_HOST_FIELD_NUMBER: _ClassVar[int]
    RESTART_COUNT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    job_id: str
    system: str
    job_name: str
    user: str
    uid: int
    account: str
    partition: str
    qos: str
    state: JobState
    raw_state: str
    state_flags: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    exit_code: int
    signal: int
    submit_time: _timestamp_pb2.Timestamp
    eligible_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    estimated_start_time: _timestamp_pb2.Timestamp
    elapsed: _duration_pb2.Duration
    time_limit: _duration_pb2.Duration
    node_count: int
    node_list: str
    nodes: _containers.RepeatedScalarFieldContainer[str]
    cpus: int
    ntasks: int
    cpus_per_task: int
    memory_per_node_mib: int
    memory_per_cpu_mib: int
    requested_tres: _containers.ScalarMap[str, int]
    allocated_tres: _containers.ScalarMap[str, int]
    gres: str
    working_directory: str
    stdout_path: str
    stderr_path: str
    array_job_id: int
    array_task_id: int
    array_task_spec: str
    dependency: str
    reservation: str
    constraints: str
    steps: _containers.RepeatedCompositeFieldContainer[JobStep]
    priority: int
    batch_host: str
    restart_count: int
    revision: int
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., job_id: _Optional[str] = ..., system: _Optional[str] = ..., job_name: _Optional[str] = ..., user: _Optional[str] = ..., uid: _Optional[int] = ..., account: _Optional[str] = ..., partition: _Optional[str] = ..., qos: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., raw_state: _Optional[str] = ..., state_flags: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ..., exit_code: _Optional[int] = ..., signal: _Optional[int] = ..., submit_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., eligible_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., estimated_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., elapsed: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., time_limit: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., node_count: _Optional[int] = ..., node_list: _Optional[str] = ..., nodes: _Optional[_Iterable[str]] = ..., cpus: _Optional[int] = ..., ntasks: _Optional[int] = ..., cpus_per_task: _Optional[int] = ..., memory_per_node_mib: _Optional[int] = ..., memory_per_cpu_mib: _Optional[int] = ..., requested_tres: _Optional[_Mapping[str, int]] = ..., allocated_tres: _Optional[_Mapping[str, int]] = ..., gres: _Optional[str] = ..., working_directory: _Optional[str] = ..., stdout_path: _Optional[str] = ..., stderr_path: _Optional[str] = ..., array_job_id: _Optional[int] = ..., array_task_id: _Optional[int] = ..., array_task_spec: _Optional[str] = ..., dependency: _Optional[str] = ..., reservation: _Optional[str] = ..., constraints: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[JobStep, _Mapping]]] = ..., priority: _Optional[int] = ..., batch_host: _Optional[str] = ..., restart_count: _Optional[int] = ..., revision: _Optional[int] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class JobStep(_message.Message):
    __slots__ = ("step_id", "step_name", "state", "exit_code", "signal", "start_time", "elapsed", "end_time", "node_count", "node_list", "ntasks", "allocated_tres")
    class AllocatedTresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    NODE_COUNT_FIELD_NUMBER: _ClassVar[int]
    NODE_LIST_FIELD_NUMBER: _ClassVar[int]
    NTASKS_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_TRES_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    step_name: str
    state: JobState
    exit_code: int
    signal: int
    start_time: _timestamp_pb2.Timestamp
    elapsed: _duration_pb2.Duration
    end_time: _timestamp_pb2.Timestamp
    node_count: int
    node_list: str
    ntasks: int
    allocated_tres: _containers.ScalarMap[str, int]
    def __init__(self, step_id: _Optional[str] = ..., step_name: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., exit_code: _Optional[int] = ..., signal: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., elapsed: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., node_count: _Optional[int] = ..., node_list: _Optional[str] = ..., ntasks: _Optional[int] = ..., allocated_tres: _Optional[_Mapping[str, int]] = ...) -> None: ...

class JobOptions(_message.Message):
    __slots__ = ("job_name", "partition", "account", "qos", "nodes", "ntasks", "ntasks_per_node", "cpus_per_task", "memory_per_node_mib", "memory_per_cpu_mib", "gpus", "time_limit", "working_directory", "stdout_path", "stderr_path", "environment", "export_environment", "dependency", "array", "reservation", "constraints", "extra_arguments")
    class EnvironmentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    NTASKS_FIELD_NUMBER: _ClassVar[int]
    NTASKS_PER_NODE_FIELD_NUMBER: _ClassVar[int]
    CPUS_PER_TASK_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PER_NODE_MIB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PER_CPU_MIB_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    STDOUT_PATH_FIELD_NUMBER: _ClassVar[int]
    STDERR_PATH_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    EXPORT_ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    DEPENDENCY_FIELD_NUMBER: _ClassVar[int]
    ARRAY_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    job_name: str
    partition: str
    account: str
    qos: str
    nodes: int
    ntasks: int
    ntasks_per_node: int
    cpus_per_task: int
    memory_per_node_mib: int
    memory_per_cpu_mib: int
    gpus: str
    time_limit: str
    working_directory: str
    stdout_path: str
    stderr_path: str
    environment: _containers.ScalarMap[str, str]
    export_environment: ExportEnvironment
    dependency: str
    array: str
    reservation: str
    constraints: str
    extra_arguments: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_name: _Optional[str] = ..., partition: _Optional[str] = ..., account: _Optional[str] = ..., qos: _Optional[str] = ..., nodes: _Optional[int] = ..., ntasks: _Optional[int] = ..., ntasks_per_node: _Optional[int] = ..., cpus_per_task: _Optional[int] = ..., memory_per_node_mib: _Optional[int] = ..., memory_per_cpu_mib: _Optional[int] = ..., gpus: _Optional[str] = ..., time_limit: _Optional[str] = ..., working_directory: _Optional[str] = ..., stdout_path: _Optional[str] = ..., stderr_path: _Optional[str] = ..., environment: _Optional[_Mapping[str, str]] = ..., export_environment: _Optional[_Union[ExportEnvironment, str]] = ..., dependency: _Optional[str] = ..., array: _Optional[str] = ..., reservation: _Optional[str] = ..., constraints: _Optional[str] = ..., extra_arguments: _Optional[_Iterable[str]] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("parent", "script", "script_path", "options", "script_arguments", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_PATH_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    script: str
    script_path: str
    options: JobOptions
    script_arguments: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., script: _Optional[str] = ..., script_path: _Optional[str] = ..., options: _Optional[_Union[JobOptions, _Mapping]] = ..., script_arguments: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SubmitJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class JobFilter(_message.Message):
    __slots__ = ("states", "partition", "job_name", "user", "account")
    STATES_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[JobState]
    partition: str
    job_name: str
    user: str
    account: str
    def __init__(self, states: _Optional[_Iterable[_Union[JobState, str]]] = ..., partition: _Optional[str] = ..., job_name: _Optional[str] = ..., user: _Optional[str] = ..., account: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token", "filter", "names", "submitted_after", "submitted_before", "include_steps")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AFTER_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_STEPS_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    filter: JobFilter
    names: _containers.RepeatedScalarFieldContainer[str]
    submitted_after: _timestamp_pb2.Timestamp
    submitted_before: _timestamp_pb2.Timestamp
    include_steps: bool
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[_Union[JobFilter, _Mapping]] = ..., names: _Optional[_Iterable[str]] = ..., submitted_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., submitted_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., include_steps: _Optional[bool] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token", "revision")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    revision: int
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("name", "signal", "batch_only")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    BATCH_ONLY_FIELD_NUMBER: _ClassVar[int]
    name: str
    signal: str
    batch_only: bool
    def __init__(self, name: _Optional[str] = ..., signal: _Optional[str] = ..., batch_only: _Optional[bool] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class WatchJobsRequest(_message.Message):
    __slots__ = ("parent", "names", "filter", "resume_from_revision", "heartbeat_interval", "include_updates", "until_finished")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    RESUME_FROM_REVISION_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_UPDATES_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FINISHED_FIELD_NUMBER: _ClassVar[int]
    parent: str
    names: _containers.RepeatedScalarFieldContainer[str]
    filter: JobFilter
    resume_from_revision: int
    heartbeat_interval: _duration_pb2.Duration
    include_updates: bool
    until_finished: bool
    def __init__(self, parent: _Optional[str] = ..., names: _Optional[_Iterable[str]] = ..., filter: _Optional[_Union[JobFilter, _Mapping]] = ..., resume_from_revision: _Optional[int] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., include_updates: _Optional[bool] = ..., until_finished: _Optional[bool] = ...) -> None: ...

class WatchJobsResponse(_message.Message):
    __slots__ = ("revision", "snapshot", "event", "heartbeat", "resync_required", "scheduler")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    RESYNC_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    revision: int
    snapshot: JobSnapshot
    event: JobEvent
    heartbeat: _common_pb2.Heartbeat
    resync_required: ResyncRequired
    scheduler: SchedulerAvailability
    def __init__(self, revision: _Optional[int] = ..., snapshot: _Optional[_Union[JobSnapshot, _Mapping]] = ..., event: _Optional[_Union[JobEvent, _Mapping]] = ..., heartbeat: _Optional[_Union[_common_pb2.Heartbeat, _Mapping]] = ..., resync_required: _Optional[_Union[ResyncRequired, _Mapping]] = ..., scheduler: _Optional[_Union[SchedulerAvailability, _Mapping]] = ...) -> None: ...

class JobSnapshot(_message.Message):
    __slots__ = ("jobs", "last")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    last: bool
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., last: _Optional[bool] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("revision", "type", "previous_state", "state", "job", "time")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    revision: int
    type: JobEventType
    previous_state: JobState
    state: JobState
    job: Job
    time: _timestamp_pb2.Timestamp
    def __init__(self, revision: _Optional[int] = ..., type: _Optional[_Union[JobEventType, str]] = ..., previous_state: _Optional[_Union[JobState, str]] = ..., state: _Optional[_Union[JobState, str]] = ..., job: _Optional[_Union[Job, _Mapping]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ResyncRequired(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class SchedulerAvailability(_message.Message):
    __slots__ = ("reachable", "reason", "since")
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    reachable: bool
    reason: str
    since: _timestamp_pb2.Timestamp
    def __init__(self, reachable: _Optional[bool] = ..., reason: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReadJobOutputRequest(_message.Message):
    __slots__ = ("name", "stream", "offset", "follow", "max_chunk_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    stream: JobOutputStream
    offset: int
    follow: bool
    max_chunk_bytes: int
    def __init__(self, name: _Optional[str] = ..., stream: _Optional[_Union[JobOutputStream, str]] = ..., offset: _Optional[int] = ..., follow: _Optional[bool] = ..., max_chunk_bytes: _Optional[int] = ...) -> None: ...

class ReadJobOutputResponse(_message.Message):
    __slots__ = ("data", "offset", "eof", "job_finished", "path", "job_state")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    JOB_FINISHED_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    JOB_STATE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    eof: bool
    job_finished: bool
    path: str
    job_state: JobState
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ..., eof: _Optional[bool] = ..., job_finished: _Optional[bool] = ..., path: _Optional[str] = ..., job_state: _Optional[_Union[JobState, str]] = ...) -> None: ...

class Partition(_message.Message):
    __slots__ = ("name", "partition", "system", "state", "is_default", "total_nodes", "idle_nodes", "allocated_nodes", "unavailable_nodes", "total_cpus", "idle_cpus", "allocated_cpus", "unavailable_cpus", "max_time", "default_time", "max_nodes", "min_nodes", "max_cpus_per_node", "default_memory_per_cpu_mib", "default_memory_per_node_mib", "max_memory_per_cpu_mib", "max_memory_per_node_mib", "allowed_accounts", "denied_accounts", "allowed_qos", "denied_qos", "allowed_groups", "qos", "priority_tier", "node_list", "gres", "pending_jobs", "running_jobs", "updated_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_NODES_FIELD_NUMBER: _ClassVar[int]
    IDLE_NODES_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_NODES_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_NODES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CPUS_FIELD_NUMBER: _ClassVar[int]
    IDLE_CPUS_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_CPUS_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_CPUS_FIELD_NUMBER: _ClassVar[int]
    MAX_TIME_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TIME_FIELD_NUMBER: _ClassVar[int]
    MAX_NODES_FIELD_NUMBER: _ClassVar[int]
    MIN_NODES_FIELD_NUMBER: _ClassVar[int]
    MAX_CPUS_PER_NODE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MEMORY_PER_CPU_MIB_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MEMORY_PER_NODE_MIB_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMORY_PER_CPU_MIB_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMORY_PER_NODE_MIB_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    DENIED_ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_QOS_FIELD_NUMBER: _ClassVar[int]
    DENIED_QOS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_GROUPS_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_TIER_FIELD_NUMBER: _ClassVar[int]
    NODE_LIST_FIELD_NUMBER: _ClassVar[int]
    GRES_FIELD_NUMBER: _ClassVar[int]
    PENDING_JOBS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    partition: str
    system: str
    state: PartitionState
    is_default: bool
    total_nodes: int
    idle_nodes: int
    allocated_nodes: int
    unavailable_nodes: int
    total_cpus: int
    idle_cpus: int
    allocated_cpus: int
    unavailable_cpus: int
    max_time: _duration_pb2.Duration
    default_time: _duration_pb2.Duration
    max_nodes: int
    min_nodes: int
    max_cpus_per_node: int
    default_memory_per_cpu_mib: int
    default_memory_per_node_mib: int
    max_memory_per_cpu_mib: int
    max_memory_per_node_mib: int
    allowed_accounts: _containers.RepeatedScalarFieldContainer[str]
    denied_accounts: _containers.RepeatedScalarFieldContainer[str]
    allowed_qos: _containers.RepeatedScalarFieldContainer[str]
    denied_qos: _containers.RepeatedScalarFieldContainer[str]
    allowed_groups: _containers.RepeatedScalarFieldContainer[str]
    qos: str
    priority_tier: int
    node_list: str
    gres: _containers.RepeatedScalarFieldContainer[str]
    pending_jobs: int
    running_jobs: int
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., partition: _Optional[str] = ..., system: _Optional[str] = ..., state: _Optional[_Union[PartitionState, str]] = ..., is_default: _Optional[bool] = ..., total_nodes: _Optional[int] = ..., idle_nodes: _Optional[int] = ..., allocated_nodes: _Optional[int] = ..., unavailable_nodes: _Optional[int] = ..., total_cpus: _Optional[int] = ..., idle_cpus: _Optional[int] = ..., allocated_cpus: _Optional[int] = ..., unavailable_cpus: _Optional[int] = ..., max_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., default_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_nodes: _Optional[int] = ..., min_nodes: _Optional[int] = ..., max_cpus_per_node: _Optional[int] = ..., default_memory_per_cpu_mib: _Optional[int] = ..., default_memory_per_node_mib: _Optional[int] = ..., max_memory_per_cpu_mib: _Optional[int] = ..., max_memory_per_node_mib: _Optional[int] = ..., allowed_accounts: _Optional[_Iterable[str]] = ..., denied_accounts: _Optional[_Iterable[str]] = ..., allowed_qos: _Optional[_Iterable[str]] = ..., denied_qos: _Optional[_Iterable[str]] = ..., allowed_groups: _Optional[_Iterable[str]] = ..., qos: _Optional[str] = ..., priority_tier: _Optional[int] = ..., node_list: _Optional[str] = ..., gres: _Optional[_Iterable[str]] = ..., pending_jobs: _Optional[int] = ..., running_jobs: _Optional[int] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListPartitionsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPartitionsResponse(_message.Message):
    __slots__ = ("partitions", "next_page_token")
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    partitions: _containers.RepeatedCompositeFieldContainer[Partition]
    next_page_token: str
    def __init__(self, partitions: _Optional[_Iterable[_Union[Partition, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("name", "node", "system", "state", "state_flags", "raw_state", "reason", "reason_time", "reason_user", "cpus", "allocated_cpus", "idle_cpus", "cpu_load", "real_memory_mib", "allocated_memory_mib", "free_memory_mib", "gres", "gres_used", "partitions", "features", "active_features", "sockets", "cores_per_socket", "threads_per_core", "architecture", "boot_time", "updated_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_FLAGS_FIELD_NUMBER: _ClassVar[int]
    RAW_STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REASON_TIME_FIELD_NUMBER: _ClassVar[int]
    REASON_USER_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_CPUS_FIELD_NUMBER: _ClassVar[int]
    IDLE_CPUS_FIELD_NUMBER: _ClassVar[int]
    CPU_LOAD_FIELD_NUMBER: _ClassVar[int]
    REAL_MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    FREE_MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    GRES_FIELD_NUMBER: _ClassVar[int]
    GRES_USED_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FEATURES_FIELD_NUMBER: _ClassVar[int]
    SOCKETS_FIELD_NUMBER: _ClassVar[int]
    CORES_PER_SOCKET_FIELD_NUMBER: _ClassVar[int]
    THREADS_PER_CORE_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    BOOT_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    node: str
    system: str
    state: NodeState
    state_flags: _containers.RepeatedScalarFieldContainer[str]
    raw_state: str
    reason: str
    reason_time: _timestamp_pb2.Timestamp
    reason_user: str
    cpus: int
    allocated_cpus: int
    idle_cpus: int
    cpu_load: float
    real_memory_mib: int
    allocated_memory_mib: int
    free_memory_mib: int
    gres: str
    gres_used: str
    partitions: _containers.RepeatedScalarFieldContainer[str]
    features: _containers.RepeatedScalarFieldContainer[str]
    active_features: _containers.RepeatedScalarFieldContainer[str]
    sockets: int
    cores_per_socket: int
    threads_per_core: int
    architecture: str
    boot_time: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., node: _Optional[str] = ..., system: _Optional[str] = ..., state: _Optional[_Union[NodeState, str]] = ..., state_flags: _Optional[_Iterable[str]] = ..., raw_state: _Optional[str] = ..., reason: _Optional[str] = ..., reason_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason_user: _Optional[str] = ..., cpus: _Optional[int] = ..., allocated_cpus: _Optional[int] = ..., idle_cpus: _Optional[int] = ..., cpu_load: _Optional[float] = ..., real_memory_mib: _Optional[int] = ..., allocated_memory_mib: _Optional[int] = ..., free_memory_mib: _Optional[int] = ..., gres: _Optional[str] = ..., gres_used: _Optional[str] = ..., partitions: _Optional[_Iterable[str]] = ..., features: _Optional[_Iterable[str]] = ..., active_features: _Optional[_Iterable[str]] = ..., sockets: _Optional[int] = ..., cores_per_socket: _Optional[int] = ..., threads_per_core: _Optional[int] = ..., architecture: _Optional[str] = ..., boot_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token", "partition", "states")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    partition: str
    states: _containers.RepeatedScalarFieldContainer[NodeState]
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., partition: _Optional[str] = ..., states: _Optional[_Iterable[_Union[NodeState, str]]] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes", "next_page_token")
    NODES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    next_page_token: str
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Reservation(_message.Message):
    __slots__ = ("name", "reservation", "system", "state", "start_time", "end_time", "duration", "node_list", "node_count", "core_count", "users", "accounts", "groups", "partition", "flags", "features", "tres")
    class TresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    NODE_LIST_FIELD_NUMBER: _ClassVar[int]
    NODE_COUNT_FIELD_NUMBER: _ClassVar[int]
    CORE_COUNT_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    TRES_FIELD_NUMBER: _ClassVar[int]
    name: str
    reservation: str
    system: str
    state: ReservationState
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    node_list: str
    node_count: int
    core_count: int
    users: _containers.RepeatedScalarFieldContainer[str]
    accounts: _containers.RepeatedScalarFieldContainer[str]
    groups: _containers.RepeatedScalarFieldContainer[str]
    partition: str
    flags: _containers.RepeatedScalarFieldContainer[str]
    features: str
    tres: _containers.ScalarMap[str, int]
    def __init__(self, name: _Optional[str] = ..., reservation: _Optional[str] = ..., system: _Optional[str] = ..., state: _Optional[_Union[ReservationState, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., node_list: _Optional[str] = ..., node_count: _Optional[int] = ..., core_count: _Optional[int] = ..., users: _Optional[_Iterable[str]] = ..., accounts: _Optional[_Iterable[str]] = ..., groups: _Optional[_Iterable[str]] = ..., partition: _Optional[str] = ..., flags: _Optional[_Iterable[str]] = ..., features: _Optional[str] = ..., tres: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ListReservationsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListReservationsResponse(_message.Message):
    __slots__ = ("reservations", "next_page_token")
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    reservations: _containers.RepeatedCompositeFieldContainer[Reservation]
    next_page_token: str
    def __init__(self, reservations: _Optional[_Iterable[_Union[Reservation, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ReservationRequest(_message.Message):
    __slots__ = ("name", "id", "system", "owner", "project", "node_count", "partition", "start_time", "duration", "users", "state", "reason", "reservation", "nodes", "granted_start_time", "end_time", "create_time", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    NODE_COUNT_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    GRANTED_START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    id: str
    system: str
    owner: str
    project: str
    node_count: int
    partition: str
    start_time: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    users: _containers.RepeatedScalarFieldContainer[str]
    state: ReservationRequestState
    reason: str
    reservation: str
    nodes: str
    granted_start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., id: _Optional[str] = ..., system: _Optional[str] = ..., owner: _Optional[str] = ..., project: _Optional[str] = ..., node_count: _Optional[int] = ..., partition: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., users: _Optional[_Iterable[str]] = ..., state: _Optional[_Union[ReservationRequestState, str]] = ..., reason: _Optional[str] = ..., reservation: _Optional[str] = ..., nodes: _Optional[str] = ..., granted_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateReservationRequest(_message.Message):
    __slots__ = ("parent", "project", "node_count", "partition", "start_time", "duration", "users")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    NODE_COUNT_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    parent: str
    project: str
    node_count: int
    partition: str
    start_time: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    users: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, parent: _Optional[str] = ..., project: _Optional[str] = ..., node_count: _Optional[int] = ..., partition: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., users: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateReservationResponse(_message.Message):
    __slots__ = ("reservation_request",)
    RESERVATION_REQUEST_FIELD_NUMBER: _ClassVar[int]
    reservation_request: ReservationRequest
    def __init__(self, reservation_request: _Optional[_Union[ReservationRequest, _Mapping]] = ...) -> None: ...

class GetReservationRequestRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetReservationRequestResponse(_message.Message):
    __slots__ = ("reservation_request",)
    RESERVATION_REQUEST_FIELD_NUMBER: _ClassVar[int]
    reservation_request: ReservationRequest
    def __init__(self, reservation_request: _Optional[_Union[ReservationRequest, _Mapping]] = ...) -> None: ...

class ListReservationRequestsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListReservationRequestsResponse(_message.Message):
    __slots__ = ("reservation_requests", "next_page_token")
    RESERVATION_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    reservation_requests: _containers.RepeatedCompositeFieldContainer[ReservationRequest]
    next_page_token: str
    def __init__(self, reservation_requests: _Optional[_Iterable[_Union[ReservationRequest, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchReservationRequestRequest(_message.Message):
    __slots__ = ("name", "heartbeat_interval")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    name: str
    heartbeat_interval: _duration_pb2.Duration
    def __init__(self, name: _Optional[str] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class WatchReservationRequestResponse(_message.Message):
    __slots__ = ("reservation_request", "heartbeat")
    RESERVATION_REQUEST_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    reservation_request: ReservationRequest
    heartbeat: _common_pb2.Heartbeat
    def __init__(self, reservation_request: _Optional[_Union[ReservationRequest, _Mapping]] = ..., heartbeat: _Optional[_Union[_common_pb2.Heartbeat, _Mapping]] = ...) -> None: ...

class DeleteReservationRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteReservationResponse(_message.Message):
    __slots__ = ("reservation_request",)
    RESERVATION_REQUEST_FIELD_NUMBER: _ClassVar[int]
    reservation_request: ReservationRequest
    def __init__(self, reservation_request: _Optional[_Union[ReservationRequest, _Mapping]] = ...) -> None: ...
