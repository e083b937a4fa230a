"""procrastinate, driven through its documented API: an ``App`` on a
``PsycopgConnector``, ``apply_schema_async``, ``defer_async`` /
``batch_defer_async``, and ``run_worker_async`` (``wait=False`` to drain)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import procrastinate
import psycopg
from psycopg import sql

from .._common import ENQUEUE_BATCH, Finish

SCHEMA = "bench_procrastinate"


def _app(dsn: str, on_job: Callable[[int], None] | None = None) -> procrastinate.App:
    conninfo = psycopg.conninfo.make_conninfo(dsn, options=f"-c search_path={SCHEMA}")
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))

    @app.task(name="noop")
    async def noop(n: int = 0) -> None:
        if on_job is not None:
            on_job(n)

    return app


async def reset(dsn: str) -> None:
    """A fresh schema with procrastinate's schema applied."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA))
        )
        await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
    app = _app(dsn)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


async def _defer_many(app: procrastinate.App, count: int) -> None:
    task = app.tasks["noop"]
    done = 0
    while done < count:
        size = min(ENQUEUE_BATCH, count - done)
        await task.batch_defer_async(*([{}] * size))
        done += size


async def preload(dsn: str, count: int) -> None:
    app = _app(dsn)
    async with app.open_async():
        await _defer_many(app, count)


async def enqueue_single(dsn: str, count: int) -> float:
    app = _app(dsn)
    async with app.open_async():
        task = app.tasks["noop"]
        started = time.perf_counter()
        for _ in range(count):
            await task.defer_async()
        return count / (time.perf_counter() - started)


async def enqueue_batch(dsn: str, count: int) -> float:
    app = _app(dsn)
    async with app.open_async():
        started = time.perf_counter()
        await _defer_many(app, count)
        return count / (time.perf_counter() - started)


async def drain(dsn: str, count: int, concurrency: int) -> float:
    """One worker with ``concurrency`` slots, ``wait=False`` so it stops when caught up;
    jobs/s until the last task ran."""
    finish = Finish(count)
    app = _app(dsn, lambda n: finish.hit())
    async with app.open_async():
        started = time.perf_counter()
        await app.run_worker_async(
            concurrency=concurrency, wait=False, install_signal_handlers=False
        )
        async with app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
            cur = await conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'"
            )
            row = await cur.fetchone()
    left = row[0] if row else 0
    if left:
        raise RuntimeError(f"procrastinate drain left {left} jobs")
    return finish.rate(started)


async def latency(dsn: str, count: int, interval: float) -> list[tuple[float, float]]:
    """Enqueue-to-start seconds with one waiting worker (LISTEN/NOTIFY, procrastinate's default)."""
    enqueued_at: dict[int, float] = {}
    returned_at: dict[int, float] = {}
    started_at: dict[int, float] = {}
    all_started = asyncio.Event()

    def record(n: int) -> None:
        started_at[n] = time.perf_counter()
        if len(started_at) == count:
            all_started.set()

    app = _app(dsn, record)
    async with app.open_async():
        running = asyncio.create_task(
            app.run_worker_async(concurrency=10, install_signal_handlers=False)
        )
        try:
            await asyncio.sleep(1.0)
            task = app.tasks["noop"]
            for n in range(count):
                enqueued_at[n] = time.perf_counter()
                await task.defer_async(n=n)
                returned_at[n] = time.perf_counter()
                await asyncio.sleep(interval)
            await asyncio.wait_for(all_started.wait(), 30)
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
    return [(started_at[n] - enqueued_at[n], started_at[n] - returned_at[n]) for n in enqueued_at]
