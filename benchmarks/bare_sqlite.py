"""The baseline: what SQLite allows through the standard ``sqlite3`` module alone.

A table shaped like jobqueue's (times as integer microseconds, ids as UUID
text, a partial index in claim order over pending rows), WAL with
``synchronous=NORMAL``, every statement in autocommit (SQLite takes the write
lock when a writing statement starts). A claim is one ``UPDATE … WHERE seq IN
(SELECT … LIMIT n) RETURNING``; a completion one fenced ``UPDATE``. The loops
are plain synchronous Python: no event loop, no thread hops.
"""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import time
import uuid
from typing import Any

from ._common import ENQUEUE_BATCH

LEASE_US = 300_000_000

DDL = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    worker_id TEXT,
    error TEXT,
    stats TEXT,
    run_at INTEGER,
    next_retry_at INTEGER,
    lease_expires_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_claim ON jobs (
    priority DESC, (next_retry_at IS NOT NULL), created_at, seq, run_at, next_retry_at
) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at, seq);
"""

INSERT = """
INSERT INTO jobs (id, kind, payload, queue, priority, status, attempts, max_attempts,
                  created_at, updated_at)
VALUES (?, ?, ?, 'default', 0, 'pending', 0, 5, ?, ?)
RETURNING *
"""

CLAIM = """
UPDATE jobs
SET status = 'running', worker_id = ?1, attempts = attempts + 1, started_at = ?2,
    lease_expires_at = ?2 + ?3, updated_at = ?2
WHERE seq IN (
    SELECT seq FROM jobs
    WHERE status = 'pending'
      AND (run_at IS NULL OR run_at <= ?2)
      AND (next_retry_at IS NULL OR next_retry_at <= ?2)
    ORDER BY priority DESC, (next_retry_at IS NOT NULL), created_at, seq
    LIMIT ?4
)
RETURNING *
"""

COMPLETE = """
UPDATE jobs
SET status = 'completed', stats = ?, finished_at = ?, lease_expires_at = NULL, updated_at = ?
WHERE id = ? AND status = 'running' AND worker_id = ? AND attempts = ?
"""


def _now_us() -> int:
    return time.time_ns() // 1000


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def reset(path: str) -> None:
    """An empty jobs table in the file at ``path``."""
    with connect(path) as conn:
        conn.execute("DROP TABLE IF EXISTS jobs")
        conn.executescript(DDL)
    conn.close()


def _insert_many(conn: sqlite3.Connection, count: int) -> None:
    done = 0
    while done < count:
        size = min(ENQUEUE_BATCH, count - done)
        now = _now_us()
        conn.execute("BEGIN IMMEDIATE")
        for _ in range(size):
            conn.execute(INSERT, (str(uuid.uuid4()), "noop", "{}", now, now)).fetchall()
        conn.execute("COMMIT")
        done += size


def preload(path: str, count: int) -> None:
    conn = connect(path)
    _insert_many(conn, count)
    conn.close()


def enqueue_single(path: str, count: int) -> float:
    conn = connect(path)
    started = time.perf_counter()
    for _ in range(count):
        now = _now_us()
        conn.execute(INSERT, (str(uuid.uuid4()), "noop", "{}", now, now)).fetchall()
    elapsed = time.perf_counter() - started
    conn.close()
    return count / elapsed


def enqueue_batch(path: str, count: int) -> float:
    conn = connect(path)
    started = time.perf_counter()
    _insert_many(conn, count)
    elapsed = time.perf_counter() - started
    conn.close()
    return count / elapsed


def drain_loop(path: str, worker_id: str, batch: int) -> int:
    """Claim ``batch`` at a time and complete each job, until nothing is claimable."""
    conn = connect(path)
    stats = json.dumps({})
    done = 0
    while True:
        now = _now_us()
        rows = conn.execute(CLAIM, (worker_id, now, LEASE_US, batch)).fetchall()
        if not rows:
            break
        for row in rows:
            finished = _now_us()
            conn.execute(COMPLETE, (stats, finished, finished, row[1], worker_id, row[7]))
        done += len(rows)
    conn.close()
    return done


def _process_main(path: str, worker_id: str, batch: int, ready: Any, results: Any) -> None:
    ready.wait()
    results.put(drain_loop(path, worker_id, batch))


def drain(path: str, count: int, processes: int, batch: int) -> float:
    """Drain ``count`` preloaded jobs with ``processes`` processes (1: in this process)."""
    if processes == 1:
        started = time.perf_counter()
        done = drain_loop(path, "bare-0", batch)
        elapsed = time.perf_counter() - started
    else:
        context = multiprocessing.get_context("spawn")
        ready = context.Barrier(processes + 1)
        results = context.Queue()
        procs = [
            context.Process(target=_process_main, args=(path, f"bare-{i}", batch, ready, results))
            for i in range(processes)
        ]
        for p in procs:
            p.start()
        ready.wait()
        started = time.perf_counter()
        done = sum(results.get() for _ in procs)
        elapsed = time.perf_counter() - started
        for p in procs:
            p.join()
    if done != count:
        raise RuntimeError(f"bare sqlite drain finished {done} jobs, expected {count}")
    return count / elapsed
