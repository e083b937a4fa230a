"""The worker's completions, written many per call of ``JobQueue.complete_jobs``.

Jobs whose handlers return in one turn of the event loop, or while the
previous call is in flight, are completed together, one call at a time. Each
completion is still fenced and applied on its own by the queue, so batching
changes how many round trips a worker makes, not what it records.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from ._errors import BackendUnavailableError, InvalidRequestError
from ._models import Completion, Job
from ._queue import JobQueue, Refusal

__all__ = ["MAX_BACKOFF", "CompletionWriter", "Pending", "write_backoff"]

logger = logging.getLogger("jobqueue.worker")

MAX_BACKOFF = 30.0
"""Longest pause between retries of a failing claim or outcome write."""


def write_backoff(failures: int) -> float:
    """Seconds to wait before writing an outcome again after ``failures`` failed tries."""
    return min(MAX_BACKOFF, 0.05 * 2.0**failures)


class Pending(Protocol):
    """A finished job waiting for its completion to be written."""

    @property
    def job(self) -> Job: ...

    @property
    def completion(self) -> Completion: ...


P = TypeVar("P", bound=Pending)


class CompletionWriter(Generic[P]):
    """Writes the completions handed to :meth:`add`, in batches, and settles each.

    ``settle(pending, reason)`` is called once per completion: with None once it
    was applied; with the refusal when the queue refused it (the job was taken
    away meanwhile); with ``BackendUnavailableError`` when the queue was closed
    before it could be written; with ``CancelledError`` when the writing was
    cancelled. ``alone(pending)`` takes over the completions of a call the queue
    rejected as a whole (a value it cannot store), to write them one by one. A
    call that fails otherwise is retried with backoff.
    """

    def __init__(
        self,
        queue: JobQueue,
        worker_id: str,
        settle: Callable[[P, BaseException | None], None],
        alone: Callable[[P], Awaitable[None]],
    ) -> None:
        self._queue = queue
        self._worker_id = worker_id
        self._settle = settle
        self._alone = alone
        self._waiting: list[P] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The task writing completions, while there are any to write."""
        return self._task

    def add(self, pending: P) -> None:
        """Write ``pending``'s completion with the next call."""
        self._waiting.append(pending)
        if self._task is None:
            # Starts on the next turn of the loop: the jobs finishing in this one join it.
            self._task = asyncio.get_running_loop().create_task(self._write_all())

    async def _write_all(self) -> None:
        batch: list[P] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._write(batch)
                batch = []
        except asyncio.CancelledError as exc:
            left, self._waiting = [*batch, *self._waiting], []
            for pending in left:
                self._settle(pending, exc)
            raise
        finally:
            self._task = None

    async def _write(self, batch: list[P]) -> None:
        completions = [pending.completion for pending in batch]
        failures = 0
        while True:
            try:
                refusals: list[Refusal | None] = await self._queue.complete_jobs(completions)
            except InvalidRequestError:
                # Taken out of the batch first: if this task is cancelled meanwhile,
                # only those not handed over yet are settled here.
                while batch:
                    await self._alone(batch.pop(0))
                return
            except Exception:
                if self._queue.closed:
                    for pending in batch:
                        self._settle(pending, BackendUnavailableError("the queue is closed"))
                    return
                failures += 1
                delay = write_backoff(failures)
                logger.warning(
                    "worker %s: recording %d completions failed; trying again in %.2fs",
                    self._worker_id,
                    len(batch),
                    delay,
                    exc_info=True,
                    extra={"worker_id": self._worker_id},
                )
                await asyncio.sleep(delay)
                continue
            for pending, refusal in zip(batch, refusals, strict=True):
                self._settle(pending, refusal)
            return
