"""One command that compares jobqueue with the bare drivers and with peer queues.

    python -m benchmarks.compare [--backend postgres|sqlite|memory|all] [--jobs 20000]
                                 [--repeats 3] [--workers 1,4,8,16] [--quick] [--big-table]

Every workload runs, in one invocation and on the same database server, through
jobqueue's public API (and its ``Worker``), through the bare driver doing the
same SQL, and through the peers that are installed (``pip install -e
".[bench]"``). Systems take turns within each repeat, so a burst of load on
the machine hits them alike. The table shows the median over repeats and the
ratio jobqueue/that system (above 1 means jobqueue is faster; for latencies,
which are lower-is-better, below 1 means jobqueue is faster).

PostgreSQL runs in the database ``jobqueue_bench`` (created when missing), each
system in a schema of its own that is dropped and recreated before each
measurement. SQLite runs in fresh files under a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from . import _report
from ._common import (
    BATCH,
    BENCH_DATABASE,
    DEFAULT_ADMIN_DSN,
    ENQUEUE_BATCH,
    Sample,
    Samples,
    Settings,
    median,
    percentile,
)

OURS = _report.OURS
LATENCY_INTERVAL = 0.02
CLAIM_PROBES = 200
SHORT_FACTOR = 3
"""Repeats of the one-commit-per-call workloads, which last under a second, per repeat of
the others: a commit's latency here varies from one second to the next."""
STATS_DELAY = 1.1
"""Seconds to wait for sessions to report their statistics (PostgreSQL flushes them
at most once a second)."""

T = TypeVar("T")
Measure = Callable[[], Awaitable[float]]
Latencies = Callable[[], Awaitable[Sequence[tuple[float, ...]]]]
ENQUEUE_TO_START = ("enqueue-to-start", "commit-to-start")
"""Handler start minus the enqueue call's start, and minus its return (the job committed)."""


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class Runner:
    """Runs each (workload, config) for every system, ``repeats`` times, systems interleaved."""

    def __init__(self, settings: Settings, samples: Samples, backend: str) -> None:
        self.settings = settings
        self.samples = samples
        self.backend = backend
        self._notes: dict[tuple[str, str, str, str], list[float]] = {}

    def note(self, workload: str, config: str, system: str, unit: str, value: float) -> None:
        """Keep a by-product of a measurement; :meth:`record_notes` adds their medians."""
        self._notes.setdefault((workload, config, system, unit), []).append(value)

    def record_notes(self) -> None:
        for (workload, config, system, unit), found in self._notes.items():
            self.samples.add(
                Sample(self.backend, workload, config, system, median(found), unit, False)
            )
        self._notes.clear()

    async def rate(
        self,
        workload: str,
        config: str,
        systems: dict[str, Measure],
        unit: str = "jobs/s",
        *,
        short: bool = False,
    ) -> None:
        """Each measure returns one value; record each system's median over the repeats
        (``short``: SHORT_FACTOR times as many, for workloads timed in under a second)."""
        values: dict[str, list[float]] = {name: [] for name in systems}
        repeats = self.settings.repeats * (SHORT_FACTOR if short else 1)
        for repeat in range(repeats):
            for name, measure in _rotated(systems, repeat):
                values[name].append(await measure())
        for name, found in values.items():
            self.samples.add(Sample(self.backend, workload, config, name, median(found), unit))
            _progress(
                f"{self.backend:8} {workload:28} {config:26} {name:20} {median(found):>12,.1f}"
            )

    async def latencies(
        self, workloads: tuple[str, ...], config: str, systems: dict[str, Latencies]
    ) -> None:
        """Each measure returns one tuple of latencies per job, one per workload; record,
        per workload, the medians over repeats of p50 and p95, in milliseconds."""
        found: dict[tuple[str, int, str], list[float]] = {}
        for repeat in range(self.settings.repeats):
            for name, measure in _rotated(systems, repeat):
                samples = await measure()
                for index in range(len(workloads)):
                    values = [s[index] for s in samples]
                    for label, fraction in (("p50", 0.50), ("p95", 0.95)):
                        key = (name, index, label)
                        found.setdefault(key, []).append(percentile(values, fraction) * 1000)
        for index, workload in enumerate(workloads):
            for name in systems:
                for label in ("p50", "p95"):
                    value = median(found[(name, index, label)])
                    title = f"{workload} {label}"
                    self.samples.add(Sample(self.backend, title, config, name, value, "ms", False))
                    _progress(f"{self.backend:8} {title:28} {config:26} {name:20} {value:>12,.2f}")


