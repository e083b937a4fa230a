"""What the PostgreSQL backend does beyond the common contract: URLs and options, migrations,
secrets, wake-ups, outages and the claim index."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import psycopg
import pytest

import jobqueue
import jobqueue_postgres._queue
import jobqueue_postgres._schema
import jobqueue_postgres._sql
from jobqueue import (
    BackendUnavailableError,
    CreateJobRequest,
    InvalidRequestError,
    JobStatus,
    installed_backends,
)
from jobqueue.testing import FakeClock
from jobqueue_postgres import PostgresJobQueue
from jobqueue_postgres._options import parse_options
from jobqueue_postgres._schema import LATEST_VERSION

SECRET = "s3cret-Pw"


def with_password(url: str, password: str = SECRET) -> str:
    """``url`` with ``password`` set (the test server trusts every password)."""
    parts = urlsplit(url)
    netloc = f"{parts.username or 'postgres'}:{password}@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def with_host(url: str, host: str, port: int) -> str:
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}{host}:{port}"))


def with_query(url: str, query: str) -> str:
    return url + ("&" if "?" in url else "?") + query


# ------------------------------------------------------------------ URLs and options


def test_the_three_schemes_are_registered_with_their_capabilities() -> None:
    """postgresql://, postgres:// and postgresql+psycopg:// all open this backend, which claims
    concurrent processes, persistence and listen/notify."""
    backends = {info.scheme: info for info in installed_backends()}
    for scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        assert backends[scheme].capabilities == {
            "concurrent_processes",
            "persistent",
            "listen_notify",
        }


def test_importing_the_plugin_does_not_import_psycopg() -> None:
    """The plugin module is importable without loading psycopg (it is an optional extra)."""
    code = "import sys, jobqueue_postgres; assert 'psycopg' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_psycopg_connecting_says_what_to_install() -> None:
    """With psycopg missing, connecting raises BackendUnavailableError naming the extra."""
    code = """
import asyncio, sys
sys.modules["psycopg"] = None
import jobqueue

async def main():
    await jobqueue.connect("postgresql://u@127.0.0.1:1/x")

try:
    asyncio.run(main())
except jobqueue.BackendUnavailableError as exc:
    assert "jobqueue[postgres]" in str(exc), exc
else:
    raise SystemExit("no error")
"""
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_every_scheme_reaches_the_same_queue(postgres_url: str, postgres_schema: str) -> None:
    """A job created through one URL form is visible through the other two."""
    rest = postgres_url.split("://", 1)[1]
    async with jobqueue.connect(f"postgresql://{rest}", schema=postgres_schema) as first:
        job = await first.create_job(CreateJobRequest(kind="k"))
        for scheme in ("postgres", "postgresql+psycopg"):
            async with jobqueue.connect(f"{scheme}://{rest}", schema=postgres_schema) as other:
                assert await other.get_job(job.id) == job


async def test_options_may_come_from_the_url_query(postgres_url: str, postgres_schema: str) -> None:
    """schema, pool sizes, timeouts and notify are accepted as URL query parameters, next to
    libpq's own parameters."""
    url = with_query(
        postgres_url,
        f"schema={postgres_schema}&min_size=0&max_size=2&timeout=7.5&connect_timeout=3"
        "&notify=false&prepared_statements=off&application_name=jq_options",
    )
    async with jobqueue.connect(url) as queue:
        assert isinstance(queue, PostgresJobQueue)
        assert queue.schema == postgres_schema
        assert queue.pool_size == 2
        await queue.create_job(CreateJobRequest(kind="k"))
        assert await queue.count_by_status(JobStatus.PENDING) == 1


async def test_libpq_parameters_with_spaces_reach_the_server(
    postgres_url: str, postgres_schema: str
) -> None:
    """A libpq parameter whose value holds a space (``options=-c name=value``) arrives
    intact: the space is not turned into a ``+`` libpq would not decode."""
    url = with_query(postgres_url, "options=-c%20work_mem%3D7MB")
    async with jobqueue.connect(url, schema=postgres_schema) as queue:
        assert isinstance(queue, PostgresJobQueue)
        async with queue._pool.connection() as conn:
            row = await (await conn.execute("SHOW work_mem")).fetchone()
    assert row is not None and row[0] == "7MB"


@pytest.mark.parametrize(
    ("options", "query", "message"),
    [
        ({"colour": "blue"}, "", "colour"),
        ({}, "no_such_libpq_param=1", "no_such_libpq_param"),
        ({"schema": "bad-name"}, "", "schema"),
        ({"schema": "x" * 64}, "", "schema"),
        ({"schema": "pg_catalog"}, "", "pg_"),
        ({"min_size": 5, "max_size": 2}, "", "min_size"),
        ({"max_size": 0}, "", "max_size"),
        ({"timeout": -1}, "", "timeout"),
        ({}, "connect_timeout=soon", "connect_timeout"),
        ({"notify": "maybe"}, "", "notify"),
        ({"max_size": True}, "", "max_size"),
        ({"max_size": 3}, "max_size=3", "both"),
    ],
)
async def test_bad_options_are_invalid_requests(
    postgres_url: str, options: dict[str, Any], query: str, message: str
) -> None:
    """Unknown options (keyword or libpq query parameter) and invalid values raise
    InvalidRequestError naming the culprit, before anything is written."""
    url = with_query(postgres_url, query) if query else postgres_url
    with pytest.raises(InvalidRequestError, match=message):
        await jobqueue.connect(url, **options)


