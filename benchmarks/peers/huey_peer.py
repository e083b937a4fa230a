"""huey with its SQLite storage (``huey.SqliteHuey``), driven through its documented
API: a ``@huey.task()`` function called to enqueue, and a consumer made with
``huey.create_consumer(workers=…)`` (thread workers, huey's default)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from huey import SqliteHuey  # type: ignore[import-untyped]
from huey.signals import SIGNAL_COMPLETE, SIGNAL_EXECUTING  # type: ignore[import-untyped]


class _Peer:
    def __init__(self, path: str, on_start: Callable[[int], None] | None = None) -> None:
        self.huey = SqliteHuey(name="bench", filename=path)

        @self.huey.task(name="noop")  # type: ignore[untyped-decorator]
        def noop(n: int = 0) -> None:
            return None

        self.noop = noop
        self.completed = 0
        self._lock = threading.Lock()
        self.all_done = threading.Event()
        self.expected = 0

        @self.huey.signal(SIGNAL_COMPLETE)  # type: ignore[untyped-decorator]
        def done(signal_name: str, task: Any, *args: Any) -> None:
            with self._lock:
                self.completed += 1
                if self.completed >= self.expected:
                    self.all_done.set()

        if on_start is not None:

            @self.huey.signal(SIGNAL_EXECUTING)  # type: ignore[untyped-decorator]
            def started(signal_name: str, task: Any, *args: Any) -> None:
                on_start(task.kwargs.get("n", 0))

    def run_consumer(self, workers: int, until: Callable[[], bool]) -> None:
        """Run a consumer with ``workers`` thread workers until ``until()`` is true."""
        saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        consumer = self.huey.create_consumer(workers=workers, periodic=False)
        try:
            consumer.start()
            until()
            consumer.stop(graceful=True)
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)


def reset(path: str) -> None:
    SqliteHuey(name="bench", filename=path).flush()


def preload(path: str, count: int) -> None:
    peer = _Peer(path)
    for _ in range(count):
        peer.noop()


def enqueue_single(path: str, count: int) -> float:
    peer = _Peer(path)
    started = time.perf_counter()
    for _ in range(count):
        peer.noop()
    return count / (time.perf_counter() - started)


def drain(path: str, count: int, workers: int) -> float:
    """Time from consumer start until ``count`` preloaded tasks completed; tasks/s."""
    peer = _Peer(path)
    peer.expected = count
    started = time.perf_counter()
    elapsed = 0.0

    def wait() -> bool:
        nonlocal elapsed
        finished = peer.all_done.wait(600)
        elapsed = time.perf_counter() - started
        return finished

    peer.run_consumer(workers, wait)
    if peer.completed != count:
        raise RuntimeError(f"huey drain completed {peer.completed} tasks, expected {count}")
    return count / elapsed


def latency(path: str, count: int, interval: float) -> list[tuple[float, float]]:
    """Enqueue-to-start seconds with a running consumer (one worker; huey polls)."""
    enqueued_at: dict[int, float] = {}
    returned_at: dict[int, float] = {}
    started_at: dict[int, float] = {}
    peer = _Peer(path, lambda n: started_at.__setitem__(n, time.perf_counter()))
    peer.expected = count

    def produce() -> bool:
        time.sleep(0.5)
        for n in range(count):
            enqueued_at[n] = time.perf_counter()
            peer.noop(n=n)
            returned_at[n] = time.perf_counter()
            time.sleep(interval)
        return peer.all_done.wait(60)

    peer.run_consumer(1, produce)
    return [(started_at[n] - enqueued_at[n], started_at[n] - returned_at[n]) for n in enqueued_at]
