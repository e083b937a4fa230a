"""The jobqueue conformance suite: the contract (SPEC) as executable checks.

Two ways in for a backend author:

- ``jobqueue conformance URL`` (or :func:`run`) runs every check against the
  backend the URL resolves to and prints a report;
- from pytest, subclass :class:`QueueConformance` and provide one fixture,
  ``open_queue``.

The checks compare the backend with a reference model of the contract
(:class:`Model`), run a Hypothesis state machine over random operation
sequences, race concurrent claimers and check their history, and verify claim
order, timing under a fake clock, fencing and bad input.
"""

from ._harness import CAPABILITIES, ConnectSpec, Harness, Opener, clear_queue
from ._history import Event, HistoryReport, check_history
from ._model import Model, ModelJob
from ._runner import run
from ._suite import QueueConformance

__all__ = [
    "CAPABILITIES",
    "ConnectSpec",
    "Event",
    "Harness",
    "HistoryReport",
    "Model",
    "ModelJob",
    "Opener",
    "QueueConformance",
    "check_history",
    "clear_queue",
    "run",
]
