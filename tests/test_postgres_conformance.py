"""The conformance suite on the PostgreSQL backend, each check in its own schema."""

from __future__ import annotations

import pytest

from jobqueue_conformance import ConnectSpec, QueueConformance


class TestPostgresConformance(QueueConformance):
    """postgresql:// passes every check of the suite."""

    capabilities = frozenset({"concurrent_processes", "persistent", "listen_notify"})

    @pytest.fixture
    def open_queue(self, postgres_url: str, postgres_schema: str) -> ConnectSpec:
        return ConnectSpec(postgres_url, {"schema": postgres_schema, "max_size": 4})
