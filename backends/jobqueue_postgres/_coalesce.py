"""Group commit for completions on one queue handle.

A completion that arrives while none is being written goes straight to the
database. Completions that arrive while one is in flight (many worker tasks
finishing at once) wait for a moment and are then written together, one
statement and one commit for all of them, each row still its own
compare-and-set. Every caller returns only after its own row was written or
refused, so nothing is reported done before it is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from uuid import UUID

from jobqueue import BackendUnavailableError, InvalidRequestError
from jobqueue.backend import Fence

One = Callable[[UUID, str, Fence], Awaitable[bool]]
Many = Callable[[Sequence["Completion"]], Awaitable[set[UUID]]]


@dataclass(frozen=True, slots=True)
class Completion:
    """One waiting ``complete_job`` call: the job, its stats as JSON text, its fence."""

    job_id: UUID
    stats: str
    fence: Fence
    future: asyncio.Future[bool]


class Coalescer:
    """Writes completions alone when the handle is quiet and in batches when it is busy."""

    def __init__(self, one: One, many: Many) -> None:
        self._one = one
        self._many = many
        self._direct = 0
        self._pending: list[Completion] = []
        self._flusher: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        """True while a completion is being written: new ones should :meth:`submit`."""
        return self._direct > 0 or self._flusher is not None

    @contextlib.contextmanager
    def direct(self) -> Iterator[None]:
        """Mark a completion written directly as in flight."""
        self._direct += 1
        try:
            yield
        finally:
            self._direct -= 1

    async def submit(self, job_id: UUID, stats: str, fence: Fence) -> bool:
        """Queue a completion for the next batch; True when its compare-and-set matched."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append(Completion(job_id, stats, fence, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def close(self) -> None:
        """Wait until every queued completion has been written."""
        if self._flusher is not None:
            await asyncio.wait((self._flusher,))

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch = self._next_batch()
                if batch:
                    await self._write(batch)
        finally:
            self._flusher = None
            for completion in self._pending:
                _fail(completion, BackendUnavailableError("the queue stopped writing completions"))
            self._pending = []

    def _next_batch(self) -> list[Completion]:
        """Every live queued completion, but at most one per job (the others wait)."""
        batch: list[Completion] = []
        later: list[Completion] = []
        jobs: set[UUID] = set()
        for completion in self._pending:
            if completion.future.done():
                continue  # the caller gave up before anything was sent
            if completion.job_id in jobs:
                later.append(completion)
            else:
                jobs.add(completion.job_id)
                batch.append(completion)
        self._pending = later
        return batch

    async def _write(self, batch: list[Completion]) -> None:
        try:
            if len(batch) == 1:
                (only,) = batch
                alone = await self._one(only.job_id, only.stats, only.fence)
                matched = {only.job_id} if alone else set()
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
        for completion in batch:
            if not completion.future.done():
                completion.future.set_result(completion.job_id in matched)

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
