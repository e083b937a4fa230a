"""The statements of the sqlite backend and the conversions between rows and jobs.

Each operation is one statement. Every state change is a compare-and-set:
its ``WHERE`` names the status (and, when fenced, the worker and attempt) the
change requires, so a change made meanwhile by another process makes it
match nothing instead of overwriting.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from uuid import UUID

from jobqueue import Job, JobStatus
from jobqueue.backend import STATUS_BY_VALUE, Fence, Outcome

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
LEASE_EXPIRED = "lease expired"

COLUMNS = (
    "id, kind, payload, queue, priority, status, attempts, max_attempts, worker_id, error, "
    "stats, run_at, next_retry_at, lease_expires_at, created_at, updated_at, started_at, "
    "finished_at, seq"
)
SEQ = 18  # position of seq in COLUMNS


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch; exact, and sorts like the instants it stands for."""
    return (moment - EPOCH) // MICROSECOND


def optional_micros(moment: datetime | None) -> int | None:
    return None if moment is None else (moment - EPOCH) // MICROSECOND


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dump_json(value: Any) -> str:
    """Compact JSON text of a JSON value (payloads, stats and statement batches)."""
    return _ENCODER.encode(value)


def _json(text: str) -> Any:
    return {} if text == "{}" else json.loads(text)


def job_from_row(row: Sequence[Any]) -> Job:
    # Positional, in Job's field order: this runs once per returned job.
    return Job(
        UUID(row[0]),
        row[1],
        _json(row[2]),
        row[3],
        row[4],
        STATUS_BY_VALUE[row[5]],
        row[6],
        row[7],
        row[8],
        row[9],
        None if row[10] is None else _json(row[10]),
        None if row[11] is None else EPOCH + timedelta(microseconds=row[11]),
        None if row[12] is None else EPOCH + timedelta(microseconds=row[12]),
        None if row[13] is None else EPOCH + timedelta(microseconds=row[13]),
        EPOCH + timedelta(microseconds=row[14]),
        EPOCH + timedelta(microseconds=row[15]),
        None if row[16] is None else EPOCH + timedelta(microseconds=row[16]),
        None if row[17] is None else EPOCH + timedelta(microseconds=row[17]),
    )


def claim_order(row: Sequence[Any]) -> tuple[int, bool, int, int]:
    """The sort key of a row in claim order (COLUMNS layout)."""
    return (-row[4], row[12] is not None, row[14], row[SEQ])


# JSON text cannot carry NUL characters through SQLite's JSON functions, so a
# string holding one never travels inside a JSON batch parameter.
# A batch of requests is one JSON array of
# [id, kind, payload text, queue, priority, max_attempts, run_at] rows, so the
# whole batch is one statement (one transaction) whatever its size; ordering
# by the array index gives the rows their seq in the order given.
CREATE = """
INSERT INTO jobqueue_jobs (
    id, kind, payload, queue, priority, status, attempts, max_attempts,
    run_at, ready_at, due, created_at, updated_at
)
SELECT
    json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
    json_extract(value, '$[3]'), json_extract(value, '$[4]'), 'pending', 0,
    json_extract(value, '$[5]'), json_extract(value, '$[6]'), json_extract(value, '$[6]'),
    coalesce(json_extract(value, '$[6]') <= :now, 1), :now, :now
FROM json_each(:batch)
ORDER BY key
"""

CREATE_ONE = """
INSERT INTO jobqueue_jobs (
    id, kind, payload, queue, priority, status, attempts, max_attempts,
    run_at, ready_at, due, created_at, updated_at
)
VALUES (
    :id, :kind, :payload, :queue, :priority, 'pending', 0, :max_attempts,
    :run_at, :run_at, coalesce(:run_at <= :now, 1), :now, :now
)
"""

_CLAIM_ORDER = "priority DESC, (next_retry_at IS NOT NULL), created_at, seq"

PROMOTE = """
UPDATE jobqueue_jobs SET due = 1 WHERE status = 'pending' AND due = 0 AND ready_at <= :now
"""


