"""The worker runtime: claims jobs, runs their handlers, records outcomes.

One :class:`Worker` runs up to ``concurrency`` handlers at once on one event
loop. Around them it keeps three duties: renew the leases of its jobs
(heartbeats), stop a handler whose job was taken away (cancelled or rescued),
and rescue jobs of dead workers. Every outcome it writes is fenced with its
``worker_id`` and the attempt number, so a result that arrives after the job
was taken away is refused by the queue and dropped here.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import inspect
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial
from typing import Any, TypeAlias

from . import _validation as check
from ._errors import InvalidRequestError, InvalidTransitionError, JobNotFoundError
from ._models import Completion, Job
from ._plugins import plugin_manager
from ._queue import JobQueue
from ._retry import DEFAULT_MAX_ERROR_CHARS, Permanent, RetryPolicy, format_error
from ._worker_completions import MAX_BACKOFF, CompletionWriter, write_backoff

__all__ = ["Handler", "Worker", "default_worker_id", "load_handlers"]

Handler: TypeAlias = Callable[[Job], Awaitable[Mapping[str, Any] | None] | Mapping[str, Any] | None]
"""``async def handler(job) -> Mapping | None``, or a plain function run in a thread."""

logger = logging.getLogger("jobqueue.worker")

CANCEL_WAIT = 5.0
"""Seconds a cancelled handler gets to unwind at shutdown before its job is released anyway."""

MIN_ERROR_CHARS = 256


def default_worker_id() -> str:
    """``host:pid:random``: unique per process and per call."""
    host = socket.gethostname()[:120] or "host"
    return f"{host}:{os.getpid()}:{secrets.token_hex(4)}"


class _Running:
    """A job this worker is executing; ``abandon`` says why its handler was cancelled.
    Once the handler returned, ``completion`` is what to record and ``duration`` how
    long the handler took."""

    __slots__ = ("abandon", "completion", "duration", "job", "recording", "task")

    completion: Completion
    duration: float

    def __init__(self, job: Job) -> None:
        self.job = job
        self.recording = False
        self.abandon: str | None = None
        self.task: asyncio.Task[None] | None = None


class Worker:
    """Runs handlers for the jobs of ``queue``, ``concurrency`` at a time.

    ``handlers`` maps a job ``kind`` to ``async def handler(job) -> Mapping |
    None`` (its return value becomes the job's ``stats``); a plain function
    runs in a thread of the worker's own pool. A job whose kind has no
    handler is failed at once with an error saying so: route kinds to
    workers with ``queues``.

    Guarantees:

    - at most ``concurrency`` handlers run at once; claims ask for exactly the
      free slots, in one batch; a slot is free again once its handler has returned,
      while its outcome is being written, so claiming overlaps recording; at
      most ``2 * concurrency`` jobs are held (running or recording) at once;
    - leases are renewed every ``heartbeat_interval`` seconds (default: a third
      of ``queue.lease``) while a handler runs; a job the heartbeat no longer
      returns (cancelled, rescued) has its handler cancelled and nothing is
      recorded for it;
    - every outcome is written fenced with ``worker_id`` and the attempt; a
      refused write (the job was taken away meanwhile) is logged and dropped;
    - a failed attempt is retried at ``queue.now() + retry.delay(attempts)``
      while ``attempts < max_attempts`` and the exception is retryable, else the
      job is ``failed``; the stored error is the traceback, at most
      ``max_error_chars`` characters;
    - ``rescue_expired_jobs()`` runs when :meth:`run` starts and every
      ``rescue_interval`` seconds;
    - on :meth:`stop`, SIGTERM or SIGINT no more jobs are claimed, running
      handlers get ``shutdown_grace`` seconds, then are cancelled and their
      jobs released to run again; a second stop ends the grace at once.

    Intervals and timeouts are seconds (a ``timedelta`` is accepted too).
    Raises ``InvalidRequestError`` for a bad argument.
    """

    def __init__(
        self,
        queue: JobQueue,
        handlers: Mapping[str, Handler],
        *,
        worker_id: str | None = None,
        concurrency: int = 10,
        retry: RetryPolicy | None = None,
        queues: Iterable[str] | None = None,
        rescue_interval: float | timedelta = 30.0,
        shutdown_grace: float | timedelta = 30.0,
        poll_interval: float | timedelta = 1.0,
        heartbeat_interval: float | timedelta | None = None,
        job_timeout: float | timedelta | None = None,
        max_error_chars: int = DEFAULT_MAX_ERROR_CHARS,
        handle_signals: bool = True,
    ) -> None:
        if not isinstance(queue, JobQueue):
            raise InvalidRequestError(f"queue must be a JobQueue, not {type(queue).__name__}")
        if retry is None:
            retry = RetryPolicy()
        elif not isinstance(retry, RetryPolicy):
            raise InvalidRequestError(f"retry must be a RetryPolicy, not {type(retry).__name__}")
        self._queue = queue
        self._handlers = _checked_handlers(handlers, "handlers")
        self._async = {kind: _is_async(h) for kind, h in self._handlers.items()}
        self._worker_id = (
            default_worker_id() if worker_id is None else check.name(worker_id, "worker_id")
        )
        self._concurrency = check.integer(concurrency, "concurrency", minimum=1, maximum=100_000)
        self._retry = retry
        self._queues = check.queues(queues)
        self._rescue_interval = _seconds(rescue_interval, "rescue_interval")
        self._shutdown_grace = _seconds(shutdown_grace, "shutdown_grace", allow_zero=True)
        self._poll_interval = _seconds(poll_interval, "poll_interval")
        lease = queue.lease.total_seconds()
        self._heartbeat_interval = (
            lease / 3
            if heartbeat_interval is None
            else _seconds(heartbeat_interval, "heartbeat_interval")
        )
        if self._heartbeat_interval >= lease:
            logger.warning(
                "worker %s: heartbeat_interval %.1fs is not shorter than the lease %.1fs; "
                "its jobs may be rescued while they run",
                self._worker_id,
                self._heartbeat_interval,
                lease,
            )
        self._job_timeout = None if job_timeout is None else _seconds(job_timeout, "job_timeout")
        self._max_error_chars = check.integer(
            max_error_chars, "max_error_chars", minimum=MIN_ERROR_CHARS, maximum=2**31 - 1
        )
        if not isinstance(handle_signals, bool):
            raise InvalidRequestError("handle_signals must be a bool")
        self._handle_signals = handle_signals
        hook = plugin_manager().hook
        self._hook = hook
        self._hook_job_started = hook.jobqueue_job_started
        self._hook_job_finished = hook.jobqueue_job_finished

        # A set, not a dict by id: a job released or rescued and claimed again by
        # this worker has its stale attempt here too until that handler unwinds.
        self._running: set[_Running] = set()
        # The newest entry per job id (as an int, which hashes faster than a UUID): a job
        # rescued from under this worker and claimed by it again must cancel its older handler.
        self._latest: dict[int, _Running] = {}
        self._handling = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = False
        self._stop_event = asyncio.Event()
        self._force_event = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._completions: CompletionWriter[_Running] = CompletionWriter(
            queue, self._worker_id, self._settle, self._complete_alone
        )

    @property
    def worker_id(self) -> str:
        """The id this worker claims, heartbeats and fences its outcomes with."""
        return self._worker_id

    @property
    def queue(self) -> JobQueue:
        return self._queue

    @property
    def concurrency(self) -> int:
        """The most handlers that run at once."""
        return self._concurrency

    def __repr__(self) -> str:
        return f"<jobqueue.Worker {self._worker_id} concurrency={self._concurrency}>"

    # ------------------------------------------------------------------ control

    async def run(self, *, drain: bool = False) -> None:
        """Work until :meth:`stop`, SIGTERM or SIGINT, then shut down gracefully.

        With ``drain=True`` also return as soon as nothing is claimable and no
        handler runs (jobs due later, such as retries, are left for a later run).
        Signal handlers are installed only when running on the main thread,
        and the previous ones are restored on return. If the task running this
        is cancelled, handlers are cancelled at once, their jobs released, and
        the cancellation propagates. One worker runs one :meth:`run` at a time.
        """
        if self._loop is not None:
            raise RuntimeError(f"{self!r} is already running")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop_event = asyncio.Event()
        self._force_event = asyncio.Event()
        self._slot_freed = asyncio.Event()
        if self._stop_requested:
            self._stop_event.set()
        restore_signals = self._install_signal_handlers(loop)
        self._call_hook("jobqueue_worker_started", worker=self)
        logger.info(
            "worker %s started: concurrency %d, queues %s",
            self._worker_id,
            self._concurrency,
            "all" if self._queues is None else ", ".join(self._queues),
            extra={"worker_id": self._worker_id},
        )
        heartbeat = loop.create_task(self._heartbeat_loop())
        rescue: asyncio.Task[None] | None = None
        try:
            await self._rescue_once()
            rescue = loop.create_task(self._rescue_loop())
            await self._claim_loop(drain)
        except asyncio.CancelledError:
            self._force_event.set()
            raise
        finally:
            if rescue is not None:
                rescue.cancel()
            try:
                await self._shutdown(heartbeat)
            finally:
                restore_signals()
                if self._executor is not None:
                    self._executor.shutdown(wait=False, cancel_futures=True)
                    self._executor = None
                self._loop = None
                self._stop_requested = False
                self._call_hook("jobqueue_worker_stopped", worker=self)
                logger.info(
                    "worker %s stopped", self._worker_id, extra={"worker_id": self._worker_id}
                )

    def stop(self) -> None:
        """Ask :meth:`run` to stop claiming and shut down; returns at once.

        Safe to call from any thread and from signal handlers. A second call
        while shutting down cancels the remaining handlers without waiting for
        the grace. Called before :meth:`run`, the next run stops right away.
        """
        loop = self._loop
        if loop is None:
            self._stop_requested = True
            return
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is loop:
            self._request_stop()
        else:
            loop.call_soon_threadsafe(self._request_stop)

    def _request_stop(self) -> None:
        if self._stop_event.is_set():
            if not self._force_event.is_set():
                logger.warning(
                    "worker %s: stop requested again; cancelling running jobs now",
                    self._worker_id,
                    extra={"worker_id": self._worker_id},
                )
            self._force_event.set()
        else:
            logger.info(
                "worker %s: stopping; no more jobs will be claimed",
                self._worker_id,
                extra={"worker_id": self._worker_id},
            )
        self._stop_event.set()
        self._slot_freed.set()

    def _install_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        if not self._handle_signals or threading.current_thread() is not threading.main_thread():
            return _nothing
        installed: list[tuple[signal.Signals, Any]] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            installed.append((sig, previous))

        def restore() -> None:
            for sig, previous in installed:
                loop.remove_signal_handler(sig)
                if previous is not None:
                    signal.signal(sig, previous)

        return restore

    def _on_signal(self, sig: signal.Signals) -> None:
        logger.info(
            "worker %s received %s", self._worker_id, sig.name, extra={"worker_id": self._worker_id}
        )
        self._request_stop()

    # ------------------------------------------------------------------ claiming

    async def _claim_loop(self, drain: bool) -> None:
        queue = self._queue
        failures = 0
        while not self._stop_event.is_set():
            free = min(
                self._concurrency - self._handling, 2 * self._concurrency - len(self._running)
            )
            if free <= 0:
                await self._wait_for_slot()
                continue
            # Cleared before claiming, so a handler finishing during the claim still wakes _idle.
            self._slot_freed.clear()
            try:
                jobs = await queue.claim_jobs(self._worker_id, free, queues=self._queues)
            except Exception:
                if drain or queue.closed:
                    raise
                failures += 1
                delay = min(MAX_BACKOFF, self._poll_interval * 2 ** min(failures, 10))
                logger.exception(
                    "worker %s: claiming failed; trying again in %.1fs",
                    self._worker_id,
                    delay,
                    extra={"worker_id": self._worker_id},
                )
                await self._sleep_unless_stopped(delay)
                continue
            failures = 0
            for job in jobs:
                self._start(job)
            if jobs:
                # The handlers start before the next claim is sent, not after. Fewer
                # than asked may just mean other workers skipped past locked rows:
                # only an empty claim says there is nothing to do.
                await asyncio.sleep(0)
                continue
            if drain and not self._running:
                return
            await self._idle(wake_on_slot=drain)

    async def _wait_for_slot(self) -> None:
        self._slot_freed.clear()
        await self._slot_freed.wait()

    async def _idle(self, *, wake_on_slot: bool) -> None:
        """Wait for a notification from the queue, ``poll_interval``, a stop, or
        (``wake_on_slot``) a handler finishing."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_task(self._queue.wait_for_jobs(self._poll_interval))
        others = [loop.create_task(self._stop_event.wait())]
        if wake_on_slot:
            others.append(loop.create_task(self._slot_freed.wait()))
        try:
            await asyncio.wait((waiter, *others), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            for task in others:
                task.cancel()
        if waiter.done() and not waiter.cancelled() and waiter.exception() is not None:
            logger.warning(
                "worker %s: waiting for jobs failed: %s",
                self._worker_id,
                waiter.exception(),
                extra={"worker_id": self._worker_id},
            )
            await self._sleep_unless_stopped(self._poll_interval)

    async def _sleep_unless_stopped(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), delay)

    # ------------------------------------------------------------------ running

    def _start(self, job: Job) -> None:
        stale = self._latest.get(job.id.int)
        if stale is not None:
            self._abandon(stale, "lost")
        entry = _Running(job)
        self._running.add(entry)
        self._handling += 1
        self._latest[job.id.int] = entry
        loop = self._loop
        assert loop is not None
        entry.task = loop.create_task(self._execute(entry))

    async def _execute(self, entry: _Running) -> None:
        job = entry.job
        outcome = "lost"
        error: BaseException | None = None
        if self._hook_job_started.get_hookimpls():
            _call_implemented_hook(self._hook_job_started, worker_id=self._worker_id, job=job)
        self._log(logging.DEBUG, job, "started, attempt %d of %d", job.attempts, job.max_attempts)
        started = time.perf_counter()
        duration = 0.0
        handed_over = False
        try:
            stats: dict[str, Any] | None = None
            try:
                stats = await self._invoke(job)
            except asyncio.CancelledError as exc:
                if entry.abandon is None:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise
                    # Raised by the handler's own code, not a cancellation of this
                    # task: an ordinary failure, or the job would be left running.
                    error = exc
            except Exception as exc:
                error = exc
            duration = time.perf_counter() - started
            if entry.abandon is not None:
                outcome = entry.abandon
                self._log_abandoned(job, outcome)
                return
            entry.recording = True
            self._handling -= 1
            self._slot_freed.set()
            if error is None:
                assert stats is not None
                try:
                    entry.completion = Completion(job.id, stats, self._worker_id, job.attempts)
                except InvalidRequestError as exc:
                    error = _invalid_stats(job, exc)
                else:
                    entry.duration = duration
                    self._completions.add(entry)
                    handed_over = True
                    return
            outcome = await self._fail(job, error)
        except asyncio.CancelledError:
            outcome = entry.abandon or "lost"
            raise
        finally:
            if not handed_over:
                self._finish(entry, outcome, duration, error)

    def _finish(
        self, entry: _Running, outcome: str, duration: float, error: BaseException | None
    ) -> None:
        """Forget a job whose attempt is over here, and tell the plugins how it ended."""
        job = entry.job
        if not entry.recording:
            self._handling -= 1
        self._running.discard(entry)
        if self._latest.get(job.id.int) is entry:
            del self._latest[job.id.int]
        self._slot_freed.set()
        # Checked first: building the hook's arguments costs more than the check.
        if self._hook_job_finished.get_hookimpls():
            _call_implemented_hook(
                self._hook_job_finished,
                worker_id=self._worker_id,
                job=job,
                outcome=outcome,
                duration=duration,
                error=error,
            )

    def _settle(self, entry: _Running, reason: BaseException | None) -> None:
        """Finish a job whose completion was handed to the writer, once it was written
        (``reason`` None) or could not be (``reason`` says why)."""
        if reason is None:
            outcome = "completed"
            if logger.isEnabledFor(logging.INFO):
                self._log(logging.INFO, entry.job, "completed in %.3fs", entry.duration)
        elif isinstance(reason, asyncio.CancelledError):
            outcome = entry.abandon or "lost"
        else:
            outcome = "lost"
            refused = isinstance(reason, (InvalidTransitionError, JobNotFoundError))
            level = logging.WARNING if refused else logging.ERROR
            self._log(level, entry.job, "outcome not recorded: %s", reason)
        self._finish(entry, outcome, entry.duration, None)

    async def _complete_alone(self, entry: _Running) -> None:
        """Record one completion by itself (its batch was rejected as a whole)."""
        outcome = "lost"
        error: BaseException | None = None
        try:
            outcome, error = await self._complete(entry.job, entry.completion.stats, entry.duration)
        except asyncio.CancelledError:
            outcome = entry.abandon or "lost"
            raise
        finally:
            self._finish(entry, outcome, entry.duration, error)

    async def _invoke(self, job: Job) -> dict[str, Any]:
        """Run the handler (with the timeout) and return its stats as a dict."""
        handler = self._handlers.get(job.kind)
        if handler is None:
            known = ", ".join(sorted(self._handlers)) or "none"
            raise Permanent(
                f"no handler for kind {job.kind!r} in worker {self._worker_id}; it handles: {known}"
            )
        call: Awaitable[Any] = (
            handler(job)  # type: ignore[assignment]
            if self._async[job.kind]
            else self._in_thread(handler, job)
        )
        if self._job_timeout is None:
            result = await call
        else:
            try:
                async with asyncio.timeout(self._job_timeout) as scope:
                    result = await call
            except TimeoutError:
                if not scope.expired():
                    raise
                raise TimeoutError(
                    f"the handler for {job.kind!r} did not finish within "
                    f"{self._job_timeout:g} seconds"
                ) from None
        return _as_stats(result, job.kind)

    def _in_thread(self, handler: Handler, job: Job) -> Awaitable[Any]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self._concurrency, thread_name_prefix=f"jobqueue-{self._worker_id}"
            )
        loop = self._loop
        assert loop is not None
        context = contextvars.copy_context()
        return loop.run_in_executor(self._executor, context.run, handler, job)

    async def _complete(
        self, job: Job, stats: Mapping[str, Any], duration: float
    ) -> tuple[str, BaseException | None]:
        queue = self._queue
        try:
            recorded = await self._record(
                job,
                partial(
                    queue.complete_job,
                    job.id,
                    stats,
                    worker_id=self._worker_id,
                    attempt=job.attempts,
                ),
            )
        except InvalidRequestError as exc:
            failure = _invalid_stats(job, exc)
            return await self._fail(job, failure), failure
        if not recorded:
            return "lost", None
        if logger.isEnabledFor(logging.INFO):
            self._log(logging.INFO, job, "completed in %.3fs", duration)
        return "completed", None

    async def _fail(self, job: Job, error: BaseException) -> str:
        text = format_error(error, self._max_error_chars)
        retryable = self._retry.retryable(error)
        retry = retryable and job.attempts < job.max_attempts
        next_retry_at = None
        delay = 0.0
        if retry:
            delay = self._retry.delay(job.attempts)
            next_retry_at = self._queue.now() + timedelta(seconds=delay)
        queue = self._queue
        recorded = await self._record(
            job,
            partial(
                queue.fail_job,
                job.id,
                text,
                next_retry_at,
                worker_id=self._worker_id,
                attempt=job.attempts,
            ),
        )
        summary = f"{type(error).__name__}: {error}"
        if not recorded:
            return "lost"
        if retry:
            self._log(
                logging.WARNING,
                job,
                "attempt %d of %d failed (%s); retrying in %.1fs",
                job.attempts,
                job.max_attempts,
                summary,
                delay,
            )
            return "retried"
        reason = "not retryable" if not retryable else "no attempts left"
        self._log(
            logging.ERROR,
            job,
            "failed for good on attempt %d of %d (%s): %s",
            job.attempts,
            job.max_attempts,
            reason,
            summary,
            exc_info=error,
        )
        return "failed"

    async def _record(self, job: Job, write: Callable[[], Awaitable[None]]) -> bool:
        """Write an outcome; False when the queue refuses it because the job was taken away.

        Transient errors are retried with backoff until the write goes
        through, is refused, or the task is cancelled at shutdown.
        """
        failures = 0
        while True:
            try:
                await write()
                return True
            except (InvalidTransitionError, JobNotFoundError) as exc:
                self._log(logging.WARNING, job, "outcome not recorded: %s", exc)
                return False
            except InvalidRequestError:
                raise
            except Exception:
                if self._queue.closed:
                    self._log(logging.ERROR, job, "outcome not recorded: the queue is closed")
                    return False
                failures += 1
                delay = write_backoff(failures)
                self._log(
                    logging.WARNING,
                    job,
                    "recording the outcome failed; trying again in %.2fs",
                    delay,
                    exc_info=True,
                )
                await asyncio.sleep(delay)

    def _log_abandoned(self, job: Job, outcome: str) -> None:
        if outcome == "released":
            self._log(logging.WARNING, job, "handler cancelled at shutdown; job released")
        else:
            self._log(
                logging.WARNING,
                job,
                "handler stopped: the job is no longer held by this worker "
                "(cancelled, or rescued after its lease expired)",
            )

    # ------------------------------------------------------------- background

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            await self._beat()

    async def _beat(self) -> None:
        if not self._running:
            return
        # Only jobs claimed before the call may be judged by its answer.
        watched = list(self._running)
        try:
            alive = await self._queue.heartbeat(self._worker_id)
        except Exception as exc:
            logger.warning(
                "worker %s: heartbeat failed: %s",
                self._worker_id,
                exc,
                extra={"worker_id": self._worker_id},
            )
            return
        for entry in watched:
            if entry.job.id not in alive:
                self._abandon(entry, "lost")

    @staticmethod
    def _abandon(entry: _Running, reason: str) -> None:
        """Cancel a handler whose result must not be recorded; a recording one is left alone."""
        task = entry.task
        if entry.recording or entry.abandon is not None or task is None or task.done():
            return
        entry.abandon = reason
        task.cancel()

    async def _rescue_loop(self) -> None:
        while True:
            await asyncio.sleep(self._rescue_interval)
            await self._rescue_once()

    async def _rescue_once(self) -> None:
        try:
            moved = await self._queue.rescue_expired_jobs()
        except Exception as exc:
            logger.warning(
                "worker %s: rescuing expired jobs failed: %s",
                self._worker_id,
                exc,
                extra={"worker_id": self._worker_id},
            )
            return
        if moved:
            logger.info(
                "worker %s rescued %d jobs whose lease expired",
                self._worker_id,
                moved,
                extra={"worker_id": self._worker_id},
            )

    # ------------------------------------------------------------------ shutdown

    async def _shutdown(self, heartbeat: asyncio.Task[None]) -> None:
        loop = asyncio.get_running_loop()
        if self._running and not self._force_event.is_set():
            logger.info(
                "worker %s: waiting up to %gs for %d running jobs",
                self._worker_id,
                self._shutdown_grace,
                len(self._running),
                extra={"worker_id": self._worker_id},
            )
            deadline = loop.time() + self._shutdown_grace
            force = loop.create_task(self._force_event.wait())
            try:
                while self._running and not self._force_event.is_set():
                    remaining = deadline - loop.time()
                    tasks = self._busy_tasks()
                    if remaining <= 0 or not tasks:
                        break
                    await asyncio.wait(
                        (*tasks, force), timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
            finally:
                force.cancel()
        for entry in self._running:
            if entry.abandon is None:
                entry.abandon = "released"
        tasks = self._busy_tasks()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CANCEL_WAIT)
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)
        if self._queue.closed:
            return
        try:
            released = await self._queue.release_worker_jobs(self._worker_id)
        except Exception:
            logger.exception(
                "worker %s: releasing its jobs failed; they return after their lease expires",
                self._worker_id,
                extra={"worker_id": self._worker_id},
            )
            return
        if released:
            logger.warning(
                "worker %s released %d unfinished jobs",
                self._worker_id,
                released,
                extra={"worker_id": self._worker_id},
            )

    def _busy_tasks(self) -> set[asyncio.Task[None]]:
        """The handlers still running and the completions still being written."""
        tasks = {e.task for e in self._running if e.task is not None and not e.task.done()}
        if self._completions.task is not None:
            tasks.add(self._completions.task)
        return tasks

    # ------------------------------------------------------------------ helpers

    def _log(
        self,
        level: int,
        job: Job,
        message: str,
        *args: Any,
        exc_info: BaseException | bool | None = None,
    ) -> None:
        if logger.isEnabledFor(level):
            logger.log(
                level,
                "job %s (%s): " + message,
                job.id,
                job.kind,
                *args,
                exc_info=exc_info,
                extra={
                    "job_id": str(job.id),
                    "job_kind": job.kind,
                    "job_attempt": job.attempts,
                    "worker_id": self._worker_id,
                },
            )

    def _call_hook(self, name: str, **kwargs: Any) -> None:
        caller = getattr(self._hook, name)
        if caller.get_hookimpls():  # an empty call costs ten times this check
            _call_implemented_hook(caller, **kwargs)


