"""The sqlite backend's two connections: short statements on the event loop's thread,
the rest, and anything refused the lock, on aiosqlite's thread."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import jobqueue
from jobqueue import BackendUnavailableError, CreateJobRequest, JobStatus
from jobqueue_sqlite import SQLiteJobQueue, _db, _sql


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[SQLiteJobQueue]:
    handle = await jobqueue.connect(f"sqlite:///{tmp_path / 'q.db'}")
    assert isinstance(handle, SQLiteJobQueue)
    try:
        yield handle
    finally:
        await handle.close()


class Traces:
    """The statements each of a handle's two connections ran, in order."""

    def __init__(self) -> None:
        self.loop: list[str] = []
        self.thread: list[str] = []

    @classmethod
    async def of(cls, queue: SQLiteJobQueue) -> Traces:
        traces = cls()
        assert queue._db.loop_connection is not None
        queue._db.loop_connection.set_trace_callback(traces.loop.append)
        await queue._db.connection.set_trace_callback(traces.thread.append)
        return traces


def claims(statements: list[str]) -> int:
    return sum("SET status = 'running'" in s for s in statements)


def completions(statements: list[str]) -> int:
    return sum("SET status = 'completed'" in s for s in statements)


async def test_claim_and_complete_run_on_the_loop_connection(queue: SQLiteJobQueue) -> None:
    """With no other connection writing, a claim and a completion run on the loop's
    connection, in the event loop's own thread, and nothing on aiosqlite's."""
    await queue.create_job(CreateJobRequest(kind="k"))
    await queue.claim_job("w")  # the first claim also marks due jobs, on aiosqlite's thread
    await queue.create_job(CreateJobRequest(kind="k"))
    traces = await Traces.of(queue)
    job = await queue.claim_job("w")
    assert job is not None
    await queue.complete_job(job.id, {}, worker_id="w", attempt=1)
    assert claims(traces.loop) == 1 and completions(traces.loop) == 1
    assert traces.thread == []
    loop_connection = queue._db.loop_connection
    assert loop_connection is not None
    assert loop_connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0


async def test_scans_and_large_batches_run_on_aiosqlite_thread(queue: SQLiteJobQueue) -> None:
    """Statements whose work grows with the table or a caller's batch never run on the loop."""
    traces = await Traces.of(queue)
    await queue.create_jobs([CreateJobRequest(kind="k")] * (_db.LOOP_ROWS + 1))
    await queue.counts()
    await queue.list_jobs(JobStatus.PENDING)
    jobs = await queue.claim_jobs("w", _db.LOOP_ROWS + 1)
    assert len(jobs) == _db.LOOP_ROWS + 1
    assert claims(traces.loop) == 0 and claims(traces.thread) == 1
    assert not any("jobqueue_jobs" in s for s in traces.loop)


async def test_a_write_refused_the_lock_waits_on_aiosqlite_thread_then_succeeds(
    tmp_path: Path,
) -> None:
    """While another connection holds the write lock, a claim and a completion are refused
    at once on the loop connection (changing nothing), wait on aiosqlite's connection
    without blocking the loop, and go through there once the lock is released."""
    path = tmp_path / "q.db"
    async with jobqueue.connect(f"sqlite:///{path}") as queue:
        assert isinstance(queue, SQLiteJobQueue)
        created = await queue.create_jobs([CreateJobRequest(kind="k")] * 2)
        first = await queue.claim_job("w")
        assert first is not None
        traces = await Traces.of(queue)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            claiming = asyncio.create_task(queue.claim_job("w"))
            completing = asyncio.create_task(queue.complete_job(first.id, {}, worker_id="w"))
            ticks = 0
            for _ in range(20):
                await asyncio.sleep(0.01)
                ticks += 1
            assert ticks == 20 and not claiming.done() and not completing.done()
        finally:
            other.execute("COMMIT")
            other.close()
        second = await asyncio.wait_for(claiming, 30)
        await asyncio.wait_for(completing, 30)
        assert second is not None and second.id == created[1].id
        # Traces show refused attempts too: each call was tried on the loop connection,
        # then on aiosqlite's, which ran it once the lock was free.
        assert claims(traces.loop) >= 1 and completions(traces.loop) >= 1
        assert claims(traces.thread) >= 1 and completions(traces.thread) >= 1
        assert second.attempts == 1
        assert (await queue.get_job(first.id)).status == JobStatus.COMPLETED  # type: ignore[union-attr]


