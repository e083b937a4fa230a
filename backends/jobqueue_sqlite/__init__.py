"""The ``sqlite:`` backend: a queue in one SQLite file, safe for several processes.

``sqlite:///relative/path.db`` (relative to the current directory) or
``sqlite:////absolute/path.db``. Options, as keyword arguments to
``jobqueue.connect`` or in the query string: ``timeout`` (seconds an operation
waits for the write lock, default 30) and ``synchronous`` (``normal``, the
default, ``full`` or ``extra``).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiosqlite

import jobqueue
from jobqueue import BackendUnavailableError

from ._db import BUSY_SLICE_MS, Database
from ._queue import SQLiteJobQueue
from ._schema import LATEST_VERSION, prepare
from ._url import SQLiteConfig, parse_url

__all__ = ["LATEST_VERSION", "SQLiteJobQueue", "open_sqlite"]


@jobqueue.hookimpl
def jobqueue_register_backends(register: Any) -> None:
    register("sqlite", open_sqlite, capabilities={"concurrent_processes", "persistent"})


async def open_sqlite(
    url: str,
    *,
    clock: Callable[[], datetime] | None = None,
    lease: timedelta = timedelta(minutes=5),
    migrate: bool = True,
    **options: Any,
) -> SQLiteJobQueue:
    """Open the queue in the file ``url`` names, creating and migrating it when ``migrate``.

    Raises ``InvalidRequestError`` for a malformed URL or a bad option, and
    ``BackendUnavailableError`` when the file cannot be used: its directory is
    missing, it is read-only, not a SQLite database, another application's
    database, or (with ``migrate=False``) has no or an old jobqueue schema. In
    those cases the file is left as it was.
    """
    config = parse_url(url, options)
    db = await _connect(config, create=migrate)
    try:
        await prepare(db, url, config.path, migrate=migrate, synchronous=config.synchronous)
        db.use_loop_connection(_connect_on_loop(config))
    except BaseException:
        await db.close()
        raise
    return SQLiteJobQueue(db, config, clock=clock, lease=lease)


def _check_place(config: SQLiteConfig, *, create: bool) -> bool:
    """Whether the file exists; raises when it cannot be a usable database file."""
    path = config.path
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise BackendUnavailableError(
            f"cannot open {path}: the directory {directory} does not exist"
        )
    if os.path.isdir(path):
        raise BackendUnavailableError(f"cannot open {path}: it is a directory")
    exists = os.path.exists(path)
    if not exists and not create:
        raise BackendUnavailableError(
            f"no database at {path}; create it with `jobqueue migrate --url '{config.url}'` "
            "or jobqueue.connect(url, migrate=True)"
        )
    if exists and not os.access(path, os.R_OK | os.W_OK):
        raise BackendUnavailableError(f"cannot open {path}: the file is not readable and writable")
    return exists


async def _connect(config: SQLiteConfig, *, create: bool) -> Database:
    exists = _check_place(config, create=create)
    try:
        connection = await aiosqlite.connect(
            f"file:{quote(config.path)}?mode={'rw' if exists else 'rwc'}",
            uri=True,
            isolation_level=None,
            timeout=BUSY_SLICE_MS / 1000,
        )
    except sqlite3.Error as exc:
        raise BackendUnavailableError(f"cannot open {config.path}: {exc}") from exc
    return Database(connection, config.url, config.timeout)


def _connect_on_loop(config: SQLiteConfig) -> sqlite3.Connection:
    """The connection for short statements, opened on the event loop's thread.

    Opened once the file is known to be a jobqueue database in WAL mode, so it
    shares every commit with aiosqlite's connection.
    """
    try:
        connection = sqlite3.connect(
            f"file:{quote(config.path)}?mode=rw", uri=True, isolation_level=None, timeout=0
        )
    except sqlite3.Error as exc:
        raise BackendUnavailableError(f"cannot open {config.path}: {exc}") from exc
    try:
        connection.execute(f"PRAGMA synchronous = {config.synchronous.upper()}")
        connection.execute("PRAGMA wal_autocheckpoint = 0")
    except sqlite3.Error as exc:
        connection.close()
        raise BackendUnavailableError(f"cannot open {config.path}: {exc}") from exc
    return connection
