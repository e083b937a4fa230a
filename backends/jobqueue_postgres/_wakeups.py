"""Notifications sent after the fact, for statements that overlapped others on one handle.

PostgreSQL commits the transactions that notify one at a time: each holds one
lock of the whole server from just before its commit until that commit is on
disk. Statements that notify therefore cannot share a disk flush, and
concurrent calls on one handle would wait for each other's flushes (8
concurrent ``create_job`` loops: 4,800 jobs/s notifying in the insert against
10,100 not notifying at all). So a statement that makes jobs claimable
(creating them, or failing them with a retry) and starts while another such
statement of the same handle is running does not notify, and the handle
notifies once it has committed, in a transaction of its own that does not wait
for the disk. A statement that runs alone notifies itself, which costs it
nothing more.

Requests coalesce: while one notification is being sent, any number of
requests make one more, sent after it. A notification is a hint (waiters also
poll), so one that fails is logged and dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger("jobqueue.postgres")


class Notifier:
    """Sends a notification soon after each :meth:`wake`, never two at once."""

    def __init__(self, send: Callable[[], Awaitable[object]], *, name: str) -> None:
        self._send = send
        self._name = name
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def wake(self) -> None:
        """Ask for one notification after everything committed so far."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        else:
            self._again = True

    async def close(self) -> None:
        """Wait until the notifications asked for are sent (or failed)."""
        while self._task is not None:
            await asyncio.wait({self._task})

    async def _run(self) -> None:
        try:
            while True:
                self._again = False
                try:
                    await self._send()
                except Exception as exc:
                    logger.warning("%s: a notification was not sent: %s", self._name, exc)
                if not self._again:
                    return
        finally:
            self._task = None
