"""In-process publish/subscribe of task changes, for WatchTask.

The runner publishes a task's record after every committed change it makes and, on a
store shared by several servers, the changes the others make to the tasks watched here
(read from the database). Each watcher has a bounded queue: when it is full, a progress
update that a newer copy of the same state supersedes is dropped, never a state change,
so a slow watcher costs bounded memory and still sees every state the task went through
and its latest progress.
"""

from __future__ import annotations

import asyncio
import collections

from hpcgate.server.tasks.model import TaskRecord

QUEUE_SIZE = 32


class TaskWatch:
    """One watcher of one task. Use as a context manager so it is always unsubscribed."""

    def __init__(self, feed: TaskFeed, task_id: str, size: int = QUEUE_SIZE) -> None:
        self._feed = feed
        self.task_id = task_id
        self._size = size
        self._pending: collections.deque[TaskRecord] = collections.deque()
        self._wake = asyncio.Event()

    def _offer(self, record: TaskRecord) -> None:
        if len(self._pending) >= self._size:
            self._drop_superseded()
        self._pending.append(record)
        self._wake.set()

    def _drop_superseded(self) -> None:
        """Remove the oldest record followed by one in the same state (a progress step).
        If only state changes are queued (a task has a handful), all are kept."""
        for i in range(len(self._pending) - 1):
            if self._pending[i].state == self._pending[i + 1].state:
                del self._pending[i]
                return

    async def next(self, timeout: float) -> TaskRecord | None:  # noqa: ASYNC109
        """The next published record, or None after `timeout` seconds without one."""
        if not self._pending:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return None
        return self._pending.popleft()

    def close(self) -> None:
        self._feed._remove(self)

    def __enter__(self) -> TaskWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TaskFeed:
    """Watchers by task id."""

    def __init__(self) -> None:
        self._watchers: dict[str, set[TaskWatch]] = {}

    @property
    def watcher_count(self) -> int:
        return sum(len(w) for w in self._watchers.values())

    def task_ids(self) -> list[str]:
        """The tasks someone is watching."""
        return list(self._watchers)

    def subscribe(self, task_id: str) -> TaskWatch:
        watch = TaskWatch(self, task_id)
        self._watchers.setdefault(task_id, set()).add(watch)
        return watch

    def publish(self, record: TaskRecord) -> None:
        for watch in self._watchers.get(record.id, ()):
            watch._offer(record)

    def _remove(self, watch: TaskWatch) -> None:
        watchers = self._watchers.get(watch.task_id)
        if watchers is not None:
            watchers.discard(watch)
            if not watchers:
                del self._watchers[watch.task_id]
