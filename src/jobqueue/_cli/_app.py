"""The command group, global options, exit codes and the error policy of ``jobqueue``.

Every command reaches the queue through :func:`open_queue` and reports a
failure by raising :class:`CliError` (or letting a ``JobQueueError`` escape);
:meth:`JobQueueGroup.main` turns it into one line on stderr and an exit code.
"""

from __future__ import annotations

import asyncio
import enum
import json
import re
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import unquote, unquote_plus, urlsplit
from uuid import UUID

import click

from .._errors import (
    BackendUnavailableError,
    InvalidRequestError,
    InvalidTransitionError,
    JobNotFoundError,
    JobQueueError,
    UnknownBackendError,
)
from .._models import Job
from .._plugins import PluginConflictError, connect
from .._queue import JobQueue
from ..backend import redact_url

__all__ = [
    "DEFAULT_URL",
    "CliError",
    "Exit",
    "JobQueueGroup",
    "Settings",
    "emit_json",
    "job_to_dict",
    "open_queue",
    "queue_options",
    "run",
    "settings",
]

DEFAULT_URL = "sqlite:///jobqueue.db"
URL_ENVVAR = "JOBQUEUE_URL"

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class Exit(enum.IntEnum):
    """The exit codes of ``jobqueue`` (documented in docs/cli.md)."""

    OK = 0
    REFUSED = 1
    USAGE = 2
    UNAVAILABLE = 3
    NOT_FOUND = 4
    INTERRUPTED = 130


class CliError(Exception):
    """A failure to report as one line on stderr, with its exit code."""

    def __init__(self, message: str, code: Exit) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the command operates and how it prints.

    ``url_given`` is True when ``--url`` was passed on the command line (not
    taken from ``JOBQUEUE_URL`` or the default).
    """

    url: str
    url_given: bool
    json: bool

    @property
    def shown_url(self) -> str:
        """The URL as it may be printed: with any password replaced by ``***``."""
        return redact_url(self.url)


def settings() -> Settings:
    """The settings of the running command, the command's own options winning."""
    ctx = click.get_current_context()
    root: dict[str, Any] = ctx.find_root().obj or {}
    url: str = root.get("url", DEFAULT_URL)
    given: bool = root.get("url_given", False)
    as_json: bool = root.get("json", False)
    own_url = ctx.params.get("url")
    if own_url is not None:
        url, given = own_url, True
    return Settings(url=url, url_given=given, json=as_json or bool(ctx.params.get("as_json")))


def queue_options(command: F) -> F:
    """Accept ``--url`` and ``--json`` after the command name too."""
    command = click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print machine-readable JSON (same as the global --json).",
    )(command)
    command = click.option(
        "--url",
        metavar="URL",
        default=None,
        help="Queue URL (same as the global --url).",
    )(command)
    return command


_NO_ARGS_IS_HELP: type[click.UsageError] = getattr(
    click.exceptions, "NoArgsIsHelpError", type("_NeverRaised", (click.UsageError,), {})
)
"""What click 8.2+ raises for a group run without a command; its message is the help."""


class JobQueueGroup(click.Group):
    """A group whose errors are one line on stderr with a documented exit code."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy: dict[str, tuple[Callable[[], click.Command], str]] = {}
        self._listing = False

    def add_lazy_command(
        self, name: str, loader: Callable[[], click.Command], summary: str
    ) -> None:
        """Offer ``name``, imported through ``loader`` only when it is run or asked for help."""
        self._lazy[name] = (loader, summary)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self._lazy])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self._lazy:
            return super().get_command(ctx, cmd_name)
        loader, summary = self._lazy[cmd_name]
        if self._listing:
            return click.Command(cmd_name, short_help=summary)
        return loader()

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_commands(ctx, formatter)
        finally:
            self._listing = False

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> NoReturn:
        try:
            result = super().main(
                args, prog_name or "jobqueue", complete_var, standalone_mode=False, **extra
            )
            code = result if isinstance(result, int) else 0
        except _NO_ARGS_IS_HELP as exc:
            click.echo(exc.format_message())
            code = Exit.OK
        except click.exceptions.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx is not None else "jobqueue"
            code = _report(f"{exc.format_message()} (see '{command} --help')", exc.exit_code)
        except CliError as exc:
            code = _report(exc.message, exc.code)
        except click.exceptions.Abort:
            code = _report("interrupted", Exit.INTERRUPTED)
        except click.ClickException as exc:
            code = _report(exc.format_message(), exc.exit_code)
        except JobQueueError as exc:
            code = _report(*describe(exc))
        except KeyboardInterrupt:
            code = _report("interrupted", Exit.INTERRUPTED)
        sys.exit(code)


def _report(message: str, code: int) -> int:
    line = " ".join(message.split())
    click.echo(f"error: {line}", err=True)
    return code


def describe(exc: JobQueueError) -> tuple[str, Exit]:
    """The error line (without ``error:``) and exit code for a library error."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, JobNotFoundError):
        return f"{text}; 'jobqueue list' shows the jobs there are", Exit.NOT_FOUND
    if isinstance(exc, InvalidTransitionError):
        return text, Exit.REFUSED
    if isinstance(exc, UnknownBackendError):
        return f"{text}; pass a URL with --url or {URL_ENVVAR}", Exit.USAGE
    if isinstance(exc, InvalidRequestError):
        return text, Exit.USAGE
    if isinstance(exc, (BackendUnavailableError, PluginConflictError)):
        return text, Exit.UNAVAILABLE
    return text, Exit.REFUSED


