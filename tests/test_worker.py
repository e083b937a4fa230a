"""The worker runtime on memory://: handlers, retries, leases, cancellation, shutdown, hooks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

import jobqueue
from jobqueue import CreateJobRequest, Job, JobStatus, Worker
from jobqueue.testing import FakeClock

LEASE = timedelta(seconds=60)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def queue(clock: FakeClock) -> AsyncIterator[jobqueue.JobQueue]:
    async with jobqueue.connect("memory://", clock=clock, lease=LEASE) as q:
        yield q


def make_worker(queue: jobqueue.JobQueue, handlers: Mapping[str, Any], **options: Any) -> Worker:
    options.setdefault("handle_signals", False)
    options.setdefault("poll_interval", 0.01)
    return Worker(queue, handlers, **options)


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0
) -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.005)


async def status_of(queue: jobqueue.JobQueue, job_id: UUID) -> JobStatus:
    job = await queue.get_job(job_id)
    assert job is not None
    return job.status


async def fetch(queue: jobqueue.JobQueue, job_id: UUID) -> Job:
    job = await queue.get_job(job_id)
    assert job is not None
    return job


class Recorder:
    """A hook plugin that records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @jobqueue.hookimpl
    def jobqueue_worker_started(self, worker: Worker) -> None:
        self.calls.append(("worker_started", {"worker": worker}))

    @jobqueue.hookimpl
    def jobqueue_worker_stopped(self, worker: Worker) -> None:
        self.calls.append(("worker_stopped", {"worker": worker}))

    @jobqueue.hookimpl
    def jobqueue_job_started(self, worker_id: str, job: Job) -> None:
        self.calls.append(("job_started", {"worker_id": worker_id, "job": job}))

    @jobqueue.hookimpl
    def jobqueue_job_finished(
        self, worker_id: str, job: Job, outcome: str, duration: float, error: BaseException | None
    ) -> None:
        self.calls.append(
            ("job_finished", {"job": job, "outcome": outcome, "duration": duration, "error": error})
        )

    def outcomes(self) -> dict[UUID, str]:
        return {c["job"].id: c["outcome"] for name, c in self.calls if name == "job_finished"}


@pytest.fixture
def recorder() -> Any:
    plugin = Recorder()
    jobqueue.register_plugin(plugin)
    yield plugin
    jobqueue.plugin_manager().unregister(plugin)


# ----------------------------------------------------------------- handlers


async def test_async_handler_return_value_becomes_stats(queue: jobqueue.JobQueue) -> None:
    """An async handler's mapping is stored as stats; None stores an empty dict."""
    a = await queue.create_job(CreateJobRequest(kind="count", payload={"n": 3}))
    b = await queue.create_job(CreateJobRequest(kind="nothing"))

    async def count(job: Job) -> dict[str, int]:
        return {"records": job.payload["n"] * 2}

    async def nothing(job: Job) -> None:
        return None

    await make_worker(queue, {"count": count, "nothing": nothing}).run(drain=True)
    job_a, job_b = await fetch(queue, a.id), await fetch(queue, b.id)
    assert (job_a.status, job_a.stats) == (JobStatus.COMPLETED, {"records": 6})
    assert (job_b.status, job_b.stats) == (JobStatus.COMPLETED, {})


async def test_sync_handlers_run_in_threads(queue: jobqueue.JobQueue) -> None:
    """A plain function runs outside the event loop's thread, several at once."""
    await queue.create_jobs([CreateJobRequest(kind="sync") for _ in range(4)])
    loop_thread = threading.get_ident()
    barrier = threading.Barrier(4, timeout=5)
    threads: set[int] = set()

    def sync(job: Job) -> dict[str, str]:
        threads.add(threading.get_ident())
        barrier.wait()  # only passes when four handlers run at the same time
        return {"kind": job.kind}

    await make_worker(queue, {"sync": sync}, concurrency=4).run(drain=True)
    assert await queue.count_by_status(JobStatus.COMPLETED) == 4
    assert len(threads) == 4 and loop_thread not in threads


