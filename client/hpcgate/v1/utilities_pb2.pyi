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

class FileType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FILE_TYPE_UNSPECIFIED: _ClassVar[FileType]
    FILE_TYPE_FILE: _ClassVar[FileType]
    FILE_TYPE_DIRECTORY: _ClassVar[FileType]
    FILE_TYPE_SYMLINK: _ClassVar[FileType]
    FILE_TYPE_FIFO: _ClassVar[FileType]
    FILE_TYPE_SOCKET: _ClassVar[FileType]
    FILE_TYPE_BLOCK_DEVICE: _ClassVar[FileType]
    FILE_TYPE_CHAR_DEVICE: _ClassVar[FileType]

class ChecksumAlgorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHECKSUM_ALGORITHM_UNSPECIFIED: _ClassVar[ChecksumAlgorithm]
    CHECKSUM_ALGORITHM_SHA256: _ClassVar[ChecksumAlgorithm]
    CHECKSUM_ALGORITHM_SHA512: _ClassVar[ChecksumAlgorithm]
    CHECKSUM_ALGORITHM_MD5: _ClassVar[ChecksumAlgorithm]
    CHECKSUM_ALGORITHM_BLAKE2B: _ClassVar[ChecksumAlgorithm]
FILE_TYPE_UNSPECIFIED: FileType
FILE_TYPE_FILE: FileType
FILE_TYPE_DIRECTORY: FileType
FILE_TYPE_SYMLINK: FileType
FILE_TYPE_FIFO: FileType
FILE_TYPE_SOCKET: FileType
FILE_TYPE_BLOCK_DEVICE: FileType
FILE_TYPE_CHAR_DEVICE: FileType
CHECKSUM_ALGORITHM_UNSPECIFIED: ChecksumAlgorithm
CHECKSUM_ALGORITHM_SHA256: ChecksumAlgorithm
CHECKSUM_ALGORITHM_SHA512: ChecksumAlgorithm
CHECKSUM_ALGORITHM_MD5: ChecksumAlgorithm
CHECKSUM_ALGORITHM_BLAKE2B: ChecksumAlgorithm

