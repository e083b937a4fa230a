"""Group commit for completions on one queue handle.

Completions requested in the same turn of the event loop (many worker tasks
finishing at once, or several batches) are written together: one statement
and one commit for all of them, each row still its own compare-and-set. At
most ``limit`` such writes are in flight; completions arriving meanwhile wait
and go together in the next one. Every caller returns only after its own rows
were written or refused, so nothing is reported done before it is committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from jobqueue import BackendUnavailableError, InvalidRequestError
from jobqueue.backend import Fence

CompletionRow = tuple[UUID, str, Fence]
"""One completion: the job, its stats as JSON text, its fence."""
One = Callable[[UUID, str, Fence], Awaitable[bool]]
Many = Callable[[Sequence[CompletionRow]], Awaitable[set[int]]]


@dataclass(frozen=True, slots=True)
class _Request:
    """One waiting call: its rows (distinct jobs) and the future it awaits."""

    rows: Sequence[CompletionRow]
    future: asyncio.Future[Any]
    single: bool

    def answer(self, hits: list[bool], offset: int) -> None:
        """Deliver the results of this request's rows, at ``offset`` in ``hits``."""
        if self.future.done():
            return
        if self.single:
            self.future.set_result(hits[offset])
        else:
            self.future.set_result({i for i in range(len(self.rows)) if hits[offset + i]})

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            if isinstance(exc, BackendUnavailableError):
                exc = BackendUnavailableError(str(exc))
            self.future.set_exception(exc)


class Coalescer:
    """Writes the completions of one loop turn together, ``limit`` writes at a time."""

    def __init__(self, one: One, many: Many, limit: int) -> None:
        self._one = one
        self._many = many
        self._limit = max(1, limit)
        self._in_flight = 0
        self._scheduled = False
        self._pending: list[_Request] = []
        self._batches: set[asyncio.Task[None]] = set()

    def complete(self, job_id: UUID, stats: str, fence: Fence) -> asyncio.Future[bool]:
        """Queue one completion; the future is True once its compare-and-set matched,
        False once it was refused. Cancelling the future withdraws the completion
        if it was not sent yet."""
        return self._queue(((job_id, stats, fence),), single=True)

    def complete_all(self, rows: Sequence[CompletionRow]) -> asyncio.Future[set[int]]:
        """Queue the completions of one call (distinct jobs), written in one statement;
        the future is the set of positions in ``rows`` whose compare-and-set matched.
        Cancelling the future withdraws them if they were not sent yet."""
        return self._queue(rows, single=False)

    def _queue(self, rows: Sequence[CompletionRow], *, single: bool) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append(_Request(rows, future, single))
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

    def _next_batch(self) -> list[_Request]:
        """Every live queued request, but none naming a job another one in the batch
        names (those wait for the next)."""
        batch: list[_Request] = []
        later: list[_Request] = []
        jobs: set[int] = set()
        for request in self._pending:
            if request.future.done():
                continue  # the caller gave up before anything was sent
            named = [row[0].int for row in request.rows]
            if jobs.isdisjoint(named):
                jobs.update(named)
                batch.append(request)
            else:
                later.append(request)
        self._pending = later
        return batch

    async def _write(self, batch: list[_Request]) -> None:
        rows = [row for request in batch for row in request.rows]
        try:
            if len(rows) == 1:
                alone = await self._one(*rows[0])
                matched = {0} if alone else set()
            else:
                matched = await self._many(rows)
        except InvalidRequestError as exc:
            if len(batch) == 1:
                batch[0].fail(exc)
                return
            # One unstorable value fails the whole statement: write each call alone.
            for request in batch:
                await self._write([request])
            return
        except asyncio.CancelledError:
            for request in batch:
                request.fail(BackendUnavailableError("interrupted; the outcome is unknown"))
            raise
        except Exception as exc:
            for request in batch:
                request.fail(exc)
            return
        hits = [False] * len(rows)
        for position in matched:
            hits[position] = True
        offset = 0
        for request in batch:
            request.answer(hits, offset)
            offset += len(request.rows)
