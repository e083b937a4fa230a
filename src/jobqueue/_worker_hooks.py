"""Hook specifications a plugin implements to observe workers (metrics, tracing)."""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("jobqueue")


class WorkerHooks:
    """Called by :class:`jobqueue.Worker` on the event loop; must not block or raise."""

    @hookspec
    def jobqueue_job_started(self, worker_id: str, job: Any) -> None:
        """A handler is about to run ``job`` (a ``Job``)."""

    @hookspec
    def jobqueue_job_finished(
        self, worker_id: str, job: Any, outcome: str, duration: float, error: BaseException | None
    ) -> None:
        """A handler finished ``job``: ``outcome`` is completed, retried, failed or cancelled."""
