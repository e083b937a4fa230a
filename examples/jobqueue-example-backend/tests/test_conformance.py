"""The jobqueue conformance suite on the example backend, run from this package's own pytest."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobqueue_conformance import ConnectSpec, QueueConformance


class TestExampleBackend(QueueConformance):
    """example:// keeps the jobqueue contract for every capability it claims."""

    capabilities = frozenset({"persistent", "concurrent_processes"})

    @pytest.fixture
    def open_queue(self, tmp_path: Path) -> ConnectSpec:
        # A new file per test: a fresh, empty queue that every handle of the test shares.
        return ConnectSpec(f"example://{tmp_path / 'queue.json'}")
