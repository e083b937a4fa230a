"""The ``jobqueue`` command in-process (click's runner).

Tests of the command line itself use ``memory://NAME`` queues (shared by every
handle in this process, so a test can enqueue through the command and inspect
through the API). Tests where storage matters also run on SQLite and
PostgreSQL (``backend_url``). Runs of the installed script as a subprocess are
in test_cli_subprocess.py.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import jobqueue
from jobqueue import BackendUnavailableError, JobQueue, JobStatus
from jobqueue._cli import _plugins as cli_plugins
from jobqueue._cli import cli


def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, env=env, prog_name="jobqueue")


def ok_json(*args: str, input: str | None = None) -> Any:
    result = invoke("--json", *args, input=input)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def assert_error(result: Result, code: int, *fragments: str) -> None:
    """The command failed with ``code`` and exactly one ``error:`` line on stderr."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def url() -> str:
    """A memory queue of this test's own."""
    return f"memory://cli-{uuid.uuid4().hex}"


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A queue of this test's own on each backend: memory, a SQLite file, a PostgreSQL schema."""
    if request.param == "memory":
        return f"memory://cli-{uuid.uuid4().hex}"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}"
    base = request.getfixturevalue("postgres_url")
    return f"{base}?schema={request.getfixturevalue('postgres_schema')}"


def with_queue(url: str, action: Any) -> Any:
    async def main() -> Any:
        async with jobqueue.connect(url) as queue:
            return await action(queue)

    return asyncio.run(main())


def test_enqueue_prints_the_job_and_show_reads_it_back(backend_url: str) -> None:
    """enqueue --json prints every field of the new job; show --json returns the same job."""
    created = ok_json(
        "--url", backend_url, "enqueue", "email",
        "--payload", '{"to": "a@example.com"}',
        "--queue", "mail", "--priority", "7", "--max-attempts", "2",
        "--run-at", "2030-01-31T09:00:00Z",
    )  # fmt: skip
    assert created["kind"] == "email"
    assert created["payload"] == {"to": "a@example.com"}
    assert (created["queue"], created["priority"], created["max_attempts"]) == ("mail", 7, 2)
    assert created["status"] == "pending" and created["attempts"] == 0
    assert created["run_at"] == "2030-01-31T09:00:00+00:00"
    shown = ok_json("--url", backend_url, "show", created["id"])
    assert shown == created


def test_human_enqueue_and_show_name_the_job(backend_url: str) -> None:
    """Without --json, enqueue says which job it made and show prints its fields and error."""
    result = invoke("--url", backend_url, "enqueue", "resize")
    assert result.exit_code == 0
    job_id = result.stdout.split()[2]
    uuid.UUID(job_id)

    async def fail(queue: JobQueue) -> None:
        job = await queue.claim_job("w1")
        assert job is not None
        await queue.fail_job(job.id, "Traceback ...\nValueError: [bold]no such image[/]")

    with_queue(backend_url, fail)
    result = invoke("--url", backend_url, "show", job_id)
    assert result.exit_code == 0
    assert job_id in result.stdout and "failed" in result.stdout
    assert "ValueError: [bold]no such image[/]" in result.stdout


def test_url_and_json_work_before_and_after_the_command(url: str) -> None:
    """--url and --json may be given globally or after the command name, with the same result."""
    ok_json("--url", url, "enqueue", "a")
    after = invoke("list", "--url", url, "--json")
    assert after.exit_code == 0
    assert json.loads(after.stdout) == ok_json("--url", url, "list")


def test_url_from_the_environment(url: str) -> None:
    """JOBQUEUE_URL is the default URL."""
    ok_json("--url", url, "enqueue", "a")
    result = invoke("--json", "stats", env={"JOBQUEUE_URL": url})
    assert result.exit_code == 0
    assert json.loads(result.stdout)["total"] == 1


def test_list_is_newest_first_with_status_filter_and_limit(backend_url: str) -> None:
    """list prints jobs newest first, filtered by --status, at most --limit of them."""
    ids = [ok_json("--url", backend_url, "enqueue", f"k{i}")["id"] for i in range(4)]
    ok_json("--url", backend_url, "cancel", ids[1])
    listed = ok_json("--url", backend_url, "list")
    assert [j["id"] for j in listed] == ids[::-1]
    assert [j["id"] for j in ok_json("--url", backend_url, "list", "--limit", "2")] == ids[:1:-1]
    pending = ok_json("--url", backend_url, "list", "--status", "pending")
    assert [j["id"] for j in pending] == [ids[3], ids[2], ids[0]]
    human = invoke("--url", backend_url, "list", "--status", "cancelled")
    assert human.exit_code == 0 and ids[1] in human.stdout and ids[0] not in human.stdout
    assert (
        "No jobs with status failed"
        in invoke("--url", backend_url, "list", "--status", "failed").stdout
    )


