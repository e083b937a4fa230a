"""The conformance suite is itself tested: it passes on a naive correct backend and fails on
every deliberately broken one (see tests/broken_backends)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import Phase, settings

from broken_backends import BROKEN, SEQUENTIAL_BUGS

pytest_plugins = ["pytester"]

SUITE = """
import pytest
from broken_backends import BROKEN, NaiveQueue, opener
from jobqueue_conformance import QueueConformance

CLS = BROKEN.get({name!r}, NaiveQueue)

class TestSuiteOnBackend(QueueConformance):
    capabilities = NaiveQueue.capabilities

    @pytest.fixture
    def open_queue(self):
        return opener(CLS)
"""


@pytest.fixture
def no_shrinking() -> Iterator[None]:
    """The loaded Hypothesis profile without its shrink phase, and at least 1000 examples:
    these tests need a failure, not a minimal one (shrinking costs seconds per broken
    backend), and must not depend on the luck of a small budget (in one full run, 200
    derandomized examples missed a stale fenced completion that they find when run alone)."""
    previous = settings.get_current_profile_name()
    parent = settings.get_profile(previous)
    settings.register_profile(
        "conformance-no-shrink",
        parent=parent,
        max_examples=max(1000, parent.max_examples),
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )
    settings.load_profile("conformance-no-shrink")
    yield
    settings.load_profile(previous)


def run_suite(pytester: pytest.Pytester, name: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_suite=SUITE.format(name=name))
    return pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:asyncio", *args
    )  # fmt: skip


def test_the_naive_backend_passes_every_check(pytester: pytest.Pytester) -> None:
    """The naive backend the broken ones derive from passes the whole suite, nothing skipped
    but the process and connect checks (its opener is not a URL): so each variant's failure
    comes from its one bug."""
    result = run_suite(pytester, "none")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0, result.stdout.str()
    assert outcomes.get("skipped") == 2, result.stdout.str()
    assert outcomes.get("passed", 0) >= 30


@pytest.mark.usefixtures("no_shrinking")
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_the_suite_fails_on_a_broken_backend(pytester: pytest.Pytester, name: str) -> None:
    """Every broken backend makes the suite fail (stopping at its first failing check)."""
    result = run_suite(pytester, name, "-x")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1, (
        f"the suite passed on {name}: {BROKEN[name].__doc__}\n" + result.stdout.str()
    )


@pytest.mark.usefixtures("no_shrinking")
@pytest.mark.parametrize("name", SEQUENTIAL_BUGS)
def test_the_state_machine_alone_finds_each_sequential_bug(
    pytester: pytest.Pytester, name: str
) -> None:
    """The model-based state machine on its own finds every bug a sequence of calls can show,
    and reports the failing sequence of steps."""
    result = run_suite(pytester, name, "-k", "state_machine")
    result.assert_outcomes(failed=1)
    assert "state = " in result.stdout.str() or "Falsifying" in result.stdout.str(), (
        result.stdout.str()
    )


def test_the_process_check_catches_a_backend_unsafe_across_processes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claimer processes on the example file backend with its lock removed: the history
    checker reports jobs claimed twice (or lost)."""
    pytester.makepyfile(
        test_suite="""
import pytest
from broken_backends import UnlockedFileSpec
from jobqueue_conformance import QueueConformance

class TestUnlocked(QueueConformance):
    capabilities = {"concurrent_processes"}

    @pytest.fixture
    def open_queue(self, tmp_path):
        return UnlockedFileSpec(str(tmp_path / "queue.json"))
"""
    )
    # In a subprocess: claimer processes and an in-process pytester session do not mix.
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:asyncio", "-k", "separate_processes"
    )  # fmt: skip
    result.assert_outcomes(failed=1)
    assert "concurrent claimer processes:" in result.stdout.str(), result.stdout.str()
