"""``PostgresJobQueue``: the contract on PostgreSQL through a psycopg connection pool.

Every operation is one statement on an autocommit connection, so it is applied
whole or not at all, also when the connection drops mid-call. Refused
outcome writes are compare-and-sets that matched nothing; the job is then read
and the refusal explained.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import select
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Self, TypeVar
from uuid import UUID

import psycopg
import psycopg.errors
from psycopg import AsyncConnection
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from jobqueue import (
    BackendUnavailableError,
    Completion,
    CreateJobRequest,
    InvalidRequestError,
    Job,
    JobNotFoundError,
    JobQueue,
    JobStatus,
    Refusal,
)
from jobqueue.backend import (
    NO_FENCE,
    STATUS_BY_VALUE,
    Fence,
    Outcome,
    completion_refusals,
    explain_refusal,
    new_job,
    set_created_at,
)

from . import _schema
from ._coalesce import Coalescer, CompletionRow
from ._gate import ClaimGate
from ._ids import IdArray, IdArrayDumper, new_id, new_id_array
from ._notify import Listener
from ._options import Settings
from ._sql import Statements, statements
from ._wakeups import Notifier

__all__ = ["PostgresJobQueue"]

T = TypeVar("T")
W = TypeVar("W", bool, set[int])
Row = tuple[Any, ...]

_CHANNEL_BYTES = 63
CLAIM_BUDGET = 200
"""Rows the claims running at once on one handle may ask for together (see ``_gate``)."""
# Errors that mean the database (or our schema in it) cannot serve the call.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.UndefinedTable,
    psycopg.errors.InvalidSchemaName,
    PoolTimeout,
    PoolClosed,
)


def channel_for(schema: str) -> str:
    """The ``NOTIFY`` channel of a schema's queue (fits PostgreSQL's 63-byte names)."""
    channel = f"jobqueue.{schema}"
    if len(channel.encode()) <= _CHANNEL_BYTES:
        return channel
    return f"jobqueue.{hashlib.sha256(schema.encode()).hexdigest()[:40]}"


class PostgresJobQueue(JobQueue):
    """A queue in one schema of a PostgreSQL database, shared by every process that opens it.

    Safe for any number of concurrent tasks on one handle (each operation
    takes its own pooled connection) and any number of handles in any number
    of processes and hosts.
    """

    def __init__(
        self, settings: Settings, pool: AsyncConnectionPool[Any], *, clock: Any, lease: timedelta
    ) -> None:
        super().__init__(clock=clock, lease=lease)
        self._settings = settings
        self._pool = pool
        self._sql: Statements = statements(settings.schema, clock=clock is not None)
        self._channel = channel_for(settings.schema)
        self._listener: Listener | None = None
        self._seen = 0
        # One write at a time: completions arriving meanwhile share the next commit. A
        # pool's worth of writes at once drained 5,700 jobs/s against 12,300 with one
        # (Worker drain, 4 workers x 100 slots, 10,000 jobs).
        self._completions = Coalescer(self._complete_one, self._complete_many, limit=1)
        self._notifying_now = 0
        self._claims = ClaimGate(CLAIM_BUDGET)
        self._notifier = Notifier(self._wake, name=repr(self))

    @classmethod
    async def open(cls, settings: Settings, *, clock: Any, lease: timedelta, migrate: bool) -> Self:
        """Check or migrate the schema on a direct connection, then open the pool."""
        _check_conninfo(settings)
        queue_name = f"jobqueue {settings.display_url} schema={settings.schema}"
        try:
            conn = await asyncio.wait_for(
                AsyncConnection.connect(settings.conninfo, autocommit=True),
                settings.connect_timeout,
            )
        except TimeoutError:
            raise BackendUnavailableError(
                f"cannot reach PostgreSQL at {settings.display_url}: "
                f"no answer within {settings.connect_timeout:g} s"
            ) from None
        except psycopg.Error as exc:
            raise _unavailable(settings, exc, "cannot open") from None
        watchdog = asyncio.get_running_loop().call_later(settings.timeout, _shut_down, conn)
        try:
            async with conn:
                if migrate:
                    await _schema.migrate(conn, settings.schema, settings.display_url)
                else:
                    await _schema.require_current(conn, settings.schema, settings.display_url)
        except psycopg.Error as exc:
            raise _unavailable(settings, exc, "cannot open") from None
        finally:
            watchdog.cancel()
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            settings.conninfo,
            kwargs={
                "autocommit": True,
                "prepare_threshold": 5 if settings.prepared_statements else None,
            },
            configure=_configure,
            min_size=settings.min_size,
            max_size=settings.max_size,
            timeout=settings.timeout,
            name=queue_name,
            open=False,
        )
        try:
            # Waiting leaves no connection attempt running in the background, which
            # would keep a program that never closes the queue from exiting.
            await pool.open(wait=True, timeout=settings.connect_timeout + settings.timeout)
        except PoolTimeout as exc:
            await pool.close()
            raise _unavailable(settings, exc, "cannot open") from None
        return cls(settings, pool, clock=clock, lease=lease)

    def __repr__(self) -> str:
        return f"<PostgresJobQueue {self._settings.display_url} schema={self._settings.schema}>"

    @property
    def schema(self) -> str:
        """The PostgreSQL schema holding this queue's tables."""
        return self._settings.schema

    @property
    def pool_size(self) -> int:
        """The most connections this handle opens for operations (``max_size``)."""
        return self._settings.max_size

    # ------------------------------------------------------------ plumbing

    def _now_param(self) -> datetime | None:
        return None if self.clock is None else self.now()

    async def _run(
        self,
        operation: Callable[[AsyncConnection[Any]], Awaitable[T]],
        deadline: float | None = None,
    ) -> T:
        """Run ``operation`` on a healthy pooled connection within the ``timeout`` option
        (by ``deadline``, in the loop's time, when the call already waited for something).

        Past the deadline the connection's socket is shut down, which makes
        psycopg fail at once (cancelling the task instead would wait for the
        server to acknowledge a cancel request, which a hung server never does);
        the broken connection is then dropped by the pool.
        """
        settings = self._settings
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + settings.timeout
        try:
            conn = await self._acquire(max(0.0, deadline - loop.time()))
            watchdog = loop.call_at(deadline, _shut_down, conn)
            try:
                return await operation(conn)
            finally:
                watchdog.cancel()
                await self._pool.putconn(conn)
        except _UNAVAILABLE as exc:
            if loop.time() >= deadline:
                raise self._timed_out() from None
            raise _unavailable(settings, exc, "lost") from None
        except psycopg.DataError as exc:
            raise InvalidRequestError(
                f"PostgreSQL rejected a value: {settings.scrub(str(exc))}"
            ) from None

    def _timed_out(self) -> BackendUnavailableError:
        settings = self._settings
        return BackendUnavailableError(
            f"PostgreSQL at {settings.display_url} did not answer within "
            f"{settings.timeout:g} s (the timeout option)"
        )

    async def _acquire(self, timeout: float) -> AsyncConnection[Any]:
        """A pooled connection, skipping (and replacing) ones the server has closed.

        An idle connection has nothing to read; if its socket is readable the
        server sent an error and hung up (terminated backend, restart), so the
        connection is dropped before a statement is wasted on it.
        """
        while True:
            conn: AsyncConnection[Any] = await self._pool.getconn(timeout)
            if not _closed_by_server(conn):
                return conn
            await conn.close()
            await self._pool.putconn(conn)

    async def _fetchall(
        self, query: bytes, params: Mapping[str, Any], deadline: float | None = None
    ) -> list[Row]:
        async def run(conn: AsyncConnection[Any]) -> list[Row]:
            cur = await conn.execute(query, params)
            return await cur.fetchall()

        return await self._run(run, deadline)

    async def _fetchone(self, query: bytes, params: Mapping[str, Any]) -> Row:
        rows = await self._fetchall(query, params)
        return rows[0]

    async def _rowcount(self, query: bytes, params: Mapping[str, Any]) -> int:
        async def run(conn: AsyncConnection[Any]) -> int:
            cur = await conn.execute(query, params)
            return cur.rowcount

        return await self._run(run)

    # ------------------------------------------------------------ primitives

    async def _notifying(self, statement: Callable[[bool], Awaitable[T]]) -> T:
        """Run ``statement(quiet)``, a statement that may make jobs claimable: alone on
        this handle it notifies itself (``quiet`` False); overlapping another such
        statement it does not, and the notifier sends one for it afterwards."""
        quiet = self._notifying_now > 0
        self._notifying_now += 1
        try:
            result = await statement(quiet)
        finally:
            self._notifying_now -= 1
        if quiet:
            self._notifier.wake()
        return result

    async def _create_jobs(self, requests: Sequence[CreateJobRequest]) -> list[Job]:
        payloads = _encode_payloads(requests)
        if len(requests) == 1:
            return await self._notifying(partial(self._insert_one, requests[0], payloads[0]))
        return await self._notifying(partial(self._insert_many, requests, payloads))

    async def _insert_one(self, request: CreateJobRequest, payload: str, quiet: bool) -> list[Job]:
        job_id = new_id()
        params: dict[str, Any] = {
            "now": self._now_param(),
            "channel": self._channel,
            "id": job_id,
            "kind": request.kind,
            "payload": payload,
            "queue": request.queue,
            "priority": request.priority,
            "max_attempts": request.max_attempts,
            "run_at": request.run_at,
        }
        query = self._sql.create_one_quiet if quiet else self._sql.create_one
        row = await self._fetchone(query, params)
        return _new_jobs([job_id], [request], [payload], _utc(row[0]))

    async def _insert_many(
        self, requests: Sequence[CreateJobRequest], payloads: list[str], quiet: bool
    ) -> list[Job]:
        ids = new_id_array(len(requests))
        params: dict[str, Any] = {"now": self._now_param(), "channel": self._channel, "ids": ids}
        params["kind"], params["kind_each"] = _shared_or_each([r.kind for r in requests])
        params["payload"], params["payload_each"] = _shared_or_each(payloads)
        params["queue"], params["queue_each"] = _shared_or_each([r.queue for r in requests])
        params["priority"], params["priority_each"] = _shared_or_each(
            [r.priority for r in requests]
        )
        params["max_attempts"], params["max_attempts_each"] = _shared_or_each(
            [r.max_attempts for r in requests]
        )
        params["run_at"], params["run_at_each"] = _shared_or_each([r.run_at for r in requests])
        query = self._sql.create_many_quiet if quiet else self._sql.create_many
        write = asyncio.ensure_future(self._fetchone(query, params))
        try:
            # One turn of the loop lets the write send its statement, so the
            # jobs are built while the server inserts them.
            await asyncio.sleep(0)
            jobs = _new_jobs(ids.uuids(), requests, payloads, _UNKNOWN_YET)
        except BaseException:
            write.cancel()
            raise
        set_created_at(jobs, _utc((await write)[0]))
        return jobs

    async def _wake(self) -> None:
        await self._fetchall(self._sql.wake, {"channel": self._channel})

    async def _claim_jobs(
        self, worker_id: str, limit: int, queues: tuple[str, ...] | None
    ) -> list[Job]:
        if self._listener is not None:
            self._seen = self._listener.count
        params: dict[str, Any] = {
            "now": self._now_param(),
            "worker": worker_id,
            "limit": limit,
            "lease": self.lease,
        }
        one = limit == 1
        if queues is None:
            query = self._sql.claim_one if one else self._sql.claim
        else:
            query = self._sql.claim_one_queues if one else self._sql.claim_queues
            params["queues"] = list(queues)
        # Waiting for its turn counts toward the call's timeout.
        deadline = asyncio.get_running_loop().time() + self._settings.timeout
        try:
            async with self._claims.admit(limit, deadline):
                rows = await self._fetchall(query, params, deadline)
        except TimeoutError:
            raise self._timed_out() from None
        if len(rows) > 1:
            rows.sort(key=_claim_order)
        return _jobs(rows)

    async def _complete_job(self, job_id: UUID, stats: dict[str, Any], fence: Fence) -> None:
        if not await self._written(self._completions.complete(job_id, _stats_text(stats), fence)):
            await self._refuse(Outcome.COMPLETE, job_id, fence)

    async def _written(self, pending: asyncio.Future[W]) -> W:
        """The result of completions handed to the group commit, within the timeout option
        from now: waiting for the write before them counts."""
        try:
            async with asyncio.timeout(self._settings.timeout):
                return await pending
        except TimeoutError:
            raise self._timed_out() from None

    async def _complete_one(self, job_id: UUID, stats: str, fence: Fence) -> bool:
        params = _fence_params(Outcome.COMPLETE, job_id, fence, self._now_param())
        params["stats"] = stats
        return bool(await self._rowcount(self._sql.complete, params))

    async def _complete_many(self, rows: Sequence[CompletionRow]) -> set[int]:
        """Complete ``rows`` in one statement; the positions in ``rows`` of the
        completions whose compare-and-set matched."""
        params: dict[str, Any] = {"now": self._now_param(), "ids": [r[0] for r in rows]}
        params["stats"], params["stats_each"] = _shared_or_each([r[1] for r in rows])
        params["worker"], params["worker_each"] = _shared_or_each([r[2].worker_id for r in rows])
        params["attempt"], params["attempt_each"] = _shared_or_each([r[2].attempt for r in rows])
        return {row[0] - 1 for row in await self._fetchall(self._sql.complete_many, params)}

    async def _complete_jobs(self, completions: Sequence[Completion]) -> list[Refusal | None]:
        rows = [
            (c.job_id, _stats_text(c.stats), Fence(c.worker_id, c.attempt)) for c in completions
        ]
        matched = await self._written(self._completions.complete_all(rows))
        applied = [position in matched for position in range(len(rows))]
        return await completion_refusals(completions, applied, self._get_job)

    async def _fail_job(
        self, job_id: UUID, error: str, next_retry_at: datetime | None, fence: Fence
    ) -> None:
        params = _fence_params(Outcome.FAIL, job_id, fence, self._now_param())
        params["error"] = _storable_text(error)
        if next_retry_at is None:
            changed = await self._rowcount(self._sql.fail_final, params)
        else:
            params["retry_at"] = next_retry_at
            params["channel"] = self._channel
            changed = await self._notifying(partial(self._retry_later, params))
        if not changed:
            await self._refuse(Outcome.FAIL, job_id, fence)

    async def _retry_later(self, params: dict[str, Any], quiet: bool) -> int:
        query = self._sql.fail_retry_quiet if quiet else self._sql.fail_retry
        changed: int = (await self._fetchone(query, params))[0]
        return changed

    async def _cancel_job(self, job_id: UUID, stats: dict[str, Any] | None, fence: Fence) -> None:
        params = _fence_params(Outcome.CANCEL, job_id, fence, self._now_param())
        params["stats"] = None if stats is None else json.dumps(stats)
        if not await self._rowcount(self._sql.cancel, params):
            await self._refuse(Outcome.CANCEL, job_id, fence)

    async def _refuse(self, outcome: Outcome, job_id: UUID, fence: Fence) -> None:
        raise explain_refusal(outcome, await self._get_job(job_id), job_id, fence)

    async def _get_job(self, job_id: UUID) -> Job | None:
        rows = await self._fetchall(self._sql.get, {"id": job_id})
        return _jobs(rows)[0] if rows else None

    async def _list_jobs(self, status: JobStatus | None, limit: int) -> list[Job]:
        if status is None:
            rows = await self._fetchall(self._sql.list_all, {"limit": limit})
        else:
            rows = await self._fetchall(
                self._sql.list_status, {"status": status.value, "limit": limit}
            )
        return _jobs(rows)

    async def _release_job(self, job_id: UUID) -> bool:
        params = {"id": job_id, "now": self._now_param(), "channel": self._channel}
        released, exists, _ = await self._fetchone(self._sql.release, params)
        if not exists:
            raise JobNotFoundError(job_id)
        return bool(released)

    async def _release_worker_jobs(self, worker_id: str) -> int:
        params = {"worker": worker_id, "now": self._now_param(), "channel": self._channel}
        released: int = (await self._fetchone(self._sql.release_worker, params))[0]
        return released

    async def _counts(self) -> Mapping[JobStatus, int]:
        rows = await self._fetchall(self._sql.counts, {})
        return {STATUS_BY_VALUE[status]: count for status, count in rows}

    async def _count_by_status(self, status: JobStatus) -> int:
        count: int = (await self._fetchone(self._sql.count_status, {"status": status.value}))[0]
        return count

    async def _heartbeat(self, worker_id: str) -> set[UUID]:
        params = {"worker": worker_id, "now": self._now_param(), "lease": self.lease}
        return {row[0] for row in await self._fetchall(self._sql.heartbeat, params)}

    async def _rescue_expired_jobs(self) -> int:
        params = {"now": self._now_param(), "channel": self._channel}
        rescued: int = (await self._fetchone(self._sql.rescue, params))[0]
        return rescued

    async def _retry_job(self, job_id: UUID) -> Job:
        params = {"id": job_id, "now": self._now_param(), "channel": self._channel}
        rows = await self._fetchall(self._sql.retry, params)
        if rows:
            return _jobs(rows)[0]
        raise explain_refusal(Outcome.RETRY, await self._get_job(job_id), job_id, NO_FENCE)

    async def _purge_jobs(self, finished_before: datetime, statuses: frozenset[JobStatus]) -> int:
        params = {"statuses": sorted(s.value for s in statuses), "before": finished_before}
        return await self._rowcount(self._sql.purge, params)

    async def _wait_for_jobs(self, timeout: float) -> None:
        if not self._settings.notify:
            await asyncio.sleep(timeout)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._listener is None:
            self._listener = Listener(
                self._settings.conninfo,
                self._channel,
                self._settings.connect_timeout,
                name=repr(self),
                scrub=self._settings.scrub,
            )
            self._seen = self._listener.count
        listener = self._listener
        if not listener.listening:
            await listener.start(timeout)
            self._seen = listener.count
        await listener.wait(max(0.0, deadline - loop.time()), self._seen)
        self._seen = listener.count

    async def _close(self) -> None:
        await self._completions.close()
        await self._notifier.close()
        if self._listener is not None:
            await self._listener.close()
        await self._pool.close(timeout=1.0)


