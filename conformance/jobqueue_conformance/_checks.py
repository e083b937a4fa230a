"""The deterministic checks: one async function per rule of the contract.

Each check gets a :class:`Harness` (a fake clock and handles on an empty queue)
and fails with an ``AssertionError`` that says which rule was broken. The base
class turns every check registered here into a test method.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest

from jobqueue import (
    Completion,
    CreateJobRequest,
    InvalidRequestError,
    InvalidTransitionError,
    Job,
    JobNotFoundError,
    JobQueue,
    JobQueueError,
    JobStatus,
)

from ._harness import ConnectSpec, Harness
from ._model import LEASE_EXPIRED

__all__ = ["CHECKS", "Check"]

PENDING, RUNNING = JobStatus.PENDING, JobStatus.RUNNING
COMPLETED, FAILED, CANCELLED = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED
US = timedelta(microseconds=1)

CheckFunction = Callable[[Harness], Coroutine[Any, Any, None]] | Callable[[Harness], None]


@dataclass(frozen=True)
class Check:
    """One named check, the capabilities it needs, and the behaviour it verifies."""

    name: str
    function: CheckFunction
    requires: tuple[str, ...]
    doc: str

    def __call__(self, harness: Harness) -> None:
        __tracebackhide__ = True
        result = self.function(harness)
        if inspect.iscoroutine(result):
            harness.run(result)


CHECKS: list[Check] = []


def check(*requires: str) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check; ``requires`` names the capabilities without which it is skipped."""

    def register(function: CheckFunction) -> CheckFunction:
        doc = inspect.cleandoc(function.__doc__ or "")
        CHECKS.append(Check(function.__name__, function, requires, doc))
        return function

    return register


# --------------------------------------------------------------------- helpers


def req(kind: str = "task", **fields: Any) -> CreateJobRequest:
    return CreateJobRequest(kind=kind, **fields)


def fields_of(job: Job, **expected: Any) -> None:
    """Assert that ``job`` has every given field value."""
    wrong = {
        name: (getattr(job, name), want)
        for name, want in expected.items()
        if getattr(job, name) != want
    }
    assert not wrong, "\n".join(
        f"job {job.id} field {name}: backend has {got!r}, contract says {want!r}"
        for name, (got, want) in wrong.items()
    )


async def everything(queue: JobQueue) -> tuple[list[Job], dict[JobStatus, int]]:
    return await queue.list_jobs(limit=100_000), await queue.counts()


async def refused(queue: JobQueue, call: Awaitable[Any], error: type[Exception], what: str) -> None:
    """Assert ``call`` raises ``error`` and leaves every job exactly as it was."""
    before = await everything(queue)
    try:
        result = await call
    except error:
        pass
    except JobQueueError as exc:
        raise AssertionError(
            f"{what}: raised {type(exc).__name__} ({exc}), contract says {error.__name__}"
        ) from exc
    else:
        raise AssertionError(f"{what}: returned {result!r}, contract says {error.__name__}")
    after = await everything(queue)
    assert after == before, f"{what}: raised {error.__name__} but changed the queue"


async def claim(queue: JobQueue, worker: str = "w1", **kw: Any) -> Job:
    job = await queue.claim_job(worker, **kw)
    assert job is not None, "claim_job returned None although a job is claimable"
    return job


async def claim_all(queue: JobQueue, worker: str = "w1") -> list[Job]:
    claimed = []
    while (job := await queue.claim_job(worker)) is not None:
        claimed.append(job)
        assert len(claimed) <= 10_000, "claim_job keeps returning jobs"
    return claimed


async def get(queue: JobQueue, job_id: UUID) -> Job:
    job = await queue.get_job(job_id)
    assert job is not None, f"get_job({job_id}) is None for a job that exists"
    return job


def ids(jobs: list[Job]) -> list[UUID]:
    return [j.id for j in jobs]


def kinds(jobs: list[Job]) -> list[str]:
    return [j.kind for j in jobs]


# ------------------------------------------------------------------- creation


@check()
async def create_job_writes_a_fresh_pending_job(h: Harness) -> None:
    """create_job: pending, attempts 0, fresh UUID, created_at = updated_at = now, rest None."""
    queue = await h.fresh()
    now = h.clock()
    job = await queue.create_job(
        req(
            "harvest",
            payload={"source": 7, "tags": ["a", "ü"], "deep": {"x": None}},
            queue="q1",
            priority=3,
            max_attempts=2,
        )
    )
    assert isinstance(job.id, UUID), f"id must be a UUID, got {job.id!r}"
    fields_of(
        job,
        kind="harvest",
        payload={"source": 7, "tags": ["a", "ü"], "deep": {"x": None}},
        queue="q1",
        priority=3,
        status=PENDING,
        attempts=0,
        max_attempts=2,
        worker_id=None,
        error=None,
        stats=None,
        run_at=None,
        next_retry_at=None,
        lease_expires_at=None,
        created_at=now,
        updated_at=now,
        started_at=None,
        finished_at=None,
    )
    assert isinstance(job.status, JobStatus), f"status must be a JobStatus, got {job.status!r}"
    assert await queue.get_job(job.id) == job, "get_job differs from what create_job returned"
    other = await queue.create_job(req())
    assert other.id != job.id, "two jobs got the same id"
    assert await queue.get_job(uuid4()) is None, "get_job of an unknown id must be None"


