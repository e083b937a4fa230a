"""Bad input through every public ``JobQueue`` method (SPEC §"Bad input").

Each bad call must raise ``InvalidRequestError`` (a ``ValueError``) before the
backend is reached: the backend primitives are spied on, and the stored jobs are
compared before and after.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any
from uuid import UUID

import pytest

import jobqueue
from jobqueue import (
    CreateJobRequest,
    InvalidRequestError,
    InvalidTransitionError,
    JobNotFoundError,
    JobQueue,
    JobStatus,
)
from jobqueue.backend import (
    NO_FENCE,
    Fence,
    Outcome,
    check_outcome,
    explain_refusal,
    reject_unknown_options,
)
from jobqueue.testing import FakeClock

PRIMITIVES = [
    "_create_jobs",
    "_claim_jobs",
    "_complete_job",
    "_fail_job",
    "_cancel_job",
    "_get_job",
    "_list_jobs",
    "_release_job",
    "_release_worker_jobs",
    "_counts",
    "_count_by_status",
    "_heartbeat",
    "_rescue_expired_jobs",
    "_retry_job",
    "_purge_jobs",
    "_wait_for_jobs",
]
NAIVE = datetime(2030, 1, 1)
AWARE = datetime(2030, 1, 1, tzinfo=UTC)


@dataclass
class World:
    """A queue holding one job in each of several statuses, with its primitives spied on."""

    queue: JobQueue
    pending: UUID
    running: UUID
    completed: UUID
    failed: UUID
    calls: list[str]
    arguments: list[tuple[str, tuple[Any, ...]]]

    async def state(self) -> tuple[object, ...]:
        jobs = tuple(dataclasses.astuple(j) for j in await self.queue.list_jobs(limit=1000))
        return jobs, tuple((await self.queue.counts()).items())


@pytest.fixture
async def world() -> AsyncIterator[World]:
    """A memory queue with a pending, a running, a completed and a failed job."""
    async with jobqueue.connect("memory://", clock=FakeClock()) as queue:
        jobs = await queue.create_jobs([CreateJobRequest("k", {"n": n}) for n in range(4)])
        claimed = await queue.claim_jobs("w1", 3)
        await queue.complete_job(claimed[1].id, {})
        await queue.fail_job(claimed[2].id, "boom")
        calls: list[str] = []
        arguments: list[tuple[str, tuple[Any, ...]]] = []
        for name in PRIMITIVES:
            setattr(queue, name, _spy(calls, arguments, name, getattr(queue, name)))
        ids = (jobs[3].id, claimed[0].id, claimed[1].id, claimed[2].id)
        yield World(queue, *ids, calls, arguments)


def _spy(
    calls: list[str],
    arguments: list[tuple[str, tuple[Any, ...]]],
    name: str,
    method: Callable[..., Any],
) -> Callable[..., Any]:
    async def spied(*args: Any) -> Any:
        calls.append(name)
        arguments.append((name, args))
        return await method(*args)

    return spied


Call = Callable[[World], Awaitable[object]]
REQUEST = CreateJobRequest("k")


def _bad_generator() -> Any:
    yield CreateJobRequest("first")
    yield {"kind": "second"}


BAD_CALLS: dict[str, Call] = {
    # create
    "create_job(dict)": lambda w: w.queue.create_job({"kind": "k"}),  # type: ignore[arg-type]
    "create_job(None)": lambda w: w.queue.create_job(None),  # type: ignore[arg-type]
    "create_jobs(str)": lambda w: w.queue.create_jobs("kk"),  # type: ignore[arg-type]
    "create_jobs(mapping)": lambda w: w.queue.create_jobs({"kind": "k"}),  # type: ignore[dict-item]
    "create_jobs(None)": lambda w: w.queue.create_jobs(None),  # type: ignore[arg-type]
    "create_jobs(int)": lambda w: w.queue.create_jobs(3),  # type: ignore[arg-type]
    "create_jobs(good, bad)": lambda w: w.queue.create_jobs([REQUEST, "x"]),  # type: ignore[list-item]
    "create_jobs(generator, bad last)": lambda w: w.queue.create_jobs(_bad_generator()),
    "create_jobs(one request)": lambda w: w.queue.create_jobs(REQUEST),  # type: ignore[arg-type]
    # claim
    "claim_job(empty worker)": lambda w: w.queue.claim_job(""),
    "claim_job(None worker)": lambda w: w.queue.claim_job(None),  # type: ignore[arg-type]
    "claim_job(long worker)": lambda w: w.queue.claim_job("w" * 201),
    "claim_job(int worker)": lambda w: w.queue.claim_job(7),  # type: ignore[arg-type]
    "claim_job(queues=[])": lambda w: w.queue.claim_job("w", queues=[]),
    "claim_job(queues=set())": lambda w: w.queue.claim_job("w", queues=set()),
    "claim_job(queues=str)": lambda w: w.queue.claim_job("w", queues="default"),
    "claim_job(queues=bytes)": lambda w: w.queue.claim_job("w", queues=b"default"),  # type: ignore[arg-type]
    "claim_job(queues=[''])": lambda w: w.queue.claim_job("w", queues=[""]),
    "claim_job(queues=[int])": lambda w: w.queue.claim_job("w", queues=[1]),  # type: ignore[list-item]
    "claim_job(queues=int)": lambda w: w.queue.claim_job("w", queues=1),  # type: ignore[arg-type]
    "claim_jobs(limit=0)": lambda w: w.queue.claim_jobs("w", 0),
    "claim_jobs(limit=-1)": lambda w: w.queue.claim_jobs("w", -1),
    "claim_jobs(limit=True)": lambda w: w.queue.claim_jobs("w", True),
    "claim_jobs(limit=1.0)": lambda w: w.queue.claim_jobs("w", 1.0),  # type: ignore[arg-type]
    "claim_jobs(limit='2')": lambda w: w.queue.claim_jobs("w", "2"),  # type: ignore[arg-type]
    "claim_jobs(limit=None)": lambda w: w.queue.claim_jobs("w", None),  # type: ignore[arg-type]
    "claim_jobs(empty worker)": lambda w: w.queue.claim_jobs("", 5),
    "claim_jobs(queues=str)": lambda w: w.queue.claim_jobs("w", 5, queues="default"),
    "claim_jobs(queues=[])": lambda w: w.queue.claim_jobs("w", 5, queues=()),
    # complete
    "complete_job(bad id)": lambda w: w.queue.complete_job("not-a-uuid", {}),
    "complete_job(int id)": lambda w: w.queue.complete_job(123, {}),  # type: ignore[arg-type]
    "complete_job(None id)": lambda w: w.queue.complete_job(None, {}),  # type: ignore[arg-type]
    "complete_job(bytes id)": lambda w: w.queue.complete_job(w.running.bytes, {}),  # type: ignore[arg-type]
    "complete_job(stats=None)": lambda w: w.queue.complete_job(w.running, None),  # type: ignore[arg-type]
    "complete_job(stats=list)": lambda w: w.queue.complete_job(w.running, [1]),  # type: ignore[arg-type]
    "complete_job(stats nan)": lambda w: w.queue.complete_job(w.running, {"x": math.nan}),
    "complete_job(stats int key)": lambda w: w.queue.complete_job(w.running, {1: 2}),  # type: ignore[dict-item]
    "complete_job(stats set)": lambda w: w.queue.complete_job(w.running, {"s": {1}}),
    "complete_job(worker_id='')": lambda w: w.queue.complete_job(w.running, {}, worker_id=""),
    "complete_job(attempt=-1)": lambda w: w.queue.complete_job(w.running, {}, attempt=-1),
    "complete_job(attempt=True)": lambda w: w.queue.complete_job(w.running, {}, attempt=True),
    "complete_job(attempt='1')": lambda w: w.queue.complete_job(w.running, {}, attempt="1"),  # type: ignore[arg-type]
    # fail
    "fail_job(bad id)": lambda w: w.queue.fail_job("nope", "e"),
    "fail_job(error=None)": lambda w: w.queue.fail_job(w.running, None),  # type: ignore[arg-type]
    "fail_job(error=int)": lambda w: w.queue.fail_job(w.running, 5),  # type: ignore[arg-type]
    "fail_job(naive retry)": lambda w: w.queue.fail_job(w.running, "e", NAIVE),
    "fail_job(str retry)": lambda w: w.queue.fail_job(w.running, "e", "2030-01-01T00:00Z"),  # type: ignore[arg-type]
    "fail_job(float retry)": lambda w: w.queue.fail_job(w.running, "e", 5.0),  # type: ignore[arg-type]
    "fail_job(worker_id=None-ish)": lambda w: w.queue.fail_job(w.running, "e", worker_id=""),
    "fail_job(attempt=-1)": lambda w: w.queue.fail_job(w.running, "e", attempt=-1),
    # cancel
    "cancel_job(bad id)": lambda w: w.queue.cancel_job("nope"),
    "cancel_job(stats=list)": lambda w: w.queue.cancel_job(w.pending, []),  # type: ignore[arg-type]
    "cancel_job(stats nested set)": lambda w: w.queue.cancel_job(w.pending, {"a": [{1}]}),
    "cancel_job(worker_id='')": lambda w: w.queue.cancel_job(w.running, worker_id=""),
    "cancel_job(attempt=1.0)": lambda w: w.queue.cancel_job(w.running, attempt=1.0),  # type: ignore[arg-type]
    # reads
    "get_job(bad id)": lambda w: w.queue.get_job("123"),
    "get_job(None)": lambda w: w.queue.get_job(None),  # type: ignore[arg-type]
    "list_jobs(bad status)": lambda w: w.queue.list_jobs("done"),
    "list_jobs(upper status)": lambda w: w.queue.list_jobs("PENDING"),
    "list_jobs(int status)": lambda w: w.queue.list_jobs(1),  # type: ignore[arg-type]
    "list_jobs(limit=0)": lambda w: w.queue.list_jobs(limit=0),
    "list_jobs(limit=-5)": lambda w: w.queue.list_jobs(limit=-5),
    "list_jobs(limit=None)": lambda w: w.queue.list_jobs(limit=None),  # type: ignore[arg-type]
    "list_jobs(limit=False)": lambda w: w.queue.list_jobs(limit=False),
    "count_by_status(bad)": lambda w: w.queue.count_by_status("done"),
    "count_by_status(None)": lambda w: w.queue.count_by_status(None),  # type: ignore[arg-type]
    # release, heartbeat
    "release_job(bad id)": lambda w: w.queue.release_job("nope"),
    "release_worker_jobs('')": lambda w: w.queue.release_worker_jobs(""),
    "release_worker_jobs(None)": lambda w: w.queue.release_worker_jobs(None),  # type: ignore[arg-type]
    "heartbeat('')": lambda w: w.queue.heartbeat(""),
    "heartbeat(long)": lambda w: w.queue.heartbeat("w" * 201),
    # operators
    "retry_job(bad id)": lambda w: w.queue.retry_job("nope"),
    "purge_jobs(naive)": lambda w: w.queue.purge_jobs(NAIVE),
    "purge_jobs(None)": lambda w: w.queue.purge_jobs(None),  # type: ignore[arg-type]
    "purge_jobs(str)": lambda w: w.queue.purge_jobs("2030-01-01T00:00Z"),  # type: ignore[arg-type]
    "purge_jobs(bare status)": lambda w: w.queue.purge_jobs(AWARE, "failed"),
    "purge_jobs(no statuses)": lambda w: w.queue.purge_jobs(AWARE, []),
    "purge_jobs(live status)": lambda w: w.queue.purge_jobs(AWARE, ["failed", "pending"]),
    "purge_jobs(running)": lambda w: w.queue.purge_jobs(AWARE, [JobStatus.RUNNING]),
    "purge_jobs(bogus status)": lambda w: w.queue.purge_jobs(AWARE, ["gone"]),
    "wait_for_jobs(str)": lambda w: w.queue.wait_for_jobs("1"),  # type: ignore[arg-type]
    "wait_for_jobs(None)": lambda w: w.queue.wait_for_jobs(None),  # type: ignore[arg-type]
    "wait_for_jobs(nan)": lambda w: w.queue.wait_for_jobs(math.nan),
    "wait_for_jobs(bool)": lambda w: w.queue.wait_for_jobs(True),
}


@pytest.mark.parametrize("call", BAD_CALLS.values(), ids=BAD_CALLS.keys())
async def test_bad_argument_is_rejected_before_any_write(world: World, call: Call) -> None:
    """The call raises ``InvalidRequestError`` (also a ``ValueError``), no backend
    primitive runs, and every job and count is as before."""
    before = await world.state()
    world.calls.clear()
    with pytest.raises(InvalidRequestError) as info:
        await call(world)
    assert isinstance(info.value, ValueError)
    assert world.calls == []
    assert await world.state() == before


async def test_uuid_strings_are_accepted_as_job_ids(world: World) -> None:
    """Every method taking a job id accepts the id's string form, in any case."""
    q = world.queue
    assert (await q.get_job(str(world.pending))) is not None
    assert (await q.get_job(str(world.pending).upper())) is not None
    await q.complete_job(str(world.running), {"ok": 1})
    job = await q.get_job(world.running)
    assert job is not None and job.status is JobStatus.COMPLETED
    assert (await q.retry_job(str(world.failed))).status is JobStatus.PENDING
    await q.cancel_job(str(world.failed))
    assert await q.release_job(str(world.pending)) is False
    (claimed,) = await q.claim_jobs("w2", 1)
    await q.fail_job(str(claimed.id), "e")
    await q.retry_job(str(claimed.id))
    (again,) = await q.claim_jobs("w2", 1)
    assert await q.release_job(str(again.id)) is True