async def test_timeouts_may_be_timedeltas(postgres_url: str, postgres_schema: str) -> None:
    """timeout and connect_timeout accept a timedelta as keyword argument."""
    async with jobqueue.connect(
        postgres_url,
        schema=postgres_schema,
        timeout=timedelta(seconds=5),
        connect_timeout=timedelta(seconds=3),
    ) as queue:
        assert await queue.counts() == dict.fromkeys(JobStatus, 0)


async def test_schemas_are_separate_queues(postgres_url: str, postgres_schema: str) -> None:
    """Two schemas in one database are two independent queues."""
    other = f"{postgres_schema}_b"
    try:
        async with (
            jobqueue.connect(postgres_url, schema=postgres_schema) as first,
            jobqueue.connect(postgres_url, schema=other) as second,
        ):
            await first.create_job(CreateJobRequest(kind="k"))
            assert await second.claim_job("w") is None
            assert await first.claim_job("w") is not None
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{other}" CASCADE')


async def test_timestamps_round_trip_to_the_microsecond(
    postgres_url: str, postgres_schema: str
) -> None:
    """Datetimes come back in UTC, the same instant to the microsecond; an injected clock is
    the source of every timestamp."""
    clock = FakeClock(datetime(2031, 5, 6, 7, 8, 9, 123457, tzinfo=UTC))
    run_at = datetime(2031, 5, 6, 9, 8, 9, 654321, tzinfo=UTC).astimezone(ZoneInfo("Asia/Kolkata"))
    async with jobqueue.connect(postgres_url, schema=postgres_schema, clock=clock) as queue:
        job = await queue.create_job(CreateJobRequest(kind="k", run_at=run_at))
        stored = await queue.get_job(job.id)
        assert stored is not None
        assert stored.created_at == clock() and stored.created_at.tzinfo is UTC
        assert stored.run_at == run_at and stored.run_at is not None
        assert stored.run_at.tzinfo is UTC and stored.run_at.microsecond == 654321


async def test_jobs_come_back_in_utc_from_a_session_in_another_time_zone(
    postgres_url: str, postgres_schema: str
) -> None:
    """A pooled session whose TimeZone was changed behind the queue's back (as a
    connection pooler may hand over a server session set by someone else) still yields
    UTC datetimes, the same instants."""
    clock = FakeClock(datetime(2031, 5, 6, 7, 8, 9, 123457, tzinfo=UTC))
    async with jobqueue.connect(
        postgres_url, schema=postgres_schema, clock=clock, max_size=1
    ) as queue:
        created = await queue.create_jobs([CreateJobRequest(kind="k") for _ in range(3)])
        claimed = await queue.claim_jobs("w", 3)
        pool = queue._pool  # type: ignore[attr-defined]
        async with pool.connection() as conn:
            await conn.execute("SET TIME ZONE 'Asia/Kolkata'")
        for jobs in (await queue.list_jobs(), [await queue.get_job(created[0].id)]):
            for job in jobs:
                assert job is not None
                for value in (job.created_at, job.updated_at, job.started_at):
                    assert value is not None and value.tzinfo is UTC
                assert (
                    job.created_at == clock()
                    and job.lease_expires_at == claimed[0].lease_expires_at
                )


async def test_without_a_clock_the_database_clock_is_used(
    postgres_url: str, postgres_schema: str
) -> None:
    """Without an injected clock timestamps come from the database server's clock."""
    async with jobqueue.connect(postgres_url, schema=postgres_schema) as queue:
        job = await queue.create_job(CreateJobRequest(kind="k"))
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    assert timedelta(0) <= row[0] - job.created_at < timedelta(seconds=30)


async def test_text_postgresql_cannot_store_is_an_invalid_request(
    postgres_url: str, postgres_schema: str
) -> None:
    """A NUL character in a payload is rejected with InvalidRequestError and nothing is stored;
    in an error text (informational) it is replaced by U+FFFD."""
    async with jobqueue.connect(postgres_url, schema=postgres_schema) as queue:
        with pytest.raises(InvalidRequestError, match="PostgreSQL"):
            await queue.create_job(CreateJobRequest(kind="k", payload={"a": "x\x00y"}))
        assert await queue.count_by_status(JobStatus.PENDING) == 0
        await queue.create_job(CreateJobRequest(kind="k"))
        job = await queue.claim_job("w")
        assert job is not None
        await queue.fail_job(job.id, "bad\x00byte")
        failed = await queue.get_job(job.id)
        assert failed is not None and failed.error == "bad\ufffdbyte"


# ------------------------------------------------------------------ batch inserts

