"""The ``jobqueue`` command."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ._plugins import backend_conflicts, installed_backends, plugin_load_errors


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def cli(ctx: click.Context, as_json: bool) -> None:
    """Operate a jobqueue from the shell."""
    ctx.obj = {"json": as_json}


@cli.command()
@click.pass_context
def backends(ctx: click.Context) -> None:
    """List installed backends: URL schemes, capabilities, distribution and version."""
    rows: list[dict[str, Any]] = [
        {
            "scheme": info.scheme,
            "capabilities": sorted(info.capabilities),
            "distribution": info.distribution,
            "version": info.version,
        }
        for info in installed_backends()
    ]
    problems = [*backend_conflicts().values()]
    problems += [f"plugin {n!r} failed to load: {e}" for n, e in plugin_load_errors().items()]
    if ctx.obj["json"]:
        click.echo(json.dumps({"backends": rows, "problems": problems}, indent=2))
        return
    table = Table("scheme", "capabilities", "distribution", "version")
    for row in rows:
        table.add_row(
            f"{row['scheme']}://",
            ", ".join(row["capabilities"]) or "-",
            row["distribution"] or "(registered in code)",
            row["version"] or "-",
        )
    Console().print(table)
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)


def main() -> None:
    cli(prog_name="jobqueue")


if __name__ == "__main__":
    main()