def _rotated(systems: dict[str, T], repeat: int) -> list[tuple[str, T]]:
    """The systems in the order of this repeat: each repeat starts one system later, so
    none always runs first (right after another system's clean-up) or last."""
    items = list(systems.items())
    start = repeat % len(items)
    return items[start:] + items[:start]


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ PostgreSQL


def _bench_dsn(admin_dsn: str) -> str:
    return psycopg.conninfo.make_conninfo(admin_dsn, dbname=BENCH_DATABASE)


async def _ensure_database(admin_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as conn:
        cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DATABASE,))
        if await cur.fetchone() is None:
            await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DATABASE)))


async def _drop_schema(dsn: str, schema: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


async def run_postgres(settings: Settings, samples: Samples) -> None:
    from . import bare_postgres as bare
    from . import ours

    await _ensure_database(settings.admin_dsn)
    dsn = _bench_dsn(settings.admin_dsn)
    ours_schema = "bench_jobqueue"
    url = _postgres_url(dsn)
    runner = Runner(settings, samples, "postgres")
    peers: dict[str, Any] = {}
    if _installed("pgqueuer"):
        from .peers import pgqueuer_peer

        peers["pgqueuer"] = pgqueuer_peer
    else:
        _progress("pgqueuer is not installed: skipped (pip install -e '.[bench]')")
    if _installed("procrastinate"):
        from .peers import procrastinate_peer

        peers["procrastinate"] = procrastinate_peer
    else:
        _progress("procrastinate is not installed: skipped (pip install -e '.[bench]')")

    @contextlib.asynccontextmanager
    async def fresh_ours(pool: int = 10) -> Any:
        await _drop_schema(dsn, ours_schema)
        queue = await ours.open_queue(url, {"schema": ours_schema, "max_size": pool})
        try:
            yield queue
        finally:
            await queue.close()

    if not settings.big_table_only:

        async def ours_enqueue_single() -> float:
            async with fresh_ours() as queue:
                return await ours.enqueue_single(queue, settings_single)

        async def ours_enqueue_batch() -> float:
            async with fresh_ours() as queue:
                return await ours.enqueue_batch(queue, settings.jobs)

        def peer_measure(
            peer: Any, action: Callable[[], Awaitable[float]], preload: int = 0
        ) -> Measure:
            """``action`` on a freshly reset schema of ``peer`` (a peer or the bare baseline)
            holding ``preload`` jobs."""

            async def measure() -> float:
                await peer.reset(dsn)
                if preload:
                    await peer.preload(dsn, preload)
                return await action()

            return measure

        def bare_measure(action: Callable[[], Awaitable[float]], preload: int = 0) -> Measure:
            return peer_measure(bare, action, preload)

        settings_single = max(200, settings.jobs // 10)
        single_config = f"1 connection, N={settings_single}"
        systems: dict[str, Measure] = {
            OURS: ours_enqueue_single,
            "bare psycopg": bare_measure(lambda: bare.enqueue_single(dsn, settings_single)),
        }
        for name, peer in peers.items():
            systems[name] = peer_measure(peer, partial(peer.enqueue_single, dsn, settings_single))
        await runner.rate("enqueue, one per call", single_config, systems, short=True)

        systems = {
            OURS: ours_enqueue_batch,
            "bare psycopg": bare_measure(lambda: bare.enqueue_batch(dsn, settings.jobs)),
        }
        for name, peer in peers.items():
            systems[name] = peer_measure(peer, partial(peer.enqueue_batch, dsn, settings.jobs))
        await runner.rate("enqueue, batch", f"{ENQUEUE_BATCH} per call, N={settings.jobs}", systems)

        loop_jobs = max(200, settings.jobs // 10)

        async def ours_api_loop() -> float:
            async with fresh_ours(pool=10) as queue:
                await ours.preload(queue, loop_jobs)
                return await ours.api_loop(queue, loop_jobs, 8)

        await runner.rate(
            "claim+complete loop",
            f"8 connections, N={loop_jobs}",
            {
                OURS: ours_api_loop,
                "bare psycopg": bare_measure(lambda: bare.drain(dsn, loop_jobs, 8, 1), loop_jobs),
            },
            short=True,
        )

        slow_jobs = max(200, settings.jobs // 20)
        for workers in settings.workers:

            async def ours_drain(
                w: int = workers,
                concurrency: int = 1,
                n: int = loop_jobs,
                commits_key: tuple[str, str, str] | None = None,
            ) -> float:
                before = 0
                async with fresh_ours(pool=max(10, w + 2)) as queue:
                    await ours.preload(queue, n)
                    if commits_key is not None:
                        await asyncio.sleep(STATS_DELAY)
                        before = await _commits(dsn)
                    rate = await ours.drain([queue] * w, n, concurrency)
                if commits_key is not None:
                    # Counted once the pool's connections closed and so reported their figures.
                    await asyncio.sleep(STATS_DELAY)
                    commits = await _commits(dsn) - before - 1
                    runner.note(*commits_key, "commits/job", max(0, commits) / n)
                return rate

            systems = {
                OURS: ours_drain,
                "bare psycopg": bare_measure(
                    partial(bare.drain, dsn, loop_jobs, workers, 1), loop_jobs
                ),
            }
            if "pgqueuer" in peers:
                pq = peers["pgqueuer"]
                systems["pgqueuer"] = peer_measure(
                    pq, partial(pq.drain, dsn, loop_jobs, workers, 1), loop_jobs
                )
            await runner.rate(
                "drain, one job per claim", f"{workers} workers, N={loop_jobs}", systems
            )
            if "procrastinate" in peers:
                pr = peers["procrastinate"]
                await runner.rate(
                    "drain, one job per claim",
                    f"{workers} workers, N={slow_jobs}",
                    {
                        "procrastinate": peer_measure(
                            pr, partial(pr.drain, dsn, slow_jobs, workers), slow_jobs
                        )
                    },
                )

            batch_config = f"{workers} workers, N={settings.jobs}"

            def counted(system: str, action: Measure, config: str = batch_config) -> Measure:
                key = _commits_key(config, system)
                return _counting_commits(runner, dsn, key, settings.jobs, action)

            systems = {
                OURS: partial(
                    ours_drain, workers, BATCH, settings.jobs, _commits_key(batch_config, OURS)
                ),
                "bare psycopg": bare_measure(
                    counted(
                        "bare psycopg", partial(bare.drain, dsn, settings.jobs, workers, BATCH)
                    ),
                    settings.jobs,
                ),
            }
            if "pgqueuer" in peers:
                pq = peers["pgqueuer"]
                for size in (10, BATCH):
                    name = f"pgqueuer batch {size}"
                    systems[name] = peer_measure(
                        pq,
                        counted(name, partial(pq.drain, dsn, settings.jobs, workers, size)),
                        settings.jobs,
                    )
            await runner.rate(f"drain, up to {BATCH} per claim", batch_config, systems)

        async def ours_latency() -> Sequence[tuple[float, ...]]:
            async with fresh_ours() as queue:
                return await ours.latency(queue, settings.latency_jobs, LATENCY_INTERVAL)

        async def bare_latency() -> Sequence[tuple[float, ...]]:
            await bare.reset(dsn)
            return await bare.latency(dsn, settings.latency_jobs, LATENCY_INTERVAL)

        latency_systems: dict[str, Latencies] = {
            OURS: ours_latency,
            "bare psycopg": bare_latency,
        }
        for name, peer in peers.items():

            async def peer_latency(p: Any = peer) -> Sequence[tuple[float, ...]]:
                await p.reset(dsn)
                return list(await p.latency(dsn, settings.latency_jobs, LATENCY_INTERVAL))

            latency_systems[name] = peer_latency
        await runner.latencies(
            ENQUEUE_TO_START,
            f"1 job / {LATENCY_INTERVAL * 1000:.0f} ms, N={settings.latency_jobs}",
            latency_systems,
        )

    runner.record_notes()
    if settings.big_table or settings.big_table_only:
        from . import big_table

        await big_table.run(runner, dsn, url, ours_schema)


async def _commits(dsn: str) -> int:
    """Transactions committed so far in the benchmark database (all sessions)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        row = await cur.fetchone()
    return int(row[0]) if row else 0


def _commits_key(config: str, system: str) -> tuple[str, str, str]:
    return ("commits per job, batch drain", config, system)


def _counting_commits(
    runner: Runner, dsn: str, key: tuple[str, str, str], jobs: int, action: Measure
) -> Measure:
    """``action``, noting how many transactions per job the database committed meanwhile."""

    async def measure() -> float:
        await asyncio.sleep(STATS_DELAY)
        before = await _commits(dsn)
        value = await action()
        await asyncio.sleep(STATS_DELAY)
        after = await _commits(dsn)
        # The first probe's own transaction is counted in ``after``; it is not the system's.
        # Each system closes its connections when its drain returns, which reports their
        # figures.
        runner.note(*key, "commits/job", max(0, after - before - 1) / jobs)
        return value

    return measure


def _postgres_url(dsn: str) -> str:
    """A ``postgresql://`` URL for ``connect`` from a libpq key/value or URL conninfo."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    user = params.get("user", "postgres")
    host = params.get("host", "127.0.0.1")
    port = params.get("port", "5432")
    password = params.get("password")
    auth = f"{user}:{password}" if password else str(user)
    return f"postgresql://{auth}@{host}:{port}/{params.get('dbname', BENCH_DATABASE)}"


# ---------------------------------------------------------------------- SQLite


def _bare_sqlite_drain(path: str, *, count: int, processes: int) -> float:
    from . import bare_sqlite

    return bare_sqlite.drain(path, count, processes, BATCH)


def _huey_drain(peer: Any, path: str, *, count: int, workers: int) -> float:
    rate: float = peer.drain(path, count, workers)
    return rate


async def run_sqlite(settings: Settings, samples: Samples) -> None:
    from . import bare_sqlite as bare
    from . import bench_sqlite as same_sql
    from . import ours, sqlite_processes

    runner = Runner(settings, samples, "sqlite")
    directory = os.path.join(settings.work_dir, "sqlite")
    huey: Any = None
    if _installed("huey"):
        from .peers import huey_peer

        huey = huey_peer
    else:
        _progress("huey is not installed: skipped (pip install -e '.[bench]')")

    def fresh_path(name: str) -> str:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
        return os.path.join(directory, f"{name}.db")

    def url_for(path: str) -> str:
        return f"sqlite:///{path}"

    @contextlib.asynccontextmanager
    async def fresh_ours() -> Any:
        queue = await ours.open_queue(url_for(fresh_path("ours")), {})
        try:
            yield queue
        finally:
            await queue.close()

    def file_measure(
        system: Any, tag: str, action: Callable[[str], float], preload: int = 0
    ) -> Measure:
        """``action`` on a fresh file of ``system`` (huey or the bare baseline) holding
        ``preload`` jobs."""

        async def measure() -> float:
            path = fresh_path(tag)
            system.reset(path)
            if preload:
                system.preload(path, preload)
            return action(path)

        return measure

    def bare_measure(action: Callable[[str], float], preload: int = 0) -> Measure:
        return file_measure(bare, "bare", action, preload)

    def huey_measure(action: Callable[[str], float], preload: int = 0) -> Measure:
        return file_measure(huey, "huey", action, preload)

    single = max(200, settings.jobs // 10)

    async def ours_enqueue_single() -> float:
        async with fresh_ours() as queue:
            return await ours.enqueue_single(queue, single)

    async def ours_enqueue_batch() -> float:
        async with fresh_ours() as queue:
            return await ours.enqueue_batch(queue, settings.jobs)

    systems: dict[str, Measure] = {
        OURS: ours_enqueue_single,
        "bare sqlite3": bare_measure(lambda p: bare.enqueue_single(p, single)),
    }
    if huey:
        systems["huey"] = huey_measure(lambda p: huey.enqueue_single(p, single))
    await runner.rate("enqueue, one per call", f"1 connection, N={single}", systems)
    await runner.rate(
        "enqueue, batch",
        f"{ENQUEUE_BATCH} per call, N={settings.jobs}",
        {
            OURS: ours_enqueue_batch,
            "bare sqlite3": bare_measure(lambda p: bare.enqueue_batch(p, settings.jobs)),
        },
    )

    loop_jobs = max(200, settings.jobs // 4)

    async def ours_api_loop() -> float:
        async with fresh_ours() as queue:
            await ours.preload(queue, loop_jobs)
            return await ours.api_loop(queue, loop_jobs, 1)

    async def same_sql_loop() -> float:
        async with fresh_ours() as queue:
            await ours.preload(queue, loop_jobs)
            path = queue.path
        return same_sql.drain_rate("bare", Path(path), loop_jobs, 1, 1, 1, False)

    await runner.rate(
        "claim+complete loop",
        f"1 connection, N={loop_jobs}",
        {
            OURS: ours_api_loop,
            _report.BARE_SQLITE_SAME_SQL: same_sql_loop,
            "bare sqlite3": bare_measure(lambda p: bare.drain(p, loop_jobs, 1, 1), loop_jobs),
        },
        short=True,
    )

    for processes in (1, 4):

        async def ours_processes(p: int = processes) -> float:
            path = fresh_path("ours")
            queue = await ours.open_queue(url_for(path), {})
            try:
                await ours.preload(queue, settings.jobs)
            finally:
                await queue.close()
            return await sqlite_processes.drain(url_for(path), settings.jobs, p, BATCH)

        await runner.rate(
            f"drain, up to {BATCH} per claim",
            f"{processes} process(es), N={settings.jobs}",
            {
                OURS: ours_processes,
                "bare sqlite3": bare_measure(
                    partial(_bare_sqlite_drain, count=settings.jobs, processes=processes),
                    settings.jobs,
                ),
            },
        )

    huey_jobs = max(200, settings.jobs // 4)
    for workers in settings.workers:

        async def ours_drain(w: int = workers) -> float:
            async with fresh_ours() as queue:
                await ours.preload(queue, huey_jobs)
                return await ours.drain([queue], huey_jobs, w)

        systems = {OURS: ours_drain}
        if huey:
            systems["huey"] = huey_measure(
                partial(_huey_drain, huey, count=huey_jobs, workers=workers), huey_jobs
            )
        await runner.rate("drain, one process", f"{workers} worker slots, N={huey_jobs}", systems)

    async def ours_latency() -> Sequence[tuple[float, ...]]:
        async with fresh_ours() as queue:
            return await ours.latency(queue, settings.latency_jobs, LATENCY_INTERVAL)

    latency_systems: dict[str, Latencies] = {OURS: ours_latency}
    if huey:

        async def huey_latency() -> Sequence[tuple[float, ...]]:
            path = fresh_path("huey")
            huey.reset(path)
            result: Sequence[tuple[float, ...]] = huey.latency(
                path, settings.latency_jobs, LATENCY_INTERVAL
            )
            return result

        latency_systems["huey"] = huey_latency
    await runner.latencies(
        ENQUEUE_TO_START,
        f"1 job / {LATENCY_INTERVAL * 1000:.0f} ms, N={settings.latency_jobs}",
        latency_systems,
    )


# ---------------------------------------------------------------------- memory


async def run_memory(settings: Settings, samples: Samples) -> None:
    from . import memory_loop, ours

    runner = Runner(settings, samples, "memory")
    jobs = max(settings.jobs, 20_000)

    async def claim_complete() -> float:
        return await memory_loop.claim_complete(jobs)

    await runner.rate("claim+complete loop", f"1 task, N={jobs}", {OURS: claim_complete})

    async def claim_complete_cpu() -> float:
        return await memory_loop.claim_complete(jobs, time.process_time)

    await runner.rate(
        "claim+complete loop", f"1 task, N={jobs}, per CPU second", {OURS: claim_complete_cpu}
    )

    async def enqueue_single() -> float:
        queue = await ours.open_queue("memory://", {})
        return await ours.enqueue_single(queue, jobs)

    async def enqueue_batch() -> float:
        queue = await ours.open_queue("memory://", {})
        return await ours.enqueue_batch(queue, jobs)

    await runner.rate("enqueue, one per call", f"N={jobs}", {OURS: enqueue_single})
    await runner.rate(
        "enqueue, batch", f"{ENQUEUE_BATCH} per call, N={jobs}", {OURS: enqueue_batch}
    )

    async def worker_drain() -> float:
        queue = await ours.open_queue("memory://", {})
        await ours.preload(queue, jobs)
        return await ours.drain([queue], jobs, BATCH)

    await runner.rate("drain, Worker", f"1 worker, {BATCH} slots, N={jobs}", {OURS: worker_drain})


# ------------------------------------------------------------------------ main


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare",
        description="Compare jobqueue with bare drivers and peer queues; prints medians.",
    )
    parser.add_argument("--backend", choices=("postgres", "sqlite", "memory", "all"), default="all")
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per drain (default 20000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument(
        "--workers", default="1,4,8,16", help="worker counts for the drains (default 1,4,8,16)"
    )
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument(
        "--quick", action="store_true", help="2000 jobs, 1 repeat, workers 1,4, 50 latency jobs"
    )
    parser.add_argument(
        "--big-table",
        action="store_true",
        help="also time claims among 1M finished jobs and 100k future retries (slow to set up)",
    )
    parser.add_argument(
        "--big-table-only",
        action="store_true",
        help="PostgreSQL: only the big-table claim latency",
    )
    parser.add_argument("--dsn", default=DEFAULT_ADMIN_DSN, help="an admin DSN of the server")
    parser.add_argument("--markdown", help="also write the table as Markdown to this file")
    args = parser.parse_args(argv)
    workers = tuple(int(w) for w in args.workers.split(","))
    jobs, repeats, latency_jobs = args.jobs, args.repeats, args.latency_jobs
    if args.quick:
        jobs, repeats, latency_jobs = 2000, 1, 50
        workers = tuple(w for w in workers if w in (1, 4)) or (1, 4)
    settings = Settings(
        jobs=jobs,
        repeats=repeats,
        workers=workers,
        latency_jobs=latency_jobs,
        admin_dsn=args.dsn,
        work_dir=tempfile.mkdtemp(prefix="jobqueue-bench-"),
        big_table=args.big_table,
        big_table_only=args.big_table_only,
    )
    return args, settings


@contextlib.contextmanager
def _work_dir(path: str) -> Iterator[None]:
    try:
        yield
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _shown(argv: list[str]) -> list[str]:
    """The arguments that change what is measured (not where the table is written)."""
    shown: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--markdown":
            skip = True
        elif not arg.startswith("--markdown="):
            shown.append(arg)
    return shown


def main(argv: list[str] | None = None) -> None:
    args, settings = _parse(argv)
    samples = Samples()
    started = time.perf_counter()
    load_before = os.getloadavg()
    with _work_dir(settings.work_dir):
        backends = ("postgres",) if args.big_table_only else (args.backend,)
        if "all" in backends or "memory" in backends:
            asyncio.run(run_memory(settings, samples))
        if "all" in backends or "sqlite" in backends:
            asyncio.run(run_sqlite(settings, samples))
        if "all" in backends or "postgres" in backends:
            asyncio.run(run_postgres(settings, samples))
    text = _report.render(
        samples,
        settings,
        command=" ".join(["python -m benchmarks.compare", *_shown(argv or sys.argv[1:])]),
        elapsed=time.perf_counter() - started,
        load_before=load_before,
        machine=platform.node(),
    )
    print(text)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
