"""The conformance suite on the built-in SQLite backend (a fresh file per test)."""

from __future__ import annotations

from pathlib import Path

import pytest

import jobqueue
from jobqueue_conformance import ConnectSpec, QueueConformance


class TestSQLiteConformance(QueueConformance):
    """sqlite:// passes every check of the capabilities it claims."""

    capabilities = frozenset({"concurrent_processes", "persistent"})

    @pytest.fixture
    def open_queue(self, tmp_path: Path) -> ConnectSpec:
        return ConnectSpec(f"sqlite:///{tmp_path / 'conformance.db'}")


def test_the_backend_claims_the_capabilities_checked_here() -> None:
    """The capabilities registered for sqlite:// are exactly those the class above checks."""
    (info,) = [b for b in jobqueue.installed_backends() if b.scheme == "sqlite"]
    assert info.capabilities == TestSQLiteConformance.capabilities
