"""Two connections to one file: short statements run on the event loop's thread when they can.

Nearly every operation of the backend is a single SQL statement run in
autocommit mode, so it is its own transaction. SQLite starts a writing
statement's transaction by taking the write lock before it reads anything (as
``BEGIN IMMEDIATE`` does), so such a statement never fails half-way with
``SQLITE_BUSY`` and, when it is refused the lock, has had no effect: it is
safe to run again, on either connection.

A short statement first runs on the *loop connection*: a plain ``sqlite3``
connection used only from the event loop's thread, with a busy timeout of 0
so that it never waits for a lock. It costs the statement alone, and blocks
the loop for as long as the statement runs. When SQLite refuses it the lock
(another connection holds it), or while a transaction of this handle is
open, the statement runs on aiosqlite's connection instead, whose thread
asks for the lock again after a pause that grows with the wait (a
millisecond or two at first). Statements whose work grows
with the table or with a caller's batch always run there, and so do the WAL
checkpoints of the loop connection's writes, whose ``fsync`` calls could stall
the loop for milliseconds. Statements keep running on the loop during a
checkpoint, except during every :data:`CHECKPOINTS_PER_RESTART`-th, which they
wait for (without blocking the loop): the WAL starts over only after a
checkpoint that copied all of it, and one that runs beside writes leaves
theirs behind. A task that makes call after call answered at once on the loop
still yields to the event loop every :data:`YIELD_INTERVAL`. Both connections
open the same file in WAL mode, so each statement sees everything either of
them committed before it began.

Longer transactions use an explicit ``BEGIN IMMEDIATE`` on aiosqlite's
connection and hold the handle meanwhile, so no other task's statement slips
into them.
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

__all__ = ["LOOP_ROWS", "YIELD_INTERVAL", "Database", "is_busy"]

Row = Sequence[Any]
Parameters = Sequence[Any] | dict[str, Any]
Run = Callable[[str, Parameters], Awaitable[list[Row]]]

SQLITE_BUSY = 5
# A statement refused the write lock sleeps once (1 ms) in SQLite's busy
# handler, then pauses at random for up to an eighth of the time it has
# waited so far (at least RETRY_PAUSE, at most MAX_PAUSE) and asks again.
# Other processes' statements hold the lock for a fraction of a millisecond,
# so a process draining beside them gets it soon after it frees (4 processes
# drained 29,300 jobs/s against 26,300 with SQLite's escalating sleeps in
# 50 ms slices, medians of six), while a lock held for seconds costs a
# waiting handle a few dozen attempts a second.
BUSY_SLICE_MS = 1
RETRY_PAUSE = 0.001
MAX_PAUSE = 0.05

YIELD_INTERVAL = 0.001
"""Seconds this handle may keep the event loop with statements on it before it yields once,
so that other tasks run (and can cancel) while a task makes call after call."""

LOOP_ROWS = 100
"""The most rows a statement may be meant to touch and still run on the loop's thread."""

CHECKPOINT_WRITES = 250
"""Writing statements on the loop connection between two checkpoints on aiosqlite's
thread: each adds a handful of pages to the WAL, so a checkpoint copies about
SQLite's default checkpoint size of 1,000 pages."""

CHECKPOINTS_PER_RESTART = 4
"""Every this many checkpoints, statements wait for the checkpoint to end so that the
WAL can start over after it; during the others they keep running on the loop."""


