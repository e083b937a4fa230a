"""The tables and indexes, as numbered migrations applied under an advisory lock.

``migrate`` is idempotent and safe when many processes connect at once: each
takes a transaction-scoped advisory lock keyed by the schema name, so one
applies what is missing and the others then find nothing to do. The version
check without the lock makes the common case (schema current) one query.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection, sql

from jobqueue import BackendUnavailableError

# A constant first half of every advisory lock key, so ours never collide with an app's.
_LOCK_CLASS = 0x6A6F6271  # "jobq"

_MIGRATIONS: tuple[str, ...] = (
    # 1: the jobs table and its indexes.
    """
    CREATE TABLE {schema}.jobs (
        seq bigint GENERATED ALWAYS AS IDENTITY,
        id uuid PRIMARY KEY,
        kind text NOT NULL,
        payload jsonb NOT NULL,
        queue text NOT NULL,
        priority integer NOT NULL,
        status text NOT NULL CONSTRAINT jobs_status_check
            CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
        attempts integer NOT NULL,
        max_attempts integer NOT NULL,
        worker_id text,
        error text,
        stats jsonb,
        run_at timestamptz,
        next_retry_at timestamptz,
        lease_expires_at timestamptz,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        started_at timestamptz,
        finished_at timestamptz,
        ready boolean NOT NULL
    );
    -- Claim order over claimable rows only: finished rows and future-dated
    -- jobs or retries are not in it, so a claim reads the head of this index.
    CREATE INDEX jobs_claim_order ON {schema}.jobs
        (priority DESC, (next_retry_at IS NOT NULL), created_at, seq)
        WHERE status = 'pending' AND ready;
    -- Future-dated pending rows by the time they fall due (for promotion).
    CREATE INDEX jobs_not_yet_due ON {schema}.jobs ((greatest(run_at, next_retry_at)))
        WHERE status = 'pending' AND NOT ready;
    CREATE INDEX jobs_running_by_worker ON {schema}.jobs (worker_id)
        WHERE status = 'running';
    CREATE INDEX jobs_running_by_lease ON {schema}.jobs (lease_expires_at)
        WHERE status = 'running';
    CREATE INDEX jobs_creation_order ON {schema}.jobs (created_at, seq);
    CREATE INDEX jobs_status_creation_order ON {schema}.jobs (status, created_at, seq);
    """,
    # 2: one index fewer for every write to maintain: listing all jobs merges the
    # per-status ranges of jobs_status_creation_order instead.
    """
    DROP INDEX IF EXISTS {schema}.jobs_creation_order;
    """,
)
LATEST_VERSION = len(_MIGRATIONS)


async def schema_version(conn: AsyncConnection[Any], schema: str) -> int:
    """The applied version of ``schema``: 0 when it has no jobqueue tables."""
    cur = await conn.execute(
        "SELECT to_regclass(format('%%I.%%I', %s::text, 'jobqueue_migrations')) IS NOT NULL",
        (schema,),
    )
    row = await cur.fetchone()
    if row is None or not row[0]:
        return 0
    cur = await conn.execute(
        sql.SQL("SELECT coalesce(max(version), 0) FROM {}").format(
            sql.Identifier(schema, "jobqueue_migrations")
        )
    )
    row = await cur.fetchone()
    return int(row[0]) if row is not None else 0


async def migrate(conn: AsyncConnection[Any], schema: str, display_url: str) -> None:
    """Create or upgrade ``schema`` to :data:`LATEST_VERSION` (``conn`` must be in autocommit)."""
    version = await schema_version(conn, schema)
    _check_not_newer(version, schema, display_url)
    if version == LATEST_VERSION:
        return
    ident = sql.Identifier(schema)
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s::text))", (_LOCK_CLASS, schema)
        )
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(sql.Identifier(schema, "jobqueue_migrations"))
        )
        version = await schema_version(conn, schema)
        _check_not_newer(version, schema, display_url)
        for number in range(version + 1, LATEST_VERSION + 1):
            await conn.execute(sql.SQL(_MIGRATIONS[number - 1]).format(schema=ident))
            await conn.execute(
                sql.SQL("INSERT INTO {} (version) VALUES (%s)").format(
                    sql.Identifier(schema, "jobqueue_migrations")
                ),
                (number,),
            )


async def require_current(conn: AsyncConnection[Any], schema: str, display_url: str) -> None:
    """Raise ``BackendUnavailableError`` unless ``schema`` is at :data:`LATEST_VERSION`."""
    version = await schema_version(conn, schema)
    _check_not_newer(version, schema, display_url)
    if version < LATEST_VERSION:
        state = "does not exist" if version == 0 else f"is at version {version}"
        raise BackendUnavailableError(
            f"the jobqueue schema {schema!r} at {display_url} {state}; this jobqueue needs "
            f"version {LATEST_VERSION}. Migrate it: connect once with migrate=True, or run "
            f"`jobqueue --url URL migrate`"
        )


def _check_not_newer(version: int, schema: str, display_url: str) -> None:
    if version > LATEST_VERSION:
        raise BackendUnavailableError(
            f"the jobqueue schema {schema!r} at {display_url} is at version {version}, newer "
            f"than this jobqueue understands ({LATEST_VERSION}); upgrade jobqueue"
        )
