"""The in-process job store behind ``memory://`` URLs.

All state of one store lives here, guarded by one lock so that handles used
from several threads (each with its own event loop) stay consistent. Every
method runs to completion without awaiting, which makes each operation atomic.
"""

from __future__ import annotations

import asyncio
import heapq
import threading
import uuid
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from jobqueue import CreateJobRequest, Job, JobNotFoundError, JobStatus
from jobqueue.backend import NO_FENCE, Fence, Outcome, check_outcome

PENDING = JobStatus.PENDING
RUNNING = JobStatus.RUNNING
LEASE_EXPIRED = "lease expired"

# A ready entry sorts in claim order; seq is unique, so the record is never compared.
ReadyEntry = tuple[int, bool, datetime, int, int, "Record"]
DelayedEntry = tuple[datetime, int, int, "Record"]


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON value, so callers never share the stored one."""
    if type(value) is dict:
        return {k: copy_json(v) for k, v in value.items()}
    if type(value) is list:
        return [copy_json(v) for v in value]
    return value


class Record:
    """A job's mutable stored state; ``version`` changes whenever it leaves ``pending``."""

    __slots__ = (
        "attempts",
        "created_at",
        "error",
        "finished_at",
        "id",
        "kind",
        "lease_expires_at",
        "max_attempts",
        "next_retry_at",
        "payload",
        "priority",
        "queue",
        "run_at",
        "seq",
        "started_at",
        "stats",
        "status",
        "updated_at",
        "version",
        "worker_id",
    )  # fmt: skip

    def __init__(self, request: CreateJobRequest, now: datetime, seq: int) -> None:
        self.id = uuid.uuid4()
        self.kind = request.kind
        self.payload: dict[str, Any] = copy_json(request.payload)
        self.queue = request.queue
        self.priority = request.priority
        self.status = PENDING
        self.attempts = 0
        self.max_attempts = request.max_attempts
        self.worker_id: str | None = None
        self.error: str | None = None
        self.stats: dict[str, Any] | None = None
        self.run_at = request.run_at
        self.next_retry_at: datetime | None = None
        self.lease_expires_at: datetime | None = None
        self.created_at = now
        self.updated_at = now
        self.started_at: datetime | None = None
        self.finished_at: datetime | None = None
        self.seq = seq
        self.version = 0

    def eligible_at(self) -> datetime | None:
        """The first instant the job may be claimed, None when it always may."""
        run_at, retry_at = self.run_at, self.next_retry_at
        if run_at is None:
            return retry_at
        if retry_at is None or retry_at < run_at:
            return run_at
        return retry_at

    def snapshot(self) -> Job:
        # Positional arguments in Job's field order (pinned by test_models) bind faster.
        return Job(
            self.id,
            self.kind,
            copy_json(self.payload) if self.payload else {},
            self.queue,
            self.priority,
            self.status,
            self.attempts,
            self.max_attempts,
            self.worker_id,
            self.error,
            None if self.stats is None else copy_json(self.stats),
            self.run_at,
            self.next_retry_at,
            self.lease_expires_at,
            self.created_at,
            self.updated_at,
            self.started_at,
            self.finished_at,
        )


class ReadyJobs:
    """The claimable jobs of one queue, in claim order, as entries of ``_push_ready``.

    Jobs mostly become ready in claim order (created one after another with
    the same priority): those are appended to a first-in, first-out run, in
    constant time; any other goes to a heap. The head is the first of the two
    heads. Entries of records that changed since (another version, no longer
    pending) are dropped when they reach a head.
    """

    __slots__ = ("_heap", "_run")

    def __init__(self) -> None:
        self._run: deque[ReadyEntry] = deque()
        self._heap: list[ReadyEntry] = []

    def push(self, entry: ReadyEntry) -> None:
        run = self._run
        if not run or run[-1] < entry:
            run.append(entry)
        else:
            heapq.heappush(self._heap, entry)

    def head(self) -> ReadyEntry | None:
        """The first live entry, left in place."""
        run, heap = self._run, self._heap
        while run and not _live(run[0]):
            run.popleft()
        while heap and not _live(heap[0]):
            heapq.heappop(heap)
        if run and (not heap or run[0] < heap[0]):
            return run[0]
        return heap[0] if heap else None

    def pop(self, head: ReadyEntry) -> None:
        """Remove ``head``, which :meth:`head` just returned."""
        if self._run and self._run[0] is head:
            self._run.popleft()
        else:
            heapq.heappop(self._heap)


def _live(entry: ReadyEntry) -> bool:
    record = entry[5]
    return record.version == entry[4] and record.status is PENDING