LATER = datetime(2031, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
SHARED = {"kind": "k", "payload": {"a": [1, "x"]}, "queue": "q", "priority": 3, "max_attempts": 4}
VARIED: dict[str, list[Any]] = {
    "kind": ["k1", "k2", "k1"],
    "payload": [{}, {"b": None}, {"a": [1, "x"]}],
    "queue": ["q", "default", "q"],
    "priority": [3, -7, 3],
    "max_attempts": [1, 4, 9],
    "run_at": [None, LATER, None],
}


async def test_job_ids_are_version_7_uuids_in_time_order(
    postgres_url: str, postgres_schema: str
) -> None:
    """Ids are RFC 9562 version 7 UUIDs: distinct, and those made later sort after those made
    earlier (they start with the time in milliseconds)."""
    async with jobqueue.connect(postgres_url, schema=postgres_schema) as queue:
        first = await queue.create_jobs([CreateJobRequest(kind="k")] * 100)
        await asyncio.sleep(0.005)
        single = await queue.create_job(CreateJobRequest(kind="k"))
        await asyncio.sleep(0.005)
        last = await queue.create_jobs([CreateJobRequest(kind="k")] * 2)
    ids = [job.id for job in [*first, single, *last]]
    assert len(set(ids)) == 103
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert max(i.int for i in ids[:100]) < single.id.int < min(i.int for i in ids[101:])
    millis = ids[0].int >> 80
    assert abs(millis / 1000 - first[0].created_at.timestamp()) < 60


async def test_a_batch_stores_the_ids_it_returns_in_order(
    postgres_url: str, postgres_schema: str
) -> None:
    """The ids of a batch, sent as one binary array, are stored as create_jobs returns them:
    job by job in creation order, each random part its own."""
    async with jobqueue.connect(postgres_url, schema=postgres_schema) as queue:
        jobs = await queue.create_jobs([CreateJobRequest(kind="k")] * 1000)
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        cur = await conn.execute(
            psycopg.sql.SQL("SELECT id FROM {} ORDER BY seq").format(
                psycopg.sql.Identifier(postgres_schema, "jobs")
            )
        )
        stored = [row[0] for row in await cur.fetchall()]
    assert stored == [job.id for job in jobs]
    assert len({job.id.int & ((1 << 62) - 1) for job in jobs}) == 1000


@pytest.mark.parametrize("varied", [None, *VARIED])
async def test_a_batch_stores_each_jobs_own_values(
    postgres_url: str, postgres_schema: str, varied: str | None
) -> None:
    """Whether every job of a batch shares a field or one field differs between them, each
    job is stored with its own values, which are those create_jobs returned."""
    fields: list[dict[str, Any]] = [dict(SHARED) for _ in range(3)]
    if varied is not None:
        for job_fields, value in zip(fields, VARIED[varied], strict=True):
            job_fields[varied] = value
    requests = [CreateJobRequest(**job_fields) for job_fields in fields]
    async with jobqueue.connect(postgres_url, schema=postgres_schema) as queue:
        jobs = await queue.create_jobs(requests)
        assert [await queue.get_job(job.id) for job in jobs] == jobs
    for job, job_fields in zip(jobs, fields, strict=True):
        assert {name: getattr(job, name) for name in job_fields} == job_fields


async def test_a_batch_of_one_shared_request_returns_separate_payloads(
    postgres_url: str, postgres_schema: str
) -> None:
    """``[request] * n`` creates n jobs with n ids, each returned with its own copy of the
    payload (changing one changes neither the others nor the request)."""
    request = CreateJobRequest(kind="k", payload={"tags": ["a"]}, run_at=LATER)
    empty = CreateJobRequest(kind="k")
    async with jobqueue.connect(postgres_url, schema=postgres_schema) as queue:
        jobs = await queue.create_jobs([request] * 3 + [empty] * 2)
        assert len({job.id for job in jobs}) == 5
        jobs[0].payload["tags"].append("b")
        jobs[3].payload["extra"] = 1
        assert [jobs[1].payload, jobs[2].payload, jobs[4].payload] == [{"tags": ["a"]}] * 2 + [{}]
        assert request.payload == {"tags": ["a"]} and empty.payload == {}
        stored = await queue.get_job(jobs[0].id)
        assert stored is not None and stored.payload == {"tags": ["a"]}
        assert stored.run_at == LATER


# ------------------------------------------------------------------ migrations


def _versions(url: str, schema: str) -> list[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(f'SELECT version FROM "{schema}".jobqueue_migrations').fetchall()
    return sorted(row[0] for row in rows)


async def test_many_connections_migrating_at_once_agree(
    postgres_url: str, postgres_schema: str
) -> None:
    """Eight handles opening a missing schema at the same moment all succeed, and the
    migrations are applied once."""
    queues = await asyncio.gather(
        *(jobqueue.connect(postgres_url, schema=postgres_schema, min_size=0) for _ in range(8))
    )
    try:
        await queues[0].create_job(CreateJobRequest(kind="k"))
        assert await queues[-1].count_by_status(JobStatus.PENDING) == 1
    finally:
        for queue in queues:
            await queue.close()
    assert _versions(postgres_url, postgres_schema) == list(range(1, LATEST_VERSION + 1))


MIGRATE_IN_CHILD = """
import asyncio, sys, time, jobqueue
url, schema, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
async def main():
    async with jobqueue.connect(url, schema=schema, min_size=0) as queue:
        await queue.create_job(jobqueue.CreateJobRequest(kind="k"))
asyncio.run(main())
"""


async def test_processes_migrating_at_once_agree(postgres_url: str, postgres_schema: str) -> None:
    """Four processes connecting to a missing schema at the same instant all succeed."""
    start = time.time() + 1.5
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", MIGRATE_IN_CHILD, postgres_url, postgres_schema, str(start)
        )
        for _ in range(4)
    ]
    codes = [await asyncio.wait_for(child.wait(), 60) for child in children]
    assert codes == [0, 0, 0, 0]
    assert _versions(postgres_url, postgres_schema) == list(range(1, LATEST_VERSION + 1))
    async with jobqueue.connect(postgres_url, schema=postgres_schema, migrate=False) as queue:
        assert await queue.count_by_status(JobStatus.PENDING) == 4