async def _configure(conn: AsyncConnection[Any]) -> None:
    # Timestamps then arrive already in UTC and need no conversion per row.
    await conn.execute("SET TIME ZONE 'UTC'")
    # Every statement here is written for index scans. Without statistics (a new
    # table) or with stale ones (a burst of jobs), the planner would claim through
    # a bitmap scan that reads and sorts every pending job, instead of walking
    # the claim index: milliseconds per claim, growing with the backlog.
    await conn.execute("SET enable_bitmapscan = off")
    set_json_loads(_json_loads, conn)
    conn.adapters.register_dumper(IdArray, IdArrayDumper)


_decode_json = json.JSONDecoder().decode


def _json_loads(data: str | bytes) -> Any:
    """``json.loads`` for the UTF-8 text PostgreSQL sends, with the common empty object
    answered at once: about twice as fast per row as guessing the encoding of bytes."""
    if data == b"{}":
        return {}
    return _decode_json(data if isinstance(data, str) else data.decode())


def _check_conninfo(settings: Settings) -> None:
    """Let libpq reject an unknown or malformed URL query parameter before connecting."""
    try:
        psycopg.conninfo.conninfo_to_dict(settings.conninfo)
    except psycopg.ProgrammingError as exc:
        raise InvalidRequestError(
            f"invalid PostgreSQL URL {settings.display_url}: {settings.scrub(str(exc))}"
        ) from None