@check()
async def datetimes_come_back_in_utc_to_the_microsecond(h: Harness) -> None:
    """Datetimes are aware, in UTC, the same instant to the microsecond on every field."""
    queue = await h.fresh()
    h.clock.advance(timedelta(microseconds=7))
    east = timezone(timedelta(hours=5, minutes=30))
    run_at = datetime(2030, 1, 1, 18, 0, 0, 654321, tzinfo=east)
    job = await queue.create_job(req(run_at=run_at))
    stored = await get(queue, job.id)
    for value in (job, stored):
        assert value.run_at == run_at, f"run_at {value.run_at!r} is not the instant {run_at!r}"
        assert value.created_at == h.clock(), "created_at is not the clock's time to the µs"
        for name in ("run_at", "created_at", "updated_at"):
            moment = getattr(value, name)
            assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0), (
                f"{name} {moment!r} is not in UTC"
            )


@check()
async def create_jobs_keeps_order_and_is_all_or_nothing(h: Harness) -> None:
    """create_jobs returns jobs in the order given; [] creates nothing; a bad item writes none."""
    queue = await h.fresh()
    assert await queue.create_jobs([]) == [], "create_jobs([]) must return []"
    jobs = await queue.create_jobs([req(f"k{i}") for i in range(5)])
    assert kinds(jobs) == [f"k{i}" for i in range(5)], "create_jobs changed the order"
    assert len(set(ids(jobs))) == 5, "create_jobs gave two jobs one id"
    for job in jobs:
        assert await queue.get_job(job.id) == job, "a batch-created job reads back differently"
    await refused(
        queue,
        queue.create_jobs([req("ok"), "not a request"]),  # type: ignore[list-item]
        InvalidRequestError,
        "create_jobs with one bad item",
    )


@check()
async def list_jobs_is_newest_first_with_filter_and_limit(h: Harness) -> None:
    """list_jobs: exactly the reverse of creation order (ties by call order), filter, limit
    (100 by default)."""
    queue = await h.fresh()
    made = [await queue.create_job(req("a0"))]
    made += await queue.create_jobs([req("b0"), req("b1")])
    made.append(await queue.create_job(req("a1")))
    h.clock.advance(1)
    made.append(await queue.create_job(req("c0")))
    assert kinds(await queue.list_jobs()) == ["c0", "a1", "b1", "b0", "a0"], (
        "list_jobs is not the exact reverse of creation order"
    )
    assert kinds(await queue.list_jobs(limit=2)) == ["c0", "a1"], "list_jobs ignores limit"
    await claim(queue)
    assert kinds(await queue.list_jobs(RUNNING)) == ["a0"], "status filter wrong"
    assert kinds(await queue.list_jobs("pending", limit=3)) == ["c0", "a1", "b1"], (
        "status given as a string, or limit with a filter, handled wrongly"
    )
    await queue.create_jobs([req(f"many{i}") for i in range(100)])
    listed = await queue.list_jobs()
    assert len(listed) == 100, f"list_jobs() without a limit must return 100, got {len(listed)}"
    assert listed[0].kind == "many99" and listed[-1].kind == "many0"


@check()
async def counts_and_count_by_status_agree(h: Harness) -> None:
    """counts() has every status; count_by_status matches it for each status."""
    queue = await h.fresh()
    assert await queue.counts() == dict.fromkeys(JobStatus, 0), "an empty queue must count zeros"
    jobs = await queue.create_jobs([req() for _ in range(6)])
    a, b, c, d = await queue.claim_jobs("w", 4)
    await queue.complete_job(a.id, {})
    await queue.fail_job(b.id, "x")
    await queue.cancel_job(c.id)
    await queue.cancel_job(jobs[5].id)
    expected = {PENDING: 1, RUNNING: 1, COMPLETED: 1, FAILED: 1, CANCELLED: 2}
    assert await queue.counts() == expected, "counts() miscounts"
    for status, n in expected.items():
        assert await queue.count_by_status(status) == n, f"count_by_status({status}) wrong"
        assert await queue.count_by_status(status.value) == n, "status string not accepted"
    assert d.status is RUNNING


# ----------------------------------------------------------------- claim order


@check()
async def claim_order_priority_then_fresh_then_oldest(h: Harness) -> None:
    """Claim order: highest priority, then fresh before retries, then oldest by creation order."""
    queue = await h.fresh()
    retry_low = await queue.create_job(req("retry-low", priority=0))
    retry_high = await queue.create_job(req("retry-high", priority=5))
    for job in await queue.claim_jobs("w", 2):
        await queue.fail_job(job.id, "boom", h.clock())
    h.clock.advance(1)
    await queue.create_job(req("fresh-low-old", priority=0))
    h.clock.advance(1)
    await queue.create_jobs([req("fresh-high", priority=5), req("fresh-neg", priority=-(2**31))])
    await queue.create_job(req("fresh-low-new", priority=0))
    await queue.create_job(req("fresh-max", priority=2**31 - 1))
    order = kinds(await claim_all(queue))
    assert order == [
        "fresh-max",
        "fresh-high",
        "retry-high",
        "fresh-low-old",
        "fresh-low-new",
        "retry-low",
        "fresh-neg",
    ], f"wrong claim order: {order}"
    assert {retry_low.id, retry_high.id} <= set(ids(await queue.list_jobs(RUNNING)))


@check()
async def claim_order_ties_follow_call_order_under_a_frozen_clock(h: Harness) -> None:
    """With equal created_at, jobs are claimed in the order of the create calls and batches."""
    queue = await h.fresh()
    expected = []
    for i in range(4):
        expected.append((await queue.create_job(req(f"single{i}"))).kind)
        batch = await queue.create_jobs([req(f"batch{i}-{j}") for j in range(3)])
        expected += kinds(batch)
    got = kinds(await queue.claim_jobs("w", 3)) + kinds(await claim_all(queue))
    assert got == expected, f"ties in created_at not broken by creation order: {got}"