async def test_status_strings_are_accepted(world: World) -> None:
    """``list_jobs``, ``count_by_status`` and ``purge_jobs`` take a status's string value."""
    q = world.queue
    assert [j.id for j in await q.list_jobs("running")] == [world.running]
    assert [j.id for j in await q.list_jobs(JobStatus.RUNNING)] == [world.running]
    assert await q.count_by_status("completed") == 1
    assert await q.purge_jobs(AWARE + timedelta(days=1), ["completed"]) == 1
    assert await q.get_job(world.completed) is None
    assert await q.get_job(world.failed) is not None


async def test_create_jobs_of_nothing_is_nothing(world: World) -> None:
    """``create_jobs([])`` (or an empty generator) returns ``[]`` and touches nothing."""
    before = await world.state()
    world.calls.clear()
    assert await world.queue.create_jobs([]) == []
    assert await world.queue.create_jobs(iter([])) == []
    assert world.calls == []
    assert await world.state() == before


async def test_negative_wait_returns_at_once(world: World) -> None:
    """A negative ``wait_for_jobs`` timeout counts as zero (no error, no waiting)."""
    await world.queue.wait_for_jobs(-5)


async def test_queue_arguments_accept_any_collection(world: World) -> None:
    """``queues`` may be a list, tuple, set or generator of names; duplicates are harmless."""
    q = world.queue
    await q.create_job(CreateJobRequest("k", queue="a"))
    await q.create_job(CreateJobRequest("k", queue="b"))
    assert (await q.claim_job("w", queues=("a", "a"))) is not None
    assert (await q.claim_job("w", queues=(n for n in ["b"]))) is not None
    assert await q.claim_job("w", queues={"a", "b"}) is None