def _unavailable(settings: Settings, exc: BaseException, what: str) -> BackendUnavailableError:
    detail = settings.scrub(str(exc).strip()) or type(exc).__name__
    if isinstance(exc, PoolTimeout):
        detail = f"no connection available within {settings.timeout:g} s ({detail})"
    return BackendUnavailableError(
        f"PostgreSQL at {settings.display_url} ({what}): {type(exc).__name__}: {detail}"
    )


def _shut_down(conn: AsyncConnection[Any]) -> None:
    """Cut a connection's socket (both ways) so that whatever waits on it fails now."""
    try:
        sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
    except (OSError, psycopg.Error):
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


def _closed_by_server(conn: AsyncConnection[Any]) -> bool:
    if conn.closed or conn.broken:
        return True
    try:
        return _readable(conn.fileno())
    except (OSError, ValueError):
        return True


def _readable(fd: int) -> bool:
    """Whether ``fd`` has input (or EOF) waiting, without blocking."""
    if hasattr(select, "poll"):  # no limit on descriptor numbers, unlike select()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)


def _fence_params(
    outcome: Outcome, job_id: UUID, fence: Fence, now: datetime | None
) -> dict[str, Any]:
    return {
        "id": job_id,
        "now": now,
        "allowed": sorted(s.value for s in fence.allowed_statuses(outcome)),
        "worker": fence.worker_id,
        "attempt": fence.attempt,
    }


