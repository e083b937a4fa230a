"""The sqlite backend's own behaviour: URLs and options, schema and migrations, files it
must refuse, and the value round trips (the contract itself is the conformance suite's)."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

import jobqueue
from jobqueue import (
    BackendUnavailableError,
    CreateJobRequest,
    InvalidRequestError,
    JobStatus,
)
from jobqueue.testing import FakeClock
from jobqueue_sqlite import LATEST_VERSION, SQLiteJobQueue, _schema
from jobqueue_sqlite._schema import APPLICATION_ID


def url_for(path: Path) -> str:
    return f"sqlite:///{path}"  # path is absolute, so this is the four-slash form


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file in ``directory`` with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


# ----------------------------------------------------------------- URLs and options


async def test_relative_url_opens_a_file_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sqlite:///jobqueue.db`` (the README's default) is a file in the current directory."""
    monkeypatch.chdir(tmp_path)
    async with jobqueue.connect("sqlite:///jobqueue.db") as queue:
        assert isinstance(queue, SQLiteJobQueue)
        await queue.create_job(CreateJobRequest(kind="k"))
        assert queue.path == str(tmp_path / "jobqueue.db")
    assert (tmp_path / "jobqueue.db").is_file()


async def test_absolute_url_with_four_slashes(tmp_path: Path) -> None:
    """``sqlite:////abs/path.db`` opens the absolute path; the data persists across handles."""
    url = "sqlite:///" + str(tmp_path / "sub dir" / "q.db")
    (tmp_path / "sub dir").mkdir()
    assert url.startswith("sqlite:////")
    async with jobqueue.connect(url) as queue:
        job = await queue.create_job(CreateJobRequest(kind="k"))
    async with jobqueue.connect(url) as queue:
        assert await queue.get_job(job.id) == job


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://", "no database file"),
        ("sqlite:///", "no database file"),
        ("sqlite://host/x.db", "no host"),
        ("sqlite://user:secret@/x.db", "no host"),
        ("sqlite:///:memory:", "memory://"),
        ("sqlite:///x.db#frag", "fragment"),
        ("sqlite:///x.db?colour=red", "colour"),
        ("sqlite:///x.db?timeout=soon", "timeout"),
        ("sqlite:///x.db?timeout=0", "positive"),
        ("sqlite:///x.db?timeout=nan", "positive"),
        ("sqlite:///x.db?synchronous=off", "synchronous"),
        ("sqlite:///x.db?timeout=1&timeout=2", "twice"),
    ],
)
async def test_malformed_urls_and_bad_options_are_invalid_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, message: str
) -> None:
    """A malformed URL or an unknown/bad query option is an InvalidRequestError, no file made,
    and the message never shows a password."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidRequestError, match=message) as info:
        await jobqueue.connect(url)
    assert "secret" not in str(info.value)
    assert snapshot(tmp_path) == {}


async def test_keyword_options_are_validated_like_query_options(tmp_path: Path) -> None:
    """Options given to connect() are checked too; one option given twice is refused."""
    url = url_for(tmp_path / "q.db")
    with pytest.raises(InvalidRequestError, match="colour"):
        await jobqueue.connect(url, colour="red")
    with pytest.raises(InvalidRequestError, match="timeout"):
        await jobqueue.connect(url, timeout=True)
    with pytest.raises(InvalidRequestError, match="both"):
        await jobqueue.connect(url + "?timeout=1", timeout=2)


async def test_options_are_applied(tmp_path: Path) -> None:
    """``synchronous`` reaches SQLite; ``timeout`` is accepted as seconds or timedelta."""
    url = url_for(tmp_path / "q.db")
    async with jobqueue.connect(url + "?synchronous=FULL&timeout=2.5") as queue:
        assert isinstance(queue, SQLiteJobQueue)
        assert (await queue._db.fetch("PRAGMA synchronous"))[0][0] == 2
        assert (await queue._db.fetch("PRAGMA journal_mode"))[0][0] == "wal"
    async with jobqueue.connect(url, synchronous="extra", timeout=timedelta(seconds=3)) as queue:
        assert isinstance(queue, SQLiteJobQueue)
        assert (await queue._db.fetch("PRAGMA synchronous"))[0][0] == 3


async def test_repr_shows_the_url(tmp_path: Path) -> None:
    """The repr names the backend and the URL as given."""
    url = url_for(tmp_path / "q.db") + "?timeout=5"
    async with jobqueue.connect(url) as queue:
        assert repr(queue) == f"<SQLiteJobQueue {url}>"


async def test_registered_with_its_capabilities() -> None:
    """The plugin registers ``sqlite`` with concurrent_processes and persistent."""
    info = {b.scheme: b for b in jobqueue.installed_backends()}["sqlite"]
    assert info.capabilities == {"concurrent_processes", "persistent"}


# ------------------------------------------------------------- schema and migrations


async def test_fresh_file_gets_the_latest_schema_and_marks(tmp_path: Path) -> None:
    """A new file is created in WAL mode, marked as a jobqueue database, at the latest version."""
    path = tmp_path / "q.db"
    async with jobqueue.connect(url_for(path)):
        pass
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        version = db.execute("SELECT value FROM jobqueue_meta WHERE key = 'schema_version'")
        assert int(version.fetchone()[0]) == LATEST_VERSION
    db.close()


async def test_migrate_false_on_a_missing_file_says_how_to_migrate(tmp_path: Path) -> None:
    """migrate=False does not create a file; the error names the migrate command."""
    path = tmp_path / "q.db"
    with pytest.raises(BackendUnavailableError, match="jobqueue migrate --url"):
        await jobqueue.connect(url_for(path), migrate=False)
    assert not path.exists()


async def test_migrate_false_on_an_empty_file_leaves_it_untouched(tmp_path: Path) -> None:
    """An empty file with migrate=False is refused with how to migrate, and stays empty."""
    path = tmp_path / "q.db"
    path.touch()
    with pytest.raises(BackendUnavailableError, match=r"migrate=True"):
        await jobqueue.connect(url_for(path), migrate=False)
    assert snapshot(tmp_path) == {"q.db": b""}


async def test_migrate_false_on_a_migrated_file_works(tmp_path: Path) -> None:
    """Once migrated, the file opens with migrate=False and keeps its jobs."""
    url = url_for(tmp_path / "q.db")
    async with jobqueue.connect(url) as queue:
        job = await queue.create_job(CreateJobRequest(kind="k"))
    async with jobqueue.connect(url, migrate=False) as queue:
        assert (await queue.get_job(job.id)) == job


async def test_old_schema_is_refused_without_migrate_and_upgraded_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the library knows a newer schema version than the file has, migrate=False is
    refused saying how to migrate, and migrate=True applies the missing steps once,
    keeping the jobs."""
    path = tmp_path / "q.db"
    async with jobqueue.connect(url_for(path)) as queue:
        job = await queue.create_job(CreateJobRequest(kind="k"))
    step = ("CREATE TABLE jobqueue_extra (x INTEGER)",)
    monkeypatch.setattr(_schema, "MIGRATIONS", (*_schema.MIGRATIONS, step))
    monkeypatch.setattr(_schema, "LATEST_VERSION", LATEST_VERSION + 1)
    with pytest.raises(BackendUnavailableError, match=r"old schema.*jobqueue migrate"):
        await jobqueue.connect(url_for(path), migrate=False)
    for _ in range(2):
        async with jobqueue.connect(url_for(path)) as queue:
            assert await queue.get_job(job.id) == job
    with sqlite3.connect(path) as db:
        version = db.execute("SELECT value FROM jobqueue_meta WHERE key = 'schema_version'")
        assert int(version.fetchone()[0]) == LATEST_VERSION + 1
        assert db.execute("SELECT count(*) FROM jobqueue_extra").fetchone()[0] == 0
    db.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A file written by a newer jobqueue is refused, with or without migrate."""
    path = tmp_path / "q.db"
    async with jobqueue.connect(url_for(path)):
        pass
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE jobqueue_meta SET value = ? WHERE key = 'schema_version'",
            (str(LATEST_VERSION + 1),),
        )
    db.close()
    for migrate in (True, False):
        with pytest.raises(BackendUnavailableError, match="newer"):
            await jobqueue.connect(url_for(path), migrate=migrate)


OPEN_AND_CREATE = """
import asyncio, sys, jobqueue
from jobqueue import CreateJobRequest
async def main():
    async with jobqueue.connect(sys.argv[1]) as queue:
        await queue.create_job(CreateJobRequest(kind="k"))
