"""The PostgreSQL backend: ``postgresql://``, ``postgres://`` and ``postgresql+psycopg://`` URLs.

Claims use ``FOR UPDATE SKIP LOCKED``, so any number of worker processes on
any number of hosts may share one database. Idle workers are woken by
``LISTEN``/``NOTIFY`` with polling as the fallback. psycopg 3 is an optional
dependency (``pip install "jobqueue[postgres]"``): importing this package does
not import it, so ``jobqueue backends`` lists the backend even without it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import jobqueue
from jobqueue import BackendUnavailableError

from ._options import SCHEMES, parse_options

if TYPE_CHECKING:
    from ._queue import PostgresJobQueue

__all__ = ["PostgresJobQueue", "open_postgres"]


def __getattr__(name: str) -> Any:
    # PostgresJobQueue imports psycopg: load it on first use only.
    if name == "PostgresJobQueue":
        from ._queue import PostgresJobQueue

        return PostgresJobQueue
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


CAPABILITIES = frozenset({"concurrent_processes", "persistent", "listen_notify"})


@jobqueue.hookimpl
def jobqueue_register_backends(register: Any) -> None:
    for scheme in SCHEMES:
        register(scheme, open_postgres, capabilities=CAPABILITIES)


async def open_postgres(
    url: str,
    *,
    clock: Any = None,
    lease: timedelta = timedelta(minutes=5),
    migrate: bool = True,
    **options: Any,
) -> PostgresJobQueue:
    """Open (and with ``migrate`` create or upgrade) the queue at ``url``.

    Options, as keywords or URL query parameters: ``schema``, ``min_size``,
    ``max_size``, ``connect_timeout``, ``timeout``, ``notify``,
    ``prepared_statements``; other query parameters go to libpq. Raises
    ``InvalidRequestError`` for an unknown or invalid option and
    ``BackendUnavailableError`` when psycopg is missing, the server cannot be
    reached or the schema is missing or old with ``migrate=False``.
    """
    settings = parse_options(url, options)
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        raise BackendUnavailableError(
            'the PostgreSQL backend needs psycopg 3: pip install "jobqueue[postgres]"'
        ) from None
    from ._queue import PostgresJobQueue

    return await PostgresJobQueue.open(settings, clock=clock, lease=lease, migrate=migrate)
