"""Every statement the backend runs, written once, with the schema quoted in.

Values are always bound parameters (``%(name)s``; the arrays of a batch insert
in binary, ``%(name)b``, which psycopg builds much faster); the only thing formatted
into the text is the schema, validated and quoted with ``psycopg.sql``.

Time: ``NOW`` is the injected clock's value when the queue has one (passed as
``%(now)s``), else the database's transaction timestamp, so that every host
agrees on leases and eligibility. Within one statement it is one instant. Which
of the two is decided when a handle renders its statements, not by a parameter:
a parameter would hide the time from the planner.

Plans: psycopg prepares a statement after its fifth execution, and PostgreSQL
then keeps one generic plan for it unless that plan's estimated cost is higher
than that of plans made for the actual values. A limit given as a parameter is
estimated at a tenth of the candidate rows, which on a big table makes the
generic claim look dear, so every claim was planned anew (a few tenths of a
millisecond, more than the claim itself). Claiming one job therefore has its
own statements, with ``LIMIT 1`` written in, whose generic plan is kept.

Readiness: a pending row is ``ready`` when it was claimable the last time it
was written. The claim index covers ready rows only, so future-dated jobs and
retries never lie in the claim scan's path. A claim also takes the rows that
have fallen due since (a range scan of their own index, usually empty),
claims the best of both in claim order and marks the due rows it did not
claim ready, all in one statement.

Completions requested together (see ``_coalesce``) are written together
by :data:`complete_many`, each row with its own compare-and-set; it answers
with the 1-based positions of the rows that matched. Its stats, worker and
attempt columns take the shared-or-each form of ``create_many`` below.

Batch inserts: every column of ``create_many`` but ``id`` is given either as an array
of each job's value or, when all the jobs share it, as that one value with
an empty array (``unnest`` pads a shorter array with NULLs, and ``coalesce``
takes the shared value), which spares both sides most of the encoding and
decoding. The statement always inserts at least two rows or fails whole, so it
notifies unconditionally.

Wake-ups: a statement that makes jobs claimable sends one ``pg_notify`` on the
queue's channel, only when it changed a row, so a transaction sends at most one
notification however many jobs it touches. The inserts and the retrying failure
also come ``_quiet``, without it, for a handle that notifies separately (see
``_wakeups``).
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from jobqueue import JobStatus

NOW = "{now}"
COLUMNS = (
    "id, kind, payload, queue, priority, status, attempts, max_attempts, worker_id, error, "
    "stats, run_at, next_retry_at, lease_expires_at, created_at, updated_at, started_at, "
    "finished_at"
)
_J_COLUMNS = ", ".join(f"j.{c.strip()}" for c in COLUMNS.split(","))
_FENCE = (
    "status = ANY(%(allowed)s::text[])"
    " AND (%(worker)s::text IS NULL OR worker_id = %(worker)s::text)"
    " AND (%(attempt)s::integer IS NULL OR attempts = %(attempt)s::integer)"
)


# The newest jobs of each status, each read backwards from jobs_status_creation_order;
# the planner merges them in order and stops at the limit.
_NEWEST_WITH_STATUS = tuple(
    f"""(SELECT * FROM {{jobs}} WHERE status = '{status.value}'
         ORDER BY created_at DESC, seq DESC LIMIT %(limit)s::integer)"""
    for status in JobStatus
)


def _wake(where: str = "") -> str:
    return (
        "(SELECT count(pg_notify(%(channel)s, '')) "
        f"FROM (SELECT 1 FROM changed {where} LIMIT 1) AS one)"
    )


def _ready(run_at: str, next_retry_at: str) -> str:
    eligible = f"greatest({run_at}, {next_retry_at})"
    return f"({eligible} IS NULL OR {eligible} <= {NOW})"


_TEXT = {
    # One row, so one notification, from its RETURNING: a CTE around the insert cost the
    # server a tenth more per call.
    "create_one": f"""
        INSERT INTO {{jobs}} (id, kind, payload, queue, priority, status, attempts,
                              max_attempts, run_at, created_at, updated_at, ready)
        VALUES (%(id)s::uuid, %(kind)s::text, %(payload)s::jsonb, %(queue)s::text,
                %(priority)s::integer, 'pending', 0, %(max_attempts)s::integer,
                %(run_at)s::timestamptz, {NOW}, {NOW},
                {_ready("%(run_at)s::timestamptz", "NULL")})
        RETURNING created_at, {{wake}}""",
    "create_many": f"""
        WITH changed AS (
            INSERT INTO {{jobs}} (id, kind, payload, queue, priority, status, attempts,
                                  max_attempts, run_at, created_at, updated_at, ready)
            SELECT r.id, r.kind, r.payload::jsonb, r.queue, r.priority, 'pending', 0,
                   r.max_attempts, r.run_at, {NOW}, {NOW}, {_ready("r.run_at", "NULL")}
            FROM (
                SELECT u.id, coalesce(u.kind, %(kind)s::text) AS kind,
                       coalesce(u.payload, %(payload)s::text) AS payload,
                       coalesce(u.queue, %(queue)s::text) AS queue,
                       coalesce(u.priority, %(priority)s::integer) AS priority,
                       coalesce(u.max_attempts, %(max_attempts)s::integer) AS max_attempts,
                       coalesce(u.run_at, %(run_at)s::timestamptz) AS run_at, u.ord
                FROM unnest(%(ids)b::uuid[], %(kind_each)b::text[], %(payload_each)b::text[],
                            %(queue_each)b::text[], %(priority_each)b::integer[],
                            %(max_attempts_each)b::integer[], %(run_at_each)b::timestamptz[])
                     WITH ORDINALITY AS u(id, kind, payload, queue, priority, max_attempts,
                                          run_at, ord)
            ) AS r
            ORDER BY r.ord
        )
        SELECT {NOW}, {{wake}}""",
    # A notification alone: a crash can lose nothing of value, so it need not wait for
    # its commit to reach the disk (the lock every notifying commit takes is held till then).
    "wake": "SELECT set_config('synchronous_commit', 'off', true), pg_notify(%(channel)s, '')",
    "claim": f"""
        WITH ready_rows AS MATERIALIZED (
            SELECT id, queue, priority, (next_retry_at IS NOT NULL) AS is_retry, created_at, seq
            FROM {{jobs}}
            WHERE status = 'pending' AND ready
              AND (run_at IS NULL OR run_at <= {NOW})
              AND (next_retry_at IS NULL OR next_retry_at <= {NOW})
              {{queue_filter}}
            ORDER BY priority DESC, (next_retry_at IS NOT NULL), created_at, seq
            LIMIT {{limit}}
            FOR UPDATE SKIP LOCKED
        ), due_rows AS MATERIALIZED (
            SELECT id, queue, priority, (next_retry_at IS NOT NULL) AS is_retry, created_at, seq
            FROM {{jobs}}
            WHERE status = 'pending' AND NOT ready AND greatest(run_at, next_retry_at) <= {NOW}
            FOR UPDATE SKIP LOCKED
        ), picked AS MATERIALIZED (
            SELECT id FROM (
                SELECT * FROM ready_rows
                UNION ALL
                SELECT * FROM due_rows WHERE true {{queue_filter}}
            ) AS candidates
            ORDER BY priority DESC, is_retry, created_at, seq
            LIMIT {{limit}}
        ), promoted AS (
            UPDATE {{jobs}} SET ready = true
            WHERE id IN (SELECT id FROM due_rows) AND id NOT IN (SELECT id FROM picked)
        )
        UPDATE {{jobs}} j
        SET status = 'running', worker_id = %(worker)s::text, attempts = j.attempts + 1,
            started_at = {NOW}, lease_expires_at = {NOW} + %(lease)s::interval,
            updated_at = {NOW}, ready = true
        FROM picked
        WHERE j.id = picked.id AND j.status = 'pending'
        RETURNING {_J_COLUMNS}, j.seq""",
    "complete": f"""
        UPDATE {{jobs}}
        SET status = 'completed', stats = %(stats)s::jsonb, finished_at = {NOW},
            lease_expires_at = NULL, updated_at = {NOW}
        WHERE id = %(id)s::uuid AND {_FENCE}""",
    "complete_many": f"""
        UPDATE {{jobs}} j
        SET status = 'completed', stats = u.stats::jsonb, finished_at = {NOW},
            lease_expires_at = NULL, updated_at = {NOW}
        FROM (
            SELECT e.id, coalesce(e.stats, %(stats)s::text) AS stats,
                   coalesce(e.worker, %(worker)s::text) AS worker,
                   coalesce(e.attempt, %(attempt)s::integer) AS attempt, e.n
            FROM unnest(%(ids)b::uuid[], %(stats_each)b::text[], %(worker_each)b::text[],
                        %(attempt_each)b::integer[]) WITH ORDINALITY AS e(id, stats, worker,
                                                                          attempt, n)
        ) AS u
        WHERE j.id = u.id AND j.status = 'running'
          AND (u.worker IS NULL OR j.worker_id = u.worker)
          AND (u.attempt IS NULL OR j.attempts = u.attempt)
        RETURNING u.n""",
    "fail_final": f"""
        UPDATE {{jobs}}
        SET status = 'failed', error = %(error)s::text, finished_at = {NOW},
            lease_expires_at = NULL, updated_at = {NOW}
        WHERE id = %(id)s::uuid AND {_FENCE}""",
    "fail_retry": f"""
        WITH changed AS (
            UPDATE {{jobs}}
            SET status = 'pending', worker_id = NULL, error = %(error)s::text,
                next_retry_at = %(retry_at)s::timestamptz, lease_expires_at = NULL,
                updated_at = {NOW}, ready = {_ready("run_at", "%(retry_at)s::timestamptz")}
            WHERE id = %(id)s::uuid AND {_FENCE}
            RETURNING 1
        )
        SELECT count(*), {{wake}} FROM changed""",
    "cancel": f"""
        UPDATE {{jobs}}
        SET status = 'cancelled', stats = coalesce(%(stats)s::jsonb, stats),
            finished_at = {NOW}, lease_expires_at = NULL, updated_at = {NOW}
        WHERE id = %(id)s::uuid AND {_FENCE}""",
    "get": f"SELECT {COLUMNS} FROM {{jobs}} WHERE id = %(id)s::uuid",
    "list_all": f"""
        SELECT {COLUMNS} FROM ({" UNION ALL ".join(_NEWEST_WITH_STATUS)}) AS newest
        ORDER BY created_at DESC, seq DESC LIMIT %(limit)s::integer""",
    "list_status": f"""
        SELECT {COLUMNS} FROM {{jobs}} WHERE status = %(status)s::text
        ORDER BY created_at DESC, seq DESC LIMIT %(limit)s::integer""",
    "release": f"""
        WITH changed AS (
            UPDATE {{jobs}}
            SET status = 'pending', worker_id = NULL, attempts = attempts - 1,
                lease_expires_at = NULL, updated_at = {NOW},
                ready = {_ready("run_at", "next_retry_at")}
            WHERE id = %(id)s::uuid AND status = 'running'
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM changed),
               EXISTS (SELECT 1 FROM {{jobs}} WHERE id = %(id)s::uuid), {_wake()}""",
    "release_worker": f"""
        WITH changed AS (
            UPDATE {{jobs}}
            SET status = 'pending', worker_id = NULL, attempts = attempts - 1,
                lease_expires_at = NULL, updated_at = {NOW},
                ready = {_ready("run_at", "next_retry_at")}
            WHERE status = 'running' AND worker_id = %(worker)s::text
            RETURNING 1
        )
        SELECT count(*), {_wake()} FROM changed""",
    "counts": "SELECT status, count(*) FROM {jobs} GROUP BY status",
    "count_status": "SELECT count(*) FROM {jobs} WHERE status = %(status)s::text",
    "heartbeat": f"""
        UPDATE {{jobs}} SET lease_expires_at = {NOW} + %(lease)s::interval
        WHERE status = 'running' AND worker_id = %(worker)s::text
        RETURNING id""",
    "rescue": f"""
        WITH expired AS MATERIALIZED (
            SELECT id FROM {{jobs}}
            WHERE status = 'running' AND lease_expires_at <= {NOW}
            FOR UPDATE SKIP LOCKED
        ), changed AS (
            UPDATE {{jobs}} j
            SET status = CASE WHEN j.attempts >= j.max_attempts THEN 'failed' ELSE 'pending' END,
                worker_id = CASE WHEN j.attempts >= j.max_attempts THEN j.worker_id END,
                error = 'lease expired',
                next_retry_at = CASE WHEN j.attempts >= j.max_attempts
                                     THEN j.next_retry_at ELSE {NOW} END,
                finished_at = CASE WHEN j.attempts >= j.max_attempts
                                   THEN {NOW} ELSE j.finished_at END,
                lease_expires_at = NULL, updated_at = {NOW},
                ready = {_ready("j.run_at", NOW)}
            FROM expired
            WHERE j.id = expired.id AND j.status = 'running'
            RETURNING j.status
        )
        SELECT count(*), {_wake("WHERE status = 'pending'")} FROM changed""",
    "retry": f"""
        WITH changed AS (
            UPDATE {{jobs}}
            SET status = 'pending', attempts = 0, worker_id = NULL, next_retry_at = NULL,
                finished_at = NULL, stats = NULL, lease_expires_at = NULL, updated_at = {NOW},
                ready = {_ready("run_at", "NULL")}
            WHERE id = %(id)s::uuid AND status IN ('failed', 'cancelled')
            RETURNING {COLUMNS}
        )
        SELECT changed.*, {_wake()} FROM changed""",
    "purge": """
        DELETE FROM {jobs}
        WHERE status = ANY(%(statuses)s::text[]) AND finished_at < %(before)s::timestamptz""",
}


@dataclass(frozen=True, slots=True)
class Statements:
    """The statements of one schema, rendered once per queue handle."""

    create_one: bytes
    create_one_quiet: bytes
    create_many: bytes
    create_many_quiet: bytes
    claim: bytes
    claim_queues: bytes
    claim_one: bytes
    claim_one_queues: bytes
    complete: bytes
    complete_many: bytes
    fail_final: bytes
    fail_retry: bytes
    fail_retry_quiet: bytes
    cancel: bytes
    get: bytes
    list_all: bytes
    list_status: bytes
    release: bytes
    release_worker: bytes
    counts: bytes
    count_status: bytes
    heartbeat: bytes
    rescue: bytes
    retry: bytes
    purge: bytes
    wake: bytes


_QUEUE_FILTER = "AND queue = ANY(%(queues)s::text[])"
# What the statements with a ``_quiet`` variant select to notify (the inserts always
# insert rows, see above).
_NOTIFY = "pg_notify(%(channel)s, '')"
_WAKES = {"create_one": _NOTIFY, "create_many": _NOTIFY, "fail_retry": _wake()}


def statements(schema: str, *, clock: bool) -> Statements:
    """The statements for the tables of ``schema`` (already validated), taking the time
    from the ``now`` parameter when ``clock`` is true, else from the database."""
    jobs = sql.Identifier(schema, "jobs")
    now = sql.SQL("%(now)s::timestamptz" if clock else "now()")
    composed: dict[str, bytes] = {}
    for name, text in _TEXT.items():
        if name == "claim":
            for variant, limit, queue_filter in (
                ("claim", "%(limit)s::integer", ""),
                ("claim_queues", "%(limit)s::integer", _QUEUE_FILTER),
                ("claim_one", "1", ""),
                ("claim_one_queues", "1", _QUEUE_FILTER),
            ):
                query = sql.SQL(text).format(
                    jobs=jobs, now=now, limit=sql.SQL(limit), queue_filter=sql.SQL(queue_filter)
                )
                composed[variant] = query.as_bytes(None)
        elif name in _WAKES:
            for variant, wake in ((name, _WAKES[name]), (f"{name}_quiet", "NULL")):
                query = sql.SQL(text).format(jobs=jobs, now=now, wake=sql.SQL(wake))
                composed[variant] = query.as_bytes(None)
        else:
            composed[name] = sql.SQL(text).format(jobs=jobs, now=now).as_bytes(None)
    return Statements(**composed)
