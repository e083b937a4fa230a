"""The pytest plugin (entry point ``pytest11``): registers the suite's marker, nothing else."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "jobqueue_conformance: a check of the jobqueue conformance suite "
        "(select or deselect them with -m)",
    )