async def test_a_version_1_schema_is_upgraded_in_place(
    postgres_url: str, postgres_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A schema created by the first migration alone is brought to the latest version on
    connect, its jobs kept: same rows, same listing order, still claimable in claim order."""
    schema_module = jobqueue_postgres._schema
    with monkeypatch.context() as patch:
        patch.setattr(schema_module, "_MIGRATIONS", schema_module._MIGRATIONS[:1])
        patch.setattr(schema_module, "LATEST_VERSION", 1)
        async with jobqueue.connect(postgres_url, schema=postgres_schema) as old:
            created = await old.create_jobs(
                [CreateJobRequest(kind="k", priority=i % 3, payload={"i": i}) for i in range(12)]
            )
            running = await old.claim_job("w")
            assert running is not None
            before = await old.list_jobs(limit=100)
    assert _versions(postgres_url, postgres_schema) == [1]

    async with jobqueue.connect(postgres_url, schema=postgres_schema) as queue:
        assert _versions(postgres_url, postgres_schema) == list(range(1, LATEST_VERSION + 1))
        assert await queue.list_jobs(limit=100) == before
        assert {job.id for job in before} == {job.id for job in created}
        claimed = await queue.claim_jobs("w", 100)
        assert [job.payload["i"] for job in claimed] == [
            job.payload["i"]
            for job in sorted(created, key=lambda job: -job.priority)
            if job.id != running.id
        ]
    with psycopg.connect(postgres_url) as conn:
        indexes = {
            row[0]
            for row in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = %s", (postgres_schema,)
            )
        }
    assert "jobs_creation_order" not in indexes
    assert {"jobs_claim_order", "jobs_status_creation_order"} <= indexes


async def test_migrate_false_refuses_a_missing_or_old_schema(
    postgres_url: str, postgres_schema: str
) -> None:
    """With migrate=False a missing, old or newer schema raises BackendUnavailableError that
    says how to migrate; a current one opens."""
    with pytest.raises(BackendUnavailableError, match="migrate=True"):
        await jobqueue.connect(postgres_url, schema=postgres_schema, migrate=False)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (postgres_schema,)
        ).fetchone()
    assert exists == (0,), "a refused connect must not create anything"

    async with jobqueue.connect(postgres_url, schema=postgres_schema):
        pass
    async with jobqueue.connect(postgres_url, schema=postgres_schema, migrate=False):
        pass
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'INSERT INTO "{postgres_schema}".jobqueue_migrations VALUES (99)')
    for migrate in (True, False):
        with pytest.raises(BackendUnavailableError, match="newer"):
            await jobqueue.connect(postgres_url, schema=postgres_schema, migrate=migrate)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DELETE FROM "{postgres_schema}".jobqueue_migrations')
    with pytest.raises(BackendUnavailableError, match="migrate"):
        await jobqueue.connect(postgres_url, schema=postgres_schema, migrate=False)


# ------------------------------------------------------------------ secrets


async def test_repr_never_shows_the_password(postgres_url: str, postgres_schema: str) -> None:
    """The queue's repr shows host and schema but not the password, in either URL form."""
    for url in (
        with_password(postgres_url),
        with_query(postgres_url, f"password={SECRET}"),
    ):
        async with jobqueue.connect(url, schema=postgres_schema) as queue:
            text = repr(queue)
            assert SECRET not in text and "***" in text
            assert postgres_schema in text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql:///app?host=/run/postgresql", "postgresql:///app?host=/run/postgresql"),
        ("postgres://u:p%40ss@h:5/db?sslmode=require", "postgres://u:***@h:5/db?sslmode=require"),
        (
            "postgresql+psycopg://h/db?password=zz&sslmode=disable",
            "postgresql+psycopg://h/db?password=***&sslmode=disable",
        ),
    ],
)
def test_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    """The URL shown in errors and repr keeps its form (Unix-socket URLs included) and masks
    the password, wherever the URL carries it."""
    assert parse_options(url, {}).display_url == shown


