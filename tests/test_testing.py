"""``jobqueue.testing.FakeClock``: a clock that moves only when told to."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from jobqueue.testing import FakeClock


def test_default_start_is_a_fixed_aware_utc_time() -> None:
    """Without a start the clock reads 2030-01-01T00:00Z, and keeps reading it."""
    clock = FakeClock()
    assert clock() == datetime(2030, 1, 1, tzinfo=UTC)
    assert clock().tzinfo is UTC
    assert clock() == clock()


def test_start_in_another_zone_is_kept_as_the_same_instant_in_utc() -> None:
    """A start in another zone reads back as that instant in UTC."""
    start = datetime(2030, 5, 5, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    clock = FakeClock(start)
    assert clock() == start
    assert clock().utcoffset() == timedelta(0)


def test_naive_times_are_refused() -> None:
    """A naive start or ``set`` target raises ``ValueError``."""
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(datetime(2030, 1, 1))
    clock = FakeClock()
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.set(datetime(2030, 1, 1))
    assert clock() == datetime(2030, 1, 1, tzinfo=UTC)


def test_advance_by_timedelta_or_seconds_returns_the_new_time() -> None:
    """``advance`` takes a timedelta or seconds (microsecond precision, negative moves
    back) and returns the time it moved to."""
    clock = FakeClock()
    start = clock()
    assert clock.advance(timedelta(minutes=1)) == start + timedelta(minutes=1)
    assert clock.advance(0.000001) == start + timedelta(minutes=1, microseconds=1)
    assert clock.advance(-60) == start + timedelta(microseconds=1)
    assert clock() == start + timedelta(microseconds=1)


def test_set_jumps_forwards_and_backwards() -> None:
    """``set`` moves the clock to any aware time, earlier or later."""
    clock = FakeClock()
    later = datetime(2031, 1, 1, tzinfo=UTC)
    clock.set(later)
    assert clock() == later
    clock.set(datetime(1999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-1))))
    assert clock() == datetime(2000, 1, 1, tzinfo=UTC)


def test_advances_from_many_threads_all_count() -> None:
    """Concurrent ``advance`` calls from several threads are never lost."""
    clock = FakeClock()
    start = clock()

    def tick() -> None:
        for _ in range(2000):
            clock.advance(timedelta(microseconds=1))

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clock() == start + timedelta(microseconds=8000)


def test_repr_shows_the_current_time() -> None:
    """The repr names the class and the current fake time."""
    assert repr(FakeClock()) == "FakeClock(2030-01-01T00:00:00+00:00)"