@check()
async def claim_jobs_takes_a_batch_in_claim_order(h: Harness) -> None:
    """claim_jobs takes at most limit jobs, in claim order, each with the claim's fields."""
    queue = await h.fresh()
    await queue.create_jobs([req(f"k{i}", priority=i % 3) for i in range(7)])
    batch = await queue.claim_jobs("w", 4)
    assert kinds(batch) == ["k2", "k5", "k1", "k4"], f"batch not in claim order: {kinds(batch)}"
    now = h.clock()
    for job in batch:
        fields_of(
            job,
            status=RUNNING,
            worker_id="w",
            attempts=1,
            started_at=now,
            lease_expires_at=now + queue.lease,
            updated_at=now,
        )
    rest = await queue.claim_jobs("v", 100)
    assert kinds(rest) == ["k0", "k3", "k6"], "second batch wrong"
    assert await queue.claim_jobs("v", 5) == [], "claim_jobs on an empty queue must be []"
    assert await queue.claim_job("v") is None, "claim_job on an empty queue must be None"


@check()
async def claim_respects_queues(h: Harness) -> None:
    """claim with queues= takes only jobs of those queues."""
    queue = await h.fresh()
    await queue.create_jobs(
        [req("a", queue="alpha"), req("b", queue="beta", priority=9), req("g", queue="gamma")]
    )
    job = await claim(queue, queues=["alpha", "gamma"])
    assert job.kind == "a", f"claimed {job.kind} from queues alpha/gamma"
    assert kinds(await queue.claim_jobs("w", 5, queues=("gamma", "nowhere"))) == ["g"]
    assert await queue.claim_job("w", queues={"alpha"}) is None, "claimed from an empty queue"
    assert kinds(await queue.claim_jobs("w", 5)) == ["b"]


# --------------------------------------------------------------- timing


@check()
async def run_at_is_honoured_to_the_microsecond(h: Harness) -> None:
    """A job is not claimable before run_at and is claimable exactly at run_at."""
    queue = await h.fresh()
    later = await queue.create_job(req("later", run_at=h.clock() + timedelta(seconds=60)))
    await queue.create_job(req("past", run_at=h.clock() - timedelta(days=1)))
    assert (await claim(queue)).kind == "past", "a job with run_at in the past must be claimable"
    h.clock.advance(timedelta(seconds=60) - US)
    assert await queue.claim_job("w") is None, "claimed a job before its run_at"
    assert await queue.claim_jobs("w", 10) == [], "claim_jobs took a job before its run_at"
    h.clock.advance(US)
    job = await claim(queue)
    assert job.id == later.id and job.run_at == later.run_at


@check()
async def fail_with_retry_waits_for_next_retry_at(h: Harness) -> None:
    """fail_job with next_retry_at: pending again, claimable from that time on, as a retry."""
    queue = await h.fresh()
    job = await queue.create_job(req(max_attempts=1))
    await claim(queue)
    retry_at = h.clock() + timedelta(seconds=30)
    await queue.fail_job(job.id, "boom", retry_at)
    h.clock.advance(timedelta(seconds=30) - US)
    assert await queue.claim_job("w") is None, "claimed a retry before its next_retry_at"
    h.clock.advance(US)
    again = await claim(queue, "w2")
    fields_of(again, attempts=2, worker_id="w2", error="boom", next_retry_at=retry_at)


# ------------------------------------------------------ what each op writes


@check()
async def claim_writes_the_table_row(h: Harness) -> None:
    """claim: running, the claimer, attempts+1, error kept, started_at and lease from now."""
    queue = await h.fresh()
    job = await queue.create_job(req(run_at=h.clock()))
    await claim(queue, "w1")
    retry_at = h.clock() + timedelta(seconds=5)
    await queue.fail_job(job.id, "first", retry_at)
    h.clock.advance(10)
    now = h.clock()
    claimed = await claim(queue, "w2")
    fields_of(
        claimed,
        status=RUNNING,
        worker_id="w2",
        attempts=2,
        error="first",
        next_retry_at=retry_at,
        run_at=job.run_at,
        started_at=now,
        lease_expires_at=now + queue.lease,
        updated_at=now,
        created_at=job.created_at,
        finished_at=None,
        stats=None,
    )
    assert await get(queue, job.id) == claimed, "get_job differs from the claimed job"


@check()
async def complete_writes_the_table_row(h: Harness) -> None:
    """complete: completed, worker and attempts kept, stats stored, finished_at, lease cleared."""
    queue = await h.fresh()
    job = await queue.create_job(req())
    started = h.clock()
    await claim(queue, "w1")
    h.clock.advance(3)
    await queue.complete_job(job.id, {"records": 120, "nested": {"a": [1, 2]}})
    fields_of(
        await get(queue, job.id),
        status=COMPLETED,
        worker_id="w1",
        attempts=1,
        error=None,
        stats={"records": 120, "nested": {"a": [1, 2]}},
        finished_at=h.clock(),
        lease_expires_at=None,
        updated_at=h.clock(),
        started_at=started,
    )


