"""The installed ``jobqueue`` command, run as a subprocess against SQLite and PostgreSQL.

Each run costs a process start: every command's behaviour is tested
in-process in test_cli.py (on these backends too); here each backend gets one
short session, plus what only a real process shows: signals, exit codes,
files left behind, shell completion.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

JOBQUEUE = Path(sys.executable).with_name("jobqueue")
TIMEOUT = 60


def jobqueue(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the console script; JOBQUEUE_URL from the caller's environment is ignored."""
    environment = {k: v for k, v in os.environ.items() if k != "JOBQUEUE_URL"}
    environment.update(env or {})
    return subprocess.run(
        [str(JOBQUEUE), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment,
        timeout=TIMEOUT,
        check=False,
    )


def ok_json(url: str, *args: str, cwd: Path | None = None) -> Any:
    done = jobqueue("--url", url, "--json", *args, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_error(done: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    """Exit ``code`` and exactly one ``error:`` line on stderr, no traceback."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(params=["sqlite", "postgres"])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL with no schema yet: a SQLite file in tmp_path, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}"
    base = request.getfixturevalue("postgres_url")
    schema = request.getfixturevalue("postgres_schema")
    return f"{base}?schema={schema}"


HANDLERS = """
async def echo(job):
    return {"echo": job.payload["n"]}

async def boom(job):
    raise RuntimeError("boom " + str(job.payload["n"]))

HANDLERS = {"echo": echo, "boom": boom}
"""


def test_operator_session(queue_url: str, tmp_path: Path) -> None:
    """migrate, enqueue, worker, list, show and their errors, each a process of its own."""
    assert_error(jobqueue("--url", queue_url, "stats"), 3, "migrate")
    assert ok_json(queue_url, "migrate")["migrated"] is True
    echo = ok_json(queue_url, "enqueue", "echo", "--payload", '{"n": 1}', "--priority", "5")
    boom = ok_json(queue_url, "enqueue", "boom", "--payload", '{"n": 2}', "--max-attempts", "1")

    (tmp_path / "cli_session_tasks.py").write_text(HANDLERS)
    worker = jobqueue("--url", queue_url, "worker", "cli_session_tasks:HANDLERS", "--drain",
                      "--worker-id", "session-worker", cwd=tmp_path)  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    assert "session-worker" in worker.stderr

    listed = {job["id"]: job for job in ok_json(queue_url, "list")}
    done, failed = listed[echo["id"]], listed[boom["id"]]
    assert (done["status"], done["stats"], done["worker_id"]) == (
        "completed", {"echo": 1}, "session-worker",
    )  # fmt: skip
    assert failed["status"] == "failed" and "RuntimeError: boom 2" in failed["error"]
    human = jobqueue("--url", queue_url, "show", boom["id"])
    assert human.returncode == 0 and "RuntimeError: boom 2" in human.stdout
    missing = str(uuid.uuid4())
    assert_error(jobqueue("--url", queue_url, "cancel", missing), 4, missing)


def test_unreachable_postgres_exits_3_without_the_password(postgres_url: str) -> None:
    """A database that cannot be reached is exit 3; the password is never printed."""
    done = jobqueue("--url", "postgresql://postgres:hunter2@127.0.0.1:1/test?connect_timeout=2",
                    "stats")  # fmt: skip
    assert_error(done, 3, "***")
    assert "hunter2" not in done.stdout + done.stderr


@pytest.fixture
def empty_tmp(tmp_path: Path) -> Path:
    """An empty working directory, with an empty sibling ``tmp`` for TMPDIR."""
    work, scratch = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    scratch.mkdir()
    return work


def test_demo_on_the_default_leaves_nothing_behind(empty_tmp: Path) -> None:
    """demo runs on a temporary SQLite file, removed afterwards; JOBQUEUE_URL is not touched."""
    scratch = empty_tmp.parent / "tmp"
    env = {"TMPDIR": str(scratch), "JOBQUEUE_URL": f"sqlite:///{empty_tmp / 'mine.db'}"}
    done = jobqueue("--json", "demo", "--jobs", "9", cwd=empty_tmp, env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["url"] == "a temporary SQLite file" and result["kept"] is False
    assert (result["counts"]["completed"], result["counts"]["failed"]) == (8, 1)
    assert result["retries"] >= 2
    assert list(empty_tmp.iterdir()) == [] and list(scratch.iterdir()) == []


def test_demo_keep_leaves_a_database_to_inspect(empty_tmp: Path) -> None:
    """demo --keep prints the URL of the database it kept, which other commands can read."""
    scratch = empty_tmp.parent / "tmp"
    done = jobqueue("demo", "--jobs", "3", "--keep", cwd=empty_tmp, env={"TMPDIR": str(scratch)})
    assert done.returncode == 0, done.stderr
    url = done.stdout.split("jobqueue --url ")[1].split()[0]
    assert url.startswith(f"sqlite:///{scratch}")
    assert len(ok_json(url, "list")) == 3


def test_stats_watch_ends_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    """stats --watch --json prints one line per refresh and exits 0 on SIGINT."""
    url = f"sqlite:///{tmp_path / 'watch.db'}"
    ok_json(url, "enqueue", "a")
    with subprocess.Popen(
        [str(JOBQUEUE), "--url", url, "--json", "stats", "--watch", "--interval", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        lines = [json.loads(process.stdout.readline()) for _ in range(2)]
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, err
    assert err == ""
    assert all(line["total"] == 1 and line["counts"]["pending"] == 1 for line in lines)
    assert lines[0]["at"] <= lines[1]["at"]


def test_worker_stops_on_sigterm(tmp_path: Path) -> None:
    """A worker without --drain runs until SIGTERM, then exits 0."""
    url = f"sqlite:///{tmp_path / 'worker.db'}"
    (tmp_path / "cli_sig_tasks.py").write_text(HANDLERS)
    ok_json(url, "enqueue", "echo", "--payload", '{"n": 7}')
    with subprocess.Popen(
        [str(JOBQUEUE), "--url", url, "--json", "worker", "cli_sig_tasks:HANDLERS"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    ) as process:
        assert process.stderr is not None
        for line in process.stderr:
            if "completed" in json.loads(line)["message"]:
                break
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0
    assert json.loads(out)["stopped"] is True
    assert ok_json(url, "list")[0]["status"] == "completed"


def test_shell_completion_script() -> None:
    """_JOBQUEUE_COMPLETE=bash_source prints a bash completion function for jobqueue."""
    done = jobqueue(env={"_JOBQUEUE_COMPLETE": "bash_source"})
    assert done.returncode == 0
    assert "_jobqueue_completion" in done.stdout and "complete " in done.stdout


def test_python_dash_m_runs_the_same_command() -> None:
    """python -m jobqueue._cli is the jobqueue command."""
    done = subprocess.run(
        [sys.executable, "-m", "jobqueue._cli", "--version"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.startswith("jobqueue ")
