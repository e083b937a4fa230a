"""A deliberately simple, correct backend, the base of the broken variants."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from jobqueue import (
    CreateJobRequest,
    InvalidTransitionError,
    Job,
    JobNotFoundError,
    JobQueue,
    JobStatus,
)
from jobqueue.backend import Fence

PENDING, RUNNING = JobStatus.PENDING, JobStatus.RUNNING
COMPLETED, FAILED, CANCELLED = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED


@dataclass
class Rec:
    """A stored job: the public fields plus its place in creation order."""

    job: Job
    seq: int

    def set(self, **changes: Any) -> None:
        self.job = dataclasses.replace(self.job, **changes)


class NaiveStore:
    """The jobs of one naive queue, shared by every handle opened on it."""

    def __init__(self) -> None:
        self.jobs: dict[UUID, Rec] = {}
        self.seq = 0
        self.waiters: list[asyncio.Future[None]] = []

    def wake(self) -> None:
        for future in self.waiters:
            if not future.done():
                future.set_result(None)
        self.waiters = []


class NaiveQueue(JobQueue):
    """Every operation scans the store without awaiting, so each is atomic on one event loop."""

    capabilities = frozenset({"persistent", "listen_notify"})

    def __init__(self, store: NaiveStore, *, clock: Any, lease: timedelta) -> None:
        super().__init__(clock=clock, lease=lease)
        self.store = store

    # ----------------------------------------------------- rules a variant may bend

    def claim_key(self, rec: Rec) -> tuple[Any, ...]:
        job = rec.job
        return (-job.priority, job.next_retry_at is not None, job.created_at, rec.seq)

    def due(self, job: Job, now: datetime) -> bool:
        return (job.run_at is None or job.run_at <= now) and (
            job.next_retry_at is None or job.next_retry_at <= now
        )

    def fence_matches(self, job: Job, fence: Fence) -> bool:
        if fence.worker_id is not None and fence.worker_id != job.worker_id:
            return False
        return fence.attempt is None or fence.attempt == job.attempts

    def released_attempts(self, job: Job) -> int:
        return job.attempts - 1

    def expired(self, job: Job, now: datetime) -> bool:
        return job.lease_expires_at is not None and job.lease_expires_at <= now

    def rescue_gives_up(self, job: Job) -> bool:
        return job.attempts >= job.max_attempts

    def renewed_lease(self, job: Job, now: datetime) -> datetime | None:
        return now + self.lease

    # ------------------------------------------------------------------ helpers

    def _rec(self, job_id: UUID) -> Rec:
        rec = self.store.jobs.get(job_id)
        if rec is None:
            raise JobNotFoundError(job_id)
        return rec

    def _outcome(self, job_id: UUID, allowed: set[JobStatus], fence: Fence) -> Rec:
        rec = self._rec(job_id)
        if fence.active:
            allowed = {RUNNING}
        if rec.job.status not in allowed or not self.fence_matches(rec.job, fence):
            raise InvalidTransitionError(f"job {job_id} is {rec.job.status}")
        return rec

    def _snapshot(self, rec: Rec) -> Job:
        job = rec.job
        return dataclasses.replace(
            job, payload=copy.deepcopy(job.payload), stats=copy.deepcopy(job.stats)
        )

    def ordered(self) -> list[Rec]:
        return sorted(self.store.jobs.values(), key=lambda r: (r.job.created_at, r.seq))

    def candidates(self, limit: int, queues: tuple[str, ...] | None) -> list[Rec]:
        now = self.now()
        ready = [
            r
            for r in self.store.jobs.values()
            if r.job.status is PENDING
            and self.due(r.job, now)
            and (queues is None or r.job.queue in queues)
        ]
        return sorted(ready, key=self.claim_key)[:limit]

    def take(self, rec: Rec, worker_id: str) -> Job:
        now = self.now()
        rec.set(
            status=RUNNING,
            worker_id=worker_id,
            attempts=rec.job.attempts + 1,
            started_at=now,
            lease_expires_at=now + self.lease,
            updated_at=now,
        )
        return self._snapshot(rec)

    def _release(self, rec: Rec) -> None:
        rec.set(
            status=PENDING,
            worker_id=None,
            attempts=self.released_attempts(rec.job),
            lease_expires_at=None,
            updated_at=self.now(),
        )
        self.store.wake()

    # --------------------------------------------------------------- primitives

    async def _create_jobs(self, requests: Sequence[CreateJobRequest]) -> list[Job]:
        now = self.now()
        made = []
        for request in requests:
            self.store.seq += 1
            job = Job(
                id=uuid.uuid4(),
                kind=request.kind,
                payload=dict(request.payload),
                queue=request.queue,
                priority=request.priority,
                status=PENDING,
                attempts=0,
                max_attempts=request.max_attempts,
                worker_id=None,
                error=None,
                stats=None,
                run_at=request.run_at,
                next_retry_at=None,
                lease_expires_at=None,
                created_at=now,
                updated_at=now,
                started_at=None,
                finished_at=None,
            )
            rec = Rec(job, self.store.seq)
            self.store.jobs[job.id] = rec
            made.append(self._snapshot(rec))
        self.store.wake()
        return made

    async def _claim_jobs(
        self, worker_id: str, limit: int, queues: tuple[str, ...] | None
    ) -> list[Job]:
        return [self.take(rec, worker_id) for rec in self.candidates(limit, queues)]

    async def _complete_job(self, job_id: UUID, stats: dict[str, Any], fence: Fence) -> None:
        rec = self._outcome(job_id, {RUNNING}, fence)
        now = self.now()
        rec.set(
            status=COMPLETED, stats=stats, finished_at=now, lease_expires_at=None, updated_at=now
        )

    async def _fail_job(
        self, job_id: UUID, error: str, next_retry_at: datetime | None, fence: Fence
    ) -> None:
        rec = self._outcome(job_id, {RUNNING}, fence)
        now = self.now()
        if next_retry_at is None:
            rec.set(
                status=FAILED, error=error, finished_at=now, lease_expires_at=None, updated_at=now
            )
        else:
            rec.set(
                status=PENDING,
                worker_id=None,
                error=error,
                next_retry_at=next_retry_at,
                lease_expires_at=None,
                updated_at=now,
            )
            self.store.wake()

    async def _cancel_job(self, job_id: UUID, stats: dict[str, Any] | None, fence: Fence) -> None:
        rec = self._outcome(job_id, {PENDING, RUNNING}, fence)
        now = self.now()
        rec.set(
            status=CANCELLED,
            finished_at=now,
            lease_expires_at=None,
            updated_at=now,
            stats=rec.job.stats if stats is None else stats,
        )

    async def _get_job(self, job_id: UUID) -> Job | None:
        rec = self.store.jobs.get(job_id)
        return None if rec is None else self._snapshot(rec)

    async def _list_jobs(self, status: JobStatus | None, limit: int) -> list[Job]:
        newest = [r for r in reversed(self.ordered()) if status in (None, r.job.status)]
        return [self._snapshot(r) for r in newest[:limit]]

    async def _release_job(self, job_id: UUID) -> bool:
        rec = self._rec(job_id)
        if rec.job.status is not RUNNING:
            return False
        self._release(rec)
        return True

    async def _release_worker_jobs(self, worker_id: str) -> int:
        held = [
            r for r in self.ordered() if r.job.status is RUNNING and r.job.worker_id == worker_id
        ]
        for rec in held:
            self._release(rec)
        return len(held)

    async def _counts(self) -> Mapping[JobStatus, int]:
        counted = dict.fromkeys(JobStatus, 0)
        for rec in self.store.jobs.values():
            counted[rec.job.status] += 1
        return counted

    async def _heartbeat(self, worker_id: str) -> set[UUID]:
        now = self.now()
        held = [
            r for r in self.ordered() if r.job.status is RUNNING and r.job.worker_id == worker_id
        ]
        for rec in held:
            rec.set(lease_expires_at=self.renewed_lease(rec.job, now))
        return {r.job.id for r in held}

    async def _rescue_expired_jobs(self) -> int:
        now = self.now()
        expired = [
            r for r in self.ordered() if r.job.status is RUNNING and self.expired(r.job, now)
        ]
        for rec in expired:
            if self.rescue_gives_up(rec.job):
                rec.set(
                    status=FAILED,
                    error="lease expired",
                    finished_at=now,
                    lease_expires_at=None,
                    updated_at=now,
                )
            else:
                rec.set(
                    status=PENDING,
                    worker_id=None,
                    error="lease expired",
                    next_retry_at=now,
                    lease_expires_at=None,
                    updated_at=now,
                )
        if expired:
            self.store.wake()
        return len(expired)

    async def _retry_job(self, job_id: UUID) -> Job:
        rec = self._outcome(job_id, {FAILED, CANCELLED}, Fence())
        rec.set(
            status=PENDING,
            attempts=0,
            worker_id=None,
            next_retry_at=None,
            finished_at=None,
            stats=None,
            lease_expires_at=None,
            updated_at=self.now(),
        )
        self.store.wake()
        return self._snapshot(rec)

    async def _purge_jobs(self, finished_before: datetime, statuses: frozenset[JobStatus]) -> int:
        doomed = [
            r.job.id
            for r in self.store.jobs.values()
            if r.job.status in statuses
            and r.job.finished_at is not None
            and r.job.finished_at < finished_before
        ]
        for job_id in doomed:
            del self.store.jobs[job_id]
        return len(doomed)

    async def _wait_for_jobs(self, timeout: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self.store.waiters.append(future)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(future, timeout)

    async def _close(self) -> None:
        pass


def opener(cls: type[NaiveQueue]) -> Callable[[Any], Any]:
    """An opener for the conformance suite: every call opens a handle on one new store."""
    store = NaiveStore()

    async def open_queue(clock: Any) -> NaiveQueue:
        return cls(store, clock=clock, lease=timedelta(minutes=5))

    return open_queue


def register(cls: type[NaiveQueue]) -> str:
    """Register ``cls`` for URLs ``<lowercased class name>://NAME`` (one store per URL);
    returns the scheme."""
    import jobqueue

    stores: dict[str, NaiveStore] = {}

    def open_url(url: str, *, clock: Any, lease: timedelta, migrate: bool) -> NaiveQueue:
        return cls(stores.setdefault(url, NaiveStore()), clock=clock, lease=lease)

    scheme = cls.__name__.lower()
    jobqueue.register_backend(scheme, open_url, capabilities=cls.capabilities)
    return scheme
