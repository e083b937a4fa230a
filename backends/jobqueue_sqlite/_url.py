"""Parsing ``sqlite:`` URLs and the backend's options."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from jobqueue import InvalidRequestError
from jobqueue.backend import redact_url, reject_unknown_options

__all__ = ["DEFAULT_TIMEOUT", "SYNCHRONOUS_MODES", "SQLiteConfig", "parse_url"]

DEFAULT_TIMEOUT = 30.0
SYNCHRONOUS_MODES = ("normal", "full", "extra")
OPTIONS = ("timeout", "synchronous")


@dataclass(frozen=True, slots=True)
class SQLiteConfig:
    """Where the database file is and how to use it."""

    url: str
    """The URL as given, for messages and ``repr`` (redacted)."""
    path: str
    """Absolute path of the database file."""
    timeout: float
    """Seconds an operation may wait for the write lock before giving up."""
    synchronous: str
    """SQLite's ``synchronous`` setting: ``normal``, ``full`` or ``extra``."""


def parse_url(url: str, options: Mapping[str, Any]) -> SQLiteConfig:
    """Read ``sqlite:///relative.db`` or ``sqlite:////absolute.db`` and the options.

    Options come as keyword arguments or in the query string (not both for one
    name). Raises ``InvalidRequestError`` for a malformed URL, an unknown option
    or a bad value. A relative path is resolved against the current directory now.
    """
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidRequestError(f"malformed sqlite URL {shown}: {exc}") from None
    if parts.scheme.lower() != "sqlite":
        raise InvalidRequestError(f"not a sqlite URL: {shown}")
    if parts.netloc:
        raise InvalidRequestError(
            f"a sqlite URL has no host or user: {shown}; "
            "use sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    if parts.fragment:
        raise InvalidRequestError(f"a sqlite URL has no #fragment: {shown}")
    path = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if not path or path.endswith("/"):
        raise InvalidRequestError(
            f"no database file in {shown}; "
            "use sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    if path == ":memory:" or path.startswith("file:"):
        raise InvalidRequestError(
            f"{shown} is not a file path; sqlite:// needs a file (use memory:// for a "
            "queue that lives in this process)"
        )
    if "\x00" in path:
        raise InvalidRequestError("the database path contains a NUL character")
    merged = _merge_options(shown, parts.query, options)
    return SQLiteConfig(
        url=url,
        path=os.path.abspath(path),
        timeout=_timeout(merged.get("timeout", DEFAULT_TIMEOUT)),
        synchronous=_synchronous(merged.get("synchronous", "normal")),
    )


def _merge_options(shown: str, query: str, options: Mapping[str, Any]) -> dict[str, Any]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise InvalidRequestError(f"malformed query string in {shown}") from None
    from_query: dict[str, Any] = {}
    for name, value in pairs:
        if name in from_query:
            raise InvalidRequestError(f"option {name!r} appears twice in {shown}")
        from_query[name] = value
    reject_unknown_options("sqlite", {**from_query, **options}, OPTIONS)
    both = sorted(set(from_query) & set(options))
    if both:
        raise InvalidRequestError(
            f"option(s) {', '.join(both)} given both in the URL and as keyword arguments"
        )
    return {**from_query, **options}


def _timeout(value: object) -> float:
    seconds: float
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            raise InvalidRequestError(
                f"timeout must be a number of seconds, got {value!r}"
            ) from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidRequestError(
            f"timeout must be a number of seconds or a timedelta, not {type(value).__name__}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidRequestError(f"timeout must be a positive number of seconds, got {value!r}")
    return seconds


def _synchronous(value: object) -> str:
    if not isinstance(value, str) or value.lower() not in SYNCHRONOUS_MODES:
        raise InvalidRequestError(
            f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, got {value!r}"
        )
    return value.lower()