async def test_connection_errors_never_show_the_password(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An unreachable server raises BackendUnavailableError quickly; neither the error, its
    causes nor any log line contain the password."""
    caplog.set_level(logging.DEBUG)
    for url in (
        with_password(with_host(postgres_url, "127.0.0.1", 1)),
        with_query(with_host(postgres_url, "127.0.0.1", 1), f"password={SECRET}"),
    ):
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as info:
            await jobqueue.connect(url, connect_timeout=2)
        assert time.monotonic() - started < 5
        chain: list[BaseException] = []
        error: BaseException | None = info.value
        while error is not None:
            chain.append(error)
            error = error.__cause__ or error.__context__
        assert all(SECRET not in str(e) and SECRET not in repr(e) for e in chain)
        assert "127.0.0.1" in str(info.value)
    assert SECRET not in caplog.text


async def test_a_server_that_never_answers_fails_within_connect_timeout() -> None:
    """A host that accepts TCP but never speaks makes connect fail with
    BackendUnavailableError after about connect_timeout seconds, not hang."""
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError):
            await jobqueue.connect(f"postgresql://u@127.0.0.1:{port}/db", connect_timeout=1)
        assert time.monotonic() - started < 6
    finally:
        silent.close()


# ------------------------------------------------------------------ outages


class Proxy:
    """A TCP proxy in front of the test server that can go down, hang and come back."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._sessions: set[asyncio.Task[None]] = set()
        self.port = 0
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Refuse new connections and cut the open ones (a server going down)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        self.flowing.set()
        if self._sessions:
            await asyncio.wait(set(self._sessions), timeout=5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = asyncio.current_task()
        assert session is not None
        self._sessions.add(session)
        session.add_done_callback(self._sessions.discard)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers += [writer, up_writer]
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()


@contextlib.asynccontextmanager
async def proxy_for(url: str) -> AsyncIterator[Proxy]:
    parts = urlsplit(url)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


async def test_claims_waiting_their_turn_still_fail_within_the_timeout(
    postgres_url: str, postgres_schema: str
) -> None:
    """Claims of one handle queued behind others that hang (here on a table lock) fail with
    BackendUnavailableError within the timeout option counted from their own call, not
    after the claims ahead of them have timed out too."""
    async with jobqueue.connect(postgres_url, schema=postgres_schema, timeout=1) as queue:
        await queue.create_jobs([CreateJobRequest(kind="k")] * 10)
        async with await psycopg.AsyncConnection.connect(postgres_url) as locker:
            await locker.execute(
                psycopg.sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                    psycopg.sql.Identifier(postgres_schema, "jobs")
                )
            )

            async def claim() -> float:
                started = time.monotonic()
                with pytest.raises(BackendUnavailableError, match="did not answer within 1 s"):
                    await queue.claim_jobs("w", 100)
                return time.monotonic() - started

            took = await asyncio.gather(*(claim() for _ in range(6)))
            await locker.rollback()
        assert max(took) < 1.7, took
        # Claims cut off by the timeout may still have run once the lock was gone.
        counts = await queue.counts()
        assert counts[JobStatus.PENDING] + counts[JobStatus.RUNNING] == 10


async def test_a_completion_waiting_for_the_write_before_it_still_fails_within_the_timeout(
    postgres_url: str, postgres_schema: str
) -> None:
    """A completion that has to wait for the handle's write under way (which hangs here on a
    table lock) fails within the timeout option counted from its own call."""
    async with jobqueue.connect(postgres_url, schema=postgres_schema, timeout=1) as queue:
        await queue.create_jobs([CreateJobRequest(kind="k")] * 2)
        first, second = await queue.claim_jobs("w", 2)
        async with await psycopg.AsyncConnection.connect(postgres_url) as locker:
            await locker.execute(
                psycopg.sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                    psycopg.sql.Identifier(postgres_schema, "jobs")
                )
            )
            ahead = asyncio.create_task(queue.complete_job(first.id, {}))
            await asyncio.sleep(0.1)
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError, match="did not answer within 1 s"):
                await queue.complete_job(second.id, {})
            took = time.monotonic() - started
            with pytest.raises(BackendUnavailableError):
                await ahead
            await locker.rollback()
        assert took < 1.5, took


async def test_outage_fails_fast_and_work_resumes_after(
    postgres_url: str, postgres_schema: str
) -> None:
    """While the server is unreachable every call fails with BackendUnavailableError within
    the timeout option; once it is back the pool reconnects and calls succeed again."""
    async with proxy_for(postgres_url) as proxy:
        url = with_host(postgres_url, "127.0.0.1", proxy.port)
        async with jobqueue.connect(
            url, schema=postgres_schema, timeout=2, min_size=2, max_size=2
        ) as queue:
            job = await queue.create_job(CreateJobRequest(kind="before"))
            await proxy.stop()
            calls: tuple[Callable[[], Awaitable[object]], ...] = (
                lambda: queue.create_job(CreateJobRequest(kind="during")),
                lambda: queue.claim_job("w"),
                lambda: queue.get_job(job.id),
            )
            for call in calls:
                started = time.monotonic()
                with pytest.raises(BackendUnavailableError):
                    await call()
                assert time.monotonic() - started < 5
            await proxy.start()
            deadline = time.monotonic() + 30
            while True:
                try:
                    claimed = await queue.claim_job("w")
                    break
                except BackendUnavailableError:
                    assert time.monotonic() < deadline, "the pool never reconnected"
                    await asyncio.sleep(0.2)
            assert claimed is not None and claimed.id == job.id
            await queue.complete_job(claimed.id, {})
            assert await queue.counts() == {
                JobStatus.PENDING: 0,
                JobStatus.RUNNING: 0,
                JobStatus.COMPLETED: 1,
                JobStatus.FAILED: 0,
                JobStatus.CANCELLED: 0,
            }


async def test_a_hanging_server_makes_calls_fail_within_the_timeout(
    postgres_url: str, postgres_schema: str
) -> None:
    """When the server stops answering mid-connection a call raises BackendUnavailableError
    after about the timeout option instead of hanging; nothing is half-applied."""
    async with proxy_for(postgres_url) as proxy:
        url = with_host(postgres_url, "127.0.0.1", proxy.port)
        async with jobqueue.connect(url, schema=postgres_schema, timeout=1.5) as queue:
            await queue.create_jobs([CreateJobRequest(kind="k") for _ in range(3)])
            proxy.flowing.clear()
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError, match="did not answer"):
                await queue.claim_jobs("w", 3)
            assert time.monotonic() - started < 4
            proxy.flowing.set()
    async with jobqueue.connect(postgres_url, schema=postgres_schema) as direct:
        counts = await direct.counts()
        # The claim either committed before the freeze reached it or not at all.
        assert (counts[JobStatus.PENDING], counts[JobStatus.RUNNING]) in {(3, 0), (0, 3)}


