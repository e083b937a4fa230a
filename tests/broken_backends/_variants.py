"""Deliberately broken backends, each breaking one rule of the contract."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from jobqueue import CreateJobRequest, Job, JobStatus
from jobqueue.backend import Fence

from ._naive import NaiveQueue, Rec


class DropsJob(NaiveQueue):
    """Loses the last job of every batch of three or more, yet returns it as created."""

    async def _create_jobs(self, requests: Sequence[CreateJobRequest]) -> list[Job]:
        made = await super()._create_jobs(requests)
        if len(made) >= 3:
            del self.store.jobs[made[-1].id]
        return made


class DoubleClaim(NaiveQueue):
    """Reads the next jobs, yields to the event loop, then takes them without re-checking."""

    async def _claim_jobs(
        self, worker_id: str, limit: int, queues: tuple[str, ...] | None
    ) -> list[Job]:
        chosen = self.candidates(limit, queues)
        await asyncio.sleep(0)
        return [self.take(rec, worker_id) for rec in chosen if rec.job.id in self.store.jobs]


class NewestFirst(NaiveQueue):
    """Claims the newest job first among equal priorities."""

    def claim_key(self, rec: Rec) -> tuple[Any, ...]:
        job = rec.job
        return (-job.priority, job.next_retry_at is not None, -rec.seq)


class IgnoresRunAt(NaiveQueue):
    """Hands out jobs before their run_at."""

    def due(self, job: Job, now: datetime) -> bool:
        return job.next_retry_at is None or job.next_retry_at <= now


class RetriesFirst(NaiveQueue):
    """Claims retry-ready jobs before fresh ones of the same priority."""

    def claim_key(self, rec: Rec) -> tuple[Any, ...]:
        job = rec.job
        return (-job.priority, job.next_retry_at is None, job.created_at, rec.seq)


class AcceptsStaleCompletion(NaiveQueue):
    """Checks only the worker of a fenced call, so a stale attempt of that worker succeeds."""

    def fence_matches(self, job: Job, fence: Fence) -> bool:
        return fence.worker_id is None or fence.worker_id == job.worker_id


class KeepsAttemptOnRelease(NaiveQueue):
    """Does not give the attempt back on release."""

    def released_attempts(self, job: Job) -> int:
        return job.attempts


class MiscountsCancelled(NaiveQueue):
    """Counts cancelled jobs as failed."""

    async def _counts(self) -> Mapping[JobStatus, int]:
        counted = dict(await super()._counts())
        counted[JobStatus.FAILED] += counted.pop(JobStatus.CANCELLED)
        return counted


class RescueIgnoresMaxAttempts(NaiveQueue):
    """Retries an expired job forever instead of failing it at max_attempts."""

    def rescue_gives_up(self, job: Job) -> bool:
        return False


class RescuesBeforeExpiry(NaiveQueue):
    """Rescues a job one second before its lease expires."""

    def expired(self, job: Job, now: datetime) -> bool:
        return job.lease_expires_at is not None and job.lease_expires_at <= now + timedelta(
            seconds=1
        )


class HeartbeatDoesNotRenew(NaiveQueue):
    """Reports the running jobs on heartbeat but leaves their leases as they were."""

    def renewed_lease(self, job: Job, now: datetime) -> datetime | None:
        return job.lease_expires_at


class ListsOldestFirst(NaiveQueue):
    """Lists jobs in creation order instead of newest first."""

    async def _list_jobs(self, status: JobStatus | None, limit: int) -> list[Job]:
        oldest = [r for r in self.ordered() if status in (None, r.job.status)]
        return [self._snapshot(r) for r in oldest[:limit]]


class ClaimsBeyondLimit(NaiveQueue):
    """claim_jobs takes one job more than the limit when there is one."""

    async def _claim_jobs(
        self, worker_id: str, limit: int, queues: tuple[str, ...] | None
    ) -> list[Job]:
        return await super()._claim_jobs(worker_id, limit + 1 if limit > 1 else 1, queues)


class ForgetsOnClose(NaiveQueue):
    """Claims `persistent` but loses every job when a handle closes."""

    async def _close(self) -> None:
        self.store.jobs.clear()


class NeverWakes(NaiveQueue):
    """Claims `listen_notify` but wait_for_jobs only sleeps out its timeout."""

    async def _wait_for_jobs(self, timeout: float) -> None:
        await asyncio.sleep(timeout)


BROKEN: dict[str, type[NaiveQueue]] = {
    cls.__name__: cls
    for cls in (
        DropsJob,
        DoubleClaim,
        NewestFirst,
        IgnoresRunAt,
        RetriesFirst,
        AcceptsStaleCompletion,
        KeepsAttemptOnRelease,
        MiscountsCancelled,
        RescueIgnoresMaxAttempts,
        RescuesBeforeExpiry,
        HeartbeatDoesNotRenew,
        ListsOldestFirst,
        ClaimsBeyondLimit,
        ForgetsOnClose,
        NeverWakes,
    )
}
"""Every broken variant by name."""

SEQUENTIAL_BUGS = sorted(set(BROKEN) - {"DoubleClaim", "ForgetsOnClose", "NeverWakes"})
"""The variants whose bug a single sequence of calls shows, so the state machine must find it."""
