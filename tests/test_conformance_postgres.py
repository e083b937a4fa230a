"""The conformance suite on the built-in PostgreSQL backend (a private schema per test)."""

from __future__ import annotations

import pytest

import jobqueue
from jobqueue_conformance import ConnectSpec, QueueConformance


class TestPostgresConformance(QueueConformance):
    """postgresql:// passes every check of the capabilities it claims."""

    capabilities = frozenset({"concurrent_processes", "persistent", "listen_notify"})

    @pytest.fixture
    def open_queue(self, postgres_url: str, postgres_schema: str) -> ConnectSpec:
        return ConnectSpec(postgres_url, {"schema": postgres_schema})


def test_the_backend_claims_the_capabilities_checked_here() -> None:
    """The capabilities registered for postgresql:// are exactly those the class above checks."""
    (info,) = [b for b in jobqueue.installed_backends() if b.scheme == "postgresql"]
    assert info.capabilities == TestPostgresConformance.capabilities
