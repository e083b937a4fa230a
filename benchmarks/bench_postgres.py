"""The PostgreSQL backend beside a bare psycopg loop running the very same SQL.

Usage::

    python benchmarks/bench_postgres.py [--url URL] [--jobs N] [--repeats R] [--workers 1,4,8,16]

Each workload runs ``--repeats`` times, jobqueue and the bare loop taking turns
in every repeat (which goes first alternates), each run in a fresh schema; the
figures are medians, and the ratio is jobqueue's over the bare loop's (above 1
is faster for throughput, lower is better for latency). The bare loop uses the backend's own
statements on plain ``psycopg.AsyncConnection`` objects (autocommit, prepared
after five executions), so the ratio is the cost of the library around the SQL:
pool checkout, validation, building ``Job`` objects, error mapping. (The
library writes completions beyond the pool's size together in one statement;
here every worker has its own connection, so that never happens.)

Workloads: enqueue one at a time and in batches; claim + complete with 1, 4,
8 and 16 concurrent workers (tasks in this process, one connection each),
claiming one job or a batch per round trip and completing each job in its own
transaction; enqueue-to-start latency of an idle worker woken by NOTIFY.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import psycopg

import jobqueue
from jobqueue import CreateJobRequest, JobQueue
from jobqueue_postgres._queue import channel_for
from jobqueue_postgres._sql import statements

DEFAULT_URL = os.environ.get(
    "JOBQUEUE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
ENQUEUE_BATCH = 500
CLAIM_BATCH = 50
LEASE = timedelta(minutes=5)
NOOP = CreateJobRequest(kind="noop")


class Run:
    """One measured run: a fresh schema, dropped afterwards."""

    def __init__(self, url: str, label: str) -> None:
        self.url = url
        self.schema = f"bench_pg_{label}_{uuid.uuid4().hex[:8]}"
        self.sql = statements(self.schema, clock=False)
        self.channel = channel_for(self.schema)

    async def queue(self, max_size: int) -> JobQueue:
        return await jobqueue.connect(
            self.url, schema=self.schema, min_size=max_size, max_size=max_size
        )

    async def connections(self, count: int) -> list[psycopg.AsyncConnection[Any]]:
        return [
            await psycopg.AsyncConnection.connect(self.url, autocommit=True) for _ in range(count)
        ]

    async def migrate(self) -> None:
        """Create the schema, as connecting with ``migrate=True`` does."""
        queue = await jobqueue.connect(self.url, schema=self.schema, min_size=0)
        await queue.close()

    def drop(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


async def _close_all(conns: list[psycopg.AsyncConnection[Any]]) -> None:
    for conn in conns:
        await conn.close()


# ------------------------------------------------------------------ bare loops


def _one_params(run: Run) -> dict[str, Any]:
    return {
        "now": None,
        "channel": run.channel,
        "id": uuid.uuid4(),
        "kind": "noop",
        "payload": json.dumps({}),
        "queue": "default",
        "priority": 0,
        "max_attempts": 5,
        "run_at": None,
    }


def _many_params(run: Run, count: int) -> dict[str, Any]:
    """``create_many``'s parameters for ``count`` alike jobs: each column shared."""
    shared = {
        "kind": "noop",
        "payload": "{}",
        "queue": "default",
        "priority": 0,
        "max_attempts": 5,
        "run_at": None,
    }
    params: dict[str, Any] = {"now": None, "channel": run.channel}
    params["ids"] = [uuid.uuid4() for _ in range(count)]
    for column, value in shared.items():
        params[column] = value
        params[f"{column}_each"] = []
    return params


async def bare_enqueue_single(run: Run, jobs: int) -> float:
    (conn,) = await run.connections(1)
    started = time.perf_counter()
    for _ in range(jobs):
        await (await conn.execute(run.sql.create_one, _one_params(run))).fetchall()
    elapsed = time.perf_counter() - started
    await conn.close()
    return jobs / elapsed


