"""``jobqueue demo``: enqueue sample jobs, run a worker, watch them finish, summarise."""

from __future__ import annotations

import asyncio
import logging
import random
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table
from rich.text import Text

from .._models import CreateJobRequest, Job, JobStatus
from .._plugins import hookimpl, plugin_manager, register_plugin
from .._queue import JobQueue
from .._retry import RetryPolicy
from .._worker import Worker
from ._app import Settings, emit_json, open_queue, queue_options, run, settings
from ._render import STATUS_STYLES, console, last_line

__all__ = ["demo"]

DEMO_QUEUE = "demo"
MAX_ATTEMPTS = 3
DEMO_TIMEOUT = 120.0
"""Seconds after which the demo stops its worker and reports, whatever is unfinished."""


class SimulatedOutage(ConnectionError):
    """What a flaky sample job raises on its first attempt."""


async def _pause(job: Job) -> None:
    await asyncio.sleep(float(job.payload.get("work_seconds", 0.1)))


def _flaky(job: Job) -> None:
    if job.payload.get("flaky") and job.attempts == 1:
        raise SimulatedOutage(f"{job.kind}: upstream timed out (simulated, attempt 1)")


async def send_email(job: Job) -> dict[str, Any]:
    """Pretend to send an email; flaky ones fail on their first attempt."""
    await _pause(job)
    _flaky(job)
    return {"delivered_to": job.payload["to"]}


async def resize_image(job: Job) -> dict[str, Any]:
    """Pretend to make a thumbnail; flaky ones fail on their first attempt."""
    await _pause(job)
    _flaky(job)
    return {"width": job.payload["width"], "bytes": 1024 * job.payload["width"] // 8}


async def charge_card(job: Job) -> dict[str, Any]:
    """Pretend to charge a card; an expired one fails on every attempt."""
    await _pause(job)
    if job.payload.get("expired"):
        raise ValueError(f"card ending {job.payload['card']} is expired (simulated)")
    return {"charged_cents": job.payload["cents"]}


HANDLERS = {"send-email": send_email, "resize-image": resize_image, "charge-card": charge_card}


def sample_jobs(count: int, rng: random.Random) -> list[CreateJobRequest]:
    """``count`` jobs over three kinds: about one in five flaky, one always failing."""
    requests = []
    for i in range(count):
        kind = ("send-email", "resize-image", "charge-card")[i % 3]
        payload: dict[str, Any] = {"work_seconds": round(rng.uniform(0.05, 0.3), 3)}
        if kind == "send-email":
            payload["to"] = f"user{i}@example.com"
        elif kind == "resize-image":
            payload["width"] = rng.choice([128, 256, 512])
        else:
            payload.update(card=f"{4000 + i:04d}", cents=rng.randrange(100, 10_000))
        payload["flaky"] = kind != "charge-card" and i % 5 == 1
        payload["expired"] = i == 2
        requests.append(
            CreateJobRequest(
                kind=kind,
                payload=payload,
                queue=DEMO_QUEUE,
                priority=1 if kind == "charge-card" else 0,
                max_attempts=MAX_ATTEMPTS,
            )
        )
    return requests


class Tally:
    """Outcomes reported by the demo worker's ``jobqueue_job_finished`` hook."""

    def __init__(self, worker_id: str, total: int) -> None:
        self.worker_id = worker_id
        self.total = total
        self.outcomes: Counter[str] = Counter()
        self.done = asyncio.Event()

    @property
    def finished(self) -> int:
        return self.outcomes["completed"] + self.outcomes["failed"]

    @hookimpl
    def jobqueue_job_finished(self, worker_id: str, job: Job, outcome: str, **_: Any) -> None:
        if worker_id != self.worker_id:
            return
        self.outcomes[outcome] += 1
        if self.finished >= self.total:
            self.done.set()


@contextmanager
def _registered(tally: Tally) -> Iterator[None]:
    register_plugin(tally)
    try:
        yield
    finally:
        plugin_manager().unregister(tally)


@contextmanager
def _quiet_worker_log() -> Iterator[None]:
    """The demo shows failures in its own output; the worker's log would repeat them."""
    log = logging.getLogger("jobqueue.worker")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


async def _run_demo(
    queue: JobQueue,
    current: Settings,
    where: str,
    jobs: int,
    concurrency: int,
    seed: int | None,
) -> dict[str, Any]:
    rng = random.Random(seed)
    worker = Worker(
        queue,
        HANDLERS,
        concurrency=concurrency,
        queues=[DEMO_QUEUE],
        retry=RetryPolicy(base_delay=0.2, factor=2.0, max_delay=1.0, jitter=0.2),
        poll_interval=0.05,
        shutdown_grace=5.0,
    )
    tally = Tally(worker.worker_id, jobs)
    err = console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "[green]{task.fields[ok]} completed[/]  [yellow]{task.fields[retried]} "
            "retried[/]  [red]{task.fields[failed]} failed[/]"
        ),
        TimeElapsedColumn(),
        console=err,
        disable=current.json or not err.is_terminal,
    )
    if not current.json:
        err.print(
            f"Running {jobs} sample jobs (some fail once and are retried, one always fails) "
            f"with a worker on {where}…"
        )
    started = time.perf_counter()
    with _registered(tally), _quiet_worker_log(), progress:
        created = await queue.create_jobs(sample_jobs(jobs, rng))
        task = progress.add_task("jobs", total=jobs, ok=0, retried=0, failed=0)

        def show() -> None:
            o = tally.outcomes
            progress.update(
                task,
                completed=tally.finished,
                ok=o["completed"],
                retried=o["retried"],
                failed=o["failed"],
            )

        running = asyncio.create_task(worker.run())
        try:
            deadline = started + DEMO_TIMEOUT
            while not tally.done.is_set() and not running.done():
                if time.perf_counter() > deadline:
                    break
                show()
                await asyncio.wait([running], timeout=0.1)
        finally:
            worker.stop()
            await running
        show()
    elapsed = time.perf_counter() - started
    final = [await queue.get_job(job.id) for job in created]
    return _summary([j for j in final if j is not None], elapsed, concurrency)


