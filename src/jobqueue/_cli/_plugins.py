"""Commands about backends: ``backends`` and ``conformance`` (the suite's own command)."""

from __future__ import annotations

import importlib
from typing import Any

import click
from rich.table import Table

from .._plugins import backend_conflicts, installed_backends, plugin_load_errors
from ._app import CliError, Exit, emit_json, settings
from ._render import console

__all__ = ["backends", "conformance_command"]

CONFORMANCE_MODULE = "jobqueue_conformance.cli"
CONFORMANCE_ATTRIBUTE = "conformance_command"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def backends(**_: Any) -> None:
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
    if settings().json:
        emit_json({"backends": rows, "problems": problems})
        return
    table = Table("scheme", "capabilities", "distribution", "version")
    for row in rows:
        table.add_row(
            f"{row['scheme']}://",
            ", ".join(row["capabilities"]) or "-",
            row["distribution"] or "(registered in code)",
            row["version"] or "-",
        )
    console().print(table)
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)


def conformance_command() -> click.Command:
    """The conformance suite's command, imported only when it is run or listed."""
    try:
        module = importlib.import_module(CONFORMANCE_MODULE)
        command = getattr(module, CONFORMANCE_ATTRIBUTE)
    except (ImportError, AttributeError) as exc:
        return _missing_conformance(f"{type(exc).__name__}: {exc}")
    if not isinstance(command, click.Command):
        return _missing_conformance(
            f"{CONFORMANCE_MODULE}.{CONFORMANCE_ATTRIBUTE} is not a command"
        )
    return command


def _missing_conformance(reason: str) -> click.Command:
    @click.command(
        "conformance",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        help="Run the conformance suite against URL (not available in this installation).",
    )
    @click.argument("url", required=False)
    def conformance(url: str | None) -> None:
        raise CliError(
            f"the conformance suite is not available ({reason}); "
            "install it with: pip install 'jobqueue[conformance]'",
            Exit.UNAVAILABLE,
        )

    return conformance