@check()
async def complete_jobs_applies_each_completion_on_its_own(h: Harness) -> None:
    """complete_jobs: each completion applied as complete_job would apply it; a refused
    one changes nothing and its error stands in its place; the others still apply."""
    queue = await h.fresh()
    jobs = await queue.create_jobs([req() for _ in range(5)])
    started = h.clock()
    claimed = await queue.claim_jobs("w1", 4)
    assert ids(claimed) == ids(jobs[:4]), "claim_jobs did not take the four oldest jobs"
    h.clock.advance(2)
    before = {j.id: await get(queue, j.id) for j in jobs}
    unknown = uuid4()
    results = await queue.complete_jobs(
        [
            Completion(jobs[0].id, {"n": 0, "nested": {"a": [1]}}, worker_id="w1", attempt=1),
            Completion(jobs[1].id),
            Completion(jobs[2].id, {"n": 2}, worker_id="w2"),
            Completion(jobs[3].id, {"n": 3}, attempt=2),
            Completion(jobs[4].id, {"n": 4}),
            Completion(unknown, {"n": 5}),
        ]
    )
    expected: list[type[Exception] | None] = [None, None, InvalidTransitionError]
    expected += [InvalidTransitionError, InvalidTransitionError, JobNotFoundError]
    got = [None if r is None else type(r) for r in results]
    assert got == expected, f"complete_jobs returned {results!r}, contract says {expected}"
    for position, stats in ((0, {"n": 0, "nested": {"a": [1]}}), (1, {})):
        fields_of(
            await get(queue, jobs[position].id),
            status=COMPLETED,
            worker_id="w1",
            attempts=1,
            stats=stats,
            finished_at=h.clock(),
            lease_expires_at=None,
            updated_at=h.clock(),
            started_at=started,
        )
    for job in jobs[2:]:
        assert await get(queue, job.id) == before[job.id], f"a refused completion changed {job.id}"
    assert await queue.get_job(unknown) is None, "a refused completion created a job"
    again = await queue.complete_jobs([Completion(jobs[0].id, worker_id="w1", attempt=1)])
    assert isinstance(again[0], InvalidTransitionError), "a repeated completion was not refused"
    assert await queue.complete_jobs([]) == [], "complete_jobs([]) must return []"


@check()
async def complete_jobs_takes_a_large_batch(h: Harness) -> None:
    """complete_jobs with a few hundred fenced completions of distinct stats applies each."""
    queue = await h.fresh()
    jobs = await queue.create_jobs([req() for _ in range(300)])
    claimed = await queue.claim_jobs("w1", 300)
    assert len(claimed) == 300, f"claim_jobs took {len(claimed)} of 300 claimable jobs"
    results = await queue.complete_jobs(
        Completion(j.id, {"i": i}, worker_id="w1", attempt=j.attempts)
        for i, j in enumerate(claimed)
    )
    assert results == [None] * 300, f"complete_jobs refused some of 300: {set(results)}"
    assert (await queue.counts())[COMPLETED] == 300, "not every job of the batch is completed"
    for i, job in enumerate(claimed):
        assert (await get(queue, job.id)).stats == {"i": i}, f"job {i} got the wrong stats"
    assert {j.id for j in jobs} == {j.id for j in claimed}


@check()
async def fail_writes_the_table_rows(h: Harness) -> None:
    """fail with retry: pending, worker cleared; final: failed, worker kept, finished_at."""
    queue = await h.fresh()
    job = await queue.create_job(req())
    await claim(queue, "w1")
    h.clock.advance(2)
    retry_at = h.clock() - timedelta(seconds=1)
    await queue.fail_job(job.id, "transient", retry_at)
    fields_of(
        await get(queue, job.id),
        status=PENDING,
        worker_id=None,
        attempts=1,
        error="transient",
        next_retry_at=retry_at,
        lease_expires_at=None,
        updated_at=h.clock(),
        finished_at=None,
    )
    await claim(queue, "w2")
    h.clock.advance(2)
    await queue.fail_job(job.id, "fatal")
    fields_of(
        await get(queue, job.id),
        status=FAILED,
        worker_id="w2",
        attempts=2,
        error="fatal",
        next_retry_at=retry_at,
        finished_at=h.clock(),
        lease_expires_at=None,
        updated_at=h.clock(),
    )


@check()
async def fail_never_looks_at_max_attempts(h: Harness) -> None:
    """fail_job with next_retry_at retries even past max_attempts: the caller decides."""
    queue = await h.fresh()
    job = await queue.create_job(req(max_attempts=1))
    for attempt in (1, 2, 3):
        claimed = await claim(queue)
        assert claimed.attempts == attempt
        await queue.fail_job(job.id, f"e{attempt}", h.clock())
    fields_of(await get(queue, job.id), status=PENDING, attempts=3, error="e3")


@check()
async def cancel_writes_the_table_row(h: Harness) -> None:
    """cancel: pending/running to cancelled, stats only when given, finished_at, lease cleared."""
    queue = await h.fresh()
    pending, running = await queue.create_jobs([req("p", priority=-1), req("r")])
    await claim(queue, "w1")
    h.clock.advance(1)
    await queue.cancel_job(pending.id)
    fields_of(
        await get(queue, pending.id),
        status=CANCELLED,
        worker_id=None,
        attempts=0,
        stats=None,
        finished_at=h.clock(),
        updated_at=h.clock(),
        lease_expires_at=None,
    )
    await queue.cancel_job(running.id, {"done": 3})
    fields_of(
        await get(queue, running.id),
        status=CANCELLED,
        worker_id="w1",
        attempts=1,
        stats={"done": 3},
        finished_at=h.clock(),
        updated_at=h.clock(),
        lease_expires_at=None,
    )


@check()
async def release_gives_the_attempt_back(h: Harness) -> None:
    """release_job: running to pending, worker cleared, attempts-1, lease cleared; else False."""
    queue = await h.fresh()
    job = await queue.create_job(req())
    await claim(queue, "w1")
    h.clock.advance(1)
    assert await queue.release_job(job.id) is True, "release_job of a running job must be True"
    fields_of(
        await get(queue, job.id),
        status=PENDING,
        worker_id=None,
        attempts=0,
        lease_expires_at=None,
        updated_at=h.clock(),
        error=None,
    )
    again = await claim(queue, "w2")
    assert again.attempts == 1, "after a release the next claim must be attempt 1 again"
    await queue.complete_job(job.id, {})
    before = await get(queue, job.id)
    assert await queue.release_job(job.id) is False, "release_job of a completed job must be False"
    assert await queue.release_job(str(job.id)) is False, "a UUID string must be accepted"
    assert await get(queue, job.id) == before, "release_job changed a completed job"
    await queue.create_job(req())
    other = await queue.create_job(req())
    assert await queue.release_job(other.id) is False, "release_job of a pending job must be False"
    await refused(queue, queue.release_job(uuid4()), JobNotFoundError, "release_job(unknown id)")


