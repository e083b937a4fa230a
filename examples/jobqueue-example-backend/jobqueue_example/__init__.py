"""``example://PATH``: a jobqueue backend keeping its jobs in one JSON file.

Registered through the ``jobqueue`` entry-point group (see pyproject.toml), so
installing this package is all it takes for ``jobqueue.connect("example://...")``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jobqueue
from jobqueue.backend import reject_unknown_options

from ._queue import FileJobQueue

__all__ = ["FileJobQueue", "open_example"]


@jobqueue.hookimpl
def jobqueue_register_backends(register: Any) -> None:
    register("example", open_example, capabilities={"persistent", "concurrent_processes"})


def open_example(
    url: str,
    *,
    clock: Any = None,
    lease: timedelta = timedelta(minutes=5),
    migrate: bool = True,
    **options: Any,
) -> FileJobQueue:
    """Open the queue stored in the file the URL names; it is created on first write."""
    reject_unknown_options("example", options, ())
    path = url.split("://", 1)[1]
    if not path:
        raise jobqueue.InvalidRequestError(
            "example:// needs a file path, e.g. example:///tmp/q.json"
        )
    return FileJobQueue(path, clock=clock, lease=lease)
