"""``FileJobQueue``: every operation reads the JSON file, changes it, and writes it back,
holding an exclusive lock on ``PATH.lock`` throughout, so operations are atomic even
across processes."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from jobqueue import CreateJobRequest, Job, JobNotFoundError, JobQueue, JobStatus
from jobqueue.backend import Fence, Outcome, check_outcome

T = TypeVar("T")
Row = dict[str, Any]
State = dict[str, Any]

DATETIMES = ("run_at", "next_retry_at", "lease_expires_at", "created_at", "updated_at",
             "started_at", "finished_at")  # fmt: skip
RUNNING, PENDING = JobStatus.RUNNING.value, JobStatus.PENDING.value


def _to_job(row: Row) -> Job:
    values = {k: v for k, v in row.items() if k != "seq"}
    for name in DATETIMES:
        if values[name] is not None:
            values[name] = datetime.fromisoformat(values[name])
    values["id"] = UUID(values["id"])
    values["status"] = JobStatus(values["status"])
    return Job(**values)


def _when(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class _Job:
    """A row with the outcome rules' view of it (status, worker_id, attempts)."""

    def __init__(self, row: Row) -> None:
        self.status = JobStatus(row["status"])
        self.worker_id: str | None = row["worker_id"]
        self.attempts: int = row["attempts"]