# ------------------------------------------------------------------ wake-ups


async def test_wait_returns_soon_after_a_job_is_created_elsewhere(
    postgres_url: str, postgres_schema: str
) -> None:
    """An idle handle waiting for jobs wakes within a fraction of a second when another handle
    creates one (NOTIFY), long before its timeout."""
    async with (
        jobqueue.connect(postgres_url, schema=postgres_schema) as waiter,
        jobqueue.connect(postgres_url, schema=postgres_schema) as producer,
    ):
        assert await waiter.claim_job("w") is None
        await waiter.wait_for_jobs(0.01)  # starts listening
        latencies = []
        for _ in range(3):
            task = asyncio.create_task(waiter.wait_for_jobs(20))
            await asyncio.sleep(0.1)
            started = time.monotonic()
            await producer.create_job(CreateJobRequest(kind="k"))
            await asyncio.wait_for(task, 20)
            latencies.append(time.monotonic() - started)
            assert await waiter.claim_job("w") is not None
        assert min(latencies) < 1.0, latencies


@pytest.mark.parametrize("make_claimable", ["release", "retry", "rescue", "retry_job"])
async def test_jobs_becoming_claimable_again_wake_waiters(
    postgres_url: str, postgres_schema: str, make_claimable: str
) -> None:
    """Release, a retrying failure, rescue and retry_job also notify idle handles."""
    clock = FakeClock()
    async with (
        jobqueue.connect(postgres_url, schema=postgres_schema, clock=clock) as waiter,
        jobqueue.connect(postgres_url, schema=postgres_schema, clock=clock) as other,
    ):
        await other.create_job(CreateJobRequest(kind="k", max_attempts=3))
        job = await other.claim_job("w")
        assert job is not None
        if make_claimable == "retry_job":
            await other.fail_job(job.id, "boom")
        assert await waiter.claim_job("x") is None
        await waiter.wait_for_jobs(0.01)
        task = asyncio.create_task(waiter.wait_for_jobs(20))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        if make_claimable == "release":
            assert await other.release_job(job.id)
        elif make_claimable == "retry":
            await other.fail_job(job.id, "boom", next_retry_at=clock())
        elif make_claimable == "rescue":
            clock.advance(other.lease)
            assert await other.rescue_expired_jobs() == 1
        else:
            await other.retry_job(job.id)
        await asyncio.wait_for(task, 20)
        assert time.monotonic() - started < 5


@pytest.mark.parametrize("statement", ["create_job", "fail_job with a retry"])
async def test_overlapping_statements_share_notifications_sent_by_closing_time(
    postgres_url: str, postgres_schema: str, statement: str
) -> None:
    """Of 20 calls running at once on one handle that each make a job claimable, only the
    first notifies in its own statement; the others' notification is sent after they
    committed, coalesced, and at the latest when the handle closes."""
    async with jobqueue.connect(postgres_url, schema=postgres_schema) as queue:
        if statement == "create_job":
            calls = [queue.create_job(CreateJobRequest(kind="k")) for _ in range(20)]
        else:
            await queue.create_jobs([CreateJobRequest(kind="k")] * 20)
            claimed = await queue.claim_jobs("w", 20)
            calls = [queue.fail_job(j.id, "boom", next_retry_at=queue.now()) for j in claimed]
        channel = jobqueue_postgres._queue.channel_for(postgres_schema)
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
            await conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel)))
            await asyncio.gather(*calls)
            await queue.close()
            received = [n async for n in conn.notifies(timeout=1.0)]
    assert 2 <= len(received) < 20
    assert await _count_rows(postgres_url, postgres_schema, "pending") == 20


async def _count_rows(url: str, schema: str, status: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            psycopg.sql.SQL("SELECT count(*) FROM {} WHERE status = %s").format(
                psycopg.sql.Identifier(schema, "jobs")
            ),
            (status,),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_other_schemas_do_not_wake_waiters(postgres_url: str, postgres_schema: str) -> None:
    """Each schema has its own channel: jobs created in another schema do not wake a waiter."""
    other = f"{postgres_schema}_o"
    try:
        async with (
            jobqueue.connect(postgres_url, schema=postgres_schema) as waiter,
            jobqueue.connect(postgres_url, schema=other) as producer,
        ):
            await waiter.wait_for_jobs(0.01)
            task = asyncio.create_task(waiter.wait_for_jobs(1.0))
            await asyncio.sleep(0.1)
            started = time.monotonic()
            await producer.create_job(CreateJobRequest(kind="k"))
            await task
            assert time.monotonic() - started >= 0.8
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{other}" CASCADE')


async def test_poll_only_mode_never_listens(postgres_url: str, postgres_schema: str) -> None:
    """With notify=False a wait is a plain sleep of the whole timeout and no LISTEN
    connection is opened (for PgBouncer transaction pooling)."""
    name = f"jq_poll_{postgres_schema}"
    url = with_query(postgres_url, f"application_name={name}")
    async with (
        jobqueue.connect(url, schema=postgres_schema, notify=False) as waiter,
        jobqueue.connect(postgres_url, schema=postgres_schema) as producer,
    ):
        task = asyncio.create_task(waiter.wait_for_jobs(0.6))
        await asyncio.sleep(0.1)
        await producer.create_job(CreateJobRequest(kind="k"))
        started = time.monotonic()
        await task
        assert time.monotonic() - started >= 0.4
        assert await waiter.claim_job("w") is not None
        with psycopg.connect(postgres_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                " AND query ILIKE 'LISTEN%%'",
                (name,),
            ).fetchone()
        assert row == (0,)


async def test_listener_listens_again_after_its_connection_is_terminated(
    postgres_url: str, postgres_schema: str
) -> None:
    """When the listening connection is killed, the handle reconnects, LISTENs again and is
    woken by later jobs."""
    name = f"jq_listen_{postgres_schema}"
    url = with_query(postgres_url, f"application_name={name}")
    async with (
        jobqueue.connect(url, schema=postgres_schema) as waiter,
        jobqueue.connect(postgres_url, schema=postgres_schema) as producer,
    ):
        await waiter.wait_for_jobs(0.01)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (name,),
            )
        await asyncio.sleep(1.0)  # the listener notices and reconnects
        await waiter.wait_for_jobs(0.01)
        task = asyncio.create_task(waiter.wait_for_jobs(20))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await producer.create_job(CreateJobRequest(kind="k"))
        await asyncio.wait_for(task, 20)
        assert time.monotonic() - started < 5


