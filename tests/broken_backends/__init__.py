"""Backends for testing the conformance suite: a naive correct one and deliberately broken ones.

:class:`NaiveQueue` keeps the contract in the simplest possible way (a dict
scanned on every call). Each ``BROKEN`` variant breaks exactly one rule of the
contract; the suite must fail on every one of them and pass on the naive queue.
"""

from ._naive import NaiveQueue, NaiveStore, opener, register
from ._unlocked import UnlockedFileSpec
from ._variants import BROKEN, SEQUENTIAL_BUGS

__all__ = [
    "BROKEN",
    "SEQUENTIAL_BUGS",
    "NaiveQueue",
    "NaiveStore",
    "UnlockedFileSpec",
    "opener",
    "register",
]
