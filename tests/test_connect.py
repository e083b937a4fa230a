"""``connect()``: awaiting and ``async with``, its standard options, the injected
clock, closed queues, and passwords kept out of every message."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import jobqueue
from jobqueue import (
    BackendUnavailableError,
    CreateJobRequest,
    InvalidRequestError,
    JobQueue,
    JobStatus,
)
from jobqueue.backend import redact_url
from jobqueue.testing import FakeClock


async def test_connect_can_be_awaited_and_closed() -> None:
    """``await connect(url)`` returns an open ``JobQueue``; ``close()`` closes it and may
    be called again."""
    queue = await jobqueue.connect("memory://")
    assert isinstance(queue, JobQueue)
    assert not queue.closed
    await queue.create_job(CreateJobRequest("k"))
    await queue.close()
    assert queue.closed
    await queue.close()


async def test_async_with_closes_on_exit_also_after_an_error() -> None:
    """``async with connect(url) as queue`` closes the queue when the block ends,
    normally or by an exception (which propagates)."""
    async with jobqueue.connect("memory://") as queue:
        assert not queue.closed
    assert queue.closed
    with pytest.raises(KeyError):
        async with jobqueue.connect("memory://") as failing:
            raise KeyError("boom")
    assert failing.closed


async def test_a_queue_is_its_own_context_manager() -> None:
    """``async with queue`` on an awaited queue closes it on exit."""
    queue = await jobqueue.connect("memory://")
    async with queue as same:
        assert same is queue
    assert queue.closed


CLOSED_CALLS: dict[str, Callable[[JobQueue], Awaitable[object]]] = {
    "create_job": lambda q: q.create_job(CreateJobRequest("k")),
    "create_jobs": lambda q: q.create_jobs([]),
    "claim_job": lambda q: q.claim_job("w"),
    "claim_jobs": lambda q: q.claim_jobs("w", 2),
    "complete_job": lambda q: q.complete_job("00000000-0000-0000-0000-000000000000", {}),
    "fail_job": lambda q: q.fail_job("00000000-0000-0000-0000-000000000000", "e"),
    "cancel_job": lambda q: q.cancel_job("00000000-0000-0000-0000-000000000000"),
    "get_job": lambda q: q.get_job("00000000-0000-0000-0000-000000000000"),
    "list_jobs": lambda q: q.list_jobs(),
    "release_job": lambda q: q.release_job("00000000-0000-0000-0000-000000000000"),
    "release_worker_jobs": lambda q: q.release_worker_jobs("w"),
    "count_by_status": lambda q: q.count_by_status("pending"),
    "counts": lambda q: q.counts(),
    "heartbeat": lambda q: q.heartbeat("w"),
    "rescue_expired_jobs": lambda q: q.rescue_expired_jobs(),
    "retry_job": lambda q: q.retry_job("00000000-0000-0000-0000-000000000000"),
    "purge_jobs": lambda q: q.purge_jobs(datetime.now(UTC)),
    "wait_for_jobs": lambda q: q.wait_for_jobs(0),
}


@pytest.mark.parametrize("call", CLOSED_CALLS.values(), ids=CLOSED_CALLS.keys())
async def test_a_closed_queue_refuses_every_operation(
    call: Callable[[JobQueue], Awaitable[object]],
) -> None:
    """Every operation on a closed queue raises ``BackendUnavailableError``."""
    queue = await jobqueue.connect("memory://")
    await queue.close()
    with pytest.raises(BackendUnavailableError, match="closed"):
        await call(queue)


@pytest.mark.parametrize(
    "options",
    [
        {"clock": "now"},
        {"clock": datetime.now(UTC)},
        {"lease": timedelta(0)},
        {"lease": timedelta(seconds=-1)},
        {"lease": 30},
        {"migrate": "yes"},
        {"migrate": None},
    ],
    ids=repr,
)
async def test_bad_standard_options_are_rejected(options: dict[str, Any]) -> None:
    """A clock that is not callable, a lease that is not a positive timedelta, or a
    ``migrate`` that is not a bool is an ``InvalidRequestError``."""
    with pytest.raises(InvalidRequestError):
        await jobqueue.connect("memory://", **options)


async def test_lease_is_a_read_only_property_used_by_claims() -> None:
    """``queue.lease`` is the lease given to ``connect`` (five minutes by default), it
    cannot be assigned, and a claim holds the job for exactly that long."""
    async with jobqueue.connect("memory://") as default:
        assert default.lease == timedelta(minutes=5)
    clock = FakeClock()
    async with jobqueue.connect("memory://", clock=clock, lease=timedelta(seconds=42)) as queue:
        assert queue.lease == timedelta(seconds=42)
        with pytest.raises(AttributeError):
            queue.lease = timedelta(1)  # type: ignore[misc]
        await queue.create_job(CreateJobRequest("k"))
        job = await queue.claim_job("w")
        assert job is not None
        assert job.lease_expires_at == clock() + timedelta(seconds=42)


async def test_every_timestamp_comes_from_the_injected_clock() -> None:
    """With ``clock=`` every timestamp a queue writes (created/updated/started/finished,
    leases, rescue's retry time) is the clock's time, never the system's."""
    start = datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
    clock = FakeClock(start)
    async with jobqueue.connect("memory://", clock=clock, lease=timedelta(seconds=10)) as q:
        assert q.clock is clock
        assert q.now() == start
        created = await q.create_job(CreateJobRequest("k", max_attempts=2))
        assert created.created_at == created.updated_at == start
        t1 = clock.advance(1)
        claimed = await q.claim_job("w")
        assert claimed is not None
        assert (claimed.started_at, claimed.updated_at) == (t1, t1)
        assert claimed.lease_expires_at == t1 + timedelta(seconds=10)
        t2 = clock.advance(3)
        assert await q.heartbeat("w") == {created.id}
        job = await q.get_job(created.id)
        assert job is not None and job.lease_expires_at == t2 + timedelta(seconds=10)
        t3 = clock.advance(10)
        assert await q.rescue_expired_jobs() == 1
        job = await q.get_job(created.id)
        assert job is not None and (job.next_retry_at, job.updated_at) == (t3, t3)
        t4 = clock.advance(1)
        again = await q.claim_job("w")
        assert again is not None and again.started_at == t4
        t5 = clock.advance(1)
        await q.complete_job(created.id, {})
        job = await q.get_job(created.id)
        assert job is not None and (job.finished_at, job.updated_at) == (t5, t5)
        assert job.created_at == start


async def test_a_clock_in_another_zone_is_read_as_utc() -> None:
    """An injected clock returning an aware non-UTC time gives UTC timestamps of the same
    instant."""
    zone = timezone(timedelta(hours=-7))
    moment = datetime(2030, 6, 1, 5, 0, tzinfo=zone)
    async with jobqueue.connect("memory://", clock=lambda: moment) as q:
        job = await q.create_job(CreateJobRequest("k"))
    assert job.created_at == moment
    assert job.created_at.utcoffset() == timedelta(0)


async def test_a_clock_returning_naive_times_is_refused_before_any_write() -> None:
    """An injected clock that returns a naive datetime makes operations raise
    ``InvalidRequestError``, and nothing is written."""
    async with jobqueue.connect("memory://", clock=lambda: datetime(2030, 1, 1)) as q:
        with pytest.raises(InvalidRequestError, match="clock"):
            await q.create_job(CreateJobRequest("k"))
        assert await q.counts() == dict.fromkeys(JobStatus, 0)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://app:s3cret@db.example:5432/jobs",
            "postgresql://app:***@db.example:5432/jobs",
        ),
        ("postgresql://app:s3cret@db.example/jobs", "postgresql://app:***@db.example/jobs"),
        ("postgresql://app:s3cret@[::1]:5433/jobs", "postgresql://app:***@[::1]:5433/jobs"),
        ("postgresql://app:s3cret@[2001:db8::7]/jobs", "postgresql://app:***@[2001:db8::7]/jobs"),
        ("postgresql://:s3cret@host/jobs", "postgresql://:***@host/jobs"),
        ("postgresql://app:p@ss:w@rd@host/jobs", "postgresql://app:***@host/jobs"),
        (
            "postgresql://host/jobs?user=app&password=s3cret&sslmode=require",
            "postgresql://host/jobs?user=app&password=***&sslmode=require",
        ),
        ("postgresql://h/j?sslpassword=s3cret", "postgresql://h/j?sslpassword=***"),
        ("postgresql://app:s3cret@host:notaport/jobs", "postgresql://***"),
        ("postgresql://app:s3cret@host:99999/jobs", "postgresql://***"),
        ("postgresql://app@host:5432/jobs", "postgresql://app@host:5432/jobs"),
        ("sqlite:////var/lib/jobs.db", "sqlite:////var/lib/jobs.db"),
        ("memory://shared", "memory://shared"),
    ],
)
def test_redact_url_hides_passwords(url: str, shown: str) -> None:
    """``redact_url`` replaces the password (userinfo or query parameter) with ``***``,
    keeps user, host (IPv6 in brackets), port, path and other parameters, leaves URLs
    without a password untouched, and reduces an unparsable URL to its scheme."""
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url)


async def test_no_password_in_connection_repr_or_errors() -> None:
    """Neither the ``connect`` handle's repr nor the error for an unknown scheme shows
    the password of the URL."""
    handle = jobqueue.connect("nosuch://app:s3cret@host/db")
    assert "s3cret" not in repr(handle)
    with pytest.raises(jobqueue.UnknownBackendError) as info:
        await handle
    assert "s3cret" not in str(info.value)
    assert "s3cret" not in repr(info.value)
