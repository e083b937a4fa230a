"""Wake-ups for idle workers: ``LISTEN`` on a dedicated connection that reconnects by itself.

A notification is a hint that a job may have become claimable, never a
promise; waiters always have a timeout, so a lost notification (or a broken
connection) only delays a worker until its next poll. After every
(re)connection the listener wakes all waiters once, because notifications
sent while it was away are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

logger = logging.getLogger("jobqueue.postgres")

_MAX_BACKOFF = 5.0
# How often a listener idle on its connection checks whether it was asked to stop;
# stopping it by cancellation instead can leave psycopg waiting on the server.
_STOP_CHECK = 0.5
_KEEPALIVES = {
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}


class Listener:
    """Counts notifications on one channel and lets tasks wait for the next one."""

    def __init__(
        self,
        conninfo: str,
        channel: str,
        connect_timeout: float,
        *,
        name: str,
        scrub: Callable[[str], str],
    ) -> None:
        # TCP keepalives (unless the URL sets its own) notice a silently dead
        # server; the listening connection otherwise never sends anything.
        given = psycopg.conninfo.conninfo_to_dict(conninfo)
        self._conninfo = psycopg.conninfo.make_conninfo(
            conninfo, **{k: v for k, v in _KEEPALIVES.items() if k not in given}
        )
        self._scrub = scrub
        self._channel = channel
        self._connect_timeout = connect_timeout
        self._name = name
        self._wakeup = asyncio.Event()
        self._listening = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.count = 0
        """How many wake-ups happened so far; compare two readings to see if one came between."""

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    async def start(self, timeout: float) -> None:
        """Start listening (once) and wait up to ``timeout`` seconds for ``LISTEN`` to be active."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"jobqueue listener {self._name}")
        if not self._listening.is_set() and timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._listening.wait(), timeout)

    async def wait(self, timeout: float, seen: int) -> None:
        """Return at the first wake-up after reading ``seen`` from :attr:`count`, or at timeout."""
        if self.count != seen:
            return
        event = self._wakeup
        # A timeout scope, not wait_for: no task between the wake-up and the waiter.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()

    async def close(self) -> None:
        """Stop listening; returns within a few seconds even if the server does not answer."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        await asyncio.wait({task}, timeout=2 * _STOP_CHECK + self._connect_timeout)
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        if task.done() and not task.cancelled() and task.exception() is not None:
            logger.warning("%s: listener ended with %r", self._name, task.exception())

    def _wake(self) -> None:
        self.count += 1
        event, self._wakeup = self._wakeup, asyncio.Event()
        event.set()

    async def _run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                conn = await asyncio.wait_for(
                    psycopg.AsyncConnection.connect(self._conninfo, autocommit=True),
                    self._connect_timeout,
                )
            except (psycopg.Error, OSError, TimeoutError) as exc:
                logger.warning(
                    "%s: cannot connect to listen (%s); retrying", self._name, self._scrub(str(exc))
                )
            else:
                try:
                    async with conn:
                        await conn.execute(
                            sql.SQL("LISTEN {}").format(sql.Identifier(self._channel))
                        )
                        backoff = 0.1
                        self._listening.set()
                        self._wake()
                        await self._drain(conn)
                except psycopg.Error as exc:
                    logger.warning(
                        "%s: listening connection lost (%s)", self._name, self._scrub(str(exc))
                    )
                finally:
                    self._listening.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)

    async def _drain(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while not self._stopping.is_set():
            async for _ in conn.notifies(timeout=_STOP_CHECK):
                self._wake()
