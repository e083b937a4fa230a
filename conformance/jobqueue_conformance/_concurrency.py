"""Concurrent claimers, as asyncio tasks on separate handles and as separate processes."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import queue as stdlib_queue
import threading
from uuid import UUID

from jobqueue import (
    Completion,
    CreateJobRequest,
    InvalidTransitionError,
    Job,
    JobQueue,
    JobStatus,
)

from ._harness import ConnectSpec, Harness
from ._history import Event, check_history
from ._processes import claim_in_child

__all__ = [
    "concurrent_claimers_in_separate_processes",
    "concurrent_claimers_on_separate_handles",
]

TASK_CLAIMERS = 8
TASK_JOBS = 120
LATE_BATCHES = 3
LATE_BATCH_SIZE = 20
PROCESSES = 3
PROCESS_JOBS = 150
TIME_LIMIT = 120.0


def _requests(prefix: str, n: int) -> list[CreateJobRequest]:
    return [CreateJobRequest(kind=f"{prefix}{i}", priority=i % 3) for i in range(n)]


async def _claimers_on_handles(h: Harness) -> None:
    producer = await h.fresh()
    handles = [await h.open() for _ in range(TASK_CLAIMERS)]
    created: set[UUID] = {j.id for j in await producer.create_jobs(_requests("j", TASK_JOBS))}
    history: list[Event] = []
    released_once: set[UUID] = set()
    start, stop = asyncio.Event(), asyncio.Event()
    producing = True
    in_hand = 0

    async def claimer(n: int, queue: JobQueue) -> None:
        nonlocal in_hand
        worker = f"claimer-{n}"
        batch = 1 + n % 4
        await start.wait()
        while not stop.is_set():
            jobs = await queue.claim_jobs(worker, batch)
            in_hand += len(jobs)
            history.extend(Event(worker, "claim", j.id, j.attempts) for j in jobs)
            if not jobs:
                if not producing and in_hand == 0:
                    stop.set()
                await asyncio.sleep(0.002)
                continue
            together: list[Job] = []
            for job in jobs:
                if job.id not in released_once and job.id.int % 4 == 0:
                    released_once.add(job.id)
                    history.append(Event(worker, "release", job.id, job.attempts))
                    await queue.release_job(job.id)
                    in_hand -= 1
                elif n % 2:
                    together.append(job)
                else:
                    history.append(Event(worker, "complete", job.id, job.attempts))
                    try:
                        await queue.complete_job(
                            job.id, {"by": worker}, worker_id=worker, attempt=job.attempts
                        )
                    except InvalidTransitionError:
                        history.append(Event(worker, "refused", job.id, job.attempts))
                    in_hand -= 1
            if together:
                # Odd claimers complete the rest of their batch with one call.
                history.extend(Event(worker, "complete", j.id, j.attempts) for j in together)
                refusals = await queue.complete_jobs(
                    Completion(j.id, {"by": worker}, worker, j.attempts) for j in together
                )
                for job, refusal in zip(together, refusals, strict=True):
                    if refusal is not None:
                        history.append(Event(worker, "refused", job.id, job.attempts))
                in_hand -= len(together)

    async def produce_late() -> None:
        nonlocal producing
        await start.wait()
        for b in range(LATE_BATCHES):
            await asyncio.sleep(0.01)
            late = await producer.create_jobs(_requests(f"late{b}-", LATE_BATCH_SIZE))
            created.update(j.id for j in late)
        producing = False

    tasks = [asyncio.create_task(claimer(n, q)) for n, q in enumerate(handles)]
    tasks.append(asyncio.create_task(produce_late()))
    start.set()
    try:
        async with asyncio.timeout(TIME_LIMIT):
            await asyncio.gather(*tasks)
    except TimeoutError:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    # Jobs still pending (a claimer stopped early) are claimable and must not count as lost.
    leftovers = await producer.claim_jobs("drain", 100_000)
    for job in leftovers:
        history.append(Event("drain", "claim", job.id, job.attempts))
        history.append(Event("drain", "complete", job.id, job.attempts))
        await producer.complete_job(job.id, {}, worker_id="drain", attempt=job.attempts)
    report = check_history(created, history)
    assert report.ok, "concurrent claimers on separate handles:\n" + report.describe()
    counts = await producer.counts()
    assert counts[JobStatus.COMPLETED] == len(created), (
        f"every job was completed once, yet counts() says {counts}"
    )


async def concurrent_claimers_on_separate_handles(h: Harness) -> None:
    """8 claimer tasks on separate handles, released at once, with releases and late jobs,
    half completing one job per call, half a batch per call: no job lost, none held by two
    claimers at once, none unexpected."""
    await _claimers_on_handles(h)


def concurrent_claimers_in_separate_processes(h: Harness) -> None:
    """With `concurrent_processes`: 3 processes claim from one queue at once;
    every job is claimed and completed exactly once."""
    spec = h.opener
    assert isinstance(spec, ConnectSpec), (
        "a backend that claims concurrent_processes must return a ConnectSpec from open_queue, "
        "so that other processes can open the same queue"
    )

    async def setup() -> set[UUID]:
        queue = await h.fresh()
        return {j.id for j in await queue.create_jobs(_requests("p", PROCESS_JOBS))}

    created = h.run(setup())
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES + 1, timeout=60)
    results = context.Queue()
    children = [
        context.Process(
            target=claim_in_child,
            args=(spec, h.clock(), f"process-{n}", 1 + n % 3, barrier, results),
            daemon=True,
        )
        for n in range(PROCESSES)
    ]
    for child in children:
        child.start()
    history: list[Event] = []
    errors: list[str] = []
    try:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        for _ in children:
            worker, events, error = results.get(timeout=TIME_LIMIT)
            if error:
                errors.append(f"{worker}:\n{error}")
            history += [Event(worker, action, UUID(i), n) for action, i, n in events]
    except stdlib_queue.Empty:
        errors.append(f"a claimer process gave no result within {TIME_LIMIT} s")
    finally:
        for child in children:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
    assert not errors, "claimer processes failed:\n" + "\n".join(errors)

    async def drain() -> None:
        queue = await h.open()
        for job in await queue.claim_jobs("drain", 100_000):
            history.append(Event("drain", "claim", job.id, job.attempts))
            history.append(Event("drain", "complete", job.id, job.attempts))
            await queue.complete_job(job.id, {})

    h.run(drain())
    report = check_history(created, history, releases=False)
    assert report.ok, "concurrent claimer processes:\n" + report.describe()
