"""The ``memory://`` backend: ``memory://`` is a fresh queue, ``memory://NAME`` one shared
by every handle with that name in this process. Nothing survives the process."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jobqueue
from jobqueue.backend import reject_unknown_options

from ._queue import MemoryJobQueue, store_for

__all__ = ["MemoryJobQueue", "open_memory"]


@jobqueue.hookimpl
def jobqueue_register_backends(register: Any) -> None:
    register("memory", open_memory, capabilities={"listen_notify"})


def open_memory(
    url: str,
    *,
    clock: Any = None,
    lease: timedelta = timedelta(minutes=5),
    migrate: bool = True,
    **options: Any,
) -> MemoryJobQueue:
    """Open ``memory://`` or ``memory://NAME``. Takes no options of its own."""
    parts = urlsplit(url)
    reject_unknown_options("memory", {**options, **dict(parse_qsl(parts.query))}, ())
    name = parts.netloc + parts.path
    return MemoryJobQueue(store_for(name), name, clock=clock, lease=lease)
