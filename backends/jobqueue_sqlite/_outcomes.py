"""Outcome writes (complete, fail, cancel) of one handle, coalesced into few statements.

An outcome arriving while none is being written is written at once by a
statement of its own kind, on the event loop's thread when it can be. Outcomes
that arrive while an earlier one is being written (on aiosqlite's thread:
waiting for the write lock, a transaction or a checkpoint) are written together
by the next statement: one compare-and-set per job inside one transaction, so
each call keeps its own guard and effect, and many tasks finishing jobs at
once share the cost of one trip to the database.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from jobqueue.backend import Fence

from . import _sql as sql
from ._db import LOOP_ROWS, Database, is_busy

__all__ = ["Change", "OutcomeWriter"]

COMPLETE = "complete"
FAIL = "fail"
RETRY = "retry"
CANCEL = "cancel"


@dataclass(eq=False, slots=True)
class Change:
    """One outcome call: what it writes and the guard it writes under."""

    op: str
    job_id: str
    now: int
    fence: Fence
    stats: str | None = None
    error: str | None = None
    retry_at: int | None = None
    done: asyncio.Future[bool] = field(init=False)

    def statement(self) -> tuple[str, dict[str, Any]]:
        """The statement of this change's own kind and its parameters."""
        params: dict[str, Any] = {"id": self.job_id, "now": self.now}
        if self.fence.worker_id is not None:
            params["fence_worker"] = self.fence.worker_id
        if self.fence.attempt is not None:
            params["fence_attempt"] = self.fence.attempt
        if self.op == COMPLETE:
            params["stats"] = self.stats
            return sql.complete(self.fence), params
        if self.op == CANCEL:
            if self.stats is not None:
                params["stats"] = self.stats
            return sql.cancel(self.fence, self.stats is not None), params
        params["error"] = self.error
        if self.op == RETRY:
            params["retry_at"] = self.retry_at
        return sql.fail(self.fence, self.op == RETRY), params

    @property
    def batchable(self) -> bool:
        """False when a text of this change would not survive the batch's JSON."""
        return "\x00" not in (self.error or "") and "\x00" not in (self.fence.worker_id or "")

    def row(self) -> list[Any]:
        """This change as a row of the batch statement's JSON parameter."""
        return [
            self.op,
            self.job_id,
            self.stats,
            self.error,
            self.retry_at,
            self.now,
            self.fence.worker_id,
            self.fence.attempt,
        ]


class OutcomeWriter:
    """Writes the changes handed to :meth:`apply`, coalescing those that wait.

    Writing happens in a task of its own, so a caller that is cancelled never
    leaves other callers' changes unwritten or unanswered.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._waiting: list[Change] = []
        self._writer: asyncio.Task[None] | None = None

    async def apply(self, change: Change) -> bool:
        """Write ``change``; True when its guard matched and the job changed.

        When no write is in progress and the statement can run on the event
        loop's thread at once, it is written there, without a task.
        """
        if self._writer is None:
            statement, params = change.statement()
            rows = self._db.run_on_loop(statement, params)
            if rows is not None:
                return bool(rows)
        change.done = asyncio.get_running_loop().create_future()
        self._waiting.append(change)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all())
        return await change.done

    async def apply_all(self, changes: list[Change]) -> list[bool]:
        """Write ``changes`` (distinct jobs); for each, True when its guard matched.

        When no write is in progress they go in one statement, on the event
        loop's thread when it can be; else they join the waiting changes.
        """
        if self._writer is None and len(changes) <= LOOP_ROWS:
            if len(changes) == 1:
                return [await self.apply(changes[0])]
            if all(change.batchable for change in changes):
                batch = {"batch": sql.dump_json([change.row() for change in changes])}
                rows = self._db.run_on_loop(sql.OUTCOMES, batch)
                if rows is not None:
                    changed = {row[0] for row in rows}
                    return [change.job_id in changed for change in changes]
        loop = asyncio.get_running_loop()
        for change in changes:
            change.done = loop.create_future()
        self._waiting.extend(changes)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all())
        # gather, not one await after another: every answer's exception is retrieved.
        return list(await asyncio.gather(*(change.done for change in changes)))

    async def wait_idle(self) -> None:
        """Return once every change handed over so far is written."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    async def _write_all(self) -> None:
        batch: list[Change] = []
        try:
            while self._waiting:
                batch, self._waiting = _next_batch(self._waiting)
                await self._write(batch)
        except BaseException:
            for change in [*batch, *self._waiting]:
                change.done.cancel()
            self._waiting = []
            raise
        finally:
            self._writer = None

    async def _write(self, batch: list[Change]) -> None:
        try:
            if len(batch) == 1:
                statement, params = batch[0].statement()
                changed = {batch[0].job_id} if await self._db.fetch(statement, params) else set()
            else:
                rows = [change.row() for change in batch]
                run = self._db.for_rows(len(rows))
                found = await run(sql.OUTCOMES, {"batch": sql.dump_json(rows)})
                changed = {row[0] for row in found}
        except Exception as exc:
            if len(batch) == 1 or is_busy(exc.__cause__ or exc):
                for change in batch:
                    _answer(change, exc)
                return
            # Write them one by one, so that only a change at fault fails.
            for change in batch:
                await self._write([change])
            return
        for change in batch:
            _answer(change, change.job_id in changed)


def _answer(change: Change, result: bool | Exception) -> None:
    if change.done.done():
        return
    if isinstance(result, Exception):
        change.done.set_exception(result)
    else:
        change.done.set_result(result)


def _next_batch(changes: list[Change]) -> tuple[list[Change], list[Change]]:
    """Split ``changes`` into the next batch and the rest, keeping their order.

    A batch changes each job once, and a change that cannot travel in a batch
    goes alone.
    """
    seen: set[str] = set()
    batch: list[Change] = []
    rest: list[Change] = []
    for change in changes:
        alone = batch and (not change.batchable or not batch[0].batchable)
        if alone or change.job_id in seen:
            rest.append(change)
        else:
            seen.add(change.job_id)
            batch.append(change)
    return batch, rest
