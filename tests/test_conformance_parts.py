"""Parts of the conformance suite on their own: the history checker and the pytest plugin."""

from __future__ import annotations

from uuid import UUID

import pytest

from jobqueue_conformance import Event, check_history
from jobqueue_conformance._checks import CHECKS

pytest_plugins = ["pytester"]

A, B, C = UUID(int=1), UUID(int=2), UUID(int=3)


def test_a_clean_history_is_ok() -> None:
    """Claims, a release, a re-claim and completions of every created job: nothing wrong."""
    report = check_history(
        [A, B],
        [
            Event("x", "claim", A, 1),
            Event("y", "claim", B, 1),
            Event("x", "release", A, 1),
            Event("y", "claim", A, 1),
            Event("y", "complete", A, 1),
            Event("y", "complete", B, 1),
        ],
    )
    assert report.ok, report.describe()
    assert report.completed == 2


def test_the_checker_counts_lost_duplicated_and_unexpected_jobs() -> None:
    """A job never completed is lost; one claimed while held, or completed twice, is
    duplicated; a claimed job nobody created is unexpected."""
    report = check_history(
        [A, B],
        [
            Event("x", "claim", A, 1),
            Event("y", "claim", A, 1),
            Event("x", "complete", A, 1),
            Event("y", "complete", A, 1),
            Event("x", "claim", C, 1),
        ],
    )
    assert not report.ok
    assert report.lost == {B}
    assert report.unexpected == {C}
    assert len(report.duplicated) == 2
    assert "lost" in report.describe() and str(B) in report.describe()


def test_without_releases_any_second_claim_is_a_duplicate() -> None:
    """Histories merged from processes (no releases) may claim each job once only."""
    events = [Event("p1", "claim", A, 1), Event("p1", "complete", A, 1),
              Event("p2", "claim", A, 2), Event("p2", "complete", A, 2)]  # fmt: skip
    assert check_history([A], events).duplicated == ["00000000-0000-0000-0000-000000000001 "
                                                     "completed twice"]  # fmt: skip
    assert len(check_history([A], events, releases=False).duplicated) == 2


def test_refused_completions_are_reported() -> None:
    """A claimer whose fenced completion of its own job was refused is a failure."""
    report = check_history([A], [Event("x", "claim", A, 1), Event("x", "refused", A, 1)])
    assert report.refused and not report.ok


def test_the_plugin_only_registers_a_marker(pytester: pytest.Pytester) -> None:
    """In a session that does not use the suite, the plugin adds the marker and nothing else:
    no fixtures, no collected tests."""
    pytester.makepyfile(test_plain="def test_one():\n    assert True\n")
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-p", "no:asyncio", "--strict-markers"
    )
    result.assert_outcomes(passed=1)
    fixtures = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-p", "no:asyncio", "--fixtures"
    )
    assert "conformance" not in fixtures.stdout.str()
    markers = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-p", "no:asyncio", "--markers"
    )
    assert "jobqueue_conformance:" in markers.stdout.str()


def test_the_marker_selects_the_suite(pytester: pytest.Pytester) -> None:
    """Every check of a QueueConformance subclass carries the jobqueue_conformance marker."""
    pytester.makepyfile(
        test_suite="""
import pytest
from jobqueue_conformance import ConnectSpec, QueueConformance

class TestMemory(QueueConformance):
    @pytest.fixture
    def open_queue(self):
        return ConnectSpec("memory://marker-check")

def test_other():
    pass
"""
    )
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-p", "no:asyncio",
        "-m", "not jobqueue_conformance", "--strict-markers",
    )  # fmt: skip
    result.assert_outcomes(passed=1, deselected=len(CHECKS))


def test_a_subclass_without_open_queue_says_what_is_missing(pytester: pytest.Pytester) -> None:
    """Forgetting the one fixture gives an error naming it."""
    pytester.makepyfile(
        test_suite="""
from jobqueue_conformance import QueueConformance

class TestNothing(QueueConformance):
    pass
"""
    )
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-p", "no:asyncio", "-k", "counts"
    )
    result.assert_outcomes(errors=1)
    assert "must provide an open_queue fixture" in result.stdout.str()