# ------------------------------------------------------------------ the claim index


async def _big_table(url: str, schema: str) -> str:
    """Ten claimable jobs, then many finished jobs, future-dated retries and future-dated
    jobs written directly, and the table analysed; the table's quoted name."""
    async with jobqueue.connect(url, schema=schema) as queue:
        await queue.create_jobs([CreateJobRequest(kind="k") for _ in range(10)])
    jobs = f'"{schema}".jobs'
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {jobs} (id, kind, payload, queue, priority, status, attempts,"
            " max_attempts, created_at, updated_at, finished_at, ready)"
            " SELECT gen_random_uuid(), 'k', '{}', 'default', 0, 'completed', 1, 5,"
            " now() - interval '1 day', now(), now(), true FROM generate_series(1, 50000)"
        )
        conn.execute(
            f"INSERT INTO {jobs} (id, kind, payload, queue, priority, status, attempts,"
            " max_attempts, next_retry_at, created_at, updated_at, ready)"
            " SELECT gen_random_uuid(), 'k', '{}', 'default', 9, 'pending', 1, 5,"
            " now() + interval '1 day', now() - interval '2 days', now(), false"
            " FROM generate_series(1, 20000)"
        )
        conn.execute(
            f"INSERT INTO {jobs} (id, kind, payload, queue, priority, status, attempts,"
            " max_attempts, run_at, created_at, updated_at, ready)"
            " SELECT gen_random_uuid(), 'k', '{}', 'default', 9, 'pending', 0, 5,"
            " now() + interval '2 days', now() - interval '2 days', now(), false"
            " FROM generate_series(1, 20000)"
        )
        conn.execute(f"ANALYZE {jobs}")
    return jobs


def _plan(conn: psycopg.Connection[Any], statement: bytes, params: dict[str, Any]) -> str:
    """The executed plan of ``statement``, its changes rolled back."""
    conn.execute("BEGIN")
    rows = conn.execute(
        b"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) " + statement, params
    ).fetchall()
    conn.execute("ROLLBACK")
    return "\n".join(row[0] for row in rows)


CLAIM_PARAMS = {"now": None, "worker": "w", "limit": 1, "lease": timedelta(minutes=5)}


async def test_claim_reads_only_the_head_of_the_claim_index(
    postgres_url: str, postgres_schema: str
) -> None:
    """With many finished jobs and many future-dated retries and jobs, a claim's plan scans
    the partial claim-order index and touches a handful of pages (its cost stays flat)."""
    await _big_table(postgres_url, postgres_schema)
    statements = jobqueue_postgres._sql.statements(postgres_schema, clock=False)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        plan = _plan(conn, statements.claim, CLAIM_PARAMS)
    assert "Seq Scan" not in plan, plan
    assert "jobs_claim_order" in plan and "jobs_not_yet_due" in plan, plan
    # The top node's buffer count includes every node below it (planning excluded).
    top = next(line for line in plan.splitlines() if "Buffers:" in line)
    hits = sum(
        int(part.split("=")[1]) for part in top.split() if part.startswith(("hit=", "read="))
    )
    assert hits < 100, plan


async def test_a_prepared_claim_of_one_job_keeps_its_generic_plan_on_a_big_table(
    postgres_url: str, postgres_schema: str
) -> None:
    """Once psycopg has prepared it, claiming one job on a big table runs PostgreSQL's generic
    plan instead of planning every call anew."""
    await _big_table(postgres_url, postgres_schema)
    statements = jobqueue_postgres._sql.statements(postgres_schema, clock=False)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for _ in range(10):
            conn.execute(statements.claim_one, CLAIM_PARAMS, prepare=True).fetchall()
        row = conn.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE %s",
            ("%ready_rows%",),
        ).fetchone()
    # PostgreSQL makes five plans for the actual values before it weighs the generic one.
    assert row == (5, 5)