async def test_job_without_handler_fails_at_once(queue: jobqueue.JobQueue) -> None:
    """An unknown kind fails for good on its first attempt, naming the kind."""
    job = await queue.create_job(CreateJobRequest(kind="mystery", max_attempts=5))

    async def other(job: Job) -> None:
        return None

    await make_worker(queue, {"other": other}).run(drain=True)
    failed = await fetch(queue, job.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 1
    assert failed.error is not None and "no handler for kind 'mystery'" in failed.error


@pytest.mark.parametrize(
    ("result", "message"),
    [([1, 2], "returned list"), ({"x": object()}, "invalid stats")],
)
async def test_bad_handler_result_fails_the_job(
    queue: jobqueue.JobQueue, result: object, message: str
) -> None:
    """A result that is not a JSON object fails the job without retrying it."""
    job = await queue.create_job(CreateJobRequest(kind="bad"))

    async def bad(job: Job) -> Any:
        return result

    await make_worker(queue, {"bad": bad}).run(drain=True)
    failed = await fetch(queue, job.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 1
    assert failed.error is not None and message in failed.error


async def test_only_configured_queues_are_claimed(queue: jobqueue.JobQueue) -> None:
    """queues= restricts the worker to those queue names."""
    mine = await queue.create_job(CreateJobRequest(kind="k", queue="mine"))
    theirs = await queue.create_job(CreateJobRequest(kind="k", queue="theirs"))

    async def k(job: Job) -> None:
        return None

    await make_worker(queue, {"k": k}, queues=["mine"]).run(drain=True)
    assert await status_of(queue, mine.id) is JobStatus.COMPLETED
    assert await status_of(queue, theirs.id) is JobStatus.PENDING


# ------------------------------------------------------------------ retries


async def test_retries_follow_the_policy_then_fail_for_good(
    queue: jobqueue.JobQueue, clock: FakeClock
) -> None:
    """Each failed attempt is retried at now + a jittered backoff; the last one fails the job."""
    job = await queue.create_job(CreateJobRequest(kind="flaky", max_attempts=3))
    calls: list[int] = []

    async def flaky(job: Job) -> None:
        calls.append(job.attempts)
        raise ValueError(f"boom {job.attempts}")

    policy = jobqueue.RetryPolicy(base_delay=10.0, factor=2.0, max_delay=15.0, jitter=0.5)
    worker = make_worker(queue, {"flaky": flaky}, retry=policy)

    for attempt, nominal in ((1, 10.0), (2, 15.0)):
        await worker.run(drain=True)
        retried = await fetch(queue, job.id)
        assert retried.status is JobStatus.PENDING and retried.attempts == attempt
        assert retried.worker_id is None and retried.next_retry_at is not None
        delay = (retried.next_retry_at - clock()).total_seconds()
        assert nominal * 0.5 <= delay <= nominal
        assert retried.error is not None and f"ValueError: boom {attempt}" in retried.error
        assert "Traceback (most recent call last)" in retried.error

        await worker.run(drain=True)  # not due yet: nothing runs
        assert calls == list(range(1, attempt + 1))
        clock.set(retried.next_retry_at)

    await worker.run(drain=True)
    failed = await fetch(queue, job.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 3
    assert failed.error is not None and failed.error.endswith("ValueError: boom 3")
    assert failed.finished_at == clock() and failed.next_retry_at is not None
    assert calls == [1, 2, 3]


@pytest.mark.parametrize("exception", [KeyError("k"), jobqueue.Permanent("give up")])
async def test_non_retryable_exceptions_fail_on_first_attempt(
    queue: jobqueue.JobQueue, exception: Exception
) -> None:
    """A non_retryable type or Permanent fails the job with attempts left."""
    job = await queue.create_job(CreateJobRequest(kind="k", max_attempts=5))

    async def k(job: Job) -> None:
        raise exception

    policy = jobqueue.RetryPolicy(non_retryable=(LookupError,))
    await make_worker(queue, {"k": k}, retry=policy).run(drain=True)
    failed = await fetch(queue, job.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 1
    assert failed.error is not None and type(exception).__name__ in failed.error


async def test_stored_error_is_bounded(queue: jobqueue.JobQueue) -> None:
    """A huge exception message is stored cut to max_error_chars, keeping its end."""
    job = await queue.create_job(CreateJobRequest(kind="loud", max_attempts=1))

    async def loud(job: Job) -> None:
        raise RuntimeError("x" * 100_000 + " END")

    await make_worker(queue, {"loud": loud}, max_error_chars=2000).run(drain=True)
    failed = await fetch(queue, job.id)
    assert failed.error is not None and len(failed.error) <= 2000
    assert failed.error.startswith("Traceback") and failed.error.endswith(" END")


async def test_job_timeout_counts_as_a_failed_attempt(
    queue: jobqueue.JobQueue, clock: FakeClock
) -> None:
    """A handler exceeding job_timeout is cancelled; the attempt fails and is retried."""
    job = await queue.create_job(CreateJobRequest(kind="slow", max_attempts=2))
    cancelled = asyncio.Event()

    async def slow(job: Job) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    policy = jobqueue.RetryPolicy(base_delay=1.0, jitter=0.0)
    worker = make_worker(queue, {"slow": slow}, job_timeout=0.05, retry=policy)
    await worker.run(drain=True)
    retried = await fetch(queue, job.id)
    assert cancelled.is_set()
    assert retried.status is JobStatus.PENDING and retried.attempts == 1
    assert retried.error is not None and "did not finish within 0.05 seconds" in retried.error

    clock.advance(1.0)
    await worker.run(drain=True)
    assert await status_of(queue, job.id) is JobStatus.FAILED


async def test_job_timeout_applies_to_sync_handlers(queue: jobqueue.JobQueue) -> None:
    """A sync handler over its timeout fails the attempt (its thread cannot be stopped)."""
    job = await queue.create_job(CreateJobRequest(kind="slow", max_attempts=1))
    release = threading.Event()

    def slow(job: Job) -> None:
        release.wait(10)

    try:
        await make_worker(queue, {"slow": slow}, job_timeout=0.05).run(drain=True)
    finally:
        release.set()
    failed = await fetch(queue, job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None and "did not finish within" in failed.error


async def test_handler_raising_timeout_error_itself_is_an_ordinary_failure(
    queue: jobqueue.JobQueue,
) -> None:
    """A TimeoutError from the handler's own code is reported as it is, not as a job timeout."""
    job = await queue.create_job(CreateJobRequest(kind="t", max_attempts=1))

    async def t(job: Job) -> None:
        raise TimeoutError("upstream took too long")

    await make_worker(queue, {"t": t}, job_timeout=30).run(drain=True)
    failed = await fetch(queue, job.id)
    assert failed.error is not None and "upstream took too long" in failed.error


async def test_cancelled_error_from_the_handler_itself_fails_the_attempt(
    queue: jobqueue.JobQueue,
) -> None:
    """A CancelledError escaping the handler's own awaits (not the worker cancelling it)
    is a failed attempt, so the job does not stay running."""
    job = await queue.create_job(CreateJobRequest(kind="c"))

    async def c(job: Job) -> None:
        inner = asyncio.get_running_loop().create_future()
        inner.cancel()
        await inner

    await asyncio.wait_for(make_worker(queue, {"c": c}).run(drain=True), 5)
    retried = await fetch(queue, job.id)
    assert retried.status is JobStatus.PENDING and retried.attempts == 1
    assert retried.error is not None and "CancelledError" in retried.error


# --------------------------------------------------------------- concurrency


async def test_never_more_than_concurrency_handlers_at_once(queue: jobqueue.JobQueue) -> None:
    """With 40 jobs and concurrency 4, exactly 4 handlers run at the peak, all jobs complete."""
    await queue.create_jobs([CreateJobRequest(kind="k") for _ in range(40)])
    active = peak = 0

    async def k(job: Job) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.002)
        active -= 1

    await make_worker(queue, {"k": k}, concurrency=4).run(drain=True)
    assert peak == 4
    assert await queue.count_by_status(JobStatus.COMPLETED) == 40


async def test_claims_ask_for_the_free_slots(queue: jobqueue.JobQueue) -> None:
    """Claims are batched: the first claim asks for every slot, later ones for those freed."""
    await queue.create_jobs([CreateJobRequest(kind="k") for _ in range(10)])
    limits: list[int] = []
    original = queue.claim_jobs

    async def spy(worker_id: str, limit: int, **kw: Any) -> list[Job]:
        limits.append(limit)
        return await original(worker_id, limit, **kw)

    queue.claim_jobs = spy  # type: ignore[method-assign]

    async def k(job: Job) -> None:
        return None

    await make_worker(queue, {"k": k}, concurrency=4).run(drain=True)
    assert limits[0] == 4 and all(1 <= n <= 4 for n in limits)
    assert await queue.count_by_status(JobStatus.COMPLETED) == 10


async def test_claimed_handlers_start_before_the_next_claim(queue: jobqueue.JobQueue) -> None:
    """A claim that leaves slots free is followed by another at once; the jobs it
    returned start first, so the next claim's round trip never delays them."""
    await queue.create_job(CreateJobRequest(kind="k"))
    claims = 0
    original = queue.claim_jobs

    async def counting(worker_id: str, limit: int, **kw: Any) -> list[Job]:
        nonlocal claims
        claims += 1
        return await original(worker_id, limit, **kw)

    queue.claim_jobs = counting  # type: ignore[method-assign]
    claims_when_started: list[int] = []

    async def k(job: Job) -> None:
        claims_when_started.append(claims)

    await make_worker(queue, {"k": k}, concurrency=4).run(drain=True)
    assert claims_when_started == [1]


async def test_claiming_overlaps_recording_up_to_twice_concurrency(
    queue: jobqueue.JobQueue,
) -> None:
    """While outcomes are being written, the freed slots are claimed again, but the worker
    never holds more than 2 x concurrency jobs; nothing is lost once the writes go through."""
    await queue.create_jobs([CreateJobRequest(kind="k") for _ in range(20)])
    original = queue.complete_jobs
    writes_may_finish = asyncio.Event()

    async def slow_complete(*args: Any, **kwargs: Any) -> Any:
        await writes_may_finish.wait()
        return await original(*args, **kwargs)

    queue.complete_jobs = slow_complete  # type: ignore[method-assign]
    handled: list[UUID] = []

    async def k(job: Job) -> None:
        handled.append(job.id)

    running = asyncio.create_task(make_worker(queue, {"k": k}, concurrency=3).run(drain=True))
    await wait_until(lambda: len(handled) == 6)
    await asyncio.sleep(0.05)
    assert len(handled) == 6
    assert await queue.count_by_status(JobStatus.RUNNING) == 6
    writes_may_finish.set()
    await asyncio.wait_for(running, 5)
    assert len(handled) == len(set(handled)) == 20
    assert await queue.count_by_status(JobStatus.COMPLETED) == 20


async def test_jobs_finishing_together_are_completed_with_one_fenced_call(
    queue: jobqueue.JobQueue,
) -> None:
    """Handlers returning in the same turn have their jobs completed by one call of
    complete_jobs, each completion fenced with the worker and its attempt."""
    jobs = await queue.create_jobs([CreateJobRequest(kind="k") for _ in range(10)])
    calls: list[list[jobqueue.Completion]] = []
    original = queue.complete_jobs

    async def spy(completions: Any) -> Any:
        calls.append(list(completions))
        return await original(completions)

    queue.complete_jobs = spy  # type: ignore[method-assign]

    async def k(job: Job) -> dict[str, str]:
        return {"id": str(job.id)}

    worker = make_worker(queue, {"k": k}, concurrency=10)
    await worker.run(drain=True)
    assert [len(call) for call in calls] == [10]
    assert {(c.worker_id, c.attempt) for c in calls[0]} == {(worker.worker_id, 1)}
    for job in jobs:
        stored = await fetch(queue, job.id)
        assert stored.status is JobStatus.COMPLETED and stored.stats == {"id": str(job.id)}


async def test_a_completion_refused_in_a_batch_is_dropped_and_the_others_kept(
    queue: jobqueue.JobQueue, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A job cancelled after its handler returned is refused within the batch: logged and
    reported lost; the other jobs of the batch are completed."""
    jobs = await queue.create_jobs([CreateJobRequest(kind="k") for _ in range(4)])
    original = queue.complete_jobs

    async def cancel_one_first(completions: Any) -> Any:
        await queue.cancel_job(jobs[1].id)
        return await original(completions)

    queue.complete_jobs = cancel_one_first  # type: ignore[method-assign]

    async def k(job: Job) -> None:
        return None

    with caplog.at_level(logging.WARNING, logger="jobqueue.worker"):
        await make_worker(queue, {"k": k}, concurrency=4).run(drain=True)
    assert [await status_of(queue, j.id) for j in jobs] == [
        JobStatus.COMPLETED,
        JobStatus.CANCELLED,
        JobStatus.COMPLETED,
        JobStatus.COMPLETED,
    ]
    outcomes = recorder.outcomes()
    assert [outcomes[j.id] for j in jobs] == ["completed", "lost", "completed", "completed"]
    assert any("outcome not recorded" in r.getMessage() for r in caplog.records)


async def test_a_batch_the_queue_cannot_store_is_written_job_by_job(
    queue: jobqueue.JobQueue,
) -> None:
    """When the queue rejects a batch for a value it cannot store, each job is completed
    alone: only the job at fault fails, for good, saying why."""
    jobs = await queue.create_jobs(
        [CreateJobRequest(kind="k", payload={"bad": n == 2}) for n in range(4)]
    )
    original_one = queue.complete_job

    def unstorable(stats: Any) -> bool:
        return bool(stats.get("bad"))

    async def reject_batch(completions: Any) -> Any:
        raise jobqueue.InvalidRequestError("the database cannot store this")

    async def reject_one(job_id: Any, stats: Any, **kwargs: Any) -> None:
        if unstorable(stats):
            raise jobqueue.InvalidRequestError("the database cannot store this")
        await original_one(job_id, stats, **kwargs)

    queue.complete_jobs = reject_batch  # type: ignore[method-assign]
    queue.complete_job = reject_one  # type: ignore[method-assign]

    async def k(job: Job) -> dict[str, bool]:
        return {"bad": job.payload["bad"]}

    await make_worker(queue, {"k": k}, concurrency=4).run(drain=True)
    stored = [await fetch(queue, j.id) for j in jobs]
    assert [j.status for j in stored] == [
        JobStatus.COMPLETED,
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.COMPLETED,
    ]
    assert stored[2].error is not None and "returned invalid stats" in stored[2].error


async def stop_twice_while_writing(queue: jobqueue.JobQueue, writing: asyncio.Event) -> None:
    """Run a worker of no-op handlers until ``writing`` is set, then stop it: the grace
    waits for the writing, a second stop ends it."""

    async def k(job: Job) -> None:
        return None

    worker = make_worker(queue, {"k": k}, concurrency=3, shutdown_grace=60)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(writing.wait(), 5)
    worker.stop()
    await asyncio.sleep(0.05)
    assert not task.done()  # the grace covers the writing
    worker.stop()
    await asyncio.wait_for(task, 5)


async def test_a_forced_stop_while_completing_job_by_job_finishes_each_job_once(
    queue: jobqueue.JobQueue, recorder: Recorder
) -> None:
    """Cancelled while it writes a rejected batch's completions one by one, the worker
    reports each job finished exactly once and releases the unrecorded ones."""
    jobs = await queue.create_jobs([CreateJobRequest(kind="k") for _ in range(3)])
    writing = asyncio.Event()

    async def reject_batch(completions: Any) -> Any:
        raise jobqueue.InvalidRequestError("the database cannot store this")

    async def hang(*args: Any, **kwargs: Any) -> None:
        writing.set()
        await asyncio.sleep(60)

    queue.complete_jobs = reject_batch  # type: ignore[method-assign]
    queue.complete_job = hang  # type: ignore[method-assign]
    await stop_twice_while_writing(queue, writing)
    finished = [c["job"].id for name, c in recorder.calls if name == "job_finished"]
    assert sorted(finished) == sorted(j.id for j in jobs)
    assert {recorder.outcomes()[j.id] for j in jobs} == {"released"}
    for job in jobs:
        assert await status_of(queue, job.id) is JobStatus.PENDING


async def test_a_completion_is_dropped_once_the_queue_is_closed(
    queue: jobqueue.JobQueue, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A completion that could not be written before the queue was closed is logged as an
    error and reported lost, not retried for ever."""
    job = await queue.create_job(CreateJobRequest(kind="k"))

    async def closing(completions: Any) -> Any:
        await queue.close()
        raise jobqueue.BackendUnavailableError("connection lost")

    queue.complete_jobs = closing  # type: ignore[method-assign]

    async def k(job: Job) -> None:
        return None

    with (
        caplog.at_level(logging.ERROR, logger="jobqueue.worker"),
        contextlib.suppress(jobqueue.BackendUnavailableError),
    ):
        await asyncio.wait_for(make_worker(queue, {"k": k}).run(drain=True), 5)
    assert recorder.outcomes()[job.id] == "lost"
    assert any("the queue is closed" in r.getMessage() for r in caplog.records)


async def test_completions_still_being_written_at_a_forced_stop_are_released(
    queue: jobqueue.JobQueue, recorder: Recorder
) -> None:
    """A second stop cancels the writing of completions too; those jobs are released to
    run again, as handlers cancelled at shutdown are."""
    jobs = await queue.create_jobs([CreateJobRequest(kind="k") for _ in range(3)])
    writing = asyncio.Event()

    async def hang(completions: Any) -> Any:
        writing.set()
        await asyncio.sleep(60)

    queue.complete_jobs = hang  # type: ignore[method-assign]
    await stop_twice_while_writing(queue, writing)
    for job in jobs:
        stored = await fetch(queue, job.id)
        assert stored.status is JobStatus.PENDING and stored.attempts == 0
    assert {recorder.outcomes()[j.id] for j in jobs} == {"released"}


async def test_two_workers_share_a_queue_without_running_a_job_twice() -> None:
    """Two workers on two handles of one named queue run every job exactly once."""
    async with (
        jobqueue.connect("memory://worker-share") as q1,
        jobqueue.connect("memory://worker-share") as q2,
    ):
        jobs = await q1.create_jobs([CreateJobRequest(kind="k") for _ in range(300)])
        seen: list[UUID] = []

        async def k(job: Job) -> None:
            seen.append(job.id)
            await asyncio.sleep(0)

        await asyncio.gather(
            make_worker(q1, {"k": k}, concurrency=7).run(drain=True),
            make_worker(q2, {"k": k}, concurrency=5).run(drain=True),
        )
        assert sorted(seen) == sorted(j.id for j in jobs)
        assert await q1.count_by_status(JobStatus.COMPLETED) == 300


async def test_idle_worker_wakes_for_a_new_job(queue: jobqueue.JobQueue) -> None:
    """A waiting worker picks up a job created later, well before a long poll interval."""
    done = asyncio.Event()

    async def k(job: Job) -> None:
        done.set()

    worker = make_worker(queue, {"k": k}, poll_interval=30.0)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.05)
    await queue.create_job(CreateJobRequest(kind="k"))
    await asyncio.wait_for(done.wait(), 5)
    worker.stop()
    await asyncio.wait_for(task, 5)


async def test_drain_leaves_jobs_that_are_not_due(
    queue: jobqueue.JobQueue, clock: FakeClock
) -> None:
    """drain returns when nothing is claimable, leaving future jobs pending."""
    later = await queue.create_job(CreateJobRequest(kind="k", run_at=clock() + timedelta(hours=1)))
    now = await queue.create_job(CreateJobRequest(kind="k"))

    async def k(job: Job) -> None:
        return None

    await asyncio.wait_for(make_worker(queue, {"k": k}).run(drain=True), 5)
    assert await status_of(queue, now.id) is JobStatus.COMPLETED
    assert await status_of(queue, later.id) is JobStatus.PENDING


# ------------------------------------------------------ leases, cancellation


async def test_heartbeats_keep_a_long_job_from_being_rescued(
    queue: jobqueue.JobQueue, clock: FakeClock
) -> None:
    """While its handler runs, the worker renews the lease, so rescue leaves the job alone."""
    job = await queue.create_job(CreateJobRequest(kind="long"))
    started, finish = asyncio.Event(), asyncio.Event()

    async def long(job: Job) -> dict[str, bool]:
        started.set()
        await finish.wait()
        return {"ok": True}

    worker = make_worker(queue, {"long": long}, heartbeat_interval=0.01)
    task = asyncio.create_task(worker.run(drain=True))
    await asyncio.wait_for(started.wait(), 5)
    for _ in range(3):
        clock.advance(LEASE * 0.75)
        target = clock() + LEASE
        await wait_until(lambda t=target: _lease_at_least(queue, job.id, t))  # type: ignore[misc]
        assert await queue.rescue_expired_jobs() == 0
    finish.set()
    await asyncio.wait_for(task, 5)
    assert (await fetch(queue, job.id)).stats == {"ok": True}


async def _lease_at_least(queue: jobqueue.JobQueue, job_id: UUID, target: Any) -> bool:
    job = await fetch(queue, job_id)
    return job.lease_expires_at is not None and job.lease_expires_at >= target


async def test_cancelling_a_running_job_stops_its_handler(
    queue: jobqueue.JobQueue, recorder: Recorder
) -> None:
    """cancel_job from outside cancels the handler; the worker records nothing for it."""
    job = await queue.create_job(CreateJobRequest(kind="long"))
    started, stopped = asyncio.Event(), asyncio.Event()
    writes: list[str] = []

    async def long(job: Job) -> dict[str, str]:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            stopped.set()
        return {"by": "handler"}

    for name in ("complete_job", "complete_jobs", "fail_job", "cancel_job"):
        _spy_writes(queue, name, writes)
    worker = make_worker(queue, {"long": long}, heartbeat_interval=0.01)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    await queue.cancel_job(job.id, {"partial": 1})
    await asyncio.wait_for(stopped.wait(), 5)
    await wait_until(lambda: job.id in recorder.outcomes())
    worker.stop()
    await asyncio.wait_for(task, 5)

    cancelled = await fetch(queue, job.id)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.stats == {"partial": 1}
    assert writes == ["cancel_job"]  # the outside call only
    assert recorder.outcomes()[job.id] == "lost"


def _spy_writes(queue: jobqueue.JobQueue, name: str, writes: list[str]) -> None:
    original = getattr(queue, name)

    async def spy(*args: Any, **kwargs: Any) -> Any:
        writes.append(name)
        return await original(*args, **kwargs)

    setattr(queue, name, spy)


async def test_handler_ignoring_cancellation_still_records_nothing(
    queue: jobqueue.JobQueue, recorder: Recorder
) -> None:
    """A handler that swallows the cancellation and returns has its result dropped."""
    job = await queue.create_job(CreateJobRequest(kind="stubborn"))
    started, returned = asyncio.Event(), asyncio.Event()

    async def stubborn(job: Job) -> dict[str, str]:
        started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(60)
        returned.set()
        return {"by": "stubborn"}

    worker = make_worker(queue, {"stubborn": stubborn}, heartbeat_interval=0.01)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    await queue.cancel_job(job.id)
    await asyncio.wait_for(returned.wait(), 5)
    await wait_until(lambda: job.id in recorder.outcomes())
    worker.stop()
    await asyncio.wait_for(task, 5)
    cancelled = await fetch(queue, job.id)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.stats is None
    assert recorder.outcomes()[job.id] == "lost"


@pytest.mark.parametrize("zombie_result", ["return", "raise"])
async def test_zombie_cannot_record_its_result(
    clock: FakeClock, recorder: Recorder, zombie_result: str
) -> None:
    """A worker paused past its lease finds its job rescued and completed by another
    worker; its late result (or failure) is refused and the second result stands."""
    async with (
        jobqueue.connect("memory://zombie-" + zombie_result, clock=clock, lease=LEASE) as qa,
        jobqueue.connect("memory://zombie-" + zombie_result, clock=clock, lease=LEASE) as qb,
    ):
        job = await qa.create_job(CreateJobRequest(kind="work", max_attempts=3))
        paused, resume = asyncio.Event(), asyncio.Event()

        async def zombie(job: Job) -> dict[str, str]:
            paused.set()
            await resume.wait()
            if zombie_result == "raise":
                raise RuntimeError("late failure")
            return {"by": "zombie"}

        async def healthy(job: Job) -> dict[str, str]:
            return {"by": "healthy"}

        # Heartbeats every hour: the zombie never renews its lease within the test.
        a = make_worker(qa, {"work": zombie}, worker_id="zombie", heartbeat_interval=3600)
        a_task = asyncio.create_task(a.run())
        await asyncio.wait_for(paused.wait(), 5)

        clock.advance(LEASE + timedelta(seconds=1))
        b = make_worker(qb, {"work": healthy}, worker_id="healthy")
        await b.run(drain=True)  # rescues the expired job at start, then runs it
        done = await fetch(qb, job.id)
        assert (done.status, done.stats, done.worker_id) == (
            JobStatus.COMPLETED,
            {"by": "healthy"},
            "healthy",
        )
        assert done.attempts == 2 and done.error == "lease expired"

        resume.set()
        await wait_until(lambda: job.id in recorder.outcomes() and len(recorder.outcomes()) == 1)
        await wait_until(lambda: _finished_count(recorder) == 2)
        a.stop()
        await asyncio.wait_for(a_task, 5)
        assert await fetch(qb, job.id) == done
        outcomes = [c["outcome"] for n, c in recorder.calls if n == "job_finished"]
        assert sorted(outcomes) == ["completed", "lost"]


def _finished_count(recorder: Recorder) -> int:
    return sum(1 for name, _ in recorder.calls if name == "job_finished")


async def test_rescued_job_is_cancelled_at_the_next_heartbeat(
    clock: FakeClock, recorder: Recorder
) -> None:
    """Once rescued, a job is missing from the heartbeat's answer and its handler stops."""
    async with (
        jobqueue.connect("memory://rescued", clock=clock, lease=LEASE) as qa,
        jobqueue.connect("memory://rescued", clock=clock, lease=LEASE) as qb,
    ):
        # One attempt only: the rescue fails the job, so nobody claims it again.
        job = await qa.create_job(CreateJobRequest(kind="work", max_attempts=1))
        started, stopped = asyncio.Event(), asyncio.Event()
        beat = asyncio.Event()

        async def work(job: Job) -> None:
            started.set()
            try:
                await asyncio.sleep(60)
            finally:
                stopped.set()

        worker = make_worker(qa, {"work": work}, heartbeat_interval=0.01)
        original = qa.heartbeat

        async def gated_heartbeat(worker_id: str) -> set[UUID]:
            await beat.wait()  # a stalled connection: no renewal until the test allows it
            return await original(worker_id)

        qa.heartbeat = gated_heartbeat  # type: ignore[method-assign]
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(started.wait(), 5)
        clock.advance(LEASE)
        assert await qb.rescue_expired_jobs() == 1
        beat.set()
        await asyncio.wait_for(stopped.wait(), 5)
        worker.stop()
        await asyncio.wait_for(task, 5)
        rescued = await fetch(qb, job.id)
        assert rescued.status is JobStatus.FAILED and rescued.error == "lease expired"
        assert recorder.outcomes()[job.id] == "lost"


async def test_reclaiming_its_own_rescued_job_stops_the_stale_handler(
    queue: jobqueue.JobQueue, clock: FakeClock, recorder: Recorder
) -> None:
    """If a worker claims again a job rescued from under it, the old attempt's handler is
    cancelled and only the new attempt's result is recorded."""
    job = await queue.create_job(CreateJobRequest(kind="work"))
    first_started, first_stopped = asyncio.Event(), asyncio.Event()

    async def work(job: Job) -> dict[str, int]:
        if job.attempts == 1:
            first_started.set()
            try:
                await asyncio.sleep(60)
            finally:
                first_stopped.set()
        return {"attempt": job.attempts}

    worker = make_worker(queue, {"work": work}, heartbeat_interval=3600)
    task = asyncio.create_task(worker.run(drain=True))
    await asyncio.wait_for(first_started.wait(), 5)
    clock.advance(LEASE)
    assert await queue.rescue_expired_jobs() == 1
    await asyncio.wait_for(task, 5)
    assert first_stopped.is_set()
    done = await fetch(queue, job.id)
    assert (done.status, done.stats) == (JobStatus.COMPLETED, {"attempt": 2})
    finished = [(c["job"].attempts, c["outcome"]) for n, c in recorder.calls if n == "job_finished"]
    assert sorted(finished) == [(1, "lost"), (2, "completed")]


async def test_worker_rescues_jobs_of_dead_workers(
    queue: jobqueue.JobQueue, clock: FakeClock
) -> None:
    """A job held by a vanished worker comes back after its lease and is run to completion."""
    job = await queue.create_job(CreateJobRequest(kind="k"))
    assert await queue.claim_job("dead-worker") is not None
    clock.advance(LEASE)

    async def k(job: Job) -> dict[str, int]:
        return {"attempt": job.attempts}

    worker = make_worker(queue, {"k": k}, worker_id="alive")
    await worker.run(drain=True)
    done = await fetch(queue, job.id)
    assert (done.status, done.worker_id, done.stats) == (
        JobStatus.COMPLETED,
        "alive",
        {"attempt": 2},
    )


async def test_periodic_rescue_runs_every_interval(
    queue: jobqueue.JobQueue, clock: FakeClock
) -> None:
    """A running worker rescues expired jobs every rescue_interval seconds, not only at start."""
    job = await queue.create_job(CreateJobRequest(kind="k"))
    assert await queue.claim_job("dead-worker") is not None
    done = asyncio.Event()

    async def k(job: Job) -> None:
        done.set()

    worker = make_worker(queue, {"k": k}, rescue_interval=0.02)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.05)
    clock.advance(LEASE)
    await asyncio.wait_for(done.wait(), 5)
    worker.stop()
    await asyncio.wait_for(task, 5)
    assert await status_of(queue, job.id) is JobStatus.COMPLETED


# ------------------------------------------------------------------ shutdown


async def test_shutdown_waits_for_the_grace_then_releases(
    queue: jobqueue.JobQueue, recorder: Recorder
) -> None:
    """After stop(), jobs finishing within the grace complete; the rest are released,
    claimable again with their attempt given back."""
    quick = await queue.create_job(CreateJobRequest(kind="quick"))
    stuck = await queue.create_job(CreateJobRequest(kind="stuck"))
    started = {"quick": asyncio.Event(), "stuck": asyncio.Event()}
    stuck_cancelled = asyncio.Event()

    async def quick_handler(job: Job) -> dict[str, str]:
        started["quick"].set()
        await asyncio.sleep(0.1)
        return {"ok": "quick"}

    async def stuck_handler(job: Job) -> None:
        started["stuck"].set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stuck_cancelled.set()
            raise

    worker = make_worker(
        queue, {"quick": quick_handler, "stuck": stuck_handler}, shutdown_grace=0.5
    )
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started.values())), 5)
    stopped_at = time.monotonic()
    worker.stop()
    await asyncio.wait_for(task, 10)
    elapsed = time.monotonic() - stopped_at
    assert 0.4 <= elapsed < 5

    assert stuck_cancelled.is_set()
    assert (await fetch(queue, quick.id)).status is JobStatus.COMPLETED
    released = await fetch(queue, stuck.id)
    assert (released.status, released.attempts, released.worker_id) == (
        JobStatus.PENDING,
        0,
        None,
    )
    assert recorder.outcomes() == {quick.id: "completed", stuck.id: "released"}
    reclaimed = await queue.claim_job("other")
    assert reclaimed is not None and reclaimed.id == stuck.id


