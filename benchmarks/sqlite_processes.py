"""Several processes, each with one ``Worker``, draining one SQLite file together."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Any

from . import ours


def _process_main(url: str, concurrency: int, index: int, ready: Any, results: Any) -> None:
    async def run() -> None:
        queue = await ours.open_queue(url, {})
        try:
            ready.wait()
            await ours.drain_one(queue, concurrency, f"proc-{index}")
        finally:
            await queue.close()

    asyncio.run(run())
    results.put(index)


async def drain(url: str, count: int, processes: int, concurrency: int) -> float:
    """Wall time from all processes being connected until every one has drained; jobs/s."""
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(processes + 1)
    results = context.Queue()
    procs = [
        context.Process(target=_process_main, args=(url, concurrency, i, ready, results))
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    await asyncio.to_thread(ready.wait)
    started = time.perf_counter()
    for _ in procs:
        await asyncio.to_thread(results.get)
    elapsed = time.perf_counter() - started
    for p in procs:
        await asyncio.to_thread(p.join)
    queue = await ours.open_queue(url, {})
    try:
        done = await queue.count_by_status("completed")
    finally:
        await queue.close()
    if done != count:
        raise RuntimeError(f"{processes} processes completed {done} jobs, expected {count}")
    return count / elapsed
