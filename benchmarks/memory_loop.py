"""The in-memory hot path: one task claiming and completing jobs as fast as it can."""

from __future__ import annotations

import time
from collections.abc import Callable

from . import ours


async def claim_complete(count: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """``claim_job`` + ``complete_job`` on ``memory://`` over ``count`` jobs; per second
    of ``clock`` (wall time by default; ``time.process_time`` gives this process's CPU
    time, which other processes on a loaded machine disturb less)."""
    queue = await ours.open_queue("memory://", {})
    await ours.preload(queue, count)
    started = clock()
    done = 0
    while True:
        job = await queue.claim_job("loop")
        if job is None:
            break
        await queue.complete_job(job.id, {})
        done += 1
    elapsed = clock() - started
    await queue.close()
    if done != count:
        raise RuntimeError(f"memory loop finished {done} jobs, expected {count}")
    return count / elapsed