async def bare_enqueue_batch(run: Run, jobs: int) -> float:
    (conn,) = await run.connections(1)
    started = time.perf_counter()
    for start in range(0, jobs, ENQUEUE_BATCH):
        count = min(ENQUEUE_BATCH, jobs - start)
        await (await conn.execute(run.sql.create_many, _many_params(run, count))).fetchall()
    elapsed = time.perf_counter() - started
    await conn.close()
    return jobs / elapsed


async def bare_drain(run: Run, jobs: int, workers: int, batch: int) -> float:
    conns = await run.connections(workers)
    await _bare_preload(conns[0], run, jobs)

    async def worker(n: int, conn: psycopg.AsyncConnection[Any]) -> None:
        worker_id = f"bare-{n}"
        params = {"now": None, "worker": worker_id, "limit": batch, "lease": LEASE}
        while True:
            rows = await (await conn.execute(run.sql.claim, params)).fetchall()
            if not rows:
                return
            for row in rows:
                await conn.execute(
                    run.sql.complete,
                    {
                        "id": row[0],
                        "now": None,
                        "allowed": ["running"],
                        "worker": worker_id,
                        "attempt": row[6],
                        "stats": "{}",
                    },
                )

    started = time.perf_counter()
    await asyncio.gather(*(worker(n, conn) for n, conn in enumerate(conns)))
    elapsed = time.perf_counter() - started
    await _close_all(conns)
    return jobs / elapsed


async def _bare_preload(conn: psycopg.AsyncConnection[Any], run: Run, jobs: int) -> None:
    for start in range(0, jobs, ENQUEUE_BATCH):
        count = min(ENQUEUE_BATCH, jobs - start)
        await conn.execute(run.sql.create_many, _many_params(run, count))


async def bare_latency(run: Run, jobs: int) -> list[float]:
    producer, claimer, listener = await run.connections(3)
    await listener.execute(f'LISTEN "{run.channel}"')
    latencies: list[float] = []
    created_at: dict[uuid.UUID, float] = {}
    params = {"now": None, "worker": "bare", "limit": 1, "lease": LEASE}

    async def consume() -> None:
        while len(latencies) < jobs:
            rows = await (await claimer.execute(run.sql.claim, params)).fetchall()
            if not rows:
                async for _ in listener.notifies(timeout=1.0, stop_after=1):
                    pass
                continue
            for row in rows:
                latencies.append(time.perf_counter() - created_at[row[0]])

    async def produce() -> None:
        for _ in range(jobs):
            await asyncio.sleep(0.02)
            params = _one_params(run)
            created_at[params["id"]] = time.perf_counter()
            await producer.execute(run.sql.create_one, params)

    await asyncio.gather(consume(), produce())
    await _close_all([producer, claimer, listener])
    return latencies


# ------------------------------------------------------------------ jobqueue


async def ours_enqueue_single(run: Run, jobs: int) -> float:
    queue = await run.queue(1)
    started = time.perf_counter()
    for _ in range(jobs):
        await queue.create_job(NOOP)
    elapsed = time.perf_counter() - started
    await queue.close()
    return jobs / elapsed


async def ours_enqueue_batch(run: Run, jobs: int) -> float:
    queue = await run.queue(1)
    started = time.perf_counter()
    for start in range(0, jobs, ENQUEUE_BATCH):
        await queue.create_jobs([NOOP] * min(ENQUEUE_BATCH, jobs - start))
    elapsed = time.perf_counter() - started
    await queue.close()
    return jobs / elapsed


async def ours_drain(run: Run, jobs: int, workers: int, batch: int) -> float:
    queue = await run.queue(workers)
    for start in range(0, jobs, ENQUEUE_BATCH):
        await queue.create_jobs([NOOP] * min(ENQUEUE_BATCH, jobs - start))

    async def worker(n: int) -> None:
        worker_id = f"ours-{n}"
        while True:
            claimed = await queue.claim_jobs(worker_id, batch)
            if not claimed:
                return
            for job in claimed:
                await queue.complete_job(job.id, {}, worker_id=worker_id, attempt=job.attempts)

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(workers)))
    elapsed = time.perf_counter() - started
    await queue.close()
    return jobs / elapsed


