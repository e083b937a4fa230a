"""The conformance suite on the sqlite backend, each check on a file of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobqueue_conformance import ConnectSpec, QueueConformance


class TestSQLiteConformance(QueueConformance):
    """sqlite:// passes every check it claims capabilities for."""

    capabilities = frozenset({"concurrent_processes", "persistent"})

    @pytest.fixture
    def open_queue(self, tmp_path: Path) -> ConnectSpec:
        return ConnectSpec(f"sqlite:///{tmp_path / 'queue.db'}")
