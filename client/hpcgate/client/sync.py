"""`SyncClient`: the asyncio `Client`, blocking, for scripts and notebooks.

It is not a second copy of the API that could drift: a private event loop runs in a
daemon thread, and every attribute of the wrapped object is adapted on the way out —
coroutine methods block until done, async iterators become plain iterators, and the
client's own handles (`Job`, `Task`, the service areas) come back wrapped the same way.
Callbacks you pass (progress) run on that thread.

    with SyncClient.connect(token=token, system="local") as client:
        job = client.jobs.submit(script="#!/bin/sh\\nhostname\\n")
        job.wait()
        print(job.state)
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from hpcgate.client.core import DEFAULT_TIMEOUT, Client, Credentials, RetryPolicy

T = TypeVar("T")


class _Loop:
    """An event loop in a daemon thread; `run` blocks the caller until a coroutine ends."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="hpcgate-client",
                                       daemon=True)  # fmt: skip
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self.thread:
            coroutine.close()
            raise RuntimeError("a SyncClient method was called from one of its own callbacks")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def _is_ours(value: object) -> bool:
    """Objects of this library (handles and service areas), which get wrapped too."""
    module = type(value).__module__
    if dataclasses.is_dataclass(value) or isinstance(value, BaseException):
        return False  # plain results: returned as they are
    return module.startswith("hpcgate.client.")


class Blocking:
    """Wraps one object of the client: every call blocks and every result is adapted."""

    def __init__(self, target: object, loop: _Loop) -> None:
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        return _adapt(getattr(self._target, name), self._loop)

    def __repr__(self) -> str:
        return repr(self._target)

    def __iter__(self) -> Iterator[Any]:
        aiter = getattr(self._target, "__aiter__", None)
        if aiter is None:
            raise TypeError(f"{type(self._target).__name__} is not iterable")
        return _blocking_iterator(aiter(), self._loop)


def _adapt(value: Any, loop: _Loop) -> Any:
    if inspect.iscoroutinefunction(value) or inspect.isasyncgenfunction(value):
        function = value

        def call(*args: Any, **kwargs: Any) -> Any:
            result = function(*args, **kwargs)
            if inspect.iscoroutine(result):
                return _adapt(loop.run(result), loop)
            return _blocking_iterator(result, loop)

        call.__doc__ = function.__doc__
        call.__name__ = getattr(function, "__name__", "call")
        return call
    if callable(value) and _is_ours(getattr(value, "__self__", None)):
        function = value

        def plain(*args: Any, **kwargs: Any) -> Any:
            return _adapt(function(*args, **kwargs), loop)

        plain.__doc__ = function.__doc__
        return plain
    if inspect.iscoroutine(value):
        return _adapt(loop.run(value), loop)
    if isinstance(value, AsyncIterator):
        return _blocking_iterator(value, loop)
    if isinstance(value, list):
        return [_adapt(v, loop) for v in value]
    if _is_ours(value):
        return Blocking(value, loop)
    return value


def _blocking_iterator(source: AsyncIterator[Any], loop: _Loop) -> Iterator[Any]:
    try:
        while True:
            try:
                item = loop.run(_next(source))
            except StopAsyncIteration:
                return
            yield _adapt(item, loop)
    finally:
        closing = getattr(source, "aclose", None)
        if closing is not None and not loop.loop.is_closed():
            loop.run(closing())


async def _next(source: AsyncIterator[T]) -> T:
    return await anext(source)


class SyncClient(Blocking):
    """`Client` with blocking methods; use as `with SyncClient.connect(...) as client:`."""

    def __init__(self, client: Client, loop: _Loop) -> None:
        super().__init__(client, loop)
        self.client = client

    @classmethod
    def connect(
        cls,
        address: str | None = None,
        *,
        token: str | None = None,
        credentials: Credentials | None = None,
        tls: bool | None = None,
        ca_file: str | Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        system: str | None = None,
    ) -> SyncClient:
        """Same arguments as `Client.connect`."""
        loop = _Loop()

        async def make() -> Client:  # the channel belongs to the loop that uses it
            return Client.connect(address, token=token, credentials=credentials, tls=tls,
                                  ca_file=ca_file, timeout=timeout, retry=retry,
                                  system=system)  # fmt: skip

        return cls(loop.run(make()), loop)

    def close(self) -> None:
        if self._loop.loop.is_closed():
            return
        self._loop.run(self.client.close())
        self._loop.stop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
