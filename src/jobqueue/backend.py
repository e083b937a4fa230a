"""What a backend author needs beyond ``jobqueue`` itself.

A backend subclasses :class:`jobqueue.JobQueue` and implements its ``_``
primitives; the public methods have already validated every argument. This
module holds the pieces those primitives share across backends: the outcome
rules and fencing (:class:`Fence`, :func:`check_outcome`,
:func:`explain_refusal`), option checking and URL redaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

from ._errors import InvalidRequestError
from ._models import Completion, CreateJobRequest, Job, JobStatus
from ._queue import Refusal
from ._transitions import NO_FENCE, Fence, JobState, Outcome, check_outcome, explain_refusal

__all__ = [
    "NO_FENCE",
    "STATUS_BY_VALUE",
    "Fence",
    "JobState",
    "Outcome",
    "check_outcome",
    "completion_refusals",
    "explain_refusal",
    "new_job",
    "redact_url",
    "reject_unknown_options",
    "set_created_at",
]


STATUS_BY_VALUE: Mapping[str, JobStatus] = MappingProxyType({s.value: s for s in JobStatus})
"""Each status by its stored string: for building jobs from rows (faster than calling
``JobStatus``)."""


def new_job(
    job_id: UUID, request: CreateJobRequest, created_at: datetime, payload: dict[str, Any]
) -> Job:
    """The ``Job`` that ``create_job(request)`` returns: pending, no attempt yet, the
    request's fields, ``created_at == updated_at``. ``payload`` must be the caller's own
    copy of ``request.payload`` (so the returned job shares nothing with the stored one)."""
    # Positional: binds faster than keywords, and this runs once per created job.
    return Job(
        job_id,
        request.kind,
        payload,
        request.queue,
        request.priority,
        JobStatus.PENDING,
        0,
        request.max_attempts,
        None,
        None,
        None,
        request.run_at,
        None,
        None,
        created_at,
        created_at,
        None,
        None,
    )


_SET_CREATED_AT = Job.__dict__["created_at"].__set__
_SET_UPDATED_AT = Job.__dict__["updated_at"].__set__


def set_created_at(jobs: Iterable[Job], created_at: datetime) -> None:
    """Give jobs made by :func:`new_job` their creation time (``created_at`` and
    ``updated_at``), for a backend that builds the jobs while the database writes
    them and learns the time from its answer. Only for jobs not yet handed to
    anyone: jobs are otherwise immutable."""
    for job in jobs:
        _SET_CREATED_AT(job, created_at)
        _SET_UPDATED_AT(job, created_at)


async def completion_refusals(
    completions: Sequence[Completion],
    applied: Sequence[bool],
    get_job: Callable[[UUID], Awaitable[Job | None]],
) -> list[Refusal | None]:
    """What ``_complete_jobs`` returns once the backend knows which of ``completions`` it
    applied (``applied``, in the same order): None for each applied one, and for each
    other the error ``complete_job`` would have raised, explained from the job as
    ``get_job`` reads it now."""
    refusals: list[Refusal | None] = [None] * len(completions)
    for position, c in enumerate(completions):
        if not applied[position]:
            job = await get_job(c.job_id)
            fence = Fence(c.worker_id, c.attempt)
            refusals[position] = explain_refusal(Outcome.COMPLETE, job, c.job_id, fence)
    return refusals


def reject_unknown_options(scheme: str, options: Mapping[str, Any], known: Iterable[str]) -> None:
    """Raise ``InvalidRequestError`` naming every option not in ``known``."""
    allowed = set(known)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InvalidRequestError(
            f"unknown option(s) for {scheme}:// : {', '.join(unknown)}; "
            f"known: {', '.join(sorted(allowed)) or 'none'}"
        )


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe for errors, logs and ``repr``.

    Covers the password of the userinfo part and ``password``-like query
    parameters (``?password=…``, ``?sslpassword=…``). A URL too malformed to
    parse keeps only its scheme.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
        port = parts.port
    except ValueError:
        return url.split("://", 1)[0] + "://***"
    query = "&".join(_redact_parameter(p) for p in parts.query.split("&")) if parts.query else ""
    if password is not None:
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if port is not None:
            host = f"{host}:{port}"
        parts = parts._replace(netloc=f"{user}:***@{host}")
    if password is None and query == parts.query:
        return url
    return urlunsplit(parts._replace(query=query))


def _redact_parameter(parameter: str) -> str:
    key, sep, _ = parameter.partition("=")
    return f"{key}=***" if sep and "password" in key.lower() else parameter
