"""Copy, move or sync a file or tree from one Endpoint to another, verified and resumable.

Items are processed in walk order (parents before children, siblings sorted by raw
name). Each file's bytes are hashed as they leave the source; the destination writes them
under a temporary name, hashes what it holds and renames it into place only when the two
SHA-256s match (a mismatch is retried once, then fails the task). Small files go in
batches (up to BATCH_FILES files or BATCH_BYTES of content): one worker request copies a
batch between two local trees, and between facilities a batch is read in one request and
written in one UploadFiles message (endpoint.py: read_files, write_files), with the same
hashing and verification per file; a file a batch stops at goes alone, as above.
Every CHECKPOINT_SECONDS the destination is flushed (one syncfs instead of an fsync per
file), a MOVE deletes the sources verified since the previous checkpoint, and the task
records the last item done: a resumed run skips everything up to it, so a crash costs at
most the files of one checkpoint interval, and never a source file whose copy was not
durable yet.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

from hpcgate.server.errors import Code
from hpcgate.server.metrics import Metrics
from hpcgate.server.tasks.model import TaskFailed
from hpcgate.server.tasks.runner import TaskContext
from hpcgate.server.transfers.endpoint import BatchOutcome, Endpoint, Item, Written

log = logging.getLogger(__name__)
CHECKPOINT_SECONDS = 2.0
CHECKPOINT_FILES = 2000
SMALL_FILE = 256 * 1024  # files up to this size travel in batches
BATCH_FILES = 500
BATCH_BYTES = 2 * 1024 * 1024  # of content per batch: a worker frame holds it in base64
IN_FLIGHT = 2  # batches moving at once between facilities
# Batches copied at once between two local trees of one user, each by a worker process
# of its own (two requests to one worker only contend for its GIL: half the files/s).
COPY_LANES = 2
RESUMABLE_FILE = 16 * 1024 * 1024  # to a peer, files this large resume within themselves
DATA_LOSS = 15  # google.rpc.Code
# The temporary names writes use (privsep worker's _temp_file): `.NAME.hpcgate-HEX.part`.
TEMPORARY = re.compile(r"^\..*\.hpcgate-[0-9a-f]{12}\.part$")


@dataclass(frozen=True)
class Spec:
    """A TransferSpec as stored in the task's request (proto field names)."""

    kind: str  # COPY, MOVE or SYNC
    source_path: str
    destination_path: str
    recursive: bool = False
    preserve: bool = False
    overwrite: bool = False
    delete_extraneous: bool = False
    verify: bool = True

    @classmethod
    def from_request(cls, request: dict[str, Any]) -> Spec:
        return cls(
            kind=str(request.get("kind", "")).removeprefix("TRANSFER_KIND_"),
            source_path=str(request["source"]["path"]),
            destination_path=str(request["destination"]["path"]),
            recursive=bool(request.get("recursive")),
            preserve=bool(request.get("preserve")),
            overwrite=bool(request.get("overwrite")),
            delete_extraneous=bool(request.get("delete_extraneous")),
            verify=not request.get("skip_verification"),
        )


@dataclass
class Counters:
    """TransferResult's fields."""

    files_transferred: int = 0
    bytes_transferred: int = 0
    files_skipped: int = 0
    files_deleted: int = 0
    directories_created: int = 0
    files_verified: int = 0


def order_key(rel: str) -> tuple[bytes, ...]:
    """The walk order of a relative path (the root, '', first)."""
    return tuple(os.fsencode(rel).split(b"/")) if rel else ()


def _join(root: str, rel: str) -> str:
    if not rel:
        return root
    return f"{root.rstrip('/')}/{rel}"


@dataclass
class _State:
    counters: Counters
    last_done: str | None  # rel of the last item done, None before the root
    pending_deletes: list[str] = field(default_factory=list)
    bytes_done: int = 0
    files_done: int = 0
    partial: str | None = None  # the resume key of a large file being written to a peer
    partial_rel: str | None = None  # and that file