def test_stats_counts_every_status(backend_url: str) -> None:
    """stats reports a count for each of the five statuses and the total."""
    first = ok_json("--url", backend_url, "enqueue", "a")["id"]
    ok_json("--url", backend_url, "enqueue", "b")
    ok_json("--url", backend_url, "cancel", first)
    result = ok_json("--url", backend_url, "stats")
    assert result == {
        "counts": {"pending": 1, "running": 0, "completed": 0, "failed": 0, "cancelled": 1},
        "total": 2,
    }
    human = invoke("--url", backend_url, "stats")
    assert human.exit_code == 0 and "cancelled" in human.stdout and "total" in human.stdout


def test_cancel_then_retry_runs_the_job_again(backend_url: str) -> None:
    """cancel makes a pending job cancelled; retry makes it pending again with attempts 0."""
    job_id = ok_json("--url", backend_url, "enqueue", "a")["id"]
    assert ok_json("--url", backend_url, "cancel", job_id)["status"] == "cancelled"
    retried = ok_json("--url", backend_url, "retry", job_id)
    assert (retried["status"], retried["attempts"], retried["finished_at"]) == ("pending", 0, None)
    again = invoke("--url", backend_url, "retry", job_id)
    assert_error(again, 1, "pending")


def test_refused_transitions_exit_1_with_one_line(backend_url: str) -> None:
    """Retrying a pending job or cancelling a cancelled one is refused: exit 1, nothing changes."""
    job_id = ok_json("--url", backend_url, "enqueue", "a")["id"]
    assert_error(invoke("--url", backend_url, "retry", job_id), 1, job_id, "pending")
    ok_json("--url", backend_url, "cancel", job_id)
    assert_error(invoke("--url", backend_url, "cancel", job_id), 1, "cancelled")
    assert ok_json("--url", backend_url, "show", job_id)["status"] == "cancelled"


@pytest.mark.parametrize("command", ["show", "cancel", "retry"])
def test_unknown_job_id_exits_4(backend_url: str, command: str) -> None:
    """An id no job has is 'not found', exit 4, with a hint."""
    missing = str(uuid.uuid4())
    ok_json("--url", backend_url, "migrate")
    assert_error(invoke("--url", backend_url, command, missing), 4, missing, "jobqueue list")


def test_malformed_job_id_is_a_usage_error(url: str) -> None:
    """An id that is not a UUID is rejected before connecting, exit 2."""
    assert_error(invoke("--url", url, "show", "not-an-id"), 2, "not-an-id", "--help")


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ("{bad json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"x": NaN}', "payload"),
    ],
)
def test_bad_payload_exits_2(url: str, payload: str, fragment: str) -> None:
    """A payload that is not a JSON object is a usage error: one line, exit 2, nothing enqueued."""
    assert_error(invoke("--url", url, "enqueue", "a", "--payload", payload), 2, fragment)
    assert ok_json("--url", url, "stats")["total"] == 0


def test_payload_from_stdin_and_from_a_file(url: str, tmp_path: Path) -> None:
    """--payload - reads stdin and --payload @FILE reads a file."""
    from_stdin = ok_json("--url", url, "enqueue", "a", "--payload", "-", input='{"n": 1}')
    assert from_stdin["payload"] == {"n": 1}
    path = tmp_path / "p.json"
    path.write_text('{"n": 2}')
    assert ok_json("--url", url, "enqueue", "a", "--payload", f"@{path}")["payload"] == {"n": 2}
    assert_error(
        invoke("--url", url, "enqueue", "a", "--payload", f"@{tmp_path / 'missing.json'}"),
        2,
        "cannot read the payload file",
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--run-at", "2030-01-31T09:00:00"], "no UTC offset"),
        (["--run-at", "tomorrow"], "not an ISO 8601"),
        (["--max-attempts", "0"], "max-attempts"),
        (["--priority", "99999999999"], "priority"),
        (["--queue", ""], "queue"),
    ],
)
def test_bad_enqueue_options_exit_2(url: str, args: list[str], fragment: str) -> None:
    """Invalid enqueue options are usage errors with one line naming the problem."""
    assert_error(invoke("--url", url, "enqueue", "a", *args), 2, fragment)


def test_missing_argument_is_one_usage_line() -> None:
    """Click's usage errors are reduced to one line pointing at --help, exit 2."""
    assert_error(invoke("enqueue"), 2, "KIND", "jobqueue enqueue --help")
    assert_error(invoke("no-such-command"), 2, "no-such-command")