async def test_second_stop_skips_the_grace(queue: jobqueue.JobQueue) -> None:
    """Stopping again during the grace cancels and releases the running jobs at once."""
    job = await queue.create_job(CreateJobRequest(kind="stuck"))
    started = asyncio.Event()

    async def stuck(job: Job) -> None:
        started.set()
        await asyncio.sleep(60)

    worker = make_worker(queue, {"stuck": stuck}, shutdown_grace=60)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    worker.stop()
    await asyncio.sleep(0.05)
    assert not task.done()
    worker.stop()
    await asyncio.wait_for(task, 5)
    assert await status_of(queue, job.id) is JobStatus.PENDING


async def test_stop_from_another_thread(queue: jobqueue.JobQueue) -> None:
    """stop() is safe to call from a thread that is not the worker's loop."""

    async def k(job: Job) -> None:
        return None

    worker = make_worker(queue, {"k": k})
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.02)
    thread = threading.Thread(target=worker.stop)
    thread.start()
    thread.join()
    await asyncio.wait_for(task, 5)


async def test_stop_before_run_makes_run_return_at_once(queue: jobqueue.JobQueue) -> None:
    """A stop() that precedes run() is honoured by that run, and only by it."""
    await queue.create_job(CreateJobRequest(kind="k"))

    async def k(job: Job) -> None:
        return None

    worker = make_worker(queue, {"k": k})
    worker.stop()
    await asyncio.wait_for(worker.run(), 5)
    assert await queue.count_by_status(JobStatus.PENDING) == 1
    await asyncio.wait_for(worker.run(drain=True), 5)
    assert await queue.count_by_status(JobStatus.COMPLETED) == 1


