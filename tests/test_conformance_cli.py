"""`jobqueue conformance URL`: the report, the exit status, test isolation, and a third-party
backend installed from examples/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
EXAMPLE = TESTS.parent / "examples" / "jobqueue-example-backend"
QUICK = ["--examples", "10"]


def jobqueue(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobqueue._cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=600,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
    )  # fmt: skip


def conformance_on_broken(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The conformance command in a process where the broken backend ``name`` is registered."""
    code = (
        "import sys, broken_backends as b; "
        f"scheme = b.register(b.BROKEN[{name!r}]); "
        "sys.argv[1] = sys.argv[1].replace('SCHEME', scheme); "
        "from jobqueue_conformance.cli import main; main()"
    )
    return subprocess.run(
        [sys.executable, "-c", code, "SCHEME://{test_id}", *args],
        capture_output=True, text=True, cwd=cwd, timeout=600,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
    )  # fmt: skip


def test_memory_passes_and_the_report_names_skipped_capabilities(tmp_path: Path) -> None:
    """On memory:// every check passes (exit 0); checks for unclaimed capabilities are listed
    as skipped with the reason."""
    result = jobqueue("conformance", "memory://", *QUICK, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "PASS  state_machine_agrees_with_the_model" in out
    assert "PASS  concurrent_claimers_on_separate_handles" in out
    assert "SKIP  jobs_survive_reconnecting" in out
    assert "does not claim the 'persistent' capability" in out
    assert " 0 failed, 0 errors, 2 skipped" in out


def test_a_shared_queue_is_emptied_before_each_check(tmp_path: Path) -> None:
    """Without {test_id} every check runs on the one queue at URL, emptied through the API."""
    result = jobqueue("conformance", "memory://one-shared-queue", *QUICK, "-k", "not state_machine",
                      cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout


def test_a_broken_backend_fails_with_the_shrunk_example(tmp_path: Path) -> None:
    """A backend that claims newest first exits 1; the report shows the failed checks and the
    shrunk sequence of steps the state machine found."""
    result = conformance_on_broken(
        "NewestFirst", "--examples", "30", "-k", "state_machine or ties", cwd=tmp_path
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "FAIL  claim_order_ties_follow_call_order_under_a_frozen_clock" in out
    assert "FAIL  state_machine_agrees_with_the_model" in out
    assert "state = QueueMachine()" in out and "state.claim(" in out
    assert "2 failed" in out


def test_a_bad_url_is_an_error(tmp_path: Path) -> None:
    """An unknown scheme is reported as an error, not as a passing suite."""
    result = jobqueue("conformance", "nosuchscheme://x", cwd=tmp_path)
    assert result.returncode != 0
    assert "nosuchscheme" in result.stdout + result.stderr


def example_installed() -> None:
    try:
        import jobqueue_example  # noqa: F401
    except ImportError:
        pytest.fail(f"the example backend is not installed: pip install -e {EXAMPLE}")


def test_the_example_backend_is_listed_with_its_distribution(tmp_path: Path) -> None:
    """`jobqueue backends` lists example:// with the distribution that registered it."""
    example_installed()
    result = jobqueue("backends", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {row["scheme"]: row for row in json.loads(result.stdout)["backends"]}
    assert rows["example"]["distribution"] == "jobqueue-example-backend"
    assert rows["example"]["capabilities"] == ["concurrent_processes", "persistent"]


def test_the_example_backend_passes_the_suite(tmp_path: Path) -> None:
    """The third-party example backend passes `jobqueue conformance`, processes included."""
    example_installed()
    url = f"example://{tmp_path}/queue-{{test_id}}.json"
    result = jobqueue("conformance", url, "--examples", "20", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS  concurrent_claimers_in_separate_processes" in result.stdout
    assert "PASS  jobs_survive_reconnecting" in result.stdout