async def test_a_batch_claim_walks_the_claim_index_before_the_table_is_analysed(
    postgres_url: str, postgres_schema: str
) -> None:
    """On a new table holding thousands of pending jobs and no statistics yet, a claim of
    100 through the queue's own connections reads the head of the claim index, not every
    pending job (a bitmap scan and a sort of the whole backlog)."""
    statements = jobqueue_postgres._sql.statements(postgres_schema, clock=False)
    async with jobqueue.connect(postgres_url, schema=postgres_schema) as queue:
        assert isinstance(queue, jobqueue_postgres.PostgresJobQueue)
        await queue.create_jobs([CreateJobRequest(kind="k")] * 5000)
        async with queue._pool.connection() as conn:
            await conn.execute("BEGIN")
            explained = await conn.execute(
                b"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) " + statements.claim,
                {**CLAIM_PARAMS, "limit": 100},
            )
            plan = "\n".join(row[0] for row in await explained.fetchall())
            await conn.execute("ROLLBACK")
    assert "Bitmap" not in plan and "Index Scan using jobs_claim_order" in plan, plan
    assert "rows=100 " in plan, plan


async def test_listing_reads_indexes_on_a_big_table(
    postgres_url: str, postgres_schema: str
) -> None:
    """Listing all jobs merges the newest of each status from the status index (no scan of
    the table, no sort of it); listing or counting a rare status reads that index too."""
    await _big_table(postgres_url, postgres_schema)
    statements = jobqueue_postgres._sql.statements(postgres_schema, clock=False)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        listed = _plan(conn, statements.list_all, {"limit": 20})
        one_status = _plan(conn, statements.list_status, {"status": "failed", "limit": 20})
        counted = _plan(conn, statements.count_status, {"status": "cancelled"})
    for plan in (listed, one_status, counted):
        assert "Seq Scan" not in plan and "jobs_status_creation_order" in plan, plan
    assert "Merge Append" in listed, listed
    top = next(line for line in listed.splitlines() if "Buffers:" in line)
    assert sum(int(part.split("=")[1]) for part in top.split() if "=" in part) < 100, listed


# ------------------------------------------------------------------ coalesced completions


async def test_completions_written_together_share_equal_values_rightly(
    postgres_url: str, postgres_schema: str
) -> None:
    """A batch whose completions agree on stats, worker or attempt (sent once) stores and
    checks each row as a batch of differing ones would."""
    async with jobqueue.connect(postgres_url, schema=postgres_schema) as queue:
        await queue.create_jobs([CreateJobRequest(kind="k") for _ in range(30)])
        jobs = await queue.claim_jobs("w", 30)
        unfenced, fenced, intruded = jobs[:10], jobs[10:20], jobs[20:]
        await asyncio.gather(*(queue.complete_job(job.id, {}) for job in unfenced))
        await asyncio.gather(
            *(
                queue.complete_job(job.id, {"n": n}, worker_id="w", attempt=1)
                for n, job in enumerate(fenced)
            )
        )
        refusals = await asyncio.gather(
            *(queue.complete_job(job.id, {}, worker_id="x", attempt=1) for job in intruded),
            return_exceptions=True,
        )
        assert all(isinstance(r, jobqueue.InvalidTransitionError) for r in refusals)
        for n, job in enumerate(unfenced + fenced):
            stored = await queue.get_job(job.id)
            assert stored is not None and stored.status is JobStatus.COMPLETED
            assert stored.stats == ({} if n < 10 else {"n": n - 10})
        for job in intruded:
            stored = await queue.get_job(job.id)
            assert stored is not None and stored.status is JobStatus.RUNNING


async def test_concurrent_completions_are_each_checked(
    postgres_url: str, postgres_schema: str
) -> None:
    """Completions issued at once on one handle (written together) keep every per-job rule:
    a wrong fence is refused, a second completion of the same job is refused, an unstorable
    value fails only its own call, and the rest are stored with their own stats."""
    async with jobqueue.connect(postgres_url, schema=postgres_schema) as queue:
        await queue.create_jobs([CreateJobRequest(kind="k", payload={"i": i}) for i in range(40)])
        jobs = sorted(await queue.claim_jobs("w", 40), key=lambda job: job.payload["i"])
        assert len(jobs) == 40
        calls = []
        for i, job in enumerate(jobs):
            if i % 10 == 3:
                calls.append(queue.complete_job(job.id, {"i": i}, worker_id="intruder"))
            elif i % 10 == 7:
                calls.append(queue.complete_job(job.id, {"bad": "\x00"}, worker_id="w"))
            elif i % 10 == 9:
                calls.append(queue.complete_job(job.id, {"i": i}, attempt=2))
            else:
                calls.append(queue.complete_job(job.id, {"i": i}, worker_id="w", attempt=1))
            if i % 10 == 5:
                calls.append(queue.complete_job(job.id, {"i": -i}, worker_id="w", attempt=1))
        results = await asyncio.gather(*calls, return_exceptions=True)

        refused = [r for r in results if isinstance(r, jobqueue.InvalidTransitionError)]
        invalid = [r for r in results if isinstance(r, InvalidRequestError)]
        assert len(refused) == 4 + 4 + 4  # intruders, wrong attempts, second completions
        assert len(invalid) == 4
        assert sum(r is None for r in results) == 28
        for i, job in enumerate(jobs):
            stored = await queue.get_job(job.id)
            assert stored is not None
            if i % 10 in (3, 7, 9):
                assert stored.status is JobStatus.RUNNING and stored.stats is None
            else:
                assert stored.status is JobStatus.COMPLETED
                assert stored.stats is not None and abs(stored.stats["i"]) == i
