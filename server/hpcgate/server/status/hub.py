"""Holds the latest status of every system and fans changes out to watchers.

Each watcher keeps at most one pending status per system (a newer one replaces an
older one it has not read yet), so a slow watcher costs a bounded amount of memory
and still ends up with the current state.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable

from hpcgate.server.status.model import State, SystemStatus


@dataclasses.dataclass
class StatusChange:
    status: SystemStatus
    previous_state: State


class Subscription:
    """One watcher's view: pending changes per system, and a wake-up event."""

    def __init__(self, hub: StatusHub, system_ids: frozenset[str]) -> None:
        self._hub = hub
        self.system_ids = system_ids
        self._pending: dict[str, StatusChange] = {}
        self._wake = asyncio.Event()

    def _offer(self, change: StatusChange) -> None:
        if self.system_ids and change.status.system_id not in self.system_ids:
            return
        older = self._pending.get(change.status.system_id)
        if older is not None:  # coalesce: keep the state the watcher last saw as "previous"
            change = StatusChange(change.status, older.previous_state)
        self._pending[change.status.system_id] = change
        self._wake.set()

    async def next_changes(self, timeout: float) -> list[StatusChange]:  # noqa: ASYNC109
        """Changes since the last call, or [] after `timeout` seconds without any."""
        if not self._pending:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return []
        self._wake.clear()
        changes = list(self._pending.values())
        self._pending.clear()
        return changes

    def close(self) -> None:
        self._hub._subscriptions.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StatusHub:
    """The latest SystemStatus per system, in configuration order."""

    def __init__(self, system_ids: Iterable[str]) -> None:
        self._order = list(system_ids)
        self._latest: dict[str, SystemStatus] = {}
        self._subscriptions: set[Subscription] = set()
        self._all_probed = asyncio.Event()
        self.on_first_probes: list[Callable[[], None]] = []

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    @property
    def ready(self) -> bool:
        return self._all_probed.is_set()

    async def wait_ready(self) -> None:
        await self._all_probed.wait()

    def get(self, system_id: str) -> SystemStatus | None:
        return self._latest.get(system_id)

    def all(self) -> list[SystemStatus]:
        return [self._latest[s] for s in self._order if s in self._latest]

    def subscribe(self, system_ids: Iterable[str] = ()) -> Subscription:
        sub = Subscription(self, frozenset(system_ids))
        self._subscriptions.add(sub)
        return sub

    def publish(self, status: SystemStatus) -> None:
        """Record a probe result; notify watchers if states or reasons changed."""
        previous = self._latest.get(status.system_id)
        if previous is not None:
            changed = previous.signature() != status.signature()
            status = dataclasses.replace(
                status,
                generation=previous.generation + (1 if changed else 0),
                state_changed_at=status.updated_at
                if status.state is not previous.state
                else previous.state_changed_at,
            )
        else:
            changed = True
        self._latest[status.system_id] = status
        if changed:
            prev_state = previous.state if previous is not None else State.UNKNOWN
            for sub in list(self._subscriptions):
                sub._offer(StatusChange(status, prev_state))
        if not self._all_probed.is_set() and all(s in self._latest for s in self._order):
            self._all_probed.set()
            for callback in self.on_first_probes:
                callback()
