"""jobqueue itself, through its public API and its ``Worker``, on any URL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import jobqueue
from jobqueue import CreateJobRequest, Job, JobQueue, Worker

from ._common import ENQUEUE_BATCH, Finish

NOOP = CreateJobRequest(kind="noop")


async def _noop(job: Job) -> None:
    return None


async def open_queue(url: str, options: Mapping[str, Any]) -> JobQueue:
    return await jobqueue.connect(url, **options)


async def preload(queue: JobQueue, count: int) -> None:
    done = 0
    while done < count:
        size = min(ENQUEUE_BATCH, count - done)
        await queue.create_jobs([NOOP] * size)
        done += size


async def enqueue_single(queue: JobQueue, count: int) -> float:
    """``create_job`` ``count`` times in a row; jobs per second."""
    started = time.perf_counter()
    for _ in range(count):
        await queue.create_job(NOOP)
    return count / (time.perf_counter() - started)


async def enqueue_batch(queue: JobQueue, count: int) -> float:
    """``create_jobs`` with ENQUEUE_BATCH requests per call; jobs per second."""
    started = time.perf_counter()
    await preload(queue, count)
    return count / (time.perf_counter() - started)


async def _api_loop(queue: JobQueue, worker_id: str) -> int:
    done = 0
    while True:
        job = await queue.claim_job(worker_id)
        if job is None:
            return done
        await queue.complete_job(job.id, {}, worker_id=worker_id, attempt=job.attempts)
        done += 1


async def api_loop(queue: JobQueue, count: int, tasks: int) -> float:
    """``tasks`` concurrent loops of fenced ``claim_job`` + ``complete_job`` over
    ``count`` preloaded jobs; jobs per second."""
    started = time.perf_counter()
    done = await asyncio.gather(*(_api_loop(queue, f"loop-{i}") for i in range(tasks)))
    elapsed = time.perf_counter() - started
    if sum(done) != count:
        raise RuntimeError(f"API loops finished {sum(done)} jobs, expected {count}")
    return count / elapsed


async def drain(queues: list[JobQueue], count: int, concurrency: int) -> float:
    """One ``Worker`` per queue handle, each with ``concurrency`` slots, run with
    ``drain=True`` over ``count`` preloaded no-op jobs; jobs per second until the
    last handler ran."""
    finish = Finish(count)

    async def noop(job: Job) -> None:
        finish.hit()

    workers = [
        Worker(
            q,
            {"noop": noop},
            worker_id=f"bench-{i}",
            concurrency=concurrency,
            handle_signals=False,
        )
        for i, q in enumerate(queues)
    ]
    started = time.perf_counter()
    await asyncio.gather(*(w.run(drain=True) for w in workers))
    left = await queues[0].count_by_status("pending") + await queues[0].count_by_status("running")
    if left:
        raise RuntimeError(f"Worker drain left {left} jobs unfinished")
    return finish.rate(started)


async def drain_one(queue: JobQueue, concurrency: int, worker_id: str) -> None:
    """Run one ``Worker`` with ``drain=True`` until nothing is claimable."""
    worker = Worker(
        queue, {"noop": _noop}, worker_id=worker_id, concurrency=concurrency, handle_signals=False
    )
    await worker.run(drain=True)


async def latency(queue: JobQueue, count: int, interval: float) -> list[tuple[float, float]]:
    """Enqueue-to-start seconds of ``count`` jobs created every ``interval`` seconds
    while one idle ``Worker`` waits (woken by the backend's notifications if any)."""
    enqueued_at: dict[int, float] = {}
    returned_at: dict[int, float] = {}
    started_at: dict[int, float] = {}
    all_started = asyncio.Event()

    async def record(job: Job) -> None:
        started_at[job.payload["n"]] = time.perf_counter()
        if len(started_at) == count:
            all_started.set()

    worker = Worker(queue, {"probe": record}, concurrency=10, handle_signals=False)
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.5)
        for n in range(count):
            enqueued_at[n] = time.perf_counter()
            await queue.create_job(CreateJobRequest(kind="probe", payload={"n": n}))
            returned_at[n] = time.perf_counter()
            await asyncio.sleep(interval)
        await asyncio.wait_for(all_started.wait(), 30)
    finally:
        worker.stop()
        await running
    return [(started_at[n] - enqueued_at[n], started_at[n] - returned_at[n]) for n in enqueued_at]


async def claim_latency(queue: JobQueue, probes: int) -> list[float]:
    """Seconds one ``claim_job`` takes when exactly one job is claimable, ``probes`` times."""
    samples = []
    for _ in range(probes):
        await queue.create_job(NOOP)
        started = time.perf_counter()
        job = await queue.claim_job("probe")
        samples.append(time.perf_counter() - started)
        assert job is not None
        await queue.complete_job(job.id, {})
    return samples
