"""The Hypothesis state machine: random operation sequences against the reference model.

Every rule calls the backend and the model alike; after every step the whole
queue (every job with every field, in list order, the counts) must agree with
the model, and every call must return what the model returns or raise the
error class the model raises. All timing comes from a fake clock, so the
machine is deterministic and its failures shrink to short, readable examples.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from jobqueue import (
    Completion,
    CreateJobRequest,
    InvalidRequestError,
    Job,
    JobQueue,
    JobQueueError,
    JobStatus,
)
from jobqueue.testing import FakeClock

from ._harness import START, Harness, Opener, clear_queue
from ._model import Model, ModelJob, Refused, job_differences

__all__ = ["QueueMachine", "machine_settings", "state_machine_agrees_with_the_model"]

T = TypeVar("T")

WORKERS = ("w1", "w2", "w3")
QUEUES = ("default", "q1", "q2")
QUEUE_FILTERS: tuple[tuple[str, ...] | None, ...] = (None, ("default",), ("q1", "q2"), ("q2",))
FENCES = ("none", "current", "none", "current", "stale", "wrong_worker", "wrong_attempt",
          "worker_only", "attempt_only")  # fmt: skip
STEPS = ("µs", "second", "half-minute", "lease - 0.5 s", "lease - 1 µs", "lease", "2 leases",
         "back a minute")  # fmt: skip
"""Clock moves, some relative to the queue's lease (the boundaries where leases expire), and
one backwards (system clocks do that): creation order then differs from call order."""
OFFSETS = (None, None, None, -10.0, 0.0, 5.0, 60.0, 600.0)
OUTCOMES = ("complete", "fail", "retry", "cancel", "release", "keep", "heartbeat")

_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=8)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)
json_objects = st.dictionaries(_text, _json, max_size=3)

requests: st.SearchStrategy[dict[str, Any]] = st.builds(
    dict,
    kind=st.sampled_from(["a", "b"]) | _text.filter(bool),
    payload=json_objects,
    queue=st.sampled_from(QUEUES),
    priority=st.sampled_from([0, 0, 1, -1, 7, 2**31 - 1, -(2**31)]),
    run_in=st.sampled_from(OFFSETS),
    max_attempts=st.sampled_from([1, 2, 5]),
)
targets = st.tuples(
    st.sampled_from(["running", "running", "running", "any", "pending", "finished", "unknown"]),
    st.integers(0, 40),
)
"""Which job a rule acts on: a kind of job (the model's current ones) and an index."""


def machine_settings() -> settings:
    """The loaded Hypothesis profile, less the health checks a slow backend would trip and
    the explain phase (on a state machine it costs minutes and adds little to the steps)."""
    loaded = settings()
    return settings(
        loaded,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        phases=[phase for phase in loaded.phases if phase is not Phase.explain],
    )


class QueueMachine(RuleBasedStateMachine):
    """One fresh queue on a fake clock, driven by random operations and checked against a model."""

    def __init__(self, opener: Opener) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.clock = FakeClock(START)
        self.queue: JobQueue = self.run(_opened(opener, self.clock))
        self.run(clear_queue(self.queue))
        self.model = Model(self.queue.lease)
        self.known: list[UUID] = []
        self.touched: list[UUID] = []

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        __tracebackhide__ = True
        return self.runner.run(coro)

    def teardown(self) -> None:
        try:
            if hasattr(self, "queue"):
                self.run(self.queue.close())
        finally:
            self.runner.close()

    # ------------------------------------------------------------- helpers

    def now(self) -> datetime:
        return self.clock()

    def target(self, pick: tuple[str, int]) -> UUID:
        """A job of the kind asked for (any known id, possibly purged, when there is none),
        or an id no job ever had."""
        kind, index = pick
        if kind == "unknown" or not self.known:
            return UUID(int=index + 1)
        wanted = {
            "running": {JobStatus.RUNNING},
            "pending": {JobStatus.PENDING},
            "finished": {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED},
        }.get(kind)
        pool = [j.id for j in self.model.creation_order() if wanted and j.status in wanted]
        pool = pool or self.known
        return pool[index % len(pool)]

    def fence(self, job_id: UUID, kind: str) -> tuple[str | None, int | None]:
        job = self.model.jobs.get(job_id)
        worker = (job.worker_id if job else None) or "w1"
        attempt = job.attempts if job else 1
        if kind == "none":
            return None, None
        if kind == "current":
            return worker, attempt
        if kind == "stale":
            return job.claims[0] if job and job.claims else ("w1", 1)
        if kind == "wrong_worker":
            return "intruder", attempt
        if kind == "wrong_attempt":
            return worker, attempt + 1
        if kind == "worker_only":
            return worker, None
        return None, attempt

    def agree(self, what: str, model_call: Callable[[], T], call: Coroutine[Any, Any, Any]) -> Any:
        """Run both sides; they must both refuse with the same error class, or both succeed."""
        refusal: Refused | None = None
        expected: Any = None
        try:
            expected = model_call()
        except Refused as exc:
            refusal = exc
        try:
            actual = self.run(call)
        except JobQueueError as exc:
            if refusal is None:
                raise AssertionError(
                    f"{what}: backend raised {type(exc).__name__}: {exc}; the contract says it "
                    f"succeeds"
                ) from exc
            if not isinstance(exc, refusal.error):
                raise AssertionError(
                    f"{what}: backend raised {type(exc).__name__}: {exc}; the contract says "
                    f"{refusal}"
                ) from exc
            return None
        if refusal is not None:
            raise AssertionError(f"{what}: backend returned {actual!r}; contract says {refusal}")
        return expected, actual

    def same_jobs(self, what: str, actual: list[Job], expected: list[ModelJob]) -> None:
        got = [j.id for j in actual]
        want = [j.id for j in expected]
        assert got == want, f"{what}: backend gave ids {got}, contract says {want}"
        for job, model_job in zip(actual, expected, strict=True):
            problems = job_differences(job, model_job)
            assert not problems, f"{what}, job {job.id}:\n  " + "\n  ".join(problems)

    # --------------------------------------------------------------- rules

    def _request(self, spec: dict[str, Any]) -> CreateJobRequest:
        run_in = spec.pop("run_in")
        run_at = None if run_in is None else self.now() + timedelta(seconds=run_in)
        return CreateJobRequest(run_at=run_at, **spec)

    @initialize(specs=st.lists(requests, min_size=1, max_size=8))
    def start_with_jobs(self, specs: list[dict[str, Any]]) -> None:
        self.create(specs, single=False)

    @rule(specs=st.lists(requests, max_size=4), single=st.booleans())
    def create(self, specs: list[dict[str, Any]], single: bool) -> None:
        reqs = [self._request(dict(s)) for s in specs]
        if single and reqs:
            reqs = reqs[:1]
            created = [self.run(self.queue.create_job(reqs[0]))]
        else:
            created = self.run(self.queue.create_jobs(reqs))
        assert isinstance(created, list) and len(created) == len(reqs), (
            f"create returned {created!r} for {len(reqs)} requests"
        )
        new_ids = [j.id for j in created]
        assert len(set(new_ids)) == len(new_ids) and not set(new_ids) & set(self.known), (
            f"create returned an id that is not fresh: {new_ids}"
        )
        expected = self.model.create(reqs, new_ids, self.now())
        self.same_jobs("create", created, expected)
        self.known += new_ids
        self.touched = new_ids

    @rule(worker=st.sampled_from(WORKERS), queues=st.sampled_from(QUEUE_FILTERS),
          limit=st.integers(0, 5))  # fmt: skip
    def claim(self, worker: str, queues: tuple[str, ...] | None, limit: int) -> None:
        if limit == 0:
            got = self.run(self.queue.claim_job(worker, queues=queues))
            actual = [] if got is None else [got]
            expected = self.model.claim(worker, 1, queues, self.now())
        else:
            actual = self.run(self.queue.claim_jobs(worker, limit, queues=queues))
            expected = self.model.claim(worker, limit, queues, self.now())
        self.same_jobs(f"claim by {worker} from {queues}", actual, expected)
        self.touched = [j.id for j in actual]

    @rule(worker=st.sampled_from(WORKERS), outcome=st.sampled_from(OUTCOMES),
          fence=st.sampled_from(FENCES), retry_in=st.sampled_from(OFFSETS[3:]))  # fmt: skip
    def work(self, worker: str, outcome: str, fence: str, retry_in: float) -> None:
        """A worker's step: claim one job, then finish it one way or another, or keep it
        (maybe heartbeating)."""
        self.claim(worker, None, 0)
        if outcome == "heartbeat":
            self.heartbeat(worker)
        if not self.touched or outcome in ("keep", "heartbeat"):
            return
        job_id = self.touched[0]
        if outcome == "complete":
            self.complete(("unknown", 0), fence, {"done": True}, job_id=job_id)
        elif outcome == "release":
            self.release(("unknown", 0), job_id=job_id)
        elif outcome == "cancel":
            self.cancel(("unknown", 0), fence, None, job_id=job_id)
        else:
            retry = retry_in if outcome == "retry" else None
            self.fail(("unknown", 0), fence, "it broke", retry, job_id=job_id)

    def complete(
        self, pick: tuple[str, int], fence: str, stats: dict[str, Any], job_id: UUID | None = None
    ) -> None:
        job_id = job_id or self.target(pick)
        worker, attempt = self.fence(job_id, fence)
        self.agree(
            f"complete_job({job_id}, worker_id={worker!r}, attempt={attempt!r})",
            lambda: self.model.complete(job_id, stats, self.now(), worker, attempt),
            self.queue.complete_job(job_id, stats, worker_id=worker, attempt=attempt),
        )
        self.touched = [job_id]

    def fail(
        self,
        pick: tuple[str, int],
        fence: str,
        error: str,
        retry_in: float | None,
        job_id: UUID | None = None,
    ) -> None:
        job_id = job_id or self.target(pick)
        worker, attempt = self.fence(job_id, fence)
        retry_at = None if retry_in is None else self.now() + timedelta(seconds=retry_in)
        self.agree(
            f"fail_job({job_id}, next_retry_at={retry_at}, worker_id={worker!r}, "
            f"attempt={attempt!r})",
            lambda: self.model.fail(job_id, error, retry_at, self.now(), worker, attempt),
            self.queue.fail_job(job_id, error, retry_at, worker_id=worker, attempt=attempt),
        )
        self.touched = [job_id]

    def cancel(
        self,
        pick: tuple[str, int],
        fence: str,
        stats: dict[str, Any] | None,
        job_id: UUID | None = None,
    ) -> None:
        job_id = job_id or self.target(pick)
        worker, attempt = self.fence(job_id, fence)
        self.agree(
            f"cancel_job({job_id}, worker_id={worker!r}, attempt={attempt!r})",
            lambda: self.model.cancel(job_id, stats, self.now(), worker, attempt),
            self.queue.cancel_job(job_id, stats, worker_id=worker, attempt=attempt),
        )
        self.touched = [job_id]

    def release(self, pick: tuple[str, int], job_id: UUID | None = None) -> None:
        job_id = job_id or self.target(pick)
        outcome = self.agree(
            f"release_job({job_id})",
            lambda: self.model.release(job_id, self.now()),
            self.queue.release_job(job_id),
        )
        if outcome is not None:
            expected, actual = outcome
            assert actual is expected, f"release_job returned {actual!r}, contract says {expected}"
        self.touched = [job_id]

    def release_worker(self, worker: str) -> None:
        expected = self.model.release_worker(worker, self.now())
        actual = self.run(self.queue.release_worker_jobs(worker))
        assert actual == expected, f"release_worker_jobs returned {actual}, contract: {expected}"

    def heartbeat(self, worker: str) -> None:
        expected = self.model.heartbeat(worker, self.now())
        actual = self.run(self.queue.heartbeat(worker))
        assert actual == expected, f"heartbeat({worker}) returned {actual}, contract: {expected}"

    def rescue(self) -> None:
        expected = self.model.rescue(self.now())
        actual = self.run(self.queue.rescue_expired_jobs())
        assert actual == expected, f"rescue_expired_jobs returned {actual}, contract: {expected}"

    @rule(op=st.sampled_from(["complete", "fail", "cancel", "release", "retry"]),
          pick=targets, fence=st.sampled_from(FENCES), stats=st.none() | json_objects,
          error=_text, retry_in=st.sampled_from(OFFSETS))  # fmt: skip
    def act_on_a_job(
        self,
        op: str,
        pick: tuple[str, int],
        fence: str,
        stats: dict[str, Any] | None,
        error: str,
        retry_in: float | None,
    ) -> None:
        """An outcome or operator call on some job (running, pending, finished or unknown)."""
        if op == "complete":
            self.complete(pick, fence, stats or {})
        elif op == "fail":
            self.fail(pick, fence, error, retry_in)
        elif op == "cancel":
            self.cancel(pick, fence, stats)
        elif op == "release":
            self.release(pick)
        else:
            self.retry(pick)

    @rule(picks=st.lists(st.tuples(targets, st.sampled_from(FENCES), st.none() | json_objects),
                         max_size=4))  # fmt: skip
    def complete_many(
        self, picks: list[tuple[tuple[str, int], str, dict[str, Any] | None]]
    ) -> None:
        """complete_jobs over a few jobs (running, pending, finished or unknown), each with
        its own fence: the model completes them one by one, in order."""
        completions: list[Completion] = []
        for pick, fence, stats in picks:
            job_id = self.target(pick)
            if any(c.job_id == job_id for c in completions):
                continue
            worker, attempt = self.fence(job_id, fence)
            completions.append(Completion(job_id, stats or {}, worker, attempt))
        expected: list[type[Exception] | None] = []
        for c in completions:
            try:
                self.model.complete(c.job_id, dict(c.stats), self.now(), c.worker_id, c.attempt)
            except Refused as refusal:
                expected.append(refusal.error)
            else:
                expected.append(None)
        actual = self.run(self.queue.complete_jobs(completions))
        what = f"complete_jobs({completions})"
        assert len(actual) == len(expected), f"{what} returned {actual!r}"
        for got, want in zip(actual, expected, strict=True):
            agrees = got is None if want is None else isinstance(got, want)
            assert agrees, f"{what} returned {actual!r}; the contract says {expected}"
        self.touched = [c.job_id for c in completions]

    @rule(op=st.sampled_from(["rescue", "heartbeat", "release_worker", "purge"]),
          worker=st.sampled_from(WORKERS), offset=st.sampled_from([-60.0, 0.0, 1e-6, 60.0]),
          statuses=st.none() | st.sets(st.sampled_from(["completed", "failed", "cancelled"]),
                                       min_size=1))  # fmt: skip
    def maintain(self, op: str, worker: str, offset: float, statuses: set[str] | None) -> None:
        """A call that acts on many jobs at once."""
        if op == "rescue":
            self.rescue()
        elif op == "heartbeat":
            self.heartbeat(worker)
        elif op == "release_worker":
            self.release_worker(worker)
        else:
            self.purge(offset, statuses)

    @rule(step=st.sampled_from(STEPS), then_rescue=st.booleans())
    def advance_clock(self, step: str, then_rescue: bool) -> None:
        """Move the fake clock, then (as a worker's periodic rescue would) maybe rescue."""
        lease = self.queue.lease
        self.clock.advance(
            {
                "µs": timedelta(microseconds=1),
                "second": timedelta(seconds=1),
                "half-minute": timedelta(seconds=30),
                "lease - 0.5 s": lease - timedelta(seconds=0.5),
                "lease - 1 µs": lease - timedelta(microseconds=1),
                "lease": lease,
                "2 leases": 2 * lease,
                "back a minute": -timedelta(minutes=1),
            }[step]
        )
        if then_rescue:
            self.rescue()

    def retry(self, pick: tuple[str, int]) -> None:
        job_id = self.target(pick)
        outcome = self.agree(
            f"retry_job({job_id})",
            lambda: self.model.retry(job_id, self.now()),
            self.queue.retry_job(job_id),
        )
        if outcome is not None:
            expected, actual = outcome
            self.same_jobs("retry_job", [actual], [expected])
        self.touched = [job_id]

    def purge(self, offset: float, statuses: set[str] | None) -> None:
        cutoff = self.now() + timedelta(seconds=offset)
        wanted = [JobStatus(s) for s in statuses] if statuses else list(JobStatus)[2:]
        expected = self.model.purge(cutoff, wanted)
        actual = self.run(self.queue.purge_jobs(cutoff, statuses))
        assert actual == expected, f"purge_jobs returned {actual}, contract: {expected}"

    @rule(pick=targets, which=st.integers(0, 10))
    def bad_input(self, pick: tuple[str, int], which: int) -> None:
        job_id = self.target(pick)
        naive = datetime(2030, 1, 1)
        queue = self.queue
        calls: list[Callable[[], Coroutine[Any, Any, Any]]] = [
            lambda: queue.claim_jobs("w1", 0),
            lambda: queue.claim_job("", queues=None),
            lambda: queue.claim_job("w1", queues=[]),
            lambda: queue.complete_job(job_id, {"x": {1, 2}}),
            lambda: queue.complete_job(job_id, {}, attempt=-1),
            lambda: queue.fail_job(job_id, "e", naive),
            lambda: queue.cancel_job(job_id, [1, 2]),  # type: ignore[arg-type]
            lambda: queue.list_jobs(limit=0),
            lambda: queue.count_by_status("unknown"),
            lambda: queue.release_job("not-a-uuid"),
            lambda: queue.purge_jobs(self.now(), ["running"]),
        ]
        call = calls[which]()
        try:
            result = self.run(call)
        except InvalidRequestError:
            return
        raise AssertionError(f"bad input #{which} returned {result!r} instead of raising")

    # ----------------------------------------------------------- invariant

    @rule(status=st.sampled_from(list(JobStatus)), limit=st.integers(1, 4))
    def read_by_status(self, status: JobStatus, limit: int) -> None:
        n = self.run(self.queue.count_by_status(status))
        assert n == self.model.counts()[status], f"count_by_status({status}) is {n}"
        page = self.run(self.queue.list_jobs(status.value, limit=limit))
        self.same_jobs(f"list_jobs({status}, limit={limit})", page, self.model.list(status, limit))

    @invariant()
    def backend_agrees_with_model(self) -> None:
        listed = self.run(self.queue.list_jobs(limit=100_000))
        self.same_jobs("list_jobs()", listed, self.model.list(None, 100_000))
        counts = self.run(self.queue.counts())
        assert counts == self.model.counts(), f"counts() {counts} != {self.model.counts()}"
        for job_id in self.touched:
            job = self.run(self.queue.get_job(job_id))
            model_job = self.model.jobs.get(job_id)
            if model_job is None:
                assert job is None, f"get_job({job_id}) found a job the contract says is gone"
            else:
                assert job is not None, f"get_job({job_id}) is None"
                self.same_jobs(f"get_job({job_id})", [job], [model_job])
        self.touched = []


async def _opened(opener: Opener, clock: FakeClock) -> JobQueue:
    return await opener(clock)


def state_machine_agrees_with_the_model(h: Harness) -> None:
    """Random sequences of every operation agree with the reference model after every step."""
    __tracebackhide__ = True
    run_state_machine_as_test(
        lambda: QueueMachine(h.opener),  # type: ignore[arg-type]
        settings=machine_settings(),
    )