@check()
async def release_worker_jobs_releases_only_that_workers_running_jobs(h: Harness) -> None:
    """release_worker_jobs releases every running job of the worker and returns how many."""
    queue = await h.fresh()
    await queue.create_jobs([req() for _ in range(5)])
    mine = await queue.claim_jobs("me", 3)
    theirs = await claim(queue, "them")
    await queue.complete_job(mine[0].id, {})
    h.clock.advance(1)
    assert await queue.release_worker_jobs("me") == 2, "wrong number released"
    for job in mine[1:]:
        fields_of(
            await get(queue, job.id),
            status=PENDING,
            worker_id=None,
            attempts=0,
            updated_at=h.clock(),
        )
    fields_of(await get(queue, mine[0].id), status=COMPLETED, worker_id="me")
    fields_of(await get(queue, theirs.id), status=RUNNING, worker_id="them")
    assert await queue.release_worker_jobs("me") == 0
    assert await queue.release_worker_jobs("nobody") == 0


# ------------------------------------------------------------- leases, rescue


@check()
async def rescue_moves_expired_leases_exactly_at_expiry(h: Harness) -> None:
    """rescue: lease_expires_at <= now goes back to pending as a retry (after fresh jobs)."""
    queue = await h.fresh()
    job = await queue.create_job(req(max_attempts=3))
    claimed = await claim(queue, "w1")
    h.clock.advance(queue.lease - US)
    assert await queue.rescue_expired_jobs() == 0, "rescued a job whose lease has not expired"
    h.clock.advance(US)
    assert h.clock() == claimed.lease_expires_at
    fresh = await queue.create_job(req("fresh"))
    assert await queue.rescue_expired_jobs() == 1, "a lease expiring now must be rescued"
    fields_of(
        await get(queue, job.id),
        status=PENDING,
        worker_id=None,
        attempts=1,
        error=LEASE_EXPIRED,
        next_retry_at=h.clock(),
        lease_expires_at=None,
        updated_at=h.clock(),
        finished_at=None,
    )
    assert await queue.rescue_expired_jobs() == 0, "rescue moved a job twice"
    assert (await claim(queue)).id == fresh.id, "a rescued job must be claimed after fresh jobs"
    assert (await claim(queue)).id == job.id


@check()
async def rescue_fails_a_job_that_used_max_attempts(h: Harness) -> None:
    """rescue: attempts >= max_attempts goes to failed, worker kept, finished_at = now."""
    queue = await h.fresh()
    job = await queue.create_job(req(max_attempts=2))
    for attempt in (1, 2):
        await claim(queue, f"w{attempt}")
        h.clock.advance(queue.lease)
        assert await queue.rescue_expired_jobs() == 1
    fields_of(
        await get(queue, job.id),
        status=FAILED,
        worker_id="w2",
        attempts=2,
        error=LEASE_EXPIRED,
        finished_at=h.clock(),
        lease_expires_at=None,
        updated_at=h.clock(),
    )
    assert await queue.claim_job("w") is None, "a failed job must not be claimable"


@check()
async def heartbeat_renews_leases_and_reports_live_jobs(h: Harness) -> None:
    """heartbeat renews leases (also expired, unrescued ones), leaves updated_at, returns ids."""
    queue = await h.fresh()
    await queue.create_jobs([req() for _ in range(4)])
    a, b, c = await queue.claim_jobs("w1", 3)
    other = await claim(queue, "w2")
    claimed_at = h.clock()
    h.clock.advance(queue.lease + timedelta(seconds=1))
    await queue.cancel_job(c.id)
    h.clock.advance(1)
    live = await queue.heartbeat("w1")
    assert live == {a.id, b.id}, f"heartbeat returned {live}, the running jobs are {a.id, b.id}"
    for job in (a, b):
        fields_of(
            await get(queue, job.id),
            lease_expires_at=h.clock() + queue.lease,
            updated_at=claimed_at,
            status=RUNNING,
        )
    assert await queue.rescue_expired_jobs() == 1, "only the other worker's job had expired"
    fields_of(await get(queue, other.id), status=PENDING, error=LEASE_EXPIRED)
    assert await queue.heartbeat("w2") == set(), "a rescued job must not be reported"
    assert await queue.heartbeat("nobody") == set()


# -------------------------------------------------------------------- fencing


@check()
async def fenced_outcomes_need_the_right_worker_and_attempt(h: Harness) -> None:
    """Fenced complete/fail/cancel: job running and each given value matching, else refused."""
    queue = await h.fresh()
    job = await queue.create_job(req())
    await claim(queue, "w1")
    calls: list[tuple[str, Callable[..., Awaitable[None]]]] = [
        ("complete", lambda **f: queue.complete_job(job.id, {}, **f)),
        ("fail", lambda **f: queue.fail_job(job.id, "e", **f)),
        ("fail with retry", lambda **f: queue.fail_job(job.id, "e", h.clock(), **f)),
        ("cancel", lambda **f: queue.cancel_job(job.id, **f)),
    ]
    for name, call in calls:
        for fence in (
            {"worker_id": "w2"},
            {"attempt": 2},
            {"attempt": 0},
            {"worker_id": "w1", "attempt": 2},
            {"worker_id": "w2", "attempt": 1},
        ):
            await refused(
                queue,
                call(**fence),
                InvalidTransitionError,
                f"{name} fenced with {fence} on a job held by w1 in attempt 1",
            )
    await queue.complete_job(job.id, {"ok": True}, worker_id="w1", attempt=1)
    fields_of(await get(queue, job.id), status=COMPLETED, stats={"ok": True})
    pending = await queue.create_job(req())
    await refused(
        queue,
        queue.cancel_job(pending.id, worker_id="w1"),
        InvalidTransitionError,
        "a fenced cancel of a pending job",
    )
    await queue.cancel_job(pending.id)


