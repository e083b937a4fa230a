"""The baseline: what PostgreSQL allows through psycopg alone, with the SQL a queue needs.

A jobs table shaped like jobqueue's (every column of ``Job``, a partial index
in claim order over pending rows), claimed with ``FOR UPDATE SKIP LOCKED`` in
a materialised CTE and completed with a fenced compare-and-set. Every
statement runs in autocommit, so each claim and each completion is one
transaction, as in a queue that promises each operation is atomic. psycopg
prepares a statement after its fifth execution.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ._common import BATCH, ENQUEUE_BATCH

SCHEMA = "bench_bare"
CHANNEL = "bench_bare_jobs"

DDL = """
CREATE TABLE jobs (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    id uuid PRIMARY KEY,
    kind text NOT NULL,
    payload jsonb NOT NULL,
    queue text NOT NULL,
    priority integer NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL,
    max_attempts integer NOT NULL,
    worker_id text,
    error text,
    stats jsonb,
    run_at timestamptz,
    next_retry_at timestamptz,
    lease_expires_at timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    started_at timestamptz,
    finished_at timestamptz
);
CREATE INDEX jobs_claim ON jobs (priority DESC, (next_retry_at IS NOT NULL), created_at, seq)
    WHERE status = 'pending';
CREATE INDEX jobs_created ON jobs (created_at, seq);
"""

INSERT = """
INSERT INTO jobs (id, kind, payload, queue, priority, status, attempts, max_attempts,
                  created_at, updated_at)
VALUES (%s, %s, %s, 'default', 0, 'pending', 0, 5, now(), now())
RETURNING *
"""

INSERT_MANY = """
INSERT INTO jobs (id, kind, payload, queue, priority, status, attempts, max_attempts,
                  created_at, updated_at)
SELECT id, kind, payload, 'default', 0, 'pending', 0, 5, now(), now()
FROM unnest(%s::uuid[], %s::text[], %s::jsonb[]) WITH ORDINALITY AS r(id, kind, payload, n)
ORDER BY n
RETURNING *
"""

CLAIM = """
WITH picked AS MATERIALIZED (
    SELECT id FROM jobs
    WHERE status = 'pending'
      AND (run_at IS NULL OR run_at <= now())
      AND (next_retry_at IS NULL OR next_retry_at <= now())
    ORDER BY priority DESC, (next_retry_at IS NOT NULL), created_at, seq
    LIMIT %s
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs AS j
SET status = 'running', worker_id = %s, attempts = j.attempts + 1, started_at = now(),
    lease_expires_at = now() + interval '5 minutes', updated_at = now()
FROM picked WHERE j.id = picked.id
RETURNING j.*
"""

COMPLETE = """
UPDATE jobs
SET status = 'completed', stats = %s, finished_at = now(), lease_expires_at = NULL,
    updated_at = now()
WHERE id = %s AND status = 'running' AND worker_id = %s AND attempts = %s
"""

COMPLETE_MANY = """
UPDATE jobs
SET status = 'completed', stats = '{}', finished_at = now(), lease_expires_at = NULL,
    updated_at = now()
WHERE id = ANY(%s) AND status = 'running' AND worker_id = %s
"""


def schema_dsn(dsn: str, settings: str = "") -> str:
    """``dsn`` with this baseline's schema first on the search path (and ``settings``,
    more ``-c name=value`` server settings)."""
    return psycopg.conninfo.make_conninfo(dsn, options=f"-c search_path={SCHEMA} {settings}")


async def reset(dsn: str) -> None:
    """Drop and recreate the baseline's schema: an empty jobs table."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA))
        )
        await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
        await conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(SCHEMA)))
        await conn.execute(DDL)


async def connect(dsn: str, settings: str = "") -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(schema_dsn(dsn, settings), autocommit=True)


async def preload(dsn: str, count: int) -> None:
    async with await connect(dsn) as conn:
        await _insert_many(conn, count)


async def _insert_many(conn: psycopg.AsyncConnection[Any], count: int) -> None:
    done = 0
    while done < count:
        size = min(ENQUEUE_BATCH, count - done)
        ids = [uuid.uuid4() for _ in range(size)]
        cur = await conn.execute(INSERT_MANY, (ids, ["noop"] * size, [Jsonb({})] * size))
        await cur.fetchall()
        done += size