async def test_cancelling_run_releases_jobs_and_propagates(queue: jobqueue.JobQueue) -> None:
    """Cancelling the task running run() cancels handlers at once and releases their jobs."""
    job = await queue.create_job(CreateJobRequest(kind="stuck"))
    started = asyncio.Event()

    async def stuck(job: Job) -> None:
        started.set()
        await asyncio.sleep(60)

    worker = make_worker(queue, {"stuck": stuck}, shutdown_grace=60)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    released = await fetch(queue, job.id)
    assert released.status is JobStatus.PENDING and released.attempts == 0


async def test_run_twice_at_once_is_refused(queue: jobqueue.JobQueue) -> None:
    """One worker runs one run() at a time."""
    worker = make_worker(queue, {})
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.01)
    with pytest.raises(RuntimeError, match="already running"):
        await worker.run()
    worker.stop()
    await asyncio.wait_for(task, 5)


async def test_sigterm_stops_the_worker_and_handlers_are_restored(
    queue: jobqueue.JobQueue,
) -> None:
    """On the main thread, SIGTERM stops run() gracefully; the previous handler comes back."""
    job = await queue.create_job(CreateJobRequest(kind="k"))
    started = asyncio.Event()
    seen: list[int] = []

    def previous(signum: int, frame: object) -> None:
        seen.append(signum)

    async def k(job: Job) -> dict[str, bool]:
        started.set()
        await asyncio.sleep(0.1)
        return {"finished": True}

    old = signal.signal(signal.SIGTERM, previous)
    try:
        worker = make_worker(queue, {"k": k}, handle_signals=True)
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(started.wait(), 5)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(task, 5)
        assert seen == []  # the worker's handler took it
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, old)
    assert (await fetch(queue, job.id)).stats == {"finished": True}