def scrub(text: str, url: str) -> str:
    """``text`` with every secret of ``url`` replaced by ``***``.

    The secrets are the userinfo password and the values of ``password``-like
    query parameters, raw and percent-decoded; a URL too malformed to parse
    leaves only what :func:`redact_url` would show.
    """
    try:
        parts = urlsplit(url)
        secrets = [parts.password or ""]
    except ValueError:
        return text.replace(url, redact_url(url))
    for parameter in parts.query.split("&"):
        key, _, value = parameter.partition("=")
        if "password" in key.lower():
            secrets.append(value)
    for secret in secrets:
        for variant in {secret, unquote(secret), unquote_plus(secret)}:
            if variant:
                text = text.replace(variant, "***")
    return text


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run the command's coroutine; library errors become ``CliError`` without secrets."""
    current = settings()
    try:
        return asyncio.run(main)
    except JobQueueError as exc:
        message, code = describe(exc)
        raise CliError(scrub(message, current.url), code) from None
    except OSError as exc:
        message = scrub(str(exc), current.url)
        raise CliError(f"cannot use {current.shown_url}: {message}", Exit.UNAVAILABLE) from None


def sqlite_path(url: str) -> Path | None:
    """The file a ``sqlite:`` URL names, or None for other URLs and in-memory databases."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != "sqlite":
        return None
    path = rest.split("?", 1)[0]
    if not path.startswith("/"):
        return None
    path = unquote(path[1:])
    if path in ("", ":memory:"):
        return None
    return Path(path)


@asynccontextmanager
async def open_queue(current: Settings, *, migrate: bool = False) -> AsyncIterator[JobQueue]:
    """Connect to the queue at ``current.url``.

    Without ``migrate`` a SQLite file that does not exist is reported (rather
    than created) and an unmigrated database is the backend's
    ``BackendUnavailableError``.
    """
    path = sqlite_path(current.url)
    if not migrate and path is not None and not path.exists():
        raise CliError(
            f"no queue database at {path}; run 'jobqueue migrate' to create one, "
            f"or point --url / {URL_ENVVAR} at an existing queue",
            Exit.UNAVAILABLE,
        )
    async with connect(current.url, migrate=migrate) as queue:
        yield queue


def to_jsonable(value: Any) -> Any:
    """``value`` with UUIDs, datetimes, timedeltas and enums as JSON-friendly values."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {str(to_jsonable(k)): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    return value


def job_to_dict(job: Job) -> dict[str, Any]:
    """Every field of ``job``, JSON-friendly: ids and datetimes (ISO 8601, UTC) as strings."""
    return {f.name: to_jsonable(getattr(job, f.name)) for f in fields(job)}


def emit_json(value: Any, *, compact: bool = False) -> None:
    """Print ``value`` as JSON on stdout (one line when ``compact``)."""
    data = to_jsonable(value)
    if compact:
        click.echo(json.dumps(data, separators=(",", ":")))
    else:
        click.echo(json.dumps(data, indent=2))


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


if TYPE_CHECKING:
    _DurationType = click.ParamType[timedelta, Any]
    _DatetimeType = click.ParamType[datetime, Any]
else:
    _DurationType = _DatetimeType = click.ParamType


class Duration(_DurationType):
    """A duration such as ``30s``, ``15m``, ``12h``, ``7d``, ``2w`` or ``1h30m``."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        text = str(value).strip().lower().replace(" ", "")
        parts = _DURATION_PART.findall(text)
        if not text or "".join(n + u for n, u in parts) != text:
            self.fail(
                f"{value!r} is not a duration; use a number and a unit s, m, h, d or w, "
                "like 30s, 15m, 12h, 7d or 1h30m",
                param,
                ctx,
            )
        return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))


class AwareDatetime(_DatetimeType):
    """An ISO 8601 date and time with a UTC offset (``Z`` accepted)."""

    name = "iso-datetime"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{value!r} is not an ISO 8601 date and time; example: 2030-01-31T09:00:00Z",
                param,
                ctx,
            )
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            self.fail(f"{value!r} has no UTC offset; add Z or +HH:MM, e.g. {text}Z", param, ctx)
        return parsed
