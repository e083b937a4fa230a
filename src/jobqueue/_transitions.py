"""Which outcome calls a job's state allows, for backends to enforce and explain.

A backend applies an outcome (complete, fail, cancel) as one compare-and-set on
the job's status and, when fenced, its worker and attempt. When that
compare-and-set matches nothing, :func:`explain_refusal` turns the job as it now
is into the error the caller gets; a backend that inspects the job first (the
in-memory one) calls :func:`check_outcome` before writing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from ._errors import InvalidTransitionError, JobNotFoundError
from ._models import JobStatus

__all__ = ["Fence", "JobState", "Outcome", "check_outcome", "explain_refusal"]


class JobState(Protocol):
    """The part of a job the outcome rules read (a ``Job`` has it)."""

    @property
    def status(self) -> JobStatus: ...
    @property
    def worker_id(self) -> str | None: ...
    @property
    def attempts(self) -> int: ...


class Outcome(enum.StrEnum):
    """An operation that changes a job by a compare-and-set on its status (and fence)."""

    COMPLETE = "complete"
    FAIL = "fail"
    CANCEL = "cancel"
    RETRY = "retry"

    @property
    def allowed_from(self) -> frozenset[JobStatus]:
        """The statuses from which this operation may be applied when not fenced."""
        return _ALLOWED_FROM[self]


_RUNNING_ONLY = frozenset({JobStatus.RUNNING})
_ALLOWED_FROM = {
    Outcome.COMPLETE: _RUNNING_ONLY,
    Outcome.FAIL: _RUNNING_ONLY,
    Outcome.CANCEL: frozenset({JobStatus.PENDING, JobStatus.RUNNING}),
    Outcome.RETRY: frozenset({JobStatus.FAILED, JobStatus.CANCELLED}),
}


@dataclass(frozen=True, slots=True)
class Fence:
    """The worker and attempt an outcome call claims to act for; None means unchecked.

    A fenced call (either value given) requires the job to be ``running`` and
    every given value to equal the job's.
    """

    worker_id: str | None = None
    attempt: int | None = None

    @property
    def active(self) -> bool:
        return self.worker_id is not None or self.attempt is not None

    def allowed_statuses(self, outcome: Outcome) -> frozenset[JobStatus]:
        return _RUNNING_ONLY if self.active else outcome.allowed_from

    def matches(self, job: JobState) -> bool:
        """True when the job is in a state this fenced or unfenced outcome may change."""
        if self.worker_id is not None and self.worker_id != job.worker_id:
            return False
        return self.attempt is None or self.attempt == job.attempts


NO_FENCE = Fence()


def check_outcome(outcome: Outcome, job: JobState | None, job_id: UUID, fence: Fence) -> None:
    """Return when ``outcome`` may be applied to ``job``; raise otherwise.

    Raises ``JobNotFoundError`` when ``job`` is None and
    ``InvalidTransitionError`` when its status or the fence forbids the outcome.
    """
    if job is None:
        raise JobNotFoundError(job_id)
    if job.status not in fence.allowed_statuses(outcome):
        allowed = " or ".join(sorted(s.value for s in fence.allowed_statuses(outcome)))
        raise InvalidTransitionError(
            f"cannot {outcome.value} job {job_id}: it is {job.status.value}, must be {allowed}"
        )
    if not fence.matches(job):
        raise InvalidTransitionError(
            f"cannot {outcome.value} job {job_id}: fenced by worker_id={fence.worker_id!r}, "
            f"attempt={fence.attempt!r}, but the job is held by worker_id={job.worker_id!r} "
            f"in attempt {job.attempts}"
        )


def explain_refusal(
    outcome: Outcome, job: JobState | None, job_id: UUID, fence: Fence
) -> JobNotFoundError | InvalidTransitionError:
    """The error for a compare-and-set that changed nothing, given the job as it is now."""
    try:
        check_outcome(outcome, job, job_id, fence)
    except (JobNotFoundError, InvalidTransitionError) as exc:
        return exc
    # The job changed again between the refused write and this read.
    return InvalidTransitionError(
        f"cannot {outcome.value} job {job_id}: it changed concurrently, try again"
    )
