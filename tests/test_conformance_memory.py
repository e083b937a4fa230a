"""The conformance suite on the built-in memory backend."""

from __future__ import annotations

import uuid

import pytest

import jobqueue
from jobqueue_conformance import ConnectSpec, QueueConformance


class TestMemoryConformance(QueueConformance):
    """memory:// passes every check it claims capabilities for."""

    capabilities = frozenset({"listen_notify"})

    @pytest.fixture
    def open_queue(self) -> ConnectSpec:
        return ConnectSpec(f"memory://conformance-{uuid.uuid4().hex}")


def test_the_backend_claims_the_capabilities_checked_here() -> None:
    """The capabilities registered for memory:// are exactly those the class above checks."""
    (info,) = [b for b in jobqueue.installed_backends() if b.scheme == "memory"]
    assert info.capabilities == TestMemoryConformance.capabilities