def _encode_payloads(requests: Sequence[CreateJobRequest]) -> list[str]:
    """Each request's payload as JSON; a payload object shared by several requests (as
    in ``[request] * n``) is encoded once."""
    encoded: dict[int, str] = {}
    texts = []
    for request in requests:
        if not request.payload:
            texts.append("{}")
            continue
        text = encoded.get(id(request.payload))
        if text is None:
            text = encoded[id(request.payload)] = json.dumps(request.payload)
        texts.append(text)
    return texts


def _decode_payload(text: str) -> dict[str, Any]:
    """A new object holding the payload ``text`` encodes (the common empty one built
    directly)."""
    if text == "{}":
        return {}
    payload: dict[str, Any] = json.loads(text)
    return payload


_UNKNOWN_YET = datetime(1970, 1, 1, tzinfo=UTC)


def _new_jobs(
    ids: list[UUID], requests: Sequence[CreateJobRequest], payloads: list[str], at: datetime
) -> list[Job]:
    return [
        new_job(job_id, request, at, _decode_payload(payload))
        for job_id, request, payload in zip(ids, requests, payloads, strict=True)
    ]


def _stats_text(stats: Mapping[str, Any]) -> str:
    """Stats as the JSON text a completion stores (the common empty object without encoding)."""
    return json.dumps(stats) if stats else "{}"