# --------------------------------------------------------- hooks and logging


async def test_hooks_see_the_lifecycle(
    queue: jobqueue.JobQueue, recorder: Recorder, clock: FakeClock
) -> None:
    """worker_started, job_started/job_finished per job with outcome and error, worker_stopped."""
    ok = await queue.create_job(CreateJobRequest(kind="ok"))
    bad = await queue.create_job(CreateJobRequest(kind="bad", max_attempts=2))
    boom = ValueError("boom")

    async def ok_handler(job: Job) -> None:
        return None

    async def bad_handler(job: Job) -> None:
        raise boom

    worker = make_worker(queue, {"ok": ok_handler, "bad": bad_handler})
    await worker.run(drain=True)
    clock.advance(timedelta(hours=2))
    await worker.run(drain=True)

    names = [name for name, _ in recorder.calls]
    assert names[0] == "worker_started" and names[-1] == "worker_stopped"
    assert recorder.calls[0][1]["worker"] is worker
    finished = [c for n, c in recorder.calls if n == "job_finished"]
    # Jobs of one turn finish in no promised order; each job's attempts in theirs.
    ok_finished = [c for c in finished if c["job"].id == ok.id]
    bad_finished = [c for c in finished if c["job"].id == bad.id]
    assert [c["outcome"] for c in ok_finished] == ["completed"]
    assert [c["outcome"] for c in bad_finished] == ["retried", "failed"]
    assert ok_finished[0]["error"] is None and bad_finished[0]["error"] is boom
    assert all(c["duration"] >= 0 for c in finished)
    assert sum(1 for n in names if n == "job_started") == 3