def test_release_worker_puts_its_running_jobs_back(backend_url: str) -> None:
    """release-worker returns every running job of that worker to pending, attempt given back."""
    for _ in range(3):
        ok_json("--url", backend_url, "enqueue", "a")

    async def claim(queue: JobQueue) -> None:
        await queue.claim_jobs("w1", 2)
        await queue.claim_job("w2")

    with_queue(backend_url, claim)
    assert ok_json("--url", backend_url, "release-worker", "w1") == {
        "worker_id": "w1",
        "released": 2,
    }
    counts = ok_json("--url", backend_url, "stats")["counts"]
    assert (counts["pending"], counts["running"]) == (2, 1)
    assert "Released 0" in invoke("--url", backend_url, "release-worker", "w9").stdout


def test_purge_deletes_only_old_enough_terminal_jobs(backend_url: str) -> None:
    """purge deletes terminal jobs that finished before now - DURATION, in the given statuses."""
    keep = ok_json("--url", backend_url, "enqueue", "a")["id"]
    cancelled = ok_json("--url", backend_url, "enqueue", "b")["id"]
    ok_json("--url", backend_url, "cancel", cancelled)
    assert ok_json("--url", backend_url, "purge", "--older-than", "1h")["purged"] == 0
    only_failed = ok_json("--url", backend_url, "purge", "--older-than", "0s", "--status", "failed")
    assert (only_failed["purged"], only_failed["statuses"]) == (0, ["failed"])
    assert ok_json("--url", backend_url, "purge", "--older-than", "0s")["purged"] == 1
    assert [j["id"] for j in ok_json("--url", backend_url, "list")] == [keep]


@pytest.mark.parametrize("duration", ["", "7", "1x", "d7", "-1h", "1h 30"])
def test_purge_rejects_bad_durations(url: str, duration: str) -> None:
    """A duration must be numbers with units s, m, h, d or w; anything else is exit 2."""
    assert_error(invoke("--url", url, "purge", "--older-than", duration), 2, "duration")


def test_purge_rejects_live_statuses(url: str) -> None:
    """Only terminal statuses can be purged."""
    assert_error(
        invoke("--url", url, "purge", "--older-than", "1d", "--status", "running"), 2, "running"
    )


def test_durations_accept_combined_units() -> None:
    """1h30m, 7d and 2w are durations."""
    from datetime import timedelta

    from jobqueue._cli._app import Duration

    assert Duration().convert("1h30m", None, None) == timedelta(minutes=90)
    assert Duration().convert("7d", None, None) == timedelta(days=7)
    assert Duration().convert("2W", None, None) == timedelta(weeks=2)
    assert Duration().convert("0.5s", None, None) == timedelta(milliseconds=500)


def test_unknown_scheme_exits_2_listing_installed_backends() -> None:
    """A URL no backend handles names the scheme and the installed ones, exit 2."""
    assert_error(invoke("--url", "nosuch://x", "stats"), 2, "'nosuch'", "memory://")
    assert_error(invoke("--url", "not a url", "stats"), 2, "scheme://")


def test_missing_sqlite_file_is_reported_not_created(tmp_path: Path) -> None:
    """Inspecting a SQLite file that does not exist exits 3 and does not create it."""
    path = tmp_path / "nothing.db"
    assert_error(invoke("--url", f"sqlite:///{path}", "list"), 3, "jobqueue migrate")
    assert not path.exists()


@pytest.fixture
def broken_scheme() -> Iterator[str]:
    """A backend that is always unavailable and puts the URL's password in its error."""

    def open_broken(url: str, **options: Any) -> JobQueue:
        raise BackendUnavailableError(f"cannot connect to {url}: connection refused")

    scheme = f"broken{uuid.uuid4().hex[:8]}"
    jobqueue.register_backend(scheme, open_broken)
    yield scheme
    jobqueue.unregister_backend(scheme)


def test_unavailable_backend_exits_3_without_the_password(broken_scheme: str) -> None:
    """An unreachable backend is exit 3 and the password never appears, even percent-encoded."""
    url = f"{broken_scheme}://admin:s3cr%40t@db.example:5432/jobs"
    result = invoke("--url", url, "stats")
    assert_error(result, 3, "connection refused", "***")
    assert "s3cr" not in result.stdout + result.stderr
    in_query = invoke(
        "--url", f"{broken_scheme}://db.example/jobs?sslpassword=t0p%2Bs3cret", "list"
    )
    assert_error(in_query, 3, "connection refused")
    assert "t0p" not in in_query.stdout + in_query.stderr


