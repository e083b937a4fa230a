"""A reference model of the contract (docs/contract.md), in plain Python.

It holds what every job should look like after each operation and which error
each call should raise. It is written from the contract alone and shares no
code with any backend: the suite compares a backend's answers with the model's,
field by field, after every step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from jobqueue import (
    CreateJobRequest,
    InvalidTransitionError,
    Job,
    JobNotFoundError,
    JobStatus,
)

__all__ = ["JOB_FIELDS", "LEASE_EXPIRED", "Model", "ModelJob", "Refused", "job_differences"]

LEASE_EXPIRED = "lease expired"
PENDING, RUNNING = JobStatus.PENDING, JobStatus.RUNNING
COMPLETED, FAILED, CANCELLED = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})

JOB_FIELDS = tuple(f.name for f in dataclasses.fields(Job))


class Refused(Exception):
    """The model's verdict that a call must raise ``error`` and change nothing."""

    def __init__(self, error: type[Exception], why: str) -> None:
        super().__init__(f"{error.__name__}: {why}")
        self.error = error
        self.why = why


@dataclass
class ModelJob:
    """One job as the contract says it must be; ``seq`` is its place in creation order."""

    id: UUID
    seq: int
    kind: str
    payload: dict[str, Any]
    queue: str
    priority: int
    max_attempts: int
    run_at: datetime | None
    created_at: datetime
    updated_at: datetime
    status: JobStatus = PENDING
    attempts: int = 0
    worker_id: str | None = None
    error: str | None = None
    stats: dict[str, Any] | None = None
    next_retry_at: datetime | None = None
    lease_expires_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    claims: list[tuple[str, int]] = field(default_factory=list)

    def expected(self) -> dict[str, Any]:
        """Every public field of the job, as a ``Job`` returned now must carry it."""
        return {name: getattr(self, name) for name in JOB_FIELDS}

    def claimable(self, now: datetime, queues: Sequence[str] | None) -> bool:
        return (
            self.status is PENDING
            and (self.run_at is None or self.run_at <= now)
            and (self.next_retry_at is None or self.next_retry_at <= now)
            and (queues is None or self.queue in queues)
        )

    def claim_key(self) -> tuple[int, bool, datetime, int]:
        """Claim order: priority high first, fresh before retries, oldest by creation order."""
        return (-self.priority, self.next_retry_at is not None, self.created_at, self.seq)


def job_differences(actual: Job, expected: ModelJob) -> list[str]:
    """Human-readable differences between a backend's job and the model's, empty if none."""
    if not isinstance(actual, Job):
        return [f"expected a Job, got {type(actual).__name__}: {actual!r}"]
    problems = []
    for name, want in expected.expected().items():
        got = getattr(actual, name)
        if got != want or (type(got) is not type(want) and not _same_kind(got, want)):
            problems.append(f"{name}: backend has {got!r}, contract says {want!r}")
        elif isinstance(got, datetime) and got.utcoffset() != timedelta(0):
            problems.append(f"{name}: {got!r} is not in UTC")
    return problems


def _same_kind(got: object, want: object) -> bool:
    if isinstance(want, JobStatus):
        return isinstance(got, JobStatus)
    if isinstance(want, datetime):
        return isinstance(got, datetime)
    return isinstance(got, type(want))