class FileJobQueue(JobQueue):
    """A queue in one JSON file, shared by every handle and process that opens the same path."""

    def __init__(self, path: str, *, clock: Any, lease: timedelta) -> None:
        super().__init__(clock=clock, lease=lease)
        self._path = Path(path)
        self._lock_path = Path(f"{path}.lock")

    def __repr__(self) -> str:
        return f"<FileJobQueue example://{self._path}>"

    # ----------------------------------------------------------------- storage

    def _read(self) -> State:
        try:
            state: State = json.loads(self._path.read_text())
        except FileNotFoundError:
            state = {"seq": 0, "jobs": {}}
        return state

    def _write(self, state: State) -> None:
        temporary = self._path.with_name(f"{self._path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self._path)

    def _locked(self, change: Callable[[State], T], write: bool) -> T:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = self._read()
                result = change(state)
                if write:
                    self._write(state)
                return result
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    async def _transact(self, change: Callable[[State], T], *, write: bool = True) -> T:
        return await asyncio.to_thread(self._locked, change, write)

    # ----------------------------------------------------------------- helpers

    @staticmethod
    def _row(state: State, job_id: UUID) -> Row:
        row: Row | None = state["jobs"].get(str(job_id))
        if row is None:
            raise JobNotFoundError(job_id)
        return row

    def _outcome(self, state: State, outcome: Outcome, job_id: UUID, fence: Fence) -> Row:
        row: Row | None = state["jobs"].get(str(job_id))
        check_outcome(outcome, None if row is None else _Job(row), job_id, fence)
        assert row is not None
        return row

    def _release(self, row: Row, now: datetime) -> None:
        row.update(status=PENDING, worker_id=None, attempts=row["attempts"] - 1,
                   lease_expires_at=None, updated_at=_when(now))  # fmt: skip

    @staticmethod
    def _by_creation(state: State) -> list[Row]:
        return sorted(state["jobs"].values(), key=lambda r: (r["created_at"], r["seq"]))

    # -------------------------------------------------------------- primitives

    async def _create_jobs(self, requests: Sequence[CreateJobRequest]) -> list[Job]:
        now = _when(self.now())

        def create(state: State) -> list[Job]:
            made = []
            for request in requests:
                state["seq"] += 1
                row: Row = {
                    "id": str(uuid.uuid4()), "kind": request.kind,
                    "payload": dict(request.payload), "queue": request.queue,
                    "priority": request.priority, "status": PENDING, "attempts": 0,
                    "max_attempts": request.max_attempts, "worker_id": None, "error": None,
                    "stats": None, "run_at": _when(request.run_at), "next_retry_at": None,
                    "lease_expires_at": None, "created_at": now, "updated_at": now,
                    "started_at": None, "finished_at": None, "seq": state["seq"],
                }  # fmt: skip
                state["jobs"][row["id"]] = row
                made.append(_to_job(row))
            return made

        return await self._transact(create)

    async def _claim_jobs(
        self, worker_id: str, limit: int, queues: tuple[str, ...] | None
    ) -> list[Job]:
        now = self.now()

        def due(row: Row) -> bool:
            return (
                row["status"] == PENDING
                and (queues is None or row["queue"] in queues)
                and all(
                    row[name] is None or datetime.fromisoformat(row[name]) <= now
                    for name in ("run_at", "next_retry_at")
                )
            )

        def order(row: Row) -> tuple[int, bool, datetime, int]:
            created = datetime.fromisoformat(row["created_at"])
            return (-row["priority"], row["next_retry_at"] is not None, created, row["seq"])

        def claim(state: State) -> list[Job]:
            chosen = sorted(filter(due, state["jobs"].values()), key=order)[:limit]
            for row in chosen:
                row.update(status=RUNNING, worker_id=worker_id, attempts=row["attempts"] + 1,
                           started_at=_when(now), lease_expires_at=_when(now + self.lease),
                           updated_at=_when(now))  # fmt: skip
            return [_to_job(row) for row in chosen]

        return await self._transact(claim)

    async def _complete_job(self, job_id: UUID, stats: dict[str, Any], fence: Fence) -> None:
        now = _when(self.now())

        def complete(state: State) -> None:
            row = self._outcome(state, Outcome.COMPLETE, job_id, fence)
            row.update(status=JobStatus.COMPLETED.value, stats=stats, finished_at=now,
                       lease_expires_at=None, updated_at=now)  # fmt: skip

        await self._transact(complete)

    async def _fail_job(
        self, job_id: UUID, error: str, next_retry_at: datetime | None, fence: Fence
    ) -> None:
        now = _when(self.now())

        def fail(state: State) -> None:
            row = self._outcome(state, Outcome.FAIL, job_id, fence)
            row.update(error=error, lease_expires_at=None, updated_at=now)
            if next_retry_at is None:
                row.update(status=JobStatus.FAILED.value, finished_at=now)
            else:
                row.update(status=PENDING, worker_id=None, next_retry_at=_when(next_retry_at))

        await self._transact(fail)

    async def _cancel_job(self, job_id: UUID, stats: dict[str, Any] | None, fence: Fence) -> None:
        now = _when(self.now())

        def cancel(state: State) -> None:
            row = self._outcome(state, Outcome.CANCEL, job_id, fence)
            row.update(status=JobStatus.CANCELLED.value, finished_at=now, lease_expires_at=None,
                       updated_at=now)  # fmt: skip
            if stats is not None:
                row["stats"] = stats

        await self._transact(cancel)

    async def _get_job(self, job_id: UUID) -> Job | None:
        def get(state: State) -> Job | None:
            row = state["jobs"].get(str(job_id))
            return None if row is None else _to_job(row)

        return await self._transact(get, write=False)

    async def _list_jobs(self, status: JobStatus | None, limit: int) -> list[Job]:
        def newest(state: State) -> list[Job]:
            rows = [r for r in reversed(self._by_creation(state))
                    if status is None or r["status"] == status.value]  # fmt: skip
            return [_to_job(r) for r in rows[:limit]]

        return await self._transact(newest, write=False)

    async def _release_job(self, job_id: UUID) -> bool:
        now = self.now()

        def release(state: State) -> bool:
            row = self._row(state, job_id)
            if row["status"] != RUNNING:
                return False
            self._release(row, now)
            return True

        return await self._transact(release)

    async def _release_worker_jobs(self, worker_id: str) -> int:
        now = self.now()

        def release(state: State) -> int:
            held = [r for r in state["jobs"].values()
                    if r["status"] == RUNNING and r["worker_id"] == worker_id]  # fmt: skip
            for row in held:
                self._release(row, now)
            return len(held)

        return await self._transact(release)

    async def _counts(self) -> Mapping[JobStatus, int]:
        def count(state: State) -> dict[JobStatus, int]:
            counted = dict.fromkeys(JobStatus, 0)
            for row in state["jobs"].values():
                counted[JobStatus(row["status"])] += 1
            return counted

        return await self._transact(count, write=False)

    async def _heartbeat(self, worker_id: str) -> set[UUID]:
        expires = _when(self.now() + self.lease)

        def beat(state: State) -> set[UUID]:
            held = [r for r in state["jobs"].values()
                    if r["status"] == RUNNING and r["worker_id"] == worker_id]  # fmt: skip
            for row in held:
                row["lease_expires_at"] = expires
            return {UUID(r["id"]) for r in held}

        return await self._transact(beat)

    async def _rescue_expired_jobs(self) -> int:
        now = self.now()

        def rescue(state: State) -> int:
            expired = [
                r for r in state["jobs"].values()
                if r["status"] == RUNNING and r["lease_expires_at"] is not None
                and datetime.fromisoformat(r["lease_expires_at"]) <= now
            ]  # fmt: skip
            for row in expired:
                row.update(error="lease expired", lease_expires_at=None, updated_at=_when(now))
                if row["attempts"] >= row["max_attempts"]:
                    row.update(status=JobStatus.FAILED.value, finished_at=_when(now))
                else:
                    row.update(status=PENDING, worker_id=None, next_retry_at=_when(now))
            return len(expired)

        return await self._transact(rescue)

    async def _retry_job(self, job_id: UUID) -> Job:
        now = _when(self.now())

        def retry(state: State) -> Job:
            row = self._outcome(state, Outcome.RETRY, job_id, Fence())
            row.update(status=PENDING, attempts=0, worker_id=None, next_retry_at=None,
                       finished_at=None, stats=None, lease_expires_at=None,
                       updated_at=now)  # fmt: skip
            return _to_job(row)

        return await self._transact(retry)

    async def _purge_jobs(self, finished_before: datetime, statuses: frozenset[JobStatus]) -> int:
        wanted = {s.value for s in statuses}

        def purge(state: State) -> int:
            doomed = [
                key for key, r in state["jobs"].items()
                if r["status"] in wanted and r["finished_at"] is not None
                and datetime.fromisoformat(r["finished_at"]) < finished_before
            ]  # fmt: skip
            for key in doomed:
                del state["jobs"][key]
            return len(doomed)

        return await self._transact(purge)

    async def _close(self) -> None:
        pass