async def test_primitives_receive_normalised_values(world: World) -> None:
    """A backend's primitives only see normalised values: UUIDs for ids, ``JobStatus``
    members, UTC datetimes, plain dicts for stats, tuples of distinct queue names, a
    float timeout, and a ``Fence`` only when a fence was given."""
    q = world.queue
    zone = timezone(timedelta(hours=3))
    world.arguments.clear()
    await q.list_jobs("failed", 3)
    await q.count_by_status("running")
    await q.claim_job("w", queues=["b", "a", "b"])
    await q.fail_job(str(world.running), "e", datetime(2030, 1, 1, 3, tzinfo=zone))
    (job,) = await q.claim_jobs("w", 1)
    await q.complete_job(str(job.id).upper(), MappingProxyType({"t": (1, 2)}), attempt=1)
    await q.purge_jobs(datetime(2030, 1, 1, 3, tzinfo=zone), ["failed"])
    await q.wait_for_jobs(0)
    assert world.arguments == [
        ("_list_jobs", (JobStatus.FAILED, 3)),
        ("_count_by_status", (JobStatus.RUNNING,)),
        ("_claim_jobs", ("w", 1, ("b", "a"))),
        ("_fail_job", (world.running, "e", AWARE, NO_FENCE)),
        ("_claim_jobs", ("w", 1, None)),
        ("_complete_job", (job.id, {"t": [1, 2]}, Fence(None, 1))),
        ("_purge_jobs", (AWARE, frozenset({JobStatus.FAILED}))),
        ("_wait_for_jobs", (0.0,)),
    ]
    for _, args in world.arguments:
        for value in args:
            if isinstance(value, datetime):
                assert value.tzinfo is UTC
    assert type(world.arguments[2][1][2]) is tuple
    assert type(world.arguments[5][1][1]) is dict
    assert type(world.arguments[7][1][0]) is float