def _shared_or_each(values: list[T]) -> tuple[T | None, list[T]]:
    """``(value, [])`` when every element of ``values`` equals the first, else
    ``(None, values)``: the two forms a column of ``create_many`` and
    ``complete_many`` takes."""
    first = values[0]
    if values.count(first) == len(values):
        return first, []
    return None, values


def _storable_text(text: str) -> str:
    """PostgreSQL text cannot hold NUL; error texts are informational, so NUL becomes U+FFFD."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _claim_order(row: Row) -> tuple[int, bool, datetime, int]:
    # Columns: priority 4, next_retry_at 12, created_at 14, seq 18.
    return (-row[4], row[12] is not None, row[14], row[18])


def _jobs(rows: list[Row]) -> list[Job]:
    """The jobs of the rows of one result (columns in ``Job``'s field order).

    A result's datetimes all come in its session's time zone: UTC, as the pool
    sets it, unless something in between (a connection pooler) changed it; only
    then are they converted, so the common case checks one value, not six per row.
    """
    if rows and rows[0][14].tzinfo is not UTC:
        rows = [_in_utc(row) for row in rows]
    # Positional arguments bind faster than keywords.
    return [
        Job(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            STATUS_BY_VALUE[row[5]],
            row[6],
            row[7],
            row[8],
            row[9],
            row[10],
            row[11],
            row[12],
            row[13],
            row[14],
            row[15],
            row[16],
            row[17],
        )
        for row in rows
    ]


def _in_utc(row: Row) -> Row:
    """``row`` with its datetimes (columns 11 to 17) converted to UTC."""
    return (*row[:11], *(None if v is None else v.astimezone(UTC) for v in row[11:18]))