def test_worker_runs_handlers_from_a_module(
    backend_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    """worker MODULE:HANDLERS --drain runs every job with the module's handlers, then exits 0."""
    module = f"cli_handlers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "async def double(job):\n    return {'result': job.payload['n'] * 2}\n"
        "HANDLERS = {'double': double}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    ids = [
        ok_json("--url", backend_url, "enqueue", "double", "--payload", f'{{"n": {n}}}')["id"]
        for n in range(5)
    ]
    result = invoke("--url", backend_url, "--json", "worker", f"{module}:HANDLERS", "--drain")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["stopped"] is True
    for line in result.stderr.splitlines():
        assert json.loads(line)["logger"].startswith("jobqueue")
    for n, job_id in enumerate(ids):
        job = ok_json("--url", backend_url, "show", job_id)
        assert (job["status"], job["stats"]) == ("completed", {"result": n * 2})


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [("nomodule_xyz:HANDLERS", "cannot import"), ("json:NOPE", "no attribute"), ("json", "MODULE")],
)
def test_worker_reports_bad_handler_specs(url: str, spec: str, fragment: str) -> None:
    """A MODULE:HANDLERS that cannot be loaded is exit 2 with one line."""
    assert_error(invoke("--url", url, "worker", spec), 2, fragment)


@pytest.mark.parametrize("mode", ["worker", "loop"])
def test_bench_runs_every_job(backend_url: str, mode: str) -> None:
    """bench enqueues and runs --jobs no-op jobs and reports rates."""
    result = ok_json(
        "--url", backend_url, "bench", "--jobs", "300", "--mode", mode, "--batch", "50"
    )
    assert (result["jobs"], result["ran"], result["mode"]) == (300, 300, mode)
    assert result["run_jobs_per_second"] > 0 and result["enqueue_jobs_per_second"] > 0
    assert ok_json("--url", backend_url, "stats", "--json")["counts"]["completed"] == 300


def test_demo_retries_flaky_jobs_and_fails_one(url: str) -> None:
    """demo runs its sample jobs to the end: flaky ones retried and completed, one failed."""
    result = ok_json("--url", url, "demo", "--jobs", "12", "--seed", "1")
    assert result["jobs"] == 12
    assert result["counts"]["completed"] == 11 and result["counts"]["failed"] == 1
    assert result["retries"] >= 3 and result["attempts"] == 12 + result["retries"]
    assert "expired" in result["failed"][0]["error"]
    assert result["seconds"] < 30
    human = invoke("--url", url, "demo", "--jobs", "6", "--seed", "2")
    assert human.exit_code == 0, human.stderr
    assert "total" in human.stdout and "failed after 3 attempts" in human.stdout


def test_conformance_is_the_suites_own_command() -> None:
    """jobqueue conformance is jobqueue_conformance.cli.conformance_command, loaded on use."""
    from jobqueue_conformance.cli import conformance_command

    assert cli_plugins.conformance_command() is conformance_command
    result = invoke("conformance", "--help")
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: jobqueue conformance [OPTIONS] URL")


def test_conformance_without_the_suite_says_how_to_install(monkeypatch: Any) -> None:
    """When the conformance command cannot be imported, running it is one line and exit 3."""
    monkeypatch.setattr(cli_plugins, "CONFORMANCE_MODULE", "jobqueue_no_such_module")
    assert "conformance" in invoke("--help").stdout
    assert_error(invoke("conformance", "memory://"), 3, "pip install")


def test_backends_lists_memory() -> None:
    """backends --json lists the memory scheme with its distribution."""
    listed = ok_json("backends")
    memory = next(b for b in listed["backends"] if b["scheme"] == "memory")
    assert memory["distribution"] == "jobqueue"


def test_migrate_reports_the_redacted_url(url: str) -> None:
    """migrate succeeds on a fresh queue and reports how many jobs it holds."""
    assert ok_json("--url", url, "migrate") == {"url": url, "migrated": True, "jobs": 0}


def test_statuses_in_json_are_the_enum_values(url: str) -> None:
    """Statuses in JSON output are JobStatus values."""
    job = ok_json("--url", url, "enqueue", "a")
    assert JobStatus(job["status"]) is JobStatus.PENDING


def test_help_lists_lazy_commands_without_loading_them(monkeypatch: Any) -> None:
    """jobqueue --help shows the conformance command's summary without importing the suite."""

    def loader() -> Any:
        raise AssertionError("the lazy command was loaded for the help listing")

    monkeypatch.setitem(cli._lazy, "conformance", (loader, "Run the suite (summary)."))
    result = invoke("--help")
    assert result.exit_code == 0
    assert "Run the suite (summary)." in result.stdout


def test_no_command_prints_the_help() -> None:
    """jobqueue alone prints its help on stdout and exits 0."""
    result = invoke()
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout.startswith("Usage: jobqueue") and "Exit codes" in result.stdout
