"""PostgreSQL under load: many processes racing for jobs, and connections killed mid-drain."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import psycopg

import jobqueue
from jobqueue import BackendUnavailableError, CreateJobRequest, JobStatus

T = TypeVar("T")

PROCESSES = 4
CONNECTIONS_PER_PROCESS = 4
RACE_JOBS = 20_000

DRAINER = """
import asyncio, json, os, sys, time, jobqueue

url, schema, name, go, out, tasks = sys.argv[1:7]
tasks = int(tasks)

async def main():
    claims = []
    async with jobqueue.connect(url, schema=schema, min_size=tasks, max_size=tasks) as queue:
        while not os.path.exists(go):
            time.sleep(0.005)

        async def claimer(n):
            worker = f"{name}-{n}"
            idle = 0
            while idle < 3:
                # Mix single claims and batches of different sizes.
                jobs = await queue.claim_jobs(worker, 1 if n % 2 == 0 else 5 + n)
                if not jobs:
                    idle += 1
                    await asyncio.sleep(0.05)
                    continue
                idle = 0
                for job in jobs:
                    claims.append([str(job.id), job.attempts])
                    await queue.complete_job(
                        job.id, {"by": worker}, worker_id=worker, attempt=job.attempts
                    )

        await asyncio.gather(*(claimer(n) for n in range(tasks)))
    with open(out, "w") as f:
        json.dump(claims, f)

asyncio.run(main())
"""


async def test_processes_race_to_drain_without_double_claims_or_losses(
    postgres_url: str, postgres_schema: str, tmp_path: Path
) -> None:
    """4 processes x 4 connections drain 20,000 jobs: each is claimed exactly once, none is
    lost, and every one ends completed."""
    async with jobqueue.connect(postgres_url, schema=postgres_schema) as queue:
        created: list[str] = []
        for start in range(0, RACE_JOBS, 2000):
            batch = [
                CreateJobRequest(kind="race", payload={"n": n}, priority=n % 3)
                for n in range(start, start + 2000)
            ]
            created += [str(job.id) for job in await queue.create_jobs(batch)]

        go = tmp_path / "go"
        children = []
        for i in range(PROCESSES):
            out = tmp_path / f"claims-{i}.json"
            args = [postgres_url, postgres_schema, f"p{i}", str(go), str(out)]
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-c", DRAINER, *args, str(CONNECTIONS_PER_PROCESS)
            )
            children.append((child, out))
        await asyncio.sleep(1.0)  # let every child connect before the start signal
        started = time.monotonic()
        go.touch()
        for child, _ in children:
            assert await asyncio.wait_for(child.wait(), 120) == 0
        elapsed = time.monotonic() - started

        claims = [claim for _, out in children for claim in json.loads(out.read_text())]
        per_job = Counter(job_id for job_id, _ in claims)
        doubled = [job_id for job_id, n in per_job.items() if n > 1]
        assert not doubled, f"{len(doubled)} jobs claimed twice, e.g. {doubled[:3]}"
        assert set(per_job) == set(created), "claimed jobs differ from created jobs"
        assert all(attempt == 1 for _, attempt in claims)
        assert {j: n for j, n in (await queue.counts()).items() if n} == {
            JobStatus.COMPLETED: RACE_JOBS
        }
        per_process = [len(json.loads(out.read_text())) for _, out in children]
        assert all(n > 0 for n in per_process), f"a process claimed nothing: {per_process}"
        print(f"drained {RACE_JOBS} jobs in {elapsed:.1f} s; per process {per_process}")


def with_query(url: str, **params: str) -> str:
    """``url`` with extra query parameters."""
    separator = "&" if "?" in url else "?"
    return url + separator + "&".join(f"{key}={value}" for key, value in params.items())


def _terminate(url: str, application_name: str) -> int:
    """Terminate every backend connection of this test (by application_name) but our own."""
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            (application_name,),
        )
        row = cur.fetchone()
        return 0 if row is None else int(row[0])


async def _retrying(call: Callable[[], Awaitable[T]]) -> T:
    """Await ``call()`` until the backend answers, as a worker would."""
    while True:
        try:
            return await call()
        except BackendUnavailableError:
            await asyncio.sleep(0.05)


async def test_drain_survives_every_connection_being_terminated(
    postgres_url: str, postgres_schema: str
) -> None:
    """Terminating all of the queue's connections (twice) in the middle of a drain: the pool
    reconnects, the drain finishes, no job is lost and none is completed twice."""
    jobs = 3000
    application_name = f"jq_terminate_{uuid.uuid4().hex[:12]}"
    url = with_query(postgres_url, application_name=application_name)
    completions: list[str] = []
    lease = timedelta(seconds=2)
    async with jobqueue.connect(
        url, schema=postgres_schema, lease=lease, min_size=6, max_size=6, timeout=5
    ) as queue:
        for start in range(0, jobs, 1000):
            await queue.create_jobs(
                [CreateJobRequest(kind="t", payload={"n": n}) for n in range(start, start + 1000)]
            )
        done = asyncio.Event()
        milestones = {jobs // 4: asyncio.Event(), jobs // 2: asyncio.Event()}

        async def worker(n: int) -> None:
            worker_id = f"w{n}"
            while not done.is_set():
                try:
                    claimed = await queue.claim_jobs(worker_id, 1 + n)
                except BackendUnavailableError:
                    await asyncio.sleep(0.05)
                    continue
                if not claimed:
                    await asyncio.sleep(0.1)
                    continue
                for job in claimed:
                    try:
                        await queue.complete_job(
                            job.id, {}, worker_id=worker_id, attempt=job.attempts
                        )
                    except BackendUnavailableError:
                        continue  # unknown outcome: the job is completed or will be rescued
                    completions.append(str(job.id))
                    milestone = milestones.get(len(completions))
                    if milestone is not None:
                        milestone.set()

        async def rescuer() -> None:
            while not done.is_set():
                await asyncio.sleep(0.5)
                with contextlib.suppress(BackendUnavailableError):
                    await queue.rescue_expired_jobs()

        async def killer() -> list[int]:
            killed = []
            for milestone in milestones.values():
                await milestone.wait()
                killed.append(await asyncio.to_thread(_terminate, postgres_url, application_name))
            return killed

        async def finished() -> None:
            while True:
                count = await _retrying(lambda: queue.count_by_status(JobStatus.COMPLETED))
                if count == jobs:
                    done.set()
                    return
                await asyncio.sleep(0.2)

        tasks = [asyncio.create_task(worker(n)) for n in range(5)]
        tasks.append(asyncio.create_task(rescuer()))
        kills = asyncio.create_task(killer())
        await asyncio.wait_for(finished(), 120)
        await asyncio.gather(*tasks)
        killed = await kills

        assert all(n >= 1 for n in killed), f"nothing was terminated: {killed}"
        twice = [job_id for job_id, n in Counter(completions).items() if n > 1]
        assert not twice, f"completed twice: {twice[:3]}"
        counts = await _retrying(queue.counts)
        assert {s: n for s, n in counts.items() if n} == {JobStatus.COMPLETED: jobs}
