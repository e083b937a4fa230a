"""Commands that inspect and operate on jobs: migrate, enqueue, list, show, stats,
cancel, retry, release-worker, purge."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import click
from rich.console import Group
from rich.live import Live
from rich.text import Text

from .._errors import JobNotFoundError
from .._models import TERMINAL_STATUSES, CreateJobRequest, Job, JobStatus
from ._app import (
    AwareDatetime,
    CliError,
    Duration,
    Exit,
    emit_json,
    job_to_dict,
    open_queue,
    queue_options,
    run,
    settings,
)
from ._render import console, counts_table, job_table, jobs_table, when

__all__ = [
    "cancel",
    "enqueue",
    "list_jobs",
    "migrate",
    "purge",
    "release_worker",
    "retry",
    "show",
    "stats",
]

STATUS_CHOICE = click.Choice([s.value for s in JobStatus], case_sensitive=False)
TERMINAL_CHOICE = click.Choice(sorted(s.value for s in TERMINAL_STATUSES), case_sensitive=False)


@click.command()
@queue_options
def migrate(**_: Any) -> None:
    """Create or upgrade the queue's schema. Safe to run any time, from many processes."""
    current = settings()

    async def main() -> int:
        async with open_queue(current, migrate=True) as queue:
            return sum((await queue.counts()).values())

    total = run(main())
    if current.json:
        emit_json({"url": current.shown_url, "migrated": True, "jobs": total})
    else:
        click.echo(f"The schema of {current.shown_url} is up to date ({total} jobs).")