class Broken:
    @jobqueue.hookimpl
    def jobqueue_job_started(self, worker_id: str, job: Job) -> None:
        raise RuntimeError("broken plugin")

    @jobqueue.hookimpl
    def jobqueue_job_finished(self, worker_id: str, job: Job, outcome: str) -> None:
        raise RuntimeError("broken plugin")

    @jobqueue.hookimpl
    def jobqueue_worker_started(self, worker: Worker) -> None:
        raise RuntimeError("broken plugin")


async def test_a_broken_hook_does_not_stop_the_worker(
    queue: jobqueue.JobQueue, caplog: pytest.LogCaptureFixture
) -> None:
    """Exceptions from hook implementations are logged; every job still completes."""
    await queue.create_jobs([CreateJobRequest(kind="k") for _ in range(5)])
    plugin = Broken()
    jobqueue.register_plugin(plugin)
    try:

        async def k(job: Job) -> None:
            return None

        await make_worker(queue, {"k": k}).run(drain=True)
    finally:
        jobqueue.plugin_manager().unregister(plugin)
    assert await queue.count_by_status(JobStatus.COMPLETED) == 5
    assert any("hook failed" in r.getMessage() for r in caplog.records)


async def test_log_lines_name_the_job(
    queue: jobqueue.JobQueue, caplog: pytest.LogCaptureFixture
) -> None:
    """Every job log line carries the job id and kind, in the message and as record fields."""
    ok = await queue.create_job(CreateJobRequest(kind="ok"))
    bad = await queue.create_job(CreateJobRequest(kind="bad"))

    async def ok_handler(job: Job) -> None:
        return None

    async def bad_handler(job: Job) -> None:
        raise ValueError("nope")

    caplog.set_level(logging.DEBUG, logger="jobqueue.worker")
    worker = make_worker(queue, {"ok": ok_handler, "bad": bad_handler})
    await worker.run(drain=True)
    job_lines = [vars(r) | {"message": r.getMessage()} for r in caplog.records]
    job_lines = [line for line in job_lines if "job_id" in line]
    assert {line["job_id"] for line in job_lines} == {str(ok.id), str(bad.id)}
    for line in job_lines:
        assert line["job_id"] in line["message"] and line["job_kind"] in line["message"]
        assert line["worker_id"] == worker.worker_id
    assert any(
        line["levelno"] == logging.WARNING and "retrying" in line["message"] for line in job_lines
    )