@check()
async def a_rescued_worker_can_never_overwrite_the_outcome(h: Harness) -> None:
    """After rescue and a new claim, the old worker's fenced calls are refused."""
    queue = await h.fresh()
    job = await queue.create_job(req())
    first = await claim(queue, "w1")
    h.clock.advance(queue.lease)
    assert await queue.rescue_expired_jobs() == 1
    await refused(
        queue,
        queue.complete_job(job.id, {}, worker_id="w1", attempt=1),
        InvalidTransitionError,
        "a stale complete after rescue, before re-claim",
    )
    second = await claim(queue, "w1")
    assert second.attempts == first.attempts + 1, "a rescued job keeps its attempt"
    for call in (
        queue.complete_job(job.id, {}, worker_id="w1", attempt=1),
        queue.fail_job(job.id, "late", worker_id="w1", attempt=1),
        queue.cancel_job(job.id, attempt=1),
    ):
        await refused(queue, call, InvalidTransitionError, "a stale fenced call (old attempt)")
    await queue.complete_job(job.id, {}, worker_id="w1", attempt=2)
    await refused(
        queue,
        queue.complete_job(job.id, {}, worker_id="w1", attempt=2),
        InvalidTransitionError,
        "completing a completed job again",
    )


@check()
async def transitions_not_listed_are_refused(h: Harness) -> None:
    """complete/fail a non-running job, cancel a terminal one, retry a live one: refused."""
    queue = await h.fresh()
    done, failed, cancelled, running = await queue.create_jobs([req() for _ in range(4)])
    await queue.claim_jobs("w", 4)
    await queue.complete_job(done.id, {})
    await queue.fail_job(failed.id, "x")
    await queue.cancel_job(cancelled.id)
    pending = await queue.create_job(req())
    for job_id in (pending.id, done.id, failed.id, cancelled.id):
        status = (await get(queue, job_id)).status
        await refused(
            queue,
            queue.complete_job(job_id, {}),
            InvalidTransitionError,
            f"complete_job of a {status} job",
        )
        await refused(
            queue,
            queue.fail_job(job_id, "e"),
            InvalidTransitionError,
            f"fail_job of a {status} job",
        )
        await refused(
            queue,
            queue.fail_job(job_id, "e", h.clock()),
            InvalidTransitionError,
            f"fail_job with retry of a {status} job",
        )
    for job_id in (done.id, failed.id, cancelled.id):
        status = (await get(queue, job_id)).status
        await refused(
            queue, queue.cancel_job(job_id), InvalidTransitionError, f"cancel_job of a {status} job"
        )
    for job_id in (pending.id, running.id, done.id):
        status = (await get(queue, job_id)).status
        await refused(
            queue, queue.retry_job(job_id), InvalidTransitionError, f"retry_job of a {status} job"
        )


@check()
async def unknown_ids_raise_job_not_found(h: Harness) -> None:
    """An unknown id raises JobNotFoundError in every operation but get_job (None)."""
    queue = await h.fresh()
    await queue.create_job(req())
    ghost = uuid4()
    assert await queue.get_job(ghost) is None
    assert await queue.get_job(str(ghost)) is None
    for name, call in [
        ("complete_job", queue.complete_job(ghost, {})),
        ("complete_job fenced", queue.complete_job(ghost, {}, worker_id="w", attempt=1)),
        ("fail_job", queue.fail_job(ghost, "e")),
        ("fail_job with retry", queue.fail_job(str(ghost), "e", h.clock())),
        ("cancel_job", queue.cancel_job(ghost)),
        ("release_job", queue.release_job(ghost)),
        ("retry_job", queue.retry_job(ghost)),
    ]:
        await refused(queue, call, JobNotFoundError, f"{name} of an unknown id")


