"""Parsing and validating a PostgreSQL URL and the backend's options (no psycopg needed)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from jobqueue import InvalidRequestError
from jobqueue.backend import redact_url

SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
DEFAULT_SCHEMA = "jobqueue"
DEFAULT_APPLICATION_NAME = "jobqueue"
OPTION_NAMES = (
    "schema",
    "min_size",
    "max_size",
    "connect_timeout",
    "timeout",
    "notify",
    "prepared_statements",
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_IDENTIFIER_BYTES = 63
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything needed to open a queue; ``conninfo`` goes to libpq, ``display_url`` to humans."""

    conninfo: str = field(repr=False)
    display_url: str
    schema: str
    min_size: int
    max_size: int
    connect_timeout: float
    timeout: float
    notify: bool
    prepared_statements: bool
    password: str | None = field(default=None, repr=False)

    def scrub(self, text: str) -> str:
        """``text`` with the password (if any) replaced by ``***``: safe for errors and logs."""
        if self.password:
            text = text.replace(self.password, "***")
            quoted = quote(self.password, safe="")
            if quoted != self.password:
                text = text.replace(quoted, "***")
        return text


def parse_options(url: str, options: Mapping[str, Any]) -> Settings:
    """Split ``url`` into libpq's part and ours, merge keyword ``options``, validate.

    Raises ``InvalidRequestError`` naming any unknown keyword or invalid value;
    unknown URL query parameters are left to libpq, which rejects what it does not know.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a malformed port
    except ValueError:
        raise InvalidRequestError(f"not a valid PostgreSQL URL: {redact_url(url)}") from None
    query = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, True)]
    display = redact_url(f"{parts.scheme}://{parts.netloc}{parts.path}")
    if query:
        display += "?" + urlencode(query, safe="*/:,")
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise InvalidRequestError(
            f"not a PostgreSQL URL: {display}; use one of " + ", ".join(f"{s}://" for s in SCHEMES)
        )
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise InvalidRequestError(
            f"unknown option(s) for {scheme}:// : {', '.join(unknown)}; "
            f"known: {', '.join(sorted(OPTION_NAMES))} (and libpq parameters in the URL query)"
        )
    ours: dict[str, Any] = {}
    libpq: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in OPTION_NAMES:
            ours[key] = value
        else:
            libpq.append((key, value))
    both = sorted(set(ours) & set(options))
    if both:
        raise InvalidRequestError(
            f"option(s) given both in the URL and as keyword arguments: {', '.join(both)}"
        )
    ours.update(options)
    if not any(key == "application_name" for key, _ in libpq):
        libpq.append(("application_name", DEFAULT_APPLICATION_NAME))

    min_size = _integer(ours.get("min_size", 1), "min_size", minimum=0)
    max_size = _integer(ours.get("max_size", 10), "max_size", minimum=1)
    if min_size > max_size:
        raise InvalidRequestError(f"min_size ({min_size}) must not exceed max_size ({max_size})")
    connect_timeout = _seconds(ours.get("connect_timeout", 10.0), "connect_timeout")
    # libpq's own connect_timeout is whole seconds, at least 2.
    libpq.append(("connect_timeout", str(max(2, math.ceil(connect_timeout)))))
    # libpq decodes %20 but not "+": encode spaces (e.g. in ?options=-c x=y) as %20.
    conninfo = f"postgresql://{parts.netloc}{parts.path}?{urlencode(libpq, quote_via=quote)}"
    return Settings(
        conninfo=conninfo,
        display_url=display,
        schema=_schema(ours.get("schema", DEFAULT_SCHEMA)),
        min_size=min_size,
        max_size=max_size,
        connect_timeout=connect_timeout,
        timeout=_seconds(ours.get("timeout", 30.0), "timeout"),
        notify=_boolean(ours.get("notify", True), "notify"),
        prepared_statements=_boolean(ours.get("prepared_statements", True), "prepared_statements"),
        password=_password(parts.password, libpq),
    )


def _password(in_netloc: str | None, libpq: list[tuple[str, str]]) -> str | None:
    for key, value in libpq:
        if key == "password":
            return value
    return None if in_netloc is None else unquote(in_netloc)


def _schema(value: object) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise InvalidRequestError(
            f"schema must be a plain identifier (letters, digits, underscores; "
            f"not starting with a digit), got {value!r}"
        )
    if len(value.encode()) > _MAX_IDENTIFIER_BYTES:
        raise InvalidRequestError(
            f"schema must be at most {_MAX_IDENTIFIER_BYTES} bytes long, got {value!r}"
        )
    if value.lower().startswith("pg_"):
        raise InvalidRequestError(f"schema names starting with pg_ are reserved: {value!r}")
    return value


def _integer(value: object, name: str, *, minimum: int) -> int:
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise InvalidRequestError(f"{name} must be an integer, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise InvalidRequestError(f"{name} must be at least {minimum}, got {value}")
    return value


def _seconds(value: object, name: str) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InvalidRequestError(
                f"{name} must be a number of seconds, got {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequestError(f"{name} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not (math.isfinite(seconds) and seconds > 0):
        raise InvalidRequestError(f"{name} must be a positive number of seconds, got {value!r}")
    return seconds


def _boolean(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise InvalidRequestError(f"{name} must be a boolean (true/false), got {value!r}")
