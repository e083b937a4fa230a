"""The ``memory://`` backend against SPEC §2: URLs, claim order, eligibility, fencing,
leases, rescue, what each operation writes, operators' calls, reads, wake-ups, and
concurrent claimers (tasks and threads) checked as properties of the claim history."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import jobqueue
from jobqueue import (
    CreateJobRequest,
    InvalidTransitionError,
    Job,
    JobNotFoundError,
    JobQueue,
    JobStatus,
)
from jobqueue.testing import FakeClock
from jobqueue_memory._store import ReadyJobs, Record

LEASE = timedelta(seconds=30)
PENDING, RUNNING = JobStatus.PENDING, JobStatus.RUNNING
COMPLETED, FAILED, CANCELLED = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def queue(clock: FakeClock) -> AsyncIterator[JobQueue]:
    async with jobqueue.connect("memory://", clock=clock, lease=LEASE) as q:
        yield q


def unique_name() -> str:
    return f"test-{uuid.uuid4().hex}"


async def get(queue: JobQueue, job_id: UUID) -> Job:
    job = await queue.get_job(job_id)
    assert job is not None
    return job


async def claim(q: JobQueue, worker_id: str = "w", /, **kwargs: Any) -> Job:
    job = await q.claim_job(worker_id, **kwargs)
    assert job is not None
    return job


async def create(q: JobQueue, kind: str = "k", /, **kwargs: Any) -> Job:
    return await q.create_job(CreateJobRequest(kind, **kwargs))


# ------------------------------------------------------------------- URLs


async def test_plain_memory_url_is_a_fresh_queue_each_time() -> None:
    """Every ``connect("memory://")`` is a new, empty queue."""
    async with jobqueue.connect("memory://") as first, jobqueue.connect("memory://") as second:
        await create(first)
        assert await second.list_jobs() == []
        assert await first.count_by_status(PENDING) == 1


async def test_named_memory_url_is_shared_by_every_handle() -> None:
    """``memory://NAME`` handles share one queue, also after one is closed and for
    handles opened later; another name is another queue."""
    name = unique_name()
    async with jobqueue.connect(f"memory://{name}") as a, jobqueue.connect(f"memory://{name}") as b:
        job = await create(a)
        claimed = await claim(b)
        assert claimed.id == job.id
        await a.complete_job(job.id, {"by": "a"})
        assert (await get(b, job.id)).status is COMPLETED
        async with jobqueue.connect(f"memory://{name}-other") as other:
            assert await other.list_jobs() == []
    async with jobqueue.connect(f"memory://{name}") as later:
        assert (await get(later, job.id)).stats == {"by": "a"}
    assert "memory://" + name in repr(later)


async def test_named_memory_queue_is_shared_across_threads() -> None:
    """A thread running its own event loop sees and changes the same ``memory://NAME``
    queue as the main thread."""
    name = unique_name()
    async with jobqueue.connect(f"memory://{name}") as q:
        job = await create(q)

        async def in_thread() -> UUID:
            async with jobqueue.connect(f"memory://{name}") as there:
                claimed = await claim(there, "thread")
                await there.complete_job(claimed.id, {})
                return claimed.id

        result: list[UUID] = []
        thread = threading.Thread(target=lambda: result.append(asyncio.run(in_thread())))
        thread.start()
        thread.join(30)
        assert result == [job.id]
        assert (await get(q, job.id)).status is COMPLETED


# ------------------------------------------------------------- claim order


async def test_higher_priority_is_claimed_first(queue: JobQueue, clock: FakeClock) -> None:
    """The highest priority goes first, whatever the creation order."""
    low = await create(queue, priority=-5)
    clock.advance(1)
    high = await create(queue, priority=10)
    mid = await create(queue, priority=0)
    claimed = await queue.claim_jobs("w", 10)
    assert [j.id for j in claimed] == [high.id, mid.id, low.id]


async def test_fresh_jobs_before_retries_within_a_priority(
    queue: JobQueue, clock: FakeClock
) -> None:
    """Within one priority, jobs that are not retries go before retry-ready ones even
    when the retry is older; a higher-priority retry still goes first."""
    old = await create(queue, queue="a")
    old_high = await create(queue, queue="b", priority=1)
    for q in ("a", "b"):
        job = await claim(queue, queues=[q])
        await queue.fail_job(job.id, "e", clock())
    clock.advance(1)
    fresh = await create(queue)
    fresh_low = await create(queue, priority=-1)
    order = [j.id for j in await queue.claim_jobs("w", 10)]
    assert order == [old_high.id, fresh.id, old.id, fresh_low.id]


async def test_ties_in_a_clock_that_does_not_move_follow_creation_order(
    queue: JobQueue,
) -> None:
    """With a clock that stands still, jobs are claimed in the order of the
    ``create_job`` calls, and within ``create_jobs`` in list order."""
    first = await create(queue, "1")
    batch = await queue.create_jobs([CreateJobRequest(str(n)) for n in range(2, 8)])
    last = await create(queue, "8")
    assert len({j.created_at for j in [first, *batch, last]}) == 1
    claimed = [(await claim(queue)).kind for _ in range(8)]
    assert claimed == [str(n) for n in range(1, 9)]


async def test_created_at_decides_before_call_order(queue: JobQueue, clock: FakeClock) -> None:
    """Creation order is ``created_at`` first: a job created later but stamped earlier
    (the clock moved back) is claimed first."""
    clock.advance(10)
    stamped_late = await create(queue, "late")
    clock.advance(-5)
    stamped_early = await create(queue, "early")
    assert [j.id for j in await queue.claim_jobs("w", 2)] == [stamped_early.id, stamped_late.id]


ORDER_JOBS = st.lists(
    st.tuples(
        st.integers(-2, 2),  # priority
        st.booleans(),  # is a retry
        st.integers(0, 3),  # created_at offset in seconds
    ),
    max_size=12,
)


@given(specs=ORDER_JOBS)
def test_claim_order_is_priority_then_freshness_then_creation_order(
    specs: list[tuple[int, bool, int]],
) -> None:
    """For any mix of priorities, retries and creation times (with ties), one claimer
    takes jobs sorted by (priority desc, retries last, created_at, creation order)."""

    async def scenario() -> None:
        clock = FakeClock()
        start = clock()
        async with jobqueue.connect("memory://", clock=clock) as q:
            expected = []
            for index, (priority, retry, offset) in enumerate(specs):
                clock.set(start + timedelta(seconds=offset))
                job = await create(q, queue=f"q{index}", priority=priority)
                expected.append(((-priority, retry, offset, index), job.id))
            clock.set(start + timedelta(seconds=10))
            for (_, retry, _, index), job_id in expected:
                if retry:
                    claimed = await claim(q, queues=[f"q{index}"])
                    assert claimed.id == job_id
                    await q.fail_job(job_id, "e", clock())
            order = await q.claim_jobs("w", 100)
            assert [j.id for j in order] == [job_id for _, job_id in sorted(expected)]

    asyncio.run(scenario())


# ------------------------------------------------------------- eligibility


async def test_run_at_delays_a_job_until_that_instant(queue: JobQueue, clock: FakeClock) -> None:
    """A job is not claimable before ``run_at`` and is at exactly ``run_at``."""
    job = await create(queue, run_at=clock() + timedelta(seconds=10))
    clock.advance(timedelta(seconds=10) - timedelta(microseconds=1))
    assert await queue.claim_job("w") is None
    clock.advance(timedelta(microseconds=1))
    assert (await claim(queue)).id == job.id


async def test_a_past_run_at_is_claimable_at_once(queue: JobQueue, clock: FakeClock) -> None:
    """A ``run_at`` in the past does not delay the job."""
    job = await create(queue, run_at=clock() - timedelta(days=1))
    assert (await claim(queue)).id == job.id


async def test_next_retry_at_delays_a_retry(queue: JobQueue, clock: FakeClock) -> None:
    """A job failed with ``next_retry_at`` is pending but not claimable before that time."""
    job = await create(queue)
    await claim(queue)
    await queue.fail_job(job.id, "e", clock() + timedelta(seconds=5))
    clock.advance(4)
    assert await queue.claim_job("w") is None
    clock.advance(1)
    assert (await claim(queue)).id == job.id


async def test_run_at_and_next_retry_at_must_both_have_passed(
    queue: JobQueue, clock: FakeClock
) -> None:
    """A retry whose ``next_retry_at`` has passed waits for a later ``run_at`` too
    (reached here by moving the clock back after the first claim)."""
    run_at = clock() + timedelta(seconds=20)
    job = await create(queue, run_at=run_at)
    clock.set(run_at)
    await claim(queue)
    clock.set(run_at - timedelta(seconds=15))
    await queue.fail_job(job.id, "e", clock())
    assert await queue.claim_job("w") is None
    clock.set(run_at)
    assert (await claim(queue)).id == job.id


async def test_a_clock_moved_back_makes_a_due_job_wait_again(
    queue: JobQueue, clock: FakeClock
) -> None:
    """A job that was already due (and looked at by a claim) is not claimable once the
    clock moves back before its ``run_at``, and is again when the clock returns."""
    run_at = clock() + timedelta(seconds=10)
    job = await create(queue, run_at=run_at, queue="later")
    clock.set(run_at)
    assert await queue.claim_job("w", queues=["elsewhere"]) is None
    clock.set(run_at - timedelta(seconds=1))
    assert await queue.claim_job("w") is None
    assert (await get(queue, job.id)).status is PENDING
    clock.set(run_at)
    assert (await claim(queue)).id == job.id


async def test_queues_restrict_claims(queue: JobQueue, clock: FakeClock) -> None:
    """``queues`` limits a claim to those queues, in global claim order across them;
    jobs elsewhere stay pending."""
    a1 = await create(queue, queue="a")
    b1 = await create(queue, queue="b", priority=1)
    c1 = await create(queue, queue="c", priority=5)
    a2 = await create(queue, queue="a", priority=2)
    claimed = await queue.claim_jobs("w", 10, queues=["a", "b"])
    assert [j.id for j in claimed] == [a2.id, b1.id, a1.id]
    assert await queue.claim_job("w", queues=["a", "b", "nothing-here"]) is None
    assert (await get(queue, c1.id)).status is PENDING
    assert (await claim(queue, queues=("c",))).id == c1.id


async def test_claim_jobs_takes_up_to_limit_in_claim_order(
    queue: JobQueue, clock: FakeClock
) -> None:
    """``claim_jobs`` returns at most ``limit`` jobs, in claim order, all running under
    the claimer with one lease; asking for more than exist returns what there is."""
    jobs = await queue.create_jobs([CreateJobRequest("k", priority=p) for p in (0, 3, 1, 2, 0)])
    first = await queue.claim_jobs("w", 3)
    assert [j.priority for j in first] == [3, 2, 1]
    assert all(j.status is RUNNING and j.worker_id == "w" and j.attempts == 1 for j in first)
    assert {j.lease_expires_at for j in first} == {clock() + LEASE}
    rest = await queue.claim_jobs("w2", 100)
    assert [j.id for j in rest] == [jobs[0].id, jobs[4].id]
    assert await queue.claim_jobs("w", 5) == []


# ----------------------------------------------------------------- fencing


FENCES = {
    "wrong worker": {"worker_id": "intruder"},
    "wrong attempt": {"attempt": 2},
    "wrong worker, right attempt": {"worker_id": "intruder", "attempt": 1},
    "right worker, wrong attempt": {"worker_id": "w", "attempt": 0},
}
OUTCOMES: dict[str, Callable[[JobQueue, UUID, dict[str, Any]], Awaitable[None]]] = {
    "complete": lambda q, i, f: q.complete_job(i, {"x": 1}, **f),
    "fail": lambda q, i, f: q.fail_job(i, "e", **f),
    "fail with retry": lambda q, i, f: q.fail_job(i, "e", q.now(), **f),
    "cancel": lambda q, i, f: q.cancel_job(i, {"x": 1}, **f),
}


@pytest.mark.parametrize("fence", FENCES.values(), ids=FENCES.keys())
@pytest.mark.parametrize("outcome", OUTCOMES.values(), ids=OUTCOMES.keys())
async def test_a_mismatched_fence_is_refused_and_changes_nothing(
    queue: JobQueue, outcome: Any, fence: dict[str, Any]
) -> None:
    """An outcome fenced with a worker or attempt the running job does not have raises
    ``InvalidTransitionError`` and leaves the job exactly as it was."""
    await create(queue)
    job = await claim(queue)
    with pytest.raises(InvalidTransitionError):
        await outcome(queue, job.id, fence)
    assert await get(queue, job.id) == job


MATCHING = {
    "worker": {"worker_id": "w"},
    "attempt": {"attempt": 1},
    "both": {"worker_id": "w", "attempt": 1},
    "none": {},
}


@pytest.mark.parametrize("fence", MATCHING.values(), ids=MATCHING.keys())
@pytest.mark.parametrize("outcome", OUTCOMES.values(), ids=OUTCOMES.keys())
async def test_a_matching_fence_is_accepted(
    queue: JobQueue, outcome: Any, fence: dict[str, Any]
) -> None:
    """An outcome fenced with the job's own worker and/or attempt (or not fenced) applies."""
    await create(queue)
    job = await claim(queue)
    await outcome(queue, job.id, fence)
    assert (await get(queue, job.id)).status is not RUNNING


