"""A process-unsafe backend: the example file backend without its file lock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from jobqueue import JobQueue
from jobqueue_conformance import ConnectSpec

T = TypeVar("T")


@dataclass(frozen=True)
class UnlockedFileSpec(ConnectSpec):
    """Opens the example backend's file queue with locking turned off.

    Picklable like any ``ConnectSpec``, so the suite's claimer processes open it too;
    there, read-modify-write cycles of different processes interleave.
    """

    async def __call__(self, clock: Callable[[], datetime] | None) -> JobQueue:
        from jobqueue_example import FileJobQueue

        class UnlockedFileJobQueue(FileJobQueue):
            def _locked(self, change: Callable[[Any], T], write: bool) -> T:
                state = self._read()
                result = change(state)
                if write:
                    self._write(state)
                return result

        return UnlockedFileJobQueue(self.url, clock=clock, lease=timedelta(minutes=5))