# ------------------------------------------------ the backend author's kit


@dataclass(frozen=True)
class State:
    status: JobStatus
    worker_id: str | None = None
    attempts: int = 0


JOB_ID = UUID(int=7)
PENDING, RUNNING = JobStatus.PENDING, JobStatus.RUNNING
COMPLETED, FAILED, CANCELLED = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED


def test_reject_unknown_options_names_unknown_and_known_ones() -> None:
    """``reject_unknown_options`` passes known options and otherwise raises
    ``InvalidRequestError`` naming every unknown option and the known ones."""
    reject_unknown_options("acme", {"pool": 1}, ["pool", "timeout"])
    with pytest.raises(InvalidRequestError) as info:
        reject_unknown_options("acme", {"zeta": 1, "alpha": 2, "pool": 3}, ["pool", "timeout"])
    assert "acme://" in str(info.value)
    assert "alpha, zeta" in str(info.value)
    assert "pool, timeout" in str(info.value)


@pytest.mark.parametrize(
    ("outcome", "state", "fence"),
    [
        (Outcome.COMPLETE, State(RUNNING, "w", 1), NO_FENCE),
        (Outcome.FAIL, State(RUNNING, "w", 1), Fence("w", 1)),
        (Outcome.CANCEL, State(PENDING), NO_FENCE),
        (Outcome.CANCEL, State(RUNNING, "w", 2), Fence(attempt=2)),
        (Outcome.RETRY, State(FAILED, "w", 3), NO_FENCE),
        (Outcome.RETRY, State(CANCELLED), NO_FENCE),
    ],
)
def test_check_outcome_allows_the_listed_transitions(
    outcome: Outcome, state: State, fence: Fence
) -> None:
    """``check_outcome`` returns for every transition SPEC §2 lists; a refusal explained
    for such a state says the job changed concurrently."""
    check_outcome(outcome, state, JOB_ID, fence)
    error = explain_refusal(outcome, state, JOB_ID, fence)
    assert isinstance(error, InvalidTransitionError)
    assert "concurrently" in str(error)