async def test_a_fenced_cancel_of_a_pending_job_is_refused(queue: JobQueue) -> None:
    """A fenced cancel requires a running job: on a pending one it is refused, while an
    unfenced cancel of a pending job is allowed."""
    job = await create(queue)
    with pytest.raises(InvalidTransitionError):
        await queue.cancel_job(job.id, worker_id="w")
    with pytest.raises(InvalidTransitionError):
        await queue.cancel_job(job.id, attempt=0)
    assert await get(queue, job.id) == job
    await queue.cancel_job(job.id)
    assert (await get(queue, job.id)).status is CANCELLED


async def test_a_rescued_worker_cannot_overwrite_the_new_attempt(
    queue: JobQueue, clock: FakeClock
) -> None:
    """After a rescue and a new claim (even by the same worker), outcomes fenced with the
    old attempt are refused; the new attempt's fence succeeds."""
    await create(queue)
    old = await claim(queue, "w")
    clock.advance(LEASE)
    assert await queue.rescue_expired_jobs() == 1
    with pytest.raises(InvalidTransitionError):
        await queue.complete_job(old.id, {}, worker_id="w", attempt=1)
    new = await claim(queue, "w")
    assert new.attempts == 2
    for call in OUTCOMES.values():
        with pytest.raises(InvalidTransitionError):
            await call(queue, old.id, {"worker_id": "w", "attempt": 1})
    assert await get(queue, new.id) == new
    await queue.complete_job(new.id, {}, worker_id="w", attempt=2)


