"""One aiosqlite connection with bounded, jittered waits for the write lock.

Every operation of the backend is a single SQL statement run in autocommit
mode, so each is its own transaction and costs one hop to aiosqlite's
thread. SQLite starts a writing statement's transaction by taking the write
lock before it reads anything (as ``BEGIN IMMEDIATE`` does), so such a
statement never fails half-way with ``SQLITE_BUSY`` and, when it is refused
the lock, has had no effect: it is safe to run again. Longer transactions
(schema migrations) use an explicit ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any

import aiosqlite

from jobqueue import BackendUnavailableError
from jobqueue.backend import redact_url

__all__ = ["Database", "is_busy"]

Row = Sequence[Any]

SQLITE_BUSY = 5
# SQLite's own busy handler waits this long before we back off with jitter:
# long enough to ride out an ordinary commit, short enough that waiting
# processes do not wake up in lockstep.
BUSY_SLICE_MS = 50
MAX_BACKOFF = 0.05


def is_busy(exc: BaseException) -> bool:
    """True when ``exc`` is SQLite refusing a lock another connection holds."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return bool(code & 0xFF == SQLITE_BUSY)
    return "database is locked" in str(exc)


class Database:
    """Runs statements on one connection; waits for the write lock at most ``timeout`` s.

    A statement refused the lock is retried after a random pause that grows
    with each refusal, until ``timeout`` has passed; then the call raises
    ``BackendUnavailableError``. Other SQLite errors become
    ``BackendUnavailableError`` too, naming the database.
    """

    def __init__(self, connection: aiosqlite.Connection, url: str, timeout: float) -> None:
        self.connection = connection
        self._url = redact_url(url)
        self._timeout = timeout

    async def fetch(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
        """Run one statement (its own transaction) and return all its rows."""
        deadline: float | None = None
        refusals = 0
        while True:
            try:
                rows: Iterable[Row] = await self.connection.execute_fetchall(sql, parameters)
                return list(rows)
            except sqlite3.Error as exc:
                if not is_busy(exc):
                    raise self.unavailable(exc) from exc
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self._timeout - BUSY_SLICE_MS / 1000
                if now >= deadline:
                    raise self.busy_for_too_long() from exc
                refusals += 1
                pause = random.uniform(0, min(MAX_BACKOFF, 0.001 * 2**refusals))
                await asyncio.sleep(min(pause, max(0.0, deadline - now)))

    def unavailable(self, exc: BaseException) -> BackendUnavailableError:
        return BackendUnavailableError(f"{self._url}: {exc}")

    def busy_for_too_long(self) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"{self._url}: database is locked: another connection held the write lock for "
            f"more than {self._timeout:g} s (raise the timeout option if this is expected)"
        )

    async def close(self) -> None:
        await self.connection.close()
