"""Human output: rich tables for jobs and counts. User data is never read as markup."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._models import Job, JobStatus

__all__ = [
    "STATUS_STYLES",
    "console",
    "counts_table",
    "job_table",
    "jobs_table",
    "when",
]

STATUS_STYLES = {
    JobStatus.PENDING: "yellow",
    JobStatus.RUNNING: "cyan",
    JobStatus.COMPLETED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "magenta",
}


def console(*, stderr: bool = False) -> Console:
    """A console for the command's output; plain text when not a terminal."""
    return Console(stderr=stderr, highlight=False)


def when(value: datetime | None) -> str:
    """A UTC time to the second, or ``-``."""
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def status_text(status: JobStatus) -> Text:
    return Text(status.value, style=STATUS_STYLES[status])


def first_line(text: str | None, width: int = 60) -> str:
    """The last non-empty line of an error (a traceback ends with the exception)."""
    if not text:
        return ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def jobs_table(jobs: Sequence[Job]) -> Table:
    """One row per job, newest first as given."""
    table = Table("id", "kind", "queue", "status", "attempts", "priority", "created (UTC)", "error")
    table.columns[0].no_wrap = True
    for job in jobs:
        table.add_row(
            Text(str(job.id)),
            Text(job.kind),
            Text(job.queue),
            status_text(job.status),
            f"{job.attempts}/{job.max_attempts}",
            str(job.priority),
            when(job.created_at),
            Text(first_line(job.error), style="red"),
        )
    return table


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def job_table(job: Job) -> Table:
    """Every field of one job, one per row; the error is shown separately in full."""
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    rows: list[tuple[str, Text | str]] = [
        ("id", Text(str(job.id))),
        ("kind", Text(job.kind)),
        ("queue", Text(job.queue)),
        ("status", status_text(job.status)),
        ("priority", str(job.priority)),
        ("attempts", f"{job.attempts} of {job.max_attempts}"),
        ("worker", Text(job.worker_id or "-")),
        ("payload", Text(_json(job.payload))),
        ("stats", Text("-" if job.stats is None else _json(job.stats))),
        ("run at", when(job.run_at)),
        ("next retry at", when(job.next_retry_at)),
        ("lease expires at", when(job.lease_expires_at)),
        ("created at", when(job.created_at)),
        ("updated at", when(job.updated_at)),
        ("started at", when(job.started_at)),
        ("finished at", when(job.finished_at)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def counts_table(counts: Mapping[JobStatus, int], title: str | None = None) -> Table:
    """Jobs per status with a total row."""
    table = Table("status", "jobs", title=title, title_justify="left")
    table.columns[1].justify = "right"
    for status in JobStatus:
        table.add_row(status_text(status), str(counts.get(status, 0)))
    table.add_section()
    table.add_row(Text("total", style="bold"), str(sum(counts.values())))
    return table