class Model:
    """The jobs of one queue and the effect of every operation on them.

    Every method that the contract may refuse raises :class:`Refused` before
    changing anything; otherwise it applies the change and returns the result
    the backend must return.
    """

    def __init__(self, lease: timedelta) -> None:
        self.lease = lease
        self.jobs: dict[UUID, ModelJob] = {}
        self._seq = 0

    # ----------------------------------------------------------------- helpers

    def _find(self, job_id: UUID) -> ModelJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise Refused(JobNotFoundError, f"no job {job_id}")
        return job

    def _check_outcome(
        self,
        job_id: UUID,
        allowed: frozenset[JobStatus],
        worker_id: str | None,
        attempt: int | None,
    ) -> ModelJob:
        job = self._find(job_id)
        fenced = worker_id is not None or attempt is not None
        if fenced:
            allowed = frozenset({RUNNING})
        if job.status not in allowed:
            raise Refused(InvalidTransitionError, f"job is {job.status.value}")
        if worker_id is not None and worker_id != job.worker_id:
            raise Refused(InvalidTransitionError, f"held by {job.worker_id!r}, not {worker_id!r}")
        if attempt is not None and attempt != job.attempts:
            raise Refused(InvalidTransitionError, f"in attempt {job.attempts}, not {attempt}")
        return job

    def creation_order(self) -> list[ModelJob]:
        return sorted(self.jobs.values(), key=lambda j: (j.created_at, j.seq))

    # -------------------------------------------------------------- operations

    def create(
        self, requests: Sequence[CreateJobRequest], ids: Sequence[UUID], now: datetime
    ) -> list[ModelJob]:
        """Add jobs for ``requests`` under the ids the backend chose."""
        created = []
        for request, job_id in zip(requests, ids, strict=True):
            self._seq += 1
            job = ModelJob(
                id=job_id,
                seq=self._seq,
                kind=request.kind,
                payload=dict(request.payload),
                queue=request.queue,
                priority=request.priority,
                max_attempts=request.max_attempts,
                run_at=None if request.run_at is None else request.run_at.astimezone(UTC),
                created_at=now,
                updated_at=now,
            )
            self.jobs[job_id] = job
            created.append(job)
        return created

    def claim(
        self, worker_id: str, limit: int, queues: Sequence[str] | None, now: datetime
    ) -> list[ModelJob]:
        ready = sorted(
            (j for j in self.jobs.values() if j.claimable(now, queues)), key=ModelJob.claim_key
        )
        taken = ready[:limit]
        for job in taken:
            job.status = RUNNING
            job.worker_id = worker_id
            job.attempts += 1
            job.started_at = now
            job.lease_expires_at = now + self.lease
            job.updated_at = now
            job.claims.append((worker_id, job.attempts))
        return taken

    def complete(
        self,
        job_id: UUID,
        stats: dict[str, Any],
        now: datetime,
        worker_id: str | None = None,
        attempt: int | None = None,
    ) -> None:
        job = self._check_outcome(job_id, frozenset({RUNNING}), worker_id, attempt)
        job.status = COMPLETED
        job.stats = dict(stats)
        job.finished_at = now
        job.lease_expires_at = None
        job.updated_at = now

    def fail(
        self,
        job_id: UUID,
        error: str,
        next_retry_at: datetime | None,
        now: datetime,
        worker_id: str | None = None,
        attempt: int | None = None,
    ) -> None:
        job = self._check_outcome(job_id, frozenset({RUNNING}), worker_id, attempt)
        job.error = error
        job.lease_expires_at = None
        job.updated_at = now
        if next_retry_at is None:
            job.status = FAILED
            job.finished_at = now
        else:
            job.status = PENDING
            job.worker_id = None
            job.next_retry_at = next_retry_at.astimezone(UTC)

    def cancel(
        self,
        job_id: UUID,
        stats: dict[str, Any] | None,
        now: datetime,
        worker_id: str | None = None,
        attempt: int | None = None,
    ) -> None:
        job = self._check_outcome(job_id, frozenset({PENDING, RUNNING}), worker_id, attempt)
        job.status = CANCELLED
        if stats is not None:
            job.stats = dict(stats)
        job.finished_at = now
        job.lease_expires_at = None
        job.updated_at = now

    def _release(self, job: ModelJob, now: datetime) -> None:
        job.status = PENDING
        job.worker_id = None
        job.attempts -= 1
        job.lease_expires_at = None
        job.updated_at = now

    def release(self, job_id: UUID, now: datetime) -> bool:
        job = self._find(job_id)
        if job.status is not RUNNING:
            return False
        self._release(job, now)
        return True

    def release_worker(self, worker_id: str, now: datetime) -> int:
        held = [j for j in self.jobs.values() if j.status is RUNNING and j.worker_id == worker_id]
        for job in held:
            self._release(job, now)
        return len(held)

    def heartbeat(self, worker_id: str, now: datetime) -> set[UUID]:
        held = [j for j in self.jobs.values() if j.status is RUNNING and j.worker_id == worker_id]
        for job in held:
            job.lease_expires_at = now + self.lease
        return {j.id for j in held}

    def rescue(self, now: datetime) -> int:
        expired = [
            j
            for j in self.jobs.values()
            if j.status is RUNNING and j.lease_expires_at is not None and j.lease_expires_at <= now
        ]
        for job in expired:
            job.error = LEASE_EXPIRED
            job.lease_expires_at = None
            job.updated_at = now
            if job.attempts >= job.max_attempts:
                job.status = FAILED
                job.finished_at = now
            else:
                job.status = PENDING
                job.worker_id = None
                job.next_retry_at = now
        return len(expired)

    def retry(self, job_id: UUID, now: datetime) -> ModelJob:
        job = self._check_outcome(job_id, frozenset({FAILED, CANCELLED}), None, None)
        job.status = PENDING
        job.attempts = 0
        job.worker_id = None
        job.next_retry_at = None
        job.finished_at = None
        job.stats = None
        job.lease_expires_at = None
        job.updated_at = now
        return job

    def purge(self, finished_before: datetime, statuses: Iterable[JobStatus]) -> int:
        wanted = frozenset(statuses)
        doomed = [
            j.id
            for j in self.jobs.values()
            if j.status in wanted and j.finished_at is not None and j.finished_at < finished_before
        ]
        for job_id in doomed:
            del self.jobs[job_id]
        return len(doomed)

    # ------------------------------------------------------------------ reads

    def counts(self) -> dict[JobStatus, int]:
        counted = dict.fromkeys(JobStatus, 0)
        for job in self.jobs.values():
            counted[job.status] += 1
        return counted

    def list(self, status: JobStatus | None, limit: int) -> list[ModelJob]:
        newest_first = self.creation_order()[::-1]
        return [j for j in newest_first if status is None or j.status is status][:limit]