asyncio.run(main())
"""


def test_several_processes_opening_a_new_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    """Four processes connecting to the same new file at once all succeed; one schema, 4 jobs."""
    path = tmp_path / "q.db"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AND_CREATE, url_for(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM jobqueue_jobs").fetchone()[0] == 4
        assert db.execute("SELECT count(*) FROM jobqueue_meta").fetchone()[0] == 1
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


# --------------------------------------------------------------- places it refuses


async def test_missing_directory(tmp_path: Path) -> None:
    """A file in a directory that does not exist: BackendUnavailableError, nothing created."""
    with pytest.raises(BackendUnavailableError, match="does not exist"):
        await jobqueue.connect(url_for(tmp_path / "nowhere" / "q.db"))
    assert snapshot(tmp_path) == {}


async def test_garbage_file_is_refused_untouched(tmp_path: Path) -> None:
    """A file that is not SQLite is refused and keeps its bytes; no side files appear."""
    path = tmp_path / "q.db"
    path.write_bytes(b"this is not a database, just some text\n" * 100)
    before = snapshot(tmp_path)
    with pytest.raises(BackendUnavailableError, match="not a usable SQLite database"):
        await jobqueue.connect(url_for(path))
    assert snapshot(tmp_path) == before


async def test_foreign_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    """Another application's SQLite database is refused, naming its tables, byte for byte
    unchanged (not even switched to WAL)."""
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO users (name) VALUES ('ada')")
    db.close()
    before = snapshot(tmp_path)
    for migrate in (True, False):
        with pytest.raises(BackendUnavailableError, match=r"another application.*users"):
            await jobqueue.connect(url_for(path), migrate=migrate)
    assert snapshot(tmp_path) == before


async def test_database_with_another_application_id_is_refused(tmp_path: Path) -> None:
    """An empty database stamped with another application id is not taken over."""
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA application_id = 1234")
    db.close()
    before = snapshot(tmp_path)
    with pytest.raises(BackendUnavailableError, match="application id 0x4d2"):
        await jobqueue.connect(url_for(path))
    assert snapshot(tmp_path) == before


async def test_directory_instead_of_file(tmp_path: Path) -> None:
    """A path naming a directory is refused."""
    with pytest.raises(BackendUnavailableError, match="directory"):
        await jobqueue.connect(url_for(tmp_path))


READ_ONLY_CHILD = """
import asyncio, os, sys, jobqueue, jobqueue_sqlite
jobqueue.installed_backends()
if os.geteuid() == 0:
    os.setgid(65534)
    os.setuid(65534)
