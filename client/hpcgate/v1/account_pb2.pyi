import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProjectRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROJECT_ROLE_UNSPECIFIED: _ClassVar[ProjectRole]
    PROJECT_ROLE_MEMBER: _ClassVar[ProjectRole]
    PROJECT_ROLE_COORDINATOR: _ClassVar[ProjectRole]
PROJECT_ROLE_UNSPECIFIED: ProjectRole
PROJECT_ROLE_MEMBER: ProjectRole
PROJECT_ROLE_COORDINATOR: ProjectRole

class TresAllocation(_message.Message):
    __slots__ = ("tres", "minutes_allocated", "minutes_used", "minutes_remaining")
    TRES_FIELD_NUMBER: _ClassVar[int]
    MINUTES_ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    MINUTES_USED_FIELD_NUMBER: _ClassVar[int]
    MINUTES_REMAINING_FIELD_NUMBER: _ClassVar[int]
    tres: str
    minutes_allocated: int
    minutes_used: int
    minutes_remaining: int
    def __init__(self, tres: _Optional[str] = ..., minutes_allocated: _Optional[int] = ..., minutes_used: _Optional[int] = ..., minutes_remaining: _Optional[int] = ...) -> None: ...

class ComputeAllocation(_message.Message):
    __slots__ = ("known", "tres", "reason")
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    TRES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    known: bool
    tres: _containers.RepeatedCompositeFieldContainer[TresAllocation]
    reason: str
    def __init__(self, known: _Optional[bool] = ..., tres: _Optional[_Iterable[_Union[TresAllocation, _Mapping]]] = ..., reason: _Optional[str] = ...) -> None: ...