def _payload(text: str) -> dict[str, Any]:
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(
                f"cannot read the payload file {text[1:]!r}: {exc.strerror}", Exit.USAGE
            ) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"--payload is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            """example: --payload '{"user": 7}'""",
            Exit.USAGE,
        ) from None
    if not isinstance(value, dict):
        raise CliError(
            f"--payload must be a JSON object like '{{\"user\": 7}}', not {type(value).__name__}",
            Exit.USAGE,
        )
    return value


@click.command()
@click.argument("kind")
@click.option(
    "--payload",
    default="{}",
    show_default=True,
    metavar="JSON",
    help="The job's payload, a JSON object; '-' reads it from stdin, '@FILE' from a file.",
)
@click.option("--queue", "queue_name", default="default", show_default=True, help="Queue name.")
@click.option("--priority", type=int, default=0, show_default=True, help="Higher runs first.")
@click.option(
    "--run-at",
    type=AwareDatetime(),
    default=None,
    help="Not claimable before this time, ISO 8601 with offset (2030-01-31T09:00:00Z).",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Claims allowed before the job fails for good.",
)
@queue_options
def enqueue(
    kind: str,
    payload: str,
    queue_name: str,
    priority: int,
    run_at: datetime | None,
    max_attempts: int,
    **_: Any,
) -> None:
    """Add a job of KIND to the queue (creating the schema if needed)."""
    current = settings()
    request = CreateJobRequest(
        kind=kind,
        payload=_payload(payload),
        queue=queue_name,
        priority=priority,
        run_at=run_at,
        max_attempts=max_attempts,
    )

    async def main() -> Job:
        async with open_queue(current, migrate=True) as queue:
            return await queue.create_job(request)

    job = run(main())
    if current.json:
        emit_json(job_to_dict(job))
        return
    extra = "" if job.run_at is None else f", not before {when(job.run_at)} UTC"
    click.echo(f"Enqueued job {job.id} (kind {job.kind!r}, queue {job.queue!r}{extra}).")


@click.command("list")
@click.option("--status", type=STATUS_CHOICE, default=None, help="Only jobs in this status.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many."
)
@queue_options
def list_jobs(status: str | None, limit: int, **_: Any) -> None:
    """List jobs, newest first."""
    current = settings()

    async def main() -> list[Job]:
        async with open_queue(current) as queue:
            return await queue.list_jobs(status, limit)

    jobs = run(main())
    if current.json:
        emit_json([job_to_dict(job) for job in jobs])
        return
    out = console()
    if not jobs:
        out.print("No jobs" + (f" with status {status}." if status else "."))
        return
    out.print(jobs_table(jobs, out.width))
    if len(jobs) == limit:
        out.print(f"The {limit} newest; --limit shows more.", style="dim")


@click.command()
@click.argument("job_id", type=click.UUID, metavar="ID")
@queue_options
def show(job_id: UUID, **_: Any) -> None:
    """Show every field of one job, with its last error in full."""
    current = settings()

    async def main() -> Job:
        async with open_queue(current) as queue:
            job = await queue.get_job(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        return job

    job = run(main())
    if current.json:
        emit_json(job_to_dict(job))
        return
    out = console()
    out.print(job_table(job))
    if job.error:
        out.print(Text("last error:", style="bold"))
        out.print(Text(job.error, style="red"))


def _counts_json(counts: dict[JobStatus, int]) -> dict[str, Any]:
    return {"counts": {s.value: n for s, n in counts.items()}, "total": sum(counts.values())}


@click.command()
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between refreshes with --watch.",
)
@queue_options
def stats(watch: bool, interval: float, **_: Any) -> None:
    """Count jobs per status; with --watch, keep the counts live (JSON: one line per refresh)."""
    current = settings()
    if not watch:

        async def once() -> dict[JobStatus, int]:
            async with open_queue(current) as queue:
                return await queue.counts()

        counts = run(once())
        if current.json:
            emit_json(_counts_json(counts))
        else:
            console().print(counts_table(counts))
        return

    async def watching() -> None:
        async with open_queue(current) as queue:
            if current.json:
                while True:
                    counts = await queue.counts()
                    emit_json({"at": datetime.now(UTC), **_counts_json(counts)}, compact=True)
                    await asyncio.sleep(interval)
            with Live(console=console(), auto_refresh=False) as live:
                while True:
                    counts = await queue.counts()
                    title = Text(f"{current.shown_url} at {when(datetime.now(UTC))} UTC")
                    hint = Text("Ctrl-C to stop", style="dim")
                    live.update(Group(title, counts_table(counts), hint), refresh=True)
                    await asyncio.sleep(interval)

    try:
        run(watching())
    except KeyboardInterrupt:
        return


@click.command()
@click.argument("job_id", type=click.UUID, metavar="ID")
@queue_options
def cancel(job_id: UUID, **_: Any) -> None:
    """Cancel a pending or running job (a running handler stops at its next heartbeat)."""
    current = settings()

    async def main() -> tuple[Job, Job]:
        async with open_queue(current) as queue:
            before = await queue.get_job(job_id)
            if before is None:
                raise JobNotFoundError(job_id)
            await queue.cancel_job(job_id)
            after = await queue.get_job(job_id)
        assert after is not None
        return before, after

    before, after = run(main())
    if current.json:
        emit_json(job_to_dict(after))
    else:
        click.echo(f"Cancelled job {job_id} (it was {before.status.value}).")


@click.command()
@click.argument("job_id", type=click.UUID, metavar="ID")
@queue_options
def retry(job_id: UUID, **_: Any) -> None:
    """Run a failed or cancelled job again: pending, attempts reset, last error kept."""
    current = settings()

    async def main() -> Job:
        async with open_queue(current) as queue:
            return await queue.retry_job(job_id)

    job = run(main())
    if current.json:
        emit_json(job_to_dict(job))
    else:
        click.echo(f"Job {job.id} is pending again with its attempts reset.")


@click.command("release-worker")
@click.argument("worker_id")
@queue_options
def release_worker(worker_id: str, **_: Any) -> None:
    """Put every running job of a dead worker back to pending, giving its attempt back."""
    current = settings()

    async def main() -> int:
        async with open_queue(current) as queue:
            return await queue.release_worker_jobs(worker_id)

    released = run(main())
    if current.json:
        emit_json({"worker_id": worker_id, "released": released})
    else:
        click.echo(f"Released {released} running job(s) of worker {worker_id!r} to pending.")


@click.command()
@click.option(
    "--older-than",
    type=Duration(),
    required=True,
    help="Delete jobs that finished longer ago than this: 30s, 15m, 12h, 7d, 2w.",
)
@click.option(
    "--status",
    "statuses",
    type=TERMINAL_CHOICE,
    multiple=True,
    help="Only jobs in this terminal status (repeatable; default: all three).",
)
@queue_options
def purge(older_than: timedelta, statuses: tuple[str, ...], **_: Any) -> None:
    """Delete finished jobs (completed, failed, cancelled) older than a duration."""
    current = settings()
    cutoff = datetime.now(UTC) - older_than
    chosen = sorted(set(statuses)) or sorted(s.value for s in TERMINAL_STATUSES)

    async def main() -> int:
        async with open_queue(current) as queue:
            return await queue.purge_jobs(cutoff, chosen)

    purged = run(main())
    if current.json:
        emit_json({"purged": purged, "finished_before": cutoff, "statuses": chosen})
    else:
        click.echo(
            f"Purged {purged} job(s) ({', '.join(chosen)}) that finished before {when(cutoff)} UTC."
        )