async def test_a_refused_statement_on_the_loop_connection_has_no_effect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run_on_loop`` tries the statement, and answers None at once, having written
    nothing, when another connection holds the lock."""
    monkeypatch.setattr(_db, "YIELD_INTERVAL", 60.0)
    path = tmp_path / "q.db"
    async with jobqueue.connect(f"sqlite:///{path}") as queue:
        assert isinstance(queue, SQLiteJobQueue)
        await queue._db.fetch("SELECT 1")  # yields once: no yield is due for a minute
        traces = await Traces.of(queue)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            assert queue._db.run_on_loop("DELETE FROM jobqueue_meta") is None
            assert time.monotonic() - started < 1
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert traces.loop == ["DELETE FROM jobqueue_meta"]
        assert await queue._db.fetch("SELECT count(*) FROM jobqueue_meta") == [(1,)]


async def test_each_connection_sees_the_other_ones_commits(queue: SQLiteJobQueue) -> None:
    """A job written through one connection is read back through the other, both ways."""
    written_in_thread = (await queue.create_jobs([CreateJobRequest(kind="a")] * 200))[0]
    assert await queue.get_job(written_in_thread.id) == written_in_thread
    written_on_loop = await queue.create_job(CreateJobRequest(kind="b"))
    listed = await queue.list_jobs(JobStatus.PENDING, limit=500)
    assert written_on_loop in listed and len(listed) == 201


async def test_a_chain_of_calls_lets_other_tasks_run(queue: SQLiteJobQueue) -> None:
    """A task making call after call, each answered at once on the loop, still yields to
    the event loop every few milliseconds, so other tasks run meanwhile."""
    job = await queue.create_job(CreateJobRequest(kind="k"))
    ticks: list[float] = []
    stop = False

    async def ticker() -> None:
        while not stop:
            ticks.append(time.monotonic())
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = time.monotonic()
    before = len(ticks)
    while time.monotonic() - started < 0.2:
        await queue.get_job(job.id)
    stop = True
    await task
    assert len(ticks) - before >= 10


async def test_completions_meeting_a_due_yield_are_written_together(
    queue: SQLiteJobQueue,
) -> None:
    """When the handle owes the event loop a turn, the completions of a worker's tasks
    finishing together are written by one statement after it, not one by one."""
    await queue.create_jobs([CreateJobRequest(kind="k")] * 50)
    jobs = await queue.claim_jobs("w", 50)
    traces = await Traces.of(queue)
    queue._db._yield_at = 0.0
    await asyncio.gather(
        *(queue.complete_job(job.id, {}, worker_id="w", attempt=1) for job in jobs)
    )
    statements = traces.loop + traces.thread
    assert sum("FROM json_each(" in s and "WHEN 'complete'" in s for s in statements) == 1
    assert (await queue.counts())[JobStatus.COMPLETED] == 50


async def test_the_wal_stays_bounded_under_a_stream_of_writes_on_the_loop(
    tmp_path: Path,
) -> None:
    """Checkpoints of the loop connection's writes run on aiosqlite's thread, often
    enough that the WAL file stays small while thousands of jobs are claimed and
    completed one by one (without them it would grow by about 30 kB per job, 90 MB
    here). The WAL starts over after every CHECKPOINTS_PER_RESTART-th checkpoint,
    so it peaks at about that many checkpoints' worth of writes (15.5 MB here); the
    bound allows one restart missed under load (34 MB seen once in a full run)."""
    path = tmp_path / "q.db"
    async with jobqueue.connect(f"sqlite:///{path}") as queue:
        assert isinstance(queue, SQLiteJobQueue)
        await queue.create_jobs([CreateJobRequest(kind="k")] * 3000)
        checkpoints: list[str] = []
        await queue._db.connection.set_trace_callback(
            lambda s: checkpoints.append(s) if "wal_checkpoint" in s else None
        )
        while job := await queue.claim_job("w"):
            await queue.complete_job(job.id, {}, worker_id="w", attempt=1)
        assert len(checkpoints) >= 6000 // (2 * _db.CHECKPOINT_WRITES)
        assert path.with_name("q.db-wal").stat().st_size < 40_000_000
        assert (await queue.counts())[JobStatus.COMPLETED] == 3000


async def test_statements_wait_only_for_every_nth_checkpoint(
    queue: SQLiteJobQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claims go on running on the loop while a checkpoint copies the WAL, except
    during every CHECKPOINTS_PER_RESTART-th checkpoint, which they wait for."""
    monkeypatch.setattr(_db, "CHECKPOINT_WRITES", 2)
    monkeypatch.setattr(_db, "CHECKPOINTS_PER_RESTART", 2)
    arrived: asyncio.Queue[asyncio.Event] = asyncio.Queue()
    original = _db.Database._outside_transactions

    async def gated(db: _db.Database, sql: str, parameters: _db.Parameters) -> list[_db.Row]:
        if "wal_checkpoint" in sql:
            gate = asyncio.Event()
            arrived.put_nowait(gate)
            await gate.wait()
        return await original(db, sql, parameters)

    monkeypatch.setattr(_db.Database, "_outside_transactions", gated)
    await queue.create_jobs([CreateJobRequest(kind="k")] * 10)  # loop write 1
    await queue.claim_job("w")  # write 2: the first checkpoint starts
    gate = await asyncio.wait_for(arrived.get(), 5)
    assert await asyncio.wait_for(queue.claim_job("w"), 1) is not None  # write 3
    checkpoint = queue._db._checkpoint
    assert checkpoint is not None
    gate.set()
    await checkpoint
    await queue.claim_job("w")  # write 4: the second checkpoint starts
    gate = await asyncio.wait_for(arrived.get(), 5)
    waiting = asyncio.create_task(queue.claim_job("w"))
    await asyncio.sleep(0.05)
    assert not waiting.done(), "a claim ran during the checkpoint meant to restart the WAL"
    gate.set()
    assert await asyncio.wait_for(waiting, 5) is not None