STATUS_REFUSALS = {
    "complete pending": (PENDING, OUTCOMES["complete"]),
    "fail pending": (PENDING, OUTCOMES["fail"]),
    "complete completed": (COMPLETED, OUTCOMES["complete"]),
    "fail completed": (COMPLETED, OUTCOMES["fail with retry"]),
    "cancel completed": (COMPLETED, OUTCOMES["cancel"]),
    "complete failed": (FAILED, OUTCOMES["complete"]),
    "cancel failed": (FAILED, OUTCOMES["cancel"]),
    "fail cancelled": (CANCELLED, OUTCOMES["fail"]),
    "cancel cancelled": (CANCELLED, OUTCOMES["cancel"]),
}


async def job_in(queue: JobQueue, status: JobStatus) -> Job:
    """A fresh job brought into ``status``."""
    job = await create(queue, queue=f"only-{status.value}-{uuid.uuid4().hex}")
    if status is not PENDING:
        await claim(queue, queues=[job.queue])
    if status is COMPLETED:
        await queue.complete_job(job.id, {})
    elif status is FAILED:
        await queue.fail_job(job.id, "e")
    elif status is CANCELLED:
        await queue.cancel_job(job.id)
    return await get(queue, job.id)


@pytest.mark.parametrize(("status", "outcome"), STATUS_REFUSALS.values(), ids=STATUS_REFUSALS)
async def test_transitions_not_listed_are_refused(
    queue: JobQueue, status: JobStatus, outcome: Any
) -> None:
    """Completing or failing a job that is not running, or cancelling a terminal one,
    raises ``InvalidTransitionError`` and changes nothing."""
    job = await job_in(queue, status)
    with pytest.raises(InvalidTransitionError):
        await outcome(queue, job.id, {})
    assert await get(queue, job.id) == job


UNKNOWN_ID_CALLS: dict[str, Callable[[JobQueue, UUID], Awaitable[object]]] = {
    "complete": lambda q, i: q.complete_job(i, {}),
    "fail": lambda q, i: q.fail_job(i, "e"),
    "cancel": lambda q, i: q.cancel_job(i),
    "release": lambda q, i: q.release_job(i),
    "retry": lambda q, i: q.retry_job(i),
}


