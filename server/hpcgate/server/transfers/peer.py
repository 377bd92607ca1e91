"""The Endpoint for another hpcgate facility: its UtilitiesService, as a service account.

This server is a registered client of the peer (`[[peers]]` in the configuration): it
exchanges an RFC 7523 assertion for access tokens (renewed by the client library's
interceptors) and calls the peer's UtilitiesService over one channel. The peer maps that
client to one of ITS local users, so every file read or written there is read or written
as that service account, with the peer's kernel deciding. Paths are absolute paths on the
peer's system `peer.system`.

How the Endpoint methods map onto the peer's RPCs, and what does not map:

- `read_file` returns a `PeerDownload`: besides the chunks it exposes the header (`size`,
  `mode`, `mtime_ns`) and, once the stream is exhausted, `sha256`, the peer's SHA-256 of
  the WHOLE file (also when reading from an offset). From offset 0 the received bytes are
  hashed here too and must match it (else ABORTED). An engine resuming a download should
  keep the stream object and take `stream.sha256` as the source's hash.
- `write_file` streams an Upload (overwrite, expected size, mode, mtime): the peer writes
  a temporary file beside the target, fsyncs it and renames it into place only when the
  whole stream arrived, so a failed or cancelled write leaves nothing under the name.
  With `resume_key` the Upload is resumable: the peer keeps what arrived when the stream
  breaks, `held(path, key)` says how much (GetUploadStatus) and a write with `offset`
  sends only the rest. With `verify`, the peer re-reads the file (Checksum) after the
  rename.
- `set_attributes` can change modes only: the peer has no RPC to set a modification time
  after the fact. Files get theirs with the Upload; directories keep the time of their
  last change there.
- Small files travel in batches (peer_batches.py: UploadFiles, DownloadFiles); `flush`
  asks the peer for one syncfs of what they wrote (each Upload is fsynced by the peer
  before its rename).
- Names that are not valid UTF-8 are listed with surrogate escapes (as os.fsdecode does)
  and can be read, stat'ed and removed (`path_bytes`); the peer cannot create them
  (INVALID_ARGUMENT naming the path).

Errors come back as `TaskFailed` with the peer's canonical code and a message naming the
peer and the path; UNAVAILABLE (the peer down or silent for `peer.timeout` seconds) stays
UNAVAILABLE, so the engine can retry and resume. A credential the peer refuses is
PERMISSION_DENIED (UNAUTHENTICATED would suggest the user's own token was bad). Unary
calls the peer refuses for its rate limits are retried after the delay it advises
(`_PacedUnary`); Upload and Download streams are not (their data cannot be replayed).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from cryptography.hazmat.primitives import serialization

from hpcgate.client.auth import ClientCredentials, bearer_interceptors
from hpcgate.client.errors import from_rpc_error
from hpcgate.server.config import PeerConfig
from hpcgate.server.errors import Code
from hpcgate.server.tasks.model import TaskFailed
from hpcgate.server.transfers.endpoint import BatchOutcome, FileData, Item, ItemKind, Written
from hpcgate.server.transfers.peer_batches import PeerBatches
from hpcgate.v1 import utilities_pb2 as u
from hpcgate.v1 import utilities_pb2_grpc

log = logging.getLogger(__name__)

DATA_LOSS = 15  # google.rpc.Code, as the engine and the local endpoint use it
CHUNK = 1024 * 1024  # Download chunk size asked for, and the largest Upload chunk sent
# What this side accepts and sends: 1 MiB chunks and ListDirectory pages with headroom.
MAX_MESSAGE = 8 * 1024 * 1024
LIST_PAGE = 1000
# Bytes per second the peer is at least expected to fsync or hash a file at: bounds the
# wait for an Upload's response and for a verifying Checksum on top of `peer.timeout`.
SLOWEST_DISK = 10 * 1024 * 1024
# Seconds allowed on top of `peer.timeout` for GetUploadStatus, which may hash the held
# bytes of an upload from the peer's disk.
HELD_HASH_WAIT = 600.0

_KINDS: dict[int, ItemKind] = {
    u.FILE_TYPE_FILE: "file",
    u.FILE_TYPE_DIRECTORY: "dir",
    u.FILE_TYPE_SYMLINK: "link",
}

R = TypeVar("R")
# A unary call the peer refuses for its rate limits is retried after the delay it
# advises (at most this many seconds), this many times in all.
RATE_RETRIES = 20
MAX_RATE_WAIT = 10.0


def _shown(path: str) -> str:
    """A path fit for messages and protobuf strings (surrogate escapes as U+FFFD)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _address(path: str) -> dict[str, Any]:
    """`path`, or `path_bytes` for a name that is not valid UTF-8 (surrogate-escaped)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return {"path_bytes": path.encode("utf-8", "surrogateescape")}
    return {"path": path}


def _mtime_ns(entry: u.FileEntry) -> int:
    return entry.mtime.ToNanoseconds()


def _unavailable(details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details, None
    )


class _PacedUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc,type-arg]
    """Waits out the peer's rate limits (RESOURCE_EXHAUSTED with a retry hint): a
    refused unary call is sent again after the advised delay, at most RATE_RETRIES
    times, so that a transfer of many small files slows down instead of failing."""

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        for attempt in range(1, RATE_RETRIES + 1):
            call = await continuation(details, request)
            try:
                return await call
            except grpc.aio.AioRpcError as e:
                delay = from_rpc_error(e).retry_delay
                limited = e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and delay is not None
                if not limited or attempt == RATE_RETRIES:
                    raise
            await asyncio.sleep(min(delay or 0.0, MAX_RATE_WAIT))
        raise AssertionError("unreachable")


class PeerEndpoint:
    """Files on a peer hpcgate server, through its UtilitiesService (see the module doc)."""

    def __init__(self, peer: PeerConfig, *, label_prefix: str | None = None) -> None:
        self.peer = peer
        self.name = f"peer {peer.id} ({peer.address})"
        # For the engine's messages, e.g. "site-b:systems/local".
        self.label = label_prefix or f"{peer.id}:systems/{peer.system}"
        # The channel and the credentials are made at the first call, so that an unreadable
        # key or CA file fails that call with a TaskFailed, never the constructor.
        self.credentials: ClientCredentials | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: utilities_pb2_grpc.UtilitiesServiceAsyncStub | None = None
        self.batches = PeerBatches(self)
        if peer.plaintext_off_loopback:
            log.warning(
                "TRANSFER WITH PEER %s AT %s WITHOUT TLS: its tokens and the data cross the "
                "network in clear text. Set tls = true in its [[peers]] table.",
                peer.id,
                peer.address,
            )

    @property
    def stub(self) -> utilities_pb2_grpc.UtilitiesServiceAsyncStub:
        if self._stub is None:
            self._channel = self._open()
            self._stub = utilities_pb2_grpc.UtilitiesServiceStub(self._channel)
        return self._stub

    def _open(self) -> grpc.aio.Channel:
        """One channel whose calls carry the service credential's access token."""
        peer = self.peer
        key = self._private_key()
        credentials = self.credentials = ClientCredentials(peer.client_id, key, peer.audience)

        async def token() -> str:
            assert self._channel is not None
            # The exchange itself gets the same bound as any call (a silent peer must not
            # hang the transfer before its first RPC).
            try:
                return await asyncio.wait_for(credentials.token(self._channel), peer.timeout)
            except TimeoutError:
                raise _unavailable(f"no access token within {peer.timeout:g} s") from None

        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ]
        interceptors = [*bearer_interceptors(token), _PacedUnary()]
        if not peer.tls:
            return grpc.aio.insecure_channel(
                peer.address, options=options, interceptors=interceptors
            )
        try:
            roots = peer.ca_file.read_bytes() if peer.ca_file else None
        except OSError as e:
            raise TaskFailed(
                Code.FAILED_PRECONDITION,
                f"{self.name}: cannot read its ca_file {peer.ca_file}: {e.strerror}",
            ) from None
        return grpc.aio.secure_channel(
            peer.address,
            grpc.ssl_channel_credentials(root_certificates=roots),
            options=options,
            interceptors=interceptors,
        )

    def _private_key(self) -> bytes:
        """The client's key, checked now so a bad file fails the task with a clear reason."""
        path = self.peer.private_key_file
        try:
            pem = path.read_bytes()
            serialization.load_pem_private_key(pem, password=None)
        except OSError as e:
            raise TaskFailed(
                Code.FAILED_PRECONDITION,
                f"{self.name}: cannot read its private_key_file {path}: {e.strerror}",
            ) from None
        except (ValueError, TypeError):
            raise TaskFailed(
                Code.FAILED_PRECONDITION,
                f"{self.name}: its private_key_file {path} is not an unencrypted PEM private key",
            ) from None
        return pem

    # -- errors ---------------------------------------------------------------------------

    def _failure(self, error: grpc.aio.AioRpcError, what: str, path: str) -> TaskFailed:
        code = error.code()
        details = error.details() or code.name
        shown = _shown(path)
        if code == grpc.StatusCode.UNAUTHENTICATED:
            return TaskFailed(
                Code.PERMISSION_DENIED,
                f"{self.name} refused this server's credential (client "
                f"{self.peer.client_id}): {details}",
                shown,
            )
        # CANCELLED here is the peer ending the call (our own cancellation raises
        # asyncio.CancelledError instead): as retryable as a peer going away.
        value = Code.UNAVAILABLE if code == grpc.StatusCode.CANCELLED else code.value[0]
        where = "" if shown and shown in details else f"{what} {shown}: "
        return TaskFailed(value, f"{self.name}: {where}{details}", shown)

    def _silent(self, what: str, path: str) -> TaskFailed:
        return TaskFailed(
            Code.UNAVAILABLE,
            f"{self.name}: {what} {_shown(path)}: no progress for {self.peer.timeout:g} s",
            _shown(path),
        )

    def _text(self, path: str, rpc: str) -> str:
        """`path` as a UTF-8 string, for the RPCs that have no bytes form of it."""
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            raise TaskFailed(
                Code.INVALID_ARGUMENT,
                f"{self.name}: {_shown(path)} is not valid UTF-8, which the peer's {rpc} "
                "cannot address",
                _shown(path),
            ) from None
        return path

    async def _unary(self, call: Awaitable[R], what: str, path: str) -> R:
        try:
            return await call
        except grpc.aio.AioRpcError as e:
            raise self._failure(e, what, path) from None

    # -- reading ----------------------------------------------------------------------------

    async def describe(self, path: str) -> Item | None:
        request = u.StatRequest(system=self.peer.system, follow_symlinks=True, **_address(path))
        try:
            reply = await self.stub.Stat(request, timeout=self.peer.timeout)
        except grpc.aio.AioRpcError as e:
            # "No system" is a configuration error, not a missing path.
            if e.code() == grpc.StatusCode.NOT_FOUND and "no system" not in (e.details() or ""):
                return None
            raise self._failure(e, "stat", path) from None
        entry = reply.entry
        kind = _KINDS.get(entry.type)
        if kind not in ("file", "dir"):
            raise TaskFailed(
                Code.FAILED_PRECONDITION,
                f"{self.name}: {_shown(path)} is neither a regular file nor a directory",
                _shown(path),
            )
        assert kind is not None
        return Item("", kind, entry.size, entry.mode, _mtime_ns(entry))

    async def walk(self, path: str) -> AsyncIterator[Item]:
        """Depth first, one ListDirectory page at a time per level (the peer sorts by raw
        name); FIFOs, sockets and devices are skipped, as the local walk does."""
        stack = [_Listing(path, "")]
        while stack:
            listing = stack[-1]
            if not listing.entries:
                if listing.done:
                    stack.pop()
                    continue
                request = u.ListDirectoryRequest(
                    system=self.peer.system,
                    show_hidden=True,
                    follow_symlinks=False,
                    page_size=LIST_PAGE,
                    page_token=listing.token,
                    **_address(listing.directory),
                )
                reply = await self._unary(
                    self.stub.ListDirectory(request, timeout=self.peer.timeout),
                    "listing",
                    listing.directory,
                )
                listing.entries.extend(reply.entries)
                listing.token = reply.next_page_token
                listing.done = not reply.next_page_token
                continue
            entry = listing.entries.popleft()
            kind = _KINDS.get(entry.type)
            if kind is None:
                continue
            name = entry.name_bytes.decode("utf-8", "surrogateescape") or entry.name
            rel = f"{listing.rel}/{name}" if listing.rel else name
            yield Item(rel, kind, entry.size, entry.mode, _mtime_ns(entry), entry.link_target)
            if kind == "dir":
                stack.append(_Listing(f"{listing.directory.rstrip('/')}/{name}", rel))

    def read_file(self, path: str, offset: int = 0) -> PeerDownload:
        return PeerDownload(self, path, offset)

    # -- writing ------------------------------------------------------------------------------

    async def write_file(
        self,
        path: str,
        chunks: AsyncIterator[bytes],
        *,
        size: int,
        mode: int | None,
        mtime_ns: int | None,
        verify: bool,
        expected: Callable[[], str] | None = None,
        resume_key: str | None = None,
        offset: int = 0,
    ) -> Written:
        """Uploads `chunks`. The peer renames the file into place once it has all of it,
        before `expected()` (the source's hash, known only then) can be compared: a
        mismatch is DATA_LOSS like at a local destination, but the file stays (the retry
        replaces it).

        With `resume_key` the Upload is resumable under that request id: an interrupted
        one leaves its bytes at the peer (`held` says how many), and a write with
        `offset` > 0 continues it, `chunks` yielding the bytes from `offset` on (`size`
        stays the whole file's)."""
        header = u.UploadHeader(
            system=self.peer.system,
            path=self._text(path, "Upload"),
            overwrite=True,
            expected_size=size,
        )
        if mode is not None:
            header.mode = mode
        if mtime_ns is not None:
            header.mtime.FromNanoseconds(mtime_ns)
        if resume_key is not None:
            header.resumable, header.request_id, header.offset = True, resume_key, offset
        # A continuing peer first hashes the bytes it holds: its first reads wait for that.
        patience = offset / SLOWEST_DISK
        call = self.stub.Upload(None)  # written message by message, below
        finished = False
        try:
            try:
                await self._send(call, u.UploadRequest(header=header), path, patience)
                async for data in chunks:
                    for start in range(0, len(data), CHUNK):
                        chunk = u.UploadChunk(data=data[start : start + CHUNK])
                        await self._send(call, u.UploadRequest(chunk=chunk), path, patience)
                await self._send(call, None, path, patience)
            except asyncio.InvalidStateError:
                pass  # the peer ended the call early (refused it): its status says why
            try:
                # After the last chunk the peer fsyncs and renames: allow for the disk.
                reply = await asyncio.wait_for(call, self.peer.timeout + size / SLOWEST_DISK)
            except TimeoutError:
                raise self._silent("uploading", path) from None
            except grpc.aio.AioRpcError as e:
                raise self._failure(e, "uploading", path) from None
            finished = True
        finally:
            if not finished:  # failed, or the chunks' source raised: the peer drops its temp
                call.cancel()
        if reply.size != size:
            raise TaskFailed(
                Code.ABORTED,
                f"{self.name}: {_shown(path)} got {reply.size} bytes instead of {size}",
                _shown(path),
            )
        written = Written(reply.size, reply.sha256)
        if verify:
            written = await self._reread(path, written)
        if expected is not None and expected() != written.sha256:
            raise TaskFailed(
                DATA_LOSS,
                f"{self.name}: {_shown(path)} has SHA-256 {written.sha256}, the source "
                f"{expected()}",
                _shown(path),
            )
        return written

    async def _send(
        self, call: Any, message: u.UploadRequest | None, path: str, patience: float = 0.0
    ) -> None:
        """One message (None: the half-close), bounded by the peer's timeout (plus
        `patience` seconds)."""
        step = call.write(message) if message is not None else call.done_writing()
        try:
            await asyncio.wait_for(step, self.peer.timeout + patience)
        except TimeoutError:
            raise self._silent("uploading", path) from None

    async def held(self, path: str, key: str) -> tuple[int, str] | None:
        """Bytes the peer holds of the unfinished resumable upload `key` to `path` and
        their SHA-256; None when it holds none (never begun, expired, completed, or
        begun for another path)."""
        request = u.GetUploadStatusRequest(system=self.peer.system, request_id=key)
        try:
            # The peer may hash what it holds from its disk first.
            reply = await self.stub.GetUploadStatus(
                request, timeout=self.peer.timeout + HELD_HASH_WAIT
            )
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise self._failure(e, "asking what is held of", path) from None
        if reply.complete or reply.path != path:
            return None
        return reply.size, reply.sha256

    async def _reread(self, path: str, uploaded: Written) -> Written:
        """What the peer holds now, hashed from its disk (the Upload's own hash is of the
        bytes as they arrived). A peer that cannot hash the file within its own time limit
        (DEADLINE_EXCEEDED) leaves the Upload's measurement, taken of the bytes written
        and fsynced, as the answer."""
        request = u.ChecksumRequest(
            system=self.peer.system, path=path, algorithm=u.CHECKSUM_ALGORITHM_SHA256
        )
        try:
            reply = await self.stub.Checksum(
                request, timeout=self.peer.timeout + uploaded.size / SLOWEST_DISK
            )
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                log.info("%s: verifying %s took too long; using the upload's hash", self.name, path)
                return uploaded
            raise self._failure(e, "verifying", path) from None
        return Written(reply.size, reply.hex_digest)

    async def make_directory(self, path: str, mode: int | None) -> bool:
        request = u.MakeDirectoryRequest(
            system=self.peer.system,
            path=self._text(path, "MakeDirectory"),
            parents=False,
            mode=0o700 if mode is None else mode,  # private until set_attributes, as locally
        )
        try:
            await self.stub.MakeDirectory(request, timeout=self.peer.timeout)
            return True
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.ALREADY_EXISTS:
                existing = await self.describe(path)
                if existing is not None and existing.kind == "dir":
                    return False
            raise self._failure(e, "creating the directory", path) from None

    async def make_symlink(self, target: str, path: str) -> None:
        request = u.CreateSymlinkRequest(
            system=self.peer.system,
            target=self._text(target, "CreateSymlink"),
            link_path=self._text(path, "CreateSymlink"),
        )
        await self._remove(path)  # replaces, like the local endpoint (not atomically)
        await self._unary(
            self.stub.CreateSymlink(request, timeout=self.peer.timeout), "linking", path
        )

    async def set_attributes(self, path: str, mode: int | None, mtime_ns: int | None) -> None:
        # mtime_ns is ignored: the peer offers no RPC to set it (see the module doc).
        if mode is None:
            return
        request = u.ChangeModeRequest(
            system=self.peer.system, path=self._text(path, "ChangeMode"), mode_bits=mode
        )
        await self._unary(
            self.stub.ChangeMode(request, timeout=self.peer.timeout), "changing the mode of", path
        )

    async def remove(self, path: str, *, directory: bool) -> bool:
        try:
            await self.stub.Remove(
                u.RemoveRequest(
                    system=self.peer.system, recursive=False, allow_missing=True, **_address(path)
                ),
                timeout=self.peer.timeout,
            )
            return True
        except grpc.aio.AioRpcError as e:
            if directory and e.code() == grpc.StatusCode.FAILED_PRECONDITION:
                return False  # not empty: something appeared that was not transferred
            raise self._failure(e, "removing", path) from None

    async def _remove(self, path: str) -> None:
        request = u.RemoveRequest(
            system=self.peer.system, recursive=False, allow_missing=True, **_address(path)
        )
        await self._unary(self.stub.Remove(request, timeout=self.peer.timeout), "removing", path)

    async def read_files(self, root: str, items: list[Item]) -> tuple[list[FileData], str | None]:
        return await self.batches.read(self._text(root, "DownloadFiles"), items)

    async def write_files(
        self, root: str, files: list[tuple[Item, FileData]], *, preserve: bool, verify: bool
    ) -> BatchOutcome:
        root = self._text(root, "UploadFiles")
        return await self.batches.write(root, files, preserve=preserve, verify=verify)

    async def flush(self) -> None:
        # Every Upload was fsynced by the peer before its rename; UploadFiles's files are
        # made durable here, all at once.
        await self.batches.sync()

    async def close(self) -> None:
        await self.batches.close()
        if self._channel is not None:
            await self._channel.close(None)