class StorageAllocation(_message.Message):
    __slots__ = ("filesystem", "known", "bytes_limit", "bytes_used", "reason")
    FILESYSTEM_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    BYTES_LIMIT_FIELD_NUMBER: _ClassVar[int]
    BYTES_USED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    filesystem: str
    known: bool
    bytes_limit: int
    bytes_used: int
    reason: str
    def __init__(self, filesystem: _Optional[str] = ..., known: _Optional[bool] = ..., bytes_limit: _Optional[int] = ..., bytes_used: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ProjectMember(_message.Message):
    __slots__ = ("user", "role", "limits")
    USER_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    user: str
    role: ProjectRole
    limits: AssociationLimits
    def __init__(self, user: _Optional[str] = ..., role: _Optional[_Union[ProjectRole, str]] = ..., limits: _Optional[_Union[AssociationLimits, _Mapping]] = ...) -> None: ...

class ListProjectMembersRequest(_message.Message):
    __slots__ = ("project", "page_size", "page_token")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project: str
    page_size: int
    page_token: str
    def __init__(self, project: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListProjectMembersResponse(_message.Message):
    __slots__ = ("members", "next_page_token")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[ProjectMember]
    next_page_token: str
    def __init__(self, members: _Optional[_Iterable[_Union[ProjectMember, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class MemberLimits(_message.Message):
    __slots__ = ("max_jobs", "max_submit_jobs", "max_wall_per_job")
    MAX_JOBS_FIELD_NUMBER: _ClassVar[int]
    MAX_SUBMIT_JOBS_FIELD_NUMBER: _ClassVar[int]
    MAX_WALL_PER_JOB_FIELD_NUMBER: _ClassVar[int]
    max_jobs: int
    max_submit_jobs: int
    max_wall_per_job: _duration_pb2.Duration
    def __init__(self, max_jobs: _Optional[int] = ..., max_submit_jobs: _Optional[int] = ..., max_wall_per_job: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class AddProjectMemberRequest(_message.Message):
    __slots__ = ("project", "user", "limits")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    project: str
    user: str
    limits: MemberLimits
    def __init__(self, project: _Optional[str] = ..., user: _Optional[str] = ..., limits: _Optional[_Union[MemberLimits, _Mapping]] = ...) -> None: ...

class AddProjectMemberResponse(_message.Message):
    __slots__ = ("member",)
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    member: ProjectMember
    def __init__(self, member: _Optional[_Union[ProjectMember, _Mapping]] = ...) -> None: ...

class RemoveProjectMemberRequest(_message.Message):
    __slots__ = ("project", "user")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    project: str
    user: str
    def __init__(self, project: _Optional[str] = ..., user: _Optional[str] = ...) -> None: ...

class RemoveProjectMemberResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class User(_message.Message):
    __slots__ = ("name", "uid", "gid", "primary_group", "groups", "default_account", "home_directory", "shell", "full_name")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_GROUP_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    HOME_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    SHELL_FIELD_NUMBER: _ClassVar[int]
    FULL_NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    uid: int
    gid: int
    primary_group: str
    groups: _containers.RepeatedCompositeFieldContainer[Group]
    default_account: str
    home_directory: str
    shell: str
    full_name: str
    def __init__(self, name: _Optional[str] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., primary_group: _Optional[str] = ..., groups: _Optional[_Iterable[_Union[Group, _Mapping]]] = ..., default_account: _Optional[str] = ..., home_directory: _Optional[str] = ..., shell: _Optional[str] = ..., full_name: _Optional[str] = ...) -> None: ...

class Group(_message.Message):
    __slots__ = ("name", "gid", "members")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    gid: int
    members: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., gid: _Optional[int] = ..., members: _Optional[_Iterable[str]] = ...) -> None: ...

class GetUserRequest(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: str
    def __init__(self, user: _Optional[str] = ...) -> None: ...

class GetUserResponse(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: User
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ...) -> None: ...

class AssociationLimits(_message.Message):
    __slots__ = ("group_tres", "group_tres_minutes", "max_tres_per_job", "max_tres_per_node", "max_wall_per_job", "max_jobs", "max_submit_jobs", "group_jobs", "group_submit_jobs")
    class GroupTresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class GroupTresMinutesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class MaxTresPerJobEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class MaxTresPerNodeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    GROUP_TRES_FIELD_NUMBER: _ClassVar[int]
    GROUP_TRES_MINUTES_FIELD_NUMBER: _ClassVar[int]
    MAX_TRES_PER_JOB_FIELD_NUMBER: _ClassVar[int]
    MAX_TRES_PER_NODE_FIELD_NUMBER: _ClassVar[int]
    MAX_WALL_PER_JOB_FIELD_NUMBER: _ClassVar[int]
    MAX_JOBS_FIELD_NUMBER: _ClassVar[int]
    MAX_SUBMIT_JOBS_FIELD_NUMBER: _ClassVar[int]
    GROUP_JOBS_FIELD_NUMBER: _ClassVar[int]
    GROUP_SUBMIT_JOBS_FIELD_NUMBER: _ClassVar[int]
    group_tres: _containers.ScalarMap[str, int]
    group_tres_minutes: _containers.ScalarMap[str, int]
    max_tres_per_job: _containers.ScalarMap[str, int]
    max_tres_per_node: _containers.ScalarMap[str, int]
    max_wall_per_job: _duration_pb2.Duration
    max_jobs: int
    max_submit_jobs: int
    group_jobs: int
    group_submit_jobs: int
    def __init__(self, group_tres: _Optional[_Mapping[str, int]] = ..., group_tres_minutes: _Optional[_Mapping[str, int]] = ..., max_tres_per_job: _Optional[_Mapping[str, int]] = ..., max_tres_per_node: _Optional[_Mapping[str, int]] = ..., max_wall_per_job: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_jobs: _Optional[int] = ..., max_submit_jobs: _Optional[int] = ..., group_jobs: _Optional[int] = ..., group_submit_jobs: _Optional[int] = ...) -> None: ...

class FairShare(_message.Message):
    __slots__ = ("raw_shares", "normalized_shares", "raw_usage", "effective_usage", "fairshare_factor")
    RAW_SHARES_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_SHARES_FIELD_NUMBER: _ClassVar[int]
    RAW_USAGE_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_USAGE_FIELD_NUMBER: _ClassVar[int]
    FAIRSHARE_FACTOR_FIELD_NUMBER: _ClassVar[int]
    raw_shares: int
    normalized_shares: float
    raw_usage: int
    effective_usage: float
    fairshare_factor: float
    def __init__(self, raw_shares: _Optional[int] = ..., normalized_shares: _Optional[float] = ..., raw_usage: _Optional[int] = ..., effective_usage: _Optional[float] = ..., fairshare_factor: _Optional[float] = ...) -> None: ...

class Association(_message.Message):
    __slots__ = ("user", "partition", "qos", "default_qos", "limits", "fair_share")
    USER_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_QOS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    FAIR_SHARE_FIELD_NUMBER: _ClassVar[int]
    user: str
    partition: str
    qos: _containers.RepeatedScalarFieldContainer[str]
    default_qos: str
    limits: AssociationLimits
    fair_share: FairShare
    def __init__(self, user: _Optional[str] = ..., partition: _Optional[str] = ..., qos: _Optional[_Iterable[str]] = ..., default_qos: _Optional[str] = ..., limits: _Optional[_Union[AssociationLimits, _Mapping]] = ..., fair_share: _Optional[_Union[FairShare, _Mapping]] = ...) -> None: ...

class ComputeUsage(_message.Message):
    __slots__ = ("known", "cpu_hours_used", "gpu_hours_used", "cpu_hours_allocated", "gpu_hours_allocated", "period_start", "period_end")
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    CPU_HOURS_USED_FIELD_NUMBER: _ClassVar[int]
    GPU_HOURS_USED_FIELD_NUMBER: _ClassVar[int]
    CPU_HOURS_ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    GPU_HOURS_ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    known: bool
    cpu_hours_used: float
    gpu_hours_used: float
    cpu_hours_allocated: float
    gpu_hours_allocated: float
    period_start: _timestamp_pb2.Timestamp
    period_end: _timestamp_pb2.Timestamp
    def __init__(self, known: _Optional[bool] = ..., cpu_hours_used: _Optional[float] = ..., gpu_hours_used: _Optional[float] = ..., cpu_hours_allocated: _Optional[float] = ..., gpu_hours_allocated: _Optional[float] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Project(_message.Message):
    __slots__ = ("name", "description", "organization", "parent_account", "associations", "is_default", "project_usage", "user_usage", "role", "compute_allocation", "storage_allocations")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    PARENT_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    ASSOCIATIONS_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    PROJECT_USAGE_FIELD_NUMBER: _ClassVar[int]
    USER_USAGE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_ALLOCATION_FIELD_NUMBER: _ClassVar[int]
    STORAGE_ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    organization: str
    parent_account: str
    associations: _containers.RepeatedCompositeFieldContainer[Association]
    is_default: bool
    project_usage: ComputeUsage
    user_usage: ComputeUsage
    role: ProjectRole
    compute_allocation: ComputeAllocation
    storage_allocations: _containers.RepeatedCompositeFieldContainer[StorageAllocation]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., organization: _Optional[str] = ..., parent_account: _Optional[str] = ..., associations: _Optional[_Iterable[_Union[Association, _Mapping]]] = ..., is_default: _Optional[bool] = ..., project_usage: _Optional[_Union[ComputeUsage, _Mapping]] = ..., user_usage: _Optional[_Union[ComputeUsage, _Mapping]] = ..., role: _Optional[_Union[ProjectRole, str]] = ..., compute_allocation: _Optional[_Union[ComputeAllocation, _Mapping]] = ..., storage_allocations: _Optional[_Iterable[_Union[StorageAllocation, _Mapping]]] = ...) -> None: ...

class ListProjectsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListProjectsResponse(_message.Message):
    __slots__ = ("projects", "next_page_token")
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    projects: _containers.RepeatedCompositeFieldContainer[Project]
    next_page_token: str
    def __init__(self, projects: _Optional[_Iterable[_Union[Project, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListGroupsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListGroupsResponse(_message.Message):
    __slots__ = ("groups", "next_page_token")
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[Group]
    next_page_token: str
    def __init__(self, groups: _Optional[_Iterable[_Union[Group, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