# ------------------------------------------------------- transient failures


async def test_claim_errors_are_retried(
    queue: jobqueue.JobQueue, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing claim is logged and tried again; the worker keeps going."""
    await queue.create_job(CreateJobRequest(kind="k"))
    original = queue.claim_jobs
    failures = [jobqueue.BackendUnavailableError("connection reset")]

    async def flaky_claim(*args: Any, **kwargs: Any) -> list[Job]:
        if failures:
            raise failures.pop()
        return await original(*args, **kwargs)

    queue.claim_jobs = flaky_claim  # type: ignore[method-assign]
    done = asyncio.Event()

    async def k(job: Job) -> None:
        done.set()

    worker = make_worker(queue, {"k": k})
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(done.wait(), 5)
    worker.stop()
    await asyncio.wait_for(task, 5)
    assert any("claiming failed" in r.getMessage() for r in caplog.records)


async def test_claim_errors_end_a_drain(queue: jobqueue.JobQueue) -> None:
    """In drain mode a failing claim propagates instead of waiting forever."""

    async def broken(*args: Any, **kwargs: Any) -> list[Job]:
        raise jobqueue.BackendUnavailableError("down")

    queue.claim_jobs = broken  # type: ignore[method-assign]
    with pytest.raises(jobqueue.BackendUnavailableError):
        await make_worker(queue, {}).run(drain=True)


async def test_outcome_writes_are_retried_until_they_go_through(
    queue: jobqueue.JobQueue,
) -> None:
    """A transient error while completing a job is retried; the job ends completed."""
    job = await queue.create_job(CreateJobRequest(kind="k"))
    original = queue.complete_jobs
    failures = [jobqueue.BackendUnavailableError("blip")] * 2

    async def flaky_complete(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await original(*args, **kwargs)

    queue.complete_jobs = flaky_complete  # type: ignore[method-assign]

    async def k(job: Job) -> dict[str, int]:
        return {"n": 1}

    await asyncio.wait_for(make_worker(queue, {"k": k}).run(drain=True), 5)
    assert (await fetch(queue, job.id)).stats == {"n": 1}


async def test_heartbeat_and_wait_errors_do_not_stop_the_worker(
    queue: jobqueue.JobQueue, caplog: pytest.LogCaptureFixture
) -> None:
    """Failing heartbeats, rescues and idle waits are logged; jobs keep running and
    completing."""

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise jobqueue.BackendUnavailableError("connection lost")

    queue.heartbeat = broken  # type: ignore[method-assign]
    queue.wait_for_jobs = broken  # type: ignore[method-assign]
    queue.rescue_expired_jobs = broken  # type: ignore[method-assign]
    job = await queue.create_job(CreateJobRequest(kind="k"))
    started = asyncio.Event()

    async def k(job: Job) -> None:
        started.set()
        await asyncio.sleep(0.1)

    worker = make_worker(queue, {"k": k}, heartbeat_interval=0.01)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    await wait_until(lambda: _status_is(queue, job.id, JobStatus.COMPLETED))
    worker.stop()
    await asyncio.wait_for(task, 5)
    messages = [r.getMessage() for r in caplog.records]
    assert any("heartbeat failed" in m for m in messages)
    assert any("waiting for jobs failed" in m for m in messages)
    assert any("rescuing expired jobs failed" in m for m in messages)


async def test_a_heartbeat_slower_than_the_lease_is_warned_about(
    queue: jobqueue.JobQueue, caplog: pytest.LogCaptureFixture
) -> None:
    """A heartbeat_interval not shorter than the lease logs a warning when the worker is built."""
    make_worker(queue, {}, heartbeat_interval=LEASE.total_seconds() / 2)
    assert not caplog.records
    make_worker(queue, {}, heartbeat_interval=LEASE.total_seconds())
    assert any("not shorter than the lease" in r.getMessage() for r in caplog.records)


async def _status_is(queue: jobqueue.JobQueue, job_id: UUID, status: JobStatus) -> bool:
    return await status_of(queue, job_id) is status


def test_no_signal_handlers_off_the_main_thread() -> None:
    """A worker runs in another thread's event loop, leaving signal handlers alone."""
    before = signal.getsignal(signal.SIGTERM)
    seen: list[Any] = []

    async def main() -> None:
        async with jobqueue.connect("memory://") as q:
            await q.create_job(CreateJobRequest(kind="k"))

            async def k(job: Job) -> None:
                seen.append(signal.getsignal(signal.SIGTERM))

            await Worker(q, {"k": k}, poll_interval=0.01).run(drain=True)

    thread = threading.Thread(target=asyncio.run, args=(main(),))
    thread.start()
    thread.join(10)
    assert seen == [before]


# ----------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("handlers", "options"),
    [
        ([], {}),
        ({"k": 3}, {}),
        ({"": lambda job: None}, {}),
        ({}, {"concurrency": 0}),
        ({}, {"concurrency": True}),
        ({}, {"shutdown_grace": -1}),
        ({}, {"rescue_interval": 0}),
        ({}, {"poll_interval": float("nan")}),
        ({}, {"job_timeout": 0}),
        ({}, {"queues": "default"}),
        ({}, {"worker_id": ""}),
        ({}, {"retry": {"base_delay": 1}}),
        ({}, {"max_error_chars": 10}),
    ],
)
async def test_bad_worker_arguments_are_rejected(
    queue: jobqueue.JobQueue, handlers: Any, options: dict[str, Any]
) -> None:
    """Bad arguments raise InvalidRequestError when the worker is built."""
    with pytest.raises(jobqueue.InvalidRequestError):
        Worker(queue, handlers, **options)