@pytest.mark.parametrize(
    ("outcome", "state", "fence", "words"),
    [
        (Outcome.COMPLETE, State(PENDING), NO_FENCE, "it is pending, must be running"),
        (Outcome.FAIL, State(COMPLETED, "w", 1), NO_FENCE, "it is completed"),
        (Outcome.CANCEL, State(FAILED), NO_FENCE, "must be pending or running"),
        (Outcome.CANCEL, State(PENDING), Fence("w"), "must be running"),
        (Outcome.COMPLETE, State(RUNNING, "w", 1), Fence("x"), "worker_id='x'"),
        (Outcome.COMPLETE, State(RUNNING, "w", 1), Fence("w", 2), "attempt=2"),
        (Outcome.RETRY, State(COMPLETED), NO_FENCE, "must be cancelled or failed"),
    ],
)
def test_refusals_are_explained(outcome: Outcome, state: State, fence: Fence, words: str) -> None:
    """``check_outcome`` raises, and ``explain_refusal`` returns, an
    ``InvalidTransitionError`` naming the job, the status or the fence that forbids it."""
    with pytest.raises(InvalidTransitionError, match=re.escape(words)):
        check_outcome(outcome, state, JOB_ID, fence)
    error = explain_refusal(outcome, state, JOB_ID, fence)
    assert isinstance(error, InvalidTransitionError)
    assert str(JOB_ID) in str(error)


def test_a_missing_job_is_explained_as_not_found() -> None:
    """For a job that does not exist the error is ``JobNotFoundError`` with its id."""
    error = explain_refusal(Outcome.COMPLETE, None, JOB_ID, NO_FENCE)
    assert isinstance(error, JobNotFoundError) and error.job_id == JOB_ID
    with pytest.raises(JobNotFoundError):
        check_outcome(Outcome.CANCEL, None, JOB_ID, Fence("w"))