def _call_implemented_hook(caller: Any, **kwargs: Any) -> None:
    """Call a hook that has implementations; a plugin's error is logged, not raised."""
    try:
        caller(**kwargs)
    except Exception:
        logger.exception("a jobqueue plugin's %s hook failed", caller.name)


def _nothing() -> None:
    return None


def _invalid_stats(job: Job, exc: InvalidRequestError) -> Permanent:
    return Permanent(f"the handler for {job.kind!r} returned invalid stats: {exc}")


def _seconds(value: object, argument: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequestError(f"{argument} must be a number of seconds, not {value!r}")
    seconds = float(value)
    if not seconds < float("inf") or seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidRequestError(f"{argument} must be finite and {bound}, got {value!r}")
    return seconds


def _is_async(handler: object) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - instances with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def _as_stats(result: object, kind: str) -> dict[str, Any]:
    if result is None:
        return {}
    if isinstance(result, Mapping):
        return dict(result)
    if inspect.iscoroutine(result):
        result.close()
        raise Permanent(
            f"the handler for {kind!r} returned a coroutine: declare it 'async def' "
            "so the worker awaits it"
        )
    raise Permanent(
        f"the handler for {kind!r} returned {type(result).__name__}; "
        "a handler returns a mapping (the job's stats) or None"
    )


def _checked_handlers(handlers: object, source: str) -> dict[str, Handler]:
    if not isinstance(handlers, Mapping):
        raise InvalidRequestError(
            f"{source} must be a mapping of job kind to handler, not {type(handlers).__name__}"
        )
    checked: dict[str, Handler] = {}
    for kind, handler in handlers.items():
        check.name(kind, f"a job kind in {source}")
        if not callable(handler):
            raise InvalidRequestError(
                f"the handler for {kind!r} in {source} is not callable: {handler!r}"
            )
        checked[kind] = handler
    return checked


def load_handlers(spec: str) -> dict[str, Handler]:
    """Import the handlers mapping named by ``"package.module:ATTRIBUTE"``.

    ``ATTRIBUTE`` may be dotted (``module:registry.handlers``). Raises
    ``InvalidRequestError`` with a message fit for a command line when the
    spec is malformed, the module cannot be imported, the attribute is
    missing, or it is not a mapping of job kind to callable.
    """
    if not isinstance(spec, str):
        raise InvalidRequestError(f"expected 'MODULE:ATTRIBUTE', got {spec!r}")
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name.strip() or not attribute.strip():
        raise InvalidRequestError(
            f"expected 'MODULE:ATTRIBUTE' such as 'myapp.jobs:HANDLERS', got {spec!r}"
        )
    try:
        module = importlib.import_module(module_name.strip())
    except Exception as exc:
        raise InvalidRequestError(
            f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    value: object = module
    for part in attribute.strip().split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise InvalidRequestError(
                f"module {module_name!r} has no attribute {attribute!r}"
            ) from None
    return _checked_handlers(value, repr(spec))
