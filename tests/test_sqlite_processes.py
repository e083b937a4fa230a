"""Several OS processes on one SQLite file: no double claim, no loss, no lock errors, and a
process killed inside a write transaction harms nobody."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import jobqueue
from jobqueue import CreateJobRequest, JobStatus

PROCESSES = 4
JOBS = 5000

DRAIN = """
import asyncio, json, os, sys, time, jobqueue

url, name, go, out = sys.argv[1:5]

async def main():
    claimed = []
    async with jobqueue.connect(url) as queue:
        while not os.path.exists(go):
            time.sleep(0.005)

        async def claimer(n):
            worker = f"{name}-{n}"
            while True:
                jobs = await queue.claim_jobs(worker, 1 + 4 * n)
                if not jobs:
                    return
                for job in jobs:
                    claimed.append(str(job.id))
                    await queue.complete_job(
                        job.id, {"by": worker}, worker_id=worker, attempt=job.attempts
                    )

        await asyncio.gather(*(claimer(n) for n in range(3)))
    with open(out, "w") as f:
        json.dump(claimed, f)

asyncio.run(main())
"""


def start_drainers(
    url: str, tmp_path: Path, count: int
) -> list[tuple[subprocess.Popen[str], Path]]:
    go = tmp_path / "go"
    children = []
    for i in range(count):
        out = tmp_path / f"claimed-{i}.json"
        child = subprocess.Popen(
            [sys.executable, "-c", DRAIN, url, f"p{i}", str(go), str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        children.append((child, out))
    return children


def collect(children: list[tuple[subprocess.Popen[str], Path]]) -> list[str]:
    """Wait for the drainers; every one must exit cleanly without a lock error."""
    claimed: list[str] = []
    for child, out in children:
        _, err = child.communicate(timeout=180)
        assert child.returncode == 0, err
        assert "locked" not in err and "busy" not in err, err
        claimed += json.loads(out.read_text())
    return claimed


@pytest.mark.parametrize(
    ("options", "jobs"),
    [("", JOBS), ("?synchronous=full&timeout=5", 1500)],
    ids=["defaults", "synchronous-full"],
)
async def test_processes_drain_one_file_each_job_claimed_exactly_once(
    tmp_path: Path, options: str, jobs: int
) -> None:
    """Four processes (three claiming tasks each, batches of 1, 5 and 9) drain 5,000 jobs
    from one file (1,500 with an fsync per commit and a 5 s lock timeout): every job is
    claimed exactly once and completed by its claimer, none is lost, and no process sees
    "database is locked"."""
    url = f"sqlite:///{tmp_path / 'q.db'}{options}"
    async with jobqueue.connect(url) as queue:
        created = await queue.create_jobs(CreateJobRequest(kind="k") for _ in range(jobs))
        children = start_drainers(url, tmp_path, PROCESSES)
        (tmp_path / "go").touch()
        started = time.monotonic()
        claimed = await asyncio.to_thread(collect, children)
        elapsed = time.monotonic() - started

        duplicates = [job for job, n in Counter(claimed).items() if n > 1]
        assert duplicates == []
        assert set(claimed) == {str(job.id) for job in created}
        counts = await queue.counts()
        assert counts[JobStatus.COMPLETED] == jobs
        assert sum(counts.values()) == jobs
        for job in await queue.list_jobs(JobStatus.COMPLETED, limit=jobs):
            assert job.attempts == 1 and job.stats == {"by": job.worker_id}
    assert elapsed < 120, f"draining took {elapsed:.1f} s"


VICTIM = """
import asyncio, sys, time, jobqueue

async def main():
    queue = await jobqueue.connect(sys.argv[1])
    # Claims and completions of up to 100 jobs run on the loop connection: open the
    # transaction there, and skip the marking of due jobs, which runs on the other one.
    queue._db.loop_connection.execute("PRAGMA cache_size = 5")
    queue._db.loop_connection.execute("BEGIN IMMEDIATE")
    queue._promoted_at = float("inf")
    jobs = [job for _ in range(4) for job in await queue.claim_jobs("victim", 100)]
    for job in jobs[:100]:
        await queue.complete_job(job.id, {"filler": "x" * 2000})
    print("holding", len(jobs), flush=True)
    time.sleep(600)

asyncio.run(main())
"""


async def test_process_killed_inside_a_write_transaction_leaves_the_file_consistent(
    tmp_path: Path,
) -> None:
    """A process holding the write lock with uncommitted claims and completions (spilled
    into the WAL) is SIGKILLed: a claim that was waiting for the lock then succeeds, nothing
    the victim did is visible, other processes drain every job, and the file checks out."""
    path = tmp_path / "q.db"
    url = f"sqlite:///{path}"
    async with jobqueue.connect(url) as queue:
        created = await queue.create_jobs(CreateJobRequest(kind="k") for _ in range(1000))
        victim = await asyncio.create_subprocess_exec(
            sys.executable, "-c", VICTIM, url, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert victim.stdout is not None
            line = await asyncio.wait_for(victim.stdout.readline(), 60)
            assert line.split() == [b"holding", b"400"]
            waiting = asyncio.create_task(queue.claim_job("survivor"))
            await asyncio.sleep(0.3)
            assert not waiting.done()
        finally:
            victim.send_signal(signal.SIGKILL)
            await victim.wait()
        assert victim.returncode == -signal.SIGKILL

        survivor_job = await asyncio.wait_for(waiting, 30)
        assert survivor_job is not None and survivor_job.attempts == 1
        counts = await queue.counts()
        assert counts[JobStatus.PENDING] == 999 and counts[JobStatus.RUNNING] == 1
        await queue.complete_job(survivor_job.id, {}, worker_id="survivor", attempt=1)

        children = start_drainers(url, tmp_path, 2)
        (tmp_path / "go").touch()
        claimed = await asyncio.to_thread(collect, children)
        assert sorted([*claimed, str(survivor_job.id)]) == sorted(str(j.id) for j in created)
        counts = await queue.counts()
        assert counts[JobStatus.COMPLETED] == 1000 and sum(counts.values()) == 1000
        assert await queue.heartbeat("victim") == set()

    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
