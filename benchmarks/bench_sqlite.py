"""The sqlite backend beside the bare ``sqlite3`` module running the same statements.

    python benchmarks/bench_sqlite.py [--jobs 3000] [--repeats 3]

For every workload the backend (``jobqueue.connect("sqlite:///…")``) and a bare
loop run in the same invocation on fresh files of the same schema. The bare
loop executes the backend's own SQL text with the same parameters, in
autocommit, synchronously: no event loop, no thread hop, no ``Job`` objects.
"Completed at once" means ``asyncio.gather`` of the batch's completions, which
the backend writes as one statement; the bare loop runs that same statement.
For "8 tasks" the bare figure is the plain one-job loop: a synchronous loop has
no concurrency to exploit, so that ratio shows what sharing one queue among
tasks recovers. Figures are medians of ``--repeats`` alternating runs. Prints
a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite

import jobqueue
from jobqueue import CreateJobRequest
from jobqueue.backend import Fence
from jobqueue_sqlite import _sql as sql
from jobqueue_sqlite._outcomes import COMPLETE
from jobqueue_sqlite._queue import PROMOTE_INTERVAL

LEASE = timedelta(minutes=5)
CREATE_BATCH = 100
PROCESSES = 4


def url_of(path: Path) -> str:
    return f"sqlite:///{path}"


def new_file(directory: Path, name: str) -> Path:
    """A fresh, migrated jobqueue file."""
    path = directory / f"{name}-{uuid.uuid4().hex[:8]}.db"

    async def create() -> None:
        async with jobqueue.connect(url_of(path)):
            pass

    asyncio.run(create())
    return path


def preload(path: Path, count: int) -> None:
    async def load() -> None:
        async with jobqueue.connect(url_of(path)) as queue:
            for start in range(0, count, 1000):
                size = min(1000, count - start)
                await queue.create_jobs(CreateJobRequest(kind="noop") for _ in range(size))

    asyncio.run(load())


# ------------------------------------------------------------------------- bare


def bare_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def now_us() -> int:
    return sql.to_micros(datetime.now(UTC))


def bare_create(path: Path, count: int) -> float:
    conn = bare_connect(path)
    started = time.perf_counter()
    for _ in range(count // CREATE_BATCH):
        batch = json.dumps(
            [[str(uuid.uuid4()), "noop", "{}", "default", 0, 5, None] for _ in range(CREATE_BATCH)],
            ensure_ascii=False,
        )
        conn.execute(sql.CREATE, {"now": now_us(), "batch": batch}).fetchall()
    elapsed = time.perf_counter() - started
    conn.close()
    return count // CREATE_BATCH * CREATE_BATCH / elapsed


def bare_drain(path: Path, worker: str, batch: int, together: bool = False) -> int:
    """Claim ``batch`` at a time and complete each (fenced) until nothing is left.

    ``together``: complete a claimed batch with the backend's one statement for
    many outcomes, as the backend does for completions made at the same time.
    """
    conn = bare_connect(path)
    claim = sql.claim(0, batch == 1)
    complete = sql.complete(Fence(worker, 1))
    stats = sql.dump_json({})
    promoted_at = -PROMOTE_INTERVAL
    done = 0
    while True:
        now = now_us()
        if time.monotonic() - promoted_at >= PROMOTE_INTERVAL:
            conn.execute(sql.PROMOTE, {"now": now}).fetchall()
            promoted_at = time.monotonic()
        params = {"worker": worker, "now": now, "expires": now + 300_000_000, "limit": batch}
        rows = conn.execute(claim, params).fetchall()
        if not rows:
            break
        if together:
            changes = [
                [COMPLETE, row[0], stats, None, None, now_us(), worker, row[6]] for row in rows
            ]
            batch_param = {"batch": json.dumps(changes, ensure_ascii=False)}
            if len(conn.execute(sql.OUTCOMES, batch_param).fetchall()) != len(rows):
                raise RuntimeError("a bare completion was refused")
            done += len(rows)
            continue
        for row in rows:
            done_params = {
                "id": row[0],
                "stats": stats,
                "now": now_us(),
                "fence_worker": worker,
                "fence_attempt": row[6],
            }
            if not conn.execute(complete, done_params).fetchall():
                raise RuntimeError("a bare completion was refused")
        done += len(rows)
    conn.close()
    return done


# ------------------------------------------------------------------------- ours


async def ours_create(path: Path, count: int) -> float:
    async with jobqueue.connect(url_of(path)) as queue:
        started = time.perf_counter()
        for _ in range(count // CREATE_BATCH):
            await queue.create_jobs(CreateJobRequest(kind="noop") for _ in range(CREATE_BATCH))
        elapsed = time.perf_counter() - started
    return count // CREATE_BATCH * CREATE_BATCH / elapsed


async def ours_drain_queue(
    queue: jobqueue.JobQueue, worker: str, batch: int, together: bool
) -> int:
    done = 0
    while jobs := await queue.claim_jobs(worker, batch):
        completions = [
            queue.complete_job(job.id, {}, worker_id=worker, attempt=job.attempts) for job in jobs
        ]
        if together:
            await asyncio.gather(*completions)
        else:
            for completion in completions:
                await completion
        done += len(jobs)
    return done


async def ours_drain(
    path: Path, worker: str, batch: int, tasks: int = 1, together: bool = False
) -> int:
    async with jobqueue.connect(url_of(path)) as queue:
        counts = await asyncio.gather(
            *(ours_drain_queue(queue, f"{worker}-{i}", batch, together) for i in range(tasks))
        )
    return sum(counts)


# -------------------------------------------------------------------- harness


def _child(
    kind: str, path: str, worker: str, batch: int, together: bool, barrier: Any, results: Any
) -> None:
    barrier.wait()
    if kind == "bare":
        results.put(bare_drain(Path(path), worker, batch, together))
    else:
        results.put(asyncio.run(ours_drain(Path(path), worker, batch, 1, together)))


def drain_rate(
    kind: str, path: Path, count: int, processes: int, batch: int, tasks: int, together: bool
) -> float:
    """Jobs per second draining ``count`` preloaded jobs."""
    if processes == 1:
        started = time.perf_counter()
        if kind == "bare":
            done = bare_drain(path, "w", batch, together)
        else:
            done = asyncio.run(ours_drain(path, "w", batch, tasks, together))
        elapsed = time.perf_counter() - started
    else:
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(processes + 1)
        results = context.Queue()
        children = [
            context.Process(
                target=_child, args=(kind, str(path), f"p{i}", batch, together, barrier, results)
            )
            for i in range(processes)
        ]
        for child in children:
            child.start()
        barrier.wait()
        started = time.perf_counter()
        done = sum(results.get() for _ in children)
        elapsed = time.perf_counter() - started
        for child in children:
            child.join()
    if done != count:
        raise RuntimeError(f"{kind} drained {done} jobs of {count}")
    return count / elapsed


async def hop_micros(path: Path, calls: int = 2000) -> tuple[float, float]:
    """Microseconds per ``SELECT 1`` through aiosqlite and through bare sqlite3.

    The difference is the cost of one trip to aiosqlite's thread and back on
    this machine, now: the floor under every operation of the backend.
    """
    connection = await aiosqlite.connect(path, isolation_level=None)
    try:
        started = time.perf_counter()
        for _ in range(calls):
            await connection.execute_fetchall("SELECT 1")
        through_thread = (time.perf_counter() - started) / calls * 1e6
    finally:
        await connection.close()
    bare = sqlite3.connect(path, isolation_level=None)
    started = time.perf_counter()
    for _ in range(calls):
        bare.execute("SELECT 1").fetchall()
    direct = (time.perf_counter() - started) / calls * 1e6
    bare.close()
    return through_thread, direct


def create_figure(kind: str, directory: Path, count: int) -> float:
    path = new_file(directory, kind)
    if kind == "bare":
        return bare_create(path, count)
    return asyncio.run(ours_create(path, count))


def drain_figure(
    kind: str,
    directory: Path,
    count: int,
    processes: int,
    batch: int,
    tasks: int,
    together: bool,
) -> float:
    path = new_file(directory, kind)
    preload(path, count)
    return drain_rate(kind, path, count, processes, batch, tasks, together)


def paired(repeats: int, figure: Callable[[str], float]) -> tuple[float, float, float]:
    """Medians of the backend's and bare figures and of their ratios, runs alternating.

    Alternating keeps a change in the machine's load from favouring one side.
    """
    ours: list[float] = []
    bare: list[float] = []
    for _ in range(repeats):
        ours.append(figure("ours"))
        bare.append(figure("bare"))
    ratios = [o / b for o, b in zip(ours, bare, strict=True)]
    return statistics.median(ours), statistics.median(bare), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per drain run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (median)")
    args = parser.parse_args()
    jobs, repeats = args.jobs, args.repeats

    rows: list[tuple[str, tuple[float, float, float]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as tmp:
        directory = Path(tmp)
        hops = [asyncio.run(hop_micros(directory / "hop.db")) for _ in range(repeats)]
        through_thread = statistics.median(h[0] for h in hops)
        direct = statistics.median(h[1] for h in hops)

        def create(kind: str) -> float:
            return create_figure(kind, directory, jobs * 4)

        rows.append((f"create_jobs, batches of {CREATE_BATCH}", paired(repeats, create)))

        workloads = [
            ("1 process, 1 job per claim", 1, 1, 1, False),
            ("1 process, 8 tasks, 1 job per claim", 1, 1, 8, False),
            ("1 process, 10 jobs per claim, completed one by one", 1, 10, 1, False),
            ("1 process, 10 jobs per claim, completed at once", 1, 10, 1, True),
            (f"{PROCESSES} processes, 1 job per claim", PROCESSES, 1, 1, False),
            (
                f"{PROCESSES} processes, 10 jobs per claim, completed at once",
                PROCESSES,
                10,
                1,
                True,
            ),
        ]
        for title, processes, batch, tasks, together in workloads:
            figure = partial(
                drain_figure, directory=directory, count=jobs, processes=processes,
                batch=batch, tasks=tasks, together=together,
            )  # fmt: skip
            rows.append((title, paired(repeats, figure)))

    print(
        f"sqlite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"{jobs} jobs per drain, {jobs * 4} per create run; jobs/s, medians of {repeats} "
        "alternating runs; ratio: median of the per-run ratios jobqueue / bare"
    )
    print(
        f"SELECT 1 round trip: {through_thread:.0f} us through aiosqlite's thread, "
        f"{direct:.1f} us bare"
    )
    print("claim+complete workloads complete with fencing (worker and attempt)")
    width = max(len(title) for title, _ in rows)
    print(f"{'workload':<{width}}  {'jobqueue':>9}  {'bare':>9}  ratio")
    for title, (ours, bare, ratio) in rows:
        print(f"{title:<{width}}  {ours:>9.0f}  {bare:>9.0f}  {ratio:.2f}")


if __name__ == "__main__":
    main()
