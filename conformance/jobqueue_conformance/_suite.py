"""``QueueConformance``: the base class a backend's test suite subclasses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import ClassVar

import pytest

from ._checks import CHECKS, Check
from ._harness import CAPABILITIES, Harness, Opener

__all__ = ["QueueConformance"]


class QueueConformance:
    """The conformance suite as a pytest base class (deliberately not named ``Test*``).

    Subclass it as ``class TestAcme(QueueConformance)``, set :attr:`capabilities`
    to what the backend claims, and provide one fixture, ``open_queue``, returning
    an opener: ``await opener(clock)`` opens a new handle, using ``clock`` for
    every "now", on the test's queue. Every call within one test must open the
    *same* storage (checks open several handles, and reconnect); the suite
    empties it through the public API before each check. Return a
    :class:`~jobqueue_conformance.ConnectSpec` when the backend claims
    ``concurrent_processes``, so that child processes can open the queue too.

    Every check is a test method named ``test_<check>``; checks needing a
    capability the backend does not claim are skipped, saying which. The suite
    runs async code on event loops of its own: no pytest asyncio plugin is needed.
    """

    capabilities: ClassVar[frozenset[str] | set[str]] = frozenset()
    """The capabilities the backend claims: any of ``concurrent_processes``,
    ``persistent``, ``listen_notify``."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.jobqueue_conformance]

    @pytest.fixture
    def open_queue(self) -> Opener:
        """Override this fixture: an opener for a fresh queue private to the test."""
        raise NotImplementedError(
            f"{type(self).__name__} must provide an open_queue fixture "
            "(see jobqueue_conformance.QueueConformance)"
        )

    @pytest.fixture
    def conformance_capabilities(self) -> frozenset[str]:
        """The capabilities the checks may rely on (by default :attr:`capabilities`)."""
        claimed = frozenset(self.capabilities)
        unknown = claimed - CAPABILITIES
        if unknown:
            raise ValueError(
                f"unknown capabilities {sorted(unknown)}; known: {sorted(CAPABILITIES)}"
            )
        return claimed

    @pytest.fixture
    def conformance_harness(
        self, open_queue: Opener, conformance_capabilities: frozenset[str]
    ) -> Iterator[Harness]:
        harness = Harness(open_queue, conformance_capabilities)
        yield harness
        harness.close()


def _test_method(check: Check) -> Callable[[QueueConformance, Harness], None]:
    def test(self: QueueConformance, conformance_harness: Harness) -> None:
        for capability in check.requires:
            if capability not in conformance_harness.capabilities:
                pytest.skip(f"the backend does not claim the {capability!r} capability")
        check(conformance_harness)

    test.__name__ = test.__qualname__ = f"test_{check.name}"
    test.__doc__ = check.doc
    return test


for _check in CHECKS:
    setattr(QueueConformance, f"test_{_check.name}", _test_method(_check))