@pytest.mark.parametrize("call", UNKNOWN_ID_CALLS.values(), ids=UNKNOWN_ID_CALLS)
async def test_unknown_ids_raise_job_not_found(queue: JobQueue, call: Any) -> None:
    """An unknown id raises ``JobNotFoundError`` (carrying the id) in every operation
    but ``get_job``, which returns None."""
    missing = uuid.uuid4()
    with pytest.raises(JobNotFoundError) as info:
        await call(queue, missing)
    assert info.value.job_id == missing
    assert await queue.get_job(missing) is None


# ------------------------------------------------ what each operation writes


async def test_create_writes(queue: JobQueue, clock: FakeClock) -> None:
    """create: pending, no worker, 0 attempts, no error, timestamps set, the rest None."""
    run_at = clock() + timedelta(hours=1)
    job = await create(
        queue, "kind", payload={"a": [1]}, queue="q", priority=7, run_at=run_at, max_attempts=3
    )
    assert isinstance(job.id, UUID)
    assert job == Job(
        id=job.id,
        kind="kind",
        payload={"a": [1]},
        queue="q",
        priority=7,
        status=PENDING,
        attempts=0,
        max_attempts=3,
        worker_id=None,
        error=None,
        stats=None,
        run_at=run_at,
        next_retry_at=None,
        lease_expires_at=None,
        created_at=clock(),
        updated_at=clock(),
        started_at=None,
        finished_at=None,
    )
    assert await get(queue, job.id) == job


async def retried_job(queue: JobQueue, clock: FakeClock) -> Job:
    """A pending job that already ran once and failed (error and next_retry_at set)."""
    await create(queue, payload={"p": 1})
    job = await claim(queue, "first")
    clock.advance(1)
    await queue.fail_job(job.id, "first error", clock())
    clock.advance(1)
    return await get(queue, job.id)


async def running_job(queue: JobQueue, clock: FakeClock) -> Job:
    """A running job in its second attempt, with an error and next_retry_at from the first."""
    await retried_job(queue, clock)
    job = await claim(queue, "w")
    clock.advance(1)
    return job


async def test_claim_writes(queue: JobQueue, clock: FakeClock) -> None:
    """claim: running, the claimer, attempts + 1, started_at and updated_at now,
    lease now + lease; error and next_retry_at kept."""
    before = await retried_job(queue, clock)
    after = await claim(queue, "w")
    now = clock()
    assert after == dataclasses.replace(
        before,
        status=RUNNING,
        worker_id="w",
        attempts=before.attempts + 1,
        started_at=now,
        lease_expires_at=now + LEASE,
        updated_at=now,
    )
    assert after.error == "first error" and after.next_retry_at is not None
    assert await get(queue, after.id) == after


async def test_complete_writes(queue: JobQueue, clock: FakeClock) -> None:
    """complete: completed, stats, finished_at and updated_at now, lease cleared; worker,
    attempts and error kept."""
    before = await running_job(queue, clock)
    await queue.complete_job(before.id, {"records": 120})
    now = clock()
    assert await get(queue, before.id) == dataclasses.replace(
        before,
        status=COMPLETED,
        stats={"records": 120},
        finished_at=now,
        lease_expires_at=None,
        updated_at=now,
    )


async def test_fail_with_retry_writes(queue: JobQueue, clock: FakeClock) -> None:
    """fail with next_retry_at: pending, worker cleared, attempts kept, the new error,
    next_retry_at as given, lease cleared, updated_at now."""
    before = await running_job(queue, clock)
    retry_at = clock() + timedelta(minutes=3)
    await queue.fail_job(before.id, "second error", retry_at)
    assert await get(queue, before.id) == dataclasses.replace(
        before,
        status=PENDING,
        worker_id=None,
        error="second error",
        next_retry_at=retry_at,
        lease_expires_at=None,
        updated_at=clock(),
    )


async def test_fail_for_good_writes(queue: JobQueue, clock: FakeClock) -> None:
    """fail without next_retry_at: failed, worker and attempts kept, the new error,
    finished_at and updated_at now, lease cleared; max_attempts is not consulted."""
    before = await running_job(queue, clock)
    assert before.attempts < before.max_attempts
    await queue.fail_job(before.id, "fatal")
    now = clock()
    assert await get(queue, before.id) == dataclasses.replace(
        before,
        status=FAILED,
        error="fatal",
        finished_at=now,
        lease_expires_at=None,
        updated_at=now,
    )


async def test_fail_with_retry_ignores_max_attempts(queue: JobQueue, clock: FakeClock) -> None:
    """``fail_job`` with a retry time sends the job back even when it used its last attempt."""
    job = await create(queue, max_attempts=1)
    await claim(queue)
    await queue.fail_job(job.id, "e", clock())
    assert (await get(queue, job.id)).status is PENDING
    assert (await claim(queue)).attempts == 2


@pytest.mark.parametrize("stats", [None, {"done": 3}])
async def test_cancel_running_writes(
    queue: JobQueue, clock: FakeClock, stats: dict[str, Any] | None
) -> None:
    """cancel of a running job: cancelled, stats only when given, finished_at and
    updated_at now, lease cleared; worker, attempts and error kept."""
    before = await running_job(queue, clock)
    await queue.cancel_job(before.id, stats)
    now = clock()
    assert await get(queue, before.id) == dataclasses.replace(
        before,
        status=CANCELLED,
        stats=stats,
        finished_at=now,
        lease_expires_at=None,
        updated_at=now,
    )


async def test_cancel_pending_writes(queue: JobQueue, clock: FakeClock) -> None:
    """cancel of a pending job: cancelled, finished_at and updated_at now, the rest kept."""
    before = await retried_job(queue, clock)
    await queue.cancel_job(before.id, {"partial": True})
    now = clock()
    assert await get(queue, before.id) == dataclasses.replace(
        before, status=CANCELLED, stats={"partial": True}, finished_at=now, updated_at=now
    )


