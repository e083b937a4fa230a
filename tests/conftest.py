"""Shared fixtures: Hypothesis profiles and a private PostgreSQL schema per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "thorough",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_required() -> bool:
    """In CI an unreachable PostgreSQL fails the run instead of skipping its tests."""
    return bool(os.environ.get("JOBQUEUE_REQUIRE_POSTGRES") or os.environ.get("CI"))


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The DSN of the test server (``JOBQUEUE_TEST_POSTGRES_URL``), checked reachable."""
    url = os.environ.get("JOBQUEUE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        message = f"PostgreSQL at {url.split('@')[-1]} is not reachable: {exc}"
        if postgres_required():
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """A schema name no other test or run uses; dropped afterwards."""
    import psycopg

    name = f"jq_test_{uuid.uuid4().hex[:16]}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
