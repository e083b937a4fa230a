"""The in-memory hot path: one task claiming and completing jobs as fast as it can."""

from __future__ import annotations

import time

from . import ours


async def claim_complete(count: int) -> float:
    """``claim_job`` + ``complete_job`` on ``memory://`` over ``count`` jobs; per second."""
    queue = await ours.open_queue("memory://", {})
    await ours.preload(queue, count)
    started = time.perf_counter()
    done = 0
    while True:
        job = await queue.claim_job("loop")
        if job is None:
            break
        await queue.complete_job(job.id, {})
        done += 1
    elapsed = time.perf_counter() - started
    await queue.close()
    if done != count:
        raise RuntimeError(f"memory loop finished {done} jobs, expected {count}")
    return count / elapsed