@dataclass
class _Listing:
    """A directory being walked: the rest of its current page and where the next starts."""

    directory: str
    rel: str
    entries: deque[u.FileEntry] = field(default_factory=deque)
    token: str = ""
    done: bool = False


class PeerDownload(AsyncIterator[bytes]):
    """The chunks of a file on a peer from `offset`, and what the peer says about it.

    `size`, `mode` and `mtime_ns` (the whole file's, from the Download header) are set
    once the first chunk has arrived; `sha256`, the peer's SHA-256 of the WHOLE file, once
    the iteration ended normally. From offset 0 the bytes received are checked against it
    here (a mismatch is ABORTED); from a later offset only the caller, who holds the
    beginning, can check the whole file against `sha256`.
    """

    def __init__(self, endpoint: PeerEndpoint, path: str, offset: int) -> None:
        self.endpoint = endpoint
        self.path = path
        self.offset = offset
        self.size: int | None = None
        self.mode: int | None = None
        self.mtime_ns: int | None = None
        self.sha256: str | None = None
        self._stream: AsyncGenerator[bytes, None] = self._run()

    def __aiter__(self) -> PeerDownload:
        return self

    async def __anext__(self) -> bytes:
        return await self._stream.__anext__()

    async def aclose(self) -> None:
        """Ends the download early (the stream is cancelled at the peer)."""
        await self._stream.aclose()

    async def _run(self) -> AsyncGenerator[bytes, None]:
        endpoint, path = self.endpoint, self.path
        peer = endpoint.peer
        request = u.DownloadRequest(
            system=peer.system, offset=self.offset, chunk_size=CHUNK, **_address(path)
        )
        call = endpoint.stub.Download(request)
        responses = call.__aiter__()
        digest = hashlib.sha256() if self.offset == 0 else None
        position = self.offset
        trailer: u.DownloadTrailer | None = None
        try:
            while True:
                try:
                    message = await asyncio.wait_for(anext(responses, None), peer.timeout)
                except TimeoutError:
                    raise endpoint._silent("downloading", path) from None
                except grpc.aio.AioRpcError as e:
                    raise endpoint._failure(e, "downloading", path) from None
                if message is None:
                    break
                kind = message.WhichOneof("kind")
                if kind == "header":
                    self.size = message.header.size
                    self.mode = message.header.mode
                    self.mtime_ns = message.header.mtime.ToNanoseconds()
                elif kind == "chunk":
                    if message.chunk.offset != position:
                        raise self._broken(f"a chunk at {message.chunk.offset}, not {position}")
                    data = message.chunk.data
                    position += len(data)
                    if digest is not None:
                        digest.update(data)
                    yield data
                elif kind == "trailer":
                    trailer = message.trailer
        finally:
            call.cancel()  # no-op after the end; stops the peer when the reader stopped early
        if trailer is None:
            raise TaskFailed(
                Code.UNAVAILABLE,
                f"{endpoint.name}: the download of {_shown(path)} ended without its trailer",
                _shown(path),
            )
        if trailer.total_bytes != position:
            raise self._broken(f"{position} bytes for a file of {trailer.total_bytes}")
        if digest is not None and digest.hexdigest() != trailer.sha256:
            raise self._broken("bytes that do not match the peer's SHA-256")
        self.sha256 = trailer.sha256

    def _broken(self, what: str) -> TaskFailed:
        # ABORTED: the file changed under the download or the stream broke; reading it
        # again is the remedy.
        shown = _shown(self.path)
        return TaskFailed(
            Code.ABORTED, f"{self.endpoint.name}: downloading {shown} gave {what}", shown
        )