@check()
async def bad_input_is_rejected_before_any_write(h: Harness) -> None:
    """Every bad argument raises InvalidRequestError and changes nothing."""
    queue = await h.fresh()
    job = await queue.create_job(req())
    await claim(queue)
    naive = datetime(2030, 1, 1)
    calls: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("create_job(not a request)", lambda: queue.create_job("x")),  # type: ignore[arg-type]
        ("create_jobs(a string)", lambda: queue.create_jobs("abc")),  # type: ignore[arg-type]
        ("claim_job('')", lambda: queue.claim_job("")),
        ("claim_job(queues=[])", lambda: queue.claim_job("w", queues=[])),
        ("claim_job(queues='default')", lambda: queue.claim_job("w", queues="default")),
        ("claim_jobs(limit=0)", lambda: queue.claim_jobs("w", 0)),
        ("claim_jobs(limit=-1)", lambda: queue.claim_jobs("w", -1)),
        ("complete_job(non-UUID)", lambda: queue.complete_job("nope", {})),
        ("complete_job(stats=list)", lambda: queue.complete_job(job.id, [1])),  # type: ignore[arg-type]
        (
            "complete_job(stats with a non-JSON value)",
            lambda: queue.complete_job(job.id, {"x": object()}),
        ),
        ("complete_job(worker_id='')", lambda: queue.complete_job(job.id, {}, worker_id="")),
        ("complete_job(attempt=-1)", lambda: queue.complete_job(job.id, {}, attempt=-1)),
        ("complete_jobs(a string)", lambda: queue.complete_jobs("abc")),  # type: ignore[arg-type]
        (
            "complete_jobs(an element not a Completion)",
            lambda: queue.complete_jobs([Completion(job.id), job.id]),  # type: ignore[list-item]
        ),
        (
            "complete_jobs(one job twice)",
            lambda: queue.complete_jobs([Completion(job.id), Completion(str(job.id), {"n": 1})]),
        ),
        ("fail_job(naive next_retry_at)", lambda: queue.fail_job(job.id, "e", naive)),
        ("fail_job(error=int)", lambda: queue.fail_job(job.id, 3)),  # type: ignore[arg-type]
        ("cancel_job(stats=str)", lambda: queue.cancel_job(job.id, "x")),  # type: ignore[arg-type]
        ("get_job(int)", lambda: queue.get_job(12)),  # type: ignore[arg-type]
        ("list_jobs(limit=0)", lambda: queue.list_jobs(limit=0)),
        ("list_jobs(status='bogus')", lambda: queue.list_jobs("bogus")),
        ("count_by_status('bogus')", lambda: queue.count_by_status("bogus")),
        ("release_job(non-UUID)", lambda: queue.release_job("123")),
        ("release_worker_jobs('')", lambda: queue.release_worker_jobs("")),
        ("heartbeat('')", lambda: queue.heartbeat("")),
        ("retry_job(non-UUID)", lambda: queue.retry_job("x")),
        ("purge_jobs(naive)", lambda: queue.purge_jobs(naive)),
        (
            "purge_jobs(statuses=[pending])",
            lambda: queue.purge_jobs(h.clock(), statuses=["pending"]),
        ),
        ("purge_jobs(statuses=[])", lambda: queue.purge_jobs(h.clock(), statuses=[])),
    ]
    for what, call in calls:
        await refused(queue, call(), InvalidRequestError, what)
    requests: list[tuple[str, Callable[[], CreateJobRequest]]] = [
        ("empty kind", lambda: req("")),
        ("over-long kind", lambda: req("k" * 201)),
        ("payload not an object", lambda: req(payload=[1])),
        ("naive run_at", lambda: req(run_at=naive)),
        ("max_attempts 0", lambda: req(max_attempts=0)),
        ("empty queue name", lambda: req(queue="")),
        ("priority beyond 32 bits", lambda: req(priority=2**31)),
    ]
    for what, make in requests:
        try:
            make()
        except InvalidRequestError:
            continue
        raise AssertionError(f"CreateJobRequest with {what} must raise InvalidRequestError")
    completions: list[tuple[str, Callable[[], Completion]]] = [
        ("a job id not a UUID", lambda: Completion("nope")),
        ("stats not an object", lambda: Completion(job.id, [1])),  # type: ignore[arg-type]
        ("stats with a non-JSON value", lambda: Completion(job.id, {"x": {1}})),
        ("an empty worker_id", lambda: Completion(job.id, worker_id="")),
        ("attempt -1", lambda: Completion(job.id, attempt=-1)),
    ]
    for what, make_completion in completions:
        try:
            make_completion()
        except InvalidRequestError:
            continue
        raise AssertionError(f"Completion with {what} must raise InvalidRequestError")


# ------------------------------------------------------------ operator calls


@check()
async def retry_job_runs_a_finished_job_again_as_new(h: Harness) -> None:
    """retry_job: failed/cancelled to pending, attempts 0, worker, next_retry_at, finished_at,
    stats and lease cleared, error and started_at kept."""
    queue = await h.fresh()
    failed, cancelled = await queue.create_jobs([req("f"), req("c")])
    await claim(queue, "w1")
    started = h.clock()
    await queue.fail_job(failed.id, "broken", h.clock())
    await claim(queue, "w1")
    await claim(queue, "w1")
    await queue.fail_job(failed.id, "really broken")
    await queue.cancel_job(cancelled.id, {"partial": 1})
    h.clock.advance(5)
    again = await queue.retry_job(failed.id)
    fields_of(
        again,
        status=PENDING,
        attempts=0,
        worker_id=None,
        next_retry_at=None,
        finished_at=None,
        stats=None,
        lease_expires_at=None,
        error="really broken",
        updated_at=h.clock(),
        created_at=failed.created_at,
        started_at=started,
    )
    assert await get(queue, failed.id) == again, "retry_job's result differs from get_job"
    again_c = await queue.retry_job(str(cancelled.id))
    fields_of(again_c, status=PENDING, attempts=0, worker_id=None, stats=None, finished_at=None)
    order = kinds(await claim_all(queue))
    assert order == ["f", "c"], f"retried jobs are claimed as fresh jobs in creation order: {order}"


@check()
async def purge_jobs_deletes_only_old_terminal_jobs(h: Harness) -> None:
    """purge_jobs deletes terminal jobs in the given statuses with finished_at < cutoff."""
    queue = await h.fresh()
    jobs = await queue.create_jobs([req(f"k{i}") for i in range(6)])
    done, failed, cancelled, running = await queue.claim_jobs("w", 4)
    await queue.complete_job(done.id, {})
    await queue.fail_job(failed.id, "x")
    cutoff = h.clock()
    await queue.cancel_job(cancelled.id)
    h.clock.advance(1)
    late = jobs[4]
    await queue.cancel_job(late.id)
    assert await queue.purge_jobs(cutoff) == 0, "purged jobs that finished exactly at the cutoff"
    assert await queue.purge_jobs(cutoff + US, statuses=[COMPLETED, "failed"]) == 2
    remaining = set(ids(await queue.list_jobs()))
    assert remaining == {cancelled.id, running.id, late.id, jobs[5].id}, "purged the wrong jobs"
    assert await queue.purge_jobs(h.clock() + US) == 2, "default statuses are all terminal ones"
    assert set(ids(await queue.list_jobs())) == {running.id, jobs[5].id}
    assert await queue.counts() == {PENDING: 1, RUNNING: 1, COMPLETED: 0, FAILED: 0, CANCELLED: 0}
    assert await queue.get_job(done.id) is None


