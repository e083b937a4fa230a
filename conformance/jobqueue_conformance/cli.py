"""``jobqueue conformance URL``: the suite as a command."""

from __future__ import annotations

import json
from typing import Any

import click

from jobqueue import JobQueueError

from ._runner import run

__all__ = ["conformance_command", "main"]


def _option(value: str) -> tuple[str, Any]:
    key, sep, raw = value.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"expected KEY=VALUE, got {value!r}")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


@click.command("conformance")
@click.argument("url")
@click.option(
    "-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
    help="A connect option (JSON value, else a string); '{test_id}' in it is replaced per check.",
)  # fmt: skip
@click.option("--thorough", is_flag=True, help="Run 1000 random examples instead of 60.")
@click.option("--examples", type=click.IntRange(min=1), help="How many random examples to run.")
@click.option("-k", "select", metavar="EXPRESSION", help="Only checks matching (pytest -k).")
def conformance_command(
    url: str, options: tuple[str, ...], thorough: bool, examples: int | None, select: str | None
) -> None:
    """Run the conformance suite against the backend at URL and print a report.

    Exit status 0 only when every check passed (checks for capabilities the
    backend does not claim are skipped, and say so). Put '{test_id}' in the URL
    (or an option) to give each check its own queue, e.g.
    sqlite:////tmp/conformance-{test_id}.db; otherwise the checks share the
    queue at URL and empty it before each check: never point it at a queue you
    care about.
    """
    status = run(
        url,
        options=dict(_option(o) for o in options),
        thorough=thorough,
        max_examples=examples,
        select=select,
    )
    raise SystemExit(status)


def main() -> None:
    """Entry point for ``python -m jobqueue_conformance``: exit 2 with the message when the
    URL cannot be used (unknown scheme, unreachable backend)."""
    try:
        conformance_command(prog_name="jobqueue conformance", standalone_mode=False)
    except JobQueueError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