async def enqueue_single(dsn: str, count: int) -> float:
    """Insert ``count`` jobs one statement (one transaction) each; jobs per second."""
    async with await connect(dsn) as conn:
        started = time.perf_counter()
        for _ in range(count):
            cur = await conn.execute(INSERT, (uuid.uuid4(), "noop", Jsonb({})))
            await cur.fetchone()
        return count / (time.perf_counter() - started)


async def enqueue_batch(dsn: str, count: int) -> float:
    """Insert ``count`` jobs in statements of ENQUEUE_BATCH rows; jobs per second."""
    async with await connect(dsn) as conn:
        started = time.perf_counter()
        await _insert_many(conn, count)
        return count / (time.perf_counter() - started)


async def _drain_loop(conn: psycopg.AsyncConnection[Any], worker_id: str, batch: int) -> int:
    done = 0
    while True:
        cur = await conn.execute(CLAIM, (batch, worker_id))
        rows = await cur.fetchall()
        if not rows:
            return done
        if batch == 1:
            row: Sequence[Any] = rows[0]
            await conn.execute(COMPLETE, (Jsonb({}), row[1], worker_id, row[7]))
        else:
            await conn.execute(COMPLETE_MANY, ([r[1] for r in rows], worker_id))
        done += len(rows)


async def drain(dsn: str, count: int, connections: int, batch: int) -> float:
    """Claim and complete ``count`` preloaded jobs over ``connections`` connections;
    ``batch`` jobs per claim (and, above 1, one completion statement per batch). Jobs/s."""
    conns = [await connect(dsn) for _ in range(connections)]
    try:
        started = time.perf_counter()
        done = await asyncio.gather(
            *(_drain_loop(c, f"bare-{i}", batch) for i, c in enumerate(conns))
        )
        elapsed = time.perf_counter() - started
    finally:
        for c in conns:
            await c.close()
    if sum(done) != count:
        raise RuntimeError(f"bare drain finished {sum(done)} jobs, expected {count}")
    return count / elapsed


async def latency(dsn: str, count: int, interval: float) -> list[tuple[float, float]]:
    """Enqueue-to-start seconds of ``count`` jobs inserted every ``interval`` seconds,
    with the insert sending a NOTIFY in its transaction and one consumer that LISTENs."""
    started_at: dict[uuid.UUID, float] = {}
    enqueued_at: dict[uuid.UUID, float] = {}
    returned_at: dict[uuid.UUID, float] = {}
    consumer = await connect(dsn)
    listener = await connect(dsn)
    producer = await connect(dsn)
    await listener.execute(f"LISTEN {CHANNEL}")
    wake = asyncio.Event()

    async def listen() -> None:
        async for _ in listener.notifies():
            wake.set()

    async def consume() -> None:
        while len(started_at) < count:
            cur = await consumer.execute(CLAIM, (BATCH, "bare-latency"))
            rows = await cur.fetchall()
            now = time.perf_counter()
            for row in rows:
                started_at[row[1]] = now
            for row in rows:
                await consumer.execute(COMPLETE, (Jsonb({}), row[1], "bare-latency", row[7]))
            if not rows:
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), 1.0)

    listening = asyncio.create_task(listen())
    consuming = asyncio.create_task(consume())
    try:
        for _ in range(count):
            job_id = uuid.uuid4()
            enqueued_at[job_id] = time.perf_counter()
            async with producer.transaction():
                await producer.execute(INSERT, (job_id, "noop", Jsonb({})))
                await producer.execute(f"NOTIFY {CHANNEL}")
            returned_at[job_id] = time.perf_counter()
            await asyncio.sleep(interval)
        await asyncio.wait_for(consuming, 30)
    finally:
        listening.cancel()
        consuming.cancel()
        for c in (consumer, listener, producer):
            await c.close()
    return [(started_at[i] - enqueued_at[i], started_at[i] - returned_at[i]) for i in enqueued_at]


async def claim_latency(dsn: str, probes: int, settings: str = "") -> list[float]:
    """Seconds one claim statement takes when exactly one job is claimable, ``probes`` times,
    on a connection with ``settings`` (``-c name=value`` server settings)."""
    samples = []
    async with await connect(dsn, settings) as conn:
        for _ in range(probes):
            await conn.execute(INSERT, (uuid.uuid4(), "noop", Jsonb({})))
            started = time.perf_counter()
            cur = await conn.execute(CLAIM, (1, "probe"))
            row = await cur.fetchone()
            samples.append(time.perf_counter() - started)
            assert row is not None
            await conn.execute(COMPLETE, (Jsonb({}), row[1], "probe", row[7]))
    return samples
