"""Run the suite against a URL (what ``jobqueue conformance URL`` does) and report."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pytest
from hypothesis import HealthCheck, settings

from jobqueue._plugins import backend_for

from ._harness import ConnectSpec

__all__ = ["Outcome", "Report", "RunnerPlugin", "run"]

TEST_ID = "{test_id}"
QUICK_EXAMPLES = 60
THOROUGH_EXAMPLES = 1000
SUITE_MODULE = Path(__file__).with_name("_url_suite.py")


@dataclass
class Outcome:
    """What happened to one check."""

    name: str
    status: str
    seconds: float = 0.0
    detail: str = ""


@dataclass
class Report:
    """Every check's outcome, in the order they ran."""

    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes.values() if o.status == status)


@dataclass
class Target:
    """The queue under test: a URL (maybe with ``{test_id}``), options, claimed capabilities."""

    url: str
    options: Mapping[str, Any]
    capabilities: frozenset[str]

    def spec(self) -> ConnectSpec:
        """A fresh queue's opener: ``{test_id}`` replaced by a new token in the URL and options.

        A bare ``memory://`` becomes a named memory queue, so that every handle of
        one check shares it.
        """
        token = f"t{uuid.uuid4().hex[:12]}"
        url = self.url
        if url.rstrip("/") == "memory:":
            url = f"memory://conformance-{TEST_ID}"
        options = {
            key: value.replace(TEST_ID, token) if isinstance(value, str) else value
            for key, value in self.options.items()
        }
        return ConnectSpec(url.replace(TEST_ID, token), options)


class RunnerPlugin:
    """Gives the suite module its target and records each check's outcome."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.report = Report()

    @pytest.fixture
    def conformance_target(self) -> Target:
        return self.target

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        name = report.nodeid.rpartition("::")[2].removeprefix("test_")
        outcome = self.report.outcomes.setdefault(name, Outcome(name, "passed"))
        outcome.seconds += report.duration
        if report.skipped:
            outcome.status = "skipped"
            longrepr = report.longrepr
            outcome.detail = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            outcome.detail = outcome.detail.removeprefix("Skipped: ")
        elif report.failed:
            outcome.status = "failed" if report.when == "call" else "error"
            sections = [text for title, text in report.sections if "Hypothesis" in title]
            outcome.detail = "\n".join([report.longreprtext, *sections]).strip()


def _print_report(report: Report, target: Target, seconds: float, out: TextIO) -> None:
    def say(text: str = "") -> None:
        print(text, file=out)

    caps = ", ".join(sorted(target.capabilities)) or "none"
    say(f"jobqueue conformance suite on {_redacted(target.url)} (capabilities: {caps})")
    say()
    marks = {"passed": "PASS", "failed": "FAIL", "error": "ERROR", "skipped": "SKIP"}
    for outcome in report.outcomes.values():
        line = f"  {marks[outcome.status]:5} {outcome.name}  ({outcome.seconds:.2f} s)"
        if outcome.status == "skipped":
            line += f"  -- {outcome.detail}"
        say(line)
    broken = [o for o in report.outcomes.values() if o.status in ("failed", "error")]
    for outcome in broken:
        say()
        say(f"{'=' * 20} {marks[outcome.status]}: {outcome.name} {'=' * 20}")
        say(outcome.detail)
    say()
    say(
        f"{report.count('passed')} passed, {report.count('failed')} failed, "
        f"{report.count('error')} errors, {report.count('skipped')} skipped "
        f"in {seconds:.1f} s"
    )


def _redacted(url: str) -> str:
    from jobqueue.backend import redact_url

    return redact_url(url)


def run(
    url: str,
    *,
    options: Mapping[str, Any] | None = None,
    thorough: bool = False,
    max_examples: int | None = None,
    select: str | None = None,
    out: TextIO | None = None,
) -> int:
    """Run every check against the backend ``url`` resolves to; print a report; return an exit
    status (0 only when no check failed).

    ``{test_id}`` in ``url`` or in a string option is replaced by a token unique to each
    check (a file name, a schema, a database name), so each check starts on a fresh
    queue; without it every check uses the same queue, which the suite empties through
    the API (cancel, then purge) before each check. ``options`` go to ``connect``.
    ``thorough`` runs many more random examples; ``select`` is a pytest ``-k``
    expression over check names.
    """
    stream = sys.stdout if out is None else out
    info = backend_for(url.replace(TEST_ID, "x"))
    target = Target(url, dict(options or {}), info.capabilities)
    examples = max_examples or (THOROUGH_EXAMPLES if thorough else QUICK_EXAMPLES)
    settings.register_profile(
        "jobqueue-conformance",
        max_examples=examples,
        derandomize=not thorough,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    previous = settings.get_current_profile_name()
    settings.load_profile("jobqueue-conformance")
    plugin = RunnerPlugin(target)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="jobqueue-conformance-") as workdir:
        ini = Path(workdir, "pytest.ini")
        ini.write_text("[pytest]\npython_files = _url_suite.py\naddopts =\n")
        args = [
            str(SUITE_MODULE),
            "-c", str(ini),
            "--rootdir", workdir,
            "-p", "no:cacheprovider",
            "-p", "no:randomly",
            "-p", "no:asyncio",
            "--tb", "short",
            "-W", "ignore::pytest.PytestAssertRewriteWarning",
        ]  # fmt: skip
        if select:
            args += ["-k", select]
        with open(os.devnull, "w") as devnull:
            saved = sys.stdout
            sys.stdout = devnull
            try:
                status = pytest.main(args, plugins=[plugin])
            finally:
                sys.stdout = saved
                settings.load_profile(previous)
    _print_report(plugin.report, target, time.monotonic() - started, stream)
    broken = plugin.report.count("failed") + plugin.report.count("error")
    if broken or not plugin.report.outcomes:
        return 1
    return 0 if status in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED) else 1