async def ours_latency(run: Run, jobs: int) -> list[float]:
    consumer_queue = await run.queue(1)
    producer_queue = await run.queue(1)
    latencies: list[float] = []
    created_at: dict[int, float] = {}
    await consumer_queue.wait_for_jobs(0.01)  # start listening, as an idle worker would

    async def consume() -> None:
        while len(latencies) < jobs:
            claimed = await consumer_queue.claim_jobs("ours", 1)
            if not claimed:
                await consumer_queue.wait_for_jobs(1.0)
                continue
            for job in claimed:
                latencies.append(time.perf_counter() - created_at[job.payload["n"]])

    async def produce() -> None:
        for n in range(jobs):
            await asyncio.sleep(0.02)
            created_at[n] = time.perf_counter()
            await producer_queue.create_job(CreateJobRequest(kind="noop", payload={"n": n}))

    await asyncio.gather(consume(), produce())
    await consumer_queue.close()
    await producer_queue.close()
    return latencies


# ------------------------------------------------------------------ the report


async def measure(
    url: str,
    label: str,
    repeats: int,
    ours: Callable[[Run], Awaitable[float]],
    bare: Callable[[Run], Awaitable[float]],
) -> tuple[float, float]:
    ours_values: list[float] = []
    bare_values: list[float] = []
    for repeat in range(repeats):
        turns = [(bare_values, bare), (ours_values, ours)]
        for values, body in turns if repeat % 2 == 0 else reversed(turns):
            run = Run(url, label)
            try:
                await run.migrate()
                values.append(await body(run))
            finally:
                run.drop()
    return statistics.median(ours_values), statistics.median(bare_values)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", default="1,4,8,16")
    parser.add_argument("--latency-jobs", type=int, default=200)
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    url, jobs, repeats = args.url, args.jobs, args.repeats
    print(
        f"jobqueue PostgreSQL backend vs bare psycopg, same SQL; {jobs} jobs, median of "
        f"{repeats}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"{'workload':<38} {'jobqueue':>12} {'bare':>12} {'ratio':>7}")

    def row(name: str, ours: float, bare: float, unit: str) -> None:
        print(
            f"{name:<38} {ours:>9.0f} {unit:<2} {bare:>9.0f} {unit:<2} {ours / bare:>6.2f}x",
            flush=True,
        )

    ours, bare = await measure(
        url,
        "enq1",
        repeats,
        lambda r: ours_enqueue_single(r, jobs),
        lambda r: bare_enqueue_single(r, jobs),
    )
    row("enqueue, one per call (jobs/s)", ours, bare, "/s")
    ours, bare = await measure(
        url,
        "enqn",
        repeats,
        lambda r: ours_enqueue_batch(r, jobs * 10),
        lambda r: bare_enqueue_batch(r, jobs * 10),
    )
    row(f"enqueue, {ENQUEUE_BATCH} per call (jobs/s)", ours, bare, "/s")
    for batch in (1, CLAIM_BATCH):
        for count in workers:
            ours, bare = await measure(
                url,
                f"drain{count}",
                repeats,
                functools.partial(ours_drain, jobs=jobs, workers=count, batch=batch),
                functools.partial(bare_drain, jobs=jobs, workers=count, batch=batch),
            )
            row(f"claim {batch}/call + complete, {count} workers", ours, bare, "/s")

    ours_lat: list[float] = []
    bare_lat: list[float] = []
    for repeat in range(repeats):
        latency_turns = [(bare_lat, bare_latency), (ours_lat, ours_latency)]
        for values, body in latency_turns if repeat % 2 == 0 else reversed(latency_turns):
            run = Run(url, "lat")
            try:
                await run.migrate()
                values.extend(await body(run, args.latency_jobs))
            finally:
                run.drop()
    for name, fraction in (("p50", 0.5), ("p95", 0.95)):
        ours_ms = _percentile(ours_lat, fraction) * 1000
        bare_ms = _percentile(bare_lat, fraction) * 1000
        print(
            f"{'enqueue-to-start latency ' + name + ' (ms)':<38} {ours_ms:>12.2f} "
            f"{bare_ms:>12.2f} {ours_ms / bare_ms:>6.2f}x"
        )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
