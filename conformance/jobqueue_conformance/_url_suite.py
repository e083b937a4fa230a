"""The suite module that :func:`jobqueue_conformance.run` hands to pytest."""

from __future__ import annotations

import pytest

from jobqueue_conformance import ConnectSpec, QueueConformance
from jobqueue_conformance._runner import Target


class TestBackendAtURL(QueueConformance):
    """Every check against the URL given to ``jobqueue conformance``."""

    @pytest.fixture
    def conformance_capabilities(self, conformance_target: Target) -> frozenset[str]:
        return conformance_target.capabilities

    @pytest.fixture
    def open_queue(self, conformance_target: Target) -> ConnectSpec:
        return conformance_target.spec()
