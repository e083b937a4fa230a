"""Helpers for testing code that uses jobqueue: a clock you move by hand.

Pass a :class:`FakeClock` as ``connect(url, clock=...)`` and every "now" the
backend uses (eligibility, leases, timestamps) comes from it.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

__all__ = ["FakeClock"]

DEFAULT_START = datetime(2030, 1, 1, tzinfo=UTC)


class FakeClock:
    """A clock that stands still until told to move; safe to share across threads.

    Calling it returns the current fake time (aware, UTC, microsecond precision).
    """

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        """Move forward by ``delta`` (a timedelta or seconds); returns the new time."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        with self._lock:
            self._now += step
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (aware), forwards or backwards."""
        if when.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware time")
        with self._lock:
            self._now = when.astimezone(UTC)

    def __repr__(self) -> str:
        return f"FakeClock({self().isoformat()})"
