"""pgqueuer, driven through its documented API: ``Queries.enqueue``, ``QueueManager``
with an entrypoint, ``run(batch_size=…, mode=drain)``, on psycopg connections."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import psycopg
from pgqueuer import PsycopgDriver, Queries, QueueManager
from pgqueuer.models import Job
from pgqueuer.types import QueueExecutionMode
from psycopg import sql

from .._common import ENQUEUE_BATCH, Finish

SCHEMA = "bench_pgqueuer"


def _dsn(dsn: str) -> str:
    return psycopg.conninfo.make_conninfo(dsn, options=f"-c search_path={SCHEMA}")


async def _connect(dsn: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(_dsn(dsn), autocommit=True)


async def reset(dsn: str) -> None:
    """A fresh schema holding a fresh pgqueuer installation."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA))
        )
        await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
    async with await _connect(dsn) as conn:
        await Queries(PsycopgDriver(conn)).install()


async def _enqueue_many(queries: Queries, count: int) -> None:
    done = 0
    while done < count:
        size = min(ENQUEUE_BATCH, count - done)
        await queries.enqueue(["noop"] * size, [None] * size, [0] * size)
        done += size


async def preload(dsn: str, count: int) -> None:
    async with await _connect(dsn) as conn:
        await _enqueue_many(Queries(PsycopgDriver(conn)), count)


async def enqueue_single(dsn: str, count: int) -> float:
    async with await _connect(dsn) as conn:
        queries = Queries(PsycopgDriver(conn))
        started = time.perf_counter()
        for _ in range(count):
            await queries.enqueue("noop", None)
        return count / (time.perf_counter() - started)


async def enqueue_batch(dsn: str, count: int) -> float:
    async with await _connect(dsn) as conn:
        queries = Queries(PsycopgDriver(conn))
        started = time.perf_counter()
        await _enqueue_many(queries, count)
        return count / (time.perf_counter() - started)


def _manager(conn: psycopg.AsyncConnection[Any], on_job: Any = None) -> QueueManager:
    manager = QueueManager(Queries(PsycopgDriver(conn)))

    @manager.entrypoint("noop")
    async def noop(job: Job) -> None:
        if on_job is not None:
            on_job(job)

    return manager


async def drain(dsn: str, count: int, managers: int, batch_size: int) -> float:
    """``managers`` QueueManagers, each on its own connection, in drain mode; jobs/s
    until the last entrypoint call."""
    finish = Finish(count)
    conns = [await _connect(dsn) for _ in range(managers)]
    try:
        qms = [_manager(c, lambda job: finish.hit()) for c in conns]
        started = time.perf_counter()
        await asyncio.gather(
            *(qm.run(batch_size=batch_size, mode=QueueExecutionMode.drain) for qm in qms)
        )
        sizes = await Queries(PsycopgDriver(conns[0])).queue_size()
    finally:
        for c in conns:
            await c.close()
    left = sum(s.count for s in sizes)
    if left:
        raise RuntimeError(f"pgqueuer drain left {left} jobs")
    return finish.rate(started)


async def latency(dsn: str, count: int, interval: float) -> list[tuple[float, float]]:
    """Enqueue-to-start seconds with one continuously running QueueManager (LISTEN/NOTIFY)."""
    enqueued_at: dict[int, float] = {}
    returned_at: dict[int, float] = {}
    started_at: dict[int, float] = {}
    worker_conn = await _connect(dsn)
    producer_conn = await _connect(dsn)
    all_started = asyncio.Event()

    def record(job: Job) -> None:
        started_at[int(job.payload or b"0")] = time.perf_counter()
        if len(started_at) == count:
            all_started.set()

    manager = _manager(worker_conn, record)
    running = asyncio.create_task(manager.run(dequeue_timeout=timedelta(seconds=1)))
    queries = Queries(PsycopgDriver(producer_conn))
    try:
        await asyncio.sleep(0.5)
        for n in range(count):
            enqueued_at[n] = time.perf_counter()
            await queries.enqueue("noop", str(n).encode())
            returned_at[n] = time.perf_counter()
            await asyncio.sleep(interval)
        await asyncio.wait_for(all_started.wait(), 30)
    finally:
        manager.shutdown.set()
        await running
        await worker_conn.close()
        await producer_conn.close()
    return [(started_at[n] - enqueued_at[n], started_at[n] - returned_at[n]) for n in enqueued_at]
