"""The ``jobqueue`` command: operate a queue from the shell.

Exit codes: 0 success, 1 refused by the job's state, 2 usage or bad input,
3 backend unavailable, 4 job not found, 130 interrupted. See docs/cli.md.
"""

from __future__ import annotations

import click

from ._app import DEFAULT_URL, URL_ENVVAR, Exit, JobQueueGroup
from ._demo import demo
from ._jobs import cancel, enqueue, list_jobs, migrate, purge, release_worker, retry, show, stats
from ._plugins import backends, conformance_command
from ._run import bench, worker

__all__ = ["Exit", "cli", "main"]


@click.group(
    cls=JobQueueGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--url",
    envvar=URL_ENVVAR,
    default=DEFAULT_URL,
    show_default=True,
    metavar="URL",
    help=f"Queue URL (env {URL_ENVVAR}): sqlite:///FILE, postgresql://…, memory://.",
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.version_option(package_name="jobqueue", message="jobqueue %(version)s")
@click.pass_context
def cli(ctx: click.Context, url: str, as_json: bool) -> None:
    """Operate a jobqueue from the shell.

    Exit codes: 0 ok, 1 refused (the job's state does not allow it), 2 usage or
    bad input, 3 backend unavailable, 4 job not found, 130 interrupted.
    """
    source = ctx.get_parameter_source("url")
    ctx.obj = {
        "url": url,
        "url_given": source is click.core.ParameterSource.COMMANDLINE,
        "json": as_json,
    }


for command in (
    backends,
    bench,
    cancel,
    demo,
    enqueue,
    list_jobs,
    migrate,
    purge,
    release_worker,
    retry,
    show,
    stats,
    worker,
):
    cli.add_command(command)

cli.add_lazy_command(
    "conformance", conformance_command, "Run the conformance suite against a backend URL."
)


def main() -> None:
    """Entry point of the ``jobqueue`` console script."""
    cli.main(prog_name="jobqueue")
