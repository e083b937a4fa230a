"""The body of a claimer process (importable, so ``spawn`` can start it)."""

from __future__ import annotations

import asyncio
import traceback
from datetime import datetime
from typing import Any

from jobqueue import InvalidTransitionError
from jobqueue.testing import FakeClock

from ._harness import ConnectSpec

__all__ = ["claim_in_child"]

Record = tuple[str, str, int]


async def _claim_until_empty(
    spec: ConnectSpec, now: datetime, worker: str, batch: int, barrier: Any
) -> list[Record]:
    events: list[Record] = []
    async with await spec(FakeClock(now)) as queue:
        await asyncio.to_thread(barrier.wait)
        while jobs := await queue.claim_jobs(worker, batch):
            events += [("claim", str(job.id), job.attempts) for job in jobs]
            for job in jobs:
                events.append(("complete", str(job.id), job.attempts))
                try:
                    await queue.complete_job(job.id, {}, worker_id=worker, attempt=job.attempts)
                except InvalidTransitionError:
                    events.append(("refused", str(job.id), job.attempts))
    return events


def claim_in_child(
    spec: ConnectSpec, now: datetime, worker: str, batch: int, barrier: Any, results: Any
) -> None:
    """Open the queue, wait for every sibling, claim and complete until nothing is left.

    Puts ``(worker, events, error_text_or_None)`` on ``results``.
    """
    try:
        events = asyncio.run(_claim_until_empty(spec, now, worker, batch, barrier))
    except BaseException:
        barrier.abort()
        results.put((worker, [], traceback.format_exc()))
    else:
        results.put((worker, events, None))
