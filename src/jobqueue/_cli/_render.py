"""Human output: rich tables for jobs and counts. User data is never read as markup."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from rich import box
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
    """A console for the command's output: plain text, and wide, when not a terminal."""
    out = Console(stderr=stderr, highlight=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = max(out.width, 160)
    return out


def when(value: datetime | None) -> str:
    """A UTC time to the second, or ``-``."""
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def utc(value: datetime | None) -> str:
    """A UTC time to the second, labelled, or ``-``."""
    return "-" if value is None else f"{when(value)} UTC"


def status_text(status: JobStatus) -> Text:
    return Text(status.value, style=STATUS_STYLES[status])


def last_line(text: str | None) -> str:
    """The last non-empty line of an error: a traceback ends with the exception."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def jobs_table(jobs: Sequence[Job], width: int) -> Table:
    """One row per job, newest first as given, in at most ``width`` columns.

    Ids are never shortened (they are what other commands take); the least
    useful columns are left out when the width does not allow them, and the
    error's last line gets what remains.
    """
    columns: dict[str, list[Text]] = {
        "id": [Text(str(job.id)) for job in jobs],
        "status": [status_text(job.status) for job in jobs],
        "kind": [Text(job.kind) for job in jobs],
        "tries": [Text(f"{job.attempts}/{job.max_attempts}") for job in jobs],
        "created (UTC)": [Text(when(job.created_at)) for job in jobs],
        "queue": [Text(job.queue) for job in jobs],
        "prio": [Text(str(job.priority)) for job in jobs],
    }
    caps = {"kind": 30, "queue": 20}
    chosen: list[tuple[str, int]] = []
    used = 0
    for name, cells in columns.items():
        natural = max([len(name), *(cell.cell_len for cell in cells)])
        size = min(natural, caps.get(name, natural))
        if used + size + 3 > width and chosen:
            continue
        chosen.append((name, size))
        used += size + 3
    errors = [Text(last_line(job.error), style="red") for job in jobs]
    room = width - used - 3
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for name, size in chosen:
        justify: Literal["left", "right"] = "right" if name in ("tries", "prio") else "left"
        table.add_column(name, width=size, no_wrap=True, overflow="ellipsis", justify=justify)
    show_errors = room >= 12 and any(error.plain for error in errors)
    if show_errors:
        table.add_column("error", max_width=room, no_wrap=True, overflow="ellipsis")
    for i in range(len(jobs)):
        row = [columns[name][i] for name, _ in chosen]
        table.add_row(*row, *([errors[i]] if show_errors else []))
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
        ("run at", utc(job.run_at)),
        ("next retry at", utc(job.next_retry_at)),
        ("lease expires at", utc(job.lease_expires_at)),
        ("created at", utc(job.created_at)),
        ("updated at", utc(job.updated_at)),
        ("started at", utc(job.started_at)),
        ("finished at", utc(job.finished_at)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def counts_table(counts: Mapping[JobStatus, int]) -> Table:
    """Jobs per status with a total row."""
    table = Table("status", "jobs")
    table.columns[1].justify = "right"
    for status in JobStatus:
        table.add_row(status_text(status), str(counts.get(status, 0)))
    table.add_section()
    table.add_row(Text("total", style="bold"), str(sum(counts.values())))
    return table