class Transfer:
    def __init__(
        self,
        ctx: TaskContext,
        spec: Spec,
        source: Endpoint,
        dest: Endpoint,
        metrics: Metrics | None = None,
    ) -> None:
        self.ctx = ctx
        self.metrics = metrics or Metrics.unexposed()
        self.spec = spec
        self.source = source
        self.dest = dest
        self.sync = spec.kind == "SYNC"
        self.preserve = spec.preserve or self.sync  # SYNC compares mtimes, so it keeps them
        checkpoint = ctx.checkpoint if ctx.resumed and isinstance(ctx.checkpoint, dict) else {}
        self.state = _State(
            counters=Counters(**checkpoint.get("counters", {})),
            last_done=checkpoint.get("last_done"),
            bytes_done=int(checkpoint.get("bytes_done", 0)),
            files_done=int(checkpoint.get("files_done", 0)),
            partial=checkpoint.get("partial"),
            partial_rel=checkpoint.get("partial_rel"),
        )
        self._checkpointed_at = time.monotonic()
        self._since_checkpoint = 0
        self._in_flight: deque[tuple[list[Item], asyncio.Future[BatchOutcome]]] = deque()
        # Between two local trees of the same user, a worker request copies a whole batch,
        # COPY_LANES batches at once in as many worker processes. Between facilities,
        # reading the next batch overlaps with writing this one.
        copies_directly_from = getattr(dest, "copies_directly_from", None)
        self._direct = bool(copies_directly_from and copies_directly_from(source))
        self._max_in_flight = COPY_LANES if self._direct else IN_FLIGHT
        self._batches = 0  # batches started: the lane of the next one

    # -- the whole transfer -------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        spec = self.spec
        if self.ctx.resumed:
            log.info(
                "transfer resumed",
                extra={
                    "fields": {
                        "task": self.ctx.task.id,
                        "last_done": self.state.last_done,
                        "files_done": self.state.files_done,
                        "bytes_done": self.state.bytes_done,
                    }
                },
            )
        root = await self.source.describe(spec.source_path)
        if root is None:
            if self.state.last_done is not None and spec.kind == "MOVE":
                return asdict(self.state.counters)  # resumed after the last source went
            raise TaskFailed(
                Code.NOT_FOUND,
                f"{self.source.label}:{spec.source_path} does not exist",
                spec.source_path,
            )
        if root.kind == "dir" and not spec.recursive:
            raise TaskFailed(
                Code.FAILED_PRECONDITION,
                f"{spec.source_path} is a directory; set recursive to transfer a tree",
                spec.source_path,
            )
        items = [root]
        if root.kind == "dir":
            items += [item async for item in self.source.walk(spec.source_path)]
        existing = await self._existing(root)
        if self.state.last_done is not None:
            done = order_key(self.state.last_done)
            remaining = [i for i in items if order_key(i.rel) > done]
        else:
            remaining = items
        work = [i for i in remaining if not self._unchanged(i, existing)]
        to_transfer = {i.rel for i in work}  # a set: 10^5 items must not be O(n^2)
        await self.ctx.progress(
            bytes_total=self.state.bytes_done + sum(i.size for i in work if i.kind == "file"),
            files_total=self.state.files_done + sum(1 for i in work if i.kind != "dir"),
            bytes_done=self.state.bytes_done,
            files_done=self.state.files_done,
            message=f"transferring {len(work)} entries"
            + (" (resumed)" if self.ctx.resumed else ""),
        )
        try:
            await self._transfer_items(remaining, to_transfer)
        finally:  # failed or cancelled: stop the batches still running
            running = [future for _, future in self._in_flight]
            for future in running:
                future.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        await self._checkpoint()
        if self.sync and spec.delete_extraneous:
            await self._delete_extraneous(items, existing)
        if self.preserve:
            for item in reversed(items):  # children first: setting a parent's time is last
                if item.kind == "dir":
                    await self.dest.set_attributes(
                        _join(spec.destination_path, item.rel), item.mode, item.mtime_ns
                    )
        if spec.kind == "MOVE" and root.kind == "dir":
            await self._remove_source_directories(items)
        await self.dest.flush()
        await self.ctx.progress(message="done")
        return asdict(self.state.counters)

    async def _existing(self, root: Item) -> dict[str, Item]:
        """What the destination already holds (for SYNC, and for resuming)."""
        if not (self.sync or self.ctx.resumed):
            return {}
        there = await self.dest.describe(self.spec.destination_path)
        if there is None:
            return {}
        if there.kind != root.kind:
            raise TaskFailed(
                Code.FAILED_PRECONDITION,
                f"{self.spec.destination_path} is a {there.kind}, the source a {root.kind}",
                self.spec.destination_path,
            )
        found = {"": there}
        if there.kind == "dir":
            async for item in self.dest.walk(self.spec.destination_path):
                if self.ctx.resumed and TEMPORARY.match(item.rel.rpartition("/")[2]):
                    if self._held_partial(item.rel):
                        continue  # what a resumable write left, to continue from
                    # A write cut short by the crash this run resumes from.
                    path = _join(self.spec.destination_path, item.rel)
                    await self.dest.remove(path, directory=False)
                    continue
                found[item.rel] = item
        return found

    def _held_partial(self, rel: str) -> bool:
        """Whether `rel` is the temporary file of the resumable write being continued."""
        if self.state.partial_rel is None:
            return False
        directory, _, name = rel.rpartition("/")
        target_dir, _, target = self.state.partial_rel.rpartition("/")
        return directory == target_dir and name.startswith(f".{target}.hpcgate-")

    def _unchanged(self, item: Item, existing: dict[str, Item]) -> bool:
        """SYNC: the destination has this entry with the same size and mtime (seconds)."""
        if not self.sync or item.kind == "dir":
            return False
        there = existing.get(item.rel)
        if there is None or there.kind != item.kind:
            return False
        if item.kind == "link":
            return there.link == item.link
        return there.size == item.size and there.mtime_ns // 10**9 == item.mtime_ns // 10**9

    # -- one item -----------------------------------------------------------------------

    async def _transfer(self, item: Item) -> None:
        source = _join(self.spec.source_path, item.rel)
        destination = _join(self.spec.destination_path, item.rel)
        counters = self.state.counters
        if item.kind == "dir":
            if await self.dest.make_directory(destination, None):
                counters.directories_created += 1
            return
        if item.kind == "link":
            await self.dest.make_symlink(item.link, destination)
        else:
            await self._copy_file(item, source, destination)
        counters.files_transferred += 1
        self.state.files_done += 1
        if self.spec.kind == "MOVE":
            self.state.pending_deletes.append(source)
        await self.ctx.progress(files_done=self.state.files_done, bytes_done=self.state.bytes_done)

    # -- the items, small files in batches ------------------------------------------------

    async def _transfer_items(self, remaining: list[Item], to_transfer: set[str]) -> None:
        """Every item in walk order. Small files are gathered in batches (up to
        IN_FLIGHT at once between facilities); directories are created as they come (a
        batch of files in them may follow); anything else first waits for the batches
        before it. Progress (`last_done`) only moves in walk order, as batches end."""
        batch: list[Item] = []
        batch_bytes = 0
        for item in remaining:
            if item.rel in to_transfer and self._batchable(item):
                batch.append(item)
                batch_bytes += item.size
                if len(batch) >= BATCH_FILES or batch_bytes >= BATCH_BYTES:
                    await self._submit(batch)
                    batch, batch_bytes = [], 0
                continue
            if item.kind == "dir" and (batch or self._in_flight):
                await self._transfer(item)  # done, but recorded once the files before it are
                continue
            await self._submit(batch)
            batch, batch_bytes = [], 0
            await self._settle(everything=True)
            if item.rel in to_transfer or item.kind == "dir":
                await self._transfer(item)
            else:
                self.state.counters.files_skipped += 1
            self.state.last_done = item.rel
            await self._maybe_checkpoint()
        await self._submit(batch)
        await self._settle(everything=True)

    @staticmethod
    def _batchable(item: Item) -> bool:
        return item.kind == "file" and item.size <= SMALL_FILE and item.rel != ""  # not the root

    async def _submit(self, batch: list[Item]) -> None:
        """Starts copying a batch, once fewer than IN_FLIGHT are running."""
        if batch:
            await self._settle(everything=False)
            self._in_flight.append((batch, asyncio.ensure_future(self._copy_batch(batch))))

    async def _settle(self, *, everything: bool) -> None:
        """Takes in the outcomes of the oldest batches: all, or until one slot is free."""
        while self._in_flight and (everything or len(self._in_flight) >= self._max_in_flight):
            items, running = self._in_flight[0]
            outcome = await running
            self._in_flight.popleft()
            await self._take(items, outcome)

    async def _take(self, items: list[Item], outcome: BatchOutcome) -> None:
        """Counts what a batch did; the file it stopped at goes the one-file way (which
        retries and explains its failure), and the rest of it in another batch."""
        while True:
            for rel, written in outcome.done:
                self._count_file(_join(self.spec.source_path, rel), written)
                self.state.last_done = rel
            self._since_checkpoint += len(outcome.done)
            await self.ctx.progress(
                files_done=self.state.files_done, bytes_done=self.state.bytes_done
            )
            items = items[len(outcome.done) :]
            if items and (outcome.stopped_at == items[0].rel or not outcome.done):
                await self._transfer(items[0])
                self.state.last_done = items[0].rel
                items = items[1:]
            await self._maybe_checkpoint()
            if not items:
                return
            outcome = await self._copy_batch(items)

    async def _copy_batch(self, items: list[Item]) -> BatchOutcome:
        src_root, dst_root = self.spec.source_path, self.spec.destination_path
        if self._direct:
            self._batches += 1
            outcome: BatchOutcome = await self.dest.copy_files_from(  # type: ignore[attr-defined]
                src_root, dst_root, items, preserve=self.preserve, verify=self.spec.verify,
                lane=self._batches % COPY_LANES,
            )  # fmt: skip
            return outcome
        files, stopped_at = await self.source.read_files(src_root, items)
        if not files:
            return BatchOutcome([], stopped_at or items[0].rel)
        by_rel = {i.rel: i for i in items[: len(files)]}
        outcome = await self.dest.write_files(
            dst_root,
            [(by_rel[f.rel], f) for f in files],
            preserve=self.preserve,
            verify=self.spec.verify,
        )
        for (rel, written), sent in zip(outcome.done, files, strict=False):
            if written.sha256 != sent.sha256:  # a peer's answer, checked here too
                raise TaskFailed(DATA_LOSS, f"{rel}: the destination's SHA-256 differs", rel)
        if outcome.stopped_at is None and len(files) < len(items):
            return BatchOutcome(outcome.done, stopped_at)
        return outcome

    def _count_file(self, source: str, written: Written) -> None:
        counters = self.state.counters
        counters.files_transferred += 1
        counters.bytes_transferred += written.size
        if self.spec.verify:
            counters.files_verified += 1
        self.state.files_done += 1
        self.state.bytes_done += written.size
        self.metrics.transfer_bytes.inc(written.size)
        if self.spec.kind == "MOVE":
            self.state.pending_deletes.append(source)

    async def _copy_file(self, item: Item, source: str, destination: str) -> None:
        for attempt in (1, 2):
            start_bytes = self.state.bytes_done
            resume, digest = await self._resume(item, source, destination, attempt)
            try:
                written = await self.dest.write_file(
                    destination,
                    self._hashed(source, digest, resume.get("offset", 0)),
                    size=item.size,
                    mode=item.mode if self.preserve else None,
                    mtime_ns=item.mtime_ns if self.preserve else None,
                    verify=self.spec.verify,
                    expected=digest.hexdigest,
                    **resume,
                )
            except TaskFailed as failure:
                if failure.error.code != DATA_LOSS or attempt == 2:
                    raise
                self.state.bytes_done = start_bytes
                continue
            if written.sha256 != digest.hexdigest():  # a peer can only tell us afterwards
                if attempt == 2:
                    raise TaskFailed(
                        DATA_LOSS,
                        f"{destination}: SHA-256 differs from the source's after a retry",
                        destination,
                    )
                self.state.bytes_done = start_bytes
                continue
            self.state.partial = self.state.partial_rel = None
            self.state.counters.bytes_transferred += written.size
            self.metrics.transfer_bytes.inc(written.size)  # verified bytes only, not retries
            if self.spec.verify:
                self.state.counters.files_verified += 1
            return

    async def _resume(
        self, item: Item, source: str, destination: str, attempt: int
    ) -> tuple[dict[str, Any], Any]:
        """How to write a file (write_file's resume arguments) and the SHA-256 object its
        bytes go into. A large file to a destination that keeps interrupted writes (a
        peer's resumable Upload) goes under a key recorded in the checkpoint before its
        first byte, so that a run resumed after a crash asks what arrived, checks it
        against the source's same bytes and sends only the rest."""
        held_of = getattr(self.dest, "held", None)
        if held_of is None or item.size < RESUMABLE_FILE:
            return {}, hashlib.sha256()
        rel_hash = hashlib.sha256(os.fsencode(item.rel)).hexdigest()[:16]
        key = f"hpcgate-transfer-{self.ctx.task.id}-{rel_hash}-{attempt}"
        if not (self.state.partial or "").startswith(key) or self.state.partial_rel != item.rel:
            self.state.partial, self.state.partial_rel = key, item.rel
            await self._checkpoint()
            return {"resume_key": key}, hashlib.sha256()
        held = await held_of(destination, self.state.partial)
        if held is None or not 0 < held[0] <= item.size:
            return {"resume_key": self.state.partial}, hashlib.sha256()
        prefix = await self._prefix_digest(source, held[0])
        if prefix is None or prefix.hexdigest() != held[1]:
            log.info("transfer: what %s holds differs from the source; sending it all", destination)
            self.state.partial = f"{key}-{os.urandom(4).hex()}"  # a fresh start there
            await self._checkpoint()
            return {"resume_key": self.state.partial}, hashlib.sha256()
        log.info(
            "transfer resumes a file",
            extra={"fields": {"path": destination, "offset": held[0], "task": self.ctx.task.id}},
        )
        self.state.bytes_done += held[0]
        return {"resume_key": self.state.partial, "offset": held[0]}, prefix

    async def _prefix_digest(self, source: str, length: int) -> Any:
        """SHA-256 of the source's first `length` bytes; None if it is shorter now."""
        digest, done = hashlib.sha256(), 0
        chunks = self.source.read_file(source)
        try:
            async for data in chunks:
                part = data[: length - done]
                await asyncio.to_thread(digest.update, part)
                done += len(part)
                if done >= length:
                    return digest
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()  # the source's descriptor or stream, now
        return None

    async def _hashed(self, source: str, digest: Any, offset: int = 0) -> AsyncIterator[bytes]:
        """The source's chunks from `offset`, hashed (in a thread) and counted as they pass."""
        async for data in self.source.read_file(source, offset):
            await asyncio.to_thread(digest.update, data)
            self.state.bytes_done += len(data)
            await self.ctx.progress(bytes_done=self.state.bytes_done)
            yield data

    # -- checkpoints and clean-up -------------------------------------------------------

    async def _maybe_checkpoint(self) -> None:
        self._since_checkpoint += 1  # batches add their files before calling this
        due = time.monotonic() - self._checkpointed_at >= CHECKPOINT_SECONDS
        if due or self._since_checkpoint >= CHECKPOINT_FILES:
            await self._checkpoint()

    async def _checkpoint(self) -> None:
        """Flush the destination, then delete moved sources, then record the position."""
        await self.dest.flush()
        for path in self.state.pending_deletes:
            await self.source.remove(path, directory=False)
        self.state.pending_deletes = []
        await self.ctx.save_checkpoint(
            {
                "last_done": self.state.last_done,
                "counters": asdict(self.state.counters),
                "bytes_done": self.state.bytes_done,
                "files_done": self.state.files_done,
                "partial": self.state.partial,
                "partial_rel": self.state.partial_rel,
            }
        )
        self.ctx.result = asdict(self.state.counters)
        self._checkpointed_at = time.monotonic()
        self._since_checkpoint = 0

    async def _delete_extraneous(self, items: list[Item], existing: dict[str, Item]) -> None:
        wanted = {i.rel for i in items}
        extra = sorted((r for r in existing if r and r not in wanted), key=order_key, reverse=True)
        for rel in extra:
            kind = existing[rel].kind
            removed = await self.dest.remove(
                _join(self.spec.destination_path, rel), directory=kind == "dir"
            )
            if removed and kind != "dir":
                self.state.counters.files_deleted += 1

    async def _remove_source_directories(self, items: list[Item]) -> None:
        left = []
        for item in reversed(items):
            if item.kind == "dir":
                path = _join(self.spec.source_path, item.rel)
                if not await self.source.remove(path, directory=True):
                    left.append(path)
        if left:
            await self.ctx.progress(
                message=f"done; {len(left)} source directories kept because entries "
                "appeared in them during the move"
            )


async def run_transfer(
    ctx: TaskContext,
    spec: Spec,
    source: Endpoint,
    dest: Endpoint,
    metrics: Metrics | None = None,
) -> dict[str, Any]:
    return await Transfer(ctx, spec, source, dest, metrics).run()
