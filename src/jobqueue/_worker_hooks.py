"""Hook specifications a plugin implements to observe workers (metrics, tracing).

Implement any of them with ``@jobqueue.hookimpl`` in a plugin registered
through the ``jobqueue`` entry-point group or :func:`jobqueue.register_plugin`.
Hooks run on the worker's event loop, in the middle of its hot path: they must
be quick and must not block. An exception raised by a hook is logged and
otherwise ignored (the other implementations of that call may be skipped).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from ._models import Job
    from ._worker import Worker

hookspec = pluggy.HookspecMarker("jobqueue")

JOB_OUTCOMES = ("completed", "retried", "failed", "lost", "released")
"""What ``jobqueue_job_finished`` reports as ``outcome``:

- ``completed``: the handler returned and the job was completed;
- ``retried``: the attempt failed and the job is pending again, due at ``next_retry_at``;
- ``failed``: the attempt failed and the job is failed for good;
- ``lost``: the job was taken away while running (cancelled, or rescued after
  its lease expired) or the queue refused the outcome; nothing was recorded;
- ``released``: the worker shut down before the handler finished; the job was
  handed back to the queue to run again.
"""


class WorkerHooks:
    """Hooks :class:`jobqueue.Worker` calls on its event loop; must be quick and not block."""

    @hookspec
    def jobqueue_worker_started(self, worker: Worker) -> None:
        """``worker`` (see ``worker.worker_id``) begins :meth:`~jobqueue.Worker.run`."""

    @hookspec
    def jobqueue_worker_stopped(self, worker: Worker) -> None:
        """``worker`` is about to return from :meth:`~jobqueue.Worker.run`; no job runs."""

    @hookspec
    def jobqueue_job_started(self, worker_id: str, job: Job) -> None:
        """A handler is about to run ``job`` (as claimed: ``job.attempts`` is this attempt)."""

    @hookspec
    def jobqueue_job_finished(
        self,
        worker_id: str,
        job: Job,
        outcome: str,
        duration: float,
        error: BaseException | None,
    ) -> None:
        """The attempt at ``job`` ended; ``outcome`` is one of :data:`JOB_OUTCOMES`.

        ``duration`` is the handler's wall time in seconds; ``error`` the
        exception that failed the attempt (``None`` when it did not fail).
        """
