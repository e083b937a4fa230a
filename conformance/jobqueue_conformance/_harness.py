"""How the suite opens queues and runs async code without a pytest asyncio plugin."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import jobqueue
from jobqueue import JobQueue, JobStatus
from jobqueue.testing import FakeClock

__all__ = [
    "CAPABILITIES",
    "START",
    "ConnectSpec",
    "Harness",
    "Opener",
    "clear_queue",
]

T = TypeVar("T")

CAPABILITIES = frozenset({"concurrent_processes", "persistent", "listen_notify"})
"""The capabilities a backend may claim; the suite skips the checks of those it does not."""

START = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
"""Where every fake clock of the suite starts (microseconds included on purpose)."""

Opener = Callable[[Callable[[], datetime] | None], Awaitable[JobQueue]]
"""``await opener(clock)`` opens a new handle on the test's queue, using ``clock``."""


@dataclass(frozen=True)
class ConnectSpec:
    """A picklable opener: ``await spec(clock)`` is ``connect(url, clock=clock, **options)``.

    Return one from the ``open_queue`` fixture when the backend claims
    ``concurrent_processes``: the suite then opens the same queue in child
    processes too. Options must be picklable.
    """

    url: str
    options: Mapping[str, Any] = field(default_factory=dict)

    async def __call__(self, clock: Callable[[], datetime] | None) -> JobQueue:
        return await jobqueue.connect(self.url, clock=clock, **self.options)


FAR_FUTURE = datetime(3000, 1, 1, tzinfo=UTC)


async def clear_queue(queue: JobQueue) -> None:
    """Empty the queue through the public API: cancel every live job, purge every finished one.

    Raises ``AssertionError`` when jobs remain afterwards.
    """
    while True:
        live = [
            job
            for status in (JobStatus.PENDING, JobStatus.RUNNING)
            for job in await queue.list_jobs(status, limit=1000)
        ]
        if not live:
            break
        for job in live:
            await queue.cancel_job(job.id)
    while await queue.purge_jobs(FAR_FUTURE) > 0:
        pass
    left = {s.value: n for s, n in (await queue.counts()).items() if n}
    if left:
        raise AssertionError(
            f"the queue is not empty after cancelling and purging everything: {left}"
        )


class Harness:
    """The event loop, clock and queue handles of one check.

    Every handle opened through :meth:`open` shares the test's storage and is
    closed at the end; :meth:`run` drives a coroutine on the harness's own loop.
    """

    def __init__(self, opener: Opener, capabilities: frozenset[str]) -> None:
        self.opener = opener
        self.capabilities = capabilities
        self.clock = FakeClock(START)
        self._runner = asyncio.Runner()
        self._handles: list[JobQueue] = []

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        __tracebackhide__ = True
        return self._runner.run(coro)

    async def open(self) -> JobQueue:
        """A new handle on the test's queue, on the harness's fake clock."""
        queue = await self.opener(self.clock)
        if not isinstance(queue, JobQueue):
            raise TypeError(f"open_queue must give a JobQueue, got {type(queue).__name__}")
        self._handles.append(queue)
        return queue

    async def connect(self, **extra: Any) -> JobQueue:
        """A handle opened by ``jobqueue.connect`` with ``extra`` arguments (ConnectSpec only)."""
        spec = self.opener
        assert isinstance(spec, ConnectSpec)
        queue = await jobqueue.connect(spec.url, clock=self.clock, **{**spec.options, **extra})
        self._handles.append(queue)
        return queue

    async def fresh(self) -> JobQueue:
        """The first handle of a check, on a queue emptied before use."""
        queue = await self.open()
        await clear_queue(queue)
        return queue

    def close(self) -> None:
        async def close_all() -> None:
            for queue in self._handles:
                await queue.close()

        try:
            self.run(close_all())
        finally:
            self._runner.close()
