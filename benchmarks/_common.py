"""What every benchmark module shares: measurements, timing helpers, settings."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DATABASE = "jobqueue_bench"
"""The database every PostgreSQL benchmark runs in; each system gets its own schema."""

BATCH = 100
"""Jobs per claim (and per completion round trip) in the batch-claim workloads."""

ENQUEUE_BATCH = 1000
"""Jobs per call in the batch-enqueue workloads."""


@dataclass(frozen=True)
class Settings:
    """One invocation's parameters."""

    jobs: int
    repeats: int
    workers: tuple[int, ...]
    latency_jobs: int
    admin_dsn: str
    work_dir: str
    big_table: bool
    big_table_only: bool = False


@dataclass(frozen=True)
class Sample:
    """One measured value of one system in one workload and configuration."""

    backend: str
    workload: str
    config: str
    system: str
    value: float
    unit: str
    higher_is_better: bool = True
    note: str = ""


@dataclass
class Samples:
    """Every sample of an invocation, kept in the order they were taken."""

    items: list[Sample] = field(default_factory=list)

    def add(self, sample: Sample) -> None:
        self.items.append(sample)


class Finish:
    """Counts handler calls and notes the moment the ``expected``-th one happened.

    Drains are timed from starting the workers to that moment: a system's own
    shutdown afterwards (pgqueuer's drain mode takes seconds to return) is not
    throughput. Safe to call from worker threads.
    """

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.at: float | None = None
        self._lock = threading.Lock()

    def hit(self) -> None:
        with self._lock:
            self.count += 1
            if self.count == self.expected:
                self.at = time.perf_counter()

    def rate(self, started: float) -> float:
        """Jobs per second from ``started`` to the last expected call."""
        if self.at is None:
            raise RuntimeError(f"only {self.count} of {self.expected} jobs ran")
        return self.expected / (self.at - started)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


async def timed(action: Callable[[], Awaitable[object]]) -> float:
    """Seconds ``action`` took, by the monotonic wall clock."""
    started = time.perf_counter()
    await action()
    return time.perf_counter() - started


def load_average() -> str:
    """The 1/5/15-minute load averages, for the report."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"