@cache
def claim(queue_count: int, one: bool = False) -> str:
    """Claim up to :limit jobs, restricted to :q0..:qN-1 when ``queue_count`` > 0.

    The candidates are the first in claim order among jobs marked due (an
    index walk) and among jobs not marked due whose time has come (a range of
    the scheduled index, sorted). The rows come back with their ``due`` mark
    last, so the caller can tell when jobs are waiting to be marked due.
    ``one`` (for :limit 1) picks the job by ``=`` instead of ``IN``, which
    spares SQLite a temporary index (and the memory it allocates) per claim.
    """
    in_queues = ""
    if queue_count:
        names = ", ".join(f":q{i}" for i in range(queue_count))
        in_queues = f"AND queue IN ({names})"
    columns = "seq, priority, next_retry_at IS NOT NULL AS retry, created_at"
    return f"""
UPDATE jobqueue_jobs
SET status = 'running', worker_id = :worker, attempts = attempts + 1,
    started_at = :now, lease_expires_at = :expires, updated_at = :now
WHERE seq {"=" if one else "IN"} (
    SELECT seq FROM (
        SELECT * FROM (
            SELECT {columns} FROM jobqueue_jobs
            WHERE status = 'pending' AND due = 1 AND (ready_at IS NULL OR ready_at <= :now)
            {in_queues}
            ORDER BY {_CLAIM_ORDER} LIMIT :limit
        )
        UNION ALL
        SELECT * FROM (
            SELECT {columns} FROM jobqueue_jobs
            WHERE status = 'pending' AND due = 0 AND ready_at <= :now {in_queues}
            ORDER BY {_CLAIM_ORDER} LIMIT :limit
        )
    )
    ORDER BY priority DESC, retry, created_at, seq LIMIT :limit
)
RETURNING {COLUMNS}, due
"""


def _guard(outcome: Outcome, fence: Fence) -> str:
    statuses = ", ".join(f"'{s.value}'" for s in sorted(fence.allowed_statuses(outcome)))
    guard = f"id = :id AND status IN ({statuses})"
    if fence.worker_id is not None:
        guard += " AND worker_id = :fence_worker"
    if fence.attempt is not None:
        guard += " AND attempts = :fence_attempt"
    return guard


@cache
def complete(fence: Fence) -> str:
    return f"""
UPDATE jobqueue_jobs
SET status = 'completed', stats = :stats, finished_at = :now,
    lease_expires_at = NULL, updated_at = :now
WHERE {_guard(Outcome.COMPLETE, fence)}
RETURNING seq
"""


@cache
def fail(fence: Fence, retry: bool) -> str:
    if retry:
        change = (
            "status = 'pending', worker_id = NULL, next_retry_at = :retry_at, "
            "ready_at = max(coalesce(run_at, :retry_at), :retry_at), "
            "due = max(coalesce(run_at, :retry_at), :retry_at) <= :now"
        )
    else:
        change = "status = 'failed', finished_at = :now"
    return f"""
UPDATE jobqueue_jobs
SET {change}, error = :error, lease_expires_at = NULL, updated_at = :now
WHERE {_guard(Outcome.FAIL, fence)}
RETURNING seq
"""


@cache
def cancel(fence: Fence, with_stats: bool) -> str:
    stats = "stats = :stats, " if with_stats else ""
    return f"""
UPDATE jobqueue_jobs
SET status = 'cancelled', {stats}finished_at = :now, lease_expires_at = NULL, updated_at = :now
WHERE {_guard(Outcome.CANCEL, fence)}
RETURNING seq
"""