async def main():
    try:
        await jobqueue.connect(sys.argv[1])
    except jobqueue.BackendUnavailableError as exc:
        print("refused:", exc)
asyncio.run(main())
"""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user may enter (for a child that drops root privileges)."""
    path = Path(tempfile.mkdtemp(prefix="jobqueue-sqlite-"))
    path.chmod(0o755)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def test_read_only_file_is_refused_untouched(shared_dir: Path) -> None:
    """A jobqueue file the user may not write is refused with a clear error and not changed.

    Root may write any file, so the attempt runs in a child that drops root for ``nobody``.
    """
    path = shared_dir / "q.db"
    asyncio.run(_make_queue_file(url_for(path)))
    path.chmod(0o444)
    before = snapshot(shared_dir)
    result = subprocess.run(
        [sys.executable, "-c", READ_ONLY_CHILD, url_for(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "refused:" in result.stdout and "not readable and writable" in result.stdout
    assert snapshot(shared_dir) == before


async def _make_queue_file(url: str) -> None:
    async with jobqueue.connect(url) as queue:
        await queue.create_job(CreateJobRequest(kind="k"))


# ---------------------------------------------------------------- values round-trip


async def test_times_round_trip_to_the_microsecond_in_utc(tmp_path: Path) -> None:
    """Datetimes come back aware, in UTC, the same instant to the microsecond, also for
    instants before 1970 and from other time zones."""
    plus_five = timezone(timedelta(hours=5, minutes=30))
    moments = [
        datetime(2031, 5, 6, 7, 8, 9, 123457, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2030, 1, 1, 12, 0, 0, 1, tzinfo=plus_five),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    clock = FakeClock(datetime(2030, 1, 1, 0, 0, 0, 654321, tzinfo=UTC))
    async with jobqueue.connect(url_for(tmp_path / "q.db"), clock=clock) as queue:
        for moment in moments:
            job = await queue.create_job(CreateJobRequest(kind="k", run_at=moment))
            stored = await queue.get_job(job.id)
            assert stored is not None and stored.run_at == moment
            assert stored.run_at.tzinfo is UTC and stored.created_at == clock()
            assert stored.created_at.tzinfo is UTC


async def test_json_and_ids_round_trip(tmp_path: Path) -> None:
    """Payload and stats come back equal (unicode, nesting, big ints, floats); ids are UUIDs."""
    payload = {"text": "héllo ✓ 😀", "nested": {"list": [1, 2.5, None, True]}, "big": 2**62}
    async with jobqueue.connect(url_for(tmp_path / "q.db")) as queue:
        job = await queue.create_job(CreateJobRequest(kind="ünïcode ✓", payload=payload))
        assert isinstance(job.id, UUID) and job.payload == payload
        claimed = await queue.claim_job("w")
        assert claimed is not None
        await queue.complete_job(claimed.id, {"out": payload})
        done = await queue.get_job(str(job.id))
        assert done is not None and done.stats == {"out": payload}
        assert done.kind == "ünïcode ✓"


async def test_creation_order_ties_follow_the_order_of_creation(tmp_path: Path) -> None:
    """Under a clock that does not move, list order and claim order follow creation order,
    within one create_jobs call and across calls."""
    clock = FakeClock()
    async with jobqueue.connect(url_for(tmp_path / "q.db"), clock=clock) as queue:
        first = await queue.create_jobs([CreateJobRequest(kind=f"a{i}") for i in range(30)])
        second = await queue.create_job(CreateJobRequest(kind="b"))
        created = [*first, second]
        listed = await queue.list_jobs(limit=100)
        assert [j.id for j in listed] == [j.id for j in reversed(created)]
        claimed = await queue.claim_jobs("w", 100)
        assert [j.id for j in claimed] == [j.id for j in created]


async def test_wait_for_jobs_wakes_when_this_handle_creates_a_job(tmp_path: Path) -> None:
    """An idle waiter returns soon after a job is created through the same handle."""
    async with jobqueue.connect(url_for(tmp_path / "q.db")) as queue:
        waiter = asyncio.create_task(queue.wait_for_jobs(60))
        await asyncio.sleep(0.05)
        await queue.create_job(CreateJobRequest(kind="k"))
        await asyncio.wait_for(waiter, 10)


async def test_wait_for_jobs_wakes_when_another_connection_commits(tmp_path: Path) -> None:
    """An idle waiter returns soon after another handle (another connection, as another
    process would have) creates a job, and after its timeout when nothing happens."""
    url = url_for(tmp_path / "q.db")
    async with jobqueue.connect(url) as waiting, jobqueue.connect(url) as other:
        started = time.monotonic()
        await waiting.wait_for_jobs(0.3)
        assert time.monotonic() - started >= 0.29
        waiter = asyncio.create_task(waiting.wait_for_jobs(60))
        await asyncio.sleep(0.2)
        assert not waiter.done()
        await other.create_job(CreateJobRequest(kind="k"))
        await asyncio.wait_for(waiter, 10)
        assert await waiting.claim_job("w") is not None


async def test_purge_deletes_in_chunks_and_counts_them_all(tmp_path: Path) -> None:
    """A purge larger than one chunk deletes every matching job and only those."""
    from jobqueue_sqlite import _sql

    clock = FakeClock()
    total = _sql.PURGE_CHUNK + 7
    async with jobqueue.connect(url_for(tmp_path / "q.db"), clock=clock) as queue:
        await queue.create_jobs([CreateJobRequest(kind="k") for _ in range(total + 1)])
        for job in await queue.claim_jobs("w", total):
            await queue.cancel_job(job.id)
        clock.advance(1)
        assert await queue.purge_jobs(clock(), [JobStatus.CANCELLED]) == total
        assert (await queue.counts())[JobStatus.PENDING] == 1
        assert sum((await queue.counts()).values()) == 1


class StepCounter:
    """Counts SQLite virtual-machine instructions (in hundreds) run on a connection."""

    def __init__(self) -> None:
        self.hundreds = 0

    def __call__(self) -> int:
        self.hundreds += 1
        return 0


async def _claim_cost(queue: SQLiteJobQueue, counter: StepCounter) -> tuple[int, str]:
    before = counter.hundreds
    job = await queue.claim_job("w")
    assert job is not None
    return counter.hundreds - before, job.kind


async def test_claim_cost_stays_flat_with_finished_and_future_jobs(tmp_path: Path) -> None:
    """A claim costs about the same with 10,000 finished jobs and 20,000 higher-priority jobs
    scheduled for later in the table as with none; once those fall due, the first claims
    take them and mark the rest due, after which claims are cheap again."""
    clock = FakeClock()
    async with jobqueue.connect(url_for(tmp_path / "q.db"), clock=clock) as queue:
        assert isinstance(queue, SQLiteJobQueue)
        counter = StepCounter()
        assert queue._db.loop_connection is not None
        queue._db.loop_connection.set_progress_handler(counter, 100)
        await queue.create_jobs([CreateJobRequest(kind="fresh") for _ in range(10)])
        baseline, kind = await _claim_cost(queue, counter)
        assert kind == "fresh"

        later = clock() + timedelta(days=1)
        await queue.create_jobs(
            CreateJobRequest(kind="later", priority=10, run_at=later) for _ in range(20_000)
        )
        await queue.create_jobs(CreateJobRequest(kind="d", queue="old") for _ in range(10_000))
        for job in await queue.claim_jobs("w", 10_000, queues=["old"]):
            await queue.complete_job(job.id, {})
        await queue.create_jobs([CreateJobRequest(kind="fresh") for _ in range(10)])
        cost, kind = await _claim_cost(queue, counter)
        assert kind == "fresh"
        assert cost <= 2 * baseline + 10

        clock.set(later)
        kinds = [(await _claim_cost(queue, counter))[1] for _ in range(3)]
        assert kinds == ["later"] * 3
        cost, kind = await _claim_cost(queue, counter)
        assert kind == "later" and cost <= 2 * baseline + 10


# ------------------------------------------------------------- coalesced outcomes


async def test_concurrent_outcomes_each_keep_their_own_guard(tmp_path: Path) -> None:
    """Outcome calls made at once (written together, here because they wait behind a
    transaction of the handle) give every call the result it would get alone: each fenced
    call checks its own worker and attempt, a second outcome for the same job is refused,
    unknown ids raise, and each job ends as its call said."""
    clock = FakeClock()
    async with jobqueue.connect(url_for(tmp_path / "q.db"), clock=clock) as queue:
        assert isinstance(queue, SQLiteJobQueue)
        statements: list[str] = []
        await queue._db.connection.set_trace_callback(statements.append)
        jobs = await queue.create_jobs([CreateJobRequest(kind=f"k{i}") for i in range(8)])
        pending_one = jobs[7]
        claimed = await queue.claim_jobs("w", 7)
        a, b, c, d, e, f, g = claimed
        later = clock() + timedelta(minutes=1)
        calls = [
            queue.complete_job(a.id, {"n": 1}, worker_id="w", attempt=1),
            queue.complete_job(a.id, {"n": 2}),
            queue.fail_job(b.id, "final"),
            queue.fail_job(c.id, "again", later, worker_id="w"),
            queue.cancel_job(d.id, {"part": 1}),
            queue.cancel_job(e.id),
            queue.complete_job(f.id, {}, worker_id="other"),
            queue.complete_job(g.id, {}, attempt=2),
            queue.cancel_job(pending_one.id),
            queue.complete_job(UUID(int=7), {}),
        ]
        async with queue._db.transaction():
            gathered = asyncio.gather(*calls, return_exceptions=True)
            await asyncio.sleep(0.05)
        results = await gathered
        names = [type(r).__name__ if r is not None else None for r in results]
        assert names == [
            None,
            "InvalidTransitionError",
            None,
            None,
            None,
            None,
            "InvalidTransitionError",
            "InvalidTransitionError",
            None,
            "JobNotFoundError",
        ]
        assert any("UPDATE jobqueue_jobs AS j" in s for s in statements)

        done_a, done_b, done_c, done_d, done_e, done_f, done_g, done_p = [
            await queue.get_job(job.id) for job in (a, b, c, d, e, f, g, pending_one)
        ]
        assert done_a is not None and done_a.status == "completed" and done_a.stats == {"n": 1}
        assert done_b is not None and done_b.status == "failed" and done_b.error == "final"
        assert done_b.finished_at == clock() and done_b.worker_id == "w"
        assert done_c is not None and done_c.status == "pending" and done_c.worker_id is None
        assert done_c.next_retry_at == later and done_c.error == "again"
        assert done_d is not None and done_d.status == "cancelled" and done_d.stats == {"part": 1}
        assert done_e is not None and done_e.status == "cancelled" and done_e.stats is None
        assert done_f is not None and done_f.status == "running"
        assert done_g is not None and done_g.status == "running"
        assert done_p is not None and done_p.status == "cancelled"
        assert await queue.claim_job("w2") is None
        clock.set(later)
        retried = await queue.claim_job("w2")
        assert retried is not None and retried.id == c.id and retried.attempts == 2


async def test_texts_with_nul_characters_are_stored_exactly(tmp_path: Path) -> None:
    """Kinds, queues, errors and worker ids holding NUL characters round-trip unchanged,
    alone and in batches, also when their outcomes are written at once."""
    async with jobqueue.connect(url_for(tmp_path / "q.db")) as queue:
        one = await queue.create_job(CreateJobRequest(kind="a\x00b", queue="q\x00"))
        many = await queue.create_jobs(
            [CreateJobRequest(kind=f"k\x00{i}", queue="q\x00") for i in range(3)]
        )
        listed = {job.id: job for job in await queue.list_jobs()}
        assert listed[one.id].kind == "a\x00b" and listed[one.id].queue == "q\x00"
        assert [listed[job.id].kind for job in many] == ["k\x000", "k\x001", "k\x002"]
        claimed = await queue.claim_jobs("w\x00", 4, queues=["q\x00"])
        assert len(claimed) == 4
        await asyncio.gather(
            queue.fail_job(claimed[0].id, "bad\x00byte", worker_id="w\x00"),
            queue.fail_job(claimed[1].id, "plain", worker_id="w\x00"),
            queue.complete_job(claimed[2].id, {"x": "\x00"}),
            queue.fail_job(claimed[3].id, "also\x00bad"),
        )
        errors = [(await queue.get_job(job.id)) for job in claimed]
        assert [job.error if job else None for job in errors] == [
            "bad\x00byte",
            "plain",
            None,
            "also\x00bad",
        ]
        assert errors[2] is not None and errors[2].stats == {"x": "\x00"}


async def test_statements_wait_while_a_transaction_holds_the_connection(tmp_path: Path) -> None:
    """A statement issued while a multi-statement transaction holds the handle's connection
    runs after it commits, never inside it: a rollback does not take it along."""
    async with jobqueue.connect(url_for(tmp_path / "q.db")) as queue:
        assert isinstance(queue, SQLiteJobQueue)
        entered = asyncio.Event()
        release = asyncio.Event()

        async def rolled_back() -> None:
            async with queue._db.transaction() as run:
                await run("DELETE FROM jobqueue_jobs", ())
                entered.set()
                await release.wait()
                raise RuntimeError("roll back")

        holder = asyncio.create_task(rolled_back())
        await entered.wait()
        creating = asyncio.create_task(queue.create_job(CreateJobRequest(kind="k")))
        await asyncio.sleep(0.05)
        assert not creating.done()
        release.set()
        with pytest.raises(RuntimeError):
            await holder
        job = await creating
        assert await queue.get_job(job.id) == job


# ------------------------------------------------------------------ the write lock


async def test_an_operation_waits_for_the_write_lock_and_then_succeeds(tmp_path: Path) -> None:
    """While another connection holds the write lock an operation waits (no "database is
    locked"), and goes through once the lock is released."""
    path = tmp_path / "q.db"
    async with jobqueue.connect(url_for(path), timeout=30) as queue:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        creating = asyncio.create_task(queue.create_job(CreateJobRequest(kind="k")))
        await asyncio.sleep(0.3)
        assert not creating.done()
        other.execute("COMMIT")
        other.close()
        job = await asyncio.wait_for(creating, 30)
        assert await queue.get_job(job.id) == job


async def test_an_operation_gives_up_after_the_timeout_changing_nothing(tmp_path: Path) -> None:
    """When the write lock stays taken longer than ``timeout`` the operation raises
    BackendUnavailableError saying the database is locked, after about that long, and
    writes nothing; reads still work meanwhile (WAL)."""
    path = tmp_path / "q.db"
    async with jobqueue.connect(url_for(path), timeout=0.4) as queue:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError, match=r"database is locked.*timeout"):
                await queue.create_job(CreateJobRequest(kind="k"))
            assert time.monotonic() - started >= 0.35
            assert (await queue.counts())[JobStatus.PENDING] == 0
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert await queue.claim_job("w") is None


async def test_a_failing_change_does_not_fail_the_changes_written_with_it(
    tmp_path: Path,
) -> None:
    """When a coalesced write fails for a reason other than the lock (here a value over
    SQLite's length limit), the changes are written one by one: only the culprit fails."""
    async with jobqueue.connect(url_for(tmp_path / "q.db")) as queue:
        assert isinstance(queue, SQLiteJobQueue)
        await queue.create_jobs([CreateJobRequest(kind="k") for _ in range(4)])
        jobs = await queue.claim_jobs("w", 4)
        assert queue._db.loop_connection is not None
        queue._db.loop_connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 400)
        connection = queue._db.connection
        # aiosqlite has no setlimit: run it on the connection's own thread.
        set_limit = partial(connection._conn.setlimit, sqlite3.SQLITE_LIMIT_LENGTH, 400)
        await connection._execute(set_limit)  # type: ignore[no-untyped-call]
        # Calls waiting behind a transaction of the handle are then written together.
        async with queue._db.transaction():
            gathered = asyncio.gather(
                *(queue.complete_job(job.id, {"n": i}) for i, job in enumerate(jobs[:3])),
                queue.complete_job(jobs[3].id, {"big": "x" * 500}),
                return_exceptions=True,
            )
            await asyncio.sleep(0.05)
        results = await gathered
        assert results[:3] == [None, None, None]
        assert isinstance(results[3], BackendUnavailableError)
        assert "too big" in str(results[3])
        counts = await queue.counts()
        assert counts[JobStatus.COMPLETED] == 3 and counts[JobStatus.RUNNING] == 1


async def test_coalesced_changes_give_up_together_when_the_lock_stays_taken(
    tmp_path: Path,
) -> None:
    """Changes written together while another connection keeps the write lock all raise
    BackendUnavailableError after about one timeout (not one timeout each), changing nothing."""
    path = tmp_path / "q.db"
    async with jobqueue.connect(url_for(path), timeout=0.5) as queue:
        await queue.create_jobs([CreateJobRequest(kind="k") for _ in range(4)])
        jobs = await queue.claim_jobs("w", 4)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            results = await asyncio.gather(
                *(queue.complete_job(job.id, {}) for job in jobs), return_exceptions=True
            )
            elapsed = time.monotonic() - started
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert all(isinstance(r, BackendUnavailableError) for r in results)
        assert elapsed < 1.9
        assert (await queue.counts())[JobStatus.RUNNING] == 4


async def test_many_tasks_sharing_one_handle_keep_every_outcome(tmp_path: Path) -> None:
    """Eight tasks share one handle, claim jobs and end each attempt differently (complete,
    retry later, fail, cancel, release) with fenced calls that are written together: every
    fenced call of the attempt's holder succeeds, every job ends as its last call said, and
    attempts add up."""
    clock = FakeClock()
    total = 400
    async with jobqueue.connect(url_for(tmp_path / "q.db"), clock=clock) as queue:
        jobs = await queue.create_jobs([CreateJobRequest(kind="k") for _ in range(total)])
        final: dict[UUID, str] = {}
        claims: Counter[UUID] = Counter()
        releases: Counter[UUID] = Counter()

        async def work(n: int) -> None:
            worker = f"t{n}"
            while batch := await queue.claim_jobs(worker, 1 + n % 3):
                ends = []
                for job in batch:
                    claims[job.id] += 1
                    choice = (job.id.int + claims[job.id]) % 5
                    if choice == 0 and claims[job.id] < 3:
                        ends.append(queue.fail_job(job.id, "later", clock(), worker_id=worker))
                    elif choice == 1 and claims[job.id] < 3:
                        releases[job.id] += 1
                        ends.append(release(job.id))
                    elif choice == 2:
                        final[job.id] = "failed"
                        ends.append(queue.fail_job(job.id, "no", attempt=job.attempts))
                    elif choice == 3:
                        final[job.id] = "cancelled"
                        ends.append(queue.cancel_job(job.id, {"by": worker}, worker_id=worker))
                    else:
                        final[job.id] = "completed"
                        ends.append(
                            queue.complete_job(
                                job.id, {"n": n}, worker_id=worker, attempt=job.attempts
                            )
                        )
                await asyncio.gather(*ends)

        async def release(job_id: UUID) -> None:
            assert await queue.release_job(job_id)

        await asyncio.gather(*(work(n) for n in range(8)))
        counts = await queue.counts()
        assert counts[JobStatus.PENDING] == counts[JobStatus.RUNNING] == 0
        for job in jobs:
            stored = await queue.get_job(job.id)
            assert stored is not None and stored.status == final[job.id]
            assert stored.attempts == claims[job.id] - releases[job.id]


async def test_a_waiting_operation_gets_the_write_lock_soon_after_it_frees(
    tmp_path: Path,
) -> None:
    """A writer refused the lock asks again within an eighth of the time it has waited
    (at least every millisecond or two), so after a short hold, like another process's
    statement, it goes through a few milliseconds after the lock frees at most."""
    path = tmp_path / "q.db"
    delays: list[float] = []
    async with jobqueue.connect(url_for(path)) as queue:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            for _ in range(15):
                other.execute("BEGIN IMMEDIATE")
                creating = asyncio.create_task(queue.create_job(CreateJobRequest(kind="k")))
                await asyncio.sleep(0.01)
                assert not creating.done()
                other.execute("COMMIT")
                freed = time.perf_counter()
                await asyncio.wait_for(creating, 30)
                delays.append(time.perf_counter() - freed)
        finally:
            other.close()
    assert sorted(delays)[len(delays) // 2] < 0.004, delays


async def test_many_calls_waiting_for_the_lock_ask_for_it_one_at_a_time(
    tmp_path: Path,
) -> None:
    """While the lock stays taken, the calls of one handle waiting for it take turns
    asking: twenty waiting calls cost the process about what one does."""
    path = tmp_path / "q.db"
    async with jobqueue.connect(url_for(path)) as queue:
        assert isinstance(queue, SQLiteJobQueue)
        asked = 0
        run = queue._db._outside_transactions

        async def counting(sql: str, parameters: Any) -> Any:
            nonlocal asked
            asked += 1
            return await run(sql, parameters)

        queue._db._outside_transactions = counting  # type: ignore[method-assign]
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            calls = [
                asyncio.create_task(queue.create_job(CreateJobRequest(kind="k"))) for _ in range(20)
            ]
            await asyncio.sleep(0.5)
            waiting = asked
        finally:
            other.execute("COMMIT")
            other.close()
        await asyncio.gather(*calls)
    # Each call asks once on arrival; after that a single asker, whose pauses grow
    # to an eighth of the time waited: about 40 more in half a second, not 20 x 40.
    assert waiting < 20 + 150, waiting


async def test_a_transaction_and_a_call_both_waiting_for_the_lock_both_go_through(
    tmp_path: Path,
) -> None:
    """A call whose turn it is to ask for the lock may wait for a transaction of the
    handle; the transaction, waiting for the lock too, does not wait for that turn."""
    path = tmp_path / "q.db"
    async with jobqueue.connect(url_for(path), timeout=30) as queue:
        assert isinstance(queue, SQLiteJobQueue)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        creating = asyncio.create_task(queue.create_job(CreateJobRequest(kind="k")))
        await asyncio.sleep(0.05)

        async def in_a_transaction() -> None:
            async with queue._db.transaction() as run:
                await run("SELECT 1", ())

        transaction = asyncio.create_task(in_a_transaction())
        await asyncio.sleep(0.05)
        other.execute("COMMIT")
        other.close()
        await asyncio.wait_for(asyncio.gather(creating, transaction), 5)
