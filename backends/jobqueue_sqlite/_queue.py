"""``SQLiteJobQueue``: the contract on one SQLite file, shared by any number of processes."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from jobqueue import (
    Completion,
    CreateJobRequest,
    Job,
    JobNotFoundError,
    JobQueue,
    JobStatus,
    Refusal,
)
from jobqueue.backend import (
    NO_FENCE,
    Fence,
    Outcome,
    completion_refusals,
    explain_refusal,
    new_job,
    redact_url,
)

from . import _sql as sql
from ._db import Database
from ._outcomes import CANCEL, COMPLETE, FAIL, RETRY, Change, OutcomeWriter
from ._url import SQLiteConfig

__all__ = ["SQLiteJobQueue"]

WATCH_INTERVAL = 0.1
"""Seconds between two looks for other connections' commits while waiting for jobs."""

PROMOTE_INTERVAL = 1.0
"""Seconds between two markings of fallen-due jobs, when claims give no reason sooner."""


class SQLiteJobQueue(JobQueue):
    """A queue stored in a SQLite file (WAL mode) through one aiosqlite connection.

    Every operation is one transaction, nearly always a single SQL statement:
    atomic, and isolated from every other connection to the file, in this
    process or another (``purge_jobs`` deletes in chunks, one transaction each).
    Any number of asyncio tasks may share one queue; outcome calls made at the
    same time are written together, each with its own compare-and-set.
    """

    def __init__(
        self,
        db: Database,
        config: SQLiteConfig,
        *,
        clock: Callable[[], datetime] | None,
        lease: timedelta,
    ) -> None:
        super().__init__(clock=clock, lease=lease)
        self._db = db
        self._config = config
        self._waiters: set[asyncio.Future[None]] = set()
        self._outcomes = OutcomeWriter(db)
        self._promoted_at = -PROMOTE_INTERVAL
        self._lease_micros = self.lease // sql.MICROSECOND

    def __repr__(self) -> str:
        return f"<SQLiteJobQueue {redact_url(self._config.url)}>"

    @property
    def path(self) -> str:
        """The absolute path of the database file."""
        return self._config.path

    def _now(self) -> int:
        if self.clock is None:
            # The system clock datetime.now() reads, without building a datetime.
            return time.time_ns() // 1000
        return sql.to_micros(self.now())

    def _wake(self) -> None:
        """Wake this handle's idle waiters: a job may have become claimable."""
        for future in self._waiters:
            if not future.done():
                future.set_result(None)

    async def _create_jobs(self, requests: Sequence[CreateJobRequest]) -> list[Job]:
        now = self.now()
        micros = sql.to_micros(now)
        ids = [uuid.uuid4() for _ in requests]
        payloads = [sql.dump_json(dict(r.payload)) for r in requests]
        rows = [
            {
                "id": str(job_id),
                "kind": r.kind,
                "payload": payload,
                "queue": r.queue,
                "priority": r.priority,
                "max_attempts": r.max_attempts,
                "run_at": sql.optional_micros(r.run_at),
                "now": micros,
            }
            for job_id, r, payload in zip(ids, requests, payloads, strict=True)
        ]
        if len(rows) == 1:
            await self._db.fetch(sql.CREATE_ONE, rows[0])
        elif any("\x00" in r.kind or "\x00" in r.queue for r in requests):
            async with self._db.transaction() as run:
                for row in rows:
                    await run(sql.CREATE_ONE, row)
        else:
            batch = sql.dump_json(
                [
                    [r["id"], r["kind"], r["payload"], r["queue"], r["priority"],
                     r["max_attempts"], r["run_at"]]
                    for r in rows
                ]
            )  # fmt: skip
            await self._db.for_rows(len(rows))(sql.CREATE, {"now": micros, "batch": batch})
        self._wake()
        # The jobs are exactly what was written; no need to read them back.
        return [
            new_job(job_id, r, now, json.loads(payload))
            for job_id, r, payload in zip(ids, requests, payloads, strict=True)
        ]

    async def _claim_jobs(
        self, worker_id: str, limit: int, queues: tuple[str, ...] | None
    ) -> list[Job]:
        now = self._now()
        params: dict[str, Any] = {
            "worker": worker_id,
            "now": now,
            "expires": now + self._lease_micros,
            "limit": limit,
        }
        names = () if queues is None else tuple(dict.fromkeys(queues))
        for i, name in enumerate(names):
            params[f"q{i}"] = name
        if time.monotonic() - self._promoted_at >= PROMOTE_INTERVAL:
            await self._promote(params["now"])
        rows = await self._db.for_rows(limit)(sql.claim(len(names), limit == 1), params)
        if any(not row[sql.SEQ + 1] for row in rows):
            self._promoted_at = -PROMOTE_INTERVAL
        if len(rows) > 1:
            rows.sort(key=sql.claim_order)
        return [sql.job_from_row(row) for row in rows]

    async def _promote(self, now: int) -> None:
        """Mark due the pending jobs whose time has come, so claims find them by index.

        Claims are right without it; it keeps them from sorting many such jobs.
        """
        await self._db.fetch_in_thread(sql.PROMOTE, {"now": now})
        self._promoted_at = time.monotonic()

    async def _outcome(self, outcome: Outcome, change: Change) -> None:
        if not await self._outcomes.apply(change):
            job = await self._get_job(UUID(change.job_id))
            raise explain_refusal(outcome, job, UUID(change.job_id), change.fence)

    async def _complete_job(self, job_id: UUID, stats: dict[str, Any], fence: Fence) -> None:
        await self._outcome(Outcome.COMPLETE, _completion(job_id, stats, fence, self._now()))

    async def _complete_jobs(self, completions: Sequence[Completion]) -> list[Refusal | None]:
        now = self._now()
        changes = [
            _completion(c.job_id, c.stats, Fence(c.worker_id, c.attempt), now) for c in completions
        ]
        applied = await self._outcomes.apply_all(changes)
        return await completion_refusals(completions, applied, self._get_job)

    async def _fail_job(
        self, job_id: UUID, error: str, next_retry_at: datetime | None, fence: Fence
    ) -> None:
        if next_retry_at is None:
            change = Change(FAIL, str(job_id), self._now(), fence, error=error)
        else:
            retry_at = sql.to_micros(next_retry_at)
            change = Change(RETRY, str(job_id), self._now(), fence, error=error, retry_at=retry_at)
        await self._outcome(Outcome.FAIL, change)
        if next_retry_at is not None:
            self._wake()

    async def _cancel_job(self, job_id: UUID, stats: dict[str, Any] | None, fence: Fence) -> None:
        text = None if stats is None else sql.dump_json(stats)
        await self._outcome(Outcome.CANCEL, Change(CANCEL, str(job_id), self._now(), fence, text))

    async def _get_job(self, job_id: UUID) -> Job | None:
        rows = await self._db.fetch(sql.GET, {"id": str(job_id)})
        return sql.job_from_row(rows[0]) if rows else None

    async def _list_jobs(self, status: JobStatus | None, limit: int) -> list[Job]:
        if status is None:
            rows = await self._db.for_rows(limit)(sql.LIST_ALL, {"limit": limit})
        else:
            params = {"status": status.value, "limit": limit}
            rows = await self._db.fetch_in_thread(sql.LIST_STATUS, params)
        return [sql.job_from_row(row) for row in rows]

    async def _release_job(self, job_id: UUID) -> bool:
        if await self._db.fetch(sql.RELEASE, {"id": str(job_id), "now": self._now()}):
            self._wake()
            return True
        if not await self._db.fetch(sql.EXISTS, {"id": str(job_id)}):
            raise JobNotFoundError(job_id)
        return False

    async def _release_worker_jobs(self, worker_id: str) -> int:
        params = {"worker": worker_id, "now": self._now()}
        rows = await self._db.fetch_in_thread(sql.RELEASE_WORKER, params)
        if rows:
            self._wake()
        return len(rows)

    async def _counts(self) -> Mapping[JobStatus, int]:
        rows = await self._db.fetch_in_thread(sql.COUNTS)
        return {JobStatus(status): count for status, count in rows}

    async def _count_by_status(self, status: JobStatus) -> int:
        rows = await self._db.fetch_in_thread(sql.COUNT, {"status": status.value})
        return int(rows[0][0])

    async def _heartbeat(self, worker_id: str) -> set[UUID]:
        expires = self._now() + self._lease_micros
        params = {"worker": worker_id, "expires": expires}
        rows = await self._db.fetch_in_thread(sql.HEARTBEAT, params)
        return {UUID(row[0]) for row in rows}

    async def _rescue_expired_jobs(self) -> int:
        rows = await self._db.fetch_in_thread(sql.RESCUE, {"now": self._now()})
        if any(row[0] == JobStatus.PENDING for row in rows):
            self._wake()
        return len(rows)

    async def _retry_job(self, job_id: UUID) -> Job:
        rows = await self._db.fetch(sql.RETRY, {"id": str(job_id), "now": self._now()})
        if not rows:
            job = await self._get_job(job_id)
            raise explain_refusal(Outcome.RETRY, job, job_id, NO_FENCE)
        self._wake()
        return sql.job_from_row(rows[0])

    async def _purge_jobs(self, finished_before: datetime, statuses: frozenset[JobStatus]) -> int:
        statement = sql.purge(statuses)
        cutoff = {"cutoff": sql.to_micros(finished_before)}
        total = 0
        while True:
            deleted = len(await self._db.fetch_in_thread(statement, cutoff))
            total += deleted
            if deleted < sql.PURGE_CHUNK:
                return total

    async def _wait_for_jobs(self, timeout: float) -> None:
        """Return when this handle made a job claimable, another connection committed
        a change to the file (checked every :data:`WATCH_INTERVAL` s), or after ``timeout``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        woken: asyncio.Future[None] = loop.create_future()
        self._waiters.add(woken)
        try:
            version = await self._data_version()
            while (remaining := deadline - loop.time()) > 0:
                done, _ = await asyncio.wait({woken}, timeout=min(WATCH_INTERVAL, remaining))
                if done or await self._data_version() != version:
                    return
        finally:
            self._waiters.discard(woken)

    async def _data_version(self) -> int:
        """A number that changes whenever another connection commits to the file."""
        return int((await self._db.fetch("PRAGMA data_version"))[0][0])

    async def _close(self) -> None:
        self._wake()
        await self._outcomes.wait_idle()
        await self._db.close()


def _completion(job_id: UUID, stats: Mapping[str, Any], fence: Fence, now: int) -> Change:
    """The change that completes ``job_id`` (the common empty stats without encoding)."""
    text = sql.dump_json(stats) if stats else "{}"
    return Change(COMPLETE, str(job_id), now, fence, stats=text)