async def test_closing_closes_both_connections(tmp_path: Path) -> None:
    """After close neither connection is usable, and the WAL is folded into the file."""
    path = tmp_path / "q.db"
    queue = await jobqueue.connect(f"sqlite:///{path}")
    assert isinstance(queue, SQLiteJobQueue)
    await queue.create_job(CreateJobRequest(kind="k"))
    loop_connection = queue._db.loop_connection
    assert loop_connection is not None
    await queue.close()
    with pytest.raises(sqlite3.ProgrammingError):
        loop_connection.execute("SELECT 1")
    with pytest.raises(ValueError):
        await queue._db.connection.execute("SELECT 1")
    assert not path.with_name("q.db-wal").exists()


async def test_an_error_on_the_loop_connection_names_the_database(
    queue: SQLiteJobQueue,
) -> None:
    """A SQLite error other than the lock, raised on the loop, becomes
    BackendUnavailableError naming the URL, and writes nothing."""
    await queue.claim_job("w")
    loop_connection = queue._db.loop_connection
    assert loop_connection is not None
    loop_connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 400)
    with pytest.raises(BackendUnavailableError, match=r"sqlite:///.*q\.db.*too big"):
        await queue.create_job(CreateJobRequest(kind="k", payload={"x": "y" * 500}))
    assert (await queue.counts())[JobStatus.PENDING] == 0


async def test_a_one_job_claim_builds_no_temporary_index(queue: SQLiteJobQueue) -> None:
    """A claim of one job picks it by ``=``: SQLite's plan has no list of candidates to
    build, which the claim of several jobs has."""
    params = {"worker": "w", "now": 0, "expires": 1, "limit": 1}
    plans = [
        " ".join(str(row[3]) for row in await queue._db.fetch(f"EXPLAIN QUERY PLAN {text}", params))
        for text in (_sql.claim(0, one=True), _sql.claim(0))
    ]
    assert "LIST SUBQUERY" not in plans[0] and "SCALAR SUBQUERY" in plans[0]
    assert "LIST SUBQUERY" in plans[1]