# Many outcomes in one statement: :batch is a JSON array of
# [op, id, stats, error, retry_at, now, fence worker, fence attempt] rows with
# distinct ids, op one of complete, fail, retry (fail with a retry time), cancel.
# Each row is the compare-and-set its own statement above would make.
OUTCOMES = """
UPDATE jobqueue_jobs AS j
SET status = CASE c.op
        WHEN 'complete' THEN 'completed' WHEN 'fail' THEN 'failed'
        WHEN 'retry' THEN 'pending' ELSE 'cancelled' END,
    stats = CASE WHEN c.op IN ('complete', 'cancel') THEN coalesce(c.stats, j.stats)
        ELSE j.stats END,
    error = CASE WHEN c.op IN ('fail', 'retry') THEN c.error ELSE j.error END,
    worker_id = CASE WHEN c.op = 'retry' THEN NULL ELSE j.worker_id END,
    next_retry_at = CASE WHEN c.op = 'retry' THEN c.retry_at ELSE j.next_retry_at END,
    ready_at = CASE WHEN c.op = 'retry' THEN max(coalesce(j.run_at, c.retry_at), c.retry_at)
        ELSE j.ready_at END,
    due = CASE WHEN c.op = 'retry' THEN max(coalesce(j.run_at, c.retry_at), c.retry_at) <= c.now
        ELSE j.due END,
    finished_at = CASE WHEN c.op = 'retry' THEN j.finished_at ELSE c.now END,
    lease_expires_at = NULL,
    updated_at = c.now
FROM (
    SELECT
        json_extract(value, '$[0]') AS op, json_extract(value, '$[1]') AS job_id,
        json_extract(value, '$[2]') AS stats, json_extract(value, '$[3]') AS error,
        json_extract(value, '$[4]') AS retry_at, json_extract(value, '$[5]') AS now,
        json_extract(value, '$[6]') AS fence_worker, json_extract(value, '$[7]') AS fence_attempt
    FROM json_each(:batch)
) AS c
WHERE j.id = c.job_id
    AND (
        j.status = 'running'
        OR (c.op = 'cancel' AND j.status = 'pending'
            AND c.fence_worker IS NULL AND c.fence_attempt IS NULL)
    )
    AND (c.fence_worker IS NULL OR j.worker_id = c.fence_worker)
    AND (c.fence_attempt IS NULL OR j.attempts = c.fence_attempt)
RETURNING id
"""

GET = f"SELECT {COLUMNS} FROM jobqueue_jobs WHERE id = :id"
EXISTS = "SELECT 1 FROM jobqueue_jobs WHERE id = :id"

LIST_ALL = f"""
SELECT {COLUMNS} FROM jobqueue_jobs ORDER BY created_at DESC, seq DESC LIMIT :limit
"""
LIST_STATUS = f"""
SELECT {COLUMNS} FROM jobqueue_jobs WHERE status = :status
ORDER BY created_at DESC, seq DESC LIMIT :limit
"""

_RELEASE = """
UPDATE jobqueue_jobs
SET status = 'pending', worker_id = NULL, attempts = attempts - 1,
    due = coalesce(ready_at <= :now, 1), lease_expires_at = NULL, updated_at = :now
"""
RELEASE = _RELEASE + "WHERE id = :id AND status = 'running' RETURNING seq"
RELEASE_WORKER = _RELEASE + "WHERE worker_id = :worker AND status = 'running' RETURNING seq"

COUNTS = "SELECT status, count(*) FROM jobqueue_jobs GROUP BY status"
COUNT = "SELECT count(*) FROM jobqueue_jobs WHERE status = :status"

HEARTBEAT = """
UPDATE jobqueue_jobs SET lease_expires_at = :expires
WHERE worker_id = :worker AND status = 'running'
RETURNING id
"""

RESCUE = f"""
UPDATE jobqueue_jobs
SET status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END,
    worker_id = CASE WHEN attempts >= max_attempts THEN worker_id END,
    next_retry_at = CASE WHEN attempts >= max_attempts THEN next_retry_at ELSE :now END,
    ready_at = max(coalesce(run_at, :now), :now),
    due = max(coalesce(run_at, :now), :now) <= :now,
    finished_at = CASE WHEN attempts >= max_attempts THEN :now ELSE finished_at END,
    error = '{LEASE_EXPIRED}', lease_expires_at = NULL, updated_at = :now
WHERE status = 'running' AND lease_expires_at <= :now
RETURNING status
"""

RETRY = f"""
UPDATE jobqueue_jobs
SET status = 'pending', attempts = 0, worker_id = NULL, next_retry_at = NULL,
    ready_at = run_at, due = coalesce(run_at <= :now, 1), finished_at = NULL, stats = NULL,
    lease_expires_at = NULL, updated_at = :now
WHERE id = :id AND status IN ('failed', 'cancelled')
RETURNING {COLUMNS}
"""

PURGE_CHUNK = 5000


@cache
def purge(statuses: frozenset[JobStatus]) -> str:
    """Delete at most PURGE_CHUNK finished jobs in ``statuses`` finished before :cutoff."""
    names = ", ".join(f"'{s.value}'" for s in sorted(statuses))
    return f"""
DELETE FROM jobqueue_jobs WHERE seq IN (
    SELECT seq FROM jobqueue_jobs
    WHERE status IN ({names}) AND finished_at < :cutoff
    LIMIT {PURGE_CHUNK}
)
RETURNING seq
"""