class FileEntry(_message.Message):
    __slots__ = ("name", "name_bytes", "path", "type", "size", "mode", "mode_string", "uid", "gid", "owner", "group", "mtime", "atime", "ctime", "link_target", "link_count", "path_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAME_BYTES_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MODE_STRING_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    MTIME_FIELD_NUMBER: _ClassVar[int]
    ATIME_FIELD_NUMBER: _ClassVar[int]
    CTIME_FIELD_NUMBER: _ClassVar[int]
    LINK_TARGET_FIELD_NUMBER: _ClassVar[int]
    LINK_COUNT_FIELD_NUMBER: _ClassVar[int]
    PATH_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    name_bytes: bytes
    path: str
    type: FileType
    size: int
    mode: int
    mode_string: str
    uid: int
    gid: int
    owner: str
    group: str
    mtime: _timestamp_pb2.Timestamp
    atime: _timestamp_pb2.Timestamp
    ctime: _timestamp_pb2.Timestamp
    link_target: str
    link_count: int
    path_bytes: bytes
    def __init__(self, name: _Optional[str] = ..., name_bytes: _Optional[bytes] = ..., path: _Optional[str] = ..., type: _Optional[_Union[FileType, str]] = ..., size: _Optional[int] = ..., mode: _Optional[int] = ..., mode_string: _Optional[str] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., owner: _Optional[str] = ..., group: _Optional[str] = ..., mtime: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., atime: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ctime: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., link_target: _Optional[str] = ..., link_count: _Optional[int] = ..., path_bytes: _Optional[bytes] = ...) -> None: ...

class ListDirectoryRequest(_message.Message):
    __slots__ = ("system", "path", "show_hidden", "follow_symlinks", "page_size", "page_token", "path_bytes")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SHOW_HIDDEN_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_SYMLINKS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PATH_BYTES_FIELD_NUMBER: _ClassVar[int]
    system: str
    path: str
    show_hidden: bool
    follow_symlinks: bool
    page_size: int
    page_token: str
    path_bytes: bytes
    def __init__(self, system: _Optional[str] = ..., path: _Optional[str] = ..., show_hidden: _Optional[bool] = ..., follow_symlinks: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., path_bytes: _Optional[bytes] = ...) -> None: ...

class ListDirectoryResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[FileEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[FileEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StatRequest(_message.Message):
    __slots__ = ("system", "path", "follow_symlinks", "path_bytes")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_SYMLINKS_FIELD_NUMBER: _ClassVar[int]
    PATH_BYTES_FIELD_NUMBER: _ClassVar[int]
    system: str
    path: str
    follow_symlinks: bool
    path_bytes: bytes
    def __init__(self, system: _Optional[str] = ..., path: _Optional[str] = ..., follow_symlinks: _Optional[bool] = ..., path_bytes: _Optional[bytes] = ...) -> None: ...

class StatResponse(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: FileEntry
    def __init__(self, entry: _Optional[_Union[FileEntry, _Mapping]] = ...) -> None: ...

class MakeDirectoryRequest(_message.Message):
    __slots__ = ("system", "path", "parents", "mode")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    PARENTS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    system: str
    path: str
    parents: bool
    mode: int
    def __init__(self, system: _Optional[str] = ..., path: _Optional[str] = ..., parents: _Optional[bool] = ..., mode: _Optional[int] = ...) -> None: ...

class MakeDirectoryResponse(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: FileEntry
    def __init__(self, entry: _Optional[_Union[FileEntry, _Mapping]] = ...) -> None: ...

class MoveRequest(_message.Message):
    __slots__ = ("system", "source_path", "destination_path", "overwrite", "source_path_bytes")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PATH_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_PATH_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PATH_BYTES_FIELD_NUMBER: _ClassVar[int]
    system: str
    source_path: str
    destination_path: str
    overwrite: bool
    source_path_bytes: bytes
    def __init__(self, system: _Optional[str] = ..., source_path: _Optional[str] = ..., destination_path: _Optional[str] = ..., overwrite: _Optional[bool] = ..., source_path_bytes: _Optional[bytes] = ...) -> None: ...

class MoveResponse(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: FileEntry
    def __init__(self, entry: _Optional[_Union[FileEntry, _Mapping]] = ...) -> None: ...

class CopyRequest(_message.Message):
    __slots__ = ("system", "source_path", "destination_path", "recursive", "overwrite", "preserve")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PATH_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_PATH_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    PRESERVE_FIELD_NUMBER: _ClassVar[int]
    system: str
    source_path: str
    destination_path: str
    recursive: bool
    overwrite: bool
    preserve: bool
    def __init__(self, system: _Optional[str] = ..., source_path: _Optional[str] = ..., destination_path: _Optional[str] = ..., recursive: _Optional[bool] = ..., overwrite: _Optional[bool] = ..., preserve: _Optional[bool] = ...) -> None: ...

class CopyResponse(_message.Message):
    __slots__ = ("entry", "bytes_copied", "files_copied")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    BYTES_COPIED_FIELD_NUMBER: _ClassVar[int]
    FILES_COPIED_FIELD_NUMBER: _ClassVar[int]
    entry: FileEntry
    bytes_copied: int
    files_copied: int
    def __init__(self, entry: _Optional[_Union[FileEntry, _Mapping]] = ..., bytes_copied: _Optional[int] = ..., files_copied: _Optional[int] = ...) -> None: ...

class RemoveRequest(_message.Message):
    __slots__ = ("system", "path", "recursive", "allow_missing", "path_bytes")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MISSING_FIELD_NUMBER: _ClassVar[int]
    PATH_BYTES_FIELD_NUMBER: _ClassVar[int]
    system: str
    path: str
    recursive: bool
    allow_missing: bool
    path_bytes: bytes
    def __init__(self, system: _Optional[str] = ..., path: _Optional[str] = ..., recursive: _Optional[bool] = ..., allow_missing: _Optional[bool] = ..., path_bytes: _Optional[bytes] = ...) -> None: ...

class RemoveResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ChangeModeRequest(_message.Message):
    __slots__ = ("system", "path", "mode_bits", "mode_string")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    MODE_BITS_FIELD_NUMBER: _ClassVar[int]
    MODE_STRING_FIELD_NUMBER: _ClassVar[int]
    system: str
    path: str
    mode_bits: int
    mode_string: str
    def __init__(self, system: _Optional[str] = ..., path: _Optional[str] = ..., mode_bits: _Optional[int] = ..., mode_string: _Optional[str] = ...) -> None: ...

class ChangeModeResponse(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: FileEntry
    def __init__(self, entry: _Optional[_Union[FileEntry, _Mapping]] = ...) -> None: ...

class CreateSymlinkRequest(_message.Message):
    __slots__ = ("system", "target", "link_path")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    LINK_PATH_FIELD_NUMBER: _ClassVar[int]
    system: str
    target: str
    link_path: str
    def __init__(self, system: _Optional[str] = ..., target: _Optional[str] = ..., link_path: _Optional[str] = ...) -> None: ...

class CreateSymlinkResponse(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: FileEntry
    def __init__(self, entry: _Optional[_Union[FileEntry, _Mapping]] = ...) -> None: ...

class ChecksumRequest(_message.Message):
    __slots__ = ("system", "path", "algorithm")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    system: str
    path: str
    algorithm: ChecksumAlgorithm
    def __init__(self, system: _Optional[str] = ..., path: _Optional[str] = ..., algorithm: _Optional[_Union[ChecksumAlgorithm, str]] = ...) -> None: ...

class ChecksumResponse(_message.Message):
    __slots__ = ("algorithm", "hex_digest", "size")
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    HEX_DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    algorithm: ChecksumAlgorithm
    hex_digest: str
    size: int
    def __init__(self, algorithm: _Optional[_Union[ChecksumAlgorithm, str]] = ..., hex_digest: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class ByteRange(_message.Message):
    __slots__ = ("offset", "length")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    offset: int
    length: int
    def __init__(self, offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class ViewRequest(_message.Message):
    __slots__ = ("system", "path", "byte_range", "head_lines", "tail_lines", "max_bytes")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    BYTE_RANGE_FIELD_NUMBER: _ClassVar[int]
    HEAD_LINES_FIELD_NUMBER: _ClassVar[int]
    TAIL_LINES_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    system: str
    path: str
    byte_range: ByteRange
    head_lines: int
    tail_lines: int
    max_bytes: int
    def __init__(self, system: _Optional[str] = ..., path: _Optional[str] = ..., byte_range: _Optional[_Union[ByteRange, _Mapping]] = ..., head_lines: _Optional[int] = ..., tail_lines: _Optional[int] = ..., max_bytes: _Optional[int] = ...) -> None: ...

class ViewResponse(_message.Message):
    __slots__ = ("data", "offset", "truncated", "max_bytes", "file_size")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    truncated: bool
    max_bytes: int
    file_size: int
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ..., truncated: _Optional[bool] = ..., max_bytes: _Optional[int] = ..., file_size: _Optional[int] = ...) -> None: ...

class DownloadRequest(_message.Message):
    __slots__ = ("system", "path", "offset", "chunk_size", "path_bytes")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    PATH_BYTES_FIELD_NUMBER: _ClassVar[int]
    system: str
    path: str
    offset: int
    chunk_size: int
    path_bytes: bytes
    def __init__(self, system: _Optional[str] = ..., path: _Optional[str] = ..., offset: _Optional[int] = ..., chunk_size: _Optional[int] = ..., path_bytes: _Optional[bytes] = ...) -> None: ...

class DownloadResponse(_message.Message):
    __slots__ = ("header", "chunk", "trailer")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    TRAILER_FIELD_NUMBER: _ClassVar[int]
    header: DownloadHeader
    chunk: DownloadChunk
    trailer: DownloadTrailer
    def __init__(self, header: _Optional[_Union[DownloadHeader, _Mapping]] = ..., chunk: _Optional[_Union[DownloadChunk, _Mapping]] = ..., trailer: _Optional[_Union[DownloadTrailer, _Mapping]] = ...) -> None: ...

class DownloadHeader(_message.Message):
    __slots__ = ("size", "mode", "mtime")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MTIME_FIELD_NUMBER: _ClassVar[int]
    size: int
    mode: int
    mtime: _timestamp_pb2.Timestamp
    def __init__(self, size: _Optional[int] = ..., mode: _Optional[int] = ..., mtime: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DownloadChunk(_message.Message):
    __slots__ = ("offset", "data")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class DownloadTrailer(_message.Message):
    __slots__ = ("sha256", "total_bytes")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    total_bytes: int
    def __init__(self, sha256: _Optional[str] = ..., total_bytes: _Optional[int] = ...) -> None: ...

class UploadRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    chunk: UploadChunk
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[_Union[UploadChunk, _Mapping]] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("system", "path", "mode", "overwrite", "expected_size", "expected_sha256", "request_id", "mtime", "resumable", "offset")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SIZE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SHA256_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MTIME_FIELD_NUMBER: _ClassVar[int]
    RESUMABLE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    system: str
    path: str
    mode: int
    overwrite: bool
    expected_size: int
    expected_sha256: str
    request_id: str
    mtime: _timestamp_pb2.Timestamp
    resumable: bool
    offset: int
    def __init__(self, system: _Optional[str] = ..., path: _Optional[str] = ..., mode: _Optional[int] = ..., overwrite: _Optional[bool] = ..., expected_size: _Optional[int] = ..., expected_sha256: _Optional[str] = ..., request_id: _Optional[str] = ..., mtime: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resumable: _Optional[bool] = ..., offset: _Optional[int] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class UploadResponse(_message.Message):
    __slots__ = ("path", "size", "sha256")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    path: str
    size: int
    sha256: str
    def __init__(self, path: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class GetUploadStatusRequest(_message.Message):
    __slots__ = ("system", "request_id")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    system: str
    request_id: str
    def __init__(self, system: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetUploadStatusResponse(_message.Message):
    __slots__ = ("path", "size", "sha256", "expire_time", "complete")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    path: str
    size: int
    sha256: str
    expire_time: _timestamp_pb2.Timestamp
    complete: bool
    def __init__(self, path: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., complete: _Optional[bool] = ...) -> None: ...

class UploadFilesRequest(_message.Message):
    __slots__ = ("header", "batch")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    header: UploadFilesHeader
    batch: FileBatch
    def __init__(self, header: _Optional[_Union[UploadFilesHeader, _Mapping]] = ..., batch: _Optional[_Union[FileBatch, _Mapping]] = ...) -> None: ...

class UploadFilesHeader(_message.Message):
    __slots__ = ("system", "directory", "verify")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    VERIFY_FIELD_NUMBER: _ClassVar[int]
    system: str
    directory: str
    verify: bool
    def __init__(self, system: _Optional[str] = ..., directory: _Optional[str] = ..., verify: _Optional[bool] = ...) -> None: ...

class FileBatch(_message.Message):
    __slots__ = ("files", "sync")
    FILES_FIELD_NUMBER: _ClassVar[int]
    SYNC_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[FileContent]
    sync: bool
    def __init__(self, files: _Optional[_Iterable[_Union[FileContent, _Mapping]]] = ..., sync: _Optional[bool] = ...) -> None: ...

class FileContent(_message.Message):
    __slots__ = ("path", "data", "sha256", "mode", "mtime")
    PATH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MTIME_FIELD_NUMBER: _ClassVar[int]
    path: str
    data: bytes
    sha256: str
    mode: int
    mtime: _timestamp_pb2.Timestamp
    def __init__(self, path: _Optional[str] = ..., data: _Optional[bytes] = ..., sha256: _Optional[str] = ..., mode: _Optional[int] = ..., mtime: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UploadFilesResponse(_message.Message):
    __slots__ = ("written", "failure")
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    written: _containers.RepeatedCompositeFieldContainer[WrittenFile]
    failure: FileFailure
    def __init__(self, written: _Optional[_Iterable[_Union[WrittenFile, _Mapping]]] = ..., failure: _Optional[_Union[FileFailure, _Mapping]] = ...) -> None: ...

class WrittenFile(_message.Message):
    __slots__ = ("path", "size", "sha256")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    path: str
    size: int
    sha256: str
    def __init__(self, path: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class FileFailure(_message.Message):
    __slots__ = ("path", "code", "message")
    PATH_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    path: str
    code: int
    message: str
    def __init__(self, path: _Optional[str] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class DownloadFilesRequest(_message.Message):
    __slots__ = ("system", "directory", "paths")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    system: str
    directory: str
    paths: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, system: _Optional[str] = ..., directory: _Optional[str] = ..., paths: _Optional[_Iterable[str]] = ...) -> None: ...

class DownloadFilesResponse(_message.Message):
    __slots__ = ("files", "failure")
    FILES_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[FileContent]
    failure: FileFailure
    def __init__(self, files: _Optional[_Iterable[_Union[FileContent, _Mapping]]] = ..., failure: _Optional[_Union[FileFailure, _Mapping]] = ...) -> None: ...

class RunCommandRequest(_message.Message):
    __slots__ = ("system", "argv", "command", "use_shell", "working_directory", "environment", "timeout", "max_output_bytes", "stdin")
    class EnvironmentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    USE_SHELL_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    system: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    command: str
    use_shell: bool
    working_directory: str
    environment: _containers.ScalarMap[str, str]
    timeout: _duration_pb2.Duration
    max_output_bytes: int
    stdin: bytes
    def __init__(self, system: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., command: _Optional[str] = ..., use_shell: _Optional[bool] = ..., working_directory: _Optional[str] = ..., environment: _Optional[_Mapping[str, str]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_output_bytes: _Optional[int] = ..., stdin: _Optional[bytes] = ...) -> None: ...

class RunCommandResponse(_message.Message):
    __slots__ = ("stdout", "stderr", "result")
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    stdout: bytes
    stderr: bytes
    result: RunCommandResult
    def __init__(self, stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., result: _Optional[_Union[RunCommandResult, _Mapping]] = ...) -> None: ...

class RunCommandResult(_message.Message):
    __slots__ = ("exit_code", "signal", "timed_out", "output_truncated", "duration")
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    exit_code: int
    signal: int
    timed_out: bool
    output_truncated: bool
    duration: _duration_pb2.Duration
    def __init__(self, exit_code: _Optional[int] = ..., signal: _Optional[int] = ..., timed_out: _Optional[bool] = ..., output_truncated: _Optional[bool] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...
