"""Commands that run jobs: ``worker`` and ``bench``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .._models import CreateJobRequest, Job
from .._plugins import backend_for
from .._queue import JobQueue
from ._app import Settings, emit_json, open_queue, queue_options, run, settings
from ._render import console

__all__ = ["bench", "worker"]


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log record, with the worker's job fields when present."""

    FIELDS = ("worker_id", "job_id", "job_kind", "job_attempt")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in self.FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _configure_logging(level: str, as_json: bool) -> None:
    handler = logging.StreamHandler()
    if as_json:
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())


@click.command()
@click.argument("handlers_spec", metavar="MODULE:HANDLERS")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Jobs run at once.",
)
@click.option("--queue", "queues", multiple=True, help="Only claim from this queue (repeatable).")
@click.option("--worker-id", default=None, help="Worker id (default: host, pid and a random tag).")
@click.option("--drain", is_flag=True, help="Exit once nothing is claimable and nothing runs.")
@click.option(
    "--shutdown-grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="On Ctrl-C or SIGTERM, how long running jobs may finish.",
)
@click.option(
    "--rescue-interval",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How often to rescue jobs whose worker died.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
    help="Logging level of the worker's messages (stderr).",
)
@queue_options
def worker(
    handlers_spec: str,
    concurrency: int,
    queues: tuple[str, ...],
    worker_id: str | None,
    drain: bool,
    shutdown_grace: float,
    rescue_interval: float,
    log_level: str,
    **_: Any,
) -> None:
    """Run jobs with the handlers in MODULE:HANDLERS until Ctrl-C or SIGTERM.

    HANDLERS is a dict (or a dotted path to one) mapping job kinds to handlers:
    'async def handler(job)' returning the job's stats or None; a plain
    function runs in a thread. The current directory is importable. Logs go
    to stderr (one JSON object per line with --json).
    """
    from .._worker import Worker, load_handlers

    current = settings()
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    handlers = load_handlers(handlers_spec)
    _configure_logging(log_level, current.json)

    async def main() -> str:
        async with open_queue(current, migrate=True) as queue:
            runner = Worker(
                queue,
                handlers,
                worker_id=worker_id,
                concurrency=concurrency,
                queues=list(queues) or None,
                rescue_interval=rescue_interval,
                shutdown_grace=shutdown_grace,
            )
            if not current.json:
                click.echo(
                    f"Worker {runner.worker_id} on {current.shown_url}: kinds "
                    f"{', '.join(sorted(handlers))}; concurrency {concurrency}"
                    + (f"; queues {', '.join(queues)}" if queues else "")
                    + ("; until the queue is drained" if drain else "; Ctrl-C to stop"),
                    err=True,
                )
            await runner.run(drain=drain)
            return runner.worker_id

    stopped = run(main())
    if current.json:
        emit_json({"worker_id": stopped, "stopped": True})
    else:
        click.echo(f"Worker {stopped} stopped.", err=True)


def _progress(current: Settings) -> Progress:
    err = console(stderr=True)
    return Progress(
        TextColumn("{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=current.json or not err.is_terminal,
    )


async def _enqueue(queue: JobQueue, name: str, jobs: int, batch: int, progress: Progress) -> None:
    task = progress.add_task("enqueue", total=jobs)
    done = 0
    while done < jobs:
        size = min(batch, jobs - done)
        await queue.create_jobs(
            [CreateJobRequest(kind="bench.noop", queue=name) for _ in range(size)]
        )
        done += size
        progress.update(task, completed=done)


async def _drain_with_worker(
    queue: JobQueue, name: str, jobs: int, concurrency: int, progress: Progress
) -> int:
    from .._worker import Worker

    task = progress.add_task("run", total=jobs)
    ran = 0

    async def handler(job: Job) -> None:
        nonlocal ran
        ran += 1

    async def show() -> None:
        # The bar follows from here so the handler stays a no-op worth measuring.
        while True:
            progress.update(task, completed=ran)
            await asyncio.sleep(0.1)

    ticker = asyncio.create_task(show())
    try:
        await Worker(queue, {"bench.noop": handler}, concurrency=concurrency, queues=[name]).run(
            drain=True
        )
    finally:
        ticker.cancel()
    progress.update(task, completed=ran)
    return ran


async def _drain_with_loop(
    queue: JobQueue, name: str, jobs: int, concurrency: int, batch: int, progress: Progress
) -> int:
    task = progress.add_task("run", total=jobs)
    ran = 0

    async def loop(index: int) -> None:
        nonlocal ran
        worker_id = f"bench-{index}"
        while True:
            claimed = await queue.claim_jobs(worker_id, batch, queues=[name])
            if not claimed:
                return
            for job in claimed:
                await queue.complete_job(job.id, {}, worker_id=worker_id, attempt=job.attempts)
                ran += 1
            progress.update(task, completed=ran)

    await asyncio.gather(*(loop(i) for i in range(concurrency)))
    return ran


@click.command()
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="How many no-op jobs to enqueue and run.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Worker concurrency, or parallel loops with --mode loop.",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Jobs per create_jobs call, and per claim_jobs call with --mode loop.",
)
@click.option(
    "--mode",
    type=click.Choice(["worker", "loop"]),
    default="worker",
    show_default=True,
    help="Run the jobs with jobqueue.Worker, or with bare claim_jobs/complete_job loops.",
)
@queue_options
def bench(jobs: int, concurrency: int, batch: int, mode: str, **_: Any) -> None:
    """Measure throughput on --url: enqueue no-op jobs, run them all, print jobs/s.

    The jobs go to a queue of their own (bench-…) and stay in the database,
    completed; run it on a scratch database, and 'jobqueue purge' removes them.
    """
    current = settings()
    name = f"bench-{uuid.uuid4().hex[:8]}"

    async def main() -> dict[str, Any]:
        async with open_queue(current, migrate=True) as queue:
            with _progress(current) as progress:
                started = time.perf_counter()
                await _enqueue(queue, name, jobs, batch, progress)
                enqueued = time.perf_counter()
                if mode == "worker":
                    ran = await _drain_with_worker(queue, name, jobs, concurrency, progress)
                else:
                    ran = await _drain_with_loop(queue, name, jobs, concurrency, batch, progress)
                finished = time.perf_counter()
        enqueue_s, run_s = enqueued - started, finished - enqueued
        return {
            "url": current.shown_url,
            "queue": name,
            "mode": mode,
            "jobs": jobs,
            "ran": ran,
            "concurrency": concurrency,
            "batch": batch,
            "enqueue_seconds": round(enqueue_s, 4),
            "enqueue_jobs_per_second": round(jobs / enqueue_s, 1),
            "run_seconds": round(run_s, 4),
            "run_jobs_per_second": round(ran / run_s, 1),
        }

    result = run(main())
    if current.json:
        emit_json(result)
        return
    table = Table("phase", "jobs", "seconds", "jobs/s")
    for column in table.columns[1:]:
        column.justify = "right"
    table.add_row(
        "enqueue",
        str(jobs),
        f"{result['enqueue_seconds']:.2f}",
        f"{result['enqueue_jobs_per_second']:,.0f}",
    )
    table.add_row(
        f"run ({mode}, concurrency {concurrency})",
        str(result["ran"]),
        f"{result['run_seconds']:.2f}",
        f"{result['run_jobs_per_second']:,.0f}",
    )
    out = console()
    out.print(Text(f"bench on {current.shown_url}"))
    out.print(table)
    if "persistent" in backend_for(current.url).capabilities:
        out.print(f"The {jobs} completed jobs stay in queue {name!r}.", style="dim")