async def test_release_writes(queue: JobQueue, clock: FakeClock) -> None:
    """release: pending, worker cleared, the attempt given back, lease cleared,
    updated_at now; error, next_retry_at and started_at kept."""
    before = await running_job(queue, clock)
    assert await queue.release_job(before.id) is True
    assert await get(queue, before.id) == dataclasses.replace(
        before,
        status=PENDING,
        worker_id=None,
        attempts=before.attempts - 1,
        lease_expires_at=None,
        updated_at=clock(),
    )


@pytest.mark.parametrize("status", [PENDING, COMPLETED, FAILED, CANCELLED])
async def test_release_of_a_job_not_running_changes_nothing(
    queue: JobQueue, clock: FakeClock, status: JobStatus
) -> None:
    """``release_job`` of a job that is not running returns False and changes nothing."""
    job = await job_in(queue, status)
    clock.advance(1)
    assert await queue.release_job(job.id) is False
    assert await get(queue, job.id) == job


async def test_release_worker_jobs_releases_only_that_workers_running_jobs(
    queue: JobQueue, clock: FakeClock
) -> None:
    """``release_worker_jobs`` releases every running job of that worker (attempt given
    back) and returns how many; other workers' jobs and finished ones are untouched."""
    await queue.create_jobs([CreateJobRequest("k") for _ in range(5)])
    mine = await queue.claim_jobs("mine", 3)
    theirs = await claim(queue, "theirs")
    await queue.complete_job(mine[0].id, {})
    clock.advance(1)
    assert await queue.release_worker_jobs("mine") == 2
    for job in mine[1:]:
        assert await get(queue, job.id) == dataclasses.replace(
            job,
            status=PENDING,
            worker_id=None,
            attempts=0,
            lease_expires_at=None,
            updated_at=clock(),
        )
    assert await get(queue, theirs.id) == theirs
    assert (await get(queue, mine[0].id)).status is COMPLETED
    assert await queue.release_worker_jobs("mine") == 0
    assert await queue.release_worker_jobs("nobody") == 0


async def test_a_released_job_is_claimable_again(queue: JobQueue) -> None:
    """A released job goes back in line and its next claim counts as attempt 1 again."""
    job = await create(queue)
    await claim(queue, "a")
    await queue.release_job(job.id)
    again = await claim(queue, "b")
    assert (again.id, again.attempts, again.worker_id) == (job.id, 1, "b")


async def test_heartbeat_writes_only_the_lease(queue: JobQueue, clock: FakeClock) -> None:
    """heartbeat: lease_expires_at = now + lease for the worker's running jobs, returned
    as a set of ids; updated_at and every other field unchanged; other workers' jobs and
    finished jobs untouched."""
    await queue.create_jobs([CreateJobRequest("k") for _ in range(4)])
    mine = await queue.claim_jobs("w", 3)
    other = await claim(queue, "other")
    await queue.complete_job(mine[2].id, {})
    done = await get(queue, mine[2].id)
    clock.advance(7)
    assert await queue.heartbeat("w") == {mine[0].id, mine[1].id}
    for job in mine[:2]:
        assert await get(queue, job.id) == dataclasses.replace(
            job, lease_expires_at=clock() + LEASE
        )
    assert await get(queue, other.id) == other
    assert await get(queue, done.id) == done
    assert await queue.heartbeat("nobody") == set()


async def test_heartbeat_renews_an_expired_lease_not_yet_rescued(
    queue: JobQueue, clock: FakeClock
) -> None:
    """A heartbeat after the lease expired but before a rescue renews it: the job stays
    with its worker and a rescue then leaves it alone."""
    job = await create(queue)
    await claim(queue)
    clock.advance(LEASE * 2)
    assert await queue.heartbeat("w") == {job.id}
    assert await queue.rescue_expired_jobs() == 0
    renewed = await get(queue, job.id)
    assert (renewed.status, renewed.lease_expires_at) == (RUNNING, clock() + LEASE)


async def test_heartbeat_omits_jobs_that_were_cancelled_or_rescued(
    queue: JobQueue, clock: FakeClock
) -> None:
    """A job cancelled or rescued under a worker no longer appears in its heartbeat."""
    await queue.create_jobs([CreateJobRequest("k") for _ in range(3)])
    a, b, c = await queue.claim_jobs("w", 3)
    await queue.cancel_job(a.id)
    clock.advance(LEASE - timedelta(seconds=1))
    await queue.heartbeat("w")
    await queue.release_job(b.id)
    assert await queue.heartbeat("w") == {c.id}
    clock.advance(LEASE)
    assert await queue.rescue_expired_jobs() == 1
    assert await queue.heartbeat("w") == set()


async def test_rescue_writes_a_retry(queue: JobQueue, clock: FakeClock) -> None:
    """rescue while attempts < max_attempts: pending, worker cleared, attempts kept,
    error 'lease expired', next_retry_at = updated_at = now, lease cleared."""
    before = await running_job(queue, clock)
    assert before.lease_expires_at is not None
    clock.set(before.lease_expires_at)
    assert await queue.rescue_expired_jobs() == 1
    now = clock()
    assert await get(queue, before.id) == dataclasses.replace(
        before,
        status=PENDING,
        worker_id=None,
        error="lease expired",
        next_retry_at=now,
        lease_expires_at=None,
        updated_at=now,
    )