# --------------------------------------------------------- handles and races


@check()
async def two_handles_share_one_queue(h: Harness) -> None:
    """Two handles on one queue see each other's writes at once."""
    first = await h.fresh()
    second = await h.open()
    job = await first.create_job(req())
    claimed = await claim(second, "w2")
    assert claimed.id == job.id, "a job created on one handle was not claimable on another"
    await first.complete_job(job.id, {"by": "first"}, worker_id="w2", attempt=1)
    fields_of(await get(second, job.id), status=COMPLETED, stats={"by": "first"})


@check()
async def rescue_racing_completion_has_one_winner(h: Harness) -> None:
    """A fenced completion racing a rescue: exactly one of them wins for each job."""
    first = await h.fresh()
    second = await h.open()
    await first.create_jobs([req() for _ in range(20)])
    claimed = await first.claim_jobs("w", 20)
    assert len(claimed) == 20
    h.clock.advance(first.lease)

    async def complete(job: Job) -> bool:
        try:
            await first.complete_job(job.id, {}, worker_id="w", attempt=job.attempts)
        except InvalidTransitionError:
            return False
        return True

    results = await asyncio.gather(second.rescue_expired_jobs(), *map(complete, claimed))
    rescued, completed = results[0], results[1:]
    assert rescued + sum(completed) == 20, (
        f"{rescued} rescued and {sum(completed)} completed: both won for some job, or neither"
    )
    for job, won in zip(claimed, completed, strict=True):
        status = (await get(first, job.id)).status
        want = COMPLETED if won else PENDING
        assert status is want, (
            f"job {job.id} is {status}; its completion {'won' if won else 'lost'}"
        )


@check()
async def connect_honours_lease_and_refuses_unknown_options(h: Harness) -> None:
    """connect(lease=...) sets the lease every claim and heartbeat grants; an unknown option
    raises InvalidRequestError. (Needs open_queue to return a ConnectSpec.)"""
    if not isinstance(h.opener, ConnectSpec):
        pytest.skip("open_queue does not return a ConnectSpec, so connect() cannot be called")
    await h.fresh()
    try:
        await h.connect(surely_not_an_option_of_any_backend=1)
    except InvalidRequestError:
        pass
    else:
        raise AssertionError("connect() with an unknown option must raise InvalidRequestError")
    lease = timedelta(seconds=42, microseconds=5)
    queue = await h.connect(lease=lease)
    assert queue.lease == lease, f"queue.lease is {queue.lease}, connect was given {lease}"
    job = await queue.create_job(req())
    claimed = await claim(queue)
    assert claimed.lease_expires_at == h.clock() + lease, "the claim did not grant the lease"
    h.clock.advance(10)
    await queue.heartbeat("w1")
    fields_of(await get(queue, job.id), lease_expires_at=h.clock() + lease)
    h.clock.advance(lease - US)
    assert await queue.rescue_expired_jobs() == 0, "rescued before the lease expired"
    h.clock.advance(US)
    assert await queue.rescue_expired_jobs() == 1, "not rescued when the lease expired"


@check("persistent")
async def jobs_survive_reconnecting(h: Harness) -> None:
    """With `persistent`: every job and field reads back the same after closing every handle."""
    queue = await h.fresh()
    await queue.create_jobs([req(f"k{i}", payload={"i": i}, priority=i % 2) for i in range(5)])
    a, b = await queue.claim_jobs("w", 2)
    await queue.complete_job(a.id, {"ok": 1})
    before = await everything(queue)
    await queue.close()
    reopened = await h.open()
    assert await everything(reopened) == before, "jobs differ after reconnecting"
    await reopened.complete_job(b.id, {}, worker_id="w", attempt=1)


@check()
async def wait_for_jobs_returns_by_its_timeout(h: Harness) -> None:
    """wait_for_jobs(timeout) on an idle queue returns after about timeout seconds."""
    queue = await h.fresh()
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await asyncio.wait_for(queue.wait_for_jobs(0.2), 10)
    except TimeoutError:
        raise AssertionError("wait_for_jobs(0.2) was still waiting after 10 s") from None
    assert loop.time() - started < 10


@check("listen_notify")
async def wait_for_jobs_wakes_on_a_new_job(h: Harness) -> None:
    """With `listen_notify`: an idle wait_for_jobs returns soon after another handle creates
    a job."""
    waiter = await h.fresh()
    producer = await h.open()
    loop = asyncio.get_running_loop()
    started = loop.time()
    waiting = asyncio.create_task(waiter.wait_for_jobs(60))
    await asyncio.sleep(0.2)
    await producer.create_job(req())
    try:
        await asyncio.wait_for(waiting, 10)
    except TimeoutError:
        raise AssertionError("wait_for_jobs(60) did not wake within 10 s of a new job") from None
    assert loop.time() - started < 10


def _register_late_checks() -> None:
    from . import _concurrency, _machine

    # The state machine last: it is the slowest check, and a suite run with -x then
    # reports a concurrency bug in seconds rather than after every generated example.
    late: list[tuple[CheckFunction, tuple[str, ...]]] = [
        (_concurrency.concurrent_claimers_on_separate_handles, ()),
        (_concurrency.concurrent_claimers_in_separate_processes, ("concurrent_processes",)),
        (_machine.state_machine_agrees_with_the_model, ()),
    ]
    for function, requires in late:
        check(*requires)(function)


_register_late_checks()
