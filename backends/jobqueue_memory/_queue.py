"""``MemoryJobQueue``: the whole contract in this process, for tests and examples."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from jobqueue import CreateJobRequest, Job, JobQueue, JobStatus
from jobqueue.backend import Fence

from ._store import Store

_named_stores: dict[str, Store] = {}
_named_lock = threading.Lock()


def store_for(name: str) -> Store:
    """The store shared by every ``memory://NAME`` handle of this process; a fresh one for ''."""
    if not name:
        return Store()
    with _named_lock:
        store = _named_stores.get(name)
        if store is None:
            store = _named_stores[name] = Store()
        return store


class MemoryJobQueue(JobQueue):
    """A queue held in this process's memory; named queues are shared by every handle.

    Safe under any number of concurrent tasks, and across threads: each
    operation holds the store's lock from start to end.
    """

    def __init__(self, store: Store, name: str, *, clock: Any = None, lease: timedelta) -> None:
        super().__init__(clock=clock, lease=lease)
        self._store = store
        self._name = name

    def __repr__(self) -> str:
        return f"<MemoryJobQueue memory://{self._name}>"

    async def _create_jobs(self, requests: Sequence[CreateJobRequest]) -> list[Job]:
        now = self.now()
        with self._store.lock:
            return self._store.create(requests, now)

    async def _claim_jobs(
        self, worker_id: str, limit: int, queues: tuple[str, ...] | None
    ) -> list[Job]:
        now = self.now()
        with self._store.lock:
            return self._store.claim(worker_id, limit, queues, now, self.lease)

    async def _complete_job(self, job_id: UUID, stats: dict[str, Any], fence: Fence) -> None:
        now = self.now()
        with self._store.lock:
            self._store.complete(job_id, stats, fence, now)

    async def _fail_job(
        self, job_id: UUID, error: str, next_retry_at: datetime | None, fence: Fence
    ) -> None:
        now = self.now()
        with self._store.lock:
            self._store.fail(job_id, error, next_retry_at, fence, now)

    async def _cancel_job(self, job_id: UUID, stats: dict[str, Any] | None, fence: Fence) -> None:
        now = self.now()
        with self._store.lock:
            self._store.cancel(job_id, stats, fence, now)

    async def _get_job(self, job_id: UUID) -> Job | None:
        with self._store.lock:
            return self._store.get(job_id)

    async def _list_jobs(self, status: JobStatus | None, limit: int) -> list[Job]:
        with self._store.lock:
            return self._store.list(status, limit)

    async def _release_job(self, job_id: UUID) -> bool:
        now = self.now()
        with self._store.lock:
            return self._store.release(job_id, now)

    async def _release_worker_jobs(self, worker_id: str) -> int:
        now = self.now()
        with self._store.lock:
            return self._store.release_worker(worker_id, now)

    async def _counts(self) -> Mapping[JobStatus, int]:
        with self._store.lock:
            return self._store.counts()

    async def _count_by_status(self, status: JobStatus) -> int:
        with self._store.lock:
            return self._store.count(status)

    async def _heartbeat(self, worker_id: str) -> set[UUID]:
        expires = self.now() + self.lease
        with self._store.lock:
            return self._store.heartbeat(worker_id, expires)

    async def _rescue_expired_jobs(self) -> int:
        now = self.now()
        with self._store.lock:
            return self._store.rescue(now)

    async def _retry_job(self, job_id: UUID) -> Job:
        now = self.now()
        with self._store.lock:
            return self._store.retry(job_id, now)

    async def _purge_jobs(self, finished_before: datetime, statuses: frozenset[JobStatus]) -> int:
        with self._store.lock:
            return self._store.purge(finished_before, statuses)

    async def _wait_for_jobs(self, timeout: float) -> None:
        with self._store.lock:
            future = self._store.add_waiter(asyncio.get_running_loop())
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            pass
        finally:
            with self._store.lock:
                self._store.remove_waiter(future)

    async def _close(self) -> None:
        pass