async def test_rescue_writes_a_final_failure_at_max_attempts(
    queue: JobQueue, clock: FakeClock
) -> None:
    """rescue once attempts >= max_attempts: failed, worker and attempts kept, error
    'lease expired', finished_at = updated_at = now, lease cleared."""
    await create(queue, max_attempts=2)
    first = await claim(queue)
    await queue.fail_job(first.id, "e", clock())
    before = await claim(queue)
    assert before.attempts == 2
    clock.advance(LEASE + timedelta(seconds=1))
    assert await queue.rescue_expired_jobs() == 1
    now = clock()
    assert await get(queue, before.id) == dataclasses.replace(
        before,
        status=FAILED,
        error="lease expired",
        finished_at=now,
        lease_expires_at=None,
        updated_at=now,
    )


async def test_rescue_takes_only_expired_leases(queue: JobQueue, clock: FakeClock) -> None:
    """Leases expire at ``lease_expires_at`` exactly, not a microsecond earlier; rescue
    returns how many jobs it moved and leaves the others running."""
    await create(queue)
    early = await claim(queue, "early")
    clock.advance(5)
    await create(queue)
    late = await claim(queue, "late")
    clock.advance(LEASE - timedelta(seconds=5, microseconds=1))
    assert await queue.rescue_expired_jobs() == 0
    clock.advance(timedelta(microseconds=1))
    assert await queue.rescue_expired_jobs() == 1
    assert (await get(queue, early.id)).status is PENDING
    assert await get(queue, late.id) == late
    assert await queue.rescue_expired_jobs() == 0


async def test_rescued_jobs_wait_behind_fresh_ones(queue: JobQueue, clock: FakeClock) -> None:
    """A rescued job is a retry: a fresh job of the same priority created later is
    claimed before it."""
    rescued = await create(queue)
    await claim(queue)
    clock.advance(LEASE)
    await queue.rescue_expired_jobs()
    fresh = await create(queue)
    assert [j.id for j in await queue.claim_jobs("w", 2)] == [fresh.id, rescued.id]


# ------------------------------------------------------------- operators


@pytest.mark.parametrize("status", [FAILED, CANCELLED])
async def test_retry_job_makes_a_finished_job_new_again(
    queue: JobQueue, clock: FakeClock, status: JobStatus
) -> None:
    """``retry_job`` of a failed or cancelled job: pending, attempts 0, worker,
    next_retry_at, finished_at, stats and lease cleared, error kept, updated_at now; it
    is claimed like a fresh job."""
    before = await running_job(queue, clock)
    if status is FAILED:
        await queue.fail_job(before.id, "gave up")
    else:
        await queue.cancel_job(before.id, {"partial": 1})
    stopped = await get(queue, before.id)
    clock.advance(1)
    retried = await queue.retry_job(before.id)
    assert retried == dataclasses.replace(
        stopped,
        status=PENDING,
        attempts=0,
        worker_id=None,
        next_retry_at=None,
        finished_at=None,
        stats=None,
        lease_expires_at=None,
        updated_at=clock(),
    )
    assert await get(queue, before.id) == retried
    later = await create(queue)
    assert [j.id for j in await queue.claim_jobs("w", 2)] == [before.id, later.id]


@pytest.mark.parametrize("status", [PENDING, RUNNING, COMPLETED])
async def test_retry_job_refuses_other_statuses(queue: JobQueue, status: JobStatus) -> None:
    """``retry_job`` of a pending, running or completed job raises
    ``InvalidTransitionError`` and changes nothing."""
    job = await job_in(queue, status)
    with pytest.raises(InvalidTransitionError):
        await queue.retry_job(job.id)
    assert await get(queue, job.id) == job


async def test_purge_deletes_finished_jobs_before_the_cutoff(
    queue: JobQueue, clock: FakeClock
) -> None:
    """``purge_jobs`` deletes terminal jobs in the given statuses whose ``finished_at``
    is strictly before the cutoff, returns how many, and updates the counts; live jobs
    are never deleted."""
    old = {s: await job_in(queue, s) for s in (COMPLETED, FAILED, CANCELLED)}
    cutoff = clock.advance(10)
    at_cutoff = await job_in(queue, COMPLETED)
    live = [await job_in(queue, PENDING), await job_in(queue, RUNNING)]
    clock.advance(10)
    assert await queue.purge_jobs(cutoff, ["failed"]) == 1
    assert await queue.get_job(old[FAILED].id) is None
    assert await queue.purge_jobs(cutoff) == 2
    assert await queue.purge_jobs(cutoff) == 0
    assert await get(queue, at_cutoff.id) == at_cutoff
    for job in live:
        assert await get(queue, job.id) == job
    counts = await queue.counts()
    assert counts == {PENDING: 1, RUNNING: 1, COMPLETED: 1, FAILED: 0, CANCELLED: 0}
    assert await queue.purge_jobs(clock()) == 1


# ----------------------------------------------------------------- reads


async def test_counts_cover_every_status(queue: JobQueue) -> None:
    """``counts`` has a key for every status (zero included) and agrees with
    ``count_by_status`` and ``list_jobs``."""
    assert await queue.counts() == dict.fromkeys(JobStatus, 0)
    for status in (PENDING, PENDING, RUNNING, COMPLETED, CANCELLED, CANCELLED, CANCELLED):
        await job_in(queue, status)
    counts = await queue.counts()
    assert counts == {PENDING: 2, RUNNING: 1, COMPLETED: 1, FAILED: 0, CANCELLED: 3}
    for status in JobStatus:
        assert await queue.count_by_status(status) == counts[status]
        assert len(await queue.list_jobs(status)) == counts[status]


