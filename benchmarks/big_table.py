"""Claim latency when the jobs table is big: a million finished jobs and a hundred
thousand retries due tomorrow, against the same claim on an empty table.

The rows are generated server-side with one ``INSERT … SELECT generate_series``
per kind, then the table is analysed (as autovacuum would soon do). Opt-in
(``--big-table``): filling takes a while.

The probing connections run with ``synchronous_commit=off``: waiting for the
disk at each commit (milliseconds, and very noisy on a shared machine) would
drown what this measures, the claim's own cost as the table grows.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from . import bare_postgres as bare
from . import ours

if TYPE_CHECKING:
    from .compare import Runner

FINISHED = 1_000_000
RETRIES = 100_000
PROBES = 200
NO_FLUSH_WAIT = "-csynchronous_commit=off"


async def _fill(dsn: str, schema: str) -> None:
    """Add the finished jobs and the future retries to ``schema``.jobs."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = 'jobs'",
            (schema,),
        )
        columns = {row[0] for row in await cur.fetchall()}
        has_ready = "ready" in columns
        table = sql.Identifier(schema, "jobs")
        for status, count, extra in (
            ("completed", FINISHED, "finished"),
            ("pending", RETRIES, "retry"),
        ):
            ready = sql.SQL(", ready") if has_ready else sql.SQL("")
            ready_value = sql.SQL(", false") if has_ready else sql.SQL("")
            finished = extra == "finished"
            await conn.execute(
                sql.SQL(
                    "INSERT INTO {table} (id, kind, payload, queue, priority, status, attempts,"
                    " max_attempts, worker_id, error, stats, next_retry_at, created_at,"
                    " updated_at, started_at, finished_at{ready})"
                    " SELECT gen_random_uuid(), 'noop', '{{}}', 'default', 0, {status},"
                    " 1, 5, {worker}, {error}, {stats}, {retry_at},"
                    " now() - interval '2 days' + i * interval '1 millisecond', now(),"
                    " now() - interval '1 day', {finished_at}{ready_value}"
                    " FROM generate_series(1, {count}) AS i"
                ).format(
                    table=table,
                    ready=ready,
                    ready_value=ready_value,
                    status=sql.Literal(status),
                    worker=sql.Literal("old-worker" if finished else None),
                    error=sql.Literal(None if finished else "boom"),
                    stats=sql.SQL("'{}'::jsonb") if finished else sql.SQL("NULL"),
                    retry_at=sql.SQL("NULL") if finished else sql.SQL("now() + interval '1 day'"),
                    finished_at=sql.SQL("now() - interval '1 day'")
                    if finished
                    else sql.SQL("NULL"),
                    count=sql.Literal(count),
                )
            )
        await conn.execute(sql.SQL("VACUUM ANALYZE {}").format(table))


async def run(runner: Runner, dsn: str, url: str, ours_schema: str) -> None:
    """Record p50/p95 claim latency of jobqueue and the bare baseline, empty vs big table."""

    async def drop_ours() -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(ours_schema))
            )

    def ours_probe(big: bool) -> Callable[[], Awaitable[list[tuple[float, ...]]]]:
        async def probe() -> list[tuple[float, ...]]:
            await drop_ours()
            options = urllib.parse.quote(NO_FLUSH_WAIT)
            queue = await ours.open_queue(f"{url}?options={options}", {"schema": ours_schema})
            try:
                if big:
                    await _fill(dsn, ours_schema)
                return [(x,) for x in await ours.claim_latency(queue, PROBES)]
            finally:
                await queue.close()

        return probe

    def bare_probe(big: bool) -> Callable[[], Awaitable[list[tuple[float, ...]]]]:
        async def probe() -> list[tuple[float, ...]]:
            await bare.reset(dsn)
            if big:
                await _fill(dsn, bare.SCHEMA)
            return [(x,) for x in await bare.claim_latency(dsn, PROBES, NO_FLUSH_WAIT)]

        return probe

    for big, label in ((False, "empty table"), (True, "1M done + 100k retries")):
        await runner.latencies(
            (f"claim latency, {label}",),
            f"one claimable job, {PROBES} probes",
            {"jobqueue": ours_probe(big), "bare psycopg": bare_probe(big)},
        )
