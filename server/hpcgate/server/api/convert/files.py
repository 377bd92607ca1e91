"""FileEntry messages from the worker's description of an entry (see privsep/worker.py)."""

from __future__ import annotations

import stat

from google.protobuf.timestamp_pb2 import Timestamp

from hpcgate.server.files.commands import CommandOutput, CommandResult
from hpcgate.server.files.paths import display, raw_bytes
from hpcgate.server.files.reading import Chunk, FileHeader, Trailer
from hpcgate.server.files.uploads import Uploaded
from hpcgate.server.privsep.replies import Described
from hpcgate.v1 import utilities_pb2

_TYPES = {
    stat.S_IFREG: utilities_pb2.FILE_TYPE_FILE,
    stat.S_IFDIR: utilities_pb2.FILE_TYPE_DIRECTORY,
    stat.S_IFLNK: utilities_pb2.FILE_TYPE_SYMLINK,
    stat.S_IFIFO: utilities_pb2.FILE_TYPE_FIFO,
    stat.S_IFSOCK: utilities_pb2.FILE_TYPE_SOCKET,
    stat.S_IFBLK: utilities_pb2.FILE_TYPE_BLOCK_DEVICE,
    stat.S_IFCHR: utilities_pb2.FILE_TYPE_CHAR_DEVICE,
}


def _time(ns: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(ns)
    return stamp


def file_entry(described: Described) -> utilities_pb2.FileEntry:
    st = described["stat"]
    mode = int(st["mode"])
    name, path = str(described["name"]), str(described["path"])
    link = described.get("link")
    entry = utilities_pb2.FileEntry(
        name=display(name),
        path=display(path),
        type=_TYPES.get(stat.S_IFMT(mode), utilities_pb2.FILE_TYPE_UNSPECIFIED),
        size=int(st["size"]),
        mode=stat.S_IMODE(mode),
        mode_string=stat.filemode(mode),
        uid=int(st["uid"]),
        gid=int(st["gid"]),
        owner=str(described.get("owner") or ""),
        group=str(described.get("group") or ""),
        mtime=_time(int(st["mtime_ns"])),
        atime=_time(int(st["atime_ns"])),
        ctime=_time(int(st["ctime_ns"])),
        link_target=display(link) if isinstance(link, str) else "",
        link_count=int(st["nlink"]),
    )
    if (raw := raw_bytes(name)) is not None:
        entry.name_bytes = raw
    if (raw := raw_bytes(path)) is not None:
        entry.path_bytes = raw
    return entry


def command_message(item: CommandOutput | CommandResult) -> utilities_pb2.RunCommandResponse:
    """One RunCommand stream message: a chunk of output, or the result."""
    if isinstance(item, CommandOutput):
        if item.stream == "stdout":
            return utilities_pb2.RunCommandResponse(stdout=item.data)
        return utilities_pb2.RunCommandResponse(stderr=item.data)
    result = utilities_pb2.RunCommandResult(
        exit_code=item.exit_code, signal=item.signal, timed_out=item.timed_out,
        output_truncated=item.output_truncated,
    )  # fmt: skip
    result.duration.FromNanoseconds(int(item.duration * 1e9))
    return utilities_pb2.RunCommandResponse(result=result)


def upload_response(uploaded: Uploaded) -> utilities_pb2.UploadResponse:
    return utilities_pb2.UploadResponse(
        path=uploaded.path, size=uploaded.size, sha256=uploaded.sha256
    )


CHECKSUM_ALGORITHMS = {
    utilities_pb2.CHECKSUM_ALGORITHM_SHA256: "sha256",
    utilities_pb2.CHECKSUM_ALGORITHM_SHA512: "sha512",
    utilities_pb2.CHECKSUM_ALGORITHM_MD5: "md5",
    utilities_pb2.CHECKSUM_ALGORITHM_BLAKE2B: "blake2b",
}


def download_message(item: FileHeader | Chunk | Trailer) -> utilities_pb2.DownloadResponse:
    """One Download stream message."""
    if isinstance(item, Chunk):
        # Filled in place: DownloadResponse(chunk=DownloadChunk(...)) would copy the data
        # twice more (a submessage passed to a constructor is merged: serialized and parsed).
        message = utilities_pb2.DownloadResponse()
        message.chunk.offset = item.offset
        message.chunk.data = item.data
        return message
    if isinstance(item, FileHeader):
        header = utilities_pb2.DownloadHeader(size=item.size, mode=item.mode)
        header.mtime.FromNanoseconds(item.mtime_ns)
        return utilities_pb2.DownloadResponse(header=header)
    trailer = utilities_pb2.DownloadTrailer(sha256=item.sha256, total_bytes=item.total_bytes)
    return utilities_pb2.DownloadResponse(trailer=trailer)