async def test_intervals_accept_timedeltas(queue: jobqueue.JobQueue) -> None:
    """A timedelta works wherever seconds are expected."""
    job = await queue.create_job(CreateJobRequest(kind="slow", max_attempts=1))

    async def slow(job: Job) -> None:
        await asyncio.sleep(60)

    worker = make_worker(queue, {"slow": slow}, job_timeout=timedelta(milliseconds=20))
    await asyncio.wait_for(worker.run(drain=True), 5)
    failed = await fetch(queue, job.id)
    assert failed.error is not None and "within 0.02 seconds" in failed.error


def test_default_worker_ids_are_unique_and_name_the_process() -> None:
    """The default id holds the host and pid, plus a random part unique per worker."""

    async def make() -> tuple[str, str]:
        async with jobqueue.connect("memory://") as q:
            return Worker(q, {}).worker_id, Worker(q, {}).worker_id

    first, second = asyncio.run(make())
    assert first != second
    assert f":{os.getpid()}:" in first


# ------------------------------------------------------------ load_handlers


def test_load_handlers_imports_a_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """'module:ATTRIBUTE' (dotted attributes too) gives the handlers mapping."""
    (tmp_path / "jq_handlers_ok.py").write_text(
        "class registry:\n"
        "    HANDLERS = {'a': print}\n"
        "async def b(job):\n    return None\n"
        "HANDLERS = {'a': print, 'b': b}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    handlers = jobqueue.load_handlers("jq_handlers_ok:HANDLERS")
    assert set(handlers) == {"a", "b"}
    assert jobqueue.load_handlers("jq_handlers_ok:registry.HANDLERS") == {"a": print}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", "expected 'MODULE:ATTRIBUTE'"),
        ("jq_handlers_bad:", "expected 'MODULE:ATTRIBUTE'"),
        ("jq_no_such_module_xyz:HANDLERS", "cannot import module 'jq_no_such_module_xyz'"),
        ("jq_handlers_bad:MISSING", "has no attribute 'MISSING'"),
        ("jq_handlers_bad:NOT_A_MAPPING", "must be a mapping"),
        ("jq_handlers_bad:NOT_CALLABLE", "is not callable"),
        ("jq_handlers_broken:HANDLERS", "ZeroDivisionError"),
    ],
)
def test_load_handlers_explains_what_is_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str, message: str
) -> None:
    """Each way a spec can be wrong gives an InvalidRequestError that says which."""
    (tmp_path / "jq_handlers_bad.py").write_text(
        "NOT_A_MAPPING = [print]\nNOT_CALLABLE = {'a': 42}\n"
    )
    (tmp_path / "jq_handlers_broken.py").write_text("1 / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(jobqueue.InvalidRequestError, match=message):
        jobqueue.load_handlers(spec)