async def test_list_jobs_is_newest_first_with_filter_and_limit(
    queue: JobQueue, clock: FakeClock
) -> None:
    """``list_jobs`` returns the exact reverse of creation order (clock ties broken by
    call and list order), filtered by status, at most ``limit`` jobs."""
    a = await create(queue, "a")
    batch = await queue.create_jobs([CreateJobRequest(k) for k in "bcd"])
    clock.advance(1)
    e = await create(queue, "e")
    await queue.cancel_job(batch[1].id)
    assert [j.kind for j in await queue.list_jobs()] == ["e", "d", "c", "b", "a"]
    assert [j.kind for j in await queue.list_jobs(limit=2)] == ["e", "d"]
    assert [j.kind for j in await queue.list_jobs("pending", limit=3)] == ["e", "d", "b"]
    assert [j.id for j in await queue.list_jobs(CANCELLED)] == [batch[1].id]
    assert await queue.list_jobs(FAILED) == []
    assert (await queue.list_jobs())[-1] == a and (await queue.list_jobs())[0] == e


async def test_returned_jobs_never_share_state_with_the_store(queue: JobQueue) -> None:
    """Mutating a returned job's payload or stats, or the request's payload after
    ``create_job``, does not change what the queue stores."""
    request = CreateJobRequest("k", {"list": [1], "nested": {"a": 1}})
    job = await queue.create_job(request)
    request.payload["list"].append("leak")
    request.payload["nested"]["b"] = "leak"
    job.payload["list"].append("leak")
    stored = await get(queue, job.id)
    assert stored.payload == {"list": [1], "nested": {"a": 1}}
    twin = await queue.create_job(request)
    twin.payload["nested"]["c"] = "leak"
    await claim(queue)
    stats = {"items": [1, 2]}
    await queue.complete_job(job.id, stats)
    stats["items"].append(3)
    done = await get(queue, job.id)
    assert done.stats is not None
    done.stats["items"].append(4)
    assert (await get(queue, job.id)).stats == {"items": [1, 2]}
    assert (await get(queue, twin.id)).payload == request.payload


# -------------------------------------------------------------- wake-ups


async def _wakes_within(queue: JobQueue, trigger: Callable[[], Awaitable[object]]) -> float:
    """Seconds until a ``wait_for_jobs(30)`` returns after ``trigger`` runs."""
    waiter = asyncio.create_task(queue.wait_for_jobs(30))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    started = time.monotonic()
    await trigger()
    await asyncio.wait_for(waiter, 10)
    return time.monotonic() - started


async def test_wait_for_jobs_wakes_on_create_release_retry_and_rescue(
    queue: JobQueue, clock: FakeClock
) -> None:
    """An idle ``wait_for_jobs`` returns early when a job becomes claimable: created,
    released, retried by an operator, failed with a due retry, or rescued."""
    await _wakes_within(queue, lambda: create(queue))
    job = await claim(queue)
    await _wakes_within(queue, lambda: queue.release_job(job.id))
    await claim(queue)
    await queue.fail_job(job.id, "e")
    await _wakes_within(queue, lambda: queue.retry_job(job.id))
    await claim(queue)
    await _wakes_within(queue, lambda: queue.fail_job(job.id, "e", clock()))
    await claim(queue)
    clock.advance(LEASE)
    await _wakes_within(queue, queue.rescue_expired_jobs)


async def test_wait_for_jobs_times_out_when_nothing_happens(queue: JobQueue) -> None:
    """Without a new claimable job, ``wait_for_jobs`` returns after its timeout."""
    started = time.monotonic()
    await queue.wait_for_jobs(0.05)
    assert time.monotonic() - started >= 0.04


async def test_wait_for_jobs_is_woken_from_another_thread() -> None:
    """A waiter on ``memory://NAME`` is woken by a job created from another thread's
    event loop."""
    name = unique_name()
    async with jobqueue.connect(f"memory://{name}") as q:

        async def create_elsewhere() -> None:
            async with jobqueue.connect(f"memory://{name}") as there:
                await create(there)

        await _wakes_within(q, lambda: asyncio.to_thread(lambda: asyncio.run(create_elsewhere())))


# ------------------------------------------------------------ concurrency


class ClaimHistory:
    """What concurrent claimers saw, checked for double claims, lost and unexpected jobs.

    A claimer records a claim right after it returns and gives a job up right before
    the call that relinquishes it, so a job recorded as held by two claimers at once was
    handed out twice. Every job is released once or failed with a retry once (by its
    number), so attempts are checked too: a release gives the attempt back, a retry uses
    the next one.
    """

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.lock = threading.Lock()
        self.created: set[UUID] = set()
        self.holders: dict[UUID, str] = {}
        self.next_attempt: dict[UUID, int] = {}
        self.detoured: set[UUID] = set()
        self.completed: Counter[UUID] = Counter()
        self.claims = 0
        self.claimers: set[str] = set()
        self.violations: list[str] = []

    def on_create(self, jobs: list[Job]) -> None:
        with self.lock:
            self.created.update(j.id for j in jobs)

    def on_claim(self, worker: str, jobs: list[Job]) -> None:
        with self.lock:
            self.claims += len(jobs)
            if jobs:
                self.claimers.add(worker)
            for job in jobs:
                holder = self.holders.get(job.id)
                if holder is not None:
                    self.violations.append(f"{job.id} claimed by {worker}, held by {holder}")
                self.holders[job.id] = worker
                want = self.next_attempt.get(job.id, 1)
                if job.attempts != want or job.worker_id != worker:
                    self.violations.append(f"{job.id}: attempt {job.attempts}, expected {want}")

    def give_up(self, job: Job) -> str:
        """Choose what to do with a held job and stop holding it: release, retry or complete."""
        with self.lock:
            del self.holders[job.id]
            if job.id not in self.detoured and job.payload["n"] % 5 < 2:
                self.detoured.add(job.id)
                release = job.payload["n"] % 5 == 0
                self.next_attempt[job.id] = job.attempts if release else job.attempts + 1
                return "release" if release else "retry"
            return "complete"

    def on_complete(self, job: Job) -> None:
        with self.lock:
            self.completed[job.id] += 1

    def done(self) -> bool:
        with self.lock:
            return self.completed.total() >= self.expected

    def check(self, counts: dict[JobStatus, int]) -> None:
        assert self.violations == []
        assert len(self.created) == self.expected
        lost = self.created - set(self.completed)
        unexpected = set(self.completed) - self.created
        assert (lost, unexpected) == (set(), set())
        assert set(self.completed.values()) <= {1}
        assert counts == {**dict.fromkeys(JobStatus, 0), COMPLETED: self.expected}


