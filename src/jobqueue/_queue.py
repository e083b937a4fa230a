"""``JobQueue``: the contract every backend keeps.

The public methods check and normalise their arguments, then call one
primitive (a method whose name starts with ``_``) that a backend implements.
So every backend, a third party's too, rejects bad input the same way and
before anything is written, and a primitive only ever sees valid values:
``UUID`` ids, ``JobStatus`` members, aware UTC datetimes, plain ``dict``
JSON objects, non-empty tuples of queue names.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar
from uuid import UUID

from . import _validation as check
from ._errors import (
    BackendUnavailableError,
    InvalidRequestError,
    InvalidTransitionError,
    JobNotFoundError,
)
from ._models import TERMINAL_STATUSES, Completion, CreateJobRequest, Job, JobStatus
from ._transitions import NO_FENCE, Fence

T = TypeVar("T")

__all__ = ["DEFAULT_LEASE", "Clock", "JobQueue", "Refusal"]

Clock = Callable[[], datetime]
"""A zero-argument callable returning the current time as an aware datetime."""

DEFAULT_LEASE = timedelta(minutes=5)

Refusal = JobNotFoundError | InvalidTransitionError
"""Why an outcome was not applied: what the single call would have raised."""


class JobQueue(ABC):
    """A persistent queue of jobs shared by producers and workers.

    Every operation is atomic. A pending job is handed to at most one claimer
    at a time, however many tasks, processes or hosts claim at once, and no
    job is lost. Use as ``async with`` or call :meth:`close`.
    """

    def __init__(self, *, clock: Clock | None = None, lease: timedelta = DEFAULT_LEASE) -> None:
        if clock is not None and not callable(clock):
            raise InvalidRequestError(f"clock must be callable, not {type(clock).__name__}")
        self._clock = clock
        self._lease = check.lease(lease)
        self._closed = False

    # ----------------------------------------------------------------- properties

    @property
    def lease(self) -> timedelta:
        """How long a claim (or a heartbeat) keeps a job before it may be rescued."""
        return self._lease

    @property
    def clock(self) -> Clock | None:
        """The injected clock, or None when the backend keeps its own time."""
        return self._clock

    def now(self) -> datetime:
        """The current time for this queue: the injected clock's, else the system's, in UTC."""
        if self._clock is None:
            return datetime.now(UTC)
        return check.aware_datetime(self._clock(), "the clock's result")

    @property
    def closed(self) -> bool:
        return self._closed

    def _ensure_open(self) -> None:
        if self._closed:
            raise BackendUnavailableError(f"{self!r} is closed")

    # ---------------------------------------------------------------- lifecycle

    async def close(self) -> None:
        """Release connections and other resources. Idempotent."""
        if not self._closed:
            self._closed = True
            await self._close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------- the contract

    async def create_job(self, request: CreateJobRequest) -> Job:
        """Enqueue one job: ``pending``, ``attempts == 0``, a fresh id, timestamps set."""
        self._ensure_open()
        (job,) = await self._create_jobs([_one(request, CreateJobRequest)])
        return job

    async def create_jobs(self, requests: Iterable[CreateJobRequest]) -> list[Job]:
        """Enqueue many jobs at once, all or nothing; returned in the order given.

        Their creation order is the order of ``requests``.
        """
        self._ensure_open()
        checked = _sequence_of(requests, "requests", CreateJobRequest)
        if not checked:
            return []
        return await self._create_jobs(checked)

    async def claim_job(self, worker_id: str, *, queues: Iterable[str] | None = None) -> Job | None:
        """Atomically take the next claimable job for ``worker_id``, or None.

        The job becomes ``running`` with ``attempts`` one higher and a lease of
        :attr:`lease`. Order: highest priority, then fresh jobs before retries,
        then oldest by creation order. ``queues`` restricts the claim to those queues.
        """
        self._ensure_open()
        jobs = await self._claim_jobs(check.name(worker_id, "worker_id"), 1, check.queues(queues))
        return jobs[0] if jobs else None

    async def claim_jobs(
        self, worker_id: str, limit: int, *, queues: Iterable[str] | None = None
    ) -> list[Job]:
        """Atomically take up to ``limit`` claimable jobs, returned in claim order."""
        self._ensure_open()
        return await self._claim_jobs(
            check.name(worker_id, "worker_id"), check.limit(limit), check.queues(queues)
        )

    async def complete_job(
        self,
        job_id: UUID | str,
        stats: Mapping[str, Any],
        *,
        worker_id: str | None = None,
        attempt: int | None = None,
    ) -> None:
        """``running`` → ``completed``, storing ``stats``.

        Raises ``JobNotFoundError`` or ``InvalidTransitionError`` (job unchanged)
        when the job is not running or, if fenced, not held by that worker and attempt.
        """
        self._ensure_open()
        await self._complete_job(
            check.job_id(job_id), check.json_object(stats, "stats"), _fence(worker_id, attempt)
        )

    async def complete_jobs(self, completions: Iterable[Completion]) -> list[Refusal | None]:
        """Complete many jobs in one call (one round trip where the backend can).

        Each completion is applied as :meth:`complete_job` would apply it, atomically
        and on its own: a refused one changes nothing and the others still apply.
        Returns, in the order given, None for each applied completion and, for each
        refused one, the ``JobNotFoundError`` or ``InvalidTransitionError`` that
        ``complete_job`` would have raised. Raises ``InvalidRequestError``, before
        anything is written, when an element is not a :class:`Completion` or names
        a job another one names. When the call raises anything else, any of the
        completions may have been applied; calling again is safe, as an applied
        one is then refused.
        """
        self._ensure_open()
        checked = _sequence_of(completions, "completions", Completion)
        if not checked:
            return []
        named: set[UUID] = set()
        for c in checked:
            if c.job_id in named:
                raise InvalidRequestError(f"job {c.job_id} is named by more than one completion")
            named.add(c.job_id)
        return await self._complete_jobs(checked)

    async def fail_job(
        self,
        job_id: UUID | str,
        error: str,
        next_retry_at: datetime | None = None,
        *,
        worker_id: str | None = None,
        attempt: int | None = None,
    ) -> None:
        """End the running attempt with ``error``.

        With ``next_retry_at`` the job goes back to ``pending``, claimable from
        that time; without it the job is ``failed`` for good. ``max_attempts``
        is not consulted. Refusals as for :meth:`complete_job`.
        """
        self._ensure_open()
        if not isinstance(error, str):
            raise InvalidRequestError(f"error must be a str, not {type(error).__name__}")
        await self._fail_job(
            check.job_id(job_id),
            error,
            check.optional_aware_datetime(next_retry_at, "next_retry_at"),
            _fence(worker_id, attempt),
        )

    async def cancel_job(
        self,
        job_id: UUID | str,
        stats: Mapping[str, Any] | None = None,
        *,
        worker_id: str | None = None,
        attempt: int | None = None,
    ) -> None:
        """``pending`` or ``running`` → ``cancelled``, storing partial ``stats`` when given.

        A fenced cancel requires the job to be running under that worker and attempt.
        """
        self._ensure_open()
        await self._cancel_job(
            check.job_id(job_id),
            check.optional_json_object(stats, "stats"),
            _fence(worker_id, attempt),
        )

    async def get_job(self, job_id: UUID | str) -> Job | None:
        """The job with that id, or None."""
        self._ensure_open()
        return await self._get_job(check.job_id(job_id))

    async def list_jobs(self, status: JobStatus | str | None = None, limit: int = 100) -> list[Job]:
        """At most ``limit`` jobs, newest first (the reverse of creation order)."""
        self._ensure_open()
        return await self._list_jobs(
            None if status is None else JobStatus.parse(status), check.limit(limit)
        )

    async def release_job(self, job_id: UUID | str) -> bool:
        """Put a ``running`` job back to ``pending`` and give its attempt back.

        Returns False, changing nothing, when the job is in any other status.
        """
        self._ensure_open()
        return await self._release_job(check.job_id(job_id))

    async def release_worker_jobs(self, worker_id: str) -> int:
        """Release every ``running`` job of ``worker_id``; returns how many."""
        self._ensure_open()
        return await self._release_worker_jobs(check.name(worker_id, "worker_id"))

    async def count_by_status(self, status: JobStatus | str) -> int:
        """How many jobs have ``status``."""
        self._ensure_open()
        return await self._count_by_status(JobStatus.parse(status))

    async def counts(self) -> dict[JobStatus, int]:
        """How many jobs have each status; every status is a key."""
        self._ensure_open()
        counted = await self._counts()
        return {status: counted.get(status, 0) for status in JobStatus}

    async def heartbeat(self, worker_id: str) -> set[UUID]:
        """Renew the lease of every job still ``running`` under ``worker_id``.

        Returns their ids: a job missing from the set was finished, cancelled,
        released or rescued and must no longer be worked on.
        """
        self._ensure_open()
        return await self._heartbeat(check.name(worker_id, "worker_id"))

    async def rescue_expired_jobs(self) -> int:
        """Move every running job whose lease has expired back to ``pending``
        (error ``lease expired``, retried after fresh jobs), or to ``failed``
        once it has used ``max_attempts``. Returns how many moved.
        """
        self._ensure_open()
        return await self._rescue_expired_jobs()

    async def retry_job(self, job_id: UUID | str) -> Job:
        """Run a ``failed`` or ``cancelled`` job again, as if new; returns it.

        The job becomes ``pending`` with ``attempts`` 0, no worker, no
        ``next_retry_at``, ``finished_at``, ``stats`` or lease; ``error`` keeps the
        last error. Any other status raises ``InvalidTransitionError``.
        """
        self._ensure_open()
        return await self._retry_job(check.job_id(job_id))

    async def purge_jobs(
        self,
        finished_before: datetime,
        statuses: Iterable[JobStatus | str] | None = None,
    ) -> int:
        """Delete terminal jobs that finished before ``finished_before``; returns how many.

        ``statuses`` limits the purge to some terminal statuses (default: all
        three); a non-terminal status is an ``InvalidRequestError``.
        """
        self._ensure_open()
        return await self._purge_jobs(
            check.aware_datetime(finished_before, "finished_before"), _terminal_statuses(statuses)
        )

    async def wait_for_jobs(self, timeout: float) -> None:
        """Return when a job may have become claimable, or after ``timeout`` seconds.

        A hint for idle workers, never a promise: the default just sleeps;
        backends with notifications return early.
        """
        self._ensure_open()
        await self._wait_for_jobs(check.timeout(timeout))

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    # ------------------------------------------------- primitives for backends

    @abstractmethod
    async def _create_jobs(self, requests: Sequence[CreateJobRequest]) -> list[Job]:
        """Insert the (non-empty, validated) requests atomically in this order."""

    @abstractmethod
    async def _claim_jobs(
        self, worker_id: str, limit: int, queues: tuple[str, ...] | None
    ) -> list[Job]:
        """Claim up to ``limit`` jobs atomically; return them in claim order."""

    @abstractmethod
    async def _complete_job(self, job_id: UUID, stats: dict[str, Any], fence: Fence) -> None: ...

    async def _complete_jobs(self, completions: Sequence[Completion]) -> list[Refusal | None]:
        """Apply each completion (validated, distinct jobs, ``stats`` a ``dict``) as
        :meth:`_complete_job` would; the refusal of each one not applied. This default
        makes one call per job, so an error raised midway leaves the earlier ones applied."""
        refusals: list[Refusal | None] = []
        for c in completions:
            try:
                # A copy, as complete_job passes: the caller keeps the Completion.
                stats = check.json_object(c.stats, "stats")
                await self._complete_job(c.job_id, stats, Fence(c.worker_id, c.attempt))
            except (JobNotFoundError, InvalidTransitionError) as refusal:
                refusals.append(refusal)
            else:
                refusals.append(None)
        return refusals

    @abstractmethod
    async def _fail_job(
        self, job_id: UUID, error: str, next_retry_at: datetime | None, fence: Fence
    ) -> None: ...

    @abstractmethod
    async def _cancel_job(
        self, job_id: UUID, stats: dict[str, Any] | None, fence: Fence
    ) -> None: ...

    @abstractmethod
    async def _get_job(self, job_id: UUID) -> Job | None: ...

    @abstractmethod
    async def _list_jobs(self, status: JobStatus | None, limit: int) -> list[Job]: ...

    @abstractmethod
    async def _release_job(self, job_id: UUID) -> bool:
        """Raise ``JobNotFoundError`` for an unknown id."""

    @abstractmethod
    async def _release_worker_jobs(self, worker_id: str) -> int: ...

    @abstractmethod
    async def _counts(self) -> Mapping[JobStatus, int]:
        """Counts per status; missing statuses count as zero."""

    async def _count_by_status(self, status: JobStatus) -> int:
        return (await self._counts()).get(status, 0)

    @abstractmethod
    async def _heartbeat(self, worker_id: str) -> set[UUID]: ...

    @abstractmethod
    async def _rescue_expired_jobs(self) -> int: ...

    @abstractmethod
    async def _retry_job(self, job_id: UUID) -> Job:
        """Raise ``JobNotFoundError`` or ``InvalidTransitionError`` when not failed/cancelled."""

    @abstractmethod
    async def _purge_jobs(self, finished_before: datetime, statuses: frozenset[JobStatus]) -> int:
        """Delete jobs whose status is in ``statuses`` (all terminal) and finished_at < cutoff."""

    async def _wait_for_jobs(self, timeout: float) -> None:
        await asyncio.sleep(timeout)

    @abstractmethod
    async def _close(self) -> None: ...


def _one(value: object, kind: type[T]) -> T:
    if not isinstance(value, kind):
        raise InvalidRequestError(f"expected a {kind.__name__}, got {type(value).__name__}")
    return value


def _sequence_of(values: object, argument: str, kind: type[T]) -> list[T]:
    """``values`` as a list, each element a ``kind``; else ``InvalidRequestError``."""
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise InvalidRequestError(f"{argument} must be a sequence of {kind.__name__}")
    return [_one(value, kind) for value in values]


def _terminal_statuses(value: object) -> frozenset[JobStatus]:
    if value is None:
        return TERMINAL_STATUSES
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InvalidRequestError("statuses must be a collection of terminal statuses")
    statuses = frozenset(JobStatus.parse(s) for s in value)
    if not statuses:
        raise InvalidRequestError("statuses must not be empty; pass None for every terminal status")
    live = sorted(s.value for s in statuses - TERMINAL_STATUSES)
    if live:
        raise InvalidRequestError(f"only terminal jobs can be purged, not {', '.join(live)}")
    return statuses


def _fence(worker_id: str | None, attempt: int | None) -> Fence:
    if worker_id is None and attempt is None:
        return NO_FENCE
    return Fence(
        None if worker_id is None else check.name(worker_id, "worker_id"),
        None if attempt is None else check.integer(attempt, "attempt", minimum=0),
    )
