"""The exceptions jobqueue raises.

Every exception is a :class:`JobQueueError`, so one ``except`` catches them all::

    JobQueueError
     ├── JobNotFoundError          no job has that id
     ├── InvalidTransitionError    the job is not in a state that allows the call,
     │                             or a fenced call names the wrong worker/attempt
     ├── InvalidRequestError       a bad argument (also a ValueError); nothing changed
     ├── UnknownBackendError       no installed backend handles the URL's scheme
     │                             (also a ValueError)
     └── BackendUnavailableError   the backend cannot be reached or used as it is
                                   (missing driver, unreachable or foreign database,
                                   schema not migrated, outage)
"""

from __future__ import annotations

from uuid import UUID

__all__ = [
    "BackendUnavailableError",
    "InvalidRequestError",
    "InvalidTransitionError",
    "JobNotFoundError",
    "JobQueueError",
    "UnknownBackendError",
]


class JobQueueError(Exception):
    """Base class of every error raised by jobqueue and its backends."""


class JobNotFoundError(JobQueueError, LookupError):
    """No job has the given id."""

    def __init__(self, job_id: UUID) -> None:
        super().__init__(f"no job with id {job_id}")
        self.job_id = job_id


class InvalidTransitionError(JobQueueError):
    """The job's state does not allow the operation; the job was not changed."""


class InvalidRequestError(JobQueueError, ValueError):
    """An argument is invalid; the call was rejected before anything was written."""


class UnknownBackendError(JobQueueError, ValueError):
    """No installed backend handles the URL scheme."""


class BackendUnavailableError(JobQueueError):
    """The backend cannot serve the call: unreachable, misconfigured or not migrated."""
