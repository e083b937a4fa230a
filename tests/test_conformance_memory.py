"""The conformance suite on the built-in memory backend."""

from __future__ import annotations

import uuid

import pytest

from jobqueue_conformance import ConnectSpec, QueueConformance


class TestMemoryConformance(QueueConformance):
    """memory:// passes every check it claims capabilities for."""

    capabilities = frozenset({"listen_notify"})

    @pytest.fixture
    def open_queue(self) -> ConnectSpec:
        return ConnectSpec(f"memory://conformance-{uuid.uuid4().hex}")