class Store:
    """Jobs, their claim-order indexes and the idle waiters of one ``memory://`` queue."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._jobs: dict[UUID, Record] = {}
        self._ready: dict[str, ReadyJobs] = {}
        self._delayed: list[DelayedEntry] = []
        # Keyed by seq: an int hashes faster than a UUID.
        self._running_by_worker: dict[str, dict[int, Record]] = {}
        self._counts = dict.fromkeys(JobStatus, 0)
        self._seq = 0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    # ------------------------------------------------------------ bookkeeping

    def _set_status(self, record: Record, status: JobStatus) -> None:
        old = record.status
        if old is RUNNING:
            held = self._running_by_worker.get(record.worker_id or "")
            if held is not None:
                held.pop(record.seq, None)
                if not held:
                    del self._running_by_worker[record.worker_id or ""]
        self._counts[old] -= 1
        self._counts[status] += 1
        record.status = status
        record.version += 1

    def _make_pending(self, record: Record, now: datetime) -> None:
        """Index a record that just became pending, and wake idle waiters if it is due."""
        eligible = record.eligible_at()
        if eligible is None or eligible <= now:
            self._push_ready(record)
            self._wake_waiters()
        else:
            heapq.heappush(self._delayed, (eligible, record.seq, record.version, record))

    def _push_ready(self, record: Record) -> None:
        ready = self._ready.get(record.queue)
        if ready is None:
            ready = self._ready[record.queue] = ReadyJobs()
        ready.push(
            (
                -record.priority,
                record.next_retry_at is not None,
                record.created_at,
                record.seq,
                record.version,
                record,
            )
        )

    def _promote_due(self, now: datetime) -> None:
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            _, _, version, record = heapq.heappop(delayed)
            if record.version == version and record.status is PENDING:
                self._push_ready(record)

    def _next_claimable(self, queues: Sequence[str] | None, now: datetime) -> Record | None:
        names = self._ready.keys() if queues is None else queues
        while True:
            best: ReadyEntry | None = None
            best_ready: ReadyJobs | None = None
            for name in names:
                ready = self._ready.get(name)
                if ready is not None:
                    entry = ready.head()
                    if entry is not None and (best is None or entry < best):
                        best, best_ready = entry, ready
            if best is None or best_ready is None:
                return None
            best_ready.pop(best)
            record = best[5]
            eligible = record.eligible_at()
            if eligible is None or eligible <= now:
                return record
            # The clock moved back since the job was found due: wait again.
            heapq.heappush(self._delayed, (eligible, record.seq, record.version, record))

    def _wake_waiters(self) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for loop, future in waiters:
                if not loop.is_closed():
                    loop.call_soon_threadsafe(_resolve, future)

    def _get(self, job_id: UUID) -> Record:
        record = self._jobs.get(job_id)
        if record is None:
            raise JobNotFoundError(job_id)
        return record

    def _running(self, job_id: UUID, fence: Fence) -> Record | None:
        """The job when it is running and matches ``fence``: then completing or failing
        it is allowed without consulting the outcome rules; else None."""
        record = self._jobs.get(job_id)
        if record is not None and record.status is RUNNING and fence.matches(record):
            return record
        return None

    def _checked(self, outcome: Outcome, job_id: UUID, fence: Fence) -> Record:
        record = self._jobs.get(job_id)
        check_outcome(outcome, record, job_id, fence)
        assert record is not None
        return record

    # ------------------------------------------------------------ operations

    def create(self, requests: Sequence[CreateJobRequest], now: datetime) -> list[Job]:
        created = []
        for request in requests:
            self._seq += 1
            record = Record(request, now, self._seq)
            self._jobs[record.id] = record
            self._counts[PENDING] += 1
            self._make_pending(record, now)
            created.append(record.snapshot())
        return created

    def claim(
        self,
        worker_id: str,
        limit: int,
        queues: Sequence[str] | None,
        now: datetime,
        lease: timedelta,
    ) -> list[Job]:
        delayed = self._delayed
        if delayed and delayed[0][0] <= now:
            self._promote_due(now)
        claimed: list[Job] = []
        expires = now + lease
        held = self._running_by_worker.setdefault(worker_id, {})
        while len(claimed) < limit:
            record = self._next_claimable(queues, now)
            if record is None:
                break
            self._set_status(record, RUNNING)
            record.worker_id = worker_id
            record.attempts += 1
            record.started_at = now
            record.lease_expires_at = expires
            record.updated_at = now
            held[record.seq] = record
            claimed.append(record.snapshot())
        if not held:
            del self._running_by_worker[worker_id]
        return claimed

    def complete(self, job_id: UUID, stats: dict[str, Any], fence: Fence, now: datetime) -> None:
        record = self._running(job_id, fence)
        if record is None:
            record = self._checked(Outcome.COMPLETE, job_id, fence)
        self._set_status(record, JobStatus.COMPLETED)
        record.stats = stats
        record.finished_at = now
        record.lease_expires_at = None
        record.updated_at = now

    def fail(
        self, job_id: UUID, error: str, retry_at: datetime | None, fence: Fence, now: datetime
    ) -> None:
        record = self._running(job_id, fence)
        if record is None:
            record = self._checked(Outcome.FAIL, job_id, fence)
        record.error = error
        record.lease_expires_at = None
        record.updated_at = now
        if retry_at is None:
            self._set_status(record, JobStatus.FAILED)
            record.finished_at = now
        else:
            self._set_status(record, PENDING)
            record.worker_id = None
            record.next_retry_at = retry_at
            self._make_pending(record, now)

    def cancel(
        self, job_id: UUID, stats: dict[str, Any] | None, fence: Fence, now: datetime
    ) -> None:
        record = self._checked(Outcome.CANCEL, job_id, fence)
        self._set_status(record, JobStatus.CANCELLED)
        if stats is not None:
            record.stats = stats
        record.finished_at = now
        record.lease_expires_at = None
        record.updated_at = now

    def get(self, job_id: UUID) -> Job | None:
        record = self._jobs.get(job_id)
        return None if record is None else record.snapshot()

    def list(self, status: JobStatus | None, limit: int) -> list[Job]:
        records = self._jobs.values()
        if status is not None:
            records = [r for r in records if r.status is status]  # type: ignore[assignment]
        newest = heapq.nlargest(limit, records, key=lambda r: (r.created_at, r.seq))
        return [r.snapshot() for r in newest]

    def _release(self, record: Record, now: datetime) -> None:
        self._set_status(record, PENDING)
        record.worker_id = None
        record.attempts -= 1
        record.lease_expires_at = None
        record.updated_at = now
        self._make_pending(record, now)

    def release(self, job_id: UUID, now: datetime) -> bool:
        record = self._get(job_id)
        if record.status is not RUNNING:
            return False
        self._release(record, now)
        return True

    def release_worker(self, worker_id: str, now: datetime) -> int:
        held = list(self._running_by_worker.get(worker_id, {}).values())
        for record in held:
            self._release(record, now)
        return len(held)

    def retry(self, job_id: UUID, now: datetime) -> Job:
        record = self._checked(Outcome.RETRY, job_id, NO_FENCE)
        self._set_status(record, PENDING)
        record.attempts = 0
        record.worker_id = None
        record.next_retry_at = None
        record.finished_at = None
        record.stats = None
        record.lease_expires_at = None
        record.updated_at = now
        self._make_pending(record, now)
        return record.snapshot()

    def purge(self, finished_before: datetime, statuses: frozenset[JobStatus]) -> int:
        doomed = [
            record
            for record in self._jobs.values()
            if record.status in statuses
            and record.finished_at is not None
            and record.finished_at < finished_before
        ]
        for record in doomed:
            del self._jobs[record.id]
            self._counts[record.status] -= 1
            record.version += 1
        return len(doomed)

    def counts(self) -> dict[JobStatus, int]:
        return dict(self._counts)

    def count(self, status: JobStatus) -> int:
        return self._counts[status]

    def heartbeat(self, worker_id: str, expires: datetime) -> set[UUID]:
        held = self._running_by_worker.get(worker_id, {})
        for record in held.values():
            record.lease_expires_at = expires
        return {record.id for record in held.values()}

    def rescue(self, now: datetime) -> int:
        expired = [
            record
            for held in self._running_by_worker.values()
            for record in held.values()
            if record.lease_expires_at is not None and record.lease_expires_at <= now
        ]
        for record in expired:
            record.error = LEASE_EXPIRED
            record.lease_expires_at = None
            record.updated_at = now
            if record.attempts >= record.max_attempts:
                self._set_status(record, JobStatus.FAILED)
                record.finished_at = now
            else:
                self._set_status(record, PENDING)
                record.worker_id = None
                record.next_retry_at = now
                self._make_pending(record, now)
        return len(expired)

    def add_waiter(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.append((loop, future))
        return future

    def remove_waiter(self, future: asyncio.Future[None]) -> None:
        self._waiters = [(loop, f) for loop, f in self._waiters if f is not future]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