def is_busy(exc: BaseException) -> bool:
    """True when ``exc`` is SQLite refusing a lock another connection holds."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return bool(code & 0xFF == SQLITE_BUSY)
    return "database is locked" in str(exc)


class Database:
    """Runs statements on one file; waits for the write lock at most ``timeout`` s.

    A statement refused the lock is retried on aiosqlite's connection after a
    random pause that grows with each refusal, until ``timeout`` has passed;
    then the call raises ``BackendUnavailableError``. Other SQLite errors
    become ``BackendUnavailableError`` too, naming the database. Until
    :meth:`use_loop_connection` is called every statement runs on aiosqlite's
    connection.
    """

    def __init__(self, connection: aiosqlite.Connection, url: str, timeout: float) -> None:
        self.connection = connection
        self.loop_connection: sqlite3.Connection | None = None
        self._url = redact_url(url)
        self._timeout = timeout
        self._held = asyncio.Lock()
        self._asking = asyncio.Lock()
        self._loop_writes = 0
        self._changes = 0
        self._checkpoint: asyncio.Task[None] | None = None
        self._awaited_checkpoint: asyncio.Task[None] | None = None
        self._checkpoints = 0
        self._closing = False
        self._yield_at = 0.0

    def use_loop_connection(self, connection: sqlite3.Connection) -> None:
        """Run short statements on ``connection`` from now on.

        ``connection`` must be opened on the event loop's thread, to the same
        file, in WAL mode (so that both connections see each other's commits),
        in autocommit mode, with a busy timeout of 0 and automatic
        checkpoints off (this object runs them on aiosqlite's thread).
        """
        self.loop_connection = connection
        self._changes = connection.total_changes

    async def fetch(self, sql: str, parameters: Parameters = ()) -> list[Row]:
        """Run one short statement (its own transaction) and return all its rows.

        On the loop connection when :meth:`run_on_loop` can (yielding to the
        event loop first when it is due), else on aiosqlite's connection. Use
        it only for statements meant to touch at most :data:`LOOP_ROWS` rows.
        """
        rows = self.run_on_loop(sql, parameters)
        checkpoint = self._awaited_checkpoint
        if rows is None and (checkpoint is not None or time.monotonic() >= self._yield_at):
            # Waiting out a checkpoint, rather than writing through the other
            # connection meanwhile, lets the WAL restart after it and keeps the
            # loop connection's page cache, which any write of another
            # connection would make it discard.
            if checkpoint is not None:
                await asyncio.shield(checkpoint)
            else:
                await asyncio.sleep(0)
            self._yield_at = time.monotonic() + YIELD_INTERVAL
            rows = self.run_on_loop(sql, parameters)
        if rows is None:
            rows = await self._patiently(self._outside_transactions, sql, parameters)
        return rows

    def run_on_loop(self, sql: str, parameters: Parameters = ()) -> list[Row] | None:
        """Run one short statement on the loop connection now and return all its rows.

        Returns None, having changed nothing, when the statement must go to
        aiosqlite's connection: there is no loop connection, a transaction or
        checkpoint of this handle is in progress, or another connection holds
        the write lock; also when this handle has run statements on the loop
        for :data:`YIELD_INTERVAL` without yielding to it. Raises
        ``BackendUnavailableError`` for any other SQLite error.
        """
        connection = self.loop_connection
        if (
            connection is None
            or self._awaited_checkpoint is not None
            or self._held.locked()
            or time.monotonic() >= self._yield_at
        ):
            return None
        try:
            rows = connection.execute(sql, parameters).fetchall()
        except sqlite3.Error as exc:
            if is_busy(exc):
                return None
            raise self.unavailable(exc) from exc
        self._count_loop_write(connection)
        return rows

    async def fetch_in_thread(self, sql: str, parameters: Parameters = ()) -> list[Row]:
        """Run one statement (its own transaction) on aiosqlite's thread; return all its rows.

        For statements that may run long (scans, large batches): the event
        loop keeps running meanwhile.
        """
        return await self._patiently(self._outside_transactions, sql, parameters)

    def for_rows(self, count: int) -> Run:
        """:meth:`fetch` for a statement meant to touch at most ``count`` rows, if that is
        at most :data:`LOOP_ROWS`; else :meth:`fetch_in_thread`."""
        return self.fetch if count <= LOOP_ROWS else self.fetch_in_thread

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Run]:
        """Hold the handle in a ``BEGIN IMMEDIATE`` transaction; yields a statement runner.

        Commits when the block ends, rolls back when it raises. Statements of
        other tasks wait until then.
        """
        async with self._held:
            await self._patiently(self._run, "BEGIN IMMEDIATE", (), take_turns=False)
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

    def _count_loop_write(self, connection: sqlite3.Connection) -> None:
        changes = connection.total_changes
        if changes == self._changes:
            return
        self._changes = changes
        self._loop_writes += 1
        if self._loop_writes < CHECKPOINT_WRITES or self._checkpoint is not None:
            return
        if not self._closing:
            self._loop_writes = 0
            self._checkpoints += 1
            self._checkpoint = asyncio.create_task(self._checkpoint_in_thread())
            if self._checkpoints % CHECKPOINTS_PER_RESTART == 0:
                self._awaited_checkpoint = self._checkpoint

    async def _checkpoint_in_thread(self) -> None:
        """Copy the WAL's pages into the database file without waiting for anyone.

        A failed checkpoint loses nothing: the pages stay in the WAL and the
        next checkpoint, or the next commit on aiosqlite's connection, copies them.
        """
        try:
            await self._outside_transactions("PRAGMA wal_checkpoint(PASSIVE)", ())
        except sqlite3.Error:
            pass
        finally:
            self._checkpoint = self._awaited_checkpoint = None

    async def _patiently(
        self, run: Run, sql: str, parameters: Parameters, *, take_turns: bool = True
    ) -> list[Row]:
        """``run`` the statement, asking again while SQLite refuses it the write lock.

        With ``take_turns`` one task of this handle at a time asks again and the
        others queue behind it, so waiting costs the same however many calls wait.
        A transaction's ``BEGIN`` does not take turns: it holds the handle, which
        the task whose turn it is may be waiting for.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self._timeout - BUSY_SLICE_MS / 1000
        my_turn = False
        try:
            while True:
                try:
                    return await run(sql, parameters)
                except sqlite3.Error as exc:
                    if not is_busy(exc):
                        raise self.unavailable(exc) from exc
                    refused = exc
                if take_turns and not my_turn:
                    try:
                        async with asyncio.timeout_at(deadline):
                            await self._asking.acquire()
                    except TimeoutError:
                        raise self.busy_for_too_long() from refused
                    my_turn = True
                    continue
                now = loop.time()
                if now >= deadline:
                    raise self.busy_for_too_long() from refused
                longest = min(MAX_PAUSE, max(RETRY_PAUSE, (now - started) / 8))
                await asyncio.sleep(min(random.uniform(0, longest), deadline - now))
        finally:
            if my_turn:
                self._asking.release()

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
        """Close both connections once any transaction or checkpoint in progress has ended.

        The loop connection closes first, so that the last one to close, which
        checkpoints the WAL when no other process uses the file, is aiosqlite's.
        """
        self._closing = True
        if self._checkpoint is not None:
            await asyncio.shield(self._checkpoint)
        async with self._held:
            if self.loop_connection is not None:
                self.loop_connection.close()
            await self.connection.close()
