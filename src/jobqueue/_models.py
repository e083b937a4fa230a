"""The values that cross the ``JobQueue`` API: ``JobStatus``, ``CreateJobRequest``, ``Job``,
``Completion``."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime
from types import MappingProxyType
from typing import Any
from uuid import UUID

from . import _validation as check
from ._errors import InvalidRequestError

__all__ = ["Completion", "CreateJobRequest", "Job", "JobStatus"]


class JobStatus(enum.StrEnum):
    """Where a job is in its life. ``completed``, ``failed`` and ``cancelled`` are terminal."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """True for the statuses a job never leaves by itself."""
        return self in TERMINAL_STATUSES

    @classmethod
    def parse(cls, value: object) -> JobStatus:
        """The status named by a ``JobStatus`` or its string value.

        Raises ``InvalidRequestError`` for anything else.
        """
        if isinstance(value, JobStatus):
            return value
        if isinstance(value, str):
            try:
                return cls(value)
            except ValueError:
                pass
        known = ", ".join(s.value for s in cls)
        raise InvalidRequestError(f"status must be one of {known}; got {value!r}")


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

_NO_STATS: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class CreateJobRequest:
    """What to enqueue. Validated and normalised on construction.

    Raises ``InvalidRequestError`` for: a ``kind`` or ``queue`` that is not 1 to 200
    characters, a ``payload`` that is not a JSON object, a ``priority`` outside
    the 32-bit signed range, a naive ``run_at``, ``max_attempts < 1``.
    After construction ``payload`` is a fresh ``dict`` equal to what every
    backend will return, and ``run_at`` is in UTC.
    """

    kind: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    queue: str = "default"
    priority: int = 0
    run_at: datetime | None = None
    max_attempts: int = 5

    def __post_init__(self) -> None:
        check.name(self.kind, "kind")
        check.name(self.queue, "queue")
        object.__setattr__(self, "payload", check.json_object(self.payload, "payload"))
        check.integer(self.priority, "priority")
        object.__setattr__(self, "run_at", check.optional_aware_datetime(self.run_at, "run_at"))
        check.integer(self.max_attempts, "max_attempts", minimum=1)


@dataclass(frozen=True, slots=True, init=False)
class Completion:
    """One job's completion for :meth:`JobQueue.complete_jobs`: the arguments of one
    ``complete_job`` call. Validated and normalised on construction.

    Raises ``InvalidRequestError`` for: a ``job_id`` that is not a UUID (a UUID
    string is accepted and converted), ``stats`` that is not a JSON object, an
    empty or over-long ``worker_id``, an ``attempt`` below 0. After construction
    ``stats`` is a fresh ``dict``.
    """

    job_id: UUID
    stats: Mapping[str, Any]
    worker_id: str | None
    attempt: int | None

    def __init__(
        self,
        job_id: UUID | str,
        stats: Mapping[str, Any] = _NO_STATS,
        worker_id: str | None = None,
        attempt: int | None = None,
    ) -> None:
        # Through the slot descriptors: a worker builds one per finished job, and this
        # costs a third of what the generated frozen __init__ and __post_init__ cost.
        _set_completion_job_id(self, check.job_id(job_id))
        _set_completion_stats(self, check.json_object(stats, "stats"))
        _set_completion_worker_id(
            self, None if worker_id is None else check.name(worker_id, "worker_id")
        )
        _set_completion_attempt(
            self, None if attempt is None else check.integer(attempt, "attempt", minimum=0)
        )


_set_completion_job_id = Completion.__dict__["job_id"].__set__
_set_completion_stats = Completion.__dict__["stats"].__set__
_set_completion_worker_id = Completion.__dict__["worker_id"].__set__
_set_completion_attempt = Completion.__dict__["attempt"].__set__


@dataclass(frozen=True, slots=True)
class Job:
    """A snapshot of one job as the backend stored it when the call returned.

    Datetimes are timezone-aware UTC. ``attempts`` counts claims (a release gives
    one back). ``error`` is the last error text, ``stats`` what completion or
    cancellation stored.
    """

    id: UUID
    kind: str
    payload: dict[str, Any]
    queue: str
    priority: int
    status: JobStatus
    attempts: int
    max_attempts: int
    worker_id: str | None
    error: str | None
    stats: dict[str, Any] | None
    run_at: datetime | None
    next_retry_at: datetime | None
    lease_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _slot_setting_init(cls: type) -> Callable[..., None]:
    """The ``__init__`` of the frozen slots dataclass ``cls``, setting each field
    through its slot descriptor rather than through ``object.__setattr__`` as the
    generated one does: half the cost, for a class built once per returned job.
    Every field must be required and there must be no ``__post_init__``."""
    names = [f.name for f in fields(cls)]
    assert all(f.default is MISSING and f.default_factory is MISSING for f in fields(cls))
    assert not hasattr(cls, "__post_init__")
    namespace = {f"_set_{name}": cls.__dict__[name].__set__ for name in names}
    source = f"def __init__(self, {', '.join(names)}):\n" + "".join(
        f"    _set_{name}(self, {name})\n" for name in names
    )
    exec(source, namespace)
    init: Callable[..., None] = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


# Type checkers keep seeing the generated signature, which this one matches.
setattr(Job, "__init__", _slot_setting_init(Job))  # noqa: B010