def _summary(jobs: list[Job], elapsed: float, concurrency: int) -> dict[str, Any]:
    kinds: dict[str, dict[str, Any]] = {}
    for job in jobs:
        row = kinds.setdefault(
            job.kind, {"jobs": 0, "attempts": 0, "retries": 0, **{s.value: 0 for s in JobStatus}}
        )
        row["jobs"] += 1
        row[job.status.value] += 1
        row["attempts"] += job.attempts
        row["retries"] += max(0, job.attempts - 1)
    failed = [job for job in jobs if job.status is JobStatus.FAILED]
    return {
        "jobs": len(jobs),
        "seconds": round(elapsed, 3),
        "jobs_per_second": round(len(jobs) / elapsed, 1) if elapsed > 0 else None,
        "concurrency": concurrency,
        "counts": {s.value: sum(1 for j in jobs if j.status is s) for s in JobStatus},
        "attempts": sum(j.attempts for j in jobs),
        "retries": sum(max(0, j.attempts - 1) for j in jobs),
        "by_kind": kinds,
        "failed": [{"id": str(j.id), "kind": j.kind, "error": last_line(j.error)} for j in failed],
    }


def _print_summary(result: dict[str, Any], where: str, kept: str | None) -> None:
    out = console()
    shown = [s for s in JobStatus if any(r[s.value] for r in result["by_kind"].values())]
    table = Table("kind", Column("jobs", justify="right"))
    for status in shown:
        table.add_column(Text(status.value, style=STATUS_STYLES[status]), justify="right")
    table.add_column("attempts", justify="right")
    table.add_column("retries", justify="right")
    for kind, row in sorted(result["by_kind"].items()):
        cells = [str(row[s.value]) for s in shown]
        table.add_row(kind, str(row["jobs"]), *cells, str(row["attempts"]), str(row["retries"]))
    table.add_section()
    table.add_row(
        Text("total", style="bold"),
        str(result["jobs"]),
        *(str(result["counts"][s.value]) for s in shown),
        str(result["attempts"]),
        str(result["retries"]),
    )
    out.print(table)
    out.print(
        f"{result['jobs']} jobs in {result['seconds']:.2f} s "
        f"({result['jobs_per_second']} jobs/s) with one worker running up to "
        f"{result['concurrency']} handlers at once, on {where}."
    )
    for failed in result["failed"]:
        out.print(
            Text(f"failed after {MAX_ATTEMPTS} attempts: {failed['kind']} {failed['id']}: ")
            + Text(failed["error"], style="red")
        )
    if kept is not None:
        out.print(f"The database is kept: jobqueue --url {kept} list")


@click.command()
@click.option(
    "--jobs",
    type=click.IntRange(min=1, max=10_000),
    default=30,
    show_default=True,
    help="How many sample jobs.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Handlers the worker runs at once.",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the temporary SQLite file and print its URL (without --url).",
)
@click.option("--seed", type=int, default=None, help="Seed for the sample jobs' timings.")
@queue_options
def demo(jobs: int, concurrency: int, keep: bool, seed: int | None, **_: Any) -> None:
    """See jobqueue work: sample jobs, some failing and retried, run by a worker.

    Runs on a temporary SQLite file, deleted afterwards (--keep keeps it). With
    --url on the command line the jobs go to queue 'demo' of that database
    instead, and stay there. Takes a few seconds.
    """
    current = settings()

    async def main(target: Settings, where: str) -> dict[str, Any]:
        async with open_queue(target, migrate=True) as queue:
            return await _run_demo(queue, target, where, jobs, concurrency, seed)

    if current.url_given:
        where = current.shown_url
        result = run(main(current, where))
        kept = None
    else:
        directory = tempfile.mkdtemp(prefix="jobqueue-demo-") if keep else None
        with tempfile.TemporaryDirectory(prefix="jobqueue-demo-") as scratch:
            url = f"sqlite:///{Path(directory or scratch) / 'demo.db'}"
            where = url if keep else "a temporary SQLite file"
            result = run(main(Settings(url=url, url_given=True, json=current.json), where))
        kept = url if keep else None
    if current.json:
        emit_json({**result, "url": where, "kept": kept is not None})
    else:
        _print_summary(result, where, kept)
