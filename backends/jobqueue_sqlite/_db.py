"""One aiosqlite connection with bounded, jittered waits for the write lock.

Nearly every operation of the backend is a single SQL statement run in
autocommit mode, so it is its own transaction and costs one hop to
aiosqlite's thread. SQLite starts a writing statement's transaction by taking
the write lock before it reads anything (as ``BEGIN IMMEDIATE`` does), so such
a statement never fails half-way with ``SQLITE_BUSY`` and, when it is refused
the lock, has had no effect: it is safe to run again. Longer transactions
use an explicit ``BEGIN IMMEDIATE`` and hold the connection meanwhile, so no
other task's statement slips into them.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite

from jobqueue import BackendUnavailableError
from jobqueue.backend import redact_url

__all__ = ["Database", "is_busy"]

Row = Sequence[Any]
Parameters = Sequence[Any] | dict[str, Any]
Run = Callable[[str, Parameters], Awaitable[list[Row]]]

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
        self._held = asyncio.Lock()

    async def fetch(self, sql: str, parameters: Parameters = ()) -> list[Row]:
        """Run one statement (its own transaction) and return all its rows."""
        return await self._patiently(self._outside_transactions, sql, parameters)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Run]:
        """Hold the connection in a ``BEGIN IMMEDIATE`` transaction; yields a statement runner.

        Commits when the block ends, rolls back when it raises. Statements of
        other tasks wait until then.
        """
        async with self._held:
            await self._patiently(self._run, "BEGIN IMMEDIATE", ())
            try:
                yield self._run_in_transaction
            except BaseException:
                await self.connection.rollback()
                raise
            try:
                await self.connection.commit()
            except sqlite3.Error as exc:
                await self.connection.rollback()
                raise self.unavailable(exc) from exc

    async def _patiently(self, run: Run, sql: str, parameters: Parameters) -> list[Row]:
        deadline: float | None = None
        refusals = 0
        while True:
            try:
                return await run(sql, parameters)
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

    async def _outside_transactions(self, sql: str, parameters: Parameters) -> list[Row]:
        # When no transaction holds the connection the statement is queued
        # before this task yields, so it cannot land inside one begun later.
        if self._held.locked():
            async with self._held:
                return await self._run(sql, parameters)
        return await self._run(sql, parameters)

    async def _run_in_transaction(self, sql: str, parameters: Parameters = ()) -> list[Row]:
        try:
            return await self._run(sql, parameters)
        except sqlite3.Error as exc:
            raise self.unavailable(exc) from exc

    async def _run(self, sql: str, parameters: Parameters) -> list[Row]:
        rows: Iterable[Row] = await self.connection.execute_fetchall(sql, parameters)
        return list(rows)

    def unavailable(self, exc: BaseException) -> BackendUnavailableError:
        return BackendUnavailableError(f"{self._url}: {exc}")

    def busy_for_too_long(self) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"{self._url}: database is locked: another connection held the write lock for "
            f"more than {self._timeout:g} s (raise the timeout option if this is expected)"
        )

    async def close(self) -> None:
        """Close the connection once any transaction in progress has ended."""
        async with self._held:
            await self.connection.close()
