"""Worker processes killed or stopped mid-run, on the multi-process backends.

A child process (this file run as a script) runs a Worker; the test process
kills or signals it and checks what became of its jobs. Leases are real time
here, kept short: a lease of 2 s, heartbeats every 0.5 s.
"""

from __future__ import annotations

import asyncio
import faulthandler
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

import pytest

import jobqueue
from jobqueue import CreateJobRequest, Job, JobStatus, Worker

LEASE = timedelta(seconds=2)
HEARTBEAT = 0.5
STARTUP_TIMEOUT = 60.0


class Backend:
    """Where the processes meet: a URL and the options to connect with."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self.url = url
        self.options = options

    def connect(self) -> Any:
        return jobqueue.connect(self.url, lease=LEASE, **self.options)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend(f"sqlite:///{tmp_path / 'jobs.db'}", {})
    url = request.getfixturevalue("postgres_url")
    schema = request.getfixturevalue("postgres_schema")
    return Backend(url, {"schema": schema})


class Child:
    """A worker in another process; its output goes to a log file shown on failure."""

    def __init__(
        self,
        backend: Backend,
        log: Path,
        *,
        concurrency: int,
        grace: float,
        drain: bool = False,
        start_gate: Path | None = None,
    ) -> None:
        self.worker_id = f"child-{os.getpid()}-{time.monotonic_ns()}"
        self.log = log
        self.runs = log.with_suffix(".runs")
        self.ready = log.with_suffix(".ready")
        config = {
            "url": backend.url,
            "options": backend.options,
            "worker_id": self.worker_id,
            "concurrency": concurrency,
            "grace": grace,
            "drain": drain,
            "runs": str(self.runs),
            "ready": str(self.ready),
            "start_gate": None if start_gate is None else str(start_gate),
        }
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, __file__, json.dumps(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ran(self) -> list[str]:
        """Ids of the jobs whose handler this child started, in order."""
        return self.runs.read_text().split() if self.runs.exists() else []

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGUSR1)  # the child prints where it is stuck
            time.sleep(1)
            self.process.kill()
            self.process.wait()
            pytest.fail(f"the worker process did not exit in {timeout}s:\n{self.output()}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def children(tmp_path: Path) -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.kill()


async def wait_for_running(queue: jobqueue.JobQueue, count: int, child: Child) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while await queue.count_by_status(JobStatus.RUNNING) < count:
        if child.process.poll() is not None:
            pytest.fail(f"the worker process exited early:\n{child.output()}")
        if time.monotonic() > deadline:
            pytest.fail(f"the worker process never ran {count} jobs:\n{child.output()}")
        await asyncio.sleep(0.05)


async def finish_with_second_worker(queue: jobqueue.JobQueue, expected: int) -> str:
    """Run a worker in this process until ``expected`` jobs are completed; returns its id."""

    async def work(job: Job) -> dict[str, str]:
        return {"by": "second"}

    second = Worker(
        queue,
        {"sleep": work},
        worker_id="second",
        rescue_interval=0.2,
        poll_interval=0.05,
        heartbeat_interval=HEARTBEAT,
        handle_signals=False,
    )
    task = asyncio.create_task(second.run())
    try:
        deadline = time.monotonic() + 60
        while await queue.count_by_status(JobStatus.COMPLETED) < expected:
            assert time.monotonic() < deadline, await queue.counts()
            assert not task.done()
            await asyncio.sleep(0.05)
    finally:
        second.stop()
        await asyncio.wait_for(task, 30)
    return second.worker_id


async def test_killed_worker_jobs_are_rescued_and_completed_by_another(
    backend: Backend, children: list[Child], tmp_path: Path
) -> None:
    """SIGKILL a worker running 6 jobs: after the lease another worker rescues them and
    completes every one; the results are its own, none is lost, none stays running."""
    async with backend.connect() as queue:
        jobs = await queue.create_jobs(
            [CreateJobRequest(kind="sleep", payload={"seconds": 60}) for _ in range(6)]
        )
        child = Child(backend, tmp_path / "victim.log", concurrency=6, grace=30)
        children.append(child)
        await wait_for_running(queue, 6, child)
        for job in await queue.list_jobs(JobStatus.RUNNING):
            assert job.worker_id == child.worker_id
        child.process.send_signal(signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL

        second = await finish_with_second_worker(queue, 6)

        counts = await queue.counts()
        assert counts[JobStatus.COMPLETED] == 6, counts
        for created in jobs:
            job = await queue.get_job(created.id)
            assert job is not None
            assert (job.status, job.worker_id, job.stats) == (
                JobStatus.COMPLETED,
                second,
                {"by": "second"},
            )
            assert job.attempts == 2 and job.error == "lease expired"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_stopped_worker_finishes_or_releases_its_jobs(
    backend: Backend, children: list[Child], tmp_path: Path, signum: signal.Signals
) -> None:
    """SIGTERM/SIGINT a worker running 3 short and 3 long jobs: the short ones complete
    within the grace, the long ones are released at its end (attempt given back); the
    process exits cleanly and another worker completes the rest; none is lost."""
    async with backend.connect() as queue:
        short = await queue.create_jobs(
            [CreateJobRequest(kind="sleep", payload={"seconds": 0.3}) for _ in range(3)]
        )
        long = await queue.create_jobs(
            [CreateJobRequest(kind="sleep", payload={"seconds": 120}) for _ in range(3)]
        )
        child = Child(backend, tmp_path / "stopped.log", concurrency=6, grace=2.5)
        children.append(child)
        await wait_for_running(queue, 6, child)
        await asyncio.sleep(0.1)  # let the handlers begin their sleep
        signalled = time.monotonic()
        child.process.send_signal(signum)
        assert child.wait(30) == 0, child.output()
        assert time.monotonic() - signalled >= 2.0
        assert "released 3 unfinished jobs" in child.output()

        for created in short:
            job = await queue.get_job(created.id)
            assert job is not None
            assert (job.status, job.worker_id) == (JobStatus.COMPLETED, child.worker_id)
            assert job.stats == {"by": child.worker_id}
        for created in long:
            job = await queue.get_job(created.id)
            assert job is not None
            assert (job.status, job.attempts, job.worker_id) == (JobStatus.PENDING, 0, None)
        assert await queue.count_by_status(JobStatus.RUNNING) == 0

        second = await finish_with_second_worker(queue, 6)
        for created in long:
            job = await queue.get_job(created.id)
            assert job is not None
            assert (job.status, job.worker_id, job.attempts) == (JobStatus.COMPLETED, second, 1)
        assert (await queue.counts())[JobStatus.COMPLETED] == 6


async def test_worker_processes_share_a_queue_running_each_job_once(
    backend: Backend, children: list[Child], tmp_path: Path
) -> None:
    """Three worker processes draining one queue at once run every job exactly once and
    complete them all; no job is lost or left running."""
    async with backend.connect() as queue:
        jobs = await queue.create_jobs(
            [CreateJobRequest(kind="sleep", payload={"seconds": 0.01}) for _ in range(450)]
        )
        gate = tmp_path / "go"
        for n in range(3):
            children.append(
                Child(
                    backend,
                    tmp_path / f"sharer{n}.log",
                    concurrency=5,
                    grace=30,
                    drain=True,
                    start_gate=gate,
                )
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not all(child.ready.exists() for child in children):
            assert time.monotonic() < deadline, [c.output() for c in children]
            await asyncio.sleep(0.05)
        gate.touch()
        for child in children:
            assert child.wait(120) == 0, child.output()

        runs = [job_id for child in children for job_id in child.ran()]
        assert sorted(runs) == sorted(str(job.id) for job in jobs)
        assert sum(1 for child in children if child.ran()) >= 2
        counts = await queue.counts()
        assert counts[JobStatus.COMPLETED] == 450, counts
        by = {child.worker_id: set(child.ran()) for child in children}
        for job in await queue.list_jobs(JobStatus.COMPLETED, limit=1000):
            assert job.stats == {"by": job.worker_id} and str(job.id) in by[job.worker_id]


def _child(config: dict[str, Any]) -> None:
    Path(config["ready"]).touch()
    gate = config["start_gate"]
    while gate is not None and not Path(gate).exists():
        time.sleep(0.01)
    with Path(config["runs"]).open("a") as runs:
        asyncio.run(_child_main(config, runs))


def _dump_tasks() -> None:
    faulthandler.dump_traceback(sys.stdout, all_threads=True)
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stdout)
    sys.stdout.flush()


async def _child_main(config: dict[str, Any], runs: TextIO) -> None:
    worker_id: str = config["worker_id"]
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _dump_tasks)

    async def sleep(job: Job) -> dict[str, str]:
        runs.write(f"{job.id}\n")
        runs.flush()
        await asyncio.sleep(job.payload["seconds"])
        return {"by": worker_id}

    async with jobqueue.connect(config["url"], lease=LEASE, **config["options"]) as queue:
        worker = Worker(
            queue,
            {"sleep": sleep},
            worker_id=worker_id,
            concurrency=config["concurrency"],
            shutdown_grace=config["grace"],
            heartbeat_interval=HEARTBEAT,
            poll_interval=0.05,
        )
        await worker.run(drain=config["drain"])
        print("closing the queue", flush=True)
    print("closed the queue", flush=True)
    # A process still alive 15 s later shows where it hangs in the log.
    faulthandler.dump_traceback_later(15, file=sys.stdout)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    _child(json.loads(sys.argv[1]))
