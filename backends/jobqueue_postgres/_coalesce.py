"""Group commit for completions on one queue handle.

Completions requested in the same turn of the event loop (many worker tasks
finishing at once) are written together: one statement and one commit for
all of them, each row still its own compare-and-set. At most ``limit`` such
writes are in flight; completions arriving meanwhile wait and go together in
the next one. Every caller returns only after its own row was written or
refused, so nothing is reported done before it is committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from uuid import UUID

from jobqueue import BackendUnavailableError, InvalidRequestError
from jobqueue.backend import Fence

One = Callable[[UUID, str, Fence], Awaitable[bool]]
Many = Callable[[Sequence["Completion"]], Awaitable[set[int]]]


@dataclass(frozen=True, slots=True)
class Completion:
    """One waiting ``complete_job`` call: the job, its stats as JSON text, its fence."""

    job_id: UUID
    stats: str
    fence: Fence
    future: asyncio.Future[bool]


class Coalescer:
    """Writes the completions of one loop turn together, ``limit`` writes at a time."""

    def __init__(self, one: One, many: Many, limit: int) -> None:
        self._one = one
        self._many = many
        self._limit = max(1, limit)
        self._in_flight = 0
        self._scheduled = False
        self._pending: list[Completion] = []
        self._batches: set[asyncio.Task[None]] = set()

    def complete(self, job_id: UUID, stats: str, fence: Fence) -> asyncio.Future[bool]:
        """Queue one completion; the future is True once its compare-and-set matched,
        False once it was refused. Cancelling the future withdraws the completion
        if it was not sent yet."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._pending.append(Completion(job_id, stats, fence, future))
        if not self._scheduled and self._in_flight < self._limit:
            # Written on the next turn, so that completions requested in this one join it.
            self._scheduled = True
            loop.call_soon(self._start_batches)
        return future

    async def close(self) -> None:
        """Wait until every queued completion has been written."""
        while self._batches or self._scheduled:
            if self._batches:
                await asyncio.wait(set(self._batches))
            else:
                await asyncio.sleep(0)

    def _start_batches(self) -> None:
        self._scheduled = False
        while self._pending and self._in_flight < self._limit:
            batch = self._next_batch()
            if batch:
                self._in_flight += 1
                task = asyncio.create_task(self._write(batch))
                self._batches.add(task)
                task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        self._in_flight -= 1
        self._start_batches()

    def _next_batch(self) -> list[Completion]:
        """Every live queued completion, but at most one per job (the others wait)."""
        batch: list[Completion] = []
        later: list[Completion] = []
        jobs: set[int] = set()
        for completion in self._pending:
            if completion.future.done():
                continue  # the caller gave up before anything was sent
            job = completion.job_id.int
            if job in jobs:
                later.append(completion)
            else:
                jobs.add(job)
                batch.append(completion)
        self._pending = later
        return batch

    async def _write(self, batch: list[Completion]) -> None:
        try:
            if len(batch) == 1:
                (only,) = batch
                alone = await self._one(only.job_id, only.stats, only.fence)
                matched = {0} if alone else set()
            else:
                matched = await self._many(batch)
        except InvalidRequestError:
            # One unstorable value fails the whole statement: write each alone.
            for completion in batch:
                await self._write_alone(completion)
            return
        except asyncio.CancelledError:
            for completion in batch:
                _fail(completion, BackendUnavailableError("interrupted; the outcome is unknown"))
            raise
        except Exception as exc:
            for completion in batch:
                _fail(completion, exc)
            return
        for position, completion in enumerate(batch):
            if not completion.future.done():
                completion.future.set_result(position in matched)

    async def _write_alone(self, completion: Completion) -> None:
        try:
            matched = await self._one(completion.job_id, completion.stats, completion.fence)
        except Exception as exc:
            _fail(completion, exc)
        else:
            if not completion.future.done():
                completion.future.set_result(matched)


def _fail(completion: Completion, exc: BaseException) -> None:
    if not completion.future.done():
        if isinstance(exc, BackendUnavailableError):
            exc = BackendUnavailableError(str(exc))
        completion.future.set_exception(exc)
