"""The schema, its migrations, and the checks made when a file is opened.

A jobqueue database is marked twice: SQLite's ``application_id`` header field
holds :data:`APPLICATION_ID`, and the ``jobqueue_meta`` table holds the schema
version. A file with tables but without both marks belongs to someone else
and is never written to. Migrations run inside ``BEGIN IMMEDIATE`` and re-read
the version there, so processes opening a new file at once migrate it once.

Times are integer microseconds since the Unix epoch (UTC), ids canonical UUID
text, payload and stats JSON text. ``seq`` (the rowid) is the creation order.

``ready_at`` is when a job may first be claimed (the later of ``run_at`` and
``next_retry_at``; NULL when neither is set) and ``due`` whether it was past
when the job last became pending. Claims walk the claim-order index over due
jobs, so pending jobs dated in the future never slow them down; jobs that
fell due since are found through ``jobqueue_jobs_scheduled`` and marked due.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from jobqueue import BackendUnavailableError
from jobqueue.backend import redact_url

from ._db import Database, Run

__all__ = ["APPLICATION_ID", "LATEST_VERSION", "MIGRATIONS", "prepare"]

APPLICATION_ID = 0x4A6F6251  # "JobQ"
MIN_SQLITE = (3, 35, 0)  # RETURNING

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # version 1
    (
        """
        CREATE TABLE jobqueue_meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )
        """,
        """
        CREATE TABLE jobqueue_jobs (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            queue TEXT NOT NULL,
            priority INTEGER NOT NULL,
            status TEXT NOT NULL CHECK (
                status IN ('pending', 'running', 'completed', 'failed', 'cancelled')
            ),
            attempts INTEGER NOT NULL,
            max_attempts INTEGER NOT NULL,
            worker_id TEXT,
            error TEXT,
            stats TEXT,
            run_at INTEGER,
            next_retry_at INTEGER,
            ready_at INTEGER,
            due INTEGER NOT NULL,
            lease_expires_at INTEGER,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            started_at INTEGER,
            finished_at INTEGER
        )
        """,
        # Claim order over pending jobs that were due when last looked at;
        # covering, so that skipping jobs of other queues never reads the table.
        """
        CREATE INDEX jobqueue_jobs_claim ON jobqueue_jobs (
            priority DESC, (next_retry_at IS NOT NULL), created_at, seq,
            ready_at, next_retry_at, queue, status, due
        ) WHERE status = 'pending' AND due = 1
        """,
        # Pending jobs that were not due yet when written, by when they will be.
        """
        CREATE INDEX jobqueue_jobs_scheduled ON jobqueue_jobs (ready_at)
        WHERE status = 'pending' AND due = 0
        """,
        "CREATE INDEX jobqueue_jobs_worker ON jobqueue_jobs (worker_id) WHERE status = 'running'",
        """
        CREATE INDEX jobqueue_jobs_lease ON jobqueue_jobs (lease_expires_at)
        WHERE status = 'running'
        """,
        "CREATE INDEX jobqueue_jobs_created ON jobqueue_jobs (created_at, seq)",
    ),
)
LATEST_VERSION = len(MIGRATIONS)


@dataclass(frozen=True, slots=True)
class _State:
    application_id: int
    tables: tuple[str, ...]
    version: int | None


def _how_to_migrate(url: str) -> str:
    return (
        f"run `jobqueue migrate --url '{redact_url(url)}'` or open it with "
        "jobqueue.connect(url, migrate=True)"
    )


async def _read_state(run: Run) -> _State:
    # The mark and the tables are read by one statement, so from one snapshot: a
    # migration another process commits in between cannot show tables without the mark.
    rows = await run(
        "SELECT (SELECT application_id FROM pragma_application_id), "
        "(SELECT json_group_array(name) FROM "
        "(SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name))",
        (),
    )
    application_id = int(rows[0][0])
    tables = tuple(str(name) for name in json.loads(rows[0][1]))
    version = None
    if application_id == APPLICATION_ID and "jobqueue_meta" in tables:
        found = await run("SELECT value FROM jobqueue_meta WHERE key = 'schema_version'", ())
        if found:
            version = int(found[0][0])
    return _State(application_id, tables, version)


def _refuse_foreign(state: _State, url: str, path: str) -> None:
    if state.version is not None or (state.application_id == 0 and not state.tables):
        return
    what = (
        f"tables {', '.join(state.tables)}"
        if state.tables
        else f"application id {state.application_id:#x}"
    )
    raise BackendUnavailableError(
        f"{path} is a SQLite database of another application ({what}), not a jobqueue "
        f"database; refusing to touch it. Point {redact_url(url)} at a file of its own."
    )


async def prepare(db: Database, url: str, path: str, *, migrate: bool, synchronous: str) -> None:
    """Check the file is a jobqueue database (or empty), switch to WAL, migrate if allowed.

    Raises ``BackendUnavailableError`` for a file that is not SQLite, another
    application's database, a schema newer than this library, or (with
    ``migrate=False``) a missing or old schema. Nothing is written before the
    file is known to be empty or a jobqueue database.
    """
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise BackendUnavailableError(
            f"the sqlite backend needs SQLite >= {'.'.join(map(str, MIN_SQLITE))}, "
            f"this Python has {sqlite3.sqlite_version}"
        )
    try:
        state = await _read_state(db.fetch)
    except BackendUnavailableError as exc:
        raise BackendUnavailableError(
            f"{path} is not a usable SQLite database (not SQLite, or corrupt): {exc.__cause__}"
        ) from exc
    _refuse_foreign(state, url, path)
    _refuse_newer(state, path)
    if state.version != LATEST_VERSION and not migrate:
        what = "has no jobqueue schema" if state.version is None else "has an old schema"
        raise BackendUnavailableError(
            f"{path} {what} (version {state.version or 0}, this jobqueue needs "
            f"{LATEST_VERSION}); {_how_to_migrate(url)}"
        )
    mode = (await db.fetch("PRAGMA journal_mode = WAL"))[0][0]
    if str(mode).lower() != "wal":
        raise BackendUnavailableError(
            f"{path}: SQLite could not switch to WAL mode (it reports {mode!r}); the sqlite "
            "backend needs a local file system"
        )
    await db.fetch(f"PRAGMA synchronous = {synchronous.upper()}")
    if state.version != LATEST_VERSION:
        await _migrate(db, url, path)


def _refuse_newer(state: _State, path: str) -> None:
    if state.version is not None and state.version > LATEST_VERSION:
        raise BackendUnavailableError(
            f"{path} has schema version {state.version}, newer than this jobqueue knows "
            f"({LATEST_VERSION}); upgrade jobqueue"
        )


async def _migrate(db: Database, url: str, path: str) -> None:
    async with db.transaction() as run:
        state = await _read_state(run)
        _refuse_foreign(state, url, path)
        _refuse_newer(state, path)
        current = state.version or 0
        if current == 0:
            await run(f"PRAGMA application_id = {APPLICATION_ID}", ())
        for statements in MIGRATIONS[current:]:
            for statement in statements:
                await run(statement, ())
        await run(
            "INSERT INTO jobqueue_meta (key, value) VALUES ('schema_version', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(LATEST_VERSION),),
        )