async def run_claimer(q: JobQueue, worker: str, history: ClaimHistory, batch: int) -> None:
    """Claim, then release, retry or complete (fenced) each job, until all are done."""
    while not history.done():
        jobs = await q.claim_jobs(worker, batch)
        history.on_claim(worker, jobs)
        if not jobs:
            await q.wait_for_jobs(0.005)
            continue
        for job in jobs:
            await asyncio.sleep(0)
            action = history.give_up(job)
            fence: dict[str, Any] = {"worker_id": worker, "attempt": job.attempts}
            if action == "release":
                assert await q.release_job(job.id)
            elif action == "retry":
                await q.fail_job(job.id, "again", q.now(), **fence)
            else:
                await q.complete_job(job.id, {"by": worker}, **fence)
                history.on_complete(job)


async def run_producer(
    q: JobQueue, history: ClaimHistory, first: int, count: int, batch: int
) -> None:
    for start in range(first, first + count, batch):
        stop = min(start + batch, first + count)
        jobs = await q.create_jobs([CreateJobRequest("k", {"n": n}) for n in range(start, stop)])
        history.on_create(jobs)
        await asyncio.sleep(0)


async def run_workload(
    q: JobQueue, history: ClaimHistory, claimers: int, batch: int, produce: list[tuple[int, int]]
) -> None:
    """Claimers and producers (``(first number, count)`` each) as tasks of this loop."""
    tasks = [
        run_claimer(q, f"{threading.get_ident()}-{i}", history, batch) for i in range(claimers)
    ]
    tasks += [run_producer(q, history, first, count, 7) for first, count in produce]
    await asyncio.wait_for(asyncio.gather(*tasks), 20)


@given(
    claimers=st.integers(100, 300),
    producers=st.integers(1, 4),
    jobs_per_producer=st.integers(0, 150),
    batch=st.integers(1, 8),
)
def test_concurrent_tasks_never_share_or_lose_a_job(
    claimers: int, producers: int, jobs_per_producer: int, batch: int
) -> None:
    """Hundreds of claiming tasks on one queue while others create jobs: no job is held
    by two claimers at once, attempts count as specified, and every created job is
    completed exactly once (none lost, none unexpected)."""
    total = producers * jobs_per_producer
    history = ClaimHistory(total)
    produce = [(p * jobs_per_producer, jobs_per_producer) for p in range(producers)]

    async def scenario() -> dict[JobStatus, int]:
        async with jobqueue.connect("memory://") as q:
            await run_workload(q, history, claimers, batch, produce)
            return await q.counts()

    counts = asyncio.run(scenario())
    note(f"{history.claims} claims for {total} jobs")
    history.check(counts)


@pytest.fixture
def fast_thread_switching() -> Iterator[None]:
    """Make the interpreter switch threads far more often, to provoke races."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("fast_thread_switching")
def test_threads_with_their_own_loops_never_share_or_lose_a_job() -> None:
    """Several threads, each running its own event loop with many claiming tasks on one
    ``memory://NAME`` queue, while other threads create jobs: no job is held twice,
    none is lost, none is unexpected (threads switch far more often than usual)."""
    name = f"memory://{unique_name()}"
    per_producer, producers, claim_threads = 1000, 2, 4
    history = ClaimHistory(per_producer * producers)
    plans: list[tuple[int, list[tuple[int, int]]]] = [(40, []) for _ in range(claim_threads)]
    plans += [(0, [(p * per_producer, per_producer)]) for p in range(producers)]
    errors: list[BaseException] = []

    async def workload_on(url: str, claimers: int, produce: list[tuple[int, int]]) -> None:
        async with jobqueue.connect(url) as q:
            await run_workload(q, history, claimers, 3, produce)

    def thread_main(claimers: int, produce: list[tuple[int, int]]) -> None:
        try:
            asyncio.run(workload_on(name, claimers, produce))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=thread_main, args=plan) for plan in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert errors == []
    assert not any(thread.is_alive() for thread in threads)

    async def counts() -> dict[JobStatus, int]:
        async with jobqueue.connect(name) as q:
            return await q.counts()

    history.check(asyncio.run(counts()))
    assert len({worker.partition("-")[0] for worker in history.claimers}) > 1


@given(st.lists(st.tuples(st.integers(-3, 3), st.booleans(), st.integers(0, 5)), max_size=60))
def test_ready_jobs_come_out_in_claim_order_however_they_went_in(
    keys: list[tuple[int, bool, int]],
) -> None:
    """The ready set of the memory store hands out its jobs in claim order whether they
    arrived in that order (the first-in, first-out run) or not (the heap)."""
    start = datetime(2030, 1, 1, tzinfo=UTC)
    ready = ReadyJobs()
    entries = []
    for seq, (priority, retry, minute) in enumerate(keys):
        record = Record(CreateJobRequest(kind="k", priority=priority), start, seq)
        entry = (-priority, retry, start + timedelta(minutes=minute), seq, 0, record)
        entries.append(entry)
        ready.push(entry)
    out = []
    while (head := ready.head()) is not None:
        ready.pop(head)
        out.append(head[3])
    assert out == [e[3] for e in sorted(entries, key=lambda e: e[:4])]
